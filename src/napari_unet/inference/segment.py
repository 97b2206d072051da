"""One call from an image to a label image: normalise, overlap-tile predict, split cells."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from napari_unet.method.annotation import DEFAULT_GAP
from napari_unet.method.images import (
    image_layout,
    iter_planes,
    percentile_normalization,
)
from napari_unet.method.instances import boundary_watershed, min_size_for, probabilities_to_labels
from napari_unet.method.network import UNet
from napari_unet.method.object_size import check_object_size
from napari_unet.method.uncertainty import pixel_uncertainty
from napari_unet.models.files import load_model
from napari_unet.models.metadata import (
    DEFAULT_MIN_SIZE,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_THRESHOLD,
    model_percentiles,
)
from napari_unet.runtime.devices import resolved_names
from napari_unet.runtime.progress import map_progress, run_to_completion


@dataclass(frozen=True)
class SegmentProgress:
    """Progress of :func:`iter_segment`.

    Attributes
    ----------
    plane_index, n_planes : int
        Plane being processed (1-based) and number of planes.
    tile_index, n_tiles : int
        Tiles done in this plane (1-based) and tiles per plane.
    seconds : float
        Wall time since the start.
    device, precision : str
        Where and in which precision the network runs.
    """

    plane_index: int
    n_planes: int
    tile_index: int
    n_tiles: int
    seconds: float
    device: str
    precision: str

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
        1..N = cells (numbered per plane for stacks).
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


@dataclass(frozen=True)
class InstanceSettings:
    """How a model's probabilities become cells: its instance step and thresholds.

    Attributes
    ----------
    three_class : bool
        Seeded watershed (:func:`~napari_unet.method.instances.boundary_watershed`) for a
        three-class model; threshold and connected components
        (:func:`~napari_unet.method.instances.probabilities_to_labels`) for two classes.
    threshold : float
        Foreground probability threshold.
    min_size : int
        Smallest cell, pixels.
    seed_threshold : float
        Interior probability that seeds a cell (three classes).
    grow : int
        Pixels a two-class model's cells are grown back over separation gaps (the
        whole gap: twice the model's ``gap``).
    smoothing : float
        Gaussian smoothing (pixels) of the probabilities before the watershed
        (three classes); 0: none.
    fill_holes : bool
        Fill holes inside cells (three classes).
    """

    three_class: bool
    threshold: float
    min_size: int
    seed_threshold: float
    grow: int
    smoothing: float = 0.0
    fill_holes: bool = False

    @classmethod
    def for_model(
        cls,
        model: UNet,
        threshold: float | None = None,
        min_size: int | None = None,
        object_size: float | None = None,
    ) -> InstanceSettings:
        """The settings stored in ``model``, overridden by the arguments given.

        Raises
        ------
        ValueError
            If ``object_size`` is not a finite number >= 1.
        """
        metadata = model.metadata or {}
        post = metadata.get("postprocessing", {})
        threshold = float(
            post.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold
        )
        if min_size is None:
            if object_size is not None:
                min_size = min_size_for(check_object_size(object_size))
            else:
                min_size = int(post.get("min_size", DEFAULT_MIN_SIZE))
        # Cells lost ``gap`` px per side to the separation border: grow back across 2 * gap.
        grow = 2 * int(metadata.get("gap", DEFAULT_GAP))
        seed_threshold = float(post.get("seed_threshold", DEFAULT_SEED_THRESHOLD))
        return cls(
            model.config.n_classes == 3,
            threshold,
            int(min_size),
            seed_threshold,
            grow,
            float(post.get("smoothing", 0.0)),
            bool(post.get("fill_holes", False)),
        )

    def describe(self) -> str:
        """These settings in one line of plain words."""
        if not self.three_class:
            return f"foreground > {self.threshold:g} · smallest cell {self.min_size} px"
        text = (
            f"foreground > {self.threshold:g} · seeds > {self.seed_threshold:g} · "
            f"smallest cell {self.min_size} px"
        )
        if self.smoothing:
            text += f" · outlines smoothed {self.smoothing:g} px"
        if self.fill_holes:
            text += " · holes filled"
        return text

    def postprocessing(self) -> dict:
        """These settings as a model's ``postprocessing`` metadata."""
        post = {"threshold": self.threshold, "min_size": self.min_size}
        if self.three_class:
            post.update(
                seed_threshold=self.seed_threshold,
                smoothing=self.smoothing,
                fill_holes=self.fill_holes,
            )
        return post

    @property
    def output_classes(self) -> tuple[int, ...]:
        """Classes the instance step needs (background and interior, or the cell class)."""
        return (0, 1) if self.three_class else (1,)

    def labels(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells and foreground probability of one plane.

        Parameters
        ----------
        predicted : np.ndarray
            float32 ``(len(output_classes), Y, X)`` probabilities of
            :attr:`output_classes`.

        Returns
        -------
        labels, foreground : np.ndarray
            int32 ``(Y, X)`` labels (0 = background) and float32 foreground probability.
        """
        if self.three_class:
            labels = boundary_watershed(
                predicted[0],
                predicted[1],
                self.threshold,
                self.min_size,
                self.seed_threshold,
                smoothing=self.smoothing,
                fill_holes=self.fill_holes,
            )
            return labels, 1.0 - predicted[0]
        foreground = predicted[0]
        return probabilities_to_labels(
            foreground, self.threshold, self.min_size, self.grow
        ), foreground


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
        by plane; any numeric dtype; numpy, dask or zarr (read tile by tile).
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
        Typical cell diameter, pixels; default: the one stored in the model.
    normalization : (float, float), optional
        ``(low, high)`` intensities mapped to 0 and 1 in every plane; default: the
        model's percentiles of each plane. The live preview passes those of the whole
        plane when it segments a crop of it.
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
        or an object size that is not a finite number >= 1.
    FileNotFoundError
        If the model file does not exist.
    """
    from napari_unet.method.tiling import iter_predict_tiled

    started = time.perf_counter()
    layout = image_layout(image, rgb)
    net = _resolve_model(model)
    percentiles = model_percentiles(net)
    instances = InstanceSettings.for_model(net, threshold, min_size, object_size)
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
        ``precision``, ``rgb``, ``threshold``, ``min_size``, ``object_size``).

    Returns
    -------
    np.ndarray
        int32 labels, the input's shape without RGB axis; 0 = background.
    """
    return run_to_completion(iter_segment(image, model, **options)).labels
