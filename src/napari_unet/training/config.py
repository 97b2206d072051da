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
        the device runs it fast (CPUs with AMX: ~3.7x faster per step here; Ampere+
        GPUs), else float32. float16 uses loss scaling.
    data_workers : int
        Processes that prepare augmented batches ahead of the training step
        (:class:`napari_unet.training.samples.BatchSource`); worth it on a GPU, where
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
