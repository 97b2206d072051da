"""The voxel size stored in image files: ImageJ TIFF metadata and OME-Zarr scales."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _positive(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _pixel_size(tag) -> float | None:
    """Pixel size from a TIFF resolution tag (pixels per unit, a rational)."""
    if tag is None:
        return None
    value = tag.value
    try:
        per_unit = value[0] / value[1] if isinstance(value, tuple) else float(value)
    except (TypeError, ZeroDivisionError, IndexError):
        return None
    return _positive(1.0 / per_unit) if per_unit else None


def read_tiff_spacing(path: str | os.PathLike) -> tuple[tuple[float, ...] | None, str | None]:
    """The voxel size ``(dz, dy, dx)`` (or pixel size ``(dy, dx)``) a TIFF file stores.

    ``dy`` and ``dx`` come from the resolution tags (pixels per unit), ``dz`` from the
    ImageJ metadata's ``spacing`` (ImageJ's "voxel depth"), all in the ImageJ ``unit``.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF file.

    Returns
    -------
    spacing : tuple of float or None
        ``(dz, dy, dx)`` when the file has an ImageJ ``spacing``, ``(dy, dx)`` when it has
        only resolution tags, ``None`` when it stores neither (or values that are not
        positive and finite).
    unit : str or None
        The ImageJ unit (e.g. ``"um"``, ``"micron"``), ``None`` when not given.

    Raises
    ------
    ValueError
        If the file is not a readable TIFF.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            tags = page.tags
            dx = _pixel_size(tags.get("XResolution"))
            dy = _pixel_size(tags.get("YResolution"))
            imagej = tif.imagej_metadata or {}
    except (OSError, ValueError, tifffile.TiffFileError) as error:
        raise ValueError(f"cannot read the metadata of {path}: {error}") from error
    unit = imagej.get("unit")
    unit = None if unit is None else str(unit)
    dz = _positive(imagej.get("spacing"))
    if dx is None or dy is None:
        # no usable resolution: the plane's pixels are square, of unknown size
        if dz is None:
            return None, unit
        return (dz, 1.0, 1.0), unit
    if dz is None:
        return (dy, dx), unit
    return (dz, dy, dx), unit


def stored_spacing(path: str | os.PathLike) -> tuple[tuple[float, ...] | None, str | None]:
    """The voxel size a file stores that napari-unet uses: an ImageJ TIFF's, with its unit.

    :func:`read_tiff_spacing` for a ``.tif``/``.tiff`` file whose ImageJ metadata names a
    unit; ``(None, None)`` otherwise: without an ImageJ unit the resolution tags often
    hold a printer's dpi, not a pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        An image file of any format.

    Returns
    -------
    spacing, unit
        As :func:`read_tiff_spacing`, or ``(None, None)``.

    Raises
    ------
    ValueError
        If a TIFF file's metadata cannot be read.
    """
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None, None
    spacing, unit = read_tiff_spacing(path)
    return (spacing, unit) if unit is not None else (None, None)


def ome_axes_and_spacing(axes: list, transforms: list) -> tuple[str, tuple[float, ...] | None]:
    """Axes letters and spatial voxel size of an OME-Zarr image's full-resolution level.

    Parameters
    ----------
    axes : list
        The multiscales ``axes`` (dicts with ``name``, or names; OME-NGFF 0.4/0.5).
    transforms : list
        The level's ``coordinateTransformations``.

    Returns
    -------
    axes : str
        Upper-case letters, e.g. ``"TCZYX"`` (``""`` when the metadata names none).
    spacing : tuple of float or None
        The scale of the ``Z``, ``Y``, ``X`` axes present, in that order; ``None``
        without a usable ``scale`` transform.
    """
    names = [str(a.get("name", "") if isinstance(a, dict) else a)[:1].upper() for a in axes]
    letters = "".join(names)
    scale = None
    for transform in transforms or []:
        if transform.get("type") == "scale":
            scale = list(transform.get("scale", []))
    if scale is None or len(scale) != len(names):
        return letters, None
    spatial = [_positive(scale[i]) for i, name in enumerate(names) if name in "ZYX"]
    if not spatial or any(value is None for value in spatial):
        return letters, None
    return letters, tuple(spatial)
