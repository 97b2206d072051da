"""Synthetic label images shared by the tests."""

import numpy as np
from skimage.segmentation import expand_labels


def voronoi_cells(shape, n_cells, seed, grow):
    """Random touching cells (ids 1..n) with background where seeds are sparse."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    seeds[rng.integers(0, shape[0], n_cells), rng.integers(0, shape[1], n_cells)] = np.arange(
        1, n_cells + 1
    )
    return expand_labels(seeds, distance=grow)
