"""Class probabilities of a volume from the 2D network: its XY planes, or its three views.

Two ways to predict a ``(Z, Y, X)`` volume with a 2D U-Net, both followed by one 3D
seeded watershed (:func:`~napari_unet.method.instances.boundary_watershed` with the
voxel ``spacing``) so that one cell is one id across its planes:

- ``"planes"``: the network on every XY plane; the class probabilities are stacked;
- ``"orthogonal"``: the network on the XY, XZ and YZ planes of the volume resampled to
  isotropic voxels, the three probabilities averaged (the way Cellpose combines a 2D
  network in 3D: Stringer et al., Nat Methods 18:100, 2021).

The method choice and its numbers: ``docs/method.md`` (Volumes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from napari_unet.method.axes import DEFAULT_VOLUME_METHOD, check_volume_method
from napari_unet.method.images import (
    ImageLayout,
    normalize,
    percentile_normalization,
    rgb_plane_to_gray,
)
from napari_unet.method.network import UNet
from napari_unet.method.object_size import check_object_size
from napari_unet.method.tiling import TileProgress, iter_predict_tiled, mirror_index
from napari_unet.models.metadata import model_object_size
from napari_unet.runtime.devices import resolved_names
from napari_unet.runtime.progress import map_progress

#: Largest number of pixels of the planes predicted in one overlap-tile call.
_MOSAIC_PIXELS = 8_000_000
#: Mirrored rows around each XZ and YZ plane; ``None``: the network's halo. 24 rows
#: score as the halo (92) and cost half (docs/method.md, Volumes).
VIEW_PAD: int | None = 24
#: Every how many XZ (YZ) planes the network sees; the others are interpolated.
VIEW_STEP = 1
#: Gaussian denoising before the network, in pixels of the (zoomed) planes: confocal
#: volumes are far noisier than the widefield fields the default model learnt from.
DEFAULT_DENOISE = 2.0
#: Smallest smoothing (pixels of the zoomed planes) of the probabilities before a
#: volume's 3D watershed; the model's own, fitted on planes, when larger.
VOLUME_SMOOTHING = 2.0


def denoise_volume(volume: np.ndarray, spacing=None, sigma: float = DEFAULT_DENOISE) -> np.ndarray:
    """The Gaussian denoising a volume gets before the network, in prediction and training.

    Parameters
    ----------
    volume : np.ndarray
        ``(Z, Y, X)`` normalised volume (float).
    spacing : (float, float, float), optional
        Voxel size ``(dz, dy, dx)``; ``None``: isotropic.
    sigma : float
        Standard deviation in pixels along Y (the other axes scaled by the voxel size,
        so the blur is isotropic in space); 0: none.

    Returns
    -------
    np.ndarray
        float32 ``(Z, Y, X)``; ``volume`` itself (as float32) when ``sigma`` is 0.
    """
    volume = np.asarray(volume, np.float32)
    if not sigma > 0:
        return volume
    dz, dy, dx = (1.0, 1.0, 1.0) if spacing is None else spacing
    return ndi.gaussian_filter(volume, (sigma * dy / dz, sigma, sigma * dy / dx))


def resize(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of ``array`` (float) onto ``shape``, corners aligned to pixel centres.

    Parameters
    ----------
    array : np.ndarray
        Float array of any rank.
    shape : tuple of int
        The output shape, same rank, every size >= 1.

    Returns
    -------
    np.ndarray
        float32 of ``shape``; ``array`` itself when the shape is already right.
    """
    shape = tuple(int(s) for s in shape)
    if tuple(array.shape) == shape:
        return array
    factors = [n_out / n_in for n_in, n_out in zip(array.shape, shape, strict=True)]
    return ndi.zoom(array.astype(np.float32, copy=False), factors, order=1, grid_mode=True,
                    mode="nearest")  # fmt: skip


