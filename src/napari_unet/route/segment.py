"""Segment an image by the route its size and the settings call for; one result type.

The widgets and the command line call :func:`iter_segment_routed`; it picks

- ``"memory"``: :func:`napari_unet.inference.segment.iter_segment` (numpy, or lazy images
  whose labels fit in memory, stacks, RGB, volumes: ``settings.axes`` with ``Z``);
- ``"zarr"``: :func:`napari_unet.inference.to_zarr.iter_segment_to_zarr`, block by block
  in this process, for one lazy 2D grayscale plane whose labels do not fit in memory
  (:func:`~napari_unet.inference.to_zarr.labels_fit_in_memory`), one volume (``"ZYX"``)
  whose working arrays do not, or a zarr path (a volume with ``"ZYX"`` or by its
  OME-Zarr axes);
- ``"cluster"``: :func:`napari_unet.distributed.segment_on_scheduler` when a scheduler
  address is given (one grayscale plane or one volume, block by block on the workers).

This folder sits above ``distributed/`` and ``inference/`` so that it may import both
(``tests/test_layers.py``); ``distributed`` is imported only on the cluster route.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from napari_unet.inference.segment import iter_segment
from napari_unet.inference.settings import SegmentSettings
from napari_unet.method.axes import check_axes, is_volume
from napari_unet.method.images import image_layout
from napari_unet.method.instances import count_cells
from napari_unet.runtime.progress import map_progress

ROUTES = ("memory", "zarr", "cluster")


@dataclass(frozen=True)
class RouteProgress:
    """Progress of :func:`iter_segment_routed`, the same on every route.

    Attributes
    ----------
    fraction : float
        Share of the job done, in [0, 1].
    message : str
        One line for a status label (plane and tile, or the cluster's stage).
    """

    fraction: float
    message: str


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`iter_segment_routed`, whatever the route.

    Attributes
    ----------
    route : str
        One of :data:`ROUTES`.
    pyramid : list of array-like
        The labels, finest level first (one level in memory; lazy dask arrays read from
        zarr on disk otherwise). int32, 0 = background.
    probabilities : np.ndarray or None
        Foreground probability (in memory only).
    n_cells : int
    store : str or None
        The zarr store holding the labels on disk, or ``None`` in memory.
    device, precision : str
        Where and in which precision the network ran (``"a dask cluster"`` there).
    seconds : float
        Wall time.
    """

    route: str
    pyramid: list
    probabilities: np.ndarray | None
    n_cells: int
    store: str | None
    device: str
    precision: str
    seconds: float

    @property
    def labels(self):
        """The full-resolution labels."""
        return self.pyramid[0]


def temporary_labels_store() -> str:
    """A new zarr store in a new temporary folder, for labels kept on disk."""
    return os.path.join(tempfile.mkdtemp(prefix="napari-unet-labels-"), "labels.zarr")


def _one_gray_plane(image, rgb: bool | None) -> bool:
    layout = image_layout(image, rgb)
    return not layout.rgb and layout.n_planes == 1


def choose_route(image, settings: SegmentSettings, scheduler: str | None = None) -> str:
    """The route for ``image``: ``"cluster"`` with a scheduler, ``"zarr"`` when too large.

    Parameters
    ----------
    image : array-like, str or os.PathLike
        An array (numpy, dask, zarr), or a zarr / OME-Zarr path.
    settings : SegmentSettings
        Its ``rgb`` says whether the last axis holds colours.
    scheduler : str, optional
        A dask scheduler address or ``"local:N"``.

    Returns
    -------
    str
        One of :data:`ROUTES`.

    Raises
    ------
    ValueError
        For ``axes`` that do not fit the image; on a cluster, for an array that is not one
        grayscale plane or one volume (``"ZYX"``); for volumes of several time points
        (``"TZYX"``) too large for memory.
    """
    from napari_unet.inference.to_zarr import labels_fit_in_memory

    is_path = isinstance(image, str | os.PathLike)
    volume = is_volume(settings.axes)
    if volume and not is_path:
        check_axes(settings.axes, tuple(image.shape), settings.rgb)
    if scheduler:
        if is_path:
            return "cluster"
        one = settings.axes.upper() == "ZYX" if volume else _one_gray_plane(image, settings.rgb)
        if not one:
            raise ValueError(
                "on a dask cluster, one grayscale plane (YX) or one volume (ZYX) is segmented"
            )
        return "cluster"
    if is_path:
        return "zarr"
    if volume:
        layout = image_layout(image, settings.axes.upper().endswith("XC"))
        # six times the 8 bytes per voxel of labels and probabilities: the float32 copy of
        # the volume, the probabilities of its views, the watershed's working arrays
        if labels_fit_in_memory((*layout.labels_shape, 6)):
            return "memory"
        if settings.axes.upper() != "ZYX":
            raise ValueError(
                f"the volumes {layout.labels_shape} are too large to segment in memory, and "
                "block by block one volume (ZYX) is segmented: segment one time point at a time"
            )
        return "zarr"
    lazy = not isinstance(image, np.ndarray)
    if lazy and _one_gray_plane(image, settings.rgb):
        if not labels_fit_in_memory(image_layout(image, settings.rgb).labels_shape):
            return "zarr"
    return "memory"


def iter_segment_routed(
    image,
    model=None,
    settings: SegmentSettings | None = None,
    *,
    output: str | os.PathLike | None = None,
    scheduler: str | None = None,
    block_shape: tuple[int, int] | int | None = None,
) -> Generator[RouteProgress, None, Segmentation]:
    """Segment ``image`` by the route :func:`choose_route` picks.

    Parameters
    ----------
    image : array-like, str or os.PathLike
        See :func:`choose_route`.
    model : UNet, str or path, optional
        ``None``: the shipped default model.
    settings : SegmentSettings, optional
        Default: ``SegmentSettings()``.
    output : str or os.PathLike, optional
        The zarr store for labels on disk (zarr and cluster routes; replaced only if
        napari-unet wrote it); default: a new temporary store.
    scheduler : str, optional
        A dask scheduler address or ``"local:N"``: segment on that cluster.
    block_shape : tuple of int or int, optional
        Block core for the block routes; default
        :data:`napari_unet.inference.blocks.DEFAULT_BLOCK_SIDE` square for a plane,
        :data:`napari_unet.inference.volume_blocks.DEFAULT_VOLUME_BLOCK` for a volume.

    Yields
    ------
    RouteProgress

    Returns
    -------
    Segmentation

    Raises
    ------
    ValueError, FileNotFoundError
        As the route's function; ImportError when the route needs a missing extra.
    """
    settings = SegmentSettings() if settings is None else settings
    route = choose_route(image, settings, scheduler)
    if route == "memory":
        result = yield from map_progress(
            iter_segment(image, model, **settings.in_memory()), _tile_progress
        )
        labels = result.labels
        return Segmentation(
            route, [labels], result.probabilities, count_cells(labels, settings.axes), None,
            result.device, result.precision, result.seconds,
        )  # fmt: skip
    output = temporary_labels_store() if output is None else output
    if route == "zarr":
        _require_zarr(image)
        from napari_unet.inference.to_zarr import iter_segment_to_zarr

        result = yield from map_progress(
            iter_segment_to_zarr(
                image, output, model, block_shape=block_shape, **settings.blocks()
            ),
            _tile_progress,
        )
        return Segmentation(
            route, result.pyramid, None, result.n_cells, str(result.store),
            result.device, result.precision, result.seconds,
        )  # fmt: skip
    from napari_unet.distributed import segment_on_scheduler

    started = time.perf_counter()
    model = "default" if model is None else model
    result = yield from map_progress(
        segment_on_scheduler(
            scheduler, image, output, model=model, block_shape=block_shape, **settings.blocks()
        ),
        _cluster_progress,
    )
    return Segmentation(
        route, [result.labels], None, result.n_cells, str(result.store),
        "a dask cluster", settings.precision, time.perf_counter() - started,
    )  # fmt: skip


def _require_zarr(image) -> None:
    try:
        import zarr  # noqa: F401
    except ImportError as error:
        from napari_unet.distributed.cluster import EXTRA_HINT

        shape = getattr(image, "shape", None)
        raise ImportError(
            f"the labels of this image{f' {shape}' if shape else ''} do not fit in memory; "
            f"to write them to disk, install zarr: {EXTRA_HINT}"
        ) from error


def _tile_progress(progress) -> RouteProgress:
    part = "tile" if getattr(progress, "unit", "plane") == "plane" else "plane"
    return RouteProgress(
        progress.fraction,
        f"{getattr(progress, 'unit', 'plane')} {progress.plane_index}/{progress.n_planes} · "
        f"{part} {progress.tile_index}/{progress.n_tiles} · {progress.device}, "
        f"{progress.precision}",
    )


def _cluster_progress(progress) -> RouteProgress:
    return RouteProgress(
        progress.fraction, f"on the cluster: {progress.stage} {progress.done}/{progress.total}"
    )
