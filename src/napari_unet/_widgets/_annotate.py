"""*Annotate* dock widget: an annotation layer per image, and one click per brush.

Partial-annotation convention (:mod:`napari_unet.method.annotation`): 0 = not annotated
(ignored by training), 1 = background, 2, 3, … = one id per cell.

Many cells are painted without a click per cell: with *new id for each separate
stroke* on, a cell stroke that does not start on the current cell gets the next free
id (:func:`napari_unet.live.corrections.stroke_label`), and the key **N** selects the next
free id, as the *New cell* button does.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from napari_unet.live.corrections import next_cell_id, stroke_label
from napari_unet.method.annotation import BACKGROUND, FIRST_CELL, NOT_ANNOTATED, annotation_counts

from ._common import (
    ROLE_KEY,
    annotation_choices,
    layer_choices,
    message_label,
    placement,
    spatial_shape,
)
from ._lifetime import LayerWatch, WidgetLifetime
from ._session import session_for

LEGEND = (
    f"label {NOT_ANNOTATED}: not annotated (ignored by training)\n"
    f"label {BACKGROUND}: background\n"
    f"labels {FIRST_CELL}, {FIRST_CELL + 1}, …: one id per cell"
)


#: Key (on the annotation layer) that selects the next free cell id, like *New cell*.
NEXT_CELL_KEY = "n"


class AnnotateWidget(Container):
    """Create or pick the annotation layer of an image and paint it.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when it builds the dock widget).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self._viewer = napari_viewer
        self._session = session_for(napari_viewer)
        self._lifetime = WidgetLifetime(self.native)
        self._watch = LayerWatch(self._lifetime, self._schedule_counts)
        self._press_slot = self._lifetime.guard(self._on_stroke_start)
        self._next_cell_slot = self._lifetime.guard(self._on_next_cell_key)

        self.image_layer = ComboBox(label="image", choices=layer_choices(napari_viewer, Image))
        self.annotation_layer = ComboBox(
            label="annotation",
            choices=annotation_choices(napari_viewer, self._session, self.image_layer),
        )
        self.create_button = PushButton(text="New annotation layer")
        self.create_button.tooltip = (
            "Empty (not annotated) uint16 Labels layer aligned with the image"
        )
        self.background_button = PushButton(text=f"Background brush ({BACKGROUND})")
        self.background_button.tooltip = "Paint background: pixels that are not a cell"
        self.cell_button = PushButton(text=f"New cell ({NEXT_CELL_KEY.upper()})")
        self.cell_button.tooltip = "Paint a new cell with the next free id (one id per cell)"
        self.auto_new_cell = CheckBox(text="new id for each separate stroke", value=True)
        self.auto_new_cell.tooltip = (
            "A cell stroke that does not start on the current cell paints the next "
            "free id: paint cell after cell without clicking New cell"
        )
        self.eraser_button = PushButton(text=f"Eraser ({NOT_ANNOTATED} = not annotated)")
        self.eraser_button.tooltip = "Erase back to 'not annotated' (ignored by training)"
        self.legend = Label(value=LEGEND)
        self.counts = message_label()
        self.extend(
            [
                self.image_layer,
                self.annotation_layer,
                self.create_button,
                self.background_button,
                self.cell_button,
                self.auto_new_cell,
                self.eraser_button,
                self.legend,
                self.counts,
            ]
        )

        # napari emits ``paint`` before it writes the painted pixels (and many times
        # while a stroke is replayed), so counting waits for the next event-loop turn.
        self._count_timer = QTimer(self.native)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(0)
        self._count_timer.timeout.connect(self._lifetime.guard(self._update_counts))

        self.image_layer.changed.connect(self._lifetime.guard(self._on_image_changed))
        self.annotation_layer.changed.connect(self._lifetime.guard(self._on_annotation_changed))
        self.create_button.changed.connect(self._lifetime.guard(self.create_annotation))
        self.background_button.changed.connect(self._lifetime.guard(self.background_brush))
        self.cell_button.changed.connect(self._lifetime.guard(self.new_cell))
        self.eraser_button.changed.connect(self._lifetime.guard(self.eraser))
        self.reset_choices()
        self._on_annotation_changed()

    # -- actions -----------------------------------------------------------------------
    def create_annotation(self, *_):
        """Add an empty annotation Labels layer for the selected image and select it."""
        image = self.image_layer.value
        if image is None:
            show_error("Open or select an image first: the annotation is made for an image.")
            return None
        layer = self._viewer.add_labels(
            np.zeros(spatial_shape(image), np.uint16),
            name=f"{image.name} annotation",
            metadata={ROLE_KEY: "annotation"},
            **placement(image),
        )
        self._session.pair(image, layer)
        self.annotation_layer.reset_choices()
        self.annotation_layer.value = layer
        self.background_brush()
        return layer

    def background_brush(self, *_):
        """Paint background (label 1) on the annotation layer."""
        self._paint(BACKGROUND)

    def new_cell(self, *_):
        """Paint a new cell: the next free id, at least 2."""
        layer = self._annotation_or_error()
        if layer is None:
            return
        label = next_cell_id(layer.data)
        if label > np.iinfo(layer.data.dtype).max:
            show_error(f"The annotation's dtype {layer.data.dtype} holds no further cell id.")
            return
        self._paint(label)

    def eraser(self, *_):
        """Erase to 'not annotated' (label 0)."""
        layer = self._annotation_or_error()
        if layer is None:
            return
        self._activate(layer)
        layer.mode = "erase"

    # -- internals ---------------------------------------------------------------------
    def _paint(self, label: int) -> None:
        layer = self._annotation_or_error()
        if layer is None:
            return
        self._activate(layer)
        layer.selected_label = int(label)
        layer.mode = "paint"

    def _activate(self, layer) -> None:
        self._viewer.layers.selection.active = layer

    def _annotation_or_error(self):
        layer = self.annotation_layer.value
        if layer is None:
            show_error("Create or select an annotation layer first.")
        return layer

    def _on_image_changed(self, *_):
        self.annotation_layer.reset_choices()

    def _on_annotation_changed(self, *_):
        layer = self.annotation_layer.value
        if layer is not None and self.image_layer.value is not None:
            self._session.pair(self.image_layer.value, layer)
        previous = self._watch.layer
        if self._watch.watch(layer):
            if previous is not None:
                if self._press_slot in previous.mouse_drag_callbacks:
                    previous.mouse_drag_callbacks.remove(self._press_slot)
                previous.bind_key(NEXT_CELL_KEY, None)
            if layer is not None:
                # before napari's own paint callback, which every mode change re-appends
                layer.mouse_drag_callbacks.insert(0, self._press_slot)
                layer.bind_key(NEXT_CELL_KEY, self._next_cell_slot, overwrite=True)
        self._update_counts()

    def _on_stroke_start(self, layer, event) -> None:
        """Mouse press on the annotation (before napari paints): choose the stroke's id."""
        if not self.auto_new_cell.value or layer.mode != "paint" or event.button != 1:
            return
        if layer.selected_label < FIRST_CELL:
            return
        coords = np.round(layer.world_to_data(event.position)).astype(int)
        if np.any(coords < 0) or np.any(coords >= layer.data.shape):
            return
        plane = tuple(int(c) for c in coords[:-2])
        data = np.asarray(layer.data[plane] if plane else layer.data)
        label = stroke_label(
            data,
            int(layer.selected_label),
            tuple(coords[-2:]),
            radius=float(layer.brush_size) / 2,
            next_id=next_cell_id(layer.data) if plane else None,
        )
        if label > np.iinfo(layer.data.dtype).max:
            return
        if label != layer.selected_label:
            layer.selected_label = label

    def _on_next_cell_key(self, _layer=None) -> None:
        self.new_cell()

    def _schedule_counts(self, *_):
        self._count_timer.start()

    def _update_counts(self, *_):
        layer = self.annotation_layer.value
        if layer is None:
            self.counts.value = "No annotation layer."
            return
        n_cells, n_annotated, n_background = annotation_counts(layer.data)
        self.counts.value = (
            f"{n_cells} cell{'s' if n_cells != 1 else ''} annotated · "
            f"{n_annotated} px annotated ({n_background} px background)"
        )

    @property
    def n_cells(self) -> int:
        """Number of annotated cells in the selected annotation layer."""
        layer = self.annotation_layer.value
        return 0 if layer is None else annotation_counts(layer.data)[0]
