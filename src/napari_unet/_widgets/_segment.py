"""*Segment* dock widget: overlap-tile prediction of an image into a Labels layer.

Runs the core generator :func:`napari_unet.route.segment.iter_segment_routed` (it picks
in memory, block-wise zarr or a dask cluster) in a napari thread worker; the result comes
back as a Labels layer (one id per cell) with the image's ``scale`` and ``translate``. A
volume (its axis labels, or the "stack is a" choice) comes back as 3D cells, one id per
cell across its planes, segmented with the voxel size of the layer's ``scale``.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from napari_unet.inference.settings import SegmentSettings

from ._common import (
    ROLE_KEY,
    ActivityReport,
    device_combo,
    layer_choices,
    layer_data,
    message_label,
    placement,
    scheduler_address,
    scheduler_field,
)
from ._lifetime import WidgetLifetime
from ._model_choice import ModelChoice
from ._session import session_for
from ._stack_kind import StackKind

PRECISION_LABELS = {
    "auto": "auto (fastest the device supports)",
    "float32": "float32 (reference)",
    "bfloat16": "bfloat16",
    "float16": "float16",
}
#: Resolution of the progress bar (it shows the fraction of tiles done).
PROGRESS_STEPS = 1000


class SegmentWidget(Container):
    """Segment an image (2D, a volume into 3D cells, or a stack plane by plane) with a U-Net.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        from napari_unet.runtime.devices import PRECISION_CHOICES

        super().__init__()
        self._viewer = napari_viewer
        self._session = session_for(napari_viewer)
        self._lifetime = WidgetLifetime(self.native)
        self._source_image = None
        self._axes = None  # the axes of the image being segmented
        self._answered = False  # whether the running worker returned or failed
        self.last_labels = None  # the Labels layer of the last run
        self._activity: ActivityReport | None = None  # the line in napari's activity dock
        guard = self._lifetime.guard

        self.image_layer = ComboBox(label="image", choices=layer_choices(napari_viewer, Image))
        self._stack = StackKind()  # where the layer does not say: volume, time series, …
        self.stack_kind = self._stack.combo
        self._model_choice = ModelChoice(self._lifetime, ("session", "default", "file"), "model")
        self.model, self.model_file = self._model_choice.combo, self._model_choice.file
        self.auto_tile = CheckBox(text="automatic tile size (from free memory)", value=True)
        self.tile_size = SpinBox(label="tile (px)", value=572, min=32, max=4096, step=4)
        self.tile_size.tooltip = "Largest input tile; rounded up to a valid size for the network"
        self.precision = ComboBox(
            label="precision", choices=[(PRECISION_LABELS.get(p, p), p) for p in PRECISION_CHOICES]
        )
        self.device = device_combo()
        self.add_probabilities = CheckBox(text="also add the foreground probability", value=False)
        self.scheduler = scheduler_field("segment")
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS)
        self.info = message_label()
        self.export_button = PushButton(text="Export masks…")
        self.export_button.tooltip = "Write the last segmentation as an ImageJ-compatible TIFF"
        # the inputs, disabled while a segmentation runs
        self._inputs = (
            self.image_layer,
            self.stack_kind,
            self.model,
            self.model_file,
            self.auto_tile,
            self.tile_size,
            self.precision,
            self.device,
            self.add_probabilities,
            self.scheduler,
        )
        self.extend([*self._inputs, self.run_button, self.progress, self.info, self.export_button])
        self._update_model_choices(select_best=True)

        self.image_layer.changed.connect(guard(self._stack.follow))
        self.auto_tile.changed.connect(guard(self._on_auto_tile))
        self.run_button.changed.connect(guard(self._on_run_clicked))
        self.export_button.changed.connect(guard(self._on_export_clicked))
        self._lifetime.connect(self._session.model_changed, self._on_session_model)
        self.reset_choices()
        self._stack.follow(self.image_layer.value)
        self._on_auto_tile()
        self._set_running(False)

    # -- public actions ----------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a segmentation is running."""
        return self._lifetime.running

    @property
    def worker(self):
        """The running worker, or ``None``."""
        return self._lifetime.job.worker if self._lifetime.job is not None else None

    def run(self):
        """Segment the image in a thread worker, by the route the core chooses.

        Returns the started worker, or ``None`` if the inputs are not valid (the reason
        is shown as a notification).
        """
        from napari_unet.route.segment import choose_route, iter_segment_routed

        if self._lifetime.running:
            return None
        image = self.image_layer.value
        if image is None:
            show_error("Open or select an image to segment.")
            return None
        tile = None if self.auto_tile.value else (int(self.tile_size.value),) * 2
        data = layer_data(image)
        try:
            axes, spacing = self._stack.axes_and_spacing(image)
            settings = SegmentSettings(
                tile_shape=tile,
                device=self.device.value,
                precision=self.precision.value,
                rgb=bool(image.rgb),
                axes=axes + ("C" if image.rgb else ""),
                spacing=spacing,
            )
            model = self._model_argument()
            scheduler = scheduler_address(self.scheduler, "segmenting on a dask cluster")
            choose_route(data, settings, scheduler)  # refuses what no route takes
        except (ValueError, FileNotFoundError, ImportError) as error:
            show_error(f"Cannot segment: {error}")
            return None
        self._source_image, self._axes = image, axes
        self.progress.value = 0
        self.info.value = "Segmenting…"
        self._answered = False
        self._set_running(True)
        self._activity = ActivityReport(f"U-Net segmentation of {image.name}")
        return self._lifetime.run(
            iter_segment_routed,
            data,
            model,
            settings,
            scheduler=scheduler,
            yielded=self._on_progress,
            returned=self._on_returned,
            errored=self._on_errored,
            finished=self._on_finished,
        )

    def cancel(self):
        """Stop the running segmentation at the next tile (no result)."""
        self._lifetime.stop(wait=False)

    def export_masks(self, path) -> list[str]:
        """Write the last segmentation to ``path`` with the plugin's TIFF writer."""
        from napari_unet._writer import write_labels

        layer = self.last_labels
        if layer is None or layer not in self._viewer.layers:
            raise ValueError("there is no segmentation to export: run Segment first")
        data, attributes, _ = layer.as_layer_data_tuple()
        return write_labels(str(path), data, attributes)

    # -- internals ---------------------------------------------------------------------
    def _model_argument(self):
        """What :func:`~napari_unet.inference.segment.iter_segment` gets as ``model``."""
        model, _description = self._model_choice.model_argument(self._session)
        return str(model) if isinstance(model, Path) else model

    def _set_running(self, running: bool) -> None:
        self.run_button.text = "Cancel" if running else "Segment"
        for widget in self._inputs:
            widget.enabled = not running
        if not running:
            self.tile_size.enabled = not self.auto_tile.value
        self.export_button.enabled = not running and self.last_labels is not None

    def _on_progress(self, progress) -> None:
        self.progress.value = round(progress.fraction * PROGRESS_STEPS)
        if self._activity is not None:
            self._activity.set_fraction(progress.fraction)
        self.info.value = progress.message

    def _on_returned(self, result) -> None:
        self._answered = True
        image = self._source_image
        kwargs = placement(image) if image is not None else {}
        name = image.name if image is not None else "image"
        on_disk, pyramid = result.store, result.pyramid
        self.last_labels = self._viewer.add_labels(
            pyramid if len(pyramid) > 1 else pyramid[0],
            name=f"{name} segmentation",
            metadata={
                ROLE_KEY: "segmentation",
                "device": result.device,
                "precision": result.precision,
                "axes": self._axes,  # ZYX: one id per 3D cell (accepting takes it whole)
                **({"store": on_disk} if on_disk else {}),
            },
            **kwargs,
        )
        if self.add_probabilities.value and result.probabilities is not None:
            self._viewer.add_image(
                result.probabilities,
                name=f"{name} foreground probability",
                colormap="viridis",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                visible=False,
                metadata={ROLE_KEY: "probabilities"},
                **kwargs,
            )
        self.progress.value = PROGRESS_STEPS
        n = result.n_cells
        self.info.value = (
            f"{n} cell{'s' if n != 1 else ''} · ran on {result.device} in {result.precision}"
            f" · {result.seconds:.1f} s" + (f" · labels on disk: {on_disk}" if on_disk else "")
        )

    def _on_errored(self, error: Exception) -> None:
        self._answered = True
        self.info.value = "Failed (see the notification)."
        show_error(f"Segmentation failed: {error}")

    def _on_finished(self) -> None:
        if not self._answered:  # neither a result nor an error: cancelled
            self.info.value = "Cancelled."
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        self._set_running(False)

    def _on_run_clicked(self, *_):
        if self._lifetime.running:
            self.cancel()
        else:
            self.run()

    def _on_export_clicked(self, *_):
        from qtpy.QtWidgets import QFileDialog

        if self.last_labels is None:
            show_error("Run Segment first: there is nothing to export.")
            return
        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Export masks", f"{self.last_labels.name}.tif", "TIFF (*.tif *.tiff)"
        )
        if not path:
            return
        try:
            written = self.export_masks(path)
        except (OSError, ValueError) as error:
            show_error(f"Could not export the masks: {error}")
            return
        show_info(f"Masks written to {written[0]}")

    def _on_auto_tile(self, *_):
        self.tile_size.enabled = not self.auto_tile.value and not self._lifetime.running

    def _on_session_model(self, model) -> None:
        self._update_model_choices(select_best=model is not None and not self._lifetime.running)

    def _update_model_choices(self, select_best: bool = False) -> None:
        prefer = ("session", "default", "file") if select_best else ()
        self._model_choice.update(self._session.model is not None, prefer)
