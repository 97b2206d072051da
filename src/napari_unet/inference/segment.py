"""One call from an image to a label image: normalise, overlap-tile predict, split cells."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from napari_unet.inference.instance_step import InstanceSettings
from napari_unet.method.axes import (
    DEFAULT_VOLUME_METHOD,
    RGB_AXIS,
    check_axes,
    check_spacing,
    check_volume_method,
    is_volume,
)
from napari_unet.method.images import (
    image_layout,
    iter_planes,
    percentile_normalization,
)
from napari_unet.method.network import UNet
from napari_unet.method.uncertainty import pixel_uncertainty
from napari_unet.models.files import load_model
from napari_unet.models.metadata import model_percentiles
from napari_unet.runtime.devices import resolved_names
from napari_unet.runtime.progress import map_progress, run_to_completion

__all__ = ["InstanceSettings", "SegmentProgress", "SegmentResult", "iter_segment", "segment"]


@dataclass(frozen=True)
class SegmentProgress:
    """Progress of :func:`iter_segment`.

    Attributes
    ----------
    plane_index, n_planes : int
        Plane (or, when ``unit`` is ``"volume"``, volume) being processed (1-based) and
        their number.
    tile_index, n_tiles : int
        Tiles done in this plane (1-based) and tiles per plane; for a volume, planes of
        its views done and their number.
    seconds : float
        Wall time since the start.
    device, precision : str
        Where and in which precision the network runs.
    unit : str
        ``"plane"``, or ``"volume"`` for images with a ``Z`` axis.
    """

    plane_index: int
    n_planes: int
    tile_index: int
    n_tiles: int
    seconds: float
    device: str
    precision: str
    unit: str = "plane"

    @property
    def fraction(self) -> float:
        """Fraction of the whole job done, in [0, 1]."""
        return ((self.plane_index - 1) + self.tile_index / max(self.n_tiles, 1)) / max(
            self.n_planes, 1
        )


@dataclass(frozen=True)
class SegmentResult:
    """Result of :func:`iter_segment`.

    Attributes
    ----------
    labels : np.ndarray
        int32 label image, the input's shape without RGB axis; 0 = background,
        1..N = cells (numbered per plane for stacks; with a ``Z`` axis one id per cell
        across the planes of each volume).
    probabilities : np.ndarray
        float32 foreground (cell) probability, same shape (for a three-class model
        the sum of cell interior and cell boundary).
    device, precision : str
        Where and in which precision the network ran.
    seconds : float
        Wall time.
    uncertainty : np.ndarray or None
        float32 per-pixel uncertainty in [0, 1], same shape
        (:func:`~napari_unet.method.uncertainty.pixel_uncertainty`), when asked for.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    device: str
    precision: str
    seconds: float
    uncertainty: np.ndarray | None = None


def _resolve_model(model) -> UNet:
    if model is None:
        return load_model()
    if isinstance(model, UNet):
        return model
    return load_model(model)


