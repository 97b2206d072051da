"""What the napari-unet widgets of one viewer share: the session and its training state.

napari builds every dock widget of a plugin with its own factory call; the only thing
two widgets of the same viewer have in common is the viewer. :func:`session_for`
therefore keeps one :class:`UNetSession` per viewer in a
:class:`weakref.WeakKeyDictionary` keyed by the (unproxied) viewer: the entry lives
exactly as long as the viewer, two viewers never share a session, and nothing is a
process-wide singleton. The session holds no reference to the viewer, its layers or
its widgets (the image-annotation pairing is weak), so it never keeps a closed viewer
alive.

This module imports neither Qt nor napari: the session is testable on its own.
"""

from __future__ import annotations

import weakref
from enum import Enum
from typing import Any

from psygnal import Signal


class TrainingState(str, Enum):
    """Status of the training run of a session (a small state machine).

    ``IDLE → TRAINING → DONE | STOPPING | FAILED``, ``STOPPING → STOPPED | DONE | FAILED``
    and from any finished state back to ``TRAINING``. ``STOPPING`` is the short wait
    between a click on *Stop* and the end of the current iteration.
    """

    IDLE = "idle"
    TRAINING = "training"
    STOPPING = "stopping"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def running(self) -> bool:
        """Whether a worker is training in this state."""
        return self in (TrainingState.TRAINING, TrainingState.STOPPING)


_FINISHED = {TrainingState.DONE, TrainingState.STOPPED, TrainingState.FAILED}
_TRANSITIONS: dict[TrainingState, set[TrainingState]] = {
    TrainingState.IDLE: {TrainingState.TRAINING},
    TrainingState.TRAINING: {TrainingState.STOPPING, *_FINISHED},
    TrainingState.STOPPING: _FINISHED,
    TrainingState.DONE: {TrainingState.TRAINING},
    TrainingState.STOPPED: {TrainingState.TRAINING},
    TrainingState.FAILED: {TrainingState.TRAINING},
}


class UNetSession:
    """State shared by the widgets of one viewer.

    Attributes
    ----------
    model : UNet or None
        The model trained in this session (read-only; set with :meth:`set_model`).
    model_description : str
        One line saying where :attr:`model` comes from.
    optimizer_state : dict or None
        The optimiser state at the end of the run that made :attr:`model` (read-only;
        set with :meth:`set_model`), so that the next run continues it warm.
    training_state : TrainingState
        Read-only; changed with :meth:`set_training_state`, which enforces the
        transitions of :class:`TrainingState`.
    w0, sigma : float
        Separation-border weight and width (pixels) of eq. 2 of Ronneberger et al.
        2015: the weight map shown and the one trained with.
    dense : bool
        Whether annotations are dense masks (0 = background) rather than partial ones.

    The three loss settings are shown by both the *Weight map* and the *Train* widgets
    and changed with :meth:`set_loss_settings`, so the map shown is the map trained with.

    Signals
    -------
    model_changed(model)
    training_state_changed(new: TrainingState, old: TrainingState)
    loss_settings_changed()
    """

    model_changed = Signal(object)
    training_state_changed = Signal(TrainingState, TrainingState)
    loss_settings_changed = Signal()

    def __init__(self) -> None:
        self._model: Any = None
        self._optimizer_state: dict | None = None
        self.model_description = ""
        self._training_state = TrainingState.IDLE
        from napari_unet.method.weight_map import DEFAULT_SIGMA, DEFAULT_W0

        self.w0 = DEFAULT_W0
        self.sigma = DEFAULT_SIGMA
        self.dense = False
        self._annotations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- model -----------------------------------------------------------------------
    @property
    def model(self):
        """The model trained in this session, or ``None``."""
        return self._model

    @property
    def optimizer_state(self) -> dict | None:
        """Optimiser state of the run that trained :attr:`model`, or ``None``."""
        return self._optimizer_state

    def set_model(self, model, description: str = "", optimizer_state: dict | None = None) -> None:
        """Make ``model`` the session's model and announce it.

        Parameters
        ----------
        model : UNet
            The trained network.
        description : str
            Where the model comes from, one line.
        optimizer_state : dict, optional
            :attr:`~napari_unet.training.loop.TrainingResult.optimizer_state` of the run
            that trained ``model``: a second round from the session model passes it
            to :func:`~napari_unet.training.loop.train`.
        """
        self._model = model
        self._optimizer_state = optimizer_state
        self.model_description = description
        self.model_changed.emit(model)

    # -- training state machine --------------------------------------------------------
    @property
    def training_state(self) -> TrainingState:
        """Current :class:`TrainingState`."""
        return self._training_state

    def set_training_state(self, state: TrainingState) -> None:
        """Move the training state machine to ``state``.

        Raises
        ------
        ValueError
            If the transition is not allowed (e.g. ``IDLE → DONE``).
        """
        state = TrainingState(state)
        old = self._training_state
        if state is old:
            return
        if state not in _TRANSITIONS[old]:
            raise ValueError(f"training cannot go from {old.value} to {state.value}")
        self._training_state = state
        self.training_state_changed.emit(state, old)

    # -- loss settings -------------------------------------------------------------------
    def set_loss_settings(
        self, w0: float | None = None, sigma: float | None = None, dense: bool | None = None
    ) -> None:
        """Change ``w0`` (weight units), ``sigma`` (pixels) or ``dense``; ``None`` keeps one."""
        new = (
            self.w0 if w0 is None else float(w0),
            self.sigma if sigma is None else float(sigma),
            self.dense if dense is None else bool(dense),
        )
        if new != (self.w0, self.sigma, self.dense):
            self.w0, self.sigma, self.dense = new
            self.loss_settings_changed.emit()

    def training_config(self, **settings):
        """A :class:`~napari_unet.training.loop.TrainingConfig` with this session's w0 and σ.

        Parameters
        ----------
        **settings
            Further fields of the config.
        """
        from napari_unet.training.loop import TrainingConfig

        return TrainingConfig(w0=self.w0, sigma=self.sigma, **settings)

    # -- which annotation belongs to which image ---------------------------------------
    def pair(self, image_layer, annotation_layer) -> None:
        """Remember that ``annotation_layer`` annotates ``image_layer`` (weakly)."""
        self._annotations[image_layer] = weakref.ref(annotation_layer)

    def annotation_for(self, image_layer):
        """Return the annotation layer paired with ``image_layer``, or ``None``."""
        ref = self._annotations.get(image_layer)
        return ref() if ref is not None else None


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> UNetSession:
    """Return the :class:`UNetSession` of ``viewer``, created on first use.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer, or the ``PublicOnlyProxy`` napari hands to plugin widgets (each
        widget gets its own proxy, so the wrapped viewer is the key).
    """
    viewer = getattr(viewer, "__wrapped__", viewer)
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = UNetSession()
    return session
