"""Training (and fine-tuning) a U-Net on partially annotated images.

Ronneberger et al. 2015, Sec. 3: pixel-wise soft-max over the final feature map
combined with a cross-entropy loss weighted by the separation-border weight map
(eq. 1 and 2), heavy data augmentation with elastic deformations (Sec. 3.1), and
large tiles rather than large batches. Pixels that are not annotated get weight 0,
which is what makes training on a few painted cells work.

Training is a generator: it yields a :class:`TrainingProgress` after every iteration
and returns a :class:`TrainingResult` with the best model seen. It ends after
``n_iterations`` or ``max_seconds``, whichever comes first; with a time budget the
learning-rate schedule is fitted to the number of iterations that fit in it. Setting
the ``stop`` event ends it cleanly between two iterations (the best model so far is
still returned); closing the generator ends it without a result.
"""

from __future__ import annotations

import copy
import datetime
import math
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch._dynamo  # noqa: F401
import torch.nn.functional as F

from napari_unet._checks import (
    check_positive_int,
    check_positive_int_pair,
    check_training_memory,
)
from napari_unet.annotation import (
    BOUNDARY_WIDTH,
    DEFAULT_N_CLASSES,
    check_object_size,
    estimate_object_size,
)
from napari_unet.augmentation import AugmentationConfig
from napari_unet.devices import resolve_device, resolve_precision
from napari_unet.images import DEFAULT_PERCENTILES
from napari_unet.instances import FINE_TUNED_SEED_THRESHOLD, FINE_TUNED_THRESHOLD, min_size_for
from napari_unet.model_io import as_model
from napari_unet.network import UNet, UNetConfig, with_boundary_class
from napari_unet.sampling import (
    BatchSource,
    prepare_samples,
    prepare_validation,
    validation_score,
)
from napari_unet.weight_map import DEFAULT_SIGMA, DEFAULT_W0

# ``import torch._dynamo`` above: PyTorch's optimisers import it (about 800 modules, 1 s)
# the first time one is created. Done here, at import time on the caller's thread (the
# Train widget imports this module when it is built), rather than inside a background
# training thread, where the imports hold the GIL and freeze the GUI for ~100-200 ms.

#: Architecture used when training starts from scratch: small enough to train on a
#: laptop CPU, deep enough (receptive field ~ 140 px) for nuclei and most cells, with the
#: three-class output (background, cell interior, cell boundary).
SCRATCH_CONFIG = UNetConfig(
    in_channels=1, n_classes=DEFAULT_N_CLASSES, depth=4, base_channels=16, batch_norm=True
)

#: Default time budget of a training run, minutes: a useful fine-tune of the default
#: model on a 2-core laptop CPU (see docs/benchmarks.md, fine-tuning).
DEFAULT_TRAINING_MINUTES = 3.0

