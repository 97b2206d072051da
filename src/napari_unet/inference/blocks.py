"""Block-wise segmentation of an image too large for one pass, as :func:`segment` does it.

The image is cut into a grid of *blocks* whose *cores* partition it. A block is
segmented on its *extent*, the core grown by ``overlap`` pixels (clipped to the image),
so that cells crossing the core's border are seen whole. The extent is predicted from
``context`` further pixels of real neighbouring image (mirrored only beyond the image
border, as :mod:`napari_unet.method.tiling` does), with all origins on the network's pooling
grid: the probabilities of a block equal those of a whole-image pass, bit for bit
(float32). Cells are found on the extent with the model's own instance step; only the
core's labels are kept. :mod:`napari_unet.inference.stitching` then gives every cell one id.

Memory per block follows the block size, never the image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from napari_unet.inference.segment import InstanceSettings
from napari_unet.io.zarr_files import box_slices
from napari_unet.method.network import UNet
from napari_unet.method.tiling import mirror_index, predict_tiled
from napari_unet.models.metadata import model_object_size

#: Default core side of a block, pixels: a few seconds per block on a GPU, about a
#: minute on one CPU core; chunks of the labels written have this shape.
DEFAULT_BLOCK_SIDE = 2048
#: Default overlap in typical cell diameters (the model's ``object_size``): a cell that
#: crosses a core border lies whole inside both blocks' extents.
OVERLAP_CELL_DIAMETERS = 3


Box = tuple[int, ...]  # (start, stop) per axis, flat: (y0, y1, x0, x1), pixels, half-open


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockPlan`.

    Attributes
    ----------
    index : int
        Position in :attr:`BlockPlan.blocks` (row by row; plane by plane for a volume).
    grid : tuple of int
        Position in the block grid, one per axis.
    core : tuple of int
        ``(y0, y1, x0, x1)`` (``(z0, z1, y0, y1, x0, x1)``) of the pixels this block's
        labels are kept for.
    extent : tuple of int
        The core grown by the overlap, clipped to the image: where cells are found.
    """

    index: int
    grid: tuple[int, ...]
    core: Box
    extent: Box


@dataclass(frozen=True)
class Seam:
    """Where two neighbouring blocks (face, edge or corner neighbours) compare their cells.

    Attributes
    ----------
    first, second : int
        Indices of the two blocks (``first < second``).
    box : tuple of int
        The strip around their common border where both are trusted: both cores grown
        by half the overlap, intersected.
    """

    first: int
    second: int
    box: Box


def _per_axis(value, n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, tuple) else (int(value),) * n


