"""Segmentation of the part of an image the user looks at: the live preview.

While a network trains, the Train widget shows what the latest weights make of the
visible part of the current plane. Predicting only that part (plus the network's
halo of context) keeps a refresh short enough to repeat every few seconds.

The result equals the whole-image segmentation inside the view: the plane is
normalised with the percentiles of the *whole* plane, the crop starts on the
network's pooling grid and reaches ``halo + pooling_factor`` pixels of real image
context beyond the view (Ronneberger et al. 2015, Fig. 2: the overlap-tile strategy
makes a tile's output independent of where the tile lies).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from napari_unet.method.images import (
    image_layout,
    iter_planes,
    percentile_normalization,
)
from napari_unet.method.instances import count_cells
from napari_unet.method.network import UNet

#: Seconds between two network snapshots while training with the preview on. On a
#: 2-core CPU, training kept 0.74-0.82 of its speed with a snapshot every 3 s and
#: 0.82-0.85 every 5 s (the prediction, and the canvas redraw; docs/benchmarks.md).
SNAPSHOT_INTERVAL_S = 5.0


@dataclass(frozen=True)
class ViewRegion:
    """A rectangle of one plane of an image, in pixels.

    Attributes
    ----------
    plane : tuple of int
        Indices of the leading (non-spatial) axes; ``()`` for a 2D image.
    top, left, bottom, right : int
        Pixel bounds in the plane; ``bottom`` and ``right`` are exclusive.
    """

    plane: tuple[int, ...]
    top: int
    left: int
    bottom: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.bottom - self.top, self.right - self.left)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)``."""
        return (self.top, self.left, self.bottom, self.right)

    @property
    def index(self) -> tuple:
        """Index of the region in an array of the label image's shape."""
        return (*self.plane, slice(self.top, self.bottom), slice(self.left, self.right))


def view_region(
    corner_pixels, labels_shape: tuple[int, ...], plane: tuple[int, ...] = ()
) -> ViewRegion:
    """The visible region of a plane, from napari's ``layer.corner_pixels``.

    Parameters
    ----------
    corner_pixels : array-like
        ``(2, ndim)``: the first and last visible pixel (inclusive) along every axis
        of the layer's data, as napari updates it on every canvas draw. Only the last
        two axes are used.
    labels_shape : tuple of int
        Shape of the label image (the image's shape without RGB).
    plane : tuple of int
        Indices of the leading axes of the current plane.

    Returns
    -------
    ViewRegion
        Clipped to the plane; the whole plane when the corners give no region wider
        than one pixel (napari's corners are zero until the canvas is drawn).
    """
    corners = np.asarray(corner_pixels, dtype=np.int64)[:, -2:]
    height, width = (int(s) for s in labels_shape[-2:])
    top = int(np.clip(corners[0, 0], 0, height))
    left = int(np.clip(corners[0, 1], 0, width))
    bottom = int(np.clip(corners[1, 0] + 1, 0, height))
    right = int(np.clip(corners[1, 1] + 1, 0, width))
    if bottom - top <= 1 or right - left <= 1:  # not drawn yet (napari's zeros)
        top, left, bottom, right = 0, 0, height, width
    return ViewRegion(tuple(int(i) for i in plane), top, left, bottom, right)


def context_box(region: ViewRegion, plane_shape: tuple[int, int], model: UNet) -> tuple:
    """The crop predicted for ``region``: the region plus context, on the pooling grid.

    The crop reaches ``halo + pooling_factor`` pixels beyond the region on every side
    (the receptive field of an output pixel reaches ``halo`` pixels, a little more on
    one side within a pooling block) and starts on a multiple of ``pooling_factor``,
    so that every max-pooling sees the same pixel blocks as in the whole image.

    Returns
    -------
    (top, left, bottom, right) : int
        Clipped to the plane.
    """
    margin = model.halo + model.pooling_factor
    p = model.pooling_factor
    height, width = plane_shape
    top = max(region.top - margin, 0) // p * p
    left = max(region.left - margin, 0) // p * p
    bottom = min(region.bottom + margin, height)
    right = min(region.right + margin, width)
    return top, left, bottom, right


