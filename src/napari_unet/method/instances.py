"""From the network's class probabilities to one label per cell.

Two instance steps, chosen by the model's output:

- two classes (the paper's background/cell): :func:`probabilities_to_labels`,
  threshold + connected components, relying on the predicted separation gap;
- three classes (background / cell interior / cell boundary):
  :func:`boundary_watershed`, a marker-controlled watershed seeded by the cell
  interiors, which splits touching cells even where the gap is not predicted.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels, watershed

#: Rows per band when growing cells back over the separation gaps.
_BAND_ROWS = 1024
# Post-processing fallbacks for models whose metadata has none: the one definition
# (models.metadata re-exports them for inference.segment.InstanceSettings).
DEFAULT_THRESHOLD = 0.5
"""Foreground probability threshold."""
DEFAULT_MIN_SIZE = 16
"""Smallest cell kept, pixels."""
DEFAULT_SEED_THRESHOLD = 0.5
"""Interior probability of a watershed seed (three-class models)."""


def probabilities_to_labels(
    foreground: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    grow: int = 2,
) -> np.ndarray:
    """Instance labels from a foreground probability map.

    The network is trained to put a thin background gap between touching cells (the
    separation border of Ronneberger et al. 2015, Sec. 3), so thresholding and
    connected components split touching cells. Each cell is then grown back by up to
    ``grow`` pixels (the whole width of the gap: twice the ``gap`` carved from each
    cell by :func:`~napari_unet.method.annotation.annotation_to_target`), but only into pixels
    that lie between two different cells (the carved separation gap), so isolated cells
    keep their predicted outline.

    Parameters
    ----------
    foreground : np.ndarray
        ``(Y, X)`` float probability of the cell class, values in [0, 1].
    threshold : float
        Probability above which a pixel is a cell pixel.
    min_size : int
        Connected components smaller than this (pixels) are removed.
    grow : int
        Width in pixels by which cells are grown back over separation gaps; 0: none.

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
    labels = _components(foreground > threshold, min_size)
    if grow <= 0:
        return labels
    # Growing is local (reach ``grow``), so it runs in bands of rows with a halo: the
    # working set stays bounded on huge images.
    grown = labels.copy()
    halo = grow + 1
    for start in range(0, labels.shape[0], _BAND_ROWS):
        stop = min(start + _BAND_ROWS, labels.shape[0])
        top = max(start - halo, 0)
        band = _grow_into_gaps(labels[top : min(stop + halo, labels.shape[0])], grow)
        grown[start:stop] = band[start - top : start - top + stop - start]
    return grown


def _grow_into_gaps(labels: np.ndarray, grow: int) -> np.ndarray:
    """Grow cells by up to ``grow`` px into background that lies between two cells."""
    grown = expand_labels(labels, distance=grow)
    footprint = np.ones((2 * grow + 1, 2 * grow + 1), bool)
    # A pixel lies in a gap between two cells when the largest and the smallest
    # non-zero label in its neighbourhood differ.
    big = np.iinfo(labels.dtype).max
    highest = ndi.maximum_filter(labels, footprint=footprint)
    lowest = ndi.minimum_filter(np.where(labels > 0, labels, big), footprint=footprint)
    between = (labels == 0) & (grown > 0) & (highest != lowest) & (lowest != big)
    return np.where(between, grown, labels)


def min_size_for(object_size: float) -> int:
    """Default smallest object (pixels) for a typical cell diameter ``object_size`` (px).

    Objects smaller than a disc of half that diameter (a quarter of its area) are
    dropped: debris and fragments of cells, not cells of that size. At least 8 pixels.
    Chosen on the ``val`` split of the fine-tuning benchmark (docs/benchmarks.md).
    """
    return max(8, int(math.pi / 4 * (object_size / 2) ** 2))


def min_volume_for(
    min_size: int, spacing: tuple[float, ...] | None = None, n_planes: int | None = None
) -> int:
    """Smallest cell of a volume (voxels) for a smallest cell of a plane (pixels).

    A plane's smallest cell of ``min_size`` pixels is a disc of diameter ``d``; the
    volume's is the ball of that diameter, ``min_size * 2/3 d`` (the disc times two
    thirds of its diameter), with ``d`` converted into planes by the voxel's
    ``dy / dz`` and at most the volume's ``n_planes`` deep (a volume of one or two
    planes keeps cells that thin), at least one plane.

    Parameters
    ----------
    min_size : int
        Smallest cell of a plane, pixels.
    spacing : tuple of float, optional
        Voxel size ``(dz, dy, dx)``; default isotropic.
    n_planes : int, optional
        Planes of the volume; default no limit.

    Returns
    -------
    int
        Voxels, at least ``min_size``.
    """
    dz, dy = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    diameter = math.sqrt(4.0 * max(int(min_size), 1) / math.pi)
    depth = 2.0 / 3.0 * diameter * dy / dz
    if n_planes is not None:
        depth = min(depth, n_planes)
    return int(round(max(int(min_size), 1) * max(depth, 1.0)))


