"""The eq. 2 weight map of a volume: painted planes, 3D anisotropy-aware distances.

A volume ``(Z, Y, X)`` is annotated in any of its XY planes; planes never painted are
not annotated (weight 0). One id across planes is one 3D cell. Every painted plane gets
its own 2D target (:func:`napari_unet.method.weight_map.training_target`: the network is
2D), and the separation-border term of eq. 2 (Ronneberger, Fischer & Brox, MICCAI 2015)
uses the Euclidean distances ``d1``, ``d2`` in 3D to the two nearest cells, with the voxel
size (``scipy.ndimage.distance_transform_edt(..., sampling=spacing)``), so a cell painted
in the plane above counts as the near neighbour it is. Distances and ``sigma`` are in
in-plane pixels (X): a spacing ``(dz, dy, dx)`` becomes ``(dz / dx, dy / dx, 1)``. The
class weights ``w_c`` balance the classes over all painted voxels of the volume.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from napari_unet.method.annotation import DEFAULT_N_CLASSES, Target
from napari_unet.method.cell_distances import two_nearest_cell_distances
from napari_unet.method.weight_map import (
    assemble_weight_map,
    border_reach,
    class_weight_tuple,
    training_target,
)
from napari_unet.runtime.checks import check_w0_sigma
from napari_unet.runtime.progress import run_to_completion

__all__ = ["VolumeTargets", "iter_volume_weight_map", "volume_sampling", "volume_training_weights"]


@dataclass(frozen=True, eq=False)
class VolumeTargets:
    """The 2D targets of the painted planes of a volume and its 3D weight map.

    Attributes
    ----------
    targets : dict of int to Target
        Plane index (Z) to the plane's 2D target, for every painted plane.
    weights : np.ndarray
        float32 ``(Z, Y, X)`` eq. 2 weights; 0 on voxels not annotated (whole planes
        never painted).
    """

    targets: dict[int, Target]
    weights: np.ndarray


def volume_sampling(spacing, ndim: int = 3) -> tuple[float, ...]:
    """Voxel size in in-plane pixels: ``spacing / spacing[-1]``.

    Parameters
    ----------
    spacing : sequence of float or None
        Voxel size ``(dz, dy, dx)`` in any one unit; ``None``: isotropic.
    ndim : int
        Number of axes of the volume.

    Returns
    -------
    tuple of float
        ``ndim`` positive numbers, the last 1.

    Raises
    ------
    ValueError
        For a spacing of the wrong length, or with a value that is not a positive
        finite number.
    """
    if spacing is None:
        return (1.0,) * ndim
    values = _check_spacing(spacing, ndim)
    return tuple(v / values[-1] for v in values)


def _check_spacing(spacing, ndim: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be {ndim} numbers, got {spacing!r}") from None
    if len(values) != ndim:
        raise ValueError(f"spacing must have {ndim} values (one per axis), got {spacing!r}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be positive finite numbers, got {spacing!r}")
    return values


def volume_training_weights(
    annotation,
    config,
    spacing=None,
    dense: bool = False,
    n_classes: int = DEFAULT_N_CLASSES,
) -> VolumeTargets:
    """Targets of the painted planes and the 3D eq. 2 weight map of one volume.

    Parameters
    ----------
    annotation : array_like
        ``(Z, Y, X)`` integer labels: 0 = not annotated, 1 = background, 2, 3, … = one id
        per 3D cell (the same id in several planes is one cell); with ``dense=True``
        0 = background, ≥ 1 = cells and every plane counts.
    config : TrainingConfig
        Supplies ``w0``, ``sigma`` (in-plane pixels), ``class_weights``, ``gap`` and
        ``boundary_width``.
    spacing : sequence of 3 float, optional
        Voxel size ``(dz, dy, dx)``, any unit; ``None``: isotropic.
    dense : bool
        Labels are dense ground truth.
    n_classes : {2, 3}
        Target of the network.

    Returns
    -------
    VolumeTargets
        Painted planes are those with any nonzero label (all with ``dense``).

    Raises
    ------
    ValueError
        For an annotation that is not 3D, a bad spacing, and as
        :func:`~napari_unet.method.annotation.annotation_to_target` and
        :func:`~napari_unet.method.weight_map.weight_map_from_target`.
    """
    return run_to_completion(_volume_weights(annotation, config, spacing, dense, n_classes))


def _volume_weights(annotation, config, spacing, dense, n_classes):
    annotation = np.asarray(annotation)
    if annotation.ndim != 3:
        raise ValueError(f"a volume annotation must be 3D (Z, Y, X), got shape {annotation.shape}")
    sampling = volume_sampling(spacing, 3)
    w0, sigma = check_w0_sigma(config.w0, config.sigma)
    shape = annotation.shape
    classes = np.zeros(shape, np.uint8)
    mask = np.zeros(shape, bool)
    instances = np.zeros(shape, np.int32)
    targets: dict[int, Target] = {}
    for z in range(shape[0]):
        plane = annotation[z]
        if dense or plane.any():
            parts = training_target(plane, config, dense, n_classes)
            targets[z] = parts
            classes[z], mask[z], instances[z] = parts.classes, parts.mask, parts.instances
        yield 1
    n = next(iter(targets.values())).n_classes if targets else n_classes
    volume = Target(classes=classes, mask=mask, instances=instances, n_classes=n)
    weights = class_weight_tuple(config.class_weights, volume)
    d1, d2 = two_nearest_cell_distances(instances, border_reach(w0, sigma), sampling)
    return VolumeTargets(targets, assemble_weight_map(volume, d1, d2, w0, sigma, weights))


def iter_volume_weight_map(
    annotation: np.ndarray,
    config,
    spacing=None,
    dense: bool = False,
    n_classes: int = DEFAULT_N_CLASSES,
) -> Generator[int, None, np.ndarray]:
    """Training's weight map of every volume of ``(..., Z, Y, X)`` labels; a generator.

    Yields after each plane; returns the map. The volume counterpart of
    :func:`napari_unet.method.weight_map.iter_weight_map` (the *Weight map* widget).

    Parameters
    ----------
    annotation : np.ndarray
        ``(Z, Y, X)`` or ``(T, Z, Y, X)`` integer labels (partial unless ``dense``).
    config, spacing, dense, n_classes
        As for :func:`volume_training_weights` (``spacing`` of the ``Z, Y, X`` axes).

    Returns
    -------
    np.ndarray
        float32, the annotation's shape; voxels not annotated are 0.

    Raises
    ------
    ValueError
        As :func:`volume_training_weights`.
    """
    annotation = np.asarray(annotation)
    if annotation.ndim < 3:
        raise ValueError(f"expected (..., Z, Y, X) labels, got shape {annotation.shape}")
    weights = np.zeros(annotation.shape, np.float32)
    for index in np.ndindex(*annotation.shape[:-3]):
        result = yield from _volume_weights(annotation[index], config, spacing, dense, n_classes)
        weights[index] = result.weights
    return weights
