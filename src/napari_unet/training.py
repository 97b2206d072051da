"""Training (and fine-tuning) a U-Net on partially annotated images.

Ronneberger et al. 2015, Sec. 3: pixel-wise soft-max over the final feature map
combined with a cross-entropy loss weighted by the separation-border weight map
(eq. 1 and 2), heavy data augmentation with elastic deformations (Sec. 3.1), and
large tiles rather than large batches. Pixels that are not annotated get weight 0,
which is what makes training on a few painted cells work.

Training is a generator: it yields a :class:`TrainingProgress` after every iteration
and returns a :class:`TrainingResult` with the best model seen. Setting the ``stop``
event ends it cleanly between two iterations (the best model so far is still
returned); closing the generator ends it without a result.
"""

from __future__ import annotations

import copy
import datetime
import math
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch._dynamo  # noqa: F401
import torch.nn.functional as F

from napari_unet._checks import (
    check_positive_int,
    check_positive_int_pair,
    check_training_memory,
)
from napari_unet.annotation import annotation_to_target
from napari_unet.augmentation import (
    AugmentationConfig,
    augment_intensity,
    crop_grid,
    sampling_grid,
    warp_image,
    warp_labels,
)
from napari_unet.devices import resolve_device, resolve_precision
from napari_unet.images import (
    DEFAULT_PERCENTILES,
    image_layout,
    iter_planes,
    normalize,
    percentile_normalization,
)
from napari_unet.model_io import as_model
from napari_unet.network import UNet, UNetConfig
from napari_unet.weight_map import separation_border_weight_map

# ``import torch._dynamo`` above: PyTorch's optimisers import it (about 800 modules, 1 s)
# the first time one is created. Done here, at import time on the caller's thread (the
# Train widget imports this module when it is built), rather than inside a background
# training thread, where the imports hold the GIL and freeze the GUI for ~100-200 ms.