def components_3d(
    foreground: np.ndarray, threshold: float = DEFAULT_THRESHOLD, min_size: int = DEFAULT_MIN_SIZE
) -> np.ndarray:
    """Cells of a volume's foreground probability: threshold and 3D connected components.

    The two-class instance step of a volume (26-connectivity); no separation gap is
    grown back (:func:`probabilities_to_labels` does in a plane).

    Parameters
    ----------
    foreground : np.ndarray
        ``(Z, Y, X)`` float probability of the cell class.
    threshold : float
        Probability above which a voxel is cell, in (0, 1).
    min_size : int
        Smaller components (voxels) are removed.

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` int32 labels, 0 = background, 1..N in raster order.

    Raises
    ------
    ValueError
        If ``foreground`` is not 3D or ``threshold`` is not in (0, 1).
    """
    foreground = np.asarray(foreground)
    if foreground.ndim != 3:
        raise ValueError(f"foreground probability must be 3D (Z, Y, X), got {foreground.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return _components(foreground > threshold, min_size)


def _components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """int32 connected components of ``mask`` (8- or 26-connectivity) of ``min_size`` or more.

    Smaller ones are dropped and the rest renumbered 1..N in raster order, in one lookup.
    """
    labels, n = ndi.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= max(int(min_size), 1)
    keep[0] = False
    forward = np.zeros(n + 1, np.int32)
    forward[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return forward[labels]


def boundary_watershed(
    background: np.ndarray,
    interior: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    seed_threshold: float = DEFAULT_SEED_THRESHOLD,
    min_seed_size: int | None = None,
    smoothing: float = 0.0,
    fill_holes: bool = False,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Instance labels from three-class probabilities by seeded watershed, in 2D or 3D.

    Seeds are the connected components (8-connectivity; 26 in 3D) of ``p_interior >
    seed_threshold``; every seed grows by watershed on ``1 - p_interior`` inside the
    foreground ``1 - p_background > threshold``. Touching cells are split where their
    interiors are apart, which needs only the boundary between them to be predicted
    as not-interior (boundary or background), not as background as in the paper's
    two-class scheme. Foreground regions without a seed become one cell each.
    Objects smaller than ``min_size`` are removed.

    The watershed runs per connected foreground region (in its bounding box), so
    time and memory follow the largest region, not the image.

    Parameters
    ----------
    background, interior : np.ndarray
        ``(Y, X)`` (or ``(Z, Y, X)``: a volume, one id per cell across its planes) float
        softmax probabilities of the classes background and cell interior of a
        three-class network (:data:`napari_unet.method.annotation.TARGET_CLASSES`); the
        boundary probability is the rest.
    threshold : float
        Foreground (interior + boundary) probability above which a pixel is cell.
    min_size : int
        Smallest cell kept, pixels (voxels in 3D); smaller seeds are not used either.
    seed_threshold : float
        Interior probability above which a pixel seeds a cell.
    min_seed_size : int, optional
        Seeds smaller than this (pixels) are dropped before growing, so that the
        cell they lie in grows over them instead of being split; default
        ``min_size // 4``.
    smoothing : float
        Standard deviation (pixels along Y) of a Gaussian applied to both probability
        maps first: smoother outlines, fewer one-pixel spurs and fragments. 0: none. In
        physical units: along an axis of pixel size ``s`` it is ``smoothing * spacing_y / s``
        pixels.
    fill_holes : bool
        Fill the holes inside each cell (pixels of background enclosed by that cell
        alone; in each plane of a volume).
    spacing : tuple of float, optional
        Pixel size per axis (any unit, only ratios matter); default isotropic.

    Returns
    -------
    np.ndarray
        int32 labels of the input's shape, 0 = background, 1..N = cells, numbered by
        foreground region in raster order, then by seed within a region.

    Raises
    ------
    ValueError
        If the probabilities are not 2D or 3D arrays of one shape, ``spacing`` has not
        one positive value per axis, or a threshold is not in (0, 1).

    Notes
    -----
    Three-class target: Caicedo et al., "Evaluation of deep learning strategies for
    nucleus segmentation in fluorescence images", Cytometry A 95:952 (2019); the
    separation border and its weights are those of Ronneberger et al. 2015, eq. 2.
    """
    background, interior = np.asarray(background), np.asarray(interior)
    if background.ndim not in (2, 3) or background.shape != interior.shape:
        raise ValueError(
            "background and interior probabilities must be 2D (Y, X) or 3D (Z, Y, X) of one "
            f"shape, got {background.shape} and {interior.shape}"
        )
    ndim = background.ndim
    spacing = (1.0,) * ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be {ndim} positive pixel sizes, got {spacing}")
    for name, value in (("threshold", threshold), ("seed_threshold", seed_threshold)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    if not (math.isfinite(smoothing) and smoothing >= 0):
        raise ValueError(f"smoothing must be a finite number of pixels >= 0, got {smoothing}")
    if smoothing > 0:
        sigma = tuple(smoothing * spacing[-2] / s for s in spacing)
        background = ndi.gaussian_filter(background.astype(np.float32, copy=False), sigma)
        interior = ndi.gaussian_filter(interior.astype(np.float32, copy=False), sigma)
    foreground = background < 1.0 - threshold
    eight = np.ones((3,) * ndim, bool)
    regions, n_regions = ndi.label(foreground, structure=eight)
    seeds, n_seeds = ndi.label(foreground & (interior > seed_threshold), structure=eight)
    labels = np.zeros(foreground.shape, np.int32)
    if n_regions == 0:
        return labels
    min_size = max(int(min_size), 1)
    seed_sizes = np.bincount(seeds.ravel(), minlength=n_seeds + 1)
    # Seeds too small to be a cell's interior are noise: drop them before growing.
    min_seed_size = min_size // 4 if min_seed_size is None else int(min_seed_size)
    small_seed = seed_sizes < max(min_seed_size, 1)
    small_seed[0] = False
    seeds[small_seed[seeds]] = 0
    next_id = 1
    for index, box in enumerate(ndi.find_objects(regions), start=1):
        if box is None:
            continue
        region = regions[box] == index
        region_seeds = np.where(region, seeds[box], 0)
        ids = np.unique(region_seeds)
        ids = ids[ids > 0]
        if len(ids) <= 1:  # one cell (or a region without seed): the region itself
            if region.sum() >= min_size:
                labels[box][region] = next_id
                next_id += 1
            continue
        grown = watershed(1.0 - interior[box], markers=region_seeds, mask=region)
        sizes = np.bincount(grown.ravel())
        forward = np.zeros(len(sizes), np.int32)
        for seed_id in ids:
            if sizes[seed_id] >= min_size:
                forward[seed_id] = next_id
                next_id += 1
        relabelled = forward[grown]
        labels[box] = np.where(region, relabelled, labels[box])
    if fill_holes:
        for plane in labels.reshape(-1, *labels.shape[-2:]):  # views: filled in place
            fill_cell_holes(plane)
    return labels


def fill_cell_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of every cell: background pixels enclosed by that cell alone.

    Parameters
    ----------
    labels : np.ndarray
        ``(Y, X)`` integer labels, 0 = background; filled in place and returned.

    Returns
    -------
    np.ndarray
        ``labels``, with each cell's enclosed background given the cell's id.
    """
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        window = labels[box]
        cell = window == index
        holes = ndi.binary_fill_holes(cell) & (window == 0)
        window[holes] = index
    return labels


def count_cells(labels: np.ndarray, axes: str | None = None) -> int:
    """Count the cells of a label image: per plane, or per volume with a ``Z`` axis.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels ``(..., Y, X)``, 0 = background.
    axes : str, optional
        The labels' axes (:mod:`napari_unet.method.axes`). With a ``Z`` axis (``"ZYX"``,
        ``"TZYX"``) an id is one cell across the planes of its volume; otherwise (and
        for ``None``) each 2D plane is counted on its own (an id reused in two planes is
        two cells).

    Returns
    -------
    int
        Distinct non-zero ids, summed over the planes (or volumes).
    """
    labels = np.asarray(labels)
    if labels.ndim <= 2:
        return int(np.count_nonzero(np.bincount(labels.ravel())[1:])) if labels.size else 0
    per = 3 if axes is not None and "Z" in axes else 2
    if labels.ndim == per:
        return int(np.count_nonzero(np.bincount(labels.ravel())[1:])) if labels.size else 0
    return sum(count_cells(part, axes) for part in labels.reshape(-1, *labels.shape[-per:]))
