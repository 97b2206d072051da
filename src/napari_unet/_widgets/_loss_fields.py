"""The loss settings of a session (w0, σ, dense masks), shown by more than one widget.

The *Weight map* and *Train* widgets each hold one :class:`LossFields`; both show and
change the session's settings (:meth:`~._session.UNetSession.set_loss_settings`), so
the weight map shown is always the one trained with.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, Container, FloatSpinBox

from ._lifetime import WidgetLifetime


class LossFields(Container):
    """``w0``, ``σ`` and *dense masks* fields bound to a session.

    Parameters
    ----------
    session : UNetSession
        Holds the settings.
    lifetime : WidgetLifetime
        Lifetime of the widget that holds these fields.
    """

    def __init__(self, session, lifetime: WidgetLifetime):
        super().__init__()
        self.margins = (0, 0, 0, 0)
        self._session = session
        from napari_unet.training.settings_help import help_text

        self.w0 = FloatSpinBox(label="w0", value=session.w0, min=0.1, max=100.0, step=1.0)
        self.w0.tooltip = help_text("w0")
        self.sigma = FloatSpinBox(label="σ (px)", value=session.sigma, min=0.5, max=50.0, step=0.5)
        self.sigma.tooltip = help_text("sigma")
        self.dense = CheckBox(text="dense masks (0 = background)", value=session.dense)
        self.dense.tooltip = help_text("dense")
        self.extend([self.w0, self.sigma, self.dense])
        for field in (self.w0, self.sigma, self.dense):
            field.changed.connect(lifetime.guard(self._on_field_changed))
        lifetime.connect(session.loss_settings_changed, self._on_session_changed)

    def _on_field_changed(self, *_) -> None:
        self._session.set_loss_settings(self.w0.value, self.sigma.value, self.dense.value)

    def _on_session_changed(self) -> None:
        session = self._session
        if (self.w0.value, self.sigma.value, self.dense.value) != (
            session.w0,
            session.sigma,
            session.dense,
        ):
            self.w0.value, self.sigma.value = session.w0, session.sigma
            self.dense.value = session.dense
