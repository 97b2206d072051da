"""Volumes in the dock widgets (Qt under Xvfb): axes, the 3D weight map, training, segmenting."""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import dock, tiny_training
from synthetic import ellipsoid_volume

from napari_unet._sample_data import ROLE_KEY
from napari_unet._widgets import TrainingState, session_for
from napari_unet.method.annotation import BACKGROUND

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

SCALE = (2.0, 0.5, 0.5)  # µm per voxel: planes four pixels apart
PAINTED = (3, 6)


def open_volume(viewer, axis_labels=None):
    """A synthetic nuclei volume and an annotation painted in two of its planes."""
    image, labels = ellipsoid_volume((10, 64, 64), n_cells=7, radius=10.0, spacing=SCALE, seed=8)
    layer = viewer.add_image(image, name="volume", scale=SCALE, axis_labels=axis_labels)
    annotation = np.zeros(labels.shape, np.uint16)
    for z in PAINTED:
        annotation[z] = np.where(labels[z] > 0, labels[z] + 1, BACKGROUND)
    painted = viewer.add_labels(
        annotation,
        name="volume annotation",
        scale=SCALE,
        axis_labels=axis_labels,
        metadata={ROLE_KEY: "annotation"},
    )
    return layer, painted, labels


def test_axes_come_from_the_axis_labels_or_the_stack_choice(make_napari_viewer):
    viewer = make_napari_viewer()
    segment = dock(viewer, "Segment")
    image, _, _ = open_volume(viewer)  # napari's default labels say nothing
    segment.image_layer.value = image
    assert segment.stack_kind.enabled and segment.stack_kind.value == "volume"
    assert segment._stack.axes_and_spacing(image) == ("ZYX", SCALE)
    segment.stack_kind.value = "time series"
    assert segment._stack.axes_and_spacing(image) == ("TYX", None)
    named = viewer.add_image(image.data, name="frames", axis_labels=("t", "y", "x"))
    segment.image_layer.value = named
    assert not segment.stack_kind.enabled  # the labels decide
    segment.stack_kind.value = "volume"
    assert segment._stack.axes_and_spacing(named) == ("TYX", None)
    flat = viewer.add_image(image.data[0], name="plane")
    segment.image_layer.value = flat
    assert segment._stack.axes_and_spacing(flat) == ("YX", None)
    assert segment.stack_kind.native.isHidden()  # a single plane: no stack to name
    segment.image_layer.value = image
    assert not segment.stack_kind.native.isHidden() and segment.stack_kind.enabled


def test_weight_map_of_a_volume_is_one_3d_map(make_napari_viewer, qtbot):
    from napari_unet.method.weight_map_3d import volume_training_weights

    viewer = make_napari_viewer()
    _, annotation, _ = open_volume(viewer)
    weight_map = dock(viewer, "Weight map")
    weight_map.annotation_layer.value = annotation
    weight_map.show_button.native.click()
    qtbot.waitUntil(lambda: weight_map.layer is not None and not weight_map.busy, timeout=20000)
    layer = weight_map.layer
    assert layer.data.shape == annotation.data.shape and layer.ndim == 3
    np.testing.assert_allclose(layer.scale, SCALE)
    config = session_for(viewer).training_config()
    expected = volume_training_weights(annotation.data, config, spacing=SCALE).weights
    np.testing.assert_allclose(layer.data, expected, atol=1e-6)
    unpainted = [z for z in range(10) if z not in PAINTED]
    assert not layer.data[unpainted].any() and layer.data[list(PAINTED)].max() > 2


def test_train_widget_trains_from_painted_planes_of_a_volume(
    make_napari_viewer, qtbot, monkeypatch
):
    from napari_unet._widgets import _train

    errors = []
    monkeypatch.setattr(_train, "show_error", errors.append)
    viewer = make_napari_viewer()
    image, annotation, _ = open_volume(viewer)
    train = dock(viewer, "Train")
    train.data.image_layer.value = image
    train.data.annotation_layer.value = annotation
    tiny_training(train, n_iterations=3)
    train.preview.on.value = False

    # a volume with nothing painted is refused before training starts
    painted = annotation.data.copy()
    annotation.data = np.zeros_like(painted)
    assert train.start() is None and train.state is TrainingState.IDLE
    assert "nothing painted" in errors[-1]

    annotation.data = painted
    train.start_button.native.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60000)
    assert train.state is TrainingState.DONE, (train.status.value, errors)
    record = session_for(viewer).model.metadata["training"]
    assert record["axes"] == ["ZYX"] and record["n_planes"] > len(PAINTED)  # XY, XZ, YZ
    np.testing.assert_array_equal(annotation.data, painted)  # never modified


