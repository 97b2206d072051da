"""Settings, progress records and results of a training run.

:class:`TrainingConfig` is the one home of every training default: the CLI builds its
``--help`` defaults from it, the Train widget reads it, and the docs cite it. The
records :class:`TrainingProgress` and :class:`TrainingResult` are what
:func:`napari_unet.training.loop.train` yields and returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from napari_unet.method.annotation import BOUNDARY_WIDTH, DEFAULT_GAP, DEFAULT_N_CLASSES
from napari_unet.method.augmentation import AugmentationConfig
from napari_unet.method.images import DEFAULT_PERCENTILES
from napari_unet.method.network import UNet, UNetConfig
from napari_unet.method.object_size import check_object_size
from napari_unet.method.weight_map import DEFAULT_CLASS_WEIGHTS, DEFAULT_SIGMA, DEFAULT_W0
from napari_unet.runtime.checks import check_positive_int, check_positive_int_pair
from napari_unet.training.painted_score import HELD_OUT_SHARE, PaintedProgress, PaintedScore

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
#: Which weights a run trains (:attr:`TrainingConfig.trained_layers`).
TRAINED_LAYERS = ("all", "expansive")
#: Weight of the starting model's confident classes on unpainted pixels when
#: fine-tuning (:attr:`TrainingConfig.start_labels`). Off: on five kinds of cells they
#: cut fragments (AP@0.5) but did not raise SEG, and lowered it on small crowded
#: phase-contrast cells (docs/benchmarks.md, "Start labels").
DEFAULT_START_LABELS = 0.0
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
        Training target (:data:`napari_unet.method.annotation.TARGET_CLASSES`): 2 is the
        paper's background/cell with a carved separation gap, 3 adds a cell-boundary
        class. ``None``: the model's own (3 from scratch). Asking for 3 with a
        two-class model adds the boundary class to it
        (:func:`napari_unet.method.network.with_boundary_class`).
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
        the device runs it fast (CPUs with AMX: ~3.7x faster per step here; AMD CPUs
        with AVX512-BF16: ~1.6x; Ampere+ GPUs; see
        :func:`napari_unet.runtime.devices.cpu_prefers_bf16`), else float32. float16
        uses loss scaling.
    data_workers : int
        Processes that prepare augmented batches ahead of the training step
        (:class:`napari_unet.training.samples.BatchSource`); worth it on a GPU, where
        augmentation on one core is the bottleneck. 0: in the training thread.
    trained_layers : {"all", "expansive"}
        Which weights fine-tuning changes: all of them, or only the expansive path
        and the head, the contracting path staying as the starting model learned it
        (its batch-norm statistics still follow the new images). With ``"expansive"``
        the backward pass stops at the expansive path, so a step costs less.
    start_labels : float
        Weight of the starting model's own confident classes on the pixels nobody
        painted, when fine-tuning partial annotations
        (:mod:`napari_unet.training.start_labels`): the painted pixels teach what is
        new, the start labels keep what the starting model knew elsewhere. Painted
        pixels weigh ``w(x)`` of eq. 2 (about 1 and more); 0: unpainted pixels are
        ignored, as in the paper.
    hold_out : float
        Share of the painted cells held out of training to score it
        (:mod:`napari_unet.training.painted_score`): the starting model and the model being
        trained are compared on them, the better one is kept, and the instance step
        is fitted to them. Needs 3 painted cells or more; a fine-tune on 2 to 5 of them
        cross-fits instead, whatever the share (:mod:`napari_unet.training.cross_fit`);
        0: none held out, no cross-fit.
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
    class_weights: str | tuple[float, ...] | None = DEFAULT_CLASS_WEIGHTS
    n_classes: int | None = None
    gap: int = DEFAULT_GAP
    boundary_width: int = BOUNDARY_WIDTH
    object_size: float | None = None
    optimizer: str = "adam"
    momentum: float = 0.99
    weight_decay: float = 0.0
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    validation_interval: int = 50
    precision: str = "auto"
    data_workers: int = 0
    trained_layers: str = "all"
    start_labels: float = DEFAULT_START_LABELS
    hold_out: float = HELD_OUT_SHARE

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
        if self.trained_layers not in TRAINED_LAYERS:
            raise ValueError(
                f"trained_layers must be one of {TRAINED_LAYERS}, got {self.trained_layers!r}"
            )
        if not (isinstance(self.hold_out, int | float) and 0 <= self.hold_out < 1):
            raise ValueError(f"hold_out must be a share in [0, 1), got {self.hold_out!r}")
        if not (isinstance(self.start_labels, int | float) and 0 <= self.start_labels < math.inf):
            raise ValueError(
                f"start_labels must be a weight of 0 or more, got {self.start_labels!r}"
            )
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
        The score that picks the best weights, when computed: foreground IoU on the
        validation pairs' annotated pixels, or without validation pairs the SEG on
        the held-out painted cells.
    best_loss : float
        Lowest smoothed training loss so far.
    fraction : float
        Share of the run done, in [0, 1] (of the iterations or of the time budget,
        whichever is nearer its end); the learning-rate schedule follows it.
    painted : PaintedProgress or None
        SEG and AP@0.5 on the held-out painted cells of the starting model, of the
        network being trained and of the best weights so far, when computed (every
        ``validation_interval`` iterations and at the end).
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
    painted: PaintedProgress | None = None


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
    painted : PaintedCellReport or None
        The starting and the trained model on the held-out painted cells and which
        one was kept (:attr:`PaintedCellReport.message` says it in words); ``None``
        when no cell was held out.
    set_aside : UNet or None
        The fine-tuned network when the never-worse rule kept the starting model
        instead (its best weights, or their mix with the start that scored best,
        :attr:`PaintedCellReport.share`, with its own fitted instance step): to
        compare, or to use anyway. ``None`` when the fine-tuned network was kept.
    """

    model: UNet
    best_iteration: int
    history: list[TrainingProgress]
    stopped: bool
    optimizer_state: dict = field(default_factory=dict, repr=False)
    painted: PaintedCellReport | None = None
    set_aside: UNet | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PaintedCellReport:
    """The never-worse rule's verdict: the starting and the trained model compared.

    Attributes
    ----------
    start : PaintedScore or None
        The starting model with its own instance step: what the user had before;
        ``None`` when training started from scratch.
    start_fitted : PaintedScore or None
        The starting model with the instance step fitted to the held-out cells.
    trained : PaintedScore
        The fine-tuned model (its best weights, or their mix with the start's,
        ``share``) with its fitted instance step.
    kept : {"trained", "start"}
        The model returned: the fine-tuned one unless the start's SEG beats its SEG by
        more than :func:`~napari_unet.training.painted_score.min_gain` of the held-out
        cells (a tie keeps the fine-tune, usually a mix with the start, ``share``).
    seconds : float
        Length of the run.
    share : float
        How far the fine-tuned weights scored in ``trained`` lie from the start's, in
        (0, 1]: 1 is the trained network, 0.5 the half-way mix of the two
        (:data:`napari_unet.training.selection.MIX_SHARES`).
    cross_fitted : bool
        The painted cells were too few to hold a share out: they were split into two
        folds, each scoring a network trained without it, and ``trained`` is the score of
        those networks on every painted cell (:mod:`napari_unet.training.cross_fit`).
    """

    start: PaintedScore | None
    start_fitted: PaintedScore | None
    trained: PaintedScore
    kept: str
    seconds: float
    share: float = 1.0
    cross_fitted: bool = False

    @property
    def cells(self) -> str:
        """Which painted cells scored the models, in words."""
        if self.cross_fitted:
            return f"{self.trained.n_cells} painted cells, each unseen by the network it scored"
        return f"{self.trained.n_cells} held-out cells"

    @property
    def message(self) -> str:
        """The verdict in plain words, e.g. ``painted-cell SEG: start 0.61 → 0.72 after 2 min``."""
        duration = _duration(self.seconds)
        if self.start is None:
            return (
                f"painted-cell SEG {self.trained.seg:.2f} after {duration} (AP@0.5 "
                f"{self.trained.ap:.2f}, {self.cells})"
            )
        if self.kept == "trained":
            mix = (
                f"; weights {self.share:.0%} of the way from the start to the fine-tune"
                if self.share < 1
                else ""
            )
            return (
                f"painted-cell SEG: start {self.start.seg:.2f} → {self.trained.seg:.2f} after "
                f"{duration} (AP@0.5 {self.start.ap:.2f} → {self.trained.ap:.2f}, "
                f"{self.cells}{mix})"
            )
        text = (
            f"fine-tuning has not beaten the starting model yet (painted-cell SEG "
            f"{self.trained.seg:.2f} against {self.start_fitted.seg:.2f} after {duration}, "
            f"{self.cells}); keeping the starting model"
        )
        if self.start_fitted.seg > self.start.seg:
            text += (
                f", with its instance step fitted to your cells (SEG {self.start.seg:.2f} → "
                f"{self.start_fitted.seg:.2f})"
            )
        return text

    def to_dict(self) -> dict:
        """Return the report as a JSON-serialisable dict (stored in the model)."""
        d = asdict(self)
        d["message"] = self.message
        return d


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min".replace(".0 min", " min")