#: Smallest output tile side (pixels) of a training tile; larger for large cells.
MIN_TILE_OUTPUT = 100
#: Largest automatic output tile side (pixels), whatever the object size.
MAX_TILE_OUTPUT = 256
#: Weight of the newest loss in the smoothed training loss (exponential average).
LOSS_SMOOTHING = 0.1


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of a training run.

    Attributes
    ----------
    n_iterations : int or None
        Largest number of optimiser steps; ``None``: no limit (``max_seconds`` ends
        the run).
    max_seconds : float or None
        Time budget, seconds of wall time including validation; ``None``: no limit
        (``n_iterations`` ends the run). The run ends at whichever limit comes first,
        and the learning-rate schedule is fitted to it: the step rate is measured in
        the first iterations and the number of iterations that fit in the budget is
        re-estimated after every step.
    learning_rate : float
        Initial learning rate; decays to 1/10 of it along a cosine over the run.
    batch_size : int
        Tiles per step (the paper: one large tile).
    tile_shape : (int, int) or None
        Spatial *input* tile shape, pixels, rounded up to the next shape valid for the
        network. ``None``: the smallest valid input whose output is at least
        ``2 * object_size`` (at least :data:`MIN_TILE_OUTPUT`, at most
        :data:`MAX_TILE_OUTPUT` pixels), so a tile holds a cell and its neighbours.
    augment : bool
        Random shift, rotation, flip, scale, gray values and elastic deformation.
    augmentation : AugmentationConfig
        Details of the augmentation.
    w0, sigma : float
        Separation-border weight (dimensionless) and its width (pixels), eq. 2.
    class_weights : "balanced", tuple of float or None
        ``w_c`` of eq. 2: class-frequency balancing, explicit weights (one per
        class), or 1.
    n_classes : {2, 3} or None
        Training target (:data:`napari_unet.annotation.TARGET_CLASSES`): 2 is the
        paper's background/cell with a carved separation gap, 3 adds a cell-boundary
        class. ``None``: the model's own (3 from scratch). Asking for 3 with a
        two-class model adds the boundary class to it
        (:func:`napari_unet.network.with_boundary_class`).
    gap : int
        Width (pixels) carved from each of two touching cells (two-class target).
    boundary_width : int
        Width (pixels) of the cell-boundary class (three-class target).
    object_size : float or None
        Typical cell diameter, pixels. ``None``: the median diameter of the
        annotated cells. Stored in the model; sets the default training tile and the
        smallest cell kept when segmenting.
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
    data_workers : int
        Processes that prepare augmented batches ahead of the training step
        (:class:`napari_unet.sampling.BatchSource`); worth it on a GPU, where
        augmentation on one core is the bottleneck. 0: in the training thread.
    """

    n_iterations: int | None = None
    max_seconds: float | None = DEFAULT_TRAINING_MINUTES * 60
    learning_rate: float = 1e-3
    batch_size: int = 2
    tile_shape: tuple[int, int] | None = None
    augment: bool = True
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    w0: float = DEFAULT_W0
    sigma: float = DEFAULT_SIGMA
    class_weights: str | tuple[float, ...] | None = "balanced"
    n_classes: int | None = None
    gap: int = 1
    boundary_width: int = BOUNDARY_WIDTH
    object_size: float | None = None
    optimizer: str = "adam"
    momentum: float = 0.99
    weight_decay: float = 0.0
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    validation_interval: int = 50
    precision: str = "auto"
    data_workers: int = 0

    def __post_init__(self):
        if self.n_iterations is None and self.max_seconds is None:
            raise ValueError("give n_iterations, max_seconds or both: training needs an end")
        if self.n_iterations is not None:
            check_positive_int("n_iterations", self.n_iterations)
        if self.max_seconds is not None and not (
            math.isfinite(self.max_seconds) and self.max_seconds > 0
        ):
            raise ValueError(f"max_seconds must be a positive number, got {self.max_seconds}")
        for name in ("batch_size", "validation_interval"):
            check_positive_int(name, getattr(self, name))
        if self.tile_shape is not None:
            check_positive_int_pair("tile_shape", self.tile_shape)
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.n_classes not in (None, 2, 3):
            raise ValueError(f"n_classes must be 2, 3 or None, got {self.n_classes!r}")
        if self.object_size is not None:
            check_object_size(self.object_size)
        if int(self.data_workers) < 0:
            raise ValueError(f"data_workers must be 0 or more, got {self.data_workers}")

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
    iteration : int
        Iterations done (1-based).
    n_iterations : int
        Iterations planned: ``config.n_iterations``, or with a time budget the
        current estimate of how many fit in it.
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
    fraction : float
        Share of the run done, in [0, 1] (of the iterations or of the time budget,
        whichever is nearer its end); the learning-rate schedule follows it.
    snapshot : UNet or None
        With ``train(snapshot_interval=...)``, every that many seconds: a copy of the
        current network (CPU, eval mode, with the model metadata), safe to predict
        with in another thread. ``None`` otherwise.
    """

    iteration: int
    n_iterations: int
    loss: float
    seconds: float
    pixels_per_second: float
    validation_score: float | None
    best_loss: float
    fraction: float = 0.0
    snapshot: UNet | None = field(default=None, repr=False, compare=False)


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
    optimizer_state : dict
        The optimiser's ``state_dict()`` at the end (CPU tensors); pass it to
        ``train(optimizer_state=...)`` with this model to continue without a cold
        optimiser.
    """

    model: UNet
    best_iteration: int
    history: list[TrainingProgress]
    stopped: bool
    optimizer_state: dict = field(default_factory=dict, repr=False)


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


def cosine_learning_rate(learning_rate: float, fraction: float) -> float:
    """Learning rate at ``fraction`` (0..1) of a run: cosine decay to 1/10 of it."""
    fraction = min(max(fraction, 0.0), 1.0)
    low = learning_rate / 10
    return low + (learning_rate - low) * 0.5 * (1.0 + math.cos(math.pi * fraction))


class _Budget:
    """Iterations and time of a run: the plan, the share done, and when to stop."""

    #: Iterations timed before the step rate is trusted (the first is slow: warm-up).
    WARMUP = 3

    def __init__(self, n_iterations: int | None, max_seconds: float | None):
        self.n_iterations = n_iterations
        self.max_seconds = max_seconds
        self.started = time.perf_counter()
        self._first_done: float | None = None
        self._fraction = 0.0
        self.planned = n_iterations or 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _per_step(self, iteration: int) -> float | None:
        if iteration <= self.WARMUP or self._first_done is None:
            return None
        return (time.perf_counter() - self._first_done) / (iteration - 1)

    def update(self, iteration: int) -> None:
        """Re-estimate the planned iterations after ``iteration`` steps."""
        if iteration == 1:
            self._first_done = time.perf_counter()
        if self.max_seconds is None:
            return
        per_step = self._per_step(iteration)
        if per_step is None:
            self.planned = max(self.n_iterations or 0, iteration)
            return
        remaining = max(self.max_seconds - self.elapsed(), 0.0)
        estimate = max(iteration + int(remaining / max(per_step, 1e-9)), iteration)
        self.planned = min(self.n_iterations or estimate, estimate)

    def fraction(self, iteration: int) -> float:
        """Share of the run done after ``iteration`` steps (never decreasing)."""
        shares = [iteration / self.n_iterations] if self.n_iterations else []
        if self.max_seconds is not None:
            if self._per_step(iteration) is None:
                shares.append(self.elapsed() / self.max_seconds)
            else:
                shares.append(iteration / max(self.planned, 1))
        # A new estimate of the plan may lower the share a little: hold it instead.
        self._fraction = max(self._fraction, min(max(shares), 1.0))
        return self._fraction

    def done(self, iteration: int) -> bool:
        """Whether the run ends before step ``iteration + 1``."""
        if self.n_iterations is not None and iteration >= self.n_iterations:
            return True
        if self.max_seconds is None:
            return False
        per_step = self._per_step(iteration) or 0.0
        return self.elapsed() + 0.5 * per_step >= self.max_seconds


def _starting_model(model: UNet | None, model_config: UNetConfig | None, config: TrainingConfig):
    """The network to train (a copy) and the metadata it brings along."""
    if model is not None:
        model = as_model(model)  # a file or shipped name is loaded; other types refused
    if model is None:
        architecture = model_config or SCRATCH_CONFIG
        if config.n_classes is not None and config.n_classes != architecture.n_classes:
            architecture = replace(architecture, n_classes=config.n_classes)
        return UNet(config=architecture), {}
    base_metadata = dict(getattr(model, "metadata", {}) or {})
    wanted = config.n_classes or model.config.n_classes
    if wanted == model.config.n_classes:
        return copy.deepcopy(model), base_metadata
    if wanted == 3 and model.config.n_classes == 2:
        return with_boundary_class(model), base_metadata
    raise ValueError(
        f"cannot train a {model.config.n_classes}-class model for a {wanted}-class target; "
        "start from a two-class model or from scratch"
    )


def _object_size(config: TrainingConfig, annotations, dense: bool, base_metadata: dict) -> float:
    """The object size hint: given, else measured on the annotation, else the model's."""
    if config.object_size is not None:
        return check_object_size(config.object_size)
    measured = estimate_object_size(annotations, dense)
    if measured is not None:
        return max(measured, 1.0)
    return float(base_metadata.get("object_size", 16.0))


