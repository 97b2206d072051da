"""How a training step is optimised: the weighted loss, the optimiser, the schedule.

The loss is the paper's pixel-wise soft-max cross-entropy weighted by the weight map
(Ronneberger et al. 2015, eq. 1). The learning rate follows a cosine decay fitted to the
run's time budget (:class:`TimeBudget`), so a short fine-tune still anneals.
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F

from napari_unet.method.network import UNet
from napari_unet.training.config import TrainingConfig


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


class TimeBudget:
    """Iterations and time of a run: the plan, the share done, and when to stop.

    With ``max_seconds`` the step rate is measured after :attr:`WARMUP` steps and the
    number of iterations that fit in the budget is re-estimated after every step;
    :meth:`fraction` (the share of the run done) drives the learning-rate schedule.
    """

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
        """Seconds since the run started."""
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


def make_optimizer(model: UNet, config: TrainingConfig, state: dict | None = None):
    """The optimiser of ``config`` over ``model``'s parameters, optionally resumed.

    Parameters
    ----------
    model : UNet
        The network whose parameters are optimised.
    config : TrainingConfig
        ``optimizer`` ("adam" or the paper's "sgd" with ``momentum``),
        ``learning_rate`` and ``weight_decay``.
    state : dict, optional
        An earlier run's :attr:`TrainingResult.optimizer_state` to continue from.

    Raises
    ------
    ValueError
        If ``state`` does not fit this model and optimiser.
    """
    # One kernel per step for all parameters (fused) where PyTorch has it, else one per
    # operation over the parameter list (foreach): the single-tensor default launches
    # ~10 small operations per parameter (60 of them). Same update up to rounding.
    implementation = _fast_implementation(model)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(),
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            **implementation,
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            **implementation,
        )
    if state:
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as error:
            raise ValueError(
                f"optimizer_state does not fit this model and optimiser ({config.optimizer}): "
                f"{error}"
            ) from error
        for group in optimizer.param_groups:  # a state saved before kept its own choice
            group.update(implementation)
    return optimizer


def _fast_implementation(model: UNet) -> dict:
    """``{"fused": True}`` where every parameter is on a CPU or CUDA device, else foreach."""
    devices = {p.device.type for p in model.parameters()}
    if devices <= {"cpu", "cuda"}:
        return {"fused": True}
    return {"foreach": True}


def optimizer_state_on_cpu(optimizer) -> dict:
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


def optimization_step(model, optimizer, scaler, batch, device, dtype) -> float:
    """One optimisation step on a batch; returns its loss (eq. 1).

    Parameters
    ----------
    model : UNet
        In train mode, on ``device`` (channels-last except on MPS).
    optimizer : torch.optim.Optimizer
        From :func:`make_optimizer`.
    scaler : torch.amp.GradScaler
        Loss scaling (enabled for float16 only).
    batch : (np.ndarray, np.ndarray, np.ndarray)
        float32 images ``(N, C, H, W)``, class targets ``(N, h, w)`` and weights
        ``(N, h, w)`` (the output's shape).
    device : torch.device
        Where the step runs.
    dtype : torch.dtype
        Autocast precision of the forward pass (float32: none).
    """
    x, t, w = batch
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
    return float(loss.detach())
