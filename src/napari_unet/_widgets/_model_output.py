"""The model buttons of the *Train* widget: save the session's model, export it to bioimage.io."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from magicgui.widgets import Container, PushButton
from napari.utils.notifications import show_error, show_info

from ._lifetime import WidgetLifetime
from ._train_run import export_bioimageio_job


class ModelOutput(Container):
    """*Save model…* and *Export to bioimage.io…* for the session's model.

    Parameters
    ----------
    session : UNetSession
        Holds the model.
    lifetime : WidgetLifetime
        The lifetime of the *Train* widget: the export runs as its worker, so it never
        runs beside training.
    on_busy : callable
        ``on_busy(True)`` when an export starts, ``on_busy(False)`` when it ends (the
        widget greys out *Start* meanwhile).
    """

    def __init__(self, session, lifetime: WidgetLifetime, on_busy: Callable[[bool], None]):
        super().__init__(layout="horizontal", labels=False)
        self.margins = (0, 0, 0, 0)
        self._session = session
        self._lifetime = lifetime
        self._on_busy = on_busy
        self.save_button = PushButton(text="Save model…")
        self.save_button.tooltip = (
            "Write the model trained in this session to a .safetensors file (weights, "
            "architecture, normalisation, training settings; no code)"
        )
        self.export_button = PushButton(text="Export to bioimage.io…")
        self.export_button.tooltip = (
            "Write the model as a bioimage.io package (.zip) for other tools; needs "
            "napari-unet-cells[bioimageio]"
        )
        self.extend([self.save_button, self.export_button])
        guard = lifetime.guard
        self.save_button.changed.connect(guard(self._on_save_clicked))
        self.export_button.changed.connect(guard(self._on_export_clicked))

    def update(self, running: bool) -> None:
        """Enable the buttons when there is a model and no training runs."""
        self.save_button.enabled = not running and self._session.model is not None
        self.export_button.enabled = self.save_button.enabled

    def save_model(self, path) -> Path:
        """Write the session's model to ``path`` (safetensors), atomically.

        Raises
        ------
        ValueError
            If no model has been trained in this session.
        """
        from napari_unet.models.files import save_model

        if self._session.model is None:
            raise ValueError("no model has been trained in this session yet")
        return save_model(self._session.model, path)

    def export_bioimageio(self, path):
        """Export the session's model as a bioimage.io package in a worker.

        Returns the worker (already started), or ``None`` when there is no model or a
        worker of the widget runs. Success and failure are shown as notifications.
        """
        if self._session.model is None or self._lifetime.running:
            return None
        self.export_button.enabled = False
        self._on_busy(True)
        return self._lifetime.run(
            export_bioimageio_job,
            self._session.model,
            path,
            returned=lambda written: show_info(f"bioimage.io package written to {written}"),
            errored=lambda error: show_error(f"Could not export the model: {error}"),
            finished=self._on_export_finished,
        )

    def _on_export_finished(self) -> None:
        self._on_busy(False)
        self.export_button.enabled = self.save_button.enabled

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

    def _on_export_clicked(self, *_):
        from qtpy.QtWidgets import QFileDialog

        try:
            from napari_unet.models.bioimageio import require_bioimageio

            require_bioimageio()
        except ImportError as error:
            show_error(str(error))
            return
        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Export to bioimage.io", "unet.bioimageio.zip", "bioimage.io model (*.zip)"
        )
        if path:
            self.export_bioimageio(path)
