"""Separation-border weight map of the U-Net paper (eq. 2).

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, eq. 2::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

``w_c`` balances the class frequencies, ``d1`` and ``d2`` are the Euclidean distances
(pixels) from ``x`` to the border of the nearest and second-nearest cell. The border
term makes the network pay attention to the thin background gaps between touching
cells. The map is redrawn live while a user paints, so
:func:`separation_border_weight_map` computes it exactly but only near cells;
:func:`napari_unet.testing.weight_map_reference` is the slow, obviously correct
definition used by the tests and the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import numpy as np

from napari_unet.method.annotation import (
    DEFAULT_GAP,
    DEFAULT_N_CLASSES,
    Target,
    annotation_to_target,
)
from napari_unet.method.cell_distances import two_nearest_cell_distances
from napari_unet.runtime.checks import check_w0_sigma

__all__ = [
    "class_balance_weights",
    "iter_weight_map",
    "training_weight_map",
    "separation_border_weight_map",
    "weight_map_from_target",
]

DEFAULT_W0 = 10.0
"""Default amplitude ``w0`` of the separation-border term (weight units), paper eq. 2."""
DEFAULT_SIGMA = 5.0
"""Default width ``sigma`` of the separation-border term (pixels), paper eq. 2."""
DEFAULT_CLASS_WEIGHTS = "balanced"
"""Default ``w_c`` of eq. 2: inverse class frequency (the API, the CLI and training)."""

_BORDER_TOLERANCE = 1e-5
"""Largest border term dropped by the fast map (weight units); far below 1e-3."""


def class_balance_weights(target, mask, n_classes: int = 2) -> tuple[float, ...]:
    """Inverse class-frequency weights, one per class, over annotated pixels.

    With ``n_k`` annotated pixels of class ``k`` among the ``N`` annotated ones and
    ``m`` the number of classes present, ``w_k = N / (m * n_k)`` for each present
    class, so that every present class carries the same total weight and the mean of
    ``w_c`` over the annotated pixels is exactly 1 (the loss keeps its scale). A class
    with no annotated pixel gets weight 1.0 (it weighs nothing either way).

    Parameters
    ----------
    target : array_like
        Class per pixel, shape ``(Y, X)`` (e.g. ``annotation_to_target(labels).classes``).
        With ``n_classes=2`` every nonzero value counts as cell.
    mask : array_like
        ``bool``, shape ``(Y, X)``: ``True`` where annotated.
    n_classes : int, default 2
        Number of classes (2: background/cell; 3: background/interior/boundary).

    Returns
    -------
    tuple of float
        ``n_classes`` positive weights, ``(w_background, w_cell)`` for two classes;
        all 1.0 when nothing is annotated.

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
    classes = target[mask]
    if n_classes == 2:
        classes = (classes != 0).astype(np.uint8)
    counts = np.bincount(classes.ravel(), minlength=n_classes)[:n_classes]
    n_present = int(np.count_nonzero(counts))
    if n_present == 0:
        return (1.0,) * n_classes
    n_annotated = int(counts.sum())
    return tuple(float(n_annotated / (n_present * n)) if n else 1.0 for n in counts)


