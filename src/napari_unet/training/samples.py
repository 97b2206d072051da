"""Training samples: annotated planes turned into targets, weights and random tiles.

Each annotated 2D plane is converted once into a normalised image, its class target
and its eq. 2 weight map (Ronneberger et al. 2015); training tiles are then drawn
around annotated pixels and augmented (Sec. 3.1) by one sampling grid each.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch.utils.data

from napari_unet.method.annotation import FIRST_CELL
from napari_unet.method.augmentation import (
    augment_intensity,
    crop_grid,
    sampling_grid,
    warp_image,
    warp_labels,
)
from napari_unet.method.images import image_layout, iter_planes, normalize, percentile_normalization
from napari_unet.method.weight_map import training_target, training_weight_map
from napari_unet.method.weight_map_3d import volume_training_weights
from napari_unet.training.volume_views import prepared_volume, side_views
from napari_unet.training.volumes import check_painted


@dataclass
class Sample:
    """One annotated plane ready for tile sampling.

    Attributes
    ----------
    image : np.ndarray
        ``(C, Y, X)`` float32, normalised.
    target : np.ndarray
        ``(Y, X)`` uint8 class per pixel.
    weights : np.ndarray
        ``(Y, X)`` float32 eq. 2 weights, 0 where not annotated.
    annotated : np.ndarray
        Flat indices of the annotated pixels.
    origin : tuple or None
        ``(image number, plane index)`` of a 2D plane; ``None`` for a volume's planes
        and views.
    """

    image: np.ndarray
    target: np.ndarray
    weights: np.ndarray
    annotated: np.ndarray
    origin: tuple | None = None


def check_pairs(images: Sequence, annotations: Sequence) -> list:
    """Check image/annotation pairs; return ``(image, annotation, layout)`` triples.

    Raises
    ------
    ValueError
        For no images, a different number of annotations, an image that is not a
        valid image, or an annotation whose shape is not the image's.
    """
    if len(images) == 0:
        raise ValueError("no training images given")
    if len(images) != len(annotations):
        raise ValueError(
            f"got {len(images)} images but {len(annotations)} annotations; "
            "give one annotation per image"
        )
    pairs = []
    for n, (image, annotation) in enumerate(zip(images, annotations, strict=True)):
        layout = image_layout(image)
        annotation = np.asarray(annotation)
        if annotation.shape != layout.labels_shape:
            raise ValueError(
                f"annotation {n} has shape {annotation.shape} but image {n} has shape "
                f"{tuple(image.shape)} (labels must have shape {layout.labels_shape})"
            )
        pairs.append((image, annotation, layout))
    return pairs


def prepare_samples(
    images: Sequence,
    annotations: Sequence,
    config,
    dense: bool,
    n_classes: int,
    volumes: Sequence | None = None,
) -> list[Sample]:
    """Validate image/annotation pairs and convert every annotated plane once.

    Parameters
    ----------
    images, annotations : sequence of array-like
        As for :func:`napari_unet.training.loop.train`.
    config : TrainingConfig
        Supplies ``percentiles``, ``gap``, ``boundary_width``, ``w0``, ``sigma`` and
        ``class_weights``.
    dense : bool
        Annotations are dense ground truth.
    n_classes : {2, 3}
        Target of the network being trained.
    volumes : sequence, optional
        Per image: ``None`` (its planes are independent 2D images), or the voxel size
        ``(dz, dy, dx)`` of a volume (``(..., Z, Y, X)``, e.g. ``(1, 1, 1)``): its
        painted XY planes are the samples, weighted by the 3D eq. 2 map
        (:mod:`napari_unet.method.weight_map_3d`), and their rows in the volume's XZ and
        YZ views (:mod:`napari_unet.training.volume_views`).

    Returns
    -------
    list of Sample

    Raises
    ------
    ValueError
        For empty or mismatched inputs, a volume with nothing painted, or annotations
        without an annotated pixel, a background or a cell anywhere.
    """
    samples = []
    pairs = check_pairs(images, annotations)
    for n, (image, annotation, layout) in enumerate(pairs):
        spacing = volumes[n] if volumes is not None else None
        weighted, painted = {}, {}  # plane index -> targets; volume index -> VolumeTargets
        if spacing is None:
            weighted = _plane_targets(annotation, layout, config, dense, n_classes)
        else:
            painted = _volume_targets(n, annotation, layout, spacing, config, dense, n_classes)
        for index, plane in iter_planes(image, layout):
            if index not in weighted:
                continue  # an unannotated plane of a stack (a volume's planes: below)
            parts, weights = weighted[index]
            low, high = percentile_normalization(plane, config.percentiles)
            plane = normalize(plane, low, high)[None]
            annotated = np.flatnonzero(weights > 0)
            samples.append(Sample(plane, parts.classes, weights, annotated, (n, index)))
        for outer, targets in painted.items():  # painted XY planes, XZ and YZ views
            volume = prepared_volume(
                np.stack([p for i, p in iter_planes(image, layout) if i[:-1] == outer]),
                spacing,
                config.percentiles,
            )
            for z, parts in sorted(targets.targets.items()):
                weights = targets.weights[z]
                plane = volume[z][None]
                samples.append(Sample(plane, parts.classes, weights, np.flatnonzero(weights > 0)))
            for view in side_views(volume, targets, spacing):
                samples.append(Sample(*view, np.flatnonzero(view[2] > 0)))
    if not samples or not any(len(s.annotated) for s in samples):
        raise ValueError(
            "no annotated pixel: paint background (label 1) and cells (labels 2, 3, …)"
        )
    has_cell = any((s.target.ravel()[s.annotated] != 0).any() for s in samples)
    has_background = any((s.target.ravel()[s.annotated] == 0).any() for s in samples)
    if not has_cell:
        raise ValueError(
            f"the annotation has no cell (labels >= {1 if dense else FIRST_CELL}): "
            "paint at least one cell"
        )
    if not has_background:
        raise ValueError(
            "the annotation has no background (label 1): paint some background so the "
            "network learns what is not a cell"
        )
    return samples


def _plane_targets(annotation, layout, config, dense, n_classes) -> dict:
    """Plane index to (target, 2D weight map), for every annotated plane."""
    weighted = {}
    for index in np.ndindex(*layout.leading_shape):
        labels = annotation[index] if index else annotation
        if dense or labels.any():
            weighted[index] = training_weight_map(labels, config, dense, n_classes)
    return weighted


def _volume_targets(n, annotation, layout, spacing, config, dense, n_classes) -> tuple:
    """The painted volumes of a volume image, by volume index (``()`` for ``ZYX``).

    Each is a :class:`~napari_unet.method.weight_map_3d.VolumeTargets`.
    """
    if len(layout.leading_shape) < 1:
        raise ValueError(
            f"image {n} is one plane of shape {layout.spatial_shape}, not a volume (Z, Y, X)"
        )
    check_painted(annotation, f"volume {n}", dense)
    painted = {}
    for outer in np.ndindex(*layout.leading_shape[:-1]):  # e.g. the time points of TZYX
        volume = annotation[outer] if outer else annotation
        if not dense and not volume.any():
            continue  # a time point never painted
        painted[outer] = volume_training_weights(volume, config, spacing, dense, n_classes)
    return painted


def random_batch(
    samples: list[Sample],
    halo: int,
    tile_shape: tuple[int, int],
    batch_size: int,
    augmentation,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random augmented training tiles centred on annotated pixels.

    Parameters
    ----------
    samples : list of Sample
        Annotated planes; each tile's plane is drawn in proportion to its annotated
        pixels.
    halo : int
        Pixels per side that the network's output is smaller than its input.
    tile_shape : (int, int)
        Valid input tile shape, pixels.
    batch_size : int
        Tiles in the batch.
    augmentation : AugmentationConfig or None
        ``None``: plain crops.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    tuple of np.ndarray
        Inputs ``(N, C, H, W)`` float32, targets ``(N, h, w)`` uint8 and weights
        ``(N, h, w)`` float32, with ``h = H - 2 * halo``.
    """
    sizes = np.array([len(s.annotated) for s in samples], float)
    xs, ts, ws = [], [], []
    for _ in range(batch_size):
        s = samples[rng.choice(len(samples), p=sizes / sizes.sum())]
        center = np.unravel_index(s.annotated[rng.integers(len(s.annotated))], s.target.shape)
        grid = sampling_grid((float(center[0]), float(center[1])), tile_shape, augmentation, rng)
        x = warp_image(s.image, grid)
        if augmentation is not None:
            x = augment_intensity(x, augmentation, rng)
        inner = crop_grid(grid, halo)
        xs.append(x)
        ts.append(warp_labels(s.target, inner))
        ws.append(warp_labels(s.weights, inner, fill=0.0))
    return np.stack(xs), np.stack(ts), np.stack(ws)


