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
    """A fluorescence-like volume of blurred, noisy ellipsoidal nuclei and their labels.

    Centres are random, so some nuclei touch: a voxel belongs to the nucleus whose
    ellipsoid it lies deepest in. ``radius`` is in in-plane pixels; the voxel size
    ``spacing`` (dz, dy, dx) makes the nuclei span fewer planes when ``dz > dx``.
    Returns ``image`` (uint16, ``shape``) and ``labels`` (int32, ids 1..n, 0 background).
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    ratio = np.asarray(spacing, float) / float(spacing[-1])
    grid = np.meshgrid(
        *(np.arange(n) * r for n, r in zip(shape, ratio, strict=True)), indexing="ij"
    )
    extent = np.asarray(shape) * ratio
    depth = np.full(shape, np.inf)
    labels = np.zeros(shape, np.int32)
    for cell in range(1, n_cells + 1):
        centre = rng.uniform(0.15, 0.85, 3) * extent
        radii = radius * rng.uniform(0.8, 1.2, 3)
        d = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
        inside = (d <= 1) & (d < depth)
        labels[inside], depth[inside] = cell, d[inside]
    brightness = np.concatenate([[0.1], rng.uniform(0.6, 1.0, n_cells)])
    image = ndi.gaussian_filter(brightness[labels], sigma=1.5 / ratio)
    image = image + rng.normal(0, noise, shape)
    return (np.clip(image, 0, None) * 10000).astype(np.uint16), labels
