"""Test oracles (slow, obviously correct versions of the fast paths) and synthetic volumes.

Tests and benchmarks compare the fast implementations against these definitions:

- :func:`predict_whole`: one forward pass over the whole mirror-padded image, which
  overlap-tile prediction (:mod:`napari_unet.method.tiling`, paper Fig. 2) must reproduce;
- :func:`weight_map_reference`: eq. 2 of the paper with one full-image distance map
  per cell, which :func:`napari_unet.method.weight_map.separation_border_weight_map` must
  reproduce.

:func:`synthetic_nuclei_volume` makes realistic test volumes (blurred, noisy ellipsoidal
nuclei with their 3D labels) for the tests and ``benchmarks/bench_volume.py``.

They are not part of :data:`napari_unet.__all__`: their cost grows with the image (and
with the number of cells), so they are not meant for users' data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_unet.method.annotation import DEFAULT_GAP, DEFAULT_N_CLASSES, annotation_to_target
from napari_unet.method.images import check_normalization, to_float32
from napari_unet.method.network import UNet
from napari_unet.method.tiling import _check_classes, _check_network_input, mirror_index
from napari_unet.method.weight_map import DEFAULT_CLASS_WEIGHTS, DEFAULT_SIGMA, DEFAULT_W0
from napari_unet.runtime.checks import check_w0_sigma
from napari_unet.runtime.devices import resolve_device

__all__ = ["predict_whole", "synthetic_nuclei_volume", "weight_map_reference"]


def predict_whole(
    image,
    model: UNet,
    *,
    normalization: tuple[float, float] | None = None,
    device: str | torch.device = "cpu",
    output_classes: Sequence[int] | None = None,
) -> np.ndarray:
    """Predict in one forward pass over the mirror-padded image: the tiling reference.

    The image is extended by mirroring (:func:`~napari_unet.method.tiling.mirror_index`) by
    ``halo`` pixels before and ``halo`` plus what makes a valid input shape after, and
    run through the network in float32 in the default (contiguous) memory layout.
    :func:`~napari_unet.method.tiling.iter_predict_tiled` with ``precision="float32"`` gives
    the same result up to rounding.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` or ``(C, Y, X)``, read whole into memory.
    model : UNet
        The network (not modified: a float32 copy in eval mode runs).
    normalization : (float, float), optional
        ``(low, high)`` as in :func:`~napari_unet.method.tiling.iter_predict_tiled`.
    device : str or torch.device
        Where the forward pass runs.
    output_classes : sequence of int, optional
        Class indices to return; all when ``None``.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(output_classes), Y, X)`` softmax probabilities.

    Raises
    ------
    ValueError
        As :func:`~napari_unet.method.tiling.iter_predict_tiled`.
    """
    image, (size_y, size_x) = _check_network_input(image, model)
    classes = _check_classes(output_classes, model)
    normalization = check_normalization(normalization)
    torch_device = resolve_device(device)
    halo = model.halo
    input_y, input_x = model.input_shape_for_output((size_y, size_x))
    ys = mirror_index(np.arange(-halo, input_y - halo), size_y)
    xs = mirror_index(np.arange(-halo, input_x - halo), size_x)
    array = np.asarray(image)
    array = array[..., ys[:, None], xs[None, :]]
    padded = to_float32(array if array.ndim == 3 else array[None], normalization)
    network = copy.deepcopy(model).eval().to(device=torch_device, dtype=torch.float32)
    with torch.inference_mode():
        logits = network(torch.from_numpy(padded[None]).to(torch_device))
        probabilities = logits.float().softmax(dim=1)[0, classes, :size_y, :size_x]
        return probabilities.cpu().numpy()


def weight_map_reference(
    labels,
    w0: float = DEFAULT_W0,
    sigma: float = DEFAULT_SIGMA,
    class_weights=DEFAULT_CLASS_WEIGHTS,
    dense: bool = False,
    gap: int = DEFAULT_GAP,
    n_classes: int = DEFAULT_N_CLASSES,
) -> np.ndarray:
    """Slow, obviously correct eq. 2 weight map: one full-image distance map per cell.

    Same definition, parameters, result and errors as
    :func:`~napari_unet.method.weight_map.separation_border_weight_map`, computed directly:
    for every cell ``i``, ``d_i = distance_transform_edt(instances != i)`` over the
    whole image, keeping the two smallest values per pixel. Cost grows as
    (number of cells) x (image pixels); meant for tests and benchmarks.

    Parameters
    ----------
    labels : array_like
        Integer label image, shape ``(Y, X)`` (see
        :func:`~napari_unet.method.weight_map.separation_border_weight_map`).
    w0 : float, default 10.0
        Amplitude of the border term (weight units), positive.
    sigma : float, default 5.0
        Width of the border term (pixels), positive.
    class_weights : None, "balanced" or (float, float), optional
        ``w_c``, as in :func:`~napari_unet.method.weight_map.separation_border_weight_map`.
    dense : bool, default False
        Interpret ``labels`` as dense ground truth.
    gap : int, default 1
        Separation gap carved from each touching cell (pixels).
    n_classes : {2, 3}, default 3
        Target the weights are for.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(Y, X)``: the weight map.

    Raises
    ------
    ValueError
        As :func:`~napari_unet.method.weight_map.separation_border_weight_map`.
    """
    w0, sigma = check_w0_sigma(w0, sigma)
    parts = annotation_to_target(labels, dense=dense, gap=gap, n_classes=n_classes)
    # the class of every pixel: two classes are background / cell (interior and boundary)
    classes = parts.classes if parts.n_classes > 2 else (parts.classes != 0).astype(np.uint8)
    w_c = _reference_class_weights(class_weights, classes, parts.mask, parts.n_classes)
    d1 = np.full(parts.instances.shape, np.inf)
    d2 = np.full(parts.instances.shape, np.inf)
    for cell in np.unique(parts.instances):
        if cell == 0:
            continue
        d = ndi.distance_transform_edt(parts.instances != cell)
        # keep the two smallest distances seen so far: d1 <= d2
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    weight = np.zeros(classes.shape, np.float64)
    for y, x in zip(*np.nonzero(parts.mask), strict=True):  # eq. 2, pixel by pixel
        value = w_c[int(classes[y, x])]
        # the border term: on annotated pixels between cells (not cell / not interior),
        # where two cells are in reach
        if parts.classes[y, x] != 1 and np.isfinite(d2[y, x]):
            value += w0 * math.exp(-((d1[y, x] + d2[y, x]) ** 2) / (2.0 * sigma**2))
        weight[y, x] = value
    return weight.astype(np.float32)


def _reference_class_weights(class_weights, classes, mask, n_classes: int) -> list[float]:
    """``w_c`` per class: 1, the given tuple, or ``N / (m * n_k)`` for "balanced".

    ``N`` annotated pixels, ``n_k`` of them of class ``k``, ``m`` classes present; a
    class with no annotated pixel weighs 1.
    """
    message = f"class_weights must be None, 'balanced' or {n_classes} positive numbers"
    if class_weights is None:
        return [1.0] * n_classes
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"{message}, got {class_weights!r}")
        counts = [int(np.count_nonzero(mask & (classes == k))) for k in range(n_classes)]
        present = sum(1 for n in counts if n)
        total = sum(counts)
        return [total / (present * n) if n else 1.0 for n in counts]
    try:
        weights = [float(w) for w in class_weights]
    except (TypeError, ValueError):
        raise ValueError(f"{message}, got {class_weights!r}") from None
    if len(weights) != n_classes or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"{message}, got {class_weights!r}")
    return weights


def synthetic_nuclei_volume(
    shape: tuple[int, int, int],
    *,
    n_nuclei: int = 8,
    radius: float = 11.0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    centers: Sequence[tuple[float, float, float]] | None = None,
    touching: float = 0.0,
    blur: float = 1.0,
    noise: float = 0.04,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence volume of ellipsoidal nuclei and its 3D instance labels.

    Nuclei are ellipsoids of semi-axes ``radius`` (pixels along Y, X; the same
    physical length along Z, i.e. ``radius * dy / dz`` planes) times a random factor
    in [0.8, 1.2] per axis, each of its own brightness (0.5 to 1) with a texture of
    fine blobs; the volume is blurred by an anisotropic Gaussian (a point spread
    function twice as long along Z as across, in physical units), added to a
    background of 0.1 and Gaussian noise of ``noise``, and stored as uint16. Where
    two nuclei overlap, a voxel belongs to the one whose scaled distance to its
    centre is smaller, so touching nuclei share a flat boundary.

    Parameters
    ----------
    shape : (int, int, int)
        ``(Z, Y, X)`` voxels.
    n_nuclei : int
        Nuclei placed at random (ignored when ``centers`` is given).
    radius : float
        Typical semi-axis across, pixels.
    spacing : (float, float, float)
        Voxel size ``(dz, dy, dx)``.
    centers : sequence of (z, y, x), optional
        Centres in voxels, placed as given.
    touching : float
        Random centres lie at least ``(1 - touching)`` times the sum of two radii
        apart: 0 keeps nuclei apart, 0.2 makes many touch.
    blur : float
        Standard deviation of the blur across (pixels along Y).
    noise : float
        Standard deviation of the noise, relative to a brightness of 1.
    seed : int
        Random seed.

    Returns
    -------
    image : np.ndarray
        ``(Z, Y, X)`` uint16.
    labels : np.ndarray
        ``(Z, Y, X)`` int32, 0 = background, 1..N one id per nucleus.
    """
    rng = np.random.default_rng(seed)
    dz, dy, dx = (float(s) for s in spacing)
    scale = np.array([dz / dy, 1.0, dx / dy])  # voxel -> pixels along Y
    extent = np.array(shape) * scale
    if centers is None:
        placed: list[np.ndarray] = []
        for _ in range(200 * n_nuclei):
            if len(placed) == n_nuclei:
                break
            candidate = rng.uniform(0, extent)
            if all(np.linalg.norm(candidate - c) >= 2 * radius * (1 - touching) for c in placed):
                placed.append(candidate)
        physical = placed
    else:
        physical = [np.asarray(c, float) * scale for c in centers]
    grid = [np.arange(n) * s for n, s in zip(shape, scale, strict=True)]
    best = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.int32)
    for index, centre in enumerate(physical, start=1):
        axes = radius * rng.uniform(0.8, 1.2, 3)
        distance = sum(
            ((g - c) / a).reshape([-1 if i == k else 1 for k in range(3)]) ** 2
            for i, (g, c, a) in enumerate(zip(grid, centre, axes, strict=True))
        )
        inside = (distance < 1) & (distance < best)
        labels[inside], best[inside] = index, distance[inside]
    brightness = np.concatenate([[0.0], rng.uniform(0.5, 1.0, len(physical))])
    texture = ndi.gaussian_filter(rng.standard_normal(shape), 1.0 / scale)
    texture = 1.0 + 0.15 * texture / max(float(texture.std()), 1e-6)
    image = brightness[labels].astype(np.float32) * texture.astype(np.float32)
    sigma = blur / scale * np.array([2.0, 1.0, 1.0])
    image = ndi.gaussian_filter(image, sigma) + 0.1
    image += rng.normal(0, noise, shape).astype(np.float32)
    return np.clip(image * 2000, 0, 65535).astype(np.uint16), labels
