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


def ellipsoid_volume(
    shape=(12, 64, 64), n_cells=6, radius=8.0, spacing=(2.0, 1.0, 1.0), seed=0, noise=0.05
):
    """Blurred, noisy ellipsoidal nuclei (some touching) and their labels, ids 1..n.

    :func:`napari_unet.testing.synthetic_nuclei_volume` with many nuclei touching;
    ``radius`` is in in-plane pixels. Returns ``image`` (uint16) and ``labels`` (int32).
    """
    from napari_unet.testing import synthetic_nuclei_volume

    image, labels = synthetic_nuclei_volume(
        tuple(shape),
        n_nuclei=n_cells,
        radius=radius,
        spacing=tuple(spacing),
        touching=0.2,
        noise=noise,
        seed=seed,
    )
    return image, labels.astype(np.int32)