def _predict_planes(
    planes: np.ndarray, net: UNet, pad: int, options: dict, done: int, total: int, started: float
) -> Generator[TileProgress, None, np.ndarray]:
    """Probabilities of ``(N, H, W)`` normalised planes, predicted as mosaics of planes.

    Planes are laid one under another, each extended by at least ``pad`` mirrored rows
    above and below (the mirroring of the paper's Fig. 2; rounded up to the pooling
    grid), so that many small planes (e.g. the XZ planes of a thin volume) go through
    the network in a few large tiles. With ``pad`` >= the network's halo, each plane's
    prediction is that of the plane alone.
    """
    n, height, width = planes.shape
    # Each band starts and ends on the pooling grid, so every plane meets the max-pooling
    # windows as it does alone (valid convolutions make the output depend on it).
    grid = net.pooling_factor
    top = -(-pad // grid) * grid
    band = -(-(top + height + pad) // grid) * grid
    rows = mirror_index(np.arange(-top, band - top), height)
    per_mosaic = max(1, _MOSAIC_PIXELS // (band * width))
    result = None
    for start in range(0, n, per_mosaic):
        chunk = planes[start : start + per_mosaic]
        mosaic = chunk[:, rows].reshape(-1, width)

        first, count = done + start, len(chunk)

        def record(tile, first=first, count=count) -> TileProgress:
            share = tile.tile_index / max(tile.n_tiles, 1)
            seconds = time.perf_counter() - started
            return TileProgress(
                first + round(share * count), total, seconds, tile.device, tile.precision
            )

        predicted = yield from map_progress(
            iter_predict_tiled(mosaic, net, normalization=None, **options), record
        )
        predicted = predicted.reshape(len(predicted), len(chunk), band, width)
        if result is None:
            result = np.empty((len(predicted), n, height, width), np.float32)
        result[:, start : start + len(chunk)] = predicted[:, :, top : top + height]
    return result


def iter_predict_volume(
    volume: np.ndarray,
    net: UNet,
    *,
    spacing: tuple[float, float, float] | None = None,
    method: str = DEFAULT_VOLUME_METHOD,
    zoom: float = 1.0,
    output_classes: tuple[int, ...] = (0, 1),
    view_pad: int | None = None,
    denoise: float | None = None,
    **options,
) -> Generator[TileProgress, None, np.ndarray]:
    """Predict class probabilities of a volume with a 2D network.

    Parameters
    ----------
    volume : np.ndarray
        ``(Z, Y, X)`` float32, already normalised (0 and 1 at the model's percentiles).
    net : UNet
        A 2D network with one input channel.
    spacing : (float, float, float), optional
        Voxel size ``(dz, dy, dx)`` in any unit; default isotropic.
    method : str
        One of :data:`~napari_unet.method.axes.VOLUME_METHODS`.
    zoom : float
        Scale applied to Y and X before the network sees a plane (the model's object
        size over the volume's), undone on the probabilities; 1: none.
    output_classes : tuple of int
        The classes returned.
    view_pad : int, optional
        Mirrored rows around each XZ and YZ plane (``"orthogonal"``); default
        :data:`VIEW_PAD`, the network's halo when that is ``None`` (each plane then
        predicted as alone).
    denoise : float, optional
        Standard deviation of a Gaussian applied to the volume first, in pixels along
        Y of the zoomed planes (the same physical length along Z and X); 0: none;
        default :data:`DEFAULT_DENOISE`.
    **options
        ``tile_shape``, ``batch_size``, ``device``, ``precision`` of
        :func:`~napari_unet.method.tiling.iter_predict_tiled`.

    Yields
    ------
    TileProgress
        ``tile_index`` / ``n_tiles`` count planes of all views.

    Returns
    -------
    np.ndarray
        float32 ``(len(output_classes), Z, Y, X)`` probabilities.

    Raises
    ------
    ValueError
        For an unknown method, a zoom that is not a positive finite number, or as
        :func:`~napari_unet.method.tiling.iter_predict_tiled`.
    """
    check_volume_method(method)
    if not (math.isfinite(zoom) and zoom > 0):
        raise ValueError(f"zoom must be a positive finite number, got {zoom}")
    started = time.perf_counter()
    dz, dy, dx = (1.0, 1.0, 1.0) if spacing is None else spacing
    z, y, x = volume.shape
    volume = denoise_volume(
        volume, spacing, (DEFAULT_DENOISE if denoise is None else denoise) / zoom
    )
    zoomed = (max(1, round(y * zoom)), max(1, round(x * zoom * dx / dy)))
    rescaled = zoomed != (y, x)
    options = {**options, "output_classes": output_classes}
    planes = np.stack([resize(plane, zoomed) for plane in volume]) if rescaled else volume
    if method == "planes":
        predicted = yield from _predict_planes(planes, net, net.halo, options, 0, z, started)
        return np.stack([resize(p, (z, y, x)) for p in predicted])
    iso_z = max(1, round(z * zoom * dz / dy))
    iso = resize(volume, (iso_z, *zoomed))
    view_pad = VIEW_PAD if view_pad is None else view_pad
    pad = net.halo if view_pad is None else int(view_pad)
    step = max(1, int(VIEW_STEP))
    total = z + -(-zoomed[0] // step) + -(-zoomed[1] // step)
    xy = yield from _predict_planes(planes, net, net.halo, options, 0, total, started)
    del planes
    summed = np.stack([resize(p, (iso_z, *zoomed)) for p in xy])
    del xy
    xz = yield from _predict_planes(
        iso[:, ::step].transpose(1, 0, 2), net, pad, options, z, total, started
    )  # (k, Y' / step, Z', X')
    for k, view in enumerate(xz):
        summed[k] += resize(view.transpose(1, 0, 2), (iso_z, *zoomed))
    del xz
    yz = yield from _predict_planes(
        iso[:, :, ::step].transpose(2, 0, 1),
        net,
        pad,
        options,
        z + -(-zoomed[0] // step),
        total,
        started,
    )  # (k, X' / step, Z', Y')
    for k, view in enumerate(yz):
        summed[k] += resize(view.transpose(1, 2, 0), (iso_z, *zoomed))
    del yz
    summed /= 3.0
    return np.stack([resize(p, (z, y, x)) for p in summed])


def volume_zoom(net: UNet, object_size: float | None) -> float:
    """Scale of Y and X before the network: the model's object size over the volume's.

    Raises
    ------
    ValueError
        If ``object_size`` is not a finite number >= 1.
    """
    if object_size is None:
        return 1.0
    return model_object_size(net) / check_object_size(object_size)


def volume_instances(instances, zoom: float):
    """A volume's instance step: the smoothing at least :data:`VOLUME_SMOOTHING` / ``zoom``."""
    return replace(instances, smoothing=max(instances.smoothing, VOLUME_SMOOTHING / zoom))


def _read_volume(image, index: tuple[int, ...], rgb: bool, invert: bool) -> np.ndarray:
    """One ``(Z, Y, X)`` volume of the image, read into memory; RGB planes made gray."""
    volume = np.asarray(image[index] if index else image)
    if rgb:
        volume = np.stack([rgb_plane_to_gray(plane, invert) for plane in volume])
    return volume


def iter_segment_volumes(
    image,
    layout: ImageLayout,
    net: UNet,
    instances,
    *,
    spacing: tuple[float, float, float] | None,
    method: str,
    object_size: float | None,
    percentiles: tuple[float, float],
    normalization: tuple[float, float] | None,
    invert_bright_background: bool,
    progress,
    **options,
) -> Generator:
    """Segment the volumes of ``image`` (``"ZYX"`` or ``"TZYX"``) into 3D cells.

    The engine of :func:`~napari_unet.inference.segment.iter_segment` for images with
    a ``Z`` axis: each volume is read whole, normalised by the model's percentiles of
    the whole volume, predicted by :func:`iter_predict_volume` and split into cells by
    ``instances``, its smoothing at least :data:`VOLUME_SMOOTHING`
    (:meth:`~napari_unet.inference.instance_step.InstanceSettings.labels`, a 3D seeded
    watershed with the voxel ``spacing``). Time points are independent.

    ``progress(number, n_volumes, tile)`` makes the record yielded after each batch of
    tiles of volume ``number`` (1-based) from its
    :class:`~napari_unet.method.tiling.TileProgress` (planes of all views done).

    Yields
    ------
    object
        What ``progress`` returns.

    Returns
    -------
    labels, probabilities, (device, precision)
        int32 labels (one id per cell across the planes of a volume) and float32
        foreground probability, both of ``layout.labels_shape``.
    """
    used = resolved_names(options.get("device", "auto"), options.get("precision", "auto"))
    zoom = volume_zoom(net, object_size)
    instances = volume_instances(instances, zoom)
    times = layout.leading_shape[:-1]  # () for ZYX, (T,) for TZYX
    n_volumes = int(np.prod(times, dtype=np.int64))
    labels = np.zeros(layout.labels_shape, np.int32)
    probabilities = np.zeros(layout.labels_shape, np.float32)
    for number, index in enumerate(np.ndindex(*times), start=1):
        volume = _read_volume(image, index, layout.rgb, invert_bright_background)
        low, high = normalization or percentile_normalization(volume, percentiles)
        predicted = yield from map_progress(
            iter_predict_volume(
                normalize(volume, low, high), net, spacing=spacing, method=method, zoom=zoom,
                output_classes=instances.output_classes, **options,
            ),
            lambda tile, number=number: progress(number, n_volumes, tile),
        )  # fmt: skip
        labels[index], probabilities[index] = instances.labels(predicted, spacing)
    return labels, probabilities, used
