"""The axes of a stack from napari's axis labels, or from the user's choice of its kind.

napari layers carry ``axis_labels`` (``("z", "y", "x")`` when a reader or the user named
them; ``("-3", "-2", "-1")`` by default, which says nothing). Where the labels name the
leading axes (``z``, ``t``, ``c`` and their long forms), they decide; where they do not,
the user's choice of :data:`STACK_KINDS` does: a volume, a time series, or channels. The
result is an axes string of :data:`napari_unet.method.axes.AXES_CHOICES`.
"""

from __future__ import annotations

from napari_unet.method.axes import AXES_CHOICES, check_axes

__all__ = ["DEFAULT_STACK_KIND", "STACK_KINDS", "axes_from_labels"]

#: What the leading axis of a 3D stack may be, and the axis letter of each choice.
STACK_KINDS = {"volume": "Z", "time series": "T", "channels": "C"}
#: The kind assumed until the user chooses: a z-stack.
DEFAULT_STACK_KIND = "volume"

#: Axis labels (lower case) that name an axis, as readers and users write them.
_NAMED = {
    **dict.fromkeys(("z", "depth", "plane", "planes", "slice", "slices"), "Z"),
    **dict.fromkeys(("t", "time", "frame", "frames"), "T"),
    **dict.fromkeys(("c", "ch", "channel", "channels"), "C"),
    "y": "Y",
    "x": "X",
}


def axes_from_labels(
    axis_labels, shape: tuple[int, ...], rgb: bool = False, kind: str = DEFAULT_STACK_KIND
) -> tuple[str, bool]:
    """The axes of an image layer, and whether its axis labels said so.

    Parameters
    ----------
    axis_labels : sequence of str or None
        napari's ``layer.axis_labels`` (one per axis without the RGB axis); ``None``:
        no labels.
    shape : tuple of int
        The layer's data shape (with the RGB axis when ``rgb``).
    rgb : bool
        Whether the last axis holds RGB(A) colours.
    kind : str
        Key of :data:`STACK_KINDS`: what the leading axis of a 3D stack is when the
        labels do not say. A 4D stack without labels is ``"TZYX"``.

    Returns
    -------
    (str, bool)
        The axes without the RGB axis (one of :data:`~napari_unet.method.axes.AXES_CHOICES`),
        and ``True`` when the labels decided them (the choice of ``kind`` was not needed
        or not used).

    Raises
    ------
    ValueError
        For an unknown ``kind`` or an image of more than 4 axes (RGB aside).
    """
    if kind not in STACK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(STACK_KINDS)}, got {kind!r}")
    n = len(shape) - (1 if rgb else 0)
    if n <= 2:
        return "YX", True
    labels = list(axis_labels or ())[-n:]
    letters = [_NAMED.get(str(label).strip().lower()) for label in labels]
    named = "".join(letters[:-2]) if len(letters) == n and all(letters[:-2]) else None
    if named is not None and named + "YX" in AXES_CHOICES:
        axes, said = named + "YX", True
    elif n == 3:
        axes, said = STACK_KINDS[kind] + "YX", False
    elif n == 4:
        axes, said = "TZYX", False
    else:
        raise ValueError(
            f"an image of {n} axes (shape {tuple(shape)}): napari-unet takes "
            f"{', '.join(AXES_CHOICES)}"
        )
    check_axes(axes + ("C" if rgb else ""), shape)
    return axes, said
