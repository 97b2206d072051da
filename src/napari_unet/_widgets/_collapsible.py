"""A section that opens and closes under a header: the *Advanced* part of a widget."""

from __future__ import annotations

from collections.abc import Sequence

from magicgui.widgets import Container, Widget


class Collapsible(Container):
    """A header button (▸ title) over a body of widgets, hidden until the header is clicked.

    Hidden widgets keep their values and stay read by the widget that owns them.

    Parameters
    ----------
    title : str
        The header's text, e.g. ``"Advanced"``.
    widgets : sequence of magicgui widgets
        The body, top to bottom.
    tooltip : str
        The header's tooltip.
    expanded : bool
        Whether the body shows at first.

    Attributes
    ----------
    header : QToolButton
        The checkable header (checked: open).
    body : magicgui.widgets.Container
        The widgets shown and hidden.
    """

    def __init__(
        self,
        title: str,
        widgets: Sequence[Widget] = (),
        tooltip: str = "",
        expanded: bool = False,
    ):
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QToolButton

        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self.body = Container(widgets=list(widgets), labels=False)
        self.body.margins = (12, 0, 0, 0)
        self.append(self.body)
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setAutoRaise(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setToolTip(tooltip)
        self.native.layout().insertWidget(0, self.header)  # above the body
        self.header.toggled.connect(self._show)
        self.expanded = expanded

    @property
    def expanded(self) -> bool:
        """Whether the body shows."""
        return self.header.isChecked()

    @expanded.setter
    def expanded(self, value: bool) -> None:
        self.header.setChecked(bool(value))
        self._show(bool(value))

    def _show(self, on: bool) -> None:
        from qtpy.QtCore import Qt

        self.header.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.visible = on
