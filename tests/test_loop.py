"""The interactive loop in a real napari viewer (Qt under Xvfb): live preview while
training, predicted cells taken into the annotation with undo, a second round from the
session model, the one-dock widget, and painting many cells without a click per cell."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import KeyBinding
from napari_helpers import PLUGIN, SCALE, TRANSLATE, click, dock, open_sample, tiny_training, world

from napari_unet._widgets import LoopWidget, TrainingState, session_for
from napari_unet._widgets._common import ROLE_KEY

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def fast_snapshots(monkeypatch):
    """A network snapshot for the preview every 0.2 s instead of every few seconds."""
    from napari_unet._widgets import _train

    monkeypatch.setattr(_train, "SNAPSHOT_INTERVAL_S", 0.2)


def look_at(viewer, qtbot, layer, pixel, zoom_factor):
    """Pan and zoom onto ``pixel``; wait until the canvas has drawn the new view."""
    before = layer.corner_pixels.copy()
    viewer.scene.camera.center = world(pixel)
    viewer.scene.camera.zoom = viewer.scene.camera.zoom * zoom_factor
    qtbot.waitUntil(lambda: not np.array_equal(layer.corner_pixels, before), timeout=5000)


def test_live_preview_appears_changes_and_follows_the_view(
    make_napari_viewer, qtbot, fast_snapshots
):
    viewer = make_napari_viewer(show=True)
    image = open_sample(viewer)
    annotation = viewer.layers["nuclei annotation"]
    before = annotation.data.copy()
    viewer.layers.selection.active = annotation
    train = dock(viewer, "Train")
    preview = train.preview
    assert preview.on.value  # on by default
    tiny_training(train, n_iterations=100_000)  # ends with Stop
    train.start()

    # -- the preview layer appears, aligned with the image, under the annotation -------
    qtbot.waitUntil(lambda: preview.n_refreshes >= 1, timeout=60000)
    layer = preview.layer
    assert layer.name == "nuclei preview" and layer.metadata[ROLE_KEY] == "preview"
    assert layer in viewer.layers and layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    assert viewer.layers.index(layer) == viewer.layers.index(image) + 1
    assert viewer.layers.selection.active is annotation  # painting is not interrupted
    # what is in view, as napari's canvas drew it
    assert preview.region == preview.current_region()
    visible = image.corner_pixels
    assert preview.region.box == (*visible[0], *(visible[1] + 1))

    # -- ... and changes while the network trains ---------------------------------------
    first = layer.data.copy()
    qtbot.waitUntil(
        lambda: preview.n_refreshes >= 3 and not np.array_equal(layer.data, first),
        timeout=60000,
    )
    assert train.state is TrainingState.TRAINING

    # -- pan and zoom: the new view is predicted, the old one cleared ------------------
    look_at(viewer, qtbot, image, (400, 550), zoom_factor=4)
    qtbot.waitUntil(lambda: preview.region is not None and preview.region.top > 0, timeout=30000)
    region = preview.region
    assert region.top <= 400 < region.bottom and region.left <= 550 < region.right
    assert region.shape[0] < image.data.shape[0] and region.shape[1] < image.data.shape[1]
    outside = np.ones(layer.data.shape, bool)
    outside[region.index] = False
    qtbot.waitUntil(lambda: not layer.data[outside].any(), timeout=5000)

    # -- stop: the preview stays, now showing the trained model -------------------------
    train.stop()
    qtbot.waitUntil(lambda: train.state is TrainingState.STOPPED, timeout=10000)
    session = session_for(viewer)
    qtbot.waitUntil(lambda: preview.model is session.model and not preview.busy, timeout=30000)
    assert layer in viewer.layers
    assert preview.region.top <= 400 < preview.region.bottom  # still the zoomed view
    assert "trained model" in preview.status.value

    # -- turned off: no more predictions ----------------------------------------------
    preview.on.value = False
    n = preview.n_refreshes
    look_at(viewer, qtbot, image, (100, 100), zoom_factor=1)
    qtbot.wait(600)  # longer than the debounce
    assert preview.n_refreshes == n and not preview.predicting

    # the preview never edits the annotation
    np.testing.assert_array_equal(annotation.data, before)


def test_predicted_cells_become_annotated_cells_in_one_undoable_step(make_napari_viewer, qtbot):
    from napari_unet._sample_data import nuclei_ground_truth

    viewer = make_napari_viewer(show=True)
    image = open_sample(viewer)  # annotated: the nuclei of the upper-left quarter
    annotation = viewer.layers["nuclei annotation"]
    masks = np.asarray(nuclei_ground_truth()[1][0])
    segmentation = viewer.add_labels(
        masks,
        name="nuclei segmentation",
        metadata={ROLE_KEY: "segmentation"},
        scale=SCALE,
        translate=TRANSLATE,
    )
    train = dock(viewer, "Train")
    accept = train.accept
    assert accept.source.value is segmentation
    before = annotation.data.copy()
    next_id = int(before.max()) + 1

    # a nucleus away from the annotated quarter
    cell = int(masks[400, 560]) or int(np.bincount(masks[300:, 400:].ravel())[1:].argmax() + 1)
    ys, xs = np.nonzero(masks == cell)
    centre = (int(np.median(ys)), int(np.median(xs)))
    assert masks[centre] == cell and not before[masks == cell].any()

    # -- one cell at a position ----------------------------------------------------------
    assert accept.accept_at(world(centre)) == 1
    np.testing.assert_array_equal(annotation.data == next_id, masks == cell)
    np.testing.assert_array_equal(annotation.data[masks != cell], before[masks != cell])
    assert accept.accept_at(world(centre)) == 0  # annotated already
    assert "already annotated" in accept.status.value
    annotation.undo()
    np.testing.assert_array_equal(annotation.data, before)

    # -- the key A over a cell, on the annotation layer ----------------------------------
    viewer.layers.selection.active = annotation
    viewer.cursor.position = world(centre)
    annotation.keymap[KeyBinding.from_str("A")](annotation)
    np.testing.assert_array_equal(annotation.data == next_id, masks == cell)
    annotation.undo()

    # -- a click on a cell, through napari's mouse callbacks -----------------------------
    accept.click.value = True
    assert annotation.mode == "pan_zoom"  # a click accepts, it does not paint
    click(viewer, world(centre))
    np.testing.assert_array_equal(annotation.data == next_id, masks == cell)
    accept.click.value = False
    annotation.undo()
    np.testing.assert_array_equal(annotation.data, before)

    # -- every cell in the view, as one step ---------------------------------------------
    look_at(viewer, qtbot, segmentation, (390, 520), zoom_factor=3)
    n = accept.accept_in_view()
    assert n >= 3
    new = annotation.data != before
    added = np.unique(annotation.data[new])
    np.testing.assert_array_equal(added, np.arange(next_id, next_id + n))
    for new_id in added:  # each new id is exactly one whole nucleus
        (source,) = np.unique(masks[annotation.data == new_id])
        np.testing.assert_array_equal(annotation.data == new_id, masks == source)
    annotation.undo()
    np.testing.assert_array_equal(annotation.data, before)

    # -- every cell in a drawn box, as one step ------------------------------------------
    box_layer = accept.start_box()
    assert box_layer.name == "accept box" and box_layer.mode == "add_rectangle"
    assert viewer.layers.selection.active == box_layer  # ready to draw
    box_layer.add_rectangles(np.array([[300, 420], [500, 690]]))  # pixels of the sample
    n = accept.accept_in_box()
    assert n >= 3
    new = annotation.data != before
    for new_id in np.unique(annotation.data[new]):
        ys, xs = np.nonzero(annotation.data == new_id)
        assert ys.min() >= 300 and ys.max() < 500 and xs.min() >= 420 and xs.max() < 690
    annotation.undo()
    np.testing.assert_array_equal(annotation.data, before)
    del image


def test_a_second_round_continues_from_the_session_model_and_its_optimiser(
    make_napari_viewer, qtbot, monkeypatch
):
    import napari_unet.training.loop

    calls = []
    real_train = napari_unet.training.loop.train

    def recording_train(*args, **kwargs):
        calls.append(kwargs)
        return (yield from real_train(*args, **kwargs))

    monkeypatch.setattr(napari_unet.training.loop, "train", recording_train)
    viewer = make_napari_viewer()
    open_sample(viewer)
    train = dock(viewer, "Train")
    tiny_training(train, n_iterations=3)
    train.start()
    qtbot.waitUntil(lambda: train.state is TrainingState.DONE, timeout=60000)
    session = session_for(viewer)
    first_model, first_state = session.model, session.optimizer_state
    assert calls[0]["optimizer_state"] is None
    assert first_state["state"]  # Adam's moments, one entry per parameter
    # the next round starts from the session's model by itself
    assert train.settings.start_from.value == "session"

    train.start_button.native.click()
    qtbot.waitUntil(lambda: train.state is TrainingState.DONE, timeout=60000)
    assert calls[1]["model"] is first_model
    assert calls[1]["optimizer_state"] is first_state
    assert session.model is not first_model
    # the optimiser went on counting its steps: it did not start cold
    steps = {float(s["step"]) for s in session.optimizer_state["state"].values()}
    assert steps == {6.0}


def test_one_dock_trains_and_segments_the_whole_image(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = open_sample(viewer)
    loop = dock(viewer, "U-Net (all steps)")
    assert isinstance(loop, LoopWidget)
    assert [loop.tabs.tabText(i) for i in range(loop.tabs.count())] == [
        "Annotate",
        "Weight map",
        "Train",
        "Segment",
    ]
    assert loop.annotate._session is loop.train._session is session_for(viewer)
    assert not loop.segment_button.enabled  # no model yet

    tiny_training(loop.train, n_iterations=3)
    loop.train.preview.on.value = False
    loop.train.start()
    qtbot.waitUntil(lambda: loop.train.state is TrainingState.DONE, timeout=60000)
    assert loop.segment_button.enabled
    loop.segment_button.native.click()
    assert loop.segment.running
    assert loop.tabs.tabText(loop.tabs.currentIndex()) == "Segment"
    qtbot.waitUntil(lambda: not loop.segment.running, timeout=60000)
    labels = loop.segment.last_labels
    assert labels is not None and labels.name == "nuclei segmentation", loop.segment.info.value
    assert labels.data.shape == image.data.shape
    # a segmentation is a source of cells for the annotation too
    assert labels in loop.train.accept.source.choices


def test_removing_the_one_dock_stops_training(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    open_sample(viewer)
    dock_widget, loop = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net (all steps)")
    tiny_training(loop.train, n_iterations=100_000)
    worker = loop.train.start()
    qtbot.waitUntil(lambda: bool(loop.train.loss_plot.iterations), timeout=30000)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        viewer.window.remove_dock_widget(dock_widget)
        assert loop.train.worker is None  # stopped and waited for, synchronously


def test_closing_the_viewer_mid_training_with_the_preview_on(
    make_napari_viewer, qtbot, fast_snapshots
):
    viewer = make_napari_viewer(show=True)
    open_sample(viewer)
    train = dock(viewer, "Train")
    tiny_training(train, n_iterations=100_000)
    worker = train.start()
    qtbot.waitUntil(lambda: train.preview.predicting, timeout=60000)
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    viewer.close()  # returns: no hang on the training or the preview worker
    assert train.worker is None
    qtbot.waitUntil(lambda: bool(finished), timeout=5000)


def test_each_separate_stroke_paints_a_new_cell(make_napari_viewer):
    viewer = make_napari_viewer()
    open_sample(viewer, "nuclei")
    annotate = dock(viewer, "Annotate")
    assert annotate.auto_new_cell.value  # on by default
    layer = annotate.create_annotation()
    layer.brush_size = 6

    def stroke(pixel):
        """A brush stroke of one dab at a data pixel, through napari's mouse callbacks."""
        click(layer, world(pixel))

    annotate.cell_button.native.click()
    assert layer.selected_label == 2 and layer.mode == "paint"
    stroke((100, 100))
    assert layer.data[100, 100] == 2
    stroke((102, 101))  # starts on the cell: the same cell
    assert layer.data[102, 101] == 2 and layer.selected_label == 2
    stroke((200, 300))  # away from it: the next id, with no click
    assert layer.data[200, 300] == 3 and layer.selected_label == 3
    assert set(np.unique(layer.data)) == {0, 2, 3}
    # the key N selects the next free id, as "New cell" does
    layer.keymap[KeyBinding.from_str("N")](layer)
    assert layer.selected_label == 4
    # background strokes keep label 1
    annotate.background_button.native.click()
    stroke((400, 400))
    assert layer.data[400, 400] == 1 and layer.selected_label == 1
    # turned off: a stroke anywhere keeps the current id
    annotate.auto_new_cell.value = False
    layer.selected_label = 2
    stroke((300, 600))
    assert layer.data[300, 600] == 2


