"""Separation-border weight map of the U-Net paper (eq. 2).

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, eq. 2::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

``w_c`` balances the class frequencies, ``d1`` and ``d2`` are the Euclidean distances
(pixels) from ``x`` to the border of the nearest and second-nearest cell. The border
term makes the network pay attention to the thin background gaps between touching
cells. The map is redrawn live while a user paints, so :func:`separation_border_weight_map`
computes it exactly but only near cells; :func:`weight_map_reference` is the slow,
obviously correct definition used by the tests and the benchmark.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from scipy import ndimage as ndi

from napari_unet.annotation import Target, annotation_to_target

__all__ = [
    "class_balance_weights",
    "separation_border_weight_map",
    "weight_map_reference",
]

_MAX_W0_SIGMA = {"w0": 1e6, "sigma": 1e4}
"""Largest ``w0`` (weight units; the paper uses 10) and ``sigma`` (pixels; the paper uses 5)."""

_BORDER_TOLERANCE = 1e-5
"""Largest border term dropped by the fast map (weight units); far below 1e-3."""


def class_balance_weights(target, mask) -> tuple[float, float]:
    """Inverse class-frequency weights ``(w_background, w_cell)`` over annotated pixels.

    With ``n_bg`` background and ``n_cell`` cell pixels among the ``N`` annotated ones
    and ``k`` the number of classes present, ``w = N / (k * n)`` for each present
    class, so that every present class carries the same total weight and the mean of
    ``w_c`` over the annotated pixels is exactly 1 (the loss keeps its scale). A class
    with no annotated pixel gets weight 1.0 (it weighs nothing either way).

    Parameters
    ----------
    target : array_like
        Two-class target, shape ``(Y, X)``: 0 = background, nonzero = cell (e.g.
        ``annotation_to_target(labels).target``).
    mask : array_like
        ``bool``, shape ``(Y, X)``: ``True`` where annotated.

    Returns
    -------
    tuple of float
        ``(w_background, w_cell)``, both positive; ``(1.0, 1.0)`` when nothing is
        annotated.

    Raises
    ------
    ValueError
        If ``target`` and ``mask`` have different shapes.

    Notes
    -----
    The class-frequency term ``w_c`` of Ronneberger et al. 2015, eq. 2.
    """
    target = np.asarray(target)
    mask = np.asarray(mask, dtype=bool)
    if target.shape != mask.shape:
        raise ValueError(f"target shape {target.shape} does not match mask shape {mask.shape}")
    n_annotated = int(np.count_nonzero(mask))
    n_cell = int(np.count_nonzero(mask & (target != 0)))
    n_background = n_annotated - n_cell
    n_present = (n_background > 0) + (n_cell > 0)
    if n_present == 0:
        return 1.0, 1.0
    w_background = n_annotated / (n_present * n_background) if n_background else 1.0
    w_cell = n_annotated / (n_present * n_cell) if n_cell else 1.0
    return float(w_background), float(w_cell)


def separation_border_weight_map(
    labels,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights=None,
    *,
    dense: bool = False,
    gap: int = 1,
) -> np.ndarray:
    """Pixel-wise loss weight of eq. 2 of the U-Net paper for a (partial) annotation.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` on annotated
    pixels, exactly 0 on non-annotated ones. The border term is added only on
    annotated background pixels (``target == 0``), which include the separation gaps
    carved between touching cells (see :func:`napari_unet.annotation_to_target`).
    ``d_i(x)`` is the Euclidean distance in pixels from ``x`` to the nearest pixel of
    cell ``i`` (``distance_transform_edt(instances != i)``, so 1 next to the cell),
    taken over the distinct cells left after the gap was carved; ``d1 <= d2`` are the
    two smallest. With fewer than two cells ``d2`` is infinite and the term is 0.

    One-class annotations (only background, only cells, nothing) are accepted so the
    map can be shown while the user paints; training should call
    :func:`napari_unet.validate_annotation` first.

    Parameters
    ----------
    labels : array_like
        Integer label image, shape ``(Y, X)``: ``0`` = not annotated, ``1`` =
        background, ``2, 3, ...`` = cells; with ``dense=True`` ``0`` = background and
        ``>= 1`` = cells.
    w0 : float, default 10.0
        Amplitude of the border term (weight units), positive.
    sigma : float, default 5.0
        Width of the border term (pixels), positive.
    class_weights : None, "balanced" or (float, float), optional
        ``w_c``. ``None``: 1 for both classes. ``"balanced"``: inverse class frequency
        over annotated pixels with mean 1 (:func:`class_balance_weights`). A pair
        ``(w_background, w_cell)`` of positive numbers: used as given.
    dense : bool, default False
        Interpret ``labels`` as dense ground truth: every pixel is annotated.
    gap : int, default 1
        Separation gap carved from each touching cell (pixels), see
        :func:`napari_unet.annotation_to_target`.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(Y, X)``: the weight map.

    Raises
    ------
    ValueError
        If ``labels`` is not a non-empty 2D array of non-negative whole numbers,
        ``w0`` is not a positive number up to 1e6 or ``sigma`` one up to 1e4 pixels,
        ``class_weights`` is not one of the accepted forms, or ``gap`` is not a
        non-negative integer.

    Notes
    -----
    Exact up to 1e-5 (weight units) against :func:`weight_map_reference`: the border
    term is below ``tol = 1e-5`` once ``d1 + d2 > D = sigma * sqrt(2 ln(w0 / tol))``,
    and it is only added where ``d1 >= 1`` (background), so it matters only where
    ``d2 <= D - 1``. Each cell's distance transform is therefore computed only in its
    bounding box grown by ``floor(D - 1)`` pixels (exact there, since the whole cell
    lies inside), updating running minima ``d1 <= d2``. A pixel whose two nearest
    cells are not both found has a true ``d2 > D - 1``, hence a true term below
    ``tol``, which is dropped. Cost: about (cell box + 2 D)² pixels per cell instead
    of the full image per cell (25 px of margin for the defaults).
    """
    w0, sigma = _check_w0_sigma(w0, sigma)
    parts = annotation_to_target(labels, dense=dense, gap=gap)
    class_weight_pair = _class_weight_pair(class_weights, parts)
    d1, d2 = _two_nearest_cell_distances(parts.instances, _border_reach(w0, sigma))
    return _assemble(parts, d1, d2, w0, sigma, class_weight_pair)


def weight_map_reference(
    labels,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights=None,
    dense: bool = False,
    gap: int = 1,
) -> np.ndarray:
    """Slow, obviously correct eq. 2 weight map: one full-image distance map per cell.

    Same definition, parameters, result and errors as
    :func:`separation_border_weight_map`, computed directly: for every cell ``i``,
    ``d_i = distance_transform_edt(instances != i)`` over the whole image, keeping the
    two smallest values per pixel. Cost grows as (number of cells) x (image pixels);
    meant for tests and benchmarks.

    Parameters
    ----------
    labels : array_like
        Integer label image, shape ``(Y, X)`` (see
        :func:`separation_border_weight_map`).
    w0 : float, default 10.0
        Amplitude of the border term (weight units), positive.
    sigma : float, default 5.0
        Width of the border term (pixels), positive.
    class_weights : None, "balanced" or (float, float), optional
        ``w_c``, as in :func:`separation_border_weight_map`.
    dense : bool, default False
        Interpret ``labels`` as dense ground truth.
    gap : int, default 1
        Separation gap carved from each touching cell (pixels).

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(Y, X)``: the weight map.

    Raises
    ------
    ValueError
        As :func:`separation_border_weight_map`.
    """
    w0, sigma = _check_w0_sigma(w0, sigma)
    parts = annotation_to_target(labels, dense=dense, gap=gap)
    class_weight_pair = _class_weight_pair(class_weights, parts)
    d1 = np.full(parts.instances.shape, np.inf)
    d2 = np.full(parts.instances.shape, np.inf)
    for cell in np.unique(parts.instances):
        if cell == 0:
            continue
        d = ndi.distance_transform_edt(parts.instances != cell)
        # keep the two smallest distances seen so far: d1 <= d2
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    return _assemble(parts, d1, d2, w0, sigma, class_weight_pair)


def _check_w0_sigma(w0, sigma) -> tuple[float, float]:
    """Return ``(w0, sigma)`` as floats or raise ``ValueError`` naming the bad one."""
    for name, value, unit in (("w0", w0, "weight units"), ("sigma", sigma, "pixels")):
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name} must be a positive finite number ({unit}), got {value!r}")
        if value > _MAX_W0_SIGMA[name]:  # the float32 map (w0) or the reach (sigma) overflows
            raise ValueError(
                f"{name} must be at most {_MAX_W0_SIGMA[name]:g} ({unit}), got {value!r}"
            )
    return float(w0), float(sigma)


def _border_reach(w0: float, sigma: float) -> float:
    """Largest ``d2`` (pixels) at which the border term can still reach ``tol``.

    The term ``w0 * exp(-s**2 / (2 sigma**2))`` is below ``tol`` once
    ``s = d1 + d2 > D = sigma * sqrt(2 ln(w0 / tol))``. It is only added on
    background pixels, where ``d1 >= 1``, so it matters only where ``d2 <= D - 1``.
    """
    if w0 <= _BORDER_TOLERANCE:
        return 0.0
    return max(sigma * math.sqrt(2.0 * math.log(w0 / _BORDER_TOLERANCE)) - 1.0, 0.0)


def _two_nearest_cell_distances(
    instances: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1 <= d2`` (pixels, float64) to the two nearest cells within ``reach``.

    Exact wherever the true ``d2 <= reach``; elsewhere ``d2`` (and possibly ``d1``)
    may be ``inf`` or larger than the truth.
    """
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    # a pixel outside the cell's box grown by ``margin`` is at least ``margin + 1``
    # pixels (Euclidean) from the cell, so every pixel within ``reach`` is inside
    margin = math.floor(reach)
    if instances.size and instances.max() > instances.size:
        # sparse huge ids: renumber 1..n so find_objects does not list ~max(id) boxes
        cells = instances > 0
        _, inverse = np.unique(instances[cells], return_inverse=True)
        instances = np.zeros_like(instances)
        instances[cells] = inverse + 1
    for index, box in enumerate(ndi.find_objects(instances)):
        if box is None:
            continue
        window = tuple(
            slice(max(s.start - margin, 0), min(s.stop + margin, n))
            for s, n in zip(box, instances.shape, strict=True)
        )
        d = ndi.distance_transform_edt(instances[window] != index + 1)
        d1_window = d1[window]
        d2_window = d2[window]
        np.minimum(d2_window, np.maximum(d1_window, d), out=d2_window)
        np.minimum(d1_window, d, out=d1_window)
    return d1, d2


def _class_weight_pair(class_weights, parts: Target) -> tuple[float, float]:
    """Resolve the ``class_weights`` argument to ``(w_background, w_cell)``."""
    if class_weights is None:
        return 1.0, 1.0
    if isinstance(class_weights, str):
        if class_weights == "balanced":
            return class_balance_weights(parts.target, parts.mask)
        raise ValueError(
            f"class_weights must be None, 'balanced' or (w_background, w_cell), "
            f"got {class_weights!r}"
        )
    try:
        w_background, w_cell = (float(w) for w in class_weights)
    except (TypeError, ValueError):
        raise ValueError(
            f"class_weights must be None, 'balanced' or (w_background, w_cell), "
            f"got {class_weights!r}"
        ) from None
    if not all(math.isfinite(w) and w > 0 for w in (w_background, w_cell)):
        raise ValueError(
            f"class_weights (w_background, w_cell) must be positive finite numbers, "
            f"got {class_weights!r}"
        )
    return w_background, w_cell


def _assemble(
    parts: Target,
    d1: np.ndarray,
    d2: np.ndarray,
    w0: float,
    sigma: float,
    class_weight_pair: tuple[float, float],
) -> np.ndarray:
    """Combine ``w_c`` and the border term into the float32 weight map of eq. 2."""
    w_background, w_cell = class_weight_pair
    background = parts.mask & (parts.target == 0)
    weight = np.zeros(parts.target.shape, np.float64)
    weight[parts.mask & (parts.target != 0)] = w_cell
    weight[background] = w_background
    near = background & np.isfinite(d2)
    distance_sum = d1[near] + d2[near]
    weight[near] += w0 * np.exp(-(distance_sum**2) / (2.0 * sigma**2))
    return weight.astype(np.float32)