#: Architecture used when training starts from scratch: small enough to train on a
#: laptop CPU, deep enough (receptive field ~ 140 px) for nuclei and most cells.
SCRATCH_CONFIG = UNetConfig(in_channels=1, n_classes=2, depth=4, base_channels=16, batch_norm=True)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of a training run.

    Attributes
    ----------
    n_iterations : int
        Optimiser steps.
    learning_rate : float
        Initial learning rate; decays to 1/10 of it along a cosine over the run.
    batch_size : int
        Tiles per step (the paper: one large tile).
    tile_shape : (int, int) or None
        Spatial *input* tile shape, pixels, rounded up to the next shape valid for the
        network. ``None``: the smallest valid input whose output is at least 100×100.
    augment : bool
        Random shift, rotation, flip, scale, gray values and elastic deformation.
    augmentation : AugmentationConfig
        Details of the augmentation.
    w0, sigma : float
        Separation-border weight (dimensionless) and its width (pixels), eq. 2.
    class_weights : "balanced", (float, float) or None
        ``w_c`` of eq. 2: class-frequency balancing, explicit (background, cell)
        weights, or 1.
    gap : int
        Width (pixels) of the separation gap carved between touching cells.
    optimizer : {"adam", "sgd"}
        ``"sgd"`` is the paper's (momentum ``momentum``, 0.99); Adam (default) is far
        less sensitive to the learning rate, which matters for short fine-tuning runs.
    momentum : float
        SGD momentum.
    weight_decay : float
        L2 penalty.
    percentiles : (float, float)
        Intensity normalisation percentiles, stored in the model.
    validation_interval : int
        Iterations between validation scores (when validation data is given).
    precision : {"auto", "float32", "bfloat16", "float16"}
        Compute precision of convolutions (mixed precision via ``torch.autocast``;
        weights, loss and optimiser stay float32). ``"auto"`` picks bfloat16 where
        the device runs it fast (CPUs with AMX: ~3.7x faster per step here; Ampere+
        GPUs), else float32. float16 uses loss scaling.
    """

    n_iterations: int = 200
    learning_rate: float = 1e-3
    batch_size: int = 2
    tile_shape: tuple[int, int] | None = None
    augment: bool = True
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | tuple[float, float] | None = "balanced"
    gap: int = 1
    optimizer: str = "adam"
    momentum: float = 0.99
    weight_decay: float = 0.0
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    validation_interval: int = 50
    precision: str = "auto"

    def __post_init__(self):
        for name in ("n_iterations", "batch_size", "validation_interval"):
            check_positive_int(name, getattr(self, name))
        if self.tile_shape is not None:
            check_positive_int_pair("tile_shape", self.tile_shape)
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def to_dict(self) -> dict:
        """Return the settings as a JSON-serialisable dict."""
        d = asdict(self)
        d["augmentation"] = self.augmentation.to_dict()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass(frozen=True)
class TrainingProgress:
    """One training iteration's record.

    Attributes
    ----------
    iteration, n_iterations : int
        Iterations done (1-based) and planned.
    loss : float
        Weighted cross-entropy of this iteration's batch.
    seconds : float
        Wall time since training started.
    pixels_per_second : float
        Output pixels trained per second in this iteration.
    validation_score : float or None
        Foreground IoU on the validation pairs' annotated pixels, when computed.
    best_loss : float
        Lowest smoothed training loss so far.
    """

    iteration: int
    n_iterations: int
    loss: float
    seconds: float
    pixels_per_second: float
    validation_score: float | None
    best_loss: float


@dataclass
class TrainingResult:
    """What a finished (or stopped) training run returns.

    Attributes
    ----------
    model : UNet
        Network with the best weights (by validation score when validation data was
        given, else by smoothed training loss), in eval mode on the CPU, with
        ``metadata`` describing the run.
    best_iteration : int
        Iteration the weights come from.
    history : list of TrainingProgress
    stopped : bool
        Whether the run ended early because ``stop`` was set.
    """

    model: UNet
    best_iteration: int
    history: list[TrainingProgress]
    stopped: bool


@dataclass
class _Sample:
    image: np.ndarray  # (C, Y, X) float32, normalised
    target: np.ndarray  # (Y, X) uint8, 0 background / 1 cell
    weights: np.ndarray  # (Y, X) float32, 0 where not annotated
    annotated: np.ndarray  # flat indices of annotated pixels


def _prepare(
    images: Sequence, annotations: Sequence, config: TrainingConfig, dense: bool
) -> list[_Sample]:
    if len(images) == 0:
        raise ValueError("no training images given")
    if len(images) != len(annotations):
        raise ValueError(
            f"got {len(images)} images but {len(annotations)} annotations; "
            "give one annotation per image"
        )
    samples = []
    for n, (image, annotation) in enumerate(zip(images, annotations, strict=True)):
        layout = image_layout(image)
        annotation = np.asarray(annotation)
        if annotation.shape != layout.labels_shape:
            raise ValueError(
                f"annotation {n} has shape {annotation.shape} but image {n} has shape "
                f"{tuple(image.shape)} (labels must have shape {layout.labels_shape})"
            )
        for index, plane in iter_planes(image, layout):
            labels = annotation[index] if index else annotation
            if not dense and not labels.any():
                continue  # an unannotated plane of a stack
            target = annotation_to_target(labels, dense=dense, gap=config.gap)
            weights = separation_border_weight_map(
                labels, config.w0, config.sigma, config.class_weights, dense=dense, gap=config.gap
            )
            low, high = percentile_normalization(plane, config.percentiles)
            samples.append(
                _Sample(
                    normalize(plane, low, high)[None],
                    target.target,
                    weights,
                    np.flatnonzero(weights > 0),
                )
            )
    if not samples or not any(len(s.annotated) for s in samples):
        raise ValueError(
            "no annotated pixel: paint background (label 1) and cells (labels 2, 3, …)"
        )
    has_cell = any((s.target.ravel()[s.annotated] == 1).any() for s in samples)
    has_background = any((s.target.ravel()[s.annotated] == 0).any() for s in samples)
    if not has_cell:
        raise ValueError(
            f"the annotation has no cell (labels >= {1 if dense else 2}): paint at least one cell"
        )
    if not has_background:
        raise ValueError(
            "the annotation has no background (label 1): paint some background so the "
            "network learns what is not a cell"
        )
    return samples


def _batch(
    samples: list[_Sample],
    model: UNet,
    tile_shape: tuple[int, int],
    config: TrainingConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random training tiles: inputs (N,C,H,W), targets (N,h,w), weights (N,h,w)."""
    sizes = np.array([len(s.annotated) for s in samples], float)
    augmentation = config.augmentation if config.augment else None
    xs, ts, ws = [], [], []
    for _ in range(config.batch_size):
        s = samples[rng.choice(len(samples), p=sizes / sizes.sum())]
        center = np.unravel_index(s.annotated[rng.integers(len(s.annotated))], s.target.shape)
        grid = sampling_grid((float(center[0]), float(center[1])), tile_shape, augmentation, rng)
        x = warp_image(s.image, grid)
        if augmentation is not None:
            x = augment_intensity(x, augmentation, rng)
        inner = crop_grid(grid, model.halo)
        xs.append(x)
        ts.append(warp_labels(s.target, inner))
        ws.append(warp_labels(s.weights, inner, fill=0.0))
    return np.stack(xs), np.stack(ts), np.stack(ws)


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Pixel-wise soft-max cross-entropy weighted by a weight map (paper, eq. 1).

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, K, H, W)`` class scores.
    target : torch.Tensor
        ``(N, H, W)`` int64 class indices.
    weights : torch.Tensor
        ``(N, H, W)`` float weights ``w(x)``; 0 excludes a pixel.

    Returns
    -------
    torch.Tensor
        Scalar: ``sum(w · CE) / sum(w)`` (0 when all weights are 0).
    """
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * weights).sum() / weights.sum().clamp_min(1e-8)


def _prepare_validation(pairs, config: TrainingConfig, dense: bool) -> list:
    """Per validation pair, once: (image, normalisation, truth, annotated mask)."""
    prepared = []
    for n, (image, annotation) in enumerate(pairs):
        layout, annotation = image_layout(image), np.asarray(annotation)
        if layout.leading_shape or layout.rgb or annotation.shape != layout.spatial_shape:
            raise ValueError(
                f"validation pair {n}: image of shape {tuple(np.shape(image))}, annotation of "
                f"shape {annotation.shape}; give a 2D image (Y, X) and an annotation of its shape"
            )
        target = annotation_to_target(np.asarray(annotation), dense=dense, gap=config.gap)
        normalization = percentile_normalization(image, config.percentiles)
        prepared.append((image, normalization, (target.target == 1) & target.mask, target.mask))
    return prepared


def _validation_score(model: UNet, prepared: list, device) -> float:
    """Foreground IoU on the annotated pixels of validation pairs (see _prepare_validation)."""
    from napari_unet.tiling import predict_tiled

    intersection = union = 0
    for image, normalization, truth, mask in prepared:
        prob = predict_tiled(
            image,
            model,
            normalization=normalization,
            device=device,
            precision="float32",
            output_classes=(1,),
        )[0]
        predicted = (prob > 0.5) & mask
        intersection += int((predicted & truth).sum())
        union += int((predicted | truth).sum())
    return intersection / union if union else 1.0


def train(
    images: Sequence,
    annotations: Sequence,
    *,
    model: UNet | None = None,
    config: TrainingConfig | None = None,
    device: str | torch.device = "auto",
    dense: bool = False,
    stop: threading.Event | None = None,
    seed: int | None = None,
    validation: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    model_config: UNetConfig | None = None,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """Train or fine-tune a U-Net; a generator of progress records.

    Parameters
    ----------
    images : sequence of array-like
        Training images: ``(Y, X)``, ``(Y, X, 3)`` RGB, or stacks ``(Z, Y, X)`` whose
        annotated planes are used. Any numeric dtype; normalised by percentiles.
    annotations : sequence of array-like
        One integer label image per image, same shape without RGB. Partial convention:
        0 = not annotated (ignored), 1 = background, 2, 3, … = one id per cell. With
        ``dense=True``: 0 = background, 1, 2, … = cells, nothing ignored.
    model : UNet, str or path, optional
        Network to fine-tune (copied, never modified), or a model file or shipped
        model name to load (``"default"``). ``None``: train from scratch.
    config : TrainingConfig, optional
        Settings; defaults of :class:`TrainingConfig` when ``None``.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    dense : bool
        Annotations are dense ground truth.
    stop : threading.Event, optional
        Set it (from any thread) to end training after the current iteration; the
        generator then returns the best model so far with ``stopped=True``.
    seed : int, optional
        Seed of the patch sampling, augmentation and (from scratch) initialisation.
    validation : sequence of (image, annotation), optional
        2D pairs scored every ``config.validation_interval`` iterations and at the
        end; the model with the best score is returned.
    model_config : UNetConfig, optional
        Architecture when training from scratch (default :data:`SCRATCH_CONFIG`).

    Yields
    ------
    TrainingProgress
        After every iteration.

    Returns
    -------
    TrainingResult
        The best model (CPU, eval mode) with ``metadata`` recording the run.

    Raises
    ------
    ValueError
        On empty or mismatched inputs (also validation pairs, checked before the
        first iteration), annotations without any annotated pixel, or without a
        background or a cell anywhere; an invalid ``tile_shape`` or one whose tiles
        would not fit in memory; a ``model`` of another type; an unavailable device.
    """
    config = config or TrainingConfig()
    device = resolve_device(device)
    samples = _prepare(images, annotations, config, dense)
    validation_data = _prepare_validation(validation or [], config, dense)
    rng = np.random.default_rng(seed)
    if seed is not None:
        torch.manual_seed(seed)
    if model is not None:
        model = as_model(model)  # a file or shipped name is loaded; other types refused
    if model is None:
        model = UNet(config=model_config or SCRATCH_CONFIG)
        base_metadata: dict = {}
    else:
        base_metadata = dict(getattr(model, "metadata", {}) or {})
        model = copy.deepcopy(model)
    dtype = resolve_precision(config.precision, device)
    model = model.to(device).train()
    if device.type != "mps":
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if config.tile_shape:  # rounded up to the next valid input shape, like prediction tiles
        tile_shape = model.valid_input_shape(tuple(config.tile_shape))
    else:
        tile_shape = model.input_shape_for_output((100, 100))
    out_shape = model.valid_output_shape(tile_shape)
    check_training_memory(model, tile_shape, config.batch_size, device)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.n_iterations, eta_min=config.learning_rate / 10
    )

    def snapshot():
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    history: list[TrainingProgress] = []
    best_state, best_iteration = snapshot(), 0
    smoothed = best_loss = math.inf
    best_score = -math.inf
    started = time.perf_counter()
    stopped = False
    for iteration in range(1, config.n_iterations + 1):
        if stop is not None and stop.is_set():
            stopped = True
            break
        t0 = time.perf_counter()
        x, t, w = _batch(samples, model, tile_shape, config, rng)
        inputs = torch.from_numpy(x).to(device)
        if device.type != "mps":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(inputs)
        loss = weighted_cross_entropy(
            logits, torch.from_numpy(t).long().to(device), torch.from_numpy(w).to(device)
        )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training diverged at iteration {iteration} (loss {value}); "
                "lower the learning rate"
            )
        smoothed = value if not math.isfinite(smoothed) else 0.9 * smoothed + 0.1 * value
        score = None
        if validation and (
            iteration % config.validation_interval == 0 or iteration == config.n_iterations
        ):
            model.eval()
            score = _validation_score(model, validation_data, device)
            model.train()
            if score > best_score:
                best_score, best_state, best_iteration = score, snapshot(), iteration
        elif not validation and smoothed < best_loss and iteration >= min(10, config.n_iterations):
            best_state, best_iteration = snapshot(), iteration
        best_loss = min(best_loss, smoothed)
        dt = time.perf_counter() - t0
        progress = TrainingProgress(
            iteration,
            config.n_iterations,
            value,
            time.perf_counter() - started,
            config.batch_size * out_shape[0] * out_shape[1] / max(dt, 1e-9),
            score,
            best_loss,
        )
        history.append(progress)
        yield progress
    if best_iteration == 0 and history:
        best_state, best_iteration = snapshot(), history[-1].iteration
    model.load_state_dict(best_state)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    model.metadata = {
        **base_metadata,
        "normalization": {"method": "percentile", "percentiles": list(config.percentiles)},
        "gap": config.gap,
        "training": {
            "config": config.to_dict(),
            "fine_tuned_from": base_metadata.get("name"),
            "n_images": len(images),
            "n_planes": len(samples),
            "dense": dense,
            "iterations_done": len(history),
            "best_iteration": best_iteration,
            "best_validation_score": None if best_score == -math.inf else best_score,
            "stopped": stopped,
            "seed": seed,
            "device": str(device),
            "precision": str(dtype).removeprefix("torch."),
            "seconds": time.perf_counter() - started,
            "torch": torch.__version__,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    model.metadata.pop("name", None)
    return TrainingResult(model, best_iteration, history, stopped)