def test_the_preview_follows_a_change_of_plane(make_napari_viewer, qtbot, fast_snapshots):
    from napari_unet._sample_data import nuclei_annotated

    (image, _, _), (annotation, _, _) = nuclei_annotated()
    viewer = make_napari_viewer()
    stack = viewer.add_image(np.stack([image[:256, :320], image[-256:, -320:]]), name="stack")
    labels = np.zeros(stack.data.shape, np.uint16)
    labels[0] = annotation[:256, :320]  # the annotated corner, on plane 0 only
    viewer.add_labels(labels, name="stack annotation")
    train = dock(viewer, "Train")
    train.data.image_layer.value = stack
    train.data.stack_kind.value = "time series"  # two unrelated planes, not a volume
    train.data.annotation_layer.value = viewer.layers["stack annotation"]
    tiny_training(train, n_iterations=100_000)
    viewer.dims.set_current_step(0, 0)
    train.start()
    preview = train.preview
    qtbot.waitUntil(lambda: preview.n_refreshes >= 1, timeout=60000)
    layer = preview.layer
    assert layer.name == "stack preview" and layer.data.shape == stack.data.shape
    assert preview.region.plane == (0,)
    qtbot.waitUntil(lambda: layer.data[0].any(), timeout=60000)  # cells on plane 0

    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: preview.region.plane == (1,), timeout=30000)
    assert not layer.data[0].any()  # the other plane's preview is cleared
    train.stop()
    qtbot.waitUntil(lambda: not train.state.running, timeout=10000)


def test_the_preview_reads_the_image_again_after_its_data_changed(make_napari_viewer, qtbot):
    from napari_unet.models.files import load_model

    viewer = make_napari_viewer()
    image = open_sample(viewer)
    train = dock(viewer, "Train")
    preview = train.preview
    preview.attach(image, "cpu")
    preview.show_model(load_model("default"), "default")
    qtbot.waitUntil(lambda: preview.n_refreshes >= 1 and not preview.predicting, timeout=30000)
    first = preview.layer.data.copy()
    assert first.max() > 10
    # the user replaces the image's pixels: the next prediction reads the new ones
    image.data = np.zeros_like(image.data)
    preview.refresh()
    qtbot.waitUntil(lambda: preview.n_refreshes >= 2 and not preview.predicting, timeout=30000)
    assert preview.layer.data.max() == 0  # no cells in a blank image
