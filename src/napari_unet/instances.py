"""From the network's foreground probability to one label per cell."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, relabel_sequential


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
    cells = foreground > threshold
    labels, n = ndi.label(cells, structure=np.ones((3, 3), bool))
    if n == 0:
        return labels.astype(np.int32)
    if min_size > 1:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
    if gap > 0:
        grown = expand_labels(labels, distance=gap)
        footprint = np.ones((2 * gap + 1, 2 * gap + 1), bool)
        # A pixel lies in a gap between two cells when the largest and the smallest
        # non-zero label in its neighbourhood differ.
        big = np.iinfo(labels.dtype).max
        highest = ndi.maximum_filter(labels, footprint=footprint)
        lowest = ndi.minimum_filter(np.where(labels > 0, labels, big), footprint=footprint)
        between = (labels == 0) & (grown > 0) & (highest != lowest) & (lowest != big)
        labels = np.where(between, grown, labels)
    return relabel_sequential(labels)[0].astype(np.int32, copy=False)
