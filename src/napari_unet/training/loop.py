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
from collections.abc import Generator, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch._dynamo  # noqa: F401

from napari_unet.method.network import UNet, UNetConfig, with_boundary_class
from napari_unet.method.object_size import (
    DEFAULT_OBJECT_SIZE,
    check_object_size,
    estimate_object_size,
)
from napari_unet.models.files import as_model
from napari_unet.runtime.checks import check_training_memory
from napari_unet.runtime.devices import precision_name, resolve_device, resolve_precision
from napari_unet.training.config import (
    DEFAULT_TRAINING_MINUTES,
    LOSS_SMOOTHING,
    MAX_TILE_OUTPUT,
    MIN_TILE_OUTPUT,
    SCRATCH_CONFIG,
    TrainingConfig,
    TrainingProgress,
    TrainingResult,
)
from napari_unet.training.cross_fit import all_cells, cross_fit_folds, train_folds
from napari_unet.training.optimization import (
    TimeBudget,
    cosine_learning_rate,
    make_optimizer,
    optimization_step,
    optimizer_state_on_cpu,
    weighted_cross_entropy,
)
from napari_unet.training.painted_score import hold_out_cells
from napari_unet.training.samples import (
    BatchSource,
    batches_ahead,
    check_pairs,
    prepare_samples,
    prepare_validation,
)
from napari_unet.training.selection import BestWeights, StartScore, start_settings
from napari_unet.training.start_labels import add_start_labels
from napari_unet.training.volumes import volume_spacings

__all__ = [
    "DEFAULT_TRAINING_MINUTES",
    "LOSS_SMOOTHING",
    "SCRATCH_CONFIG",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "cosine_learning_rate",
    "train",
    "weighted_cross_entropy",
]

# ``import torch._dynamo`` above: PyTorch's optimisers import it (about 800 modules, 1 s)
# the first time one is created. Done here, at import time on the caller's thread (the
# Train widget imports this module when it is built), rather than inside a background
# training thread, where the imports hold the GIL and freeze the GUI for ~100-200 ms.


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
    return float(base_metadata.get("object_size", DEFAULT_OBJECT_SIZE))


def _tile_shape(model: UNet, config: TrainingConfig, object_size: float) -> tuple[int, int]:
    if config.tile_shape:  # rounded up to the next valid input shape, like prediction tiles
        return model.valid_input_shape(tuple(config.tile_shape))
    side = int(min(max(MIN_TILE_OUTPUT, math.ceil(2 * object_size)), MAX_TILE_OUTPUT))
    return model.input_shape_for_output((side, side))


#: Metadata of a starting model that a model trained from it does not inherit.
_NOT_INHERITED = ("name", "description", "validation", "data", "script")


