"""What the axes of an image are (``"ZYX"``, ``"TYX"``, …) and the voxel size: their one check.

An image's ``axes`` string names its axes in order, napari/OME style:

- ``Y`` and ``X``: the plane the 2D network sees; always the last two (before a colour axis);
- ``Z``: a volume: one object is one id across its planes (3D instances);
- ``T``: a time series: frames are segmented one by one (``TZYX``: one volume per time point);
- ``C``: channels, in front (``CYX``): each channel is segmented as its own plane, so a
  nucleus channel's labels are those of that channel;
- a trailing ``C`` (``YXC``, ``ZYXC``, …): RGB(A) colour, converted to one gray plane as
  without axes (:func:`~napari_unet.method.images.rgb_plane_to_gray`).

``axes=None`` keeps the behaviour without axes: every leading axis is a stack of unrelated
planes (ids numbered per plane). ``spacing`` is the size of a pixel or voxel along the
spatial axes (``(dz, dy, dx)`` for a volume, ``(dy, dx)`` otherwise) in any one unit:
only its ratios matter.
"""

from __future__ import annotations

import math

#: The axes strings an image may have (without a trailing RGB colour axis ``C``).
AXES_CHOICES = ("YX", "ZYX", "TYX", "TZYX", "CYX")
#: Spatial axes, in the order ``spacing`` gives their sizes.
SPATIAL_AXES = "ZYX"
#: A trailing axis of this letter holds RGB(A) colours.
RGB_AXIS = "C"
#: How a volume is predicted (:func:`napari_unet.inference.volumes.iter_predict_volume`):
#: the 2D network on its XY planes, or on its XY, XZ and YZ planes (averaged).
VOLUME_METHODS = ("planes", "orthogonal")
#: The default, chosen by measurement (docs/method.md, Volumes).
DEFAULT_VOLUME_METHOD = "orthogonal"


def check_axes(axes: str | None, shape: tuple[int, ...], rgb: bool | None = None) -> str | None:
    """Check an axes string against an image shape; return it in capitals.

    Parameters
    ----------
    axes : str or None
        One of :data:`AXES_CHOICES` (any case), optionally with a trailing ``"C"`` for
        an RGB(A) colour axis of length 3 or 4. ``None``: no axes (a stack of planes).
    shape : tuple of int
        The image's shape.
    rgb : bool, optional
        Whether the last axis holds RGB(A) colours, when the caller knows it; ``None``:
        the axes string says so (a trailing ``"C"``).

    Returns
    -------
    str or None
        The axes without the RGB axis (one of :data:`AXES_CHOICES`), or ``None``.

    Raises
    ------
    ValueError
        If ``axes`` is not one of the choices, its length is not the image's number of
        dimensions, a trailing ``"C"`` axis is not of length 3 or 4, or ``rgb`` says the
        opposite of the axes.
    """
    if axes is None:
        return None
    if not isinstance(axes, str):
        raise ValueError(f"axes must be a string such as 'ZYX', got {axes!r}")
    name = axes.upper()
    shape = tuple(int(s) for s in shape)
    colour = name.endswith("X" + RGB_AXIS)
    base = name[:-1] if colour else name
    if base not in AXES_CHOICES:
        raise ValueError(
            f"axes {axes!r} is not one of {', '.join(AXES_CHOICES)} (with a trailing 'C' "
            "for an RGB colour axis)"
        )
    if len(name) != len(shape):
        raise ValueError(
            f"axes {axes!r} name {len(name)} axes but the image has {len(shape)} (shape {shape})"
        )
    if colour and shape[-1] not in (3, 4):
        raise ValueError(
            f"axes {axes!r} end with an RGB axis 'C', but the last axis of shape {shape} "
            "has not 3 or 4 colours"
        )
    if rgb is not None and bool(rgb) != colour:
        said = "is" if rgb else "is not"
        raise ValueError(f"axes {axes!r} and rgb={rgb} disagree: rgb says the last axis {said} RGB")
    return base


def is_volume(axes: str | None) -> bool:
    """Whether images of these axes hold volumes (a ``Z`` axis): 3D instances."""
    return axes is not None and "Z" in axes


def spatial_axes(axes: str | None) -> str:
    """The spatial axes of ``axes`` in order: ``"ZYX"`` for volumes, else ``"YX"``."""
    return "ZYX" if is_volume(axes) else "YX"


def check_spacing(spacing, axes: str | None = "ZYX") -> tuple[float, ...] | None:
    """Check a pixel or voxel size; return it as floats.

    Parameters
    ----------
    spacing : sequence of float or None
        Size of a voxel along ``Z, Y, X`` (volumes) or of a pixel along ``Y, X``, in any
        one unit (only ratios matter). ``None``: isotropic (all ones).
    axes : str or None
        The image's axes (as returned by :func:`check_axes`); sets the length.

    Returns
    -------
    tuple of float or None
        ``None`` when ``spacing`` is ``None``.

    Raises
    ------
    ValueError
        If a value is not a number, is 0, negative, NaN or infinite, or ``spacing`` has
        not one value per spatial axis (3 for ``Z, Y, X``, 2 for ``Y, X``).
    """
    if spacing is None:
        return None
    spatial = spatial_axes(axes)
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(
            f"spacing must be numbers (the voxel size along {', '.join(spatial)}), got {spacing!r}"
        ) from None
    if len(values) != len(spatial):
        hint = " (for a volume, give axes='ZYX')" if len(values) == 3 else ""
        raise ValueError(
            f"spacing {values} has {len(values)} values; the image's spatial axes "
            f"{spatial} need {len(spatial)}{hint}"
        )
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(
            f"spacing must be positive finite sizes along {spatial}, got {values} "
            f"({bad[0]} is {_what(bad[0])})"
        )
    return values


def _what(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    return "zero" if value == 0 else "negative"


def spacing_from_scale(scale, axes: str) -> tuple[float, ...]:
    """The spatial ``spacing`` in a napari layer ``scale`` (one value per axis of ``axes``).

    Parameters
    ----------
    scale : sequence of float
        One value per axis of ``axes`` (napari's layer ``scale``; an RGB axis has none).
    axes : str
        As accepted by :func:`check_axes`.

    Returns
    -------
    tuple of float
        The values of the spatial axes (``Z, Y, X`` or ``Y, X``), checked by
        :func:`check_spacing`.

    Raises
    ------
    ValueError
        If ``scale`` has not one value per axis, or a spatial value is not positive.
    """
    name = axes.upper()
    if name.endswith("X" + RGB_AXIS):
        name = name[:-1]
    scale = tuple(scale)
    if len(scale) != len(name):
        raise ValueError(f"scale {scale} does not have one value per axis of {axes!r}")
    spatial = [value for letter, value in zip(name, scale, strict=True) if letter in SPATIAL_AXES]
    return check_spacing(spatial, name)


def check_volume_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`VOLUME_METHODS`, else raise ``ValueError``."""
    if method not in VOLUME_METHODS:
        raise ValueError(
            f"volume method must be one of {', '.join(VOLUME_METHODS)}, got {method!r}"
        )
    return method