@dataclass(frozen=True)
class PreviewResult:
    """What :func:`iter_preview` returns.

    Attributes
    ----------
    region : ViewRegion
        The region predicted.
    labels : np.ndarray
        int32 ``region.shape``: 0 = background, 1..N = cells.
    seconds : float
        Wall time of the prediction.
    n_cells : int
        Cells in the region (counted in the worker, not on the GUI thread).
    planes : (int, int) or None
        A volume's preview (:func:`iter_preview_volume`): the planes ``[first, last)``
        that ``labels`` (then ``(last - first, *region.shape)``) covers; ``None`` in 2D.
    uncertainty : np.ndarray or None
        float32 ``region.shape``: per-pixel uncertainty in [0, 1]
        (:func:`~napari_unet.method.uncertainty.pixel_uncertainty`).
    cell_ids, confidence : np.ndarray or None
        int64 ids of the cells in ``labels`` and their float32 confidence
        (:func:`~napari_unet.method.uncertainty.cell_confidence`).
    """

    region: ViewRegion
    labels: np.ndarray
    seconds: float
    n_cells: int = 0
    planes: tuple[int, int] | None = None
    uncertainty: np.ndarray | None = None
    cell_ids: np.ndarray | None = None
    confidence: np.ndarray | None = None

    @property
    def index(self) -> tuple:
        """Index of the labels in an array of the label image's shape."""
        if self.planes is None:
            return self.region.index
        rows, columns = self.region.index[-2:]
        return (*self.region.plane[:-1], slice(*self.planes), rows, columns)


def plane_of(image, region: ViewRegion, rgb: bool | None = None) -> np.ndarray:
    """The 2D (gray) plane of ``image`` that ``region`` lies in, read into memory."""
    layout = image_layout(image, rgb)
    if len(region.plane) != len(layout.leading_shape):
        raise ValueError(
            f"region plane {region.plane} does not index the leading axes "
            f"{layout.leading_shape} of the image"
        )
    data = image[region.plane] if region.plane else image
    single = image_layout(data, layout.rgb)
    ((_, plane),) = iter_planes(data, single)
    return np.asarray(plane)


def iter_preview(
    plane: np.ndarray,
    region: ViewRegion,
    model: UNet,
    *,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    tile_shape: tuple[int, int] | None = None,
) -> Generator[object, None, PreviewResult]:
    """Segment ``region`` of one plane with ``model``; a generator like the others.

    Runs :func:`~napari_unet.inference.segment.iter_segment` (the model's own instance
    step) on the region plus its context (:func:`context_box`), normalised by the
    percentiles of the whole plane, and cuts the region out of the result, with the
    per-pixel uncertainty and every cell's confidence (from the same probabilities).

    Parameters
    ----------
    plane : np.ndarray
        The whole ``(Y, X)`` gray plane the region lies in (see :func:`plane_of`).
    region : ViewRegion
        What to segment.
    model : UNet
        The network (not modified; a snapshot while training).
    device, precision, tile_shape
        As for :func:`~napari_unet.inference.segment.iter_segment`.

    Yields
    ------
    SegmentProgress
        After each batch of tiles.

    Returns
    -------
    PreviewResult

    Raises
    ------
    ValueError
        If ``plane`` is not 2D or the region lies outside it.
    """
    from napari_unet.inference.segment import iter_segment
    from napari_unet.method.uncertainty import cell_confidence
    from napari_unet.models.metadata import model_percentiles

    started = time.perf_counter()
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"plane must be 2D (Y, X), got shape {plane.shape}")
    height, width = plane.shape
    if not (0 <= region.top < region.bottom <= height and 0 <= region.left < region.right <= width):
        raise ValueError(f"region {region.box} lies outside the plane of shape {plane.shape}")
    top, left, bottom, right = context_box(region, (height, width), model)
    result = yield from iter_segment(
        plane[top:bottom, left:right],
        model,
        tile_shape=tile_shape,
        device=device,
        precision=precision,
        rgb=False,
        normalization=percentile_normalization(plane, model_percentiles(model)),
        uncertainty=True,
    )
    cut = (
        slice(region.top - top, region.bottom - top),
        slice(region.left - left, region.right - left),
    )
    inner = np.ascontiguousarray(result.labels[cut])
    unsure = np.ascontiguousarray(result.uncertainty[cut])
    ids, confidence = cell_confidence(inner, unsure)
    seconds = time.perf_counter() - started
    return PreviewResult(
        region,
        inner,
        seconds,
        count_cells(inner),
        uncertainty=unsure,
        cell_ids=ids,
        confidence=confidence,
    )


