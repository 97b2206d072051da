"""The Train widget training on a dask worker while the GUI stays here (issue 12)."""

import numpy as np
import pytest
from napari_helpers import dock, open_sample, tiny_training

pytestmark = pytest.mark.gui
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from conftest import local_cluster

    with local_cluster(1) as cluster:
        yield cluster


def test_train_widget_on_a_scheduler_streams_progress_and_stops(make_napari_viewer, qtbot, cluster):
    from napari_unet._widgets import TrainingState, session_for
    from napari_unet.inference.segment import segment

    viewer = make_napari_viewer()
    image = open_sample(viewer)
    train = dock(viewer, "Train")
    tiny_training(train, n_iterations=100_000)  # Stop ends it
    train.settings.scheduler.value = cluster.scheduler_address
    train.preview.on.value = False
    worker = train.start()
    assert worker is not None and train.state is TrainingState.TRAINING
    # progress streams back from the worker: the loss curve fills while it runs
    qtbot.waitUntil(lambda: len(train.loss_plot.iterations) >= 3, timeout=60000)
    assert train.state is TrainingState.TRAINING
    train.stop()
    qtbot.waitUntil(lambda: not train.state.running, timeout=30000)
    session = session_for(viewer)
    assert train.state is TrainingState.STOPPED, train.status.value
    assert "dask cluster" in session.model_description
    labels = segment(np.asarray(image.data)[:128, :128], session.model, device="cpu")
    assert labels.shape == (128, 128)


def test_a_bad_scheduler_is_refused_before_anything_starts(make_napari_viewer):
    from napari_unet._widgets import TrainingState

    viewer = make_napari_viewer()
    open_sample(viewer)
    train = dock(viewer, "Train")
    tiny_training(train)
    train.settings.scheduler.value = "local:zero"
    assert train.start() is None
    assert train.state is TrainingState.IDLE


def test_segment_widget_sends_the_job_to_a_scheduler(
    make_napari_viewer, qtbot, cluster, tmp_path, monkeypatch
):
    import tempfile

    from napari_unet.inference.segment import segment
    from napari_unet.metrics import partition_agreement

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the widget's labels folder
    viewer = make_napari_viewer()
    image = open_sample(viewer)
    widget = dock(viewer, "Segment")
    widget.image_layer.value = image
    widget.model.value = "default"
    widget.device.value = "cpu"
    widget.precision.value = "float32"
    widget.scheduler.value = cluster.scheduler_address
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    layer = widget.last_labels
    assert layer is not None, widget.info.value
    assert str(layer.metadata["store"]).startswith(str(tmp_path))
    labels = np.asarray(layer.data)
    reference = segment(np.asarray(image.data), "default", device="cpu", precision="float32")
    assert labels.shape == reference.shape
    assert partition_agreement(labels, reference) >= 0.999
    assert labels.max() == reference.max()  # the same number of cells
    np.testing.assert_allclose(layer.scale, image.scale)
