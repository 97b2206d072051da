"""*Weight map* dock widget: the loss weights of eq. 2 of the paper, live while painting.

``w(x) = w_c(x) + w0 · exp(-(d1(x) + d2(x))² / (2σ²))`` (Ronneberger et al. 2015):
high weights in the thin background gaps between touching cells, 0 on pixels that are
not annotated. The map is computed in a thread worker, shown as one Image layer that
is updated in place, and recomputed 300 ms after the last brush stroke. The map of a
volume (its axis labels, or the "stack is a" choice) is one 3D map with 3D distances and
the voxel size of the layer's ``scale`` (:mod:`napari_unet.method.weight_map_3d`), shown
as a 3D layer.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from ._common import ROLE_KEY, layer_data, message_label, placement
from ._lifetime import LayerWatch, WidgetLifetime
from ._loss_fields import LossFields
from ._session import session_for
from ._stack_kind import StackKind

#: Quiet time (ms) after the last edit before the weight map is recomputed.
DEBOUNCE_MS = 300


def _labels_first_annotations(viewer):
    def choices(_widget=None):
        layers = [layer for layer in viewer.layers if isinstance(layer, Labels)]
        layers.sort(key=lambda layer: layer.metadata.get(ROLE_KEY) != "annotation")
        return [(layer.name, layer) for layer in layers]

    return choices


class WeightMapWidget(Container):
    """Show the separation-border weight map of an annotation as an Image layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self._viewer = napari_viewer
        self._session = session_for(napari_viewer)
        self._lifetime = WidgetLifetime(self.native)
        self._layer = None  # the weight-map Image layer this widget updates
        self._target = None  # the annotation layer of the running computation
        self._showing = False
        self._dirty = False
        self._watch = LayerWatch(self._lifetime, self.schedule_update)

        self.annotation_layer = ComboBox(
            label="annotation", choices=_labels_first_annotations(napari_viewer)
        )
        self._stack = StackKind()  # where the layer does not say: volume, time series, …
        self.stack_kind = self._stack.combo
        self.loss = LossFields(self._session, self._lifetime)
        self.w0, self.sigma, self.dense = self.loss.w0, self.loss.sigma, self.loss.dense
        self.show_button = PushButton(text="Show weight map")
        self.status = message_label()
        self.extend(
            [self.annotation_layer, self.stack_kind, self.loss, self.show_button, self.status]
        )

        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._lifetime.guard(self._compute))

        guard = self._lifetime.guard
        self.show_button.changed.connect(guard(self.show_weight_map))
        self.annotation_layer.changed.connect(guard(self._on_annotation_changed))
        self.stack_kind.changed.connect(guard(self.schedule_update))
        self._lifetime.connect(self._session.loss_settings_changed, self.schedule_update)
        self._lifetime.connect(napari_viewer.layers.events.removed, self._on_layer_removed)
        self.reset_choices()
        self._on_annotation_changed()

    @property
    def layer(self):
        """The weight-map Image layer (``None`` before :meth:`show`)."""
        return self._layer

    @property
    def busy(self) -> bool:
        """Whether a computation is running or scheduled."""
        return self._lifetime.running or self._timer.isActive()

    def show_weight_map(self, *_):
        """Compute the weight map now and keep it up to date while painting."""
        if self.annotation_layer.value is None:
            show_error("Select an annotation (Labels) layer first.")
            return
        self._showing = True
        self._compute()

    def schedule_update(self, *_):
        """Recompute after :data:`DEBOUNCE_MS` of quiet (restarted by every edit)."""
        if self._showing:
            self._timer.start()

    # -- internals ---------------------------------------------------------------------
    def _compute(self, *_):
        annotation = self.annotation_layer.value
        if annotation is None or not self._showing:
            return
        if self._lifetime.running:
            self._dirty = True  # recompute when the running one is done
            return
        from napari_unet.method.axes import is_volume
        from napari_unet.method.weight_map import iter_weight_map
        from napari_unet.method.weight_map_3d import iter_volume_weight_map

        try:
            axes, spacing = self._stack.axes_and_spacing(annotation)
        except ValueError as error:
            self._on_errored(error)
            return
        self._dirty = False
        self.status.value = "computing…"
        self._target = annotation
        args = (layer_data(annotation), self._session.training_config())
        if is_volume(axes):  # one 3D map: 3D distances with the voxel size
            job, args = iter_volume_weight_map, (*args, spacing, self._session.dense)
        else:
            job, args = iter_weight_map, (*args, self._session.dense)
        self._lifetime.run(
            job,
            *args,
            returned=self._on_returned,
            errored=self._on_errored,
            finished=self._on_finished,
        )

    def _on_returned(self, weights: np.ndarray) -> None:
        annotation = self._target
        if annotation not in self._viewer.layers:
            return  # deleted while the map was computed
        name = f"{annotation.name} weight map"
        top = float(weights.max()) if weights.size else 0.0
        limits = (0.0, max(top, 1e-6))
        layer = self._layer
        if layer is not None and layer in self._viewer.layers:
            if layer.data.shape == weights.shape:
                layer.data[...] = weights  # in place
                layer.refresh()
            else:
                layer.data = weights
            layer.contrast_limits = limits
            layer.name = name
            layer.scale, layer.translate = annotation.scale, annotation.translate
        else:
            self._layer = self._viewer.add_image(
                weights,
                name=name,
                colormap="magma",
                blending="additive",
                contrast_limits=limits,
                metadata={ROLE_KEY: "weight_map"},
                **placement(annotation),
            )
        self.status.value = (
            f"max weight {top:.2f} (w0 = {self.w0.value:g}, σ = {self.sigma.value:g} px)"
        )

    def _on_errored(self, error: Exception) -> None:
        self.status.value = "failed"
        show_error(f"Weight map failed: {error}")

    def _on_finished(self) -> None:
        if self._dirty:
            self._compute()

    def _on_annotation_changed(self, *_):
        self._stack.follow(self.annotation_layer.value)
        self._watch.watch(self.annotation_layer.value)
        self.schedule_update()

    def _on_layer_removed(self, event) -> None:
        if event.value is self._layer:
            # The user deleted the map: stop updating until "Show weight map" again.
            self._layer = None
            self._showing = False
            self._timer.stop()
