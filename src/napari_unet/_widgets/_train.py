"""*Train* dock widget: train or fine-tune a U-Net on annotated images, in the background.

The widget gathers inputs and copies the layer data, then runs the core generator
:func:`napari_unet.training.train` in a napari thread worker. Worker signals move the
session's training state machine (:class:`~._session.TrainingState`); the widget's
look follows from the state in one place, :meth:`TrainWidget._on_state_changed`.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from superqt.utils import GeneratorWorker

from ._common import (
    annotation_choices,
    device_combo,
    disable_choices,
    layer_choices,
    layer_data,
    spatial_shape,
)
from ._lifetime import WidgetLifetime
from ._loss_plot import LossPlot
from ._session import TrainingState, UNetSession, session_for

START_FROM = {
    "default": "shipped default model",
    "file": "model file",
    "session": "model trained in this session",
    "scratch": "scratch (new network)",
}


# -- worker signals -> session state (no widget involved: they also run when the widget
#    is gone, so the state machine always ends in a finished state) ---------------------
def _training_returned(session: UNetSession, source: str, result) -> None:
    stopped = bool(result.stopped)
    how = "stopped at" if stopped else "finished after"
    session.set_model(
        result.model,
        f"trained in this session from {source}, {how} iteration {len(result.history)} "
        f"(best: {result.best_iteration})",
    )
    session.set_training_state(TrainingState.STOPPED if stopped else TrainingState.DONE)


def _training_errored(session: UNetSession, error: Exception) -> None:
    session.set_training_state(TrainingState.FAILED)
    show_error(f"Training failed: {error}")


def _training_finished(session: UNetSession) -> None:
    # Aborted (widget or viewer closed): no result, but the run is over.
    if session.training_state.running:
        session.set_training_state(TrainingState.STOPPED)


def valid_tile_size(size: int, depth: int) -> int:
    """Smallest valid square input tile of at least ``size`` pixels for a U-Net of ``depth``."""
    from napari_unet.network import UNet, UNetConfig

    # Valid shapes depend only on the depth: a 1-channel-wide network is enough.
    return UNet(config=UNetConfig(depth=depth, base_channels=1)).valid_input_shape((size, size))[0]


class TrainWidget(Container):
    """Train a U-Net on image/annotation pairs, with a live loss curve and Stop.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        from napari.utils.theme import get_theme

        from napari_unet.model_io import default_model_available
        from napari_unet.training import SCRATCH_CONFIG, TrainingConfig

        super().__init__()
        self._viewer = napari_viewer
        self._session = session_for(napari_viewer)
        self._lifetime = WidgetLifetime(self.native)
        self._pairs: list[tuple] = []
        self._stop_event: threading.Event | None = None
        defaults = TrainingConfig()
        guard = self._lifetime.guard

        # training data
        self.image = ComboBox(label="image", choices=layer_choices(napari_viewer, Image))
        self.annotation = ComboBox(
            label="annotation", choices=annotation_choices(napari_viewer, self._session, self.image)
        )
        self.add_pair_button = PushButton(text="Add pair")
        self.pairs = Select(label="pairs", choices=self._pair_choices)
        self.pairs.tooltip = "Training pairs; when empty, the pair selected above is used"
        self.remove_pair_button = PushButton(text="Remove selected pairs")
        # starting point
        self.start_from = ComboBox(
            label="start from", choices=[(text, key) for key, text in START_FROM.items()]
        )
        self.model_file = FileEdit(label="model file", mode="r", filter="*.safetensors")
        self.depth = SpinBox(label="depth", value=SCRATCH_CONFIG.depth, min=2, max=6)
        self.depth.tooltip = "Resolution levels of a new network (the paper: 5)"
        self.base_channels = ComboBox(
            label="channels", choices=[8, 16, 32, 64], value=SCRATCH_CONFIG.base_channels
        )
        self.base_channels.tooltip = "Feature channels at the first level of a new network (the paper: 64)"
        # settings
        self.n_iterations = SpinBox(label="iterations", value=defaults.n_iterations, min=1, max=100_000)
        self.learning_rate = FloatSpinBox(
            label="learning rate", value=defaults.learning_rate, min=1e-6, max=1.0, step=1e-4
        )
        self.learning_rate.native.setDecimals(6)
        self.batch_size = SpinBox(label="batch size", value=defaults.batch_size, min=1, max=64)
        self.tile_size = SpinBox(label="tile (px)", value=0, min=0, max=2048, step=4)
        self.tile_size.native.setSpecialValueText("automatic")
        self.tile_size.tooltip = "Input tile size; rounded up to a valid size for the network"
        self.augment = CheckBox(text="augmentation (elastic, flips, rotations, gray values)", value=True)
        self.dense = CheckBox(text="dense masks (0 = background)", value=False)
        self.device = device_combo()
        self.weights_info = Label(value="")
        # run
        self.start_button = PushButton(text="Start training")
        self.progress = ProgressBar(value=0, min=0, max=1)
        self.status = Label(value="")
        self.save_button = PushButton(text="Save model…")
        self.extend(
            [
                self.image,
                self.annotation,
                self.add_pair_button,
                self.pairs,
                self.remove_pair_button,
                self.start_from,
                self.model_file,
                self.depth,
                self.base_channels,
                self.n_iterations,
                self.learning_rate,
                self.batch_size,
                self.tile_size,
                self.augment,
                self.dense,
                self.device,
                self.weights_info,
                self.start_button,
                self.progress,
                self.status,
            ]
        )
        theme = get_theme(napari_viewer.theme)
        self.loss_plot = LossPlot(theme.text.as_hex(), theme.canvas.as_hex())
        self.native.layout().addWidget(self.loss_plot.canvas)
        self.append(self.save_button)
        self.status.native.setWordWrap(True)

        self._default_available = default_model_available()
        self.start_from.value = "default" if self._default_available else "scratch"
        self._update_start_from_choices()

        self.image.changed.connect(guard(self._on_image_changed))
        self.add_pair_button.changed.connect(guard(self.add_pair))
        self.remove_pair_button.changed.connect(guard(self._remove_selected_pairs))
        self.start_from.changed.connect(guard(self._on_start_from_changed))
        self.start_button.changed.connect(guard(self._on_start_clicked))
        self.save_button.changed.connect(guard(self._on_save_clicked))
        self._lifetime.connect(napari_viewer.layers.events.removed, self._on_layer_removed)
        self._lifetime.connect(self._session.training_state_changed, self._on_state_changed)
        self._lifetime.connect(self._session.model_changed, self._on_model_changed)
        self._lifetime.connect(self._session.weight_map_parameters_changed, self._show_weights_info)
        self.reset_choices()
        self._on_start_from_changed()
        self._show_weights_info()
        self._on_state_changed(self._session.training_state, self._session.training_state)

    # -- public actions ----------------------------------------------------------------
    @property
    def state(self) -> TrainingState:
        """The session's training state."""
        return self._session.training_state

    @property
    def worker(self):
        """The running worker, or ``None``."""
        return self._lifetime.job.worker if self._lifetime.job is not None else None

    def add_pair(self, *_):
        """Add the selected image and annotation to the training pairs."""
        image, annotation = self.image.value, self.annotation.value
        if image is None or annotation is None:
            show_error("Select an image and its annotation first.")
            return
        if (image, annotation) not in self._pairs:
            self._pairs.append((image, annotation))
        self.pairs.reset_choices()

    def start(self):
        """Copy the training data and start training in a thread worker.

        Returns the worker (already started), or ``None`` if the inputs are not valid
        (the reason is shown as a notification).
        """
        from napari_unet.training import train

        if self._session.training_state.running:
            return None
        try:
            images, annotations = self._training_data()
            model, model_config, source = self._starting_model()
            config = self._config(model, model_config)
        except (ValueError, FileNotFoundError) as error:
            show_error(f"Cannot start training: {error}")
            return None
        self._stop_event = threading.Event()
        session = self._session
        worker = create_worker(
            train,
            images,
            annotations,
            model=model,
            config=config,
            device=self.device.value,
            dense=bool(self.dense.value),
            stop=self._stop_event,
            model_config=model_config,
            _worker_class=GeneratorWorker,  # errors are reported once, by _training_errored
            _start_thread=False,
            _connect={
                "yielded": self._lifetime.guard(self._on_progress),
                "returned": partial(_training_returned, session, source),
                "errored": partial(_training_errored, session),
                "finished": partial(_training_finished, session),
            },
        )
        self.loss_plot.clear()
        self.progress.max = config.n_iterations
        self.progress.value = 0
        session.set_training_state(TrainingState.TRAINING)
        self._lifetime.start(worker, self._stop_event)
        return worker

    def stop(self):
        """Ask training to end after the current iteration (the best model is kept)."""
        if self._session.training_state is TrainingState.TRAINING and self._stop_event is not None:
            self._stop_event.set()
            self._session.set_training_state(TrainingState.STOPPING)

    def save_model(self, path) -> Path:
        """Write the session's model to ``path`` (safetensors), atomically."""
        from napari_unet.model_io import save_model

        if self._session.model is None:
            raise ValueError("no model has been trained in this session yet")
        return save_model(self._session.model, path)

    # -- inputs --------------------------------------------------------------------------
    def _pair_choices(self, _widget=None):
        return [(f"{image.name}  ←  {annotation.name}", (image, annotation)) for image, annotation in self._pairs]

    def _training_pairs(self) -> list[tuple]:
        if self._pairs:
            return list(self._pairs)
        if self.image.value is None or self.annotation.value is None:
            raise ValueError("select an image and its annotation (or add pairs)")
        return [(self.image.value, self.annotation.value)]

    def _training_data(self):
        from napari_unet.annotation import validate_annotation

        images, annotations = [], []
        for image_layer, annotation_layer in self._training_pairs():
            image, annotation = layer_data(image_layer), layer_data(annotation_layer)
            expected = spatial_shape(image_layer)
            if annotation.shape != expected:
                raise ValueError(
                    f"annotation {annotation_layer.name!r} has shape {annotation.shape} but image "
                    f"{image_layer.name!r} needs {expected}"
                )
            if annotation.ndim == 2:
                validate_annotation(annotation, dense=bool(self.dense.value))
            images.append(image)
            annotations.append(annotation)
        return images, annotations

    def _starting_model(self):
        """``(model, model_config, description)`` for :func:`~napari_unet.training.train`."""
        from napari_unet.model_io import DEFAULT_MODEL_NAME, load_model
        from napari_unet.network import UNetConfig

        choice = self.start_from.value
        if choice == "default":
            return load_model(DEFAULT_MODEL_NAME), None, "the default model"
        if choice == "file":
            path = Path(self.model_file.value)
            if not path.is_file():
                raise FileNotFoundError(f"choose a model file (no file {str(path)!r})")
            return load_model(path), None, path.name
        if choice == "session":
            if self._session.model is None:
                raise ValueError("no model has been trained in this session yet")
            return self._session.model, None, "the session's model"
        config = UNetConfig(
            in_channels=1,
            n_classes=2,
            depth=int(self.depth.value),
            base_channels=int(self.base_channels.value),
            batch_norm=True,
        )
        return None, config, "scratch"

    def _config(self, model, model_config):
        from napari_unet.training import TrainingConfig

        tile_shape = None
        if self.tile_size.value:
            depth = model.config.depth if model is not None else model_config.depth
            size = valid_tile_size(int(self.tile_size.value), depth)
            tile_shape = (size, size)
        return TrainingConfig(
            n_iterations=int(self.n_iterations.value),
            learning_rate=float(self.learning_rate.value),
            batch_size=int(self.batch_size.value),
            tile_shape=tile_shape,
            augment=bool(self.augment.value),
            w0=self._session.w0,
            sigma=self._session.sigma,
        )

    # -- reactions -----------------------------------------------------------------------
    def _on_state_changed(self, state: TrainingState, old: TrainingState) -> None:
        """The one place that makes the widget follow the training state."""
        running = state.running
        self.start_button.text = {
            TrainingState.TRAINING: "Stop",
            TrainingState.STOPPING: "Stopping…",
        }.get(state, "Start training")
        self.start_button.enabled = state is not TrainingState.STOPPING
        for widget in (
            self.image,
            self.annotation,
            self.add_pair_button,
            self.pairs,
            self.remove_pair_button,
            self.start_from,
            self.model_file,
            self.depth,
            self.base_channels,
            self.n_iterations,
            self.learning_rate,
            self.batch_size,
            self.tile_size,
            self.augment,
            self.dense,
            self.device,
        ):
            widget.enabled = not running
        self.save_button.enabled = not running and self._session.model is not None
        if state is TrainingState.DONE:
            self.status.value = f"Done: {self._session.model_description}."
        elif state is TrainingState.STOPPED:
            self.status.value = (
                f"Stopped: {self._session.model_description}."
                if old is TrainingState.STOPPING
                else "Stopped (the widget or the viewer was closed)."
            )
        elif state is TrainingState.FAILED:
            self.status.value = "Failed (see the notification)."
        elif state is TrainingState.STOPPING:
            self.status.value = "Stopping after this iteration…"
        elif state is TrainingState.TRAINING:
            self.status.value = "Preparing the training data…"
        if not running:
            self.loss_plot.draw()

    def _on_progress(self, progress) -> None:
        self.progress.max = progress.n_iterations
        self.progress.value = progress.iteration
        if self._session.training_state is TrainingState.TRAINING:
            self.status.value = (
                f"iteration {progress.iteration}/{progress.n_iterations} · loss {progress.loss:.4f}"
                f" · {progress.pixels_per_second / 1e3:.0f} kpx/s · {progress.seconds:.0f} s"
            )
        self.loss_plot.add(progress.iteration, progress.loss, progress.validation_score)

    def _on_start_clicked(self, *_):
        if self._session.training_state is TrainingState.TRAINING:
            self.stop()
        else:
            self.start()

    def _on_save_clicked(self, *_):
        from qtpy.QtWidgets import QFileDialog

        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Save model", "unet.safetensors", "napari-unet model (*.safetensors)"
        )
        if not path:
            return
        try:
            written = self.save_model(path)
        except (OSError, ValueError, TypeError) as error:
            show_error(f"Could not save the model: {error}")
            return
        show_info(f"Model saved to {written}")

    def _on_model_changed(self, _model) -> None:
        self._update_start_from_choices()
        self.save_button.enabled = not self._session.training_state.running and _model is not None

    def _update_start_from_choices(self) -> None:
        disabled = {}
        if not self._default_available:
            disabled["default"] = "No default model is installed with napari-unet"
        if self._session.model is None:
            disabled["session"] = "No model has been trained in this session yet"
        disable_choices(self.start_from, disabled)

    def _on_start_from_changed(self, *_):
        choice = self.start_from.value
        self.model_file.visible = choice == "file"
        self.depth.visible = choice == "scratch"
        self.base_channels.visible = choice == "scratch"

    def _on_image_changed(self, *_):
        self.annotation.reset_choices()

    def _remove_selected_pairs(self, *_):
        selected = self.pairs.value
        self._pairs = [pair for pair in self._pairs if pair not in selected]
        self.pairs.reset_choices()

    def _on_layer_removed(self, event) -> None:
        self._pairs = [pair for pair in self._pairs if event.value not in pair]
        self.pairs.reset_choices()

    def _show_weights_info(self, *_):
        self.weights_info.value = (
            f"weight map: w0 = {self._session.w0:g}, σ = {self._session.sigma:g} px"
            " (set in the Weight map widget)"
        )
