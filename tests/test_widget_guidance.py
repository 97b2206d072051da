"""Guidance in a real napari viewer (Qt under Xvfb): the uncertainty layer, each cell's
confidence on hover, "Where next" and the confidence threshold for accepting cells."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import KeyBinding
from napari_helpers import dock, open_sample, world

from napari_unet._widgets._common import ROLE_KEY, same_layer
from napari_unet._widgets._guidance import WHERE_NEXT_KEY
from napari_unet.live.guidance import ANNOTATED_SHARE, DEFAULT_MIN_CONFIDENCE
from napari_unet.method.uncertainty import cell_confidence
from napari_unet.models.files import load_model

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


def preview_with_default_model(viewer, qtbot, train):
    """The preview of the view with the shipped model (as after a round of training)."""
    image = viewer.layers["nuclei"]
    preview = train.preview
    preview.attach(image, "cpu")
    preview.show_model(load_model(), "shipped model")
    qtbot.waitUntil(lambda: preview.n_refreshes >= 1 and not preview.busy, timeout=60000)
    return image, preview


def test_uncertainty_layer_and_cell_confidence_on_hover(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    open_sample(viewer)
    train = dock(viewer, "Train")
    train.preview.uncertainty.value = True
    image, preview = preview_with_default_model(viewer, qtbot, train)

    # -- an image layer "<image> uncertainty", aligned, in [0, 1], inside the view -------
    layer = preview.uncertainty_layer
    assert same_layer(layer, viewer.layers["nuclei uncertainty"])
    assert layer.metadata[ROLE_KEY] == "uncertainty" and layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    inside = layer.data[preview.region.index]
    assert 0 <= inside.min() and inside.max() <= 1 and inside.max() > 0.5
    # unsure where cells are (their borders), sure in the empty background
    labels = preview.layer.data[preview.region.index]
    assert inside[labels > 0].mean() > inside[labels == 0].mean()

    # -- each predicted cell's confidence in the preview layer's features ----------------
    features = preview.layer.features
    ids, confidence = cell_confidence(labels, inside)
    np.testing.assert_array_equal(features["index"], ids)
    np.testing.assert_allclose(features["confidence"], confidence, atol=1e-3)
    assert len(ids) > 20 and 0 < confidence.min() < confidence.max() <= 1
    # napari shows it on hover
    cell = int(ids[np.argmin(confidence)])
    ys, xs = np.nonzero(labels == cell)
    pixel = (int(ys[len(ys) // 2]), int(xs[len(xs) // 2]))
    status = preview.layer.get_status(world(pixel), world=True)
    text = status["coordinates"] if isinstance(status, dict) else status
    assert "confidence" in text

    # -- turned off: the layer hides; on again: shown with the latest result -------------
    preview.uncertainty.value = False
    assert not layer.visible
    preview.uncertainty.value = True
    assert layer.visible


def test_where_next_moves_to_the_next_unannotated_candidates(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    image = open_sample(viewer)  # annotated: the nuclei of the upper-left quarter
    annotation = viewer.layers["nuclei annotation"]
    loop = dock(viewer, "U-Net (all steps)")  # the one-dock widget holds the same Train widget
    where = loop.train.where_next
    assert loop.train.preview.uncertainty.value is False  # optional, off by default

    # before any training: ranked with the shipped model, in a worker
    assert where.go_next() is None and where.ranking
    qtbot.waitUntil(lambda: not where.ranking and where.tour.n_shown == 1, timeout=60000)
    first = where.tour.candidates[0]
    camera = viewer.scene.camera
    np.testing.assert_allclose(camera.center[-2:], world(first.center), atol=1e-3)
    assert first.annotated_share(annotation.data) < ANNOTATED_SHARE
    assert "confidence" in where.status.value
    # the view shows the candidate, zoomed in on it
    qtbot.waitUntil(
        lambda: image.corner_pixels[1, 0] - image.corner_pixels[0, 0] < 400, timeout=5000
    )
    top, left, bottom, right = first.box
    low, high = image.corner_pixels
    assert low[0] <= top and bottom <= high[0] + 1 and low[1] <= left and right <= high[1] + 1

    # -- the key: the next one in the ranking, somewhere else ----------------------------
    viewer.keymap[KeyBinding.from_str(WHERE_NEXT_KEY.upper())](viewer)
    second = where.tour.candidates[1]
    assert where.tour.n_shown == 2 and not second.contains((), first.center)
    np.testing.assert_allclose(camera.center[-2:], world(second.center), atol=1e-3)

    # -- a candidate the user annotated meanwhile is skipped -----------------------------
    third, fourth = where.tour.remaining()[:2]
    top, left, bottom, right = third.box
    annotation.data[top:bottom, left:right][third.mask] = 1
    shown = where.go_next()
    assert shown is fourth
    np.testing.assert_allclose(camera.center[-2:], world(fourth.center), atol=1e-3)


def test_accepting_takes_only_cells_above_the_confidence_threshold(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    open_sample(viewer)
    annotation = viewer.layers["nuclei annotation"]
    train = dock(viewer, "Train")
    accept = train.accept
    assert accept.min_confidence.value == DEFAULT_MIN_CONFIDENCE
    image, preview = preview_with_default_model(viewer, qtbot, train)
    assert same_layer(accept.source.value, preview.layer)
    features = preview.layer.features
    confidence = dict(zip(features["index"], features["confidence"], strict=True))
    middle = float(np.median(list(confidence.values())))
    accept.min_confidence.value = round(middle, 2)
    before = annotation.data.copy()

    n = accept.accept_in_view()
    assert n >= 3 and "below confidence left out" in accept.status.value
    new = annotation.data != before
    prediction = preview.layer.data
    for new_id in np.unique(annotation.data[new]):
        (cell,) = np.unique(prediction[(annotation.data == new_id)])
        assert confidence[cell] >= accept.min_confidence.value
    annotation.undo()
    np.testing.assert_array_equal(annotation.data, before)

    # 0 takes every cell entirely in view: more than above the median
    accept.min_confidence.value = 0.0
    assert accept.accept_in_view() > n
    annotation.undo()
    # 1: none is that sure
    accept.min_confidence.value = 1.0
    assert accept.accept_in_view() == 0 and "reaches confidence" in accept.status.value
    np.testing.assert_array_equal(annotation.data, before)
    del image


def test_where_next_goes_on_to_the_following_plane_of_a_stack(make_napari_viewer, qtbot):
    from napari_unet._sample_data import nuclei_ground_truth

    (image, _, _), (masks, _, _) = nuclei_ground_truth()
    viewer = make_napari_viewer(show=True)
    stack = viewer.add_image(np.stack([image[:256, :320], image[-256:, -320:]]), name="stack")
    labels = np.zeros(stack.data.shape, np.uint16)
    corner = np.asarray(masks)[:256, :320]
    labels[0] = np.where(corner > 0, corner + 1, 1)  # plane 0 annotated everywhere
    viewer.add_labels(labels, name="stack annotation")
    train = dock(viewer, "Train")
    train.data.image_layer.value = stack
    train.data.annotation_layer.value = viewer.layers["stack annotation"]
    viewer.dims.set_current_step(0, 0)
    where = train.where_next

    where.go_next()
    qtbot.waitUntil(lambda: where.tour.n_shown == 1 and not where.ranking, timeout=60000)
    shown = where.tour.candidates[0]
    assert shown.plane == (1,)  # nothing left to paint on plane 0: on to plane 1
    assert viewer.dims.current_step[0] == 1
    np.testing.assert_allclose(
        viewer.scene.camera.center[-2:], stack.data_to_world((1, *shown.center))[-2:], atol=1e-3
    )