def iter_segment(
    image,
    model: UNet | str | None = None,
    *,
    tile_shape: tuple[int, int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    rgb: bool | None = None,
    invert_bright_background: bool = True,
    threshold: float | None = None,
    min_size: int | None = None,
    object_size: float | None = None,
    normalization: tuple[float, float] | None = None,
    axes: str | None = None,
    spacing: tuple[float, ...] | None = None,
    volume_method: str = DEFAULT_VOLUME_METHOD,
    uncertainty: bool = False,
) -> Generator[SegmentProgress, None, SegmentResult]:
    """Segment cells: a generator of progress records that returns the labels.

    Each 2D plane is normalised by the percentiles stored in the model, predicted
    with the overlap-tile strategy (Ronneberger et al. 2015, Fig. 2) and split into
    cells by the instance step of the model's output: seeded watershed for a
    three-class model (:func:`~napari_unet.method.instances.boundary_watershed`), threshold
    and connected components for the paper's two-class model
    (:func:`~napari_unet.method.instances.probabilities_to_labels`).

    Parameters
    ----------
    image : array-like
        ``(Y, X)``, ``(Y, X, 3|4)`` RGB(A), or a stack ``(..., Y, X)`` processed plane
        by plane (or as volumes, see ``axes``); any numeric dtype; numpy, dask or zarr
        (planes read tile by tile; a volume is read whole).
    model : UNet, str or path, optional
        A network, a model file, or a shipped model name; ``None`` = shipped default.
    tile_shape : (int, int), optional
        Spatial input tile shape in pixels; automatic from free memory when ``None``.
    batch_size : int, optional
        Tiles per forward pass; automatic when ``None``.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    precision : str
        ``"auto"`` (fastest the device supports), ``"float32"`` (reference),
        ``"bfloat16"`` or ``"float16"``.
    rgb : bool, optional
        Whether the last axis is RGB; guessed when ``None``.
    invert_bright_background : bool
        RGB only: invert a plane with a bright background (brightfield, H&E) so that
        cells are bright, as in the fluorescence images of the default model
        (:func:`~napari_unet.method.images.rgb_plane_to_gray`).
    threshold : float, optional
        Foreground probability threshold; default from the model
        (:data:`~napari_unet.method.instances.DEFAULT_THRESHOLD`).
    min_size : int, optional
        Smallest cell in pixels; default from the model (``DEFAULT_MIN_SIZE``), or derived from
        ``object_size`` when that is given
        (:func:`~napari_unet.method.instances.min_size_for`).
    object_size : float, optional
        Typical cell diameter, pixels; default: the one stored in the model. For a
        volume it also rescales Y and X so that cells have the model's object size
        (undone on the result).
    normalization : (float, float), optional
        ``(low, high)`` intensities mapped to 0 and 1 in every plane; default: the
        model's percentiles of each plane. The live preview passes those of the whole
        plane when it segments a crop of it. A volume is normalised as a whole (the
        model's percentiles of all its planes).
    axes : str, optional
        The image's axes, one of :data:`~napari_unet.method.axes.AXES_CHOICES` with an
        optional trailing ``"C"`` for RGB (:mod:`napari_unet.method.axes`). With a ``Z``
        axis (``"ZYX"``, ``"TZYX"``) each volume is segmented into 3D cells, one id per
        cell across its planes (time points one by one); ``"TYX"`` and ``"CYX"`` are
        planes segmented one by one. ``None``: every leading axis is a stack of planes.
    spacing : sequence of float, optional
        Voxel size ``(dz, dy, dx)`` (pixel size ``(dy, dx)`` without ``Z``) in any one
        unit: only ratios matter. Default isotropic. A volume's watershed, smoothing and
        smallest cell follow it.
    volume_method : str
        How a volume is predicted, one of
        :data:`~napari_unet.method.axes.VOLUME_METHODS`
        (:func:`~napari_unet.inference.volumes.iter_predict_volume`).
    uncertainty : bool
        Also return the per-pixel uncertainty (from the same probabilities).

    Yields
    ------
    SegmentProgress

    Returns
    -------
    SegmentResult

    Raises
    ------
    ValueError
        For empty images, NaN values, wrong rank, an unknown device or precision,
        an object size that is not a finite number >= 1, ``axes`` that do not match the
        image, a ``spacing`` with 0, negative, NaN or infinite values or not one value
        per spatial axis, or an unknown volume method.
    FileNotFoundError
        If the model file does not exist.
    """
    from napari_unet.method.tiling import iter_predict_tiled

    started = time.perf_counter()
    shape = tuple(getattr(image, "shape", np.shape(image)))
    checked_axes = check_axes(axes, shape, rgb)
    if checked_axes is not None:
        rgb = axes.upper().endswith("X" + RGB_AXIS)
    spacing = check_spacing(spacing, checked_axes)
    check_volume_method(volume_method)
    layout = image_layout(image, rgb)
    net = _resolve_model(model)
    percentiles = model_percentiles(net)
    instances = InstanceSettings.for_model(net, threshold, min_size, object_size)
    if is_volume(checked_axes):
        from napari_unet.inference.volumes import iter_segment_volumes

        labels, probabilities, used = yield from iter_segment_volumes(
            image, layout, net, instances,
            spacing=spacing, method=volume_method, object_size=object_size,
            percentiles=percentiles, normalization=normalization,
            invert_bright_background=invert_bright_background,
            progress=lambda number, n_volumes, tile: SegmentProgress(
                number, n_volumes, tile.tile_index, tile.n_tiles,
                time.perf_counter() - started, tile.device, tile.precision, "volume",
            ),
            tile_shape=tile_shape, batch_size=batch_size, device=device, precision=precision,
        )  # fmt: skip
        return SegmentResult(labels, probabilities, *used, time.perf_counter() - started)
    unsure = None
    if layout.leading_shape:  # a stack: planes are written into these
        labels = np.zeros(layout.labels_shape, np.int32)
        probabilities = np.zeros(layout.labels_shape, np.float32)
        unsure = np.zeros(layout.labels_shape, np.float32) if uncertainty else None
    used_device, used_precision = resolved_names(device, precision)
    for plane_number, (index, plane) in enumerate(
        iter_planes(image, layout, invert_bright_background), start=1
    ):
        low, high = normalization or percentile_normalization(plane, percentiles)
        tiles = iter_predict_tiled(
            plane,
            net,
            normalization=(low, high),
            tile_shape=tile_shape,
            batch_size=batch_size,
            device=device,
            precision=precision,
            output_classes=instances.output_classes,
        )

        def record(tile, plane_number=plane_number) -> SegmentProgress:
            seconds = time.perf_counter() - started
            return SegmentProgress(
                plane_number,
                layout.n_planes,
                tile.tile_index,
                tile.n_tiles,
                seconds,
                tile.device,
                tile.precision,
            )

        predicted = yield from map_progress(tiles, record)
        plane_labels, foreground = instances.labels(predicted)
        plane_unsure = None
        if uncertainty:
            plane_unsure = pixel_uncertainty(
                predicted, instances.output_classes, net.config.n_classes
            )
        del predicted
        if layout.leading_shape:
            probabilities[index], labels[index] = foreground, plane_labels
            if uncertainty:
                unsure[index] = plane_unsure
        else:  # one plane: no copy of the (possibly huge) results
            probabilities, labels, unsure = foreground, plane_labels, plane_unsure
    seconds = time.perf_counter() - started
    return SegmentResult(labels, probabilities, used_device, used_precision, seconds, unsure)


def segment(image, model: UNet | str | None = None, **options) -> np.ndarray:
    """Segment cells in an image with a U-Net; returns the label image.

    Parameters
    ----------
    image : array-like
        See :func:`iter_segment`.
    model : UNet, str or path, optional
        ``None`` uses the shipped default nuclei model.
    **options
        Passed to :func:`iter_segment` (``tile_shape``, ``batch_size``, ``device``,
        ``precision``, ``rgb``, ``threshold``, ``min_size``, ``object_size``,
        ``normalization``, ``axes``, ``spacing``, ``volume_method``).

    Returns
    -------
    np.ndarray
        int32 labels, the input's shape without RGB axis; 0 = background. With
        ``axes="ZYX"`` one id per cell across planes (3D instances).
    """
    return run_to_completion(iter_segment(image, model, **options)).labels