def _run_metadata(
    base_metadata: dict, config: TrainingConfig, n_classes: int, object_size: float, post: dict
) -> dict:
    """Metadata the trained model carries (training results are added at the end)."""
    object_size = round(object_size, 2)  # as stored, so min_size follows from the file
    # What described the starting model (its data, scores, text) does not describe this one.
    inherited = {k: v for k, v in base_metadata.items() if k not in _NOT_INHERITED}
    metadata = {
        **inherited,
        "normalization": {"method": "percentile", "percentiles": list(config.percentiles)},
        "gap": config.gap,
        "n_classes": n_classes,
        "object_size": object_size,
        "postprocessing": dict(post),
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
    axes: str | Sequence[str | None] | None = None,
    spacing=None,
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
    axes : str or sequence of str, optional
        The images' axes (:mod:`napari_unet.method.axes`: ``"YX"``, ``"ZYX"``, ``"TYX"``,
        ``"TZYX"``), one string for all images or one per image. A volume (``Z``) is
        trained from its painted XY planes (planes never painted are ignored, one id
        across planes is one 3D cell), weighted by the 3D eq. 2 map with the voxel size
        (:mod:`napari_unet.method.weight_map_3d`). ``None``: every leading axis is a
        stack of unrelated planes.
    spacing : sequence of float, or a sequence of them (one per image), optional
        Voxel size ``(dz, dy, dx)`` of the volumes, any one unit; ``None``: isotropic.

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
        background or a cell anywhere; a volume with nothing painted; ``axes`` that do
        not match an image, channel axes (``CYX``), a bad ``spacing``; an invalid
        ``tile_shape`` or object size, or
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
    fine_tuning = model is not None
    model, base_metadata = _starting_model(model, model_config, config)
    n_classes = model.config.n_classes
    check_pairs(images, annotations)
    volumes = volume_spacings(images, axes, spacing)
    object_size = _object_size(config, annotations, dense, base_metadata)
    held_out = painted = folds = None
    trained_on, trained_dense = annotations, dense  # the held-out cells taken out of these
    held = dict(dense=dense, object_size=object_size, percentiles=config.percentiles, rng=rng)
    if fine_tuning and config.hold_out > 0:  # too few cells for a held-out share
        folds = cross_fit_folds(images, annotations, **held)
    if config.hold_out > 0 and folds is None:
        kept, held_out, painted = hold_out_cells(images, annotations, **held, share=config.hold_out)
        if held_out is not None:
            trained_on, trained_dense = kept, False
    validation_data = prepare_validation(validation or [], config, dense, n_classes)
    settings = start_settings(model, object_size)
    metadata = _run_metadata(
        base_metadata, config, n_classes, object_size, settings.postprocessing()
    )
    if folds is not None:
        held_out = painted = all_cells(folds)
    start = StartScore(model, held_out, painted, settings, object_size, device, compare=fine_tuning)
    tile_shape = _tile_shape(model, config, object_size)
    augmentation = config.augmentation if config.augment else None

    options = dict(
        validation_data=validation_data if validation else None,
        stop=stop,
        snapshot_interval=snapshot_interval,
        optimizer_state=optimizer_state,
    )

    def fit(network, fit_annotations, scorer, fit_config, fit_dense=False):
        samples = prepare_samples(
            images, fit_annotations, fit_config, fit_dense, n_classes, volumes
        )
        if fine_tuning and not dense and config.start_labels > 0:
            add_start_labels(
                samples, network, annotations, weight=config.start_labels, device=device
            )
        # Worker processes (if any) are forked before the network goes to the device.
        source = (samples, network.halo, tile_shape, config.batch_size, augmentation, rng)
        batches = BatchSource(*source, config.data_workers, ahead=batches_ahead(device))
        try:
            result = yield from _loop(
                network, metadata, fit_config, device, batches, tile_shape, scorer, **options
            )
        finally:
            batches.close()
        result.model.metadata["training"]["n_planes"] = len(samples)
        return result

    if folds is not None:
        result = yield from train_folds(fit, model, folds, start, config)
    else:
        result = yield from fit(model, trained_on, start, config, trained_dense)
        if held_out is not None:
            result = start.verdict(result)
    result.model.metadata["training"].update(
        fine_tuned_from=base_metadata.get("name"),
        n_images=len(images),
        axes=axes if axes is None or isinstance(axes, str) else list(axes),
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
    start: StartScore,
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
    out_pixels = config.batch_size * math.prod(model.valid_output_shape(tile_shape))
    check_training_memory(model, tile_shape, config.batch_size, device)
    if config.trained_layers == "expansive":  # the contracting path keeps its weights
        model.contracting_path.requires_grad_(False)
    optimizer = make_optimizer(model, config, optimizer_state)
    best = BestWeights(model, validation_data, start)
    budget = TimeBudget(config.n_iterations, config.max_seconds)
    history: list[TrainingProgress] = []
    last_snapshot, iteration, fraction = -math.inf, 0, 0.0
    stopped = False
    while not budget.done(iteration):
        if stop is not None and stop.is_set():
            stopped = True
            break
        iteration += 1
        started = budget.elapsed()
        for group in optimizer.param_groups:
            group["lr"] = cosine_learning_rate(config.learning_rate, fraction)
        loss = optimization_step(model, optimizer, scaler, batches.next(), device, dtype)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged at iteration {iteration} (loss {loss}); lower the learning rate"
            )
        budget.update(iteration)
        validate = iteration % config.validation_interval == 0 or budget.done(iteration)
        score, painted = best.update(iteration, loss, validate, budget.planned, device)
        seconds = budget.elapsed()
        snapshot = None
        if snapshot_interval is not None and seconds - last_snapshot >= snapshot_interval:
            last_snapshot, snapshot = seconds, _cpu_copy(model, metadata)
        fraction = budget.fraction(iteration)
        planned = max(budget.planned, iteration)
        speed = out_pixels / max(seconds - started, 1e-9)
        progress = TrainingProgress(
            iteration, planned, loss, seconds, speed, score, best.loss, fraction, snapshot, painted
        )
        history.append(progress)
        yield progress
    best_iteration = best.restore(iteration)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval().requires_grad_(True)
    record = {
        "config": config.to_dict(),
        "iterations_done": len(history),
        "best_iteration": best_iteration,
        "best_validation_score": None if best.score == -math.inf else best.score,
        "stopped": stopped,
        "device": str(device),
        "precision": precision_name(dtype),
        "tile_shape": list(tile_shape),
        "seconds": budget.elapsed(),
        "torch": torch.__version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    model.metadata = {**metadata, "training": record}
    return TrainingResult(
        model, best_iteration, history, stopped, optimizer_state_on_cpu(optimizer)
    )
