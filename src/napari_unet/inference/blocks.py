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

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from napari_unet.inference.segment import InstanceSettings
from napari_unet.method.network import UNet
from napari_unet.method.tiling import mirror_index, predict_tiled
from napari_unet.models.metadata import model_object_size

#: Default core side of a block, pixels: a few seconds per block on a GPU, about a
#: minute on one CPU core; chunks of the labels written have this shape.
DEFAULT_BLOCK_SIDE = 2048
#: Default overlap in typical cell diameters (the model's ``object_size``): a cell that
#: crosses a core border lies whole inside both blocks' extents.
OVERLAP_CELL_DIAMETERS = 3


Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), pixels, half-open


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockPlan`.

    Attributes
    ----------
    index : int
        Position in :attr:`BlockPlan.blocks` (row by row).
    grid : (int, int)
        Row and column in the block grid.
    core : (int, int, int, int)
        ``(y0, y1, x0, x1)`` of the pixels this block's labels are kept for.
    extent : (int, int, int, int)
        The core grown by the overlap, clipped to the image: where cells are found.
    """

    index: int
    grid: tuple[int, int]
    core: Box
    extent: Box


@dataclass(frozen=True)
class Seam:
    """Where two neighbouring blocks (edge or corner neighbours) compare their cells.

    Attributes
    ----------
    first, second : int
        Indices of the two blocks (``first < second``).
    box : (int, int, int, int)
        The strip around their common border where both are trusted: both cores grown
        by half the overlap, intersected.
    """

    first: int
    second: int
    box: Box


@dataclass(frozen=True)
class BlockPlan:
    """A grid of blocks over a ``(Y, X)`` image.

    Attributes
    ----------
    image_shape : (int, int)
        Spatial image shape, pixels.
    block_shape : (int, int)
        Core shape of every block but the last in a row or column, pixels, a multiple of
        the pooling factor.
    overlap : int
        Pixels an extent reaches beyond its core, a multiple of the pooling factor.
    context : int
        Pixels of image read beyond the extent for the network (:func:`network_context`).
    """

    image_shape: tuple[int, int]
    block_shape: tuple[int, int]
    overlap: int
    context: int

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Blocks per column and per row."""
        return tuple(
            math.ceil(s / b) for s, b in zip(self.image_shape, self.block_shape, strict=True)
        )

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return self.grid_shape[0] * self.grid_shape[1]

    def block(self, index: int) -> Block:
        """The block at ``index`` (row by row)."""
        rows, cols = self.grid_shape
        if not 0 <= index < rows * cols:
            raise IndexError(f"block {index} is not in a plan of {rows * cols} blocks")
        gy, gx = divmod(index, cols)
        (size_y, size_x), (by, bx), m = self.image_shape, self.block_shape, self.overlap
        y0, x0 = gy * by, gx * bx
        y1, x1 = min(y0 + by, size_y), min(x0 + bx, size_x)
        extent = (max(y0 - m, 0), min(y1 + m, size_y), max(x0 - m, 0), min(x1 + m, size_x))
        return Block(index, (gy, gx), (y0, y1, x0, x1), extent)

    @property
    def blocks(self) -> list[Block]:
        """All blocks, row by row."""
        return [self.block(i) for i in range(self.n_blocks)]

    def seams(self) -> list[Seam]:
        """Every pair of edge or corner neighbours, with the strip they compare in."""
        rows, cols = self.grid_shape
        half = self.overlap // 2
        seams = []
        for index in range(self.n_blocks):
            gy, gx = divmod(index, cols)
            for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
                ny, nx = gy + dy, gx + dx
                if not (0 <= ny < rows and 0 <= nx < cols):
                    continue
                a, b = self.block(index).core, self.block(ny * cols + nx).core
                box = (
                    max(a[0], b[0]) - half,
                    min(a[1], b[1]) + half,
                    max(a[2], b[2]) - half,
                    min(a[3], b[3]) + half,
                )
                box = _clip(box, self.image_shape)
                seams.append(Seam(index, ny * cols + nx, box))
        return seams

    def read_box(self, block: Block) -> Box:
        """The image pixels a block reads: its extent and context, clipped to the image."""
        c, (size_y, size_x) = self.context, self.image_shape
        y0, y1, x0, x1 = block.extent
        return (max(y0 - c, 0), min(y1 + c, size_y), max(x0 - c, 0), min(x1 + c, size_x))


def _clip(box: Box, shape: tuple[int, int]) -> Box:
    return (max(box[0], 0), min(box[1], shape[0]), max(box[2], 0), min(box[3], shape[1]))


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
    c = plan.context
    ry0, _, rx0, _ = plan.read_box(block)
    y0, y1, x0, x1 = block.extent
    ys = mirror_index(np.arange(y0 - c, y1 + c), plan.image_shape[0]) - ry0
    xs = mirror_index(np.arange(x0 - c, x1 + c), plan.image_shape[1]) - rx0
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
    c = plan.context
    predicted = predicted[:, c : predicted.shape[1] - c, c : predicted.shape[2] - c]
    labels, _ = instances.labels(np.ascontiguousarray(predicted))
    return core_first(labels, plan, block)


def core_first(labels: np.ndarray, plan: BlockPlan, block: Block) -> tuple[np.ndarray, int]:
    """Renumber an extent's labels: cells in the core ``1..n_core``, the others after."""
    core = labels[_local(block.core, block.extent)]
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


def _local(box: Box, frame: Box) -> tuple[slice, slice]:
    """Slices of ``box`` inside an array that covers ``frame``."""
    return slice(box[0] - frame[0], box[1] - frame[0]), slice(box[2] - frame[2], box[3] - frame[2])


def core_labels(labels: np.ndarray, block: Block) -> np.ndarray:
    """The core part of an extent's labels."""
    return labels[_local(block.core, block.extent)]


def seam_labels(
    labels: np.ndarray, block: Block, seams: list[Seam]
) -> dict[tuple[int, int], np.ndarray]:
    """The extent's labels in every seam strip this block takes part in."""
    return {
        (seam.first, seam.second): labels[_local(seam.box, block.extent)].copy()
        for seam in seams
        if block.index in (seam.first, seam.second)
    }


def iter_block_reads(image, plan: BlockPlan) -> Iterator[tuple[Block, np.ndarray]]:
    """Yield each block with the pixels it reads from ``image`` (numpy, dask or zarr)."""
    for block in plan.blocks:
        y0, y1, x0, x1 = plan.read_box(block)
        yield block, np.asarray(image[..., y0:y1, x0:x1])