def prepare_validation(pairs, config, dense: bool, n_classes: int) -> list:
    """Per validation pair, once: (image, normalisation, truth, annotated mask).

    ``truth`` is the foreground (any cell class) of the pair's target.
    """
    prepared = []
    for n, (image, annotation) in enumerate(pairs):
        layout, annotation = image_layout(image), np.asarray(annotation)
        if layout.leading_shape or layout.rgb or annotation.shape != layout.spatial_shape:
            raise ValueError(
                f"validation pair {n}: image of shape {tuple(np.shape(image))}, annotation of "
                f"shape {annotation.shape}; give a 2D image (Y, X) and an annotation of its shape"
            )
        parts = training_target(annotation, config, dense, n_classes)
        normalization = percentile_normalization(image, config.percentiles)
        prepared.append((image, normalization, (parts.classes != 0) & parts.mask, parts.mask))
    return prepared


def validation_score(model, prepared: list, device) -> float:
    """Foreground IoU on the annotated pixels of validation pairs (see prepare_validation)."""
    from napari_unet.method.tiling import predict_tiled

    intersection = union = 0
    for image, normalization, truth, mask in prepared:
        background = predict_tiled(
            image,
            model,
            normalization=normalization,
            device=device,
            precision="float32",
            output_classes=(0,),
        )[0]
        predicted = (background < 0.5) & mask
        intersection += int((predicted & truth).sum())
        union += int((predicted | truth).sum())
    return intersection / union if union else 1.0


