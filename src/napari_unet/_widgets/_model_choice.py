"""The model choice of the widgets: session model, shipped default, a file (or scratch).

One piece for the *Segment* widget ("model") and the *Train* widget ("start from"): the
choices, their greyed-out reasons, the file field, and what the core gets as ``model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from magicgui.widgets import ComboBox, FileEdit

from ._common import disable_choices
from ._lifetime import WidgetLifetime

#: Every model source a widget may offer, with its text.
MODEL_SOURCES = {
    "session": "model trained in this session",
    "default": "shipped default model",
    "file": "model file",
    "scratch": "scratch (new network)",
}
#: Why a source is greyed out.
UNAVAILABLE = {
    "session": "No model has been trained in this session yet",
    "default": "No default model is installed with napari-unet",
}


class ModelChoice:
    """A source ComboBox and a model-file field, kept consistent.

    Parameters
    ----------
    lifetime : WidgetLifetime
        Lifetime of the widget holding the two fields.
    sources : sequence of str
        Keys of :data:`MODEL_SOURCES` to offer, in order.
    label : str
        Label of the ComboBox.

    Attributes
    ----------
    combo : magicgui.widgets.ComboBox
        The source; its value is a key of :data:`MODEL_SOURCES`.
    file : magicgui.widgets.FileEdit
        The model file, shown only when the source is ``"file"``.
    """

    def __init__(self, lifetime: WidgetLifetime, sources: Sequence[str], label: str):
        from napari_unet.models.files import READABLE_SUFFIXES, default_model_available

        self.sources = tuple(sources)
        self.default_available = default_model_available()
        self.combo = ComboBox(label=label, choices=[(MODEL_SOURCES[k], k) for k in self.sources])
        # the formats napari_unet.load_model reads
        readable = " ".join(f"*{suffix}" for suffix in READABLE_SUFFIXES)
        self.file = FileEdit(label="model file", mode="r", filter=readable)
        self.combo.changed.connect(lifetime.guard(self._on_changed))

    def update(self, session_has_model: bool, prefer: Sequence[str] = ()) -> None:
        """Grey out the sources that do not exist, with a tooltip saying why.

        Parameters
        ----------
        session_has_model : bool
            Whether the session has a trained model.
        prefer : sequence of str
            Select the first of these sources that is available.
        """
        disabled = {}
        if not session_has_model:
            disabled["session"] = UNAVAILABLE["session"]
        if not self.default_available:
            disabled["default"] = UNAVAILABLE["default"]
        disabled = {k: v for k, v in disabled.items() if k in self.sources}
        for key in prefer:
            if key in self.sources and key not in disabled:
                self.combo.value = key
                break
        disable_choices(self.combo, disabled)
        self._on_changed()

    def model_argument(self, session):
        """What the core gets as ``model``, and one line saying what it is.

        A file is returned as its path and loaded by the worker, not on the GUI thread;
        the session's model is returned as it is (the core works on a copy); scratch is
        ``None``.

        Returns
        -------
        (model, description)
            ``model`` is a ``UNet``, the shipped model's name, a ``Path`` or ``None``.

        Raises
        ------
        FileNotFoundError
            If the model file does not exist.
        ValueError
            If the session has no model.
        """
        from napari_unet.models.files import DEFAULT_MODEL_NAME

        choice = self.combo.value
        if choice == "session":
            if session.model is None:
                raise ValueError(UNAVAILABLE["session"].lower())
            return session.model, "the session's model"
        if choice == "file":
            path = Path(self.file.value)
            if not path.is_file():
                raise FileNotFoundError(f"choose a model file (no file {str(path)!r})")
            return path, path.name
        if choice == "scratch":
            return None, "scratch"
        return DEFAULT_MODEL_NAME, "the default model"

    def _on_changed(self, *_) -> None:
        if self.file.native.parent() is not None:  # a parentless widget would pop up
            self.file.visible = self.combo.value == "file"
