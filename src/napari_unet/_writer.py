"""npe2 writer: Labels layers to compressed, ImageJ-compatible TIFF (no Qt, no napari).

The file is written by :func:`napari_unet.io.files.write_labels_tiff`: zlib compression,
the layer's ``scale`` as TIFF resolution (pixels per unit; ImageJ ``spacing`` for the
first axis of a stack), the layer's unit, and an atomic write (temporary file in the
destination folder, then ``os.replace``).

Dtype policy (ImageJ reads only 8- and 16-bit integer images):

- ``uint8`` and ``uint16`` labels are written as they are;
- any other integer labels (napari's ``int32``/``int64``, the segmentation's ``int32``)
  whose ids fit, i.e. ``0 <= id < 65536``, are written as ``uint16`` - the values are
  unchanged, only the dtype narrows, and ImageJ/Fiji opens the file as a 16-bit image;
- with ids of 65536 or more they are written as ``uint32`` (ids up to 2**32 - 1), which
  tifffile and Fiji's Bio-Formats importer read exactly, or ``uint64`` (larger ids),
  which tifffile reads exactly but ImageJ/Fiji cannot open, in a plain (non-ImageJ)
  TIFF;
- no id is ever changed: negative ids, non-integer data, a scale that is not positive
  and finite, and a unit that a TIFF cannot hold (non-ASCII; ``"µm"`` is written as
  ``"um"``) are refused with a ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_UNIT_NAMES = {
    "micrometer": "um",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "pixel": "pixel",
}


def _unit_name(units: Any) -> str:
    """ImageJ unit string for napari layer ``units`` (a pint unit or string per axis)."""
    if units is None:
        return "pixel"
    if not isinstance(units, str) and hasattr(units, "__len__") and len(units):
        units = units[-1]
    name = str(units)
    return _UNIT_NAMES.get(name, name)


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one Labels layer to a TIFF file (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Destination, ending in ``.tif`` or ``.tiff``.
    data : array-like
        ``(Y, X)`` or ``(Z, Y, X)`` non-negative integer labels (the layer's data).
    attributes : dict
        Layer attributes from napari; ``scale`` (pixel size per axis) and ``units`` are
        used when present.

    Returns
    -------
    list of str
        The path written.

    Raises
    ------
    ValueError
        For non-integer or negative labels, a rank other than 2 or 3, another suffix,
        a scale that is not positive and finite, or a non-ASCII unit.
    """
    import numpy as np

    from napari_unet.io.files import write_labels_tiff

    labels = np.asarray(data)
    attributes = attributes or {}
    scale = attributes.get("scale")
    if scale is not None:
        scale = tuple(scale)[-labels.ndim :]
    written = write_labels_tiff(
        Path(path), labels, scale=scale, unit=_unit_name(attributes.get("units"))
    )
    return [str(written)]