def iter_preview_volume(
    volume: np.ndarray,
    region: ViewRegion,
    model: UNet,
    *,
    spacing=None,
    device: str | torch.device = "cpu",
    precision: str = "auto",
) -> Generator[object, None, PreviewResult]:
    """Segment the cells of a volume that cross the displayed plane, in the view.

    The volume's segmentation (:func:`~napari_unet.inference.segment.iter_segment` with
    ``axes="ZYX"``) of a slab of planes around the displayed one, as deep as the model's
    cell diameter on each side, and of the view plus its context; the result keeps the
    3D cells that have voxels in the displayed plane, in all the slab's planes. Normalised
    by the percentiles of the whole volume.

    Parameters
    ----------
    volume : np.ndarray
        The ``(Z, Y, X)`` gray volume the displayed plane is one plane of.
    region : ViewRegion
        The view; the last index of ``region.plane`` is the displayed plane (Z).
    model : UNet
        The network (not modified).
    spacing : (float, float, float), optional
        Voxel size ``(dz, dy, dx)``; ``None``: isotropic.
    device, precision
        As for :func:`~napari_unet.inference.segment.iter_segment`.

    Returns
    -------
    PreviewResult
        With ``planes`` set: ``labels`` is ``(depth, *region.shape)``, 0 outside the cells
        that cross the displayed plane.

    Raises
    ------
    ValueError
        If ``volume`` is not 3D or the region lies outside it.
    """
    from napari_unet.inference.segment import iter_segment
    from napari_unet.models.metadata import model_object_size, model_percentiles

    started = time.perf_counter()
    volume = np.asarray(volume)
    if volume.ndim != 3 or not region.plane or not 0 <= region.plane[-1] < volume.shape[0]:
        raise ValueError(
            f"a volume (Z, Y, X) and a region in one of its planes are needed, got shape "
            f"{volume.shape} and plane {region.plane}"
        )
    dz, _, dx = (1.0, 1.0, 1.0) if spacing is None else spacing
    z = region.plane[-1]
    reach = max(1, int(np.ceil(model_object_size(model) * dx / dz)))
    first, last = max(z - reach, 0), min(z + reach + 1, volume.shape[0])
    top, left, bottom, right = context_box(region, volume.shape[1:], model)
    result = yield from iter_segment(
        volume[first:last, top:bottom, left:right],
        model,
        device=device,
        precision=precision,
        rgb=False,
        normalization=percentile_normalization(volume, model_percentiles(model)),
        axes="ZYX",
        spacing=spacing,
    )
    labels = result.labels[
        :, region.top - top : region.bottom - top, region.left - left : region.right - left
    ]
    crossing = np.unique(labels[z - first])
    labels = np.where(np.isin(labels, crossing[crossing > 0]), labels, 0).astype(np.int32)
    n_cells = int(np.count_nonzero(crossing))
    seconds = time.perf_counter() - started
    return PreviewResult(region, labels, seconds, n_cells, (first, last))