@dataclass(frozen=True)
class BlockPlan:
    """A grid of blocks over a ``(Y, X)`` image or a ``(Z, Y, X)`` volume.

    Attributes
    ----------
    image_shape : tuple of int
        Spatial image shape, pixels.
    block_shape : tuple of int
        Core shape of every block but the last along an axis, pixels (for a plane a
        multiple of the pooling factor).
    overlap : int or tuple of int
        Pixels an extent reaches beyond its core (one for all axes, or one per axis).
    context : int or tuple of int
        Pixels of image read beyond the extent for the network (:func:`network_context`).
    """

    image_shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    overlap: int | tuple[int, ...]
    context: int | tuple[int, ...]

    @property
    def overlaps(self) -> tuple[int, ...]:
        """The overlap along each axis."""
        return _per_axis(self.overlap, len(self.image_shape))

    @property
    def contexts(self) -> tuple[int, ...]:
        """The context along each axis."""
        return _per_axis(self.context, len(self.image_shape))

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        return tuple(
            math.ceil(s / b) for s, b in zip(self.image_shape, self.block_shape, strict=True)
        )

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return math.prod(self.grid_shape)

    def block(self, index: int) -> Block:
        """The block at ``index`` (row by row)."""
        if not 0 <= index < self.n_blocks:
            raise IndexError(f"block {index} is not in a plan of {self.n_blocks} blocks")
        grid = tuple(int(g) for g in np.unravel_index(index, self.grid_shape))
        core, extent = [], []
        for g, size, side, m in zip(
            grid, self.image_shape, self.block_shape, self.overlaps, strict=True
        ):
            start, stop = g * side, min(g * side + side, size)
            core += [start, stop]
            extent += [max(start - m, 0), min(stop + m, size)]
        return Block(index, grid, tuple(core), tuple(extent))

    @property
    def blocks(self) -> list[Block]:
        """All blocks, row by row."""
        return [self.block(i) for i in range(self.n_blocks)]

    def seams(self) -> list[Seam]:
        """Every pair of face, edge or corner neighbours, with the strip they compare in."""
        n, grid = len(self.image_shape), self.grid_shape
        # each neighbour once: offsets whose first non-zero step is +1
        offsets = [
            o
            for o in itertools.product((-1, 0, 1), repeat=n)
            if any(o) and o[np.flatnonzero(o)[0]] > 0
        ]
        halves = [m // 2 for m in self.overlaps]
        seams = []
        for index in range(self.n_blocks):
            here = np.unravel_index(index, grid)
            for offset in offsets:
                there = tuple(int(h + o) for h, o in zip(here, offset, strict=True))
                if not all(0 <= t < g for t, g in zip(there, grid, strict=True)):
                    continue
                other = int(np.ravel_multi_index(there, grid))
                a, b = self.block(index).core, self.block(other).core
                box = []
                for axis, half in enumerate(halves):
                    start = max(a[2 * axis], b[2 * axis]) - half
                    stop = min(a[2 * axis + 1], b[2 * axis + 1]) + half
                    box += [max(start, 0), min(stop, self.image_shape[axis])]
                seams.append(Seam(index, other, tuple(box)))
        return seams

    def read_box(self, block: Block) -> Box:
        """The image pixels a block reads: its extent and context, clipped to the image."""
        box = []
        for axis, (c, size) in enumerate(zip(self.contexts, self.image_shape, strict=True)):
            box += [max(block.extent[2 * axis] - c, 0), min(block.extent[2 * axis + 1] + c, size)]
        return tuple(box)


def network_context(model: UNet) -> int:
    """Pixels of image a block needs around its extent for exact probabilities.

    The network's halo plus one pooling cell (a pixel's receptive field reaches up to
    ``pooling_factor - 1`` pixels further on one side, depending on where it lies on
    the pooling grid), rounded up to the pooling grid: 112 for depth 5 (halo 92).
    """
    p = model.pooling_factor
    return math.ceil((model.halo + p) / p) * p


def default_overlap(model: UNet) -> int:
    """Default overlap, pixels: :data:`OVERLAP_CELL_DIAMETERS` cell diameters of the model.

    The diameter is the model's ``object_size``
    (:func:`~napari_unet.models.metadata.model_object_size`), rounded up to the pooling grid.
    """
    size = model_object_size(model)
    p = model.pooling_factor
    return max(p, math.ceil(OVERLAP_CELL_DIAMETERS * size / p) * p)


def plan_blocks(
    image_shape: tuple[int, int],
    model: UNet,
    block_shape: tuple[int, int] | int | None = None,
    overlap: int | None = None,
) -> BlockPlan:
    """Place blocks over an image.

    Parameters
    ----------
    image_shape : (int, int)
        ``(Y, X)``, pixels.
    model : UNet
        The network (its halo, pooling factor and ``object_size``).
    block_shape : (int, int) or int, optional
        Core shape, pixels, rounded up to the pooling grid; default
        :data:`DEFAULT_BLOCK_SIDE` square.
    overlap : int, optional
        Pixels each block's cells are found beyond its core, rounded up to the pooling
        grid; at least the largest cell's diameter. Default :func:`default_overlap`.

    Returns
    -------
    BlockPlan

    Raises
    ------
    ValueError
        If a shape or the overlap is not a positive integer.
    """
    p = model.pooling_factor
    if block_shape is None:
        block_shape = DEFAULT_BLOCK_SIDE
    if isinstance(block_shape, (int, np.integer)):
        block_shape = (int(block_shape), int(block_shape))
    shapes = (tuple(image_shape), tuple(block_shape))
    for name, shape in zip(("image_shape", "block_shape"), shapes, strict=True):
        if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
            raise ValueError(f"{name} must be two positive integers (Y, X), got {shape!r}")
    overlap = default_overlap(model) if overlap is None else overlap
    if isinstance(overlap, bool) or int(overlap) != overlap or overlap < 1:
        raise ValueError(f"overlap must be a positive number of pixels, got {overlap!r}")
    return BlockPlan(
        (int(image_shape[0]), int(image_shape[1])),
        tuple(math.ceil(int(s) / p) * p for s in block_shape),
        math.ceil(int(overlap) / p) * p,
        network_context(model),
    )


def with_context(pixels: np.ndarray, plan: BlockPlan, block: Block) -> np.ndarray:
    """The block's extent plus context, mirrored beyond the image border only.

    Parameters
    ----------
    pixels : np.ndarray
        ``image[..., y0:y1, x0:x1]`` for ``plan.read_box(block)``: ``(Y, X)`` or
        ``(C, Y, X)``.
    plan, block : BlockPlan, Block
        Where the block lies.

    Returns
    -------
    np.ndarray
        ``(..., extent Y + 2 context, extent X + 2 context)``.
    """
    cy, cx = plan.contexts
    ry0, _, rx0, _ = plan.read_box(block)
    y0, y1, x0, x1 = block.extent
    ys = mirror_index(np.arange(y0 - cy, y1 + cy), plan.image_shape[0]) - ry0
    xs = mirror_index(np.arange(x0 - cx, x1 + cx), plan.image_shape[1]) - rx0
    return np.asarray(pixels)[..., ys[:, None], xs[None, :]]


def segment_block(
    pixels: np.ndarray,
    plan: BlockPlan,
    block: Block,
    model: UNet,
    normalization: tuple[float, float],
    instances: InstanceSettings,
    **options,
) -> np.ndarray:
    """Cells on one block's extent, numbered with the core's cells first.

    Parameters
    ----------
    pixels : np.ndarray
        The image in ``plan.read_box(block)``.
    plan, block : BlockPlan, Block
        Where the block lies.
    model : UNet
        The network.
    normalization : (float, float)
        ``(low, high)`` of the *whole* image
        (:func:`~napari_unet.method.images.percentile_normalization`),
        so that every block is normalised alike.
    instances : InstanceSettings
        The instance step (:meth:`InstanceSettings.for_model`).
    **options
        ``tile_shape``, ``batch_size``, ``device``, ``precision`` of
        :func:`~napari_unet.method.tiling.predict_tiled`.

    Returns
    -------
    labels : np.ndarray
        int32 ``(extent Y, extent X)``; ids ``1..n_core`` are the cells with pixels in
        the core, ``n_core + 1..`` those only in the overlap.
    n_core : int
    """
    padded = with_context(pixels, plan, block)
    predicted = predict_tiled(
        padded,
        model,
        normalization=normalization,
        output_classes=instances.output_classes,
        **options,
    )
    cy, cx = plan.contexts
    predicted = predicted[:, cy : predicted.shape[1] - cy, cx : predicted.shape[2] - cx]
    labels, _ = instances.labels(np.ascontiguousarray(predicted))
    return core_first(labels, plan, block)


def core_first(labels: np.ndarray, plan: BlockPlan, block: Block) -> tuple[np.ndarray, int]:
    """Renumber an extent's labels: cells in the core ``1..n_core``, the others after."""
    core = labels[local_slices(block.core, block.extent)]
    n = int(labels.max())
    in_core = np.zeros(n + 1, bool)
    in_core[np.unique(core)] = True
    in_core[0] = False
    present = np.zeros(n + 1, bool)
    present[np.unique(labels)] = True
    present[0] = False
    forward = np.zeros(n + 1, np.int32)
    n_core = int(in_core.sum())
    forward[in_core] = np.arange(1, n_core + 1, dtype=np.int32)
    rest = present & ~in_core
    forward[rest] = np.arange(n_core + 1, n_core + 1 + int(rest.sum()), dtype=np.int32)
    return forward[labels], n_core


def local_slices(box: Box, frame: Box) -> tuple[slice, ...]:
    """Slices of ``box`` inside an array that covers ``frame``."""
    return box_slices(tuple(v - frame[2 * (i // 2)] for i, v in enumerate(box)))


def core_labels(labels: np.ndarray, block: Block) -> np.ndarray:
    """The core part of an extent's labels."""
    return labels[local_slices(block.core, block.extent)]


def seam_labels(
    labels: np.ndarray, block: Block, seams: list[Seam]
) -> dict[tuple[int, int], np.ndarray]:
    """The extent's labels in every seam strip this block takes part in."""
    return {
        (seam.first, seam.second): labels[local_slices(seam.box, block.extent)].copy()
        for seam in seams
        if block.index in (seam.first, seam.second)
    }


def iter_block_reads(image, plan: BlockPlan) -> Iterator[tuple[Block, np.ndarray]]:
    """Yield each block with the pixels it reads from ``image`` (numpy, dask or zarr)."""
    for block in plan.blocks:
        yield block, np.asarray(image[(..., *box_slices(plan.read_box(block)))])