class _TileStream(torch.utils.data.IterableDataset):
    """Endless random batches for a ``torch.utils.data.DataLoader`` worker."""

    def __init__(self, args: tuple, seed: int):
        super().__init__()
        self.args, self.seed = args, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            yield random_batch(*self.args, rng)


def batches_ahead(device) -> bool:
    """Whether a helper thread should make the next batch while a step runs on ``device``.

    Yes on a GPU, and on a CPU with a core that PyTorch's threads leave free. Not when
    PyTorch's threads take every core: its OpenMP team waits at every operation's barrier
    for a thread the helper took the core from (docs/benchmarks.md; a 2-core CPU), which
    costs more than the ~12 ms of a default batch made in line.
    """
    if torch.device(device).type != "cpu":
        return True
    return (os.cpu_count() or 1) > torch.get_num_threads()


class BatchSource:
    """Random training batches (:func:`random_batch`), made ahead of the step that needs them.

    With ``workers == 0`` one helper thread makes the next batch while the training step
    runs on the current one (NumPy and SciPy release the GIL in the interpolation, as
    PyTorch does in its kernels), so the step never waits for augmentation it could
    overlap with. On a GPU a training step takes a few milliseconds, while augmenting a
    batch on one CPU core takes tens: with ``workers > 0`` a
    ``torch.utils.data.DataLoader`` runs that many processes that prepare batches ahead.
    Batches are reproducible for a given seed and number of workers (the thread draws
    from ``rng`` in order; each worker process draws from its own seeded generator, the
    loader takes them in turn).

    Parameters
    ----------
    samples, halo, tile_shape, batch_size, augmentation
        As for :func:`random_batch`.
    rng : numpy.random.Generator
        Source of the batches (``workers == 0``) or of the workers' seed.
    workers : int
        Worker processes; 0: one batch made ahead on a thread of this process.
    ahead : bool
        With ``workers == 0``: make the next batch ahead (True) or on demand in the
        calling thread (False).
    """

    def __init__(
        self, samples, halo, tile_shape, batch_size, augmentation, rng, workers=0, ahead=True
    ):
        self._args = (samples, halo, tile_shape, batch_size, augmentation)
        self._rng = rng
        self._batches = None
        self._thread = self._pending = None
        if workers > 0:
            loader = torch.utils.data.DataLoader(
                _TileStream(self._args, int(rng.integers(2**63 - 1))),
                batch_size=None,
                num_workers=workers,
                prefetch_factor=2,
            )
            self._batches = iter(loader)
        elif ahead:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "napari-unet-batches")

    def _make(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return random_batch(*self._args, self._rng)

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next batch: inputs, targets and weights (see :func:`random_batch`)."""
        if self._batches is not None:
            return tuple(np.asarray(part) for part in next(self._batches))
        if self._thread is None:
            return self._make()
        batch = (self._pending or self._thread.submit(self._make)).result()
        self._pending = self._thread.submit(self._make)
        return batch

    def close(self) -> None:
        """Stop the worker processes or the helper thread (if any)."""
        if self._batches is not None:
            self._batches._shutdown_workers()
            self._batches = None
        if self._thread is not None:
            if self._pending is not None:
                self._pending.cancel()
            self._thread.shutdown(wait=True)
            self._thread = self._pending = None
