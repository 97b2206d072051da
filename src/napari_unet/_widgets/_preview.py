"""The live-preview part of the *Train* widget: the latest weights' segmentation of the view.

While training runs, every snapshot of the network (``TrainingProgress.snapshot``)
is handed to :meth:`LivePreview.show_model`; the preview segments the visible part
of the current plane (:func:`napari_unet.live.preview.iter_preview`) in its own thread
worker, on the snapshot (a copy: training never waits for it), and writes the result
into a Labels layer named ``"{image} preview"``, each cell's confidence in the layer's
``features`` (shown on hover); with *show uncertainty* on, the per-pixel uncertainty
goes into an image layer ``"{image} uncertainty"``. Pan, zoom or a change of plane
starts a new prediction once the view has been still for :data:`DEBOUNCE_MS`.
Only the latest snapshot and the latest view are predicted: requests that arrive
while a prediction runs replace each other and start when it ends. In a volume the
preview holds the 3D cells that cross the displayed plane, in the view
(:func:`napari_unet.live.preview.iter_preview_volume`): accepting one takes it whole.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, Container
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from ._common import (
    ROLE_KEY,
    add_above,
    displayed_plane,
    full_resolution,
    message_label,
    placement,
    same_layer,
    spatial_shape,
)
from ._lifetime import LayerWatch, WidgetLifetime
from ._uncertainty import UncertaintyLayer, show_confidence

#: Quiet time (ms) after the last pan, zoom or plane change before the view is predicted.
DEBOUNCE_MS = 250


class LivePreview(Container):
    """Segmentation of the view with the latest network, in a ``"{image} preview"`` layer.

    Parameters
    ----------
    viewer : napari.Viewer
    threads : ThreadShare
        The CPU threads shared with training (:mod:`napari_unet.live.threads`).
    """

    def __init__(self, viewer, threads):
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._threads = threads
        self._lifetime = WidgetLifetime(self.native)
        self._image = None  # the image layer previewed
        self._model = None  # the network to predict with (the latest snapshot)
        self._model_label = ""
        self._source_label = ""  # where the model of the running prediction comes from
        self._device = "cpu"
        self._layer = None  # the preview Labels layer
        self._region = None  # the ViewRegion shown in the layer
        self._written = None  # the index of the layer's data the preview wrote
        self._volume = None  # (axes, spacing) of a volume image, else None
        self._pending = False  # a request arrived while a prediction ran
        self._plane_cache: tuple | None = None  # (image layer, plane index, plane copy)
        self._image_watch = LayerWatch(self._lifetime, self._forget_plane, events=("data",))
        #: Number of predictions written into the preview layer.
        self.n_refreshes = 0

        self.on = CheckBox(text="live preview of the view", value=True)
        self.on.tooltip = (
            "While training, segment what you see with the latest weights (every few "
            "seconds, and after pan, zoom or a plane change)"
        )
        self.uncertainty = CheckBox(text="show uncertainty", value=False)
        self.uncertainty.tooltip = (
            "Also show how unsure the network is, per pixel (0 sure to 1 unsure: entropy "
            "of its class probabilities), in a layer '<image> uncertainty'. Bright = paint there."
        )
        self._unsure = UncertaintyLayer(viewer)  # the "<image> uncertainty" layer
        self._latest = None  # the last PreviewResult shown
        self.status = message_label()
        self.extend([self.on, self.uncertainty, self.status])

        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._lifetime.guard(self._on_view_settled))
        connect = self._lifetime.connect
        connect(viewer.scene.camera.events.center, self._on_view_changed)
        connect(viewer.scene.camera.events.zoom, self._on_view_changed)
        connect(viewer.dims.events.current_step, self._on_view_changed)
        connect(viewer.layers.events.removed, self._on_layer_removed)
        self.on.changed.connect(self._lifetime.guard(self._on_toggled))
        self.uncertainty.changed.connect(self._lifetime.guard(self._on_uncertainty_toggled))

    # -- public ------------------------------------------------------------------------
    @property
    def layer(self):
        """The preview Labels layer (``None`` before the first prediction)."""
        return self._layer

    @property
    def uncertainty_layer(self):
        """The ``"{image} uncertainty"`` Image layer, or ``None``."""
        return self._unsure.layer

    @property
    def image(self):
        """The image layer previewed, or ``None``."""
        return self._image

    @property
    def region(self):
        """The :class:`~napari_unet.live.preview.ViewRegion` shown in the layer, or ``None``."""
        return self._region

    @property
    def model(self):
        """The network the preview predicts with, or ``None``."""
        return self._model

    @property
    def device(self) -> str:
        """The device the preview predicts on (resolved by :meth:`attach`)."""
        return self._device

    @property
    def threads(self):
        """The :class:`~napari_unet.live.threads.ThreadShare` shared with training."""
        return self._threads

    @property
    def predicting(self) -> bool:
        """Whether a prediction runs now."""
        return self._lifetime.running

    @property
    def busy(self) -> bool:
        """Whether a prediction runs, waits for the view to settle, or is queued."""
        return self._lifetime.running or self._timer.isActive() or self._pending

    def attach(self, image_layer, device: str = "cpu", axes=None, spacing=None) -> None:
        """Preview ``image_layer`` from now on, predicting on ``device``.

        ``device`` is resolved first (``"auto"`` becomes a real device), so that the
        preview runs where training runs. With the preview on, its (empty) layer is
        added now. ``axes`` and ``spacing``: those of the image (a volume's 3D cells are
        previewed when ``axes`` holds ``Z``).
        """
        from napari_unet.method.axes import is_volume
        from napari_unet.runtime.devices import resolve_device

        volume = (axes, spacing) if is_volume(axes) and not image_layer.rgb else None
        if volume != self._volume:
            self._layer, self._region, self._plane_cache = None, None, None
        self._volume = volume

        if not same_layer(image_layer, self._image):
            # another image: the old preview layer stays as it is, a new one comes
            self._layer, self._region, self._model = None, None, None
            self._unsure.layer, self._latest = None, None
            self._plane_cache = None
            self._image_watch.watch(image_layer)
        self._image = image_layer
        self._device = str(resolve_device(device))
        if self.on.value:
            # Now, in the Start click: napari takes ~0.2 s to add a layer (its controls),
            # a freeze that would otherwise come in the middle of training.
            self._preview_layer(image_layer)
            if self.uncertainty.value:
                self._unsure.layer_for(image_layer)

    def show_model(self, model, label: str = "") -> None:
        """Predict the view with ``model`` (a snapshot while training, or the result).

        Parameters
        ----------
        model : UNet
            Not modified; predicted with in a worker thread.
        label : str
            Where the model comes from, for the status line (e.g. ``"iteration 40"``).
        """
        self._model, self._model_label = model, label
        self.refresh()

    def refresh(self, *_) -> None:
        """Predict the current view with the current model (queued if one runs)."""
        if not self.on.value or self._image is None or self._model is None:
            return
        if self._lifetime.running:
            self._pending = True
            return
        self._start()

    def current_region(self):
        """The :class:`~napari_unet.live.preview.ViewRegion` of the image visible now."""
        from napari_unet.live.preview import view_region

        image = self._image
        shape = spatial_shape(image)
        plane = displayed_plane(self._viewer, image)
        corners = np.asarray(image.corner_pixels, dtype=float)
        if getattr(image, "multiscale", False):
            corners = corners * np.asarray(image.downsample_factors[image.data_level])
        return view_region(corners, shape, plane)

    # -- internals ---------------------------------------------------------------------
    def _start(self) -> None:
        from dataclasses import replace

        from napari_unet.live.preview import iter_preview, iter_preview_volume

        region = self.current_region()
        if self._volume is not None:  # the 3D cells crossing the displayed plane
            data = self._plane(replace(region, plane=region.plane[:-1]), volume=True)
            prediction = iter_preview_volume(
                data, region, self._model, spacing=self._volume[1], device=self._device
            )
        else:
            prediction = iter_preview(self._plane(region), region, self._model, device=self._device)
        self._pending = False
        self._source_label = self._model_label
        self._lifetime.run(
            self._threads.preview,  # on its share of the CPU threads, announced to training
            prediction,
            returned=self._on_returned,
            errored=self._on_errored,
            finished=self._on_finished,
        )

    def _plane(self, region, volume: bool = False) -> np.ndarray:
        """A copy of the image plane (or ``volume``) ``region`` lies in, kept while shown."""
        from dataclasses import replace

        from napari_unet.live.preview import plane_of

        image = self._image
        cached = self._plane_cache
        if cached is not None and same_layer(cached[0], image) and cached[1] == region.plane:
            return cached[2]
        data = full_resolution(image)
        if region.plane:  # read only this plane (or volume) of the stack
            data = data[region.plane]
        if volume:
            plane = np.array(data, dtype=np.float32, copy=True)
        else:
            plane = plane_of(data, replace(region, plane=()), rgb=bool(image.rgb))
            plane = np.array(plane, copy=True)
        self._plane_cache = (image, region.plane, plane)
        return plane

    def _on_returned(self, result) -> None:
        image = self._image
        if image is None or image not in self._viewer.layers:
            return
        layer = self._preview_layer(image)
        if self._written is not None and (result.planes or self._region != result.region):
            self._clear_region(refresh=False)
        layer.data[result.index] = result.labels
        self._written = result.index
        layer.refresh()
        show_confidence(layer, result)
        self._latest = result
        if self.uncertainty.value:
            self._unsure.show(image, result)
        self._region = result.region
        self.n_refreshes += 1
        n_cells = result.n_cells
        source = f" · {self._source_label}" if self._source_label else ""
        self.status.value = (
            f"preview: {n_cells} cell{'s' if n_cells != 1 else ''} in view{source} "
            f"· {result.seconds:.1f} s"
        )

    def _preview_layer(self, image):
        layer, viewer = self._layer, self._viewer
        shape = spatial_shape(image)
        if layer is not None and layer in viewer.layers and layer.data.shape == shape:
            return layer
        axes = {"axes": self._volume[0]} if self._volume is not None else {}
        layer = add_above(
            viewer,
            image,
            lambda: viewer.add_labels(
                np.zeros(shape, np.int32),
                name=f"{image.name} preview",
                opacity=0.5,
                metadata={ROLE_KEY: "preview", **axes},  # axes: a volume's 3D cells
                **placement(image),
            ),
        )
        self._layer, self._region, self._written = layer, None, None
        return layer

    def _on_uncertainty_toggled(self, on: bool) -> None:
        if on and self._latest is not None and self._image in self._viewer.layers:
            self._unsure.show(self._image, self._latest)
        else:
            self._unsure.set_visible(on)

    def _clear_region(self, refresh: bool = True) -> None:
        layer = self._layer
        if layer is None or layer not in self._viewer.layers or self._written is None:
            return
        if layer.data.ndim == len(self._written):
            layer.data[self._written] = 0
            if refresh:
                layer.refresh()

    def _forget_plane(self, *_) -> None:
        self._plane_cache = None

    def _on_errored(self, error: Exception) -> None:
        self.on.value = False  # no stream of the same error every few seconds
        self.status.value = "preview failed (see the notification); turned off"
        show_error(f"Live preview failed: {error}")

    def _on_finished(self) -> None:
        if self._pending:
            self.refresh()

    def _on_view_changed(self, *_) -> None:
        if self.on.value and self._image is not None and self._model is not None:
            self._timer.start()

    def _on_view_settled(self) -> None:
        if self._image is None or self._image not in self._viewer.layers:
            return
        if self.current_region() != self._region:
            self.refresh()

    def _on_toggled(self, on: bool) -> None:
        if on:
            self.refresh()
        else:
            self._timer.stop()
            self._pending = False
            self._lifetime.stop(wait=False)

    def _on_layer_removed(self, event) -> None:
        if same_layer(event.value, self._layer):
            self._layer, self._region, self._written = None, None, None
        elif same_layer(event.value, self._unsure.layer):
            self._unsure.layer = None
        elif same_layer(event.value, self._image):
            self._timer.stop()
            self._pending = False
            self._lifetime.stop(wait=False)
            self._image_watch.watch(None)
            self._image, self._model, self._plane_cache = None, None, None
