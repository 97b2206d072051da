"""Images whose labels do not fit in memory: segmented block by block into zarr, here.

The same blocks and stitching as on a cluster (:mod:`napari_unet.inference.blocks`,
:mod:`napari_unet.inference.volume_blocks` for volumes, :mod:`napari_unet.inference.stitching`),
run one block after the other in this process: each block is read from the (lazy) image,
segmented, and its core written to an int32 zarr array; cells crossing block borders are
matched as soon as both blocks are done, then every block's ids are made global in a
second pass over the zarr array. Memory follows the block size (plus the seam strips of
blocks whose neighbours are not done yet). A plane's result equals
:func:`napari_unet.segment` on the whole image; a volume's agrees with it object for
object (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass

from napari_unet.inference.blocks import core_labels, iter_block_reads, seam_labels
from napari_unet.inference.segment import SegmentProgress
from napari_unet.inference.stitching import BlockCells, global_ids, match_cells
from napari_unet.inference.volume_blocks import block_job, open_block_image
from napari_unet.io import zarr_files as zarr_io
from napari_unet.io.checks import refuse_foreign_output
from napari_unet.method.axes import DEFAULT_VOLUME_METHOD

#: Share of the available memory that in-memory results (int32 labels and float32
#: probabilities, 8 bytes per pixel) may take; beyond it labels go to zarr on disk.
IN_MEMORY_SHARE = 0.25


def labels_fit_in_memory(shape: tuple[int, ...], share: float | None = None) -> bool:
    """Whether the in-memory results of an image of this labels shape fit comfortably.

    Parameters
    ----------
    shape : tuple of int
        Shape of the label image (the image's without RGB).
    share : float, optional
        Share of the available system memory
        (:func:`~napari_unet.runtime.devices.available_memory`) they may take; default
        :data:`IN_MEMORY_SHARE`.
    """
    from napari_unet.runtime.devices import available_memory

    share = IN_MEMORY_SHARE if share is None else share

    pixels = 1
    for s in shape:
        pixels *= int(s)
    return 8 * pixels <= share * available_memory("cpu")


@dataclass(frozen=True)
class ZarrLabels:
    """Labels written to zarr by :func:`iter_segment_to_zarr`.

    Attributes
    ----------
    store : str
        The zarr group: full-resolution int32 ``(Y, X)`` or ``(Z, Y, X)`` labels in array
        ``"0"`` (chunks of the block shape, 0 = background), and for a plane coarser levels
        ``"1"``, ``"2"``, … each half the size of the one before (every other pixel),
        down to :data:`~napari_unet.io.zarr_files.PYRAMID_MIN_SIDE`.
    n_levels : int
        Levels of the pyramid (1 for a volume).
    n_cells : int
        Cells, ids ``1..n_cells``.
    device, precision : str
        Where and in which precision the network ran.
    seconds : float
        Wall time.
    """

    store: str
    n_levels: int
    n_cells: int
    device: str
    precision: str
    seconds: float

    @property
    def pyramid(self) -> list:
        """Every level, finest first, as lazy dask arrays (read chunk by chunk)."""
        import dask.array as da

        levels = range(self.n_levels)
        return [da.from_zarr(zarr_io.LabelsTarget(self.store, str(k), 0).open("r")) for k in levels]

    @property
    def labels(self):
        """The full-resolution labels as a lazy dask array."""
        return self.pyramid[0]

    #: No probability map is kept for images this large.
    probabilities = None


def iter_segment_to_zarr(
    image,
    store: str | os.PathLike,
    model=None,
    *,
    block_shape: tuple[int, ...] | int | None = None,
    overlap: int | tuple[int, ...] | None = None,
    axes: str | None = None,
    spacing: tuple[float, ...] | None = None,
    volume_method: str = DEFAULT_VOLUME_METHOD,
    device: str = "auto",
    precision: str = "auto",
    threshold: float | None = None,
    min_size: int | None = None,
    object_size: float | None = None,
    normalization: tuple[float, float] | None = None,
    **options,
) -> Generator[SegmentProgress, None, ZarrLabels]:
    """Segment a huge plane or volume block by block into a zarr labels array on disk.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` or ``(Z, Y, X)`` numpy, dask or zarr array, or a zarr/OME-Zarr path;
        leading axes of length 1 are dropped. Read one block (plus halo) at a time.
    store : str or os.PathLike
        Zarr group to create (replaced if it exists and napari-unet wrote it); see
        :class:`ZarrLabels`.
    model : UNet, str or path, optional
        ``None``: the shipped default model.
    block_shape, overlap
        As :func:`napari_unet.inference.blocks.plan_blocks` (a plane) or
        :func:`napari_unet.inference.volume_blocks.plan_volume_blocks` (a volume).
    axes, spacing : optional
        ``"YX"`` or ``"ZYX"`` and the voxel size; default from OME-Zarr metadata
        (:func:`~napari_unet.inference.volume_blocks.open_block_image`). A volume is
        segmented into 3D cells, one id per cell across blocks and planes.
    volume_method : str
        As :func:`~napari_unet.inference.segment.iter_segment`.
    device, precision, threshold, min_size, object_size, normalization
        As :func:`napari_unet.inference.segment.iter_segment`; the normalisation defaults to
        the model's percentiles of the whole image (its regular subsample;
        :func:`~napari_unet.inference.volume_blocks.image_normalization`).
    **options
        ``tile_shape``, ``batch_size`` of :func:`~napari_unet.method.tiling.predict_tiled`.

    Yields
    ------
    SegmentProgress
        After each block of both passes and each pyramid level (``n_tiles`` steps).

    Returns
    -------
    ZarrLabels

    Raises
    ------
    ValueError
        For an image that is not one plane or one volume, a store napari-unet did not
        write, or invalid settings (axes, spacing, shapes).
    """
    from napari_unet.models.files import as_model
    from napari_unet.runtime.devices import resolved_names

    started = time.perf_counter()
    plane, _, spacing = open_block_image(image, axes, spacing)
    net = as_model("default" if model is None else model)
    options.update(device=device, precision=precision)
    store = zarr_io.store_path(store)
    refuse_foreign_output(store, "0", replaces_store=True, instead="choose another store")
    job = block_job(
        plane, net, spacing=spacing, volume_method=volume_method, block_shape=block_shape,
        overlap=overlap, threshold=threshold, min_size=min_size, object_size=object_size,
        normalization=normalization, **options,
    )  # fmt: skip
    plan = job.plan
    device_name, precision_label = resolved_names(device, precision)
    zarr_io.remove(store)
    target = zarr_io.create_labels(store, "0", plan.image_shape, plan.block_shape)
    seams = plan.seams()
    factors = zarr_io.pyramid_factors(plan.image_shape)
    n_steps = 2 * plan.n_blocks + len(factors)

    def progress(step: int) -> SegmentProgress:
        elapsed = time.perf_counter() - started
        return SegmentProgress(1, 1, step, n_steps, elapsed, device_name, precision_label)

    cells, strips, matches = [], {}, {}
    for block, pixels in iter_block_reads(plane, plan):
        labels, n_core = job.segment(pixels, block, net)
        target.write(block.core, core_labels(labels, block))
        cells.append(BlockCells(n_core, int(labels.max())))
        for key, strip in seam_labels(labels, block, seams).items():
            if key in strips:  # both blocks done: match, and forget the strips
                matches[key] = match_cells(strips.pop(key), strip)
            else:
                strips[key] = strip
        del labels, pixels
        yield progress(block.index + 1)
    tables, n_cells = global_ids(cells, matches)
    for block in plan.blocks:
        target.write(block.core, tables[block.index][target.read(block.core)])
        yield progress(plan.n_blocks + block.index + 1)
    finer = target
    for number, factor in enumerate(factors, start=1):
        coarser, boxes = zarr_io.create_pyramid_level(target, factor, plan.block_shape)
        for box in boxes:
            zarr_io.write_subsampled(finer, coarser, box)
        finer = coarser
        yield progress(2 * plan.n_blocks + number)
    zarr_io.mark_complete(target, n_cells)
    seconds = time.perf_counter() - started
    return ZarrLabels(store, 1 + len(factors), n_cells, device_name, precision_label, seconds)
