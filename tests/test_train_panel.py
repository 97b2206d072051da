"""The Train panel in the order of the work (issue 18): what is on top, what is Advanced."""

from __future__ import annotations

import pytest
from magicgui.widgets import Container, FileEdit, Label
from napari_helpers import dock, open_sample

pytestmark = pytest.mark.gui


def _fields(container) -> list:
    """Every field of ``container``'s tree (inputs, buttons, the score), top to bottom."""
    found = []
    for widget in container:
        if isinstance(widget, Container) and not isinstance(widget, FileEdit):
            found += _fields(widget)
        elif not isinstance(widget, Label) or widget.tooltip:  # not a bare status line
            found.append(widget)
    return found


def _advanced_fields(train) -> list:
    settings, loss = train.settings, train.loss
    return [
        settings.learning_rate,
        settings.batch_size,
        settings.tile_size,
        settings.seed,
        settings.device,
        loss.w0,
        loss.sigma,
        loss.dense,
        settings.start_from,
        settings.n_iterations,
        settings.object_size,
        settings.augment,
        settings.scheduler,
        train.data.pair_list,
    ]


def test_the_top_holds_the_work_and_advanced_hides_the_rest(make_napari_viewer):
    viewer = make_napari_viewer()
    open_sample(viewer)
    train = dock(viewer, "Train")
    # on top, in this order: image (and its stack kind), annotation, minutes, Start/Stop, the score, the curve
    assert list(train.inputs) == [
        train.data.image_layer,
        train.data.stack_kind,  # a stack's kind, right after its image
        train.data.annotation_layer,
        train.settings.minutes,
    ]
    layout = train.top.native.layout()
    top = [layout.itemAt(i).widget() for i in range(layout.count())]
    assert top == [
        train.inputs.native,
        train.start_button.native,
        train.progress.native,
        train.status.native,
        train.painted_score.native,
        train.loss_plot.canvas,
    ]
    assert list(train) == [
        train.top,
        train.preview,
        train.where_next,
        train.accept,
        train.output,
        train.advanced,
    ]
    # the Advanced section starts closed: its fields are hidden, the top ones are not
    assert not train.advanced.expanded
    shown = [field.native.isVisibleTo(train.native) for field in _advanced_fields(train)]
    assert not any(shown)
    # a single plane has no stack to name: the stack kind is hidden, the rest is shown
    assert not train.data.stack_kind.native.isVisibleTo(train.native)
    shown = [field for field in train.inputs if field is not train.data.stack_kind]
    assert all(field.native.isVisibleTo(train.native) for field in shown)
    assert all(field in _fields(train.advanced) for field in _advanced_fields(train))
    assert not set(map(id, _fields(train.top))) & set(map(id, _fields(train.advanced)))
    train.advanced.header.click()
    assert train.advanced.expanded
    shown = [field.native.isVisibleTo(train.native) for field in _advanced_fields(train)]
    assert all(shown)
    # closed again: the values stay, and training still reads them
    train.settings.learning_rate.value = 0.005
    train.advanced.header.click()
    assert not train.settings.learning_rate.native.isVisibleTo(train.native)
    assert train.settings.config(train._session).learning_rate == pytest.approx(0.005)


def test_every_field_has_a_tooltip_in_plain_words_with_units(make_napari_viewer):
    from napari_unet.training.settings_help import SETTINGS_HELP

    viewer = make_napari_viewer()
    open_sample(viewer)
    train = dock(viewer, "Train")
    fields = _fields(train)
    assert len(fields) >= 25
    missing = [getattr(field, "label", None) or field.text for field in fields if not field.tooltip]
    assert missing == []
    assert train.loss_plot.canvas.toolTip() and train.advanced.header.toolTip()
    settings = train.settings
    for field, key in (
        (train.data.image_layer, "image"),
        (settings.minutes, "minutes"),
        (settings.learning_rate, "learning_rate"),
        (settings.tile_size, "tile_shape"),
        (train.loss.sigma, "sigma"),
    ):
        assert field.tooltip.startswith(SETTINGS_HELP[key])
    for field, unit in (
        (settings.minutes, "minutes"),
        (settings.tile_size, "pixels"),
        (settings.object_size, "pixels"),
        (train.loss.sigma, "pixels"),
        (settings.batch_size, "tiles"),
    ):
        assert unit in field.tooltip


def test_the_one_dock_train_tab_is_the_same_panel(make_napari_viewer):
    viewer = make_napari_viewer()
    open_sample(viewer)
    loop = dock(viewer, "U-Net (all steps)")
    train = loop.train
    assert list(train)[0] is train.top and list(train)[-1] is train.advanced
    assert not train.advanced.expanded
    loop.show_tab("Train")
    assert train.data.image_layer.value is viewer.layers["nuclei"]


def test_a_few_painted_cells_are_cross_fitted_and_scored_live(make_napari_viewer, qtbot):
    import numpy as np
    from napari_helpers import tiny_training

    from napari_unet._widgets._session import TrainingState

    viewer = make_napari_viewer()
    image = open_sample(viewer)
    painted = viewer.layers["nuclei annotation"]
    ids = np.unique(painted.data[painted.data >= 2])[:3]
    three = np.where((painted.data == 1) | np.isin(painted.data, ids), painted.data, 0)
    layer = viewer.add_labels(
        three, name="three cells", scale=image.scale, translate=image.translate
    )
    train = dock(viewer, "Train")
    train.data.annotation_layer.value = layer
    tiny_training(train, n_iterations=4)
    train.settings.start_from.value = "default"  # a fine-tune: the start is judged
    train.start_button.native.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60000)
    assert train.state is TrainingState.DONE, train.status.value
    # one run on the loss curve, scored live at the end of each half on the cells it
    # did not see, and the verdict in words
    assert train.loss_plot.iterations == [1, 2, 3, 4]
    assert [i for i, _ in train.loss_plot.scores] == [2, 4]
    assert train.progress.value == train.progress.max
    assert "3 painted cells, each unseen by the network it scored" in train.painted_score.value
    assert np.array_equal(layer.data, three)  # the painting is untouched
