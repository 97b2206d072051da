"""From the network's foreground probability to one label per cell."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels


def probabilities_to_labels(
    foreground: np.ndarray,
    threshold: float = 0.5,
    min_size: int = 16,
    gap: int = 2,
) -> np.ndarray:
    """Instance labels from a foreground probability map.

    The network is trained to put a thin background gap between touching cells (the
    separation border of Ronneberger et al. 2015, Sec. 3), so thresholding and
    connected components split touching cells. Each cell is then grown back by up to
    ``gap`` pixels, but only into pixels that lie between two different cells (the
    carved separation gap), so isolated cells keep their predicted outline.

    Parameters
    ----------
    foreground : np.ndarray
        ``(Y, X)`` float probability of the cell class, values in [0, 1].
    threshold : float
        Probability above which a pixel is a cell pixel.
    min_size : int
        Connected components smaller than this (pixels) are removed.
    gap : int
        Width in pixels by which cells are grown back over separation gaps.

    Returns
    -------
    np.ndarray
        ``(Y, X)`` int32 labels, 0 = background, 1..N = cells, numbered in raster order.

    Raises
    ------
    ValueError
        If ``foreground`` is not 2D or ``threshold`` is not in (0, 1).
    """
    foreground = np.asarray(foreground)
    if foreground.ndim != 2:
        raise ValueError(f"foreground probability must be 2D (Y, X), got shape {foreground.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    labels, n = ndi.label(foreground > threshold, structure=np.ones((3, 3), bool))
    if n == 0:
        return labels.astype(np.int32, copy=False)
    # Drop small objects and renumber the rest 1..N in raster order, in one lookup.
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= max(min_size, 1)
    keep[0] = False
    forward = np.zeros(n + 1, np.int32)
    forward[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    labels = forward[labels]
    if gap <= 0:
        return labels
    # Growing is local (reach ``gap``), so it runs in bands of rows with a halo: the
    # working set stays bounded on huge images.
    grown = labels.copy()
    halo = gap + 1
    for start in range(0, labels.shape[0], _BAND_ROWS):
        stop = min(start + _BAND_ROWS, labels.shape[0])
        top = max(start - halo, 0)
        band = _grow_into_gaps(labels[top : min(stop + halo, labels.shape[0])], gap)
        grown[start:stop] = band[start - top : start - top + stop - start]
    return grown


#: Rows per band when growing cells back over the separation gaps.
_BAND_ROWS = 1024


def _grow_into_gaps(labels: np.ndarray, gap: int) -> np.ndarray:
    """Grow cells by up to ``gap`` px into background that lies between two cells."""
    grown = expand_labels(labels, distance=gap)
    footprint = np.ones((2 * gap + 1, 2 * gap + 1), bool)
    # A pixel lies in a gap between two cells when the largest and the smallest
    # non-zero label in its neighbourhood differ.
    big = np.iinfo(labels.dtype).max
    highest = ndi.maximum_filter(labels, footprint=footprint)
    lowest = ndi.minimum_filter(np.where(labels > 0, labels, big), footprint=footprint)
    between = (labels == 0) & (grown > 0) & (highest != lowest) & (lowest != big)
    return np.where(between, grown, labels)
