"""One image too large for one machine: segmented block by block on a dask cluster.

:func:`iter_segment_zarr` reads a zarr or OME-Zarr (or dask) plane or volume block by
block on the workers (:mod:`napari_unet.inference.blocks`, 3D blocks with halos:
:mod:`napari_unet.inference.volume_blocks`), gives every cell one id
(:mod:`napari_unet.inference.stitching`) and writes int32 zarr labels: OME-Zarr labels
(with a pyramid for a plane) for an OME-Zarr image. A plane's result equals
:func:`napari_unet.segment` on the whole image; a volume's agrees object for object.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_unet.distributed.cluster import DEFAULT_RETRIES, ClusterProgress, model_on_cluster
from napari_unet.inference.blocks import Block, BlockPlan, core_labels, seam_labels
from napari_unet.inference.stitching import BlockCells, global_ids, match_cells
from napari_unet.inference.volume_blocks import (
    BlockJob,
    block_job,
    image_normalization,
    open_block_image,
)
from napari_unet.io import zarr_files as zarr_io
from napari_unet.io.checks import refuse_foreign_output
from napari_unet.method.axes import DEFAULT_VOLUME_METHOD
from napari_unet.runtime.progress import run_to_completion


@dataclass(frozen=True)
class ZarrSegmentResult:
    """Where :func:`segment_zarr` wrote the labels.

    Attributes
    ----------
    store, path : str
        The zarr store and the labels array's path in it (``zarr.open_array(store=store,
        path=path)``); int32, ``0`` = background, ``1..n_cells``.
    n_cells : int
        Cells in the image.
    plan : BlockPlan
        The blocks.
    seconds : float
        Wall time.
    """

    store: str
    path: str
    n_cells: int
    plan: BlockPlan
    seconds: float

    @property
    def labels(self):
        """The full-resolution labels as a lazy dask array (read chunk by chunk)."""
        import dask.array as da

        return da.from_zarr(zarr_io.LabelsTarget(self.store, self.path, 0).open("r"))


def _block_task(source, job: BlockJob, block: Block, seams, model, provisional):
    """Worker side: segment one block, write its core (local ids), return its seam strips."""
    if not isinstance(source, np.ndarray):  # a zarr-backed image: read only this block
        source = np.asarray(source[zarr_io.box_slices(job.plan.read_box(block))])
    labels, n_core = job.segment(source, block, model)
    provisional.write(block.core, core_labels(labels, block))
    if not _has_metadata(provisional.store, provisional.path):
        # The job ended (stopped, failed, interrupted) while this block ran, and removed
        # its provisional array: a task dask could not stop must not leave chunks behind.
        _remove(provisional)
        raise RuntimeError("the job ended while this block was segmented")
    return BlockCells(n_core, int(labels.max())), seam_labels(labels, block, seams)


def _cells_of(result) -> BlockCells:
    return result[0]


def _match_task(first, second, key):
    return match_cells(first[1][key], second[1][key])


def _relabel_task(provisional, target, block: Block, table: np.ndarray) -> int:
    """Worker side: local ids of a block's core to the image's ids (idempotent)."""
    target.write(block.core, table[provisional.read(block.core)])
    return block.index


def _output_location(output, ome, name: str, source_path: str | None) -> tuple[str, str]:
    """``(store, path)`` of the labels; refuses the input and arrays napari-unet did not write."""
    if output is None:
        if ome is None:
            raise ValueError("give an output zarr path (only OME-Zarr images hold their labels)")
        store, path = zarr_io.ome_labels_location(ome, name)
        what = f"labels/{name} of {ome.group}"
    else:
        store, path = zarr_io.store_path(output), ""
        what = str(output)
        inside = source_path is not None and source_path.startswith(store.rstrip("/") + "/")
        if store == source_path or inside:
            raise ValueError(f"the output {output} would overwrite the input image")
    refuse_foreign_output(
        store, path, what=what, instead="choose another " + ("name" if output is None else "output")
    )
    return store, path


def _provisional_location(store: str, path: str) -> tuple[str, str]:
    """Where a job keeps its blocks' local ids: beside the output, hidden."""
    if path:  # inside an OME-Zarr image: labels/.<name>.napari-unet-partial
        parent, _, name = path.rpartition("/")[0].rpartition("/")
        return store, f"{parent}/.{name}.napari-unet-partial".lstrip("/")
    parent, name = os.path.split(store.rstrip("/"))
    return os.path.join(parent, f".{name}.napari-unet-partial"), ""


