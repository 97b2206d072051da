"""The corrections part of the *Train* widget: predicted cells taken into the annotation.

A cell of the live preview (or of a *Segment* result) becomes a new annotated cell
with one click, with the key **A** over it, or all cells of the view or of a drawn
box at once (only the cells whose confidence reaches :attr:`AcceptCells.min_confidence`,
when the source layer's ``features`` hold one, as the live preview's do). The
pixels come from :func:`napari_unet.live.corrections.accept_cells` (only pixels not
annotated yet change) and are written with napari's ``data_setitem`` inside
``block_history``: every action is one step of the annotation layer's undo (Ctrl+Z).
From a 3D segmentation of a volume (``metadata["axes"]`` with ``Z``) a cell is taken
whole, in all its planes with one id; the view and the box pick the cells that cross
the displayed plane.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton
from napari.layers import Labels
from napari.utils.notifications import show_error

from ._common import ROLE_KEY, displayed_plane, message_label, same_layer
from ._lifetime import WidgetLifetime

#: Key that accepts the predicted cell under the mouse (bound on the annotation layer
#: and the layers cells are taken from).
ACCEPT_KEY = "a"
#: Roles (``layer.metadata[ROLE_KEY]``) of the layers cells can be taken from.
SOURCE_ROLES = ("preview", "segmentation")
#: Name of the Shapes layer whose last rectangle "Accept all cells in the box" uses.
BOX_LAYER = "accept box"


class AcceptCells(Container):
    """Take predicted cells into the annotation, each action undoable.

    Parameters
    ----------
    viewer : napari.Viewer
    annotation : callable
        Returns the annotation layer to write into; raises ``ValueError`` (with a
        message for the user) when there is none.
    lifetime : WidgetLifetime
        The lifetime of the widget this part belongs to.
    predicted_box : callable, optional
        ``predicted_box(source_layer, plane)`` returns the ``(top, left, bottom,
        right)`` part of ``source_layer`` that holds a prediction (the live preview
        covers only the view it predicted), or ``None`` for all of it.
    """

    def __init__(
        self,
        viewer,
        annotation: Callable,
        lifetime: WidgetLifetime,
        predicted_box: Callable | None = None,
    ):
        super().__init__()
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._annotation = annotation
        self._lifetime = lifetime
        self._predicted_box = predicted_box
        self._keyed: weakref.WeakSet = weakref.WeakSet()  # (unwrapped) layers with the key
        self._click_callback = None

        self.source = ComboBox(label="cells from", choices=self._sources)
        self.source.tooltip = "The preview, or a Segment result, to take cells from"
        self.click = CheckBox(text=f"click a cell to accept it (key: {ACCEPT_KEY.upper()})")
        self.click.tooltip = (
            "Each click on a predicted cell adds it to the annotation as a new cell; "
            "Ctrl+Z on the annotation undoes it"
        )
        self.in_view = PushButton(text="Accept all cells in view")
        self.in_view.tooltip = "Every predicted cell entirely in the view (not cut by its edge)"
        self.draw_box = PushButton(text="Draw a box")
        self.draw_box.tooltip = f"A Shapes layer {BOX_LAYER!r} in rectangle mode"
        self.in_box = PushButton(text="Accept all cells in the box")
        self.in_box.tooltip = f"Every predicted cell entirely in the last box of {BOX_LAYER!r}"
        from napari_unet.live.guidance import DEFAULT_MIN_CONFIDENCE

        self.min_confidence = FloatSpinBox(
            label="accept above confidence",
            value=DEFAULT_MIN_CONFIDENCE,
            min=0.0,
            max=1.0,
            step=0.05,
        )
        self.min_confidence.tooltip = (
            "All cells in view / in the box: take only predicted cells at least this sure "
            "(0 to 1; hover a cell to see its confidence). The default took cells that were "
            "98-99 % correct on annotated images; 0 takes every cell."
        )
        self.status = message_label()
        boxes = Container(widgets=[self.draw_box, self.in_box], layout="horizontal", labels=False)
        boxes.margins = (0, 0, 0, 0)
        self.extend(
            [self.source, self.click, self.min_confidence, self.in_view, boxes, self.status]
        )

        guard = lifetime.guard
        self.click.changed.connect(guard(self._on_click_toggled))
        self.in_view.changed.connect(guard(self.accept_in_view))
        self.draw_box.changed.connect(guard(self.start_box))
        self.in_box.changed.connect(guard(self.accept_in_box))
        lifetime.connect(viewer.layers.events.inserted, self._on_layers_changed)
        lifetime.connect(viewer.layers.events.removed, self._on_layers_changed)
        lifetime.connect(viewer.layers.selection.events.active, self._bind_key)
        self._key_slot = guard(self._on_key)

    # -- actions -----------------------------------------------------------------------
    def accept_at(self, position) -> int:
        """Accept the predicted cell at ``position`` (world coordinates).

        Returns the number of cells added (0 or 1); the reason is in :attr:`status`.
        """
        layers = self._layers()
        if layers is None:
            return 0
        annotation, source = layers
        coords = np.round(source.world_to_data(position)).astype(int)
        if np.any(coords < 0) or np.any(coords >= source.data.shape):
            self.status.value = "The cursor is outside the image."
            return 0
        cell = int(source.data[tuple(coords)])
        if cell == 0:
            self.status.value = f"No cell of {source.name!r} under the cursor."
            return 0
        return self._accept(annotation, source, tuple(int(c) for c in coords[:-2]), [cell])

    def accept_in_view(self, *_) -> int:
        """Accept every predicted cell entirely inside the view; returns how many."""
        from napari_unet.live.preview import view_region

        layers = self._layers()
        if layers is None:
            return 0
        annotation, source = layers
        plane = self._current_plane(source)
        box = view_region(source.corner_pixels, source.data.shape, plane).box
        return self._accept_inside(annotation, source, plane, box, "the view")

    def start_box(self, *_):
        """Add (or select) the :data:`BOX_LAYER` Shapes layer, ready to draw a rectangle."""
        from napari.layers import Shapes

        layer = self._box_layer()
        if layer is None:
            source = self.source.value
            placement = {}
            if source is not None:  # the box is drawn in the source's pixels
                placement = {"scale": source.scale[-2:], "translate": source.translate[-2:]}
            layer = self._viewer.add_layer(
                Shapes(
                    name=BOX_LAYER,
                    ndim=2,
                    edge_color="yellow",
                    face_color="transparent",
                    edge_width=2,
                    **placement,
                )
            )
        self._viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def accept_in_box(self, *_) -> int:
        """Accept every predicted cell entirely inside the last box drawn; returns how many."""
        layers = self._layers()
        if layers is None:
            return 0
        annotation, source = layers
        box_layer = self._box_layer()
        if box_layer is None or len(box_layer.data) == 0:
            self.status.value = "Draw a box first (Draw a box, then drag on the image)."
            return 0
        plane = self._current_plane(source)
        leading = tuple(self._viewer.dims.point[:-2])
        pixels = np.array(
            [
                source.world_to_data((*leading, *box_layer.data_to_world(corner)[-2:]))[-2:]
                for corner in np.asarray(box_layer.data[-1])[:, -2:]
            ]
        )
        low = np.floor(pixels.min(axis=0)).astype(int)
        high = np.ceil(pixels.max(axis=0)).astype(int)
        box = (int(low[0]), int(low[1]), int(high[0]), int(high[1]))
        return self._accept_inside(annotation, source, plane, box, "the box")

    # -- internals ---------------------------------------------------------------------
    def _accept(self, annotation, source, plane: tuple[int, ...], ids) -> int:
        from napari_unet.live.corrections import accept_cells, next_cell_id
        from napari_unet.method.axes import is_volume

        if is_volume(source.metadata.get("axes")):
            plane = plane[:-1]  # 3D cells: the whole volume the plane lies in
        try:
            accepted = accept_cells(
                self._plane(annotation, plane),
                self._plane(source, plane),
                ids,
                first_id=next_cell_id(annotation.data),
            )
        except ValueError as error:
            show_error(f"Cannot accept cells: {error}")
            return 0
        if accepted.n_cells:
            size = accepted.values.shape
            index = (*(np.full(size, i, np.intp) for i in plane), *accepted.indices)
            with annotation.block_history():  # one undo step for the whole action
                annotation.data_setitem(index, accepted.values)
        skipped = f"; {accepted.skipped} already annotated" if accepted.skipped else ""
        n = accepted.n_cells
        self.status.value = (
            f"{n} cell{'s' if n != 1 else ''} added to {annotation.name!r}{skipped}"
            + (" (Ctrl+Z undoes)" if n else "")
        )
        return n

    def _current_plane(self, source) -> tuple[int, ...]:
        """Indices of the leading axes of ``source`` at the viewer's current position."""
        return displayed_plane(self._viewer, source)

    def _accept_inside(self, annotation, source, plane, box, where: str) -> int:
        """Accept the cells entirely inside ``box`` (and inside what was predicted)."""
        from napari_unet.live.corrections import cells_inside

        limit = self._predicted_box(source, plane) if self._predicted_box else None
        if limit is not None:
            box = (
                max(box[0], limit[0]),
                max(box[1], limit[1]),
                min(box[2], limit[2]),
                min(box[3], limit[3]),
            )
        ids = cells_inside(self._plane(source, plane), box)
        if ids.size == 0:
            self.status.value = f"No predicted cell lies entirely in {where}."
            return 0
        n_inside = ids.size
        ids = self._confident(source, ids)
        if ids.size == 0:
            self.status.value = (
                f"None of the {n_inside} cells in {where} reaches confidence "
                f"{self.min_confidence.value:.2f}."
            )
            return 0
        n = self._accept(annotation, source, plane, ids)
        if ids.size < n_inside:
            self.status.value += f"; {n_inside - ids.size} below confidence left out"
        return n

    def _confident(self, source, ids) -> np.ndarray:
        """``ids`` at or above the confidence threshold (all when ``source`` has none)."""
        from napari_unet.live.guidance import confident_cells

        features = source.features
        if "confidence" not in features or "index" not in features:
            return ids
        return confident_cells(
            ids, features["index"], features["confidence"], self.min_confidence.value
        )

    def _box_layer(self):
        from napari.layers import Shapes

        for layer in self._viewer.layers:
            if isinstance(layer, Shapes) and layer.name == BOX_LAYER:
                return layer
        return None

    @staticmethod
    def _plane(layer, plane: tuple[int, ...]) -> np.ndarray:
        return np.asarray(layer.data[plane] if plane else layer.data)

    def _layers(self):
        """``(annotation, source)`` checked, or ``None`` with the reason shown."""
        source = self.source.value
        try:
            annotation = self._annotation()
        except ValueError as error:
            self.status.value = f"Choose the annotation first: {error}."
            return None
        if source is None or source not in self._viewer.layers:
            self.status.value = "Nothing to take cells from: train with the preview on, or segment."
            return None
        if tuple(source.data.shape) != tuple(annotation.data.shape):
            self.status.value = (
                f"{source.name!r} {tuple(source.data.shape)} and {annotation.name!r} "
                f"{tuple(annotation.data.shape)} differ in shape."
            )
            return None
        return annotation, source

    def _sources(self, _widget=None):
        layers = [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, Labels) and layer.metadata.get(ROLE_KEY) in SOURCE_ROLES
        ]
        layers.sort(key=lambda layer: SOURCE_ROLES.index(layer.metadata[ROLE_KEY]))
        return [(layer.name, layer) for layer in layers]

    def _on_layers_changed(self, *_) -> None:
        self.source.reset_choices()

    def _bind_key(self, *_) -> None:
        layer = self._viewer.layers.selection.active
        if not isinstance(layer, Labels) or getattr(layer, "__wrapped__", layer) in self._keyed:
            return
        is_source = layer.metadata.get(ROLE_KEY) in SOURCE_ROLES
        try:
            is_annotation = same_layer(layer, self._annotation())
        except ValueError:
            is_annotation = False
        if is_source or is_annotation:
            layer.bind_key(ACCEPT_KEY, self._key_slot, overwrite=True)
            self._keyed.add(getattr(layer, "__wrapped__", layer))

    def _on_key(self, _layer=None) -> None:
        self.accept_at(self._viewer.cursor.position)

    def _on_click_toggled(self, on: bool) -> None:
        callbacks = self._viewer.mouse_drag_callbacks
        if on and self._click_callback is None:
            self._click_callback = self._lifetime.guard(self._on_mouse)
            callbacks.append(self._click_callback)
            active = self._viewer.layers.selection.active
            if isinstance(active, Labels) and active.mode != "pan_zoom":
                active.mode = "pan_zoom"  # a click must accept, not paint
        elif not on and self._click_callback is not None:
            if self._click_callback in callbacks:
                callbacks.remove(self._click_callback)
            self._click_callback = None

    def _on_mouse(self, viewer, event):
        """Viewer drag callback: a click (press and release without a drag) accepts."""
        if event.button != 1:
            return
        yield
        moved = False
        while event.type == "mouse_move":
            moved = True
            yield
        if not moved:
            self.accept_at(event.position)
