"""The dock widgets in a real napari viewer (Qt under Xvfb), on the shipped sample."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
from napari_helpers import PLUGIN, SCALE, TRANSLATE, dock, open_sample, tiny_training

from napari_unet._widgets import (
    AnnotateWidget,
    SegmentWidget,
    TrainingState,
    TrainWidget,
    WeightMapWidget,
    session_for,
)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

WIDGETS = {
    "Annotate": AnnotateWidget,
    "Weight map": WeightMapWidget,
    "Train": TrainWidget,
    "Segment": SegmentWidget,
}


def test_every_widget_opens_and_shares_one_session(make_napari_viewer):
    viewer = make_napari_viewer()
    widgets = {name: dock(viewer, name) for name in WIDGETS}
    for name, widget in widgets.items():
        assert isinstance(widget, WIDGETS[name])
    sessions = {id(widget._session) for widget in widgets.values()}
    assert sessions == {id(session_for(viewer))}
    other = make_napari_viewer()
    assert session_for(other) is not session_for(viewer)


def test_annotate_buttons_and_live_counts(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = open_sample(viewer, "nuclei")
    annotate = dock(viewer, "Annotate")
    assert annotate.annotation_layer.value is None

    annotate.create_button.native.click()
    layer = annotate.annotation_layer.value
    assert layer is not None and layer.name == "nuclei annotation"
    assert layer.data.dtype == np.uint16 and layer.data.shape == image.data.shape
    assert not layer.data.any()
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    assert viewer.layers.selection.active is layer

    annotate.background_button.native.click()
    assert (layer.selected_label, layer.mode) == (1, "paint")
    layer.paint((20, 20), 1)
    annotate.cell_button.native.click()
    assert (layer.selected_label, layer.mode) == (2, "paint")
    layer.paint((100, 100), layer.selected_label)
    qtbot.waitUntil(lambda: annotate.counts.value.startswith("1 cell annotated"), timeout=2000)
    annotate.cell_button.native.click()
    assert layer.selected_label == 3
    layer.paint((200, 300), layer.selected_label)
    qtbot.waitUntil(lambda: annotate.counts.value.startswith("2 cells annotated"), timeout=2000)
    assert annotate.n_cells == 2
    annotated = int(np.count_nonzero(layer.data))
    assert f"{annotated} px annotated" in annotate.counts.value

    annotate.eraser_button.native.click()
    assert layer.mode == "erase"
    layer.paint((100, 100), 0)
    qtbot.waitUntil(lambda: annotate.counts.value.startswith("1 cell annotated"), timeout=2000)


def test_annotate_picks_the_sample_annotation(make_napari_viewer):
    viewer = make_napari_viewer()
    open_sample(viewer)
    annotate = dock(viewer, "Annotate")
    assert annotate.image_layer.value.name == "nuclei"
    assert annotate.annotation_layer.value.name == "nuclei annotation"
    assert annotate.n_cells == 31


def test_weight_map_layer_follows_the_annotation(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    open_sample(viewer)
    annotation = viewer.layers["nuclei annotation"]
    before = annotation.data.copy()
    weight_map = dock(viewer, "Weight map")
    assert weight_map.annotation_layer.value is annotation

    weight_map.show_button.native.click()
    qtbot.waitUntil(lambda: weight_map.layer is not None and not weight_map.busy, timeout=10000)
    layer = weight_map.layer
    assert layer.colormap.name == "magma"
    np.testing.assert_allclose(layer.scale, annotation.scale)
    np.testing.assert_allclose(layer.translate, annotation.translate)
    assert layer.data.shape == annotation.data.shape and layer.data.dtype == np.float32
    assert np.all(layer.data[annotation.data == 0] == 0)  # not annotated: weight 0
    assert layer.data.max() > 5  # separation borders between touching nuclei
    first = layer.data.copy()
    n_layers = len(viewer.layers)

    # Paint background over a region not annotated yet: the map redraws by itself.
    annotation.paint((400, 600), 1)
    qtbot.waitUntil(lambda: not np.array_equal(layer.data, first), timeout=5000)
    qtbot.waitUntil(lambda: not weight_map.busy, timeout=5000)
    assert weight_map.layer is layer and len(viewer.layers) == n_layers
    assert np.all(layer.data[annotation.data == 1] > 0)

    second = layer.data.copy()
    weight_map.w0.value = 20.0
    qtbot.waitUntil(lambda: not np.array_equal(layer.data, second), timeout=5000)
    qtbot.waitUntil(lambda: not weight_map.busy, timeout=5000)
    assert layer.data.max() > second.max()
    assert session_for(viewer).w0 == 20.0
    # the plugin never edits the annotation it reads (the test painted one stroke)
    changed = annotation.data != before
    assert np.all(annotation.data[changed] == 1)


def test_train_stop_segment_export(make_napari_viewer, qtbot, tmp_path):
    from napari_unet.models.files import load_model

    viewer = make_napari_viewer()
    image = open_sample(viewer)
    annotation = viewer.layers["nuclei annotation"]
    annotation_before = annotation.data.copy()
    train = dock(viewer, "Train")
    segment = dock(viewer, "Segment")
    assert train.data.annotation_layer.value is annotation
    assert train.settings.start_from.value in ("default", "scratch")

    # -- train a tiny network for a few iterations, in the worker ----------------------
    tiny_training(train, n_iterations=5)
    train.start_button.native.click()
    assert train.state is TrainingState.TRAINING
    assert train.start_button.text == "Stop" and not train.settings.minutes.enabled
    qtbot.waitUntil(lambda: not train.state.running, timeout=60000)
    assert train.state is TrainingState.DONE, train.status.value
    session = session_for(viewer)
    assert session.model is not None and session.model.config.depth == 3
    assert train.progress.value == train.progress.max  # the whole run
    assert train.loss_plot.iterations == [1, 2, 3, 4, 5]
    assert train.start_button.text == "Start training" and train.save_button.enabled
    # the painted-cell score beside the loss curve: 8 of the 31 painted nuclei were held
    # out and scored at the last iteration (from scratch: no start to compare with)
    report = session.model.metadata["training"]["painted_cells"]
    shown, step = train.painted_score.value.split("\n")
    assert shown == report["message"] and step.startswith("instance step fitted: foreground >")
    assert shown.startswith("painted-cell SEG ") and "8 held-out cells" in shown
    assert [i for i, _ in train.loss_plot.scores] == [5]
    assert train.loss_plot.score_label == "painted-cell SEG"
    first_model = session.model

    # -- Stop: returns the best model so far, quickly -------------------------------------
    train.settings.start_from.value = "session"
    train.settings.n_iterations.value = 10_000
    worker = train.start()
    assert worker is not None
    qtbot.waitUntil(lambda: train.progress.value >= 2, timeout=30000)
    # the run reports to napari's activity dock, with its share done, until it ends
    from napari.utils import progress as napari_progress

    def training_bars():
        return [p for p in napari_progress._all_instances if "U-Net training" in (p.desc or "")]

    qtbot.waitUntil(lambda: any(bar.n > 0 for bar in training_bars()), timeout=5000)
    # ... with napari's busy indicator slowed down (its animation costs training speed)
    from napari_unet._widgets._common import TRAINING_INDICATOR_SPEED, _busy_indicators

    indicators = _busy_indicators(train.native.window())
    assert indicators and all(m.speed() == TRAINING_INDICATOR_SPEED for m in indicators)
    with qtbot.waitSignal(worker.returned, timeout=5000) as returned:
        started = time.monotonic()
        train.start_button.native.click()
        assert train.state is TrainingState.STOPPING
    qtbot.waitUntil(lambda: train.state is TrainingState.STOPPED, timeout=1000)
    assert time.monotonic() - started < 1.5
    assert not training_bars()  # taken off the activity dock
    assert all(m.speed() == 100 for m in indicators)  # given its speed back
    assert returned.args[0].stopped and returned.args[0].model is session.model
    # fine-tuning the session's model: the verdict compares it with its start
    verdict = returned.args[0].painted.message
    assert train.painted_score.value.split("\n")[0] == verdict
    assert verdict.startswith("painted-cell SEG: start") or "keeping the starting model" in verdict
    kept_start = returned.args[0].set_aside is not None  # the model's line says which weights
    assert ("the starting model kept" in session.model_description) == kept_start
    assert session.model is not first_model
    assert train.start_button.text == "Start training"

    path = train.save_model(tmp_path / "tiny.safetensors")
    assert load_model(path).config.depth == 3

    # -- segment with the model just trained ----------------------------------------------
    assert segment.model.value == "session"
    segment.device.value = "cpu"
    segment.add_probabilities.value = True
    segment.run_button.native.click()
    assert segment.running
    qtbot.waitUntil(lambda: not segment.running, timeout=60000)
    labels = segment.last_labels
    assert labels is not None and labels in viewer.layers, segment.info.value
    assert labels.data.shape == image.data.shape
    assert len(np.unique(labels.data)) > 2  # background and more than one cell
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    # "auto" precision depends on the CPU (runtime.devices.cpu_prefers_bf16)
    from napari_unet.runtime.devices import resolve_precision

    auto = str(resolve_precision(segment.precision.value, "cpu")).removeprefix("torch.")
    assert "cpu" in segment.info.value and auto in segment.info.value
    probabilities = viewer.layers["nuclei foreground probability"]
    assert probabilities.data.dtype == np.float32 and probabilities.data.max() <= 1

    # -- export with the writer, read back ------------------------------------------------
    written = segment.export_masks(tmp_path / "masks.tif")
    with tifffile.TiffFile(written[0]) as tif:
        data = tif.asarray()
        page = tif.pages[0]
        x_resolution = page.tags["XResolution"].value
        y_resolution = page.tags["YResolution"].value
        assert tif.is_imagej
    assert data.dtype == np.uint16  # int32 ids < 65536: ImageJ's 16-bit
    np.testing.assert_array_equal(data, labels.data)
    assert x_resolution[1] / x_resolution[0] == pytest.approx(SCALE[1], rel=1e-6)
    assert y_resolution[1] / y_resolution[0] == pytest.approx(SCALE[0], rel=1e-6)

    # napari's own File > Save path goes through the same npe2 writer
    saved = labels.save(str(tmp_path / "saved.tif"), plugin=PLUGIN)
    np.testing.assert_array_equal(tifffile.imread(saved[0]), labels.data)

    # -- a stack is segmented plane by plane ----------------------------------------------
    stack = viewer.add_image(
        np.stack([image.data[:128, :160], image.data[-128:, -160:]]),
        name="stack",
        scale=(2.0, *SCALE),
        translate=(0.0, *TRANSLATE),
    )
    segment.image_layer.value = stack
    segment.stack_kind.value = "time series"  # unrelated planes (napari's labels say nothing)
    segment.add_probabilities.value = False
    segment.run_button.native.click()
    qtbot.waitUntil(lambda: not segment.running, timeout=60000)
    stack_labels = segment.last_labels
    assert stack_labels.name == "stack segmentation" and stack_labels.data.shape == (2, 128, 160)
    assert all(len(np.unique(plane)) > 2 for plane in stack_labels.data)
    np.testing.assert_allclose(stack_labels.scale, stack.scale)
    np.testing.assert_allclose(stack_labels.translate, stack.translate)
    (path,) = segment.export_masks(tmp_path / "stack.tif")
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), stack_labels.data)
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)

    np.testing.assert_array_equal(annotation.data, annotation_before)  # never modified


def test_training_errors_become_notifications(make_napari_viewer, qtbot, monkeypatch):
    from napari_unet._widgets import _train, _train_run

    errors = []
    monkeypatch.setattr(_train, "show_error", errors.append)  # before the start
    monkeypatch.setattr(_train_run, "show_error", errors.append)  # from the worker
    viewer = make_napari_viewer()
    open_sample(viewer)
    train = dock(viewer, "Train")
    tiny_training(train)

    # caught before starting: an annotation without background
    annotation = viewer.layers["nuclei annotation"]
    original = annotation.data.copy()
    annotation.data = np.where(annotation.data == 1, 0, annotation.data).astype(np.uint16)
    assert train.start() is None
    assert train.state is TrainingState.IDLE
    assert errors and "background" in errors[-1]

    # raised in the worker: the state machine ends in FAILED, the error is notified
    def broken_train(*args, **kwargs):
        raise RuntimeError("out of memory")
        yield

    monkeypatch.setattr("napari_unet.training.loop.train", broken_train)
    annotation.data = original
    worker = train.start()
    # the worker may fail before a waitSignal could connect to ``finished``: wait on state
    qtbot.waitUntil(lambda: train.state is TrainingState.FAILED, timeout=10000)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5000)
    assert "out of memory" in errors[-1]
    assert train.start_button.text == "Start training"


def test_removing_the_widget_stops_training(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    open_sample(viewer)
    dock_widget, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    tiny_training(train, n_iterations=10_000)
    worker = train.start()
    qtbot.waitUntil(lambda: train.progress.value >= 1, timeout=30000)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        viewer.window.remove_dock_widget(dock_widget)
        assert not train._lifetime.running  # stopped and waited for, synchronously
    qtbot.waitUntil(
        lambda: session_for(viewer).training_state is TrainingState.STOPPED, timeout=2000
    )


def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    open_sample(viewer)
    train = dock(viewer, "Train")
    tiny_training(train, n_iterations=10_000)
    worker = train.start()
    qtbot.waitUntil(lambda: train.progress.value >= 1, timeout=30000)
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    viewer.close()
    assert train.worker is None  # stopped and waited for before the window went
    qtbot.waitUntil(lambda: bool(finished), timeout=5000)


def test_segment_without_a_model_says_why(make_napari_viewer, monkeypatch, tmp_path):
    from napari_unet._widgets import _segment

    errors = []
    monkeypatch.setattr(_segment, "show_error", errors.append)
    viewer = make_napari_viewer()
    open_sample(viewer, "nuclei")
    segment = dock(viewer, "Segment")
    segment.model.value = "file"
    segment.model_file.value = tmp_path / "missing.safetensors"
    assert segment.run() is None
    assert "missing.safetensors" in errors[-1]
    with pytest.raises(ValueError, match="Segment first"):
        segment.export_masks(tmp_path / "masks.tif")


def test_unavailable_choices_are_disabled(make_napari_viewer):
    from napari_unet.models.files import default_model_available
    from napari_unet.runtime.devices import available_devices

    def enabled(combo):
        native = combo.native
        return {
            native.itemData(i): native.model().item(i).isEnabled() for i in range(native.count())
        }

    viewer = make_napari_viewer()
    train = dock(viewer, "Train")
    segment = dock(viewer, "Segment")
    open_sample(viewer)  # inserting layers resets every combo box of the widgets
    for combo in (train.settings.device, segment.device):
        states = enabled(combo)
        assert states["auto"] and states["cpu"]
        assert states["cuda"] == ("cuda" in available_devices())
        assert states["mps"] == ("mps" in available_devices())
    assert not enabled(train.settings.start_from)["session"]
    assert not enabled(segment.model)["session"]
    assert enabled(train.settings.start_from)["default"] == default_model_available()
    assert train.settings.start_from.value == (
        "default" if default_model_available() else "scratch"
    )
    tooltip = train.settings.start_from.native.model().item(2).toolTip()
    assert "trained in this session" in tooltip


def test_weight_map_and_train_show_the_same_loss_settings(make_napari_viewer):
    viewer = make_napari_viewer()
    open_sample(viewer)
    weight_map, train = dock(viewer, "Weight map"), dock(viewer, "Train")
    session = session_for(viewer)
    weight_map.dense.value = True
    weight_map.sigma.value = 7.0
    assert train.loss.dense.value is True and train.loss.sigma.value == 7.0
    train.loss.w0.value = 15.0
    assert weight_map.w0.value == 15.0
    assert (session.w0, session.sigma, session.dense) == (15.0, 7.0, True)
    config = train.settings.config(session)
    assert (config.w0, config.sigma) == (15.0, 7.0)
