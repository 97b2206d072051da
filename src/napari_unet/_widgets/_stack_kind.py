"""The stack-kind choice of the widgets: a layer's axes and voxel size, asked where unsaid.

napari's ``axis_labels`` and ``scale`` say what a layer's axes are and how large its
voxels are; where the labels say nothing about a 3D stack, the user's choice in this
combo box (:data:`napari_unet.method.stack_axes.STACK_KINDS`: volume, time series,
channels) does. The combo box is enabled only for layers whose labels do not decide.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox

from napari_unet.method.axes import is_volume, spacing_from_scale
from napari_unet.method.stack_axes import DEFAULT_STACK_KIND, STACK_KINDS, axes_from_labels

from ._common import full_resolution


class StackKind:
    """A ``"stack is a"`` combo box and what it and a layer make together.

    Attributes
    ----------
    combo : magicgui.widgets.ComboBox
        The choice; add it to the widget's layout.
    """

    def __init__(self):
        self.combo = ComboBox(
            label="stack is a", choices=list(STACK_KINDS), value=DEFAULT_STACK_KIND
        )
        self.combo.tooltip = "What the first axis of a 3D stack is, where the layer does not say"

    def follow(self, layer) -> None:
        """Show the choice only for a stack, and enable it only where its labels do not decide.

        A single plane (``YX``, RGB or not) has no stack to name: the choice is hidden.
        """
        if layer is None:
            self.combo.enabled = False
            return
        try:
            axes, said = self._axes(layer)
        except ValueError as error:
            self.combo.visible = True
            self.combo.enabled, self.combo.tooltip = False, str(error)
            return
        self.combo.visible = len(axes) > 2
        self.combo.enabled = not said
        self.combo.tooltip = (
            f"{layer.name!r} is {axes} (its axis labels say so)"
            if said and len(axes) > 2
            else "What the first axis of a 3D stack is, where the layer does not say"
        )

    def axes_and_spacing(self, layer) -> tuple[str, tuple[float, ...] | None]:
        """The axes of ``layer`` and, for a volume, its voxel size from ``layer.scale``.

        Raises
        ------
        ValueError
            For an image of more than 4 axes, or a scale that is not a valid spacing.
        """
        axes, _ = self._axes(layer)
        spacing = spacing_from_scale(layer.scale, axes) if is_volume(axes) else None
        return axes, spacing

    def _axes(self, layer) -> tuple[str, bool]:
        shape = tuple(full_resolution(layer).shape)
        rgb = bool(getattr(layer, "rgb", False))
        return axes_from_labels(layer.axis_labels, shape, rgb, self.combo.value)