def separation_border_weight_map(
    labels,
    w0: float = DEFAULT_W0,
    sigma: float = DEFAULT_SIGMA,
    class_weights=DEFAULT_CLASS_WEIGHTS,
    *,
    dense: bool = False,
    gap: int = DEFAULT_GAP,
    n_classes: int = DEFAULT_N_CLASSES,
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

    For the three-class target (``n_classes=3``) the "cells" of eq. 2 are the cell
    interiors and the border term is added on background *and* boundary pixels, so
    the boundary pixels where two cells touch get the large weight.

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
    class_weights : None, "balanced" or tuple of float, default "balanced"
        ``w_c``. ``None``: 1 for every class. ``"balanced"``: inverse class frequency
        over annotated pixels with mean 1 (:func:`class_balance_weights`). A tuple of
        ``n_classes`` positive numbers (``(w_background, w_cell)``): used as given.
    dense : bool, default False
        Interpret ``labels`` as dense ground truth: every pixel is annotated.
    gap : int, default 1
        Separation gap carved from each touching cell (pixels), see
        :func:`napari_unet.annotation_to_target`.
    n_classes : {2, 3}, default 3
        Target the weights are for (:data:`napari_unet.method.annotation.TARGET_CLASSES`);
        ``DEFAULT_N_CLASSES``, as in the CLI and in training.

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
    Exact up to 1e-5 (weight units) against
    :func:`napari_unet.testing.weight_map_reference`: the border
    term is below ``tol = 1e-5`` once ``d1 + d2 > D = sigma * sqrt(2 ln(w0 / tol))``,
    and it is only added where ``d1 >= 1`` (background), so it matters only where
    ``d2 <= D - 1``. Each cell's distance transform is therefore computed only in its
    bounding box grown by ``floor(D - 1)`` pixels (exact there, since the whole cell
    lies inside), updating running minima ``d1 <= d2``. A pixel whose two nearest
    cells are not both found has a true ``d2 > D - 1``, hence a true term below
    ``tol``, which is dropped. Cost: about (cell box + 2 D)² pixels per cell instead
    of the full image per cell (25 px of margin for the defaults).
    """
    parts = annotation_to_target(labels, dense=dense, gap=gap, n_classes=n_classes)
    return weight_map_from_target(parts, w0, sigma, class_weights)


def weight_map_from_target(
    parts: Target, w0: float = DEFAULT_W0, sigma: float = DEFAULT_SIGMA, class_weights=None
) -> np.ndarray:
    """Eq. 2 weight map of an already computed :class:`~napari_unet.method.annotation.Target`.

    Same as :func:`separation_border_weight_map` (see there for the definition and
    its exactness), for callers that need the target too, so that the annotation is
    converted once.

    Parameters
    ----------
    parts : Target
        From :func:`napari_unet.annotation_to_target`.
    w0, sigma, class_weights
        As in :func:`separation_border_weight_map`.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(Y, X)``.

    Raises
    ------
    ValueError
        For invalid ``w0``, ``sigma`` or ``class_weights``.
    """
    w0, sigma = check_w0_sigma(w0, sigma)
    weights = class_weight_tuple(class_weights, parts)
    d1, d2 = two_nearest_cell_distances(parts.instances, border_reach(w0, sigma))
    return assemble_weight_map(parts, d1, d2, w0, sigma, weights)


def training_weight_map(
    labels, config, dense: bool = False, n_classes: int = DEFAULT_N_CLASSES
) -> tuple[Target, np.ndarray]:
    """The target and the eq. 2 weight map that training uses for one annotated plane.

    The one conversion of an annotation for the loss: training
    (:func:`napari_unet.training.samples.prepare_samples`) and the *Weight map* widget both call
    it, so the map shown is the map trained with.

    Parameters
    ----------
    labels : array_like
        ``(Y, X)`` integer annotation (partial convention unless ``dense``).
    config : TrainingConfig
        Supplies ``w0``, ``sigma``, ``class_weights``, ``gap`` and ``boundary_width``.
    dense : bool
        Labels are dense ground truth (0 = background).
    n_classes : {2, 3}
        Target of the network (:data:`napari_unet.method.annotation.TARGET_CLASSES`).

    Returns
    -------
    (Target, numpy.ndarray)
        The target, and float32 ``(Y, X)`` weights (0 on pixels not annotated).

    Raises
    ------
    ValueError
        As :func:`~napari_unet.method.annotation.annotation_to_target` and
        :func:`weight_map_from_target`.
    """
    parts = training_target(labels, config, dense, n_classes)
    return parts, weight_map_from_target(parts, config.w0, config.sigma, config.class_weights)


def training_target(labels, config, dense: bool = False, n_classes: int = DEFAULT_N_CLASSES):
    """The target of :func:`training_weight_map` alone (no weights).

    :func:`~napari_unet.method.annotation.annotation_to_target` with ``config``'s ``gap`` and
    ``boundary_width``; validation data uses it.
    """
    return annotation_to_target(
        labels,
        dense=dense,
        gap=config.gap,
        n_classes=n_classes,
        boundary_width=config.boundary_width,
    )


def iter_weight_map(
    annotation: np.ndarray, config, dense: bool = False, n_classes: int = DEFAULT_N_CLASSES
) -> Generator[int, None, np.ndarray]:
    """Training's weight map (:func:`training_weight_map`) of every plane of a stack.

    A generator: yields after each plane, returns the map.

    Parameters
    ----------
    annotation : np.ndarray
        ``(..., Y, X)`` integer labels (partial convention unless ``dense``).
    config : TrainingConfig
        As in :func:`training_weight_map`.
    dense : bool
        Labels are dense ground truth (0 = background).
    n_classes : {2, 3}
        Target of the network.

    Returns
    -------
    np.ndarray
        float32, the annotation's shape; planes without annotation are 0.

    Raises
    ------
    ValueError
        As :func:`training_weight_map`.
    """
    weights = np.zeros(annotation.shape, np.float32)
    for index in np.ndindex(*annotation.shape[:-2]):
        plane = annotation[index]
        if dense or plane.any():
            weights[index] = training_weight_map(plane, config, dense, n_classes)[1]
        yield 1
    return weights


def border_reach(w0: float, sigma: float) -> float:
    """Largest ``d2`` (pixels) at which the border term can still reach ``tol``.

    The term ``w0 * exp(-s**2 / (2 sigma**2))`` is below ``tol`` once
    ``s = d1 + d2 > D = sigma * sqrt(2 ln(w0 / tol))``. It is only added on
    background pixels, where ``d1 >= 1``, so it matters only where ``d2 <= D - 1``.
    """
    if w0 <= _BORDER_TOLERANCE:
        return 0.0
    return max(sigma * math.sqrt(2.0 * math.log(w0 / _BORDER_TOLERANCE)) - 1.0, 0.0)


def class_weight_tuple(class_weights, parts: Target) -> tuple[float, ...]:
    """Resolve the ``class_weights`` argument to one weight per class of ``parts``."""
    n = parts.n_classes
    names = "(w_background, w_cell)" if n == 2 else "(w_background, w_interior, w_boundary)"
    if class_weights is None:
        return (1.0,) * n
    if isinstance(class_weights, str):
        if class_weights == "balanced":
            return class_balance_weights(parts.classes, parts.mask, n)
        raise ValueError(
            f"class_weights must be None, 'balanced' or {names}, got {class_weights!r}"
        )
    try:
        weights = tuple(float(w) for w in class_weights)
    except (TypeError, ValueError):
        raise ValueError(
            f"class_weights must be None, 'balanced' or {names}, got {class_weights!r}"
        ) from None
    if len(weights) != n:
        raise ValueError(
            f"class_weights must be None, 'balanced' or {names} for {n} classes, "
            f"got {class_weights!r}"
        )
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(
            f"class_weights {names} must be positive finite numbers, got {class_weights!r}"
        )
    return weights


def assemble_weight_map(
    parts: Target,
    d1: np.ndarray,
    d2: np.ndarray,
    w0: float,
    sigma: float,
    class_weights: tuple[float, ...],
) -> np.ndarray:
    """Combine ``w_c`` and the border term into the float32 weight map of eq. 2."""
    weight = np.zeros(parts.classes.shape, np.float64)
    classes = parts.classes if parts.n_classes > 2 else (parts.classes != 0)
    for k, w in enumerate(class_weights):
        weight[parts.mask & (classes == k)] = w
    # The border term lies between cells: on every annotated pixel that is not cell
    # (two classes) or cell interior (three classes).
    between = parts.mask & (parts.classes != 1)
    near = between & np.isfinite(d2)
    distance_sum = d1[near] + d2[near]
    weight[near] += w0 * np.exp(-(distance_sum**2) / (2.0 * sigma**2))
    return weight.astype(np.float32)
