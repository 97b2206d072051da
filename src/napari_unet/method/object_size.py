"""The object size hint: the typical cell diameter, given by the user or measured.

Stored in a trained model (:func:`napari_unet.models.metadata.model_object_size`; a model
without one counts as :data:`DEFAULT_OBJECT_SIZE`), it sets three rules:

- the training tile: an output of ``clamp(2 x object size, MIN_TILE_OUTPUT,
  MAX_TILE_OUTPUT)`` pixels (:mod:`napari_unet.training.config`, applied in
  :mod:`napari_unet.training.loop`), so a tile holds a cell and its neighbours;
- the smallest cell kept when segmenting: a quarter of the disc of that diameter, at
  least 8 pixels (:func:`napari_unet.method.instances.min_size_for`);
- the block overlap of images too large for memory: ``OVERLAP_CELL_DIAMETERS`` diameters,
  rounded up to the pooling grid (:func:`napari_unet.inference.blocks.default_overlap`).
"""

from __future__ import annotations

import math

import numpy as np

from napari_unet.method.annotation import FIRST_CELL

#: Typical cell diameter (pixels) assumed for a model that stores none.
DEFAULT_OBJECT_SIZE = 16.0


def check_object_size(object_size) -> float:
    """Return a typical cell diameter (pixels) as a float, or raise ``ValueError``.

    Parameters
    ----------
    object_size : float
        Typical diameter of a cell, pixels (e.g. 15 for nuclei at 20x, 100 for large
        spread cells).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``object_size`` is not a finite number >= 1 (0, negative, NaN, infinite).
    """
    try:
        value = float(object_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"object size must be a number of pixels (a cell diameter), got {object_size!r}"
        ) from None
    if isinstance(object_size, bool) or not math.isfinite(value) or value < 1:
        raise ValueError(
            f"object size must be a finite cell diameter of at least 1 pixel, got {object_size!r}"
        )
    return value


def estimate_object_size(annotations, dense: bool = False) -> float | None:
    """Median equivalent diameter (pixels) of the annotated cells.

    The equivalent diameter of a cell of area ``A`` is ``sqrt(4 A / pi)``. Cells cut
    by the image edge are left out unless every cell is.

    Parameters
    ----------
    annotations : sequence of array_like
        Label images ``(..., Y, X)`` in the partial convention (cells ``>= 2``) or,
        with ``dense=True``, dense labels (cells ``>= 1``). Each 2D plane counts
        separately.
    dense : bool
        Interpret the labels as dense ground truth.

    Returns
    -------
    float or None
        The median diameter in pixels, ``None`` when no cell is annotated.
    """
    first_cell = 1 if dense else FIRST_CELL
    inside, cut = [], []
    for annotation in annotations:
        annotation = np.asarray(annotation)
        planes = annotation.reshape(-1, *annotation.shape[-2:]) if annotation.ndim >= 2 else []
        for plane in planes:
            cells = np.where(plane >= first_cell, plane, 0)
            if not cells.any():
                continue
            ids, areas = np.unique(cells[cells > 0], return_counts=True)
            edge = np.unique(np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]]))
            on_edge = np.isin(ids, edge)
            diameters = np.sqrt(4.0 * areas / math.pi)
            inside.extend(diameters[~on_edge])
            cut.extend(diameters[on_edge])
    chosen = inside or cut
    return float(np.median(chosen)) if chosen else None