def test_segment_widget_returns_3d_cells_with_the_image_scale(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _, labels = open_volume(viewer)
    segment = dock(viewer, "Segment")
    segment.image_layer.value = image
    segment.model.value = "default"
    segment.device.value = "cpu"
    segment.run_button.native.click()
    qtbot.waitUntil(lambda: not segment.running, timeout=120000)
    result = segment.last_labels
    assert result is not None, segment.info.value
    assert result.data.shape == image.data.shape
    np.testing.assert_allclose(result.scale, SCALE)
    assert result.metadata["axes"] == "ZYX"
    # one id per nucleus across its planes: the ids of a nucleus's voxels are mostly one
    for cell in np.unique(labels[labels > 0]):
        ids, counts = np.unique(result.data[labels == cell], return_counts=True)
        counts = counts[ids > 0]
        assert counts.size and counts.max() > 0.8 * counts.sum(), (cell, ids, counts)

    # -- accepting a predicted cell takes the whole 3D object, undone by one Ctrl+Z ------
    annotation = viewer.layers["volume annotation"]
    # one plane painted, as background only: it stays background (what is painted wins)
    one_plane = np.zeros_like(annotation.data)
    one_plane[PAINTED[0]] = BACKGROUND
    annotation.data = one_plane
    before = annotation.data.copy()
    train = dock(viewer, "Train")
    train.data.image_layer.value = image
    train.data.annotation_layer.value = annotation
    train.accept.source.value = result
    predicted = np.asarray(result.data)
    cell = np.unique(predicted[PAINTED[0]])[-1]  # a predicted nucleus crossing that plane
    z, y, x = np.argwhere(predicted == cell)[0]
    assert train.accept.accept_at(tuple(np.multiply((z, y, x), SCALE))) == 1
    added = annotation.data != before
    (new_id,) = np.unique(annotation.data[added])
    assert new_id == 2  # the first cell id
    assert np.array_equal(added, (predicted == cell) & (before == 0))  # all planes, one id
    assert len(np.unique(np.nonzero(added)[0])) > 2 and not added[PAINTED[0]].any()
    annotation.undo()
    np.testing.assert_array_equal(annotation.data, before)


def test_live_preview_of_a_volume_holds_the_3d_cells_crossing_the_plane(make_napari_viewer, qtbot):
    from napari_unet.models.files import load_model

    viewer = make_napari_viewer()
    image, annotation, _ = open_volume(viewer)
    train = dock(viewer, "Train")
    train.data.image_layer.value = image
    train.data.annotation_layer.value = annotation
    z = 5
    viewer.dims.set_current_step(0, z)
    train.preview.attach(image, "cpu", "ZYX", SCALE)
    train.preview.show_model(load_model("default"))
    qtbot.waitUntil(
        lambda: train.preview.n_refreshes >= 1 and not train.preview.busy, timeout=60000
    )
    layer = train.preview.layer
    assert layer.metadata["axes"] == "ZYX" and layer.data.shape == image.data.shape
    preview = np.asarray(layer.data)
    ids = np.unique(preview[preview > 0])
    assert ids.size and set(ids) <= set(np.unique(preview[z]))  # all cross the plane
    assert len(np.unique(np.nonzero(preview)[0])) > 2  # in 3D, beyond the plane
    # accepting a preview cell takes it whole into the annotation (one plane of background)
    one_plane = np.zeros_like(annotation.data)
    one_plane[PAINTED[0]] = BACKGROUND
    annotation.data = one_plane
    cell = int(ids[-1])
    where = np.argwhere(preview[z] == cell)[0]
    assert train.accept.accept_at(tuple(np.multiply((z, *where), SCALE))) == 1
    added = annotation.data != one_plane
    assert np.array_equal(added, (preview == cell) & (one_plane == 0))
