"""3D blocks of a volume with halos, and the block job both block routes run.

A ``(Z, Y, X)`` volume too large for memory is cut into 3D blocks
(:class:`~napari_unet.inference.blocks.BlockPlan`). Each block is segmented as
:func:`napari_unet.segment` segments a volume in memory: normalised by the whole
volume's percentiles, predicted by :func:`~napari_unet.inference.volumes.iter_predict_volume`
(the same method, zoom, denoising and spacing) on the block's read box, and split into
cells on its extent by the same 3D seeded watershed
(:meth:`~napari_unet.inference.instance_step.InstanceSettings.labels`);
:mod:`napari_unet.inference.stitching` then gives every cell crossing a seam in Z, Y or
X one id. The halos, per axis, in voxels of the volume:

- **overlap** (extent beyond the core: the watershed and the seam matching):
  :data:`~napari_unet.inference.blocks.OVERLAP_CELL_DIAMETERS` typical cell diameters,
  as for planes, the diameter converted to each axis by the voxel size, so that a cell
  crossing a core face lies whole in both blocks' extents;
- **context** (image read beyond the extent, for the network): :data:`VOLUME_CONTEXT`
  pixels of the (zoomed) planes the network sees, converted likewise. Overlap plus
  context are then at least the network's halo (92 px for depth 5) in the planes of every
  view, so a core's probabilities see as much real image as in memory; the outer part of
  the overlap sees at least :data:`VOLUME_CONTEXT` px, which for the XZ and YZ views in
  memory (mirrored rows, :data:`~napari_unet.inference.volumes.VIEW_PAD`) scores as the
  halo (docs/method.md).

Blocks are not bit-exact copies of the in-memory result (the resampling to isotropic
voxels starts at each read box); docs/benchmarks.md measures the agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_unet.inference.blocks import (
    OVERLAP_CELL_DIAMETERS,
    Block,
    BlockPlan,
    core_first,
    local_slices,
    plan_blocks,
    segment_block,
)
from napari_unet.inference.instance_step import InstanceSettings
from napari_unet.inference.volumes import iter_predict_volume, volume_instances, volume_zoom
from napari_unet.io import zarr_files as zarr_io
from napari_unet.io.spacing import ome_axes_and_spacing
from napari_unet.method.axes import DEFAULT_VOLUME_METHOD, check_spacing, is_volume
from napari_unet.method.images import normalize, percentile_normalization
from napari_unet.method.network import UNet
from napari_unet.models.metadata import model_object_size, model_percentiles
from napari_unet.runtime.progress import run_to_completion

#: Default core of a volume's block ``(Z, Y, X)``, voxels; chunks of the labels written.
#: Peak memory of one block: docs/benchmarks.md (Volumes).
DEFAULT_VOLUME_BLOCK = (64, 512, 512)
#: Pixels of real image, in the planes the network sees, read beyond a block's extent:
#: :data:`~napari_unet.inference.volumes.VIEW_PAD` (24) rounded up to the pooling grid.
VOLUME_CONTEXT = 32
#: Largest number of voxels read for a volume's percentiles (every k-th plane beyond).
VOLUME_PERCENTILE_SAMPLE = 2**24


def plan_volume_blocks(
    image_shape: tuple[int, int, int],
    model: UNet,
    spacing: tuple[float, float, float] | None = None,
    zoom: float = 1.0,
    block_shape: tuple[int, int, int] | int | None = None,
    overlap: tuple[int, int, int] | int | None = None,
) -> BlockPlan:
    """Place 3D blocks over a volume, with the halos of this module's docstring.

    Parameters
    ----------
    image_shape : (int, int, int)
        ``(Z, Y, X)``, voxels.
    model : UNet
        The network (its pooling factor and ``object_size``).
    spacing : (float, float, float), optional
        Voxel size ``(dz, dy, dx)``; default isotropic.
    zoom : float
        The model's object size over the volume's
        (:func:`~napari_unet.inference.volumes.volume_zoom`).
    block_shape : (int, int, int) or int, optional
        Core, voxels (Y and X rounded up to the pooling grid); default
        :data:`DEFAULT_VOLUME_BLOCK`, each side at most the volume's.
    overlap : (int, int, int) or int, optional
        Voxels each block's cells are found beyond its core; default
        ``OVERLAP_CELL_DIAMETERS`` cell diameters along each axis.

    Returns
    -------
    BlockPlan

    Raises
    ------
    ValueError
        If a shape or an overlap is not positive integers, one per axis.
    """
    p = model.pooling_factor
    dz, dy, dx = (1.0, 1.0, 1.0) if spacing is None else spacing
    per_y = (dy / dz, 1.0, dy / dx)  # one pixel along Y in voxels of each axis
    if block_shape is None:
        sides = zip(DEFAULT_VOLUME_BLOCK, image_shape, strict=False)
        block_shape = tuple(min(b, int(s)) for b, s in sides)
    if isinstance(block_shape, (int, np.integer)):
        block_shape = (int(block_shape),) * 3
    diameter = model_object_size(model) / zoom
    if overlap is None:
        overlap = tuple(math.ceil(OVERLAP_CELL_DIAMETERS * diameter * f) for f in per_y)
    if isinstance(overlap, (int, np.integer)):
        overlap = (int(overlap),) * 3
    for name, shape in (("image_shape", image_shape), ("block_shape", block_shape)):
        if len(shape) != 3 or any(int(s) != s or s < 1 for s in shape):
            raise ValueError(f"{name} must be three positive integers (Z, Y, X), got {shape!r}")
    if len(overlap) != 3 or any(isinstance(m, bool) or int(m) != m or m < 1 for m in overlap):
        raise ValueError(f"overlap must be positive numbers of voxels (Z, Y, X), got {overlap!r}")
    context = [math.ceil(VOLUME_CONTEXT / zoom * f) for f in per_y]

    def on_grid(values):  # Y and X on the pooling grid, as for planes
        return (int(values[0]), *(math.ceil(int(v) / p) * p for v in values[1:]))

    shape = tuple(int(s) for s in image_shape)
    return BlockPlan(shape, on_grid(block_shape), on_grid(overlap), on_grid(context))


def segment_volume_block(
    pixels: np.ndarray,
    plan: BlockPlan,
    block: Block,
    model: UNet,
    normalization: tuple[float, float],
    instances: InstanceSettings,
    *,
    spacing: tuple[float, float, float] | None = None,
    method: str = DEFAULT_VOLUME_METHOD,
    zoom: float = 1.0,
    **options,
) -> tuple[np.ndarray, int]:
    """Cells on one 3D block's extent, numbered with the core's cells first.

    Parameters
    ----------
    pixels : np.ndarray
        The volume in ``plan.read_box(block)``, ``(Z, Y, X)``.
    plan, block : BlockPlan, Block
        Where the block lies.
    model : UNet
        The 2D network.
    normalization : (float, float)
        ``(low, high)`` of the whole volume (:func:`image_normalization`).
    instances : InstanceSettings
        The volume's instance step (:func:`~napari_unet.inference.volumes.volume_instances`).
    spacing, method, zoom
        As :func:`~napari_unet.inference.volumes.iter_predict_volume`.
    **options
        ``tile_shape``, ``batch_size``, ``device``, ``precision``.

    Returns
    -------
    labels : np.ndarray
        int32 ``(extent Z, extent Y, extent X)``; ids ``1..n_core`` have voxels in the core.
    n_core : int
    """
    predicted = run_to_completion(
        iter_predict_volume(
            normalize(pixels, *normalization), model, spacing=spacing, method=method,
            zoom=zoom, output_classes=instances.output_classes, **options,
        )
    )  # fmt: skip
    inside = local_slices(block.extent, plan.read_box(block))
    labels, _ = instances.labels(np.ascontiguousarray(predicted[(slice(None), *inside)]), spacing)
    return core_first(labels, plan, block)


def open_block_image(image, axes: str | None = None, spacing=None):
    """Open a plane or a volume for block-wise reading; axes and spacing from OME-Zarr.

    Parameters
    ----------
    image : str, os.PathLike or array-like
        As :func:`napari_unet.io.zarr_files.open_image`.
    axes : str, optional
        ``"YX"`` or ``"ZYX"`` (axes of length 1 besides them are dropped). ``None``: the
        OME-Zarr image's own axes without those of length 1, else ``"YX"``.
    spacing : sequence of float, optional
        Voxel size ``(dz, dy, dx)``; ``None``: the OME-Zarr ``scale``, else isotropic.

    Returns
    -------
    plane : napari_unet.io.zarr_files.Plane
        ``(Y, X)`` or ``(Z, Y, X)``.
    ome : napari_unet.io.zarr_files.OmeImage or None
    spacing : tuple of float or None
        The volume's voxel size (``None`` for a plane, or isotropic).

    Raises
    ------
    ValueError
        For axes other than one plane or one volume, axes or spacing that do not fit the
        image, or as :func:`~napari_unet.io.zarr_files.open_image`.
    """
    plane, ome = zarr_io.open_image(image, spatial=None)  # all axes, checked below
    stored = None
    if ome is not None:
        letters, stored = ome_axes_and_spacing(ome.axes, ome.transforms)
        if axes is None and len(letters) == len(plane.shape):
            kept = "".join(
                a for a, s in zip(letters, plane.shape, strict=True) if s > 1 or a in "YX"
            )
            axes = kept if kept in ("YX", "ZYX") else None
    axes = "YX" if axes is None else str(axes).upper()
    if axes not in ("YX", "ZYX"):
        raise ValueError(
            f"block by block, one plane (YX) or one volume (ZYX) is segmented, not {axes!r}: "
            "segment one time point or channel at a time"
        )
    plane, _ = zarr_io.open_image(plane.array, spatial=len(axes))
    if not is_volume(axes):
        return plane, ome, None
    if spacing is None and stored is not None and len(stored) == 3:
        spacing = stored
    return plane, ome, check_spacing(spacing, axes)


def image_normalization(image, model: UNet, volume: bool) -> tuple[float, float]:
    """``(low, high)`` of a whole plane or volume: the model's percentiles of a sample.

    A plane as :func:`~napari_unet.method.images.percentile_normalization`; a volume
    from every k-th plane, at most :data:`VOLUME_PERCENTILE_SAMPLE` voxels (all of them,
    as in memory, when it is smaller).
    """
    step = math.ceil(math.prod(image.shape) / VOLUME_PERCENTILE_SAMPLE)
    if volume and step > 1:
        image = image[::step]
    return percentile_normalization(image, model_percentiles(model))


@dataclass(frozen=True)
class BlockJob:
    """How every block of one image is segmented; picklable, sent to the workers.

    Attributes
    ----------
    plan : BlockPlan
        The blocks (2D or 3D).
    normalization : (float, float)
        ``(low, high)`` of the whole image.
    instances : InstanceSettings
        The instance step.
    options : dict
        ``tile_shape``, ``batch_size``, ``device``, ``precision``.
    spacing : tuple of float or None
        A volume's voxel size.
    method : str or None
        A volume's method (:data:`~napari_unet.method.axes.VOLUME_METHODS`); ``None``
        for a plane.
    zoom : float
        A volume's zoom (:func:`~napari_unet.inference.volumes.volume_zoom`).
    """

    plan: BlockPlan
    normalization: tuple[float, float]
    instances: InstanceSettings
    options: dict
    spacing: tuple[float, ...] | None = None
    method: str | None = None
    zoom: float = 1.0

    def segment(self, pixels: np.ndarray, block: Block, model: UNet) -> tuple[np.ndarray, int]:
        """Labels of a block's extent (core's cells first) and the number in its core."""
        if self.method is None:
            return segment_block(
                pixels, self.plan, block, model, self.normalization, self.instances,
                **self.options,
            )  # fmt: skip
        return segment_volume_block(
            pixels, self.plan, block, model, self.normalization, self.instances,
            spacing=self.spacing, method=self.method, zoom=self.zoom, **self.options,
        )  # fmt: skip


def block_job(
    plane,
    model: UNet,
    *,
    spacing=None,
    volume_method: str = DEFAULT_VOLUME_METHOD,
    block_shape=None,
    overlap=None,
    threshold: float | None = None,
    min_size: int | None = None,
    object_size: float | None = None,
    normalization: tuple[float, float] | None = None,
    **options,
) -> BlockJob:
    """The :class:`BlockJob` of a plane or volume opened by :func:`open_block_image`.

    ``normalization`` defaults to :func:`image_normalization` (read here); the other
    arguments are those of :func:`~napari_unet.inference.blocks.plan_blocks` (a plane;
    block side default :data:`~napari_unet.inference.blocks.DEFAULT_BLOCK_SIDE`) or
    :func:`plan_volume_blocks` (a volume) and of
    :meth:`~napari_unet.inference.instance_step.InstanceSettings.for_model`.
    """
    instances = InstanceSettings.for_model(model, threshold, min_size, object_size)
    volume = plane.ndim == 3
    if normalization is None:
        normalization = image_normalization(plane, model, volume)
    if not volume:
        plan = plan_blocks(plane.shape, model, block_shape, overlap)
        return BlockJob(plan, normalization, instances, options)
    zoom = volume_zoom(model, object_size)
    plan = plan_volume_blocks(plane.shape, model, spacing, zoom, block_shape, overlap)
    instances = volume_instances(instances, zoom)
    return BlockJob(plan, normalization, instances, options, spacing, volume_method, zoom)