def iter_segment_zarr(
    client,
    image,
    output=None,
    *,
    model="default",
    name: str = "cells",
    block_shape: tuple[int, ...] | int | None = None,
    overlap: int | tuple[int, ...] | None = None,
    axes: str | None = None,
    spacing: tuple[float, ...] | None = None,
    volume_method: str = DEFAULT_VOLUME_METHOD,
    tile_shape: tuple[int, int] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    threshold: float | None = None,
    min_size: int | None = None,
    object_size: float | None = None,
    normalization: tuple[float, float] | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Generator[ClusterProgress, None, ZarrSegmentResult]:
    """Segment a huge plane or volume on a dask cluster, block by block, into zarr labels.

    Blocks of ``block_shape`` pixels are segmented on the workers from their core plus
    ``overlap`` plus the network's context (:mod:`napari_unet.inference.blocks`); cells that
    cross a block border are matched in the overlap and given one id
    (:mod:`napari_unet.inference.stitching`, connected components of the match graph). The labels
    equal those of :func:`napari_unet.segment` on the whole image when every cell is
    smaller than the overlap (docs/benchmarks.md measures the agreement). Memory per
    worker follows the block size: a worker reads only its block and context.

    Parameters
    ----------
    client : distributed.Client
        The cluster.
    image : str, os.PathLike, zarr.Array, dask array or np.ndarray
        A zarr array or OME-Zarr image (path or URL every worker can open), or an
        array ``(Y, X)`` or ``(Z, Y, X)`` (leading axes of length 1 are dropped). Zarr
        inputs are read by the workers; a dask array's blocks are computed on the cluster.
    output : str or os.PathLike, optional
        The zarr store to write (replaced if napari-unet wrote it). ``None`` for an
        OME-Zarr image: its ``labels/<name>`` group, with OME-NGFF label metadata and a
        pyramid of coarser levels.
    model : UNet, str or path
        The network, a model file or a shipped model name.
    name : str
        Name of the labels in an OME-Zarr image.
    block_shape : tuple of int or int, optional
        Block core, pixels (also the chunks of the labels); default
        :data:`napari_unet.inference.blocks.DEFAULT_BLOCK_SIDE` square, or
        :data:`napari_unet.inference.volume_blocks.DEFAULT_VOLUME_BLOCK` for a volume.
    overlap : int or tuple of int, optional
        Pixels beyond a core where its cells are found; at least the largest cell's
        diameter (default: 3 typical cell diameters of the model, along each axis).
    axes, spacing, volume_method : optional
        ``"YX"`` or ``"ZYX"``, the voxel size and the volume method, as
        :func:`~napari_unet.inference.to_zarr.iter_segment_to_zarr` (default from
        OME-Zarr metadata).
    tile_shape, batch_size, device, precision
        Of the prediction on each worker (:func:`~napari_unet.method.tiling.predict_tiled`).
    threshold, min_size, object_size
        The instance step, as in :func:`~napari_unet.inference.segment.iter_segment`.
    normalization : (float, float), optional
        ``(low, high)`` intensities; default: the model's percentiles of the image,
        from the same regular subsample :func:`napari_unet.segment` uses, computed on
        the cluster.
    retries : int
        Reruns of a task that raised an error.

    Yields
    ------
    ClusterProgress
        After every block segmented and every block relabelled.

    Returns
    -------
    ZarrSegmentResult

    Raises
    ------
    ValueError
        For an image that is not one plane or one volume, an output that would overwrite
        the image or a store napari-unet did not write, or invalid settings.
    FileNotFoundError
        If the image or model file does not exist.
    """
    import dask
    import dask.array as da
    from distributed import as_completed

    from napari_unet.models.files import as_model

    started = time.perf_counter()
    source_path = zarr_io.store_path(image) if isinstance(image, (str, os.PathLike)) else None
    plane, ome, spacing = open_block_image(image, axes, spacing)
    net = as_model(model)
    store, path = _output_location(output, ome, name, source_path)
    options = {
        "tile_shape": tile_shape,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
    }
    job = block_job(
        plane, net, spacing=spacing, volume_method=volume_method, block_shape=block_shape,
        overlap=overlap, threshold=threshold, min_size=min_size, object_size=object_size,
        normalization=normalization or (0.0, 1.0), **options,
    )  # fmt: skip
    plan = job.plan
    lazy = _as_dask(plane, plan.block_shape)
    if normalization is None:  # the percentiles' sample is read on the cluster
        with dask.config.set(scheduler=client.get):
            job = replace(job, normalization=image_normalization(lazy, net, plane.ndim == 3))
    shape = tuple(int(s) for s in plane.array.shape)
    fmt = zarr_io.zarr_format_of(ome)
    provisional = zarr_io.create_labels(
        *_provisional_location(store, path), shape, plan.block_shape, fmt
    )
    target = zarr_io.create_labels(store, path, shape, plan.block_shape, fmt)
    seams = plan.seams()
    key = uuid.uuid4().hex
    model_future = model_on_cluster(client, net)
    reads_directly = not isinstance(plane.array, (np.ndarray, da.Array))
    task = dask.delayed(_block_task, pure=False)
    results = []
    for block in plan.blocks:
        box = zarr_io.box_slices(plan.read_box(block))
        pixels = plane if reads_directly else lazy[box]
        mine = [s for s in seams if block.index in (s.first, s.second)]
        results.append(
            task(
                pixels, job, block, mine, model_future, provisional,
                dask_key_name=f"unet-block-{block.index}-{key}",
            )
        )  # fmt: skip
    counts = [dask.delayed(_cells_of, pure=True)(r) for r in results]
    matches = [
        dask.delayed(_match_task, pure=True)(
            results[s.first], results[s.second], (s.first, s.second)
        )
        for s in seams
    ]
    futures = client.compute([*counts, *matches], retries=retries)
    count_futures, match_futures = futures[: plan.n_blocks], futures[plan.n_blocks :]
    try:
        yield ClusterProgress("segment", 0, plan.n_blocks, time.perf_counter() - started)
        for done, _ in enumerate(as_completed(count_futures), start=1):
            yield ClusterProgress("segment", done, plan.n_blocks, time.perf_counter() - started)
        cells = client.gather(count_futures)
        keys = [(s.first, s.second) for s in seams]
        matched = dict(zip(keys, client.gather(match_futures), strict=True))
        client.cancel(futures)  # done: their results (and the strips) leave the workers
        tables, n_cells = global_ids(cells, matched)
        futures = client.map(
            _relabel_task,
            [provisional] * plan.n_blocks,
            [target] * plan.n_blocks,
            plan.blocks,
            tables,
            retries=retries,
            pure=False,
        )
        for done, _ in enumerate(as_completed(futures), start=1):
            yield ClusterProgress("stitch", done, plan.n_blocks, time.perf_counter() - started)
        client.gather(futures)
        if ome is not None and output is None:
            yield from _write_pyramid(client, target, plan, started)
            factors = zarr_io.pyramid_factors(plan.image_shape)
            zarr_io.write_ome_label_metadata(ome, name, factors)
        zarr_io.mark_complete(target, n_cells)
    finally:  # also when the caller stops early: nothing keeps running or lying around
        try:
            client.cancel([model_future, *futures])
        finally:  # blocks still running find their array gone and remove what they wrote
            _remove(provisional)
    return ZarrSegmentResult(store, path, n_cells, plan, time.perf_counter() - started)


def _as_dask(plane, block_shape):
    import dask.array as da

    array, lead = plane.array, plane.array.ndim - plane.ndim
    if not isinstance(array, da.Array):
        array = da.from_array(array, chunks=(1,) * lead + tuple(block_shape))
    return array[(0,) * lead]


#: Files that make a folder a zarr array (format 3, format 2).
_ARRAY_METADATA = ("zarr.json", ".zarray")


def _has_metadata(store: str, path: str = "") -> bool:
    """Whether a local array's metadata file is there; always True for a URL."""
    if zarr_io.is_url(store):
        return True
    return any(Path(store, path, name).is_file() for name in _ARRAY_METADATA)


def _remove_metadata(store: str, path: str = "") -> None:
    """Delete a local array's metadata file (a URL is left alone); errors are ignored."""
    for name in () if zarr_io.is_url(store) else _ARRAY_METADATA:
        with contextlib.suppress(OSError):
            Path(store, path, name).unlink()


def _remove(target) -> None:
    """Delete a provisional array: its metadata first, so a block still writing sees it gone."""
    import zarr

    _remove_metadata(target.store, target.path)
    if target.path:
        try:
            del zarr.open_group(store=target.store, mode="r+")[target.path]
        except (KeyError, FileNotFoundError):
            pass
    else:
        zarr_io.remove(target.store)


def _write_pyramid(client, target, plan: BlockPlan, started: float):
    """Coarser levels ``1, 2, …`` beside level ``0``, chunk by chunk on the cluster."""
    factors = zarr_io.pyramid_factors(plan.image_shape)
    finer = target
    for number, factor in enumerate(factors, start=1):
        coarser, boxes = zarr_io.create_pyramid_level(target, factor, plan.block_shape)
        n = len(boxes)
        futures = client.map(
            zarr_io.write_subsampled, [finer] * n, [coarser] * n, boxes, pure=False
        )
        client.gather(futures)
        yield ClusterProgress("pyramid", number, len(factors), time.perf_counter() - started)
        finer = coarser


def segment_zarr(client, image, output=None, **options) -> ZarrSegmentResult:
    """Segment a huge image on a dask cluster into zarr labels; see :func:`iter_segment_zarr`.

    Returns
    -------
    ZarrSegmentResult
    """
    return run_to_completion(iter_segment_zarr(client, image, output, **options))


def segment_on_scheduler(address: str, image, output, **options) -> Generator:
    """:func:`iter_segment_zarr` on a scheduler address or ``"local:N"`` (connected here).

    A generator of :class:`~napari_unet.distributed.ClusterProgress` that returns a
    :class:`ZarrSegmentResult`; the connection (or local cluster) ends with it.
    """
    from napari_unet.distributed.cluster import connect

    with connect(address) as client:
        return (yield from iter_segment_zarr(client, image, output, **options))
