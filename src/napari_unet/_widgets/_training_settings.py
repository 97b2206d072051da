"""The settings part of the *Train* widget: starting point and training configuration."""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox

from ._common import device_combo, scheduler_address, scheduler_field
from ._lifetime import WidgetLifetime
from ._model_choice import ModelChoice


class TrainingSettings(Container):
    """Where training starts from, and the :class:`~napari_unet.training.loop.TrainingConfig`.

    The container holds the advanced training fields (learning rate, batch size, tile,
    seed, device, …). Two parts go elsewhere in the *Train* widget: :attr:`minutes` on
    top, and :attr:`starting` (the starting model) further down the *Advanced* section.
    Every tooltip is :func:`~napari_unet.training.settings_help.help_text`.

    Parameters
    ----------
    lifetime : WidgetLifetime
        The lifetime of the widget this part belongs to.

    Attributes
    ----------
    minutes : FloatSpinBox
        The time budget, shown on top of the widget.
    starting : Container
        *start from*, *model file*, and a new network's *depth* and *channels*.
    """

    def __init__(self, lifetime: WidgetLifetime):
        from napari_unet.training.loop import (
            DEFAULT_TRAINING_MINUTES,
            SCRATCH_CONFIG,
            TrainingConfig,
        )
        from napari_unet.training.settings_help import help_text

        super().__init__()
        self.margins = (0, 0, 0, 0)
        defaults = TrainingConfig()
        self._model_choice = ModelChoice(
            lifetime, ("default", "file", "session", "scratch"), "start from"
        )
        self.start_from, self.model_file = self._model_choice.combo, self._model_choice.file
        self.start_from.tooltip = help_text("start_from")
        self.model_file.tooltip = help_text("model_file")
        self.depth = SpinBox(label="depth", value=SCRATCH_CONFIG.depth, min=2, max=6)
        self.depth.tooltip = help_text("depth")
        self.base_channels = ComboBox(
            label="channels", choices=[8, 16, 32, 64], value=SCRATCH_CONFIG.base_channels
        )
        self.base_channels.tooltip = help_text("base_channels")
        self.minutes = FloatSpinBox(
            label="minutes", value=DEFAULT_TRAINING_MINUTES, min=0.1, max=24 * 60, step=0.5
        )
        self.minutes.tooltip = help_text("minutes")
        self.n_iterations = SpinBox(
            label="max iterations (0: none)",
            value=defaults.n_iterations or 0,
            min=0,
            max=10_000_000,
        )
        self.n_iterations.tooltip = help_text("n_iterations", zero="no cap")
        self.object_size = FloatSpinBox(
            label="object size px (0: auto)", value=defaults.object_size or 0, min=0, max=2000
        )
        self.object_size.tooltip = help_text("object_size", zero="measured on your painted cells")
        self.learning_rate = FloatSpinBox(
            label="learning rate", value=defaults.learning_rate, min=1e-6, max=1.0, step=1e-4
        )
        self.learning_rate.native.setDecimals(6)
        self.learning_rate.tooltip = help_text("learning_rate")
        self.batch_size = SpinBox(label="batch size", value=defaults.batch_size, min=1, max=64)
        self.batch_size.tooltip = help_text("batch_size")
        self.tile_size = SpinBox(label="tile px (0: auto)", value=0, min=0, max=2048, step=4)
        self.tile_size.tooltip = help_text("tile_shape", zero="automatic")
        self.augment = CheckBox(text="augmentation", value=defaults.augment)
        self.augment.tooltip = help_text("augment")
        self.seed = SpinBox(label="seed (0: random)", value=0, min=0, max=2**31 - 1)
        self.seed.tooltip = help_text("seed", zero="a new random seed for every run")
        self.device = device_combo()
        self.device.tooltip = help_text("device") + " Devices not on this machine are greyed out."
        self.scheduler = scheduler_field("train")
        self.extend(
            [
                self.learning_rate,
                self.batch_size,
                self.tile_size,
                self.seed,
                self.device,
                self.scheduler,
                self.n_iterations,
                self.object_size,
                self.augment,
            ]
        )
        self.starting = Container(
            widgets=[self.start_from, self.model_file, self.depth, self.base_channels]
        )
        self.starting.margins = (0, 0, 0, 0)
        self._model_choice.update(session_has_model=False, prefer=("default", "scratch"))
        self.start_from.changed.connect(lifetime.guard(self._on_start_from_changed))
        self._on_start_from_changed()

    def update_start_from_choices(self, session_has_model: bool) -> None:
        """Grey out the starting points that do not exist (with a tooltip saying why)."""
        self._model_choice.update(session_has_model)

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
        from dataclasses import replace

        from napari_unet.training.loop import SCRATCH_CONFIG

        model, description = self._model_choice.model_argument(session)
        if model is not None:
            return model, None, description
        depth, channels = int(self.depth.value), int(self.base_channels.value)
        return None, replace(SCRATCH_CONFIG, depth=depth, base_channels=channels), description

    def config(self, session):
        """Return the :class:`~napari_unet.training.loop.TrainingConfig` of these settings.

        The tile size is rounded up to a valid one by :func:`~napari_unet.training.loop.train`.
        The run ends after *minutes* or at the iteration cap, whichever comes first.

        Parameters
        ----------
        session : UNetSession
            Supplies the loss settings (w0 and σ of eq. 2).

        Raises
        ------
        ValueError
            For an object size below one pixel.
        """
        size = int(self.tile_size.value)
        return session.training_config(
            n_iterations=int(self.n_iterations.value) or None,
            max_seconds=60.0 * float(self.minutes.value),
            object_size=float(self.object_size.value) or None,
            learning_rate=float(self.learning_rate.value),
            batch_size=int(self.batch_size.value),
            tile_shape=(size, size) if size else None,
            augment=bool(self.augment.value),
        )

    def scheduler_address(self) -> str | None:
        """The dask scheduler to train on (``None``: here); see :func:`scheduler_address`."""
        return scheduler_address(self.scheduler, "training on a dask cluster")

    def _on_start_from_changed(self, *_) -> None:
        choice = self.start_from.value
        self.depth.visible = choice == "scratch"
        self.base_channels.visible = choice == "scratch"
