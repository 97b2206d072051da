"""The settings part of the *Train* widget: starting point and training configuration."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox

from ._common import device_combo, disable_choices
from ._lifetime import WidgetLifetime

START_FROM = {
    "default": "shipped default model",
    "file": "model file",
    "session": "model trained in this session",
    "scratch": "scratch (new network)",
}


class TrainingSettings(Container):
    """Where training starts from, and the :class:`~napari_unet.training.TrainingConfig`.

    Parameters
    ----------
    lifetime : WidgetLifetime
        The lifetime of the widget this part belongs to.
    """

    def __init__(self, lifetime: WidgetLifetime):
        from napari_unet.model_io import default_model_available
        from napari_unet.training import DEFAULT_TRAINING_MINUTES, SCRATCH_CONFIG, TrainingConfig

        super().__init__()
        self.margins = (0, 0, 0, 0)
        defaults = TrainingConfig()
        self.default_available = default_model_available()

        self.start_from = ComboBox(
            label="start from", choices=[(text, key) for key, text in START_FROM.items()]
        )
        self.model_file = FileEdit(label="model file", mode="r", filter="*.safetensors *.zip")
        self.depth = SpinBox(label="depth", value=SCRATCH_CONFIG.depth, min=2, max=6)
        self.depth.tooltip = "Resolution levels of a new network (the paper: 5)"
        self.base_channels = ComboBox(
            label="channels", choices=[8, 16, 32, 64], value=SCRATCH_CONFIG.base_channels
        )
        self.base_channels.tooltip = "Feature channels at the first level (the paper: 64)"
        self.minutes = FloatSpinBox(
            label="minutes", value=DEFAULT_TRAINING_MINUTES, min=0.1, max=24 * 60, step=0.5
        )
        self.minutes.tooltip = "Time budget of the run; the learning rate decays over it"
        self.n_iterations = SpinBox(
            label="max iterations (0: none)",
            value=defaults.n_iterations or 0,
            min=0,
            max=10_000_000,
        )
        self.n_iterations.tooltip = "Optional cap: the run ends at the budget or the cap"
        self.object_size = FloatSpinBox(
            label="object size px (0: auto)", value=defaults.object_size or 0, min=0, max=2000
        )
        self.object_size.tooltip = (
            "Typical cell diameter in pixels; 0: measured on the annotated cells. "
            "Sets the training tile and the smallest cell kept"
        )
        self.learning_rate = FloatSpinBox(
            label="learning rate", value=defaults.learning_rate, min=1e-6, max=1.0, step=1e-4
        )
        self.learning_rate.native.setDecimals(6)
        self.batch_size = SpinBox(label="batch size", value=defaults.batch_size, min=1, max=64)
        self.tile_size = SpinBox(label="tile px (0: auto)", value=0, min=0, max=2048, step=4)
        self.tile_size.tooltip = (
            "Input tile size in pixels, rounded up to a valid size for the network; "
            "0: the smallest tile whose output is at least 100×100"
        )
        self.augment = CheckBox(text="augmentation", value=defaults.augment)
        self.augment.tooltip = "Random elastic deformation, shifts, flips, rotations, gray values"
        self.dense = CheckBox(text="dense masks (0 = background)", value=False)
        self.seed = SpinBox(label="seed (0: random)", value=0, min=0, max=2**31 - 1)
        self.seed.tooltip = "Seed of tile sampling, augmentation and initialisation"
        self.device = device_combo()
        self.extend(
            [
                self.start_from,
                self.model_file,
                self.depth,
                self.base_channels,
                self.minutes,
                self.n_iterations,
                self.object_size,
                self.learning_rate,
                self.batch_size,
                self.tile_size,
                self.augment,
                self.dense,
                self.seed,
                self.device,
            ]
        )
        self.start_from.value = "default" if self.default_available else "scratch"
        self.update_start_from_choices(session_has_model=False)
        self.start_from.changed.connect(lifetime.guard(self._on_start_from_changed))
        self._on_start_from_changed()

    def update_start_from_choices(self, session_has_model: bool) -> None:
        """Grey out the starting points that do not exist (with a tooltip saying why)."""
        disabled = {}
        if not self.default_available:
            disabled["default"] = "No default model is installed with napari-unet"
        if not session_has_model:
            disabled["session"] = "No model has been trained in this session yet"
        disable_choices(self.start_from, disabled)

    def starting_model(self, session):
        """Return ``(model, model_config, description)`` for the core's ``train``.

        ``model`` is a network, ``None`` (from scratch, with ``model_config``), or the
        shipped model's name or a file path: files are loaded by the worker, not in the
        Start click (0.1 s on the GUI thread).

        Raises
        ------
        FileNotFoundError
            If the model file does not exist.
        ValueError
            If the session has no model.
        """
        from napari_unet.model_io import DEFAULT_MODEL_NAME
        from napari_unet.network import UNetConfig
        from napari_unet.training import SCRATCH_CONFIG

        choice = self.start_from.value
        if choice == "default":
            return DEFAULT_MODEL_NAME, None, "the default model"
        if choice == "file":
            path = Path(self.model_file.value)
            if not path.is_file():
                raise FileNotFoundError(f"choose a model file (no file {str(path)!r})")
            return path, None, path.name
        if choice == "session":
            if session.model is None:
                raise ValueError("no model has been trained in this session yet")
            return session.model, None, "the session's model"  # train() copies it
        config = UNetConfig(
            in_channels=SCRATCH_CONFIG.in_channels,
            n_classes=SCRATCH_CONFIG.n_classes,
            depth=int(self.depth.value),
            base_channels=int(self.base_channels.value),
            batch_norm=True,
        )
        return None, config, "scratch"

    def config(self, w0: float, sigma: float):
        """Return the :class:`~napari_unet.training.TrainingConfig` of these settings.

        The tile size is rounded up to a valid one by :func:`~napari_unet.training.train`.
        The run ends after *minutes* or at the iteration cap, whichever comes first.

        Raises
        ------
        ValueError
            For an object size below one pixel.

        Parameters
        ----------
        w0, sigma : float
            Weight-map parameters (eq. 2), from the session.
        """
        from napari_unet.training import TrainingConfig

        size = int(self.tile_size.value)
        return TrainingConfig(
            n_iterations=int(self.n_iterations.value) or None,
            max_seconds=60.0 * float(self.minutes.value),
            object_size=float(self.object_size.value) or None,
            learning_rate=float(self.learning_rate.value),
            batch_size=int(self.batch_size.value),
            tile_shape=(size, size) if size else None,
            augment=bool(self.augment.value),
            w0=w0,
            sigma=sigma,
        )

    def _on_start_from_changed(self, *_) -> None:
        choice = self.start_from.value
        self.model_file.visible = choice == "file"
        self.depth.visible = choice == "scratch"
        self.base_channels.visible = choice == "scratch"