def _tile_shape(model: UNet, config: TrainingConfig, object_size: float) -> tuple[int, int]:
    if config.tile_shape:  # rounded up to the next valid input shape, like prediction tiles
        return model.valid_input_shape(tuple(config.tile_shape))
    side = int(min(max(MIN_TILE_OUTPUT, math.ceil(2 * object_size)), MAX_TILE_OUTPUT))
    return model.input_shape_for_output((side, side))


def _make_optimizer(model: UNet, config: TrainingConfig, state: dict | None):
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
    if state:
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as error:
            raise ValueError(
                f"optimizer_state does not fit this model and optimiser ({config.optimizer}): "
                f"{error}"
            ) from error
    return optimizer


#: Metadata of a starting model that a model trained from it does not inherit.
_NOT_INHERITED = ("name", "description", "validation", "data", "script")


def _run_metadata(
    base_metadata: dict, config: TrainingConfig, n_classes: int, object_size: float
) -> dict:
    """Metadata the trained model carries (training results are added at the end).

    Post-processing: a three-class model gets the fine-tuned defaults of
    :mod:`napari_unet.instances`, a two-class one keeps its starting model's threshold;
    the smallest cell follows the object size.
    """
    object_size = round(object_size, 2)  # as stored, so min_size follows from the file
    if n_classes == 3:
        post = {"threshold": FINE_TUNED_THRESHOLD, "seed_threshold": FINE_TUNED_SEED_THRESHOLD}
    else:
        same_output = base_metadata.get("n_classes", 2) == n_classes
        base_post = base_metadata.get("postprocessing", {}) if same_output else {}
        post = {"threshold": base_post.get("threshold", 0.5)}
    post["min_size"] = min_size_for(object_size)
    # What described the starting model (its data, scores, text) does not describe this one.
    inherited = {k: v for k, v in base_metadata.items() if k not in _NOT_INHERITED}
    metadata = {
        **inherited,
        "normalization": {"method": "percentile", "percentiles": list(config.percentiles)},
        "gap": config.gap,
        "n_classes": n_classes,
        "object_size": object_size,
        "postprocessing": post,
    }
    if n_classes == 3:
        metadata["boundary_width"] = config.boundary_width
    return metadata


def _cpu_copy(model: UNet, metadata: dict) -> UNet:
    """A CPU copy of ``model`` in eval mode carrying ``metadata``."""
    snapshot = UNet(config=model.config)
    snapshot.load_state_dict({k: v.detach().to("cpu") for k, v in model.state_dict().items()})
    snapshot.metadata = copy.deepcopy(metadata)
    return snapshot.eval()


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
    snapshot_interval: float | None = None,
    optimizer_state: dict | None = None,
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
    snapshot_interval : float, optional
        Seconds between snapshots: copies of the current network attached to a
        yielded :class:`TrainingProgress` (``snapshot``), e.g. for a live preview.
        The first comes with the first iteration.
    optimizer_state : dict, optional
        :attr:`TrainingResult.optimizer_state` of an earlier run of ``model``, to
        continue it (same architecture and optimiser).

    Yields
    ------
    TrainingProgress
        After every iteration.

    Returns
    -------
    TrainingResult
        The best model (CPU, eval mode) with ``metadata`` recording the run,
        including ``object_size``, ``n_classes`` and the post-processing settings.

    Raises
    ------
    ValueError
        On empty or mismatched inputs (also validation pairs, checked before the
        first iteration), annotations without any annotated pixel, or without a
        background or a cell anywhere; an invalid ``tile_shape`` or object size, or
        tiles that would not fit in memory; a ``model`` of another type; an
        unavailable device; an ``optimizer_state`` that does not fit.
    FloatingPointError
        If the loss becomes NaN or infinite.
    """
    config = config or TrainingConfig()
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    if seed is not None:
        torch.manual_seed(seed)
    model, base_metadata = _starting_model(model, model_config, config)
    n_classes = model.config.n_classes
    samples = prepare_samples(images, annotations, config, dense, n_classes)
    validation_data = prepare_validation(validation or [], config, dense, n_classes)
    object_size = _object_size(config, annotations, dense, base_metadata)
    metadata = _run_metadata(base_metadata, config, n_classes, object_size)
    tile_shape = _tile_shape(model, config, object_size)
    augmentation = config.augmentation if config.augment else None
    # Worker processes (if any) are forked before the model goes to the device.
    batches = BatchSource(
        samples, model.halo, tile_shape, config.batch_size, augmentation, rng, config.data_workers
    )
    try:
        result = yield from _loop(
            model,
            metadata,
            config,
            device,
            batches,
            tile_shape,
            validation_data=validation_data if validation else None,
            stop=stop,
            snapshot_interval=snapshot_interval,
            optimizer_state=optimizer_state,
        )
    finally:
        batches.close()
    result.model.metadata["training"].update(
        fine_tuned_from=base_metadata.get("name"),
        n_images=len(images),
        n_planes=len(samples),
        dense=dense,
        seed=seed,
    )
    return result


def _loop(
    model: UNet,
    metadata: dict,
    config: TrainingConfig,
    device: torch.device,
    batches: BatchSource,
    tile_shape: tuple[int, int],
    *,
    validation_data: list | None,
    stop: threading.Event | None,
    snapshot_interval: float | None,
    optimizer_state: dict | None,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """The training loop of :func:`train` (same yields and result)."""
    dtype = resolve_precision(config.precision, device)
    model = model.to(device).train()
    if device.type != "mps":
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    out_shape = model.valid_output_shape(tile_shape)
    check_training_memory(model, tile_shape, config.batch_size, device)
    optimizer = _make_optimizer(model, config, optimizer_state)

    def snapshot():
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    history: list[TrainingProgress] = []
    best_state, best_iteration = snapshot(), 0
    smoothed = best_loss = math.inf
    best_score = -math.inf
    budget = _Budget(config.n_iterations, config.max_seconds)
    last_snapshot = -math.inf
    stopped = False
    iteration = 0
    fraction = 0.0  # share of the run done: sets the learning rate of the next step
    while not budget.done(iteration):
        if stop is not None and stop.is_set():
            stopped = True
            break
        iteration += 1
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = cosine_learning_rate(config.learning_rate, fraction)
        x, t, w = batches.next()
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
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training diverged at iteration {iteration} (loss {value}); "
                "lower the learning rate"
            )
        smoothed = (
            value if not math.isfinite(smoothed) else smoothed + LOSS_SMOOTHING * (value - smoothed)
        )
        budget.update(iteration)
        last = budget.done(iteration)
        score = None
        if validation_data and (iteration % config.validation_interval == 0 or last):
            model.eval()
            score = validation_score(model, validation_data, device)
            model.train()
            if score > best_score:
                best_score, best_state, best_iteration = score, snapshot(), iteration
        elif not validation_data and smoothed < best_loss and iteration >= min(10, budget.planned):
            best_state, best_iteration = snapshot(), iteration
        best_loss = min(best_loss, smoothed)
        dt = time.perf_counter() - t0
        copy_now = snapshot_interval is not None and (
            budget.elapsed() - last_snapshot >= snapshot_interval
        )
        if copy_now:
            last_snapshot = budget.elapsed()
        fraction = budget.fraction(iteration)
        progress = TrainingProgress(
            iteration,
            max(budget.planned, iteration),
            value,
            budget.elapsed(),
            config.batch_size * out_shape[0] * out_shape[1] / max(dt, 1e-9),
            score,
            best_loss,
            fraction,
            _cpu_copy(model, metadata) if copy_now else None,
        )
        history.append(progress)
        yield progress
    if best_iteration == 0 and history:
        best_state, best_iteration = snapshot(), history[-1].iteration
    model.load_state_dict(best_state)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    model.metadata = {
        **metadata,
        "training": {
            "config": config.to_dict(),
            "iterations_done": len(history),
            "best_iteration": best_iteration,
            "best_validation_score": None if best_score == -math.inf else best_score,
            "stopped": stopped,
            "device": str(device),
            "precision": str(dtype).removeprefix("torch."),
            "tile_shape": list(tile_shape),
            "seconds": budget.elapsed(),
            "torch": torch.__version__,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    return TrainingResult(
        model, best_iteration, history, stopped, _optimizer_state_on_cpu(optimizer)
    )


def _optimizer_state_on_cpu(optimizer) -> dict:
    """``optimizer.state_dict()`` with every tensor copied to the CPU."""
    state = optimizer.state_dict()
    return {
        "state": {
            key: {
                name: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v
                for name, v in values.items()
            }
            for key, values in state["state"].items()
        },
        "param_groups": copy.deepcopy(state["param_groups"]),
    }
