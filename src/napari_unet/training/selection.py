"""Which weights a training run keeps.

While training: the best weights so far, by the score on validation pairs, else by the
SEG on the held-out painted cells, else by the smoothed training loss. At the end: the
never-worse rule, which returns the starting model when it beats the fine-tuned weights on
the held-out painted cells (:mod:`napari_unet.training.painted_score`), each with its
instance step fitted (:mod:`napari_unet.training.instance_fit`).

The fine-tuned weights tried are the trained ones and weights part of the way to them
from the start (:data:`MIX_SHARES`): a weight-space mix of a fine-tune with its start
keeps most of the fine-tune's gain while it forgets less of what the start knew
(WiSE-FT; Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). On five
kinds of cells, fine-tuned on 5 or 10 painted cells for 2 minutes, the quarter-way mix
scored +0.031 SEG above the start on unseen images on average (worst −0.053), the trained
weights −0.025 (worst −0.19) (``docs/benchmarks.md``, "Round 3, session 4").
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch

from napari_unet.inference.segment import InstanceSettings
from napari_unet.method.instances import min_size_for
from napari_unet.method.network import UNet
from napari_unet.training.config import LOSS_SMOOTHING, PaintedCellReport, TrainingResult
from napari_unet.training.instance_fit import fit_instance_step
from napari_unet.training.painted_score import HeldOutCells, PaintedProgress, min_gain
from napari_unet.training.samples import validation_score

#: Shares of the way from the starting weights to the trained ones that the never-worse
#: rule tries, smallest first; 1.0 is the trained network itself. The first is the
#: fine-tuned choice unless a larger share beats it by more than the noise of the
#: held-out cells (:func:`~napari_unet.training.painted_score.min_gain`).
MIX_SHARES = (0.25, 0.5, 0.75, 1.0)


def mixed_state(start: dict, trained: dict, share: float) -> dict:
    """Weights ``share`` of the way from ``start`` to ``trained`` (WiSE-FT).

    Parameters
    ----------
    start, trained : dict of str to torch.Tensor
        State dicts of the same network (CPU tensors); batch-norm running statistics
        are mixed like the weights, counters taken from ``trained``.
    share : float
        In [0, 1]: 0 gives ``start``, 1 gives ``trained``.

    Returns
    -------
    dict of str to torch.Tensor
        ``start + share · (trained − start)`` for every floating-point tensor
        (:func:`torch.lerp`: exactly ``start`` at 0 and exactly ``trained`` at 1).
    """
    return {
        name: torch.lerp(start[name], value, share) if value.is_floating_point() else value
        for name, value in trained.items()
    }


def start_settings(model: UNet, object_size: float) -> InstanceSettings:
    """The starting model's own instance step.

    A model without a stored smallest cell (from scratch) gets one from the object
    size; a two-class model widened to three classes gets the default seed threshold.
    The instance step is then fitted to the held-out painted cells
    (:func:`napari_unet.training.instance_fit.fit_instance_step`).
    """
    settings = InstanceSettings.for_model(model)
    if "min_size" not in (getattr(model, "metadata", None) or {}).get("postprocessing", {}):
        settings = replace(settings, min_size=min_size_for(round(object_size, 2)))
    return settings


class StartScore:
    """The starting model on the painted cells, and the never-worse verdict.

    The starting model has not been trained on any painted cell: it is scored, and
    its instance step fitted, on up to :data:`~napari_unet.training.painted_score.MAX_SCORED`
    of them. The network being trained is scored on the held-out cells only, with the
    starting model's own instance step (a fine-tuned network's probabilities are
    calibrated like the start's training, not like the start on these cells). At the end
    the trained network, with an instance step fitted on the held-out cells from that
    same start, is kept only if it beats the starting model (with its fitted step) on
    them (:mod:`napari_unet.training.painted_score`).

    :meth:`judged_on` gives the start scored on some of those cells for the progress
    records only: a cross-fitted phase (:mod:`napari_unet.training.cross_fit`) must not
    pick its weights by the cells that judge them.
    """

    def __init__(
        self,
        model: UNet,
        held_out: HeldOutCells | None,
        painted: HeldOutCells | None,
        settings: InstanceSettings,
        object_size: float,
        device,
        compare: bool,
    ):
        self.held_out, self.device, self.object_size = held_out, device, object_size
        self.picks_weights = True  # the held-out cells pick the run's best weights
        self.settings = self.fitted_settings = settings
        self.score = self.fitted = None
        if held_out is None or not compare:  # from scratch: nothing to compare with
            return
        self.state = cpu_state(model)
        probabilities = painted.predict(model, device, output_classes=settings.output_classes)
        # by crop, so that judged_on() scores some of these cells without predicting again
        self._probabilities = {id(c): p for c, p in zip(painted.crops, probabilities, strict=True)}
        self.fitted_settings, _ = fit_instance_step(painted, probabilities, settings, object_size)
        on_held_out = probabilities[: len(held_out)]
        self.score = held_out.score(on_held_out, settings)
        self.fitted = held_out.score(on_held_out, self.fitted_settings)

    def evaluate(self, model: UNet):
        """The painted-cell score of ``model`` with the starting model's instance step."""
        return self.held_out.evaluate(model, self.settings, self.device)

    def judged_on(self, cells: HeldOutCells) -> StartScore:
        """The start scored on ``cells`` (some of the painted cells it was scored on).

        For progress records only: the held-out cells of the copy do not pick the run's
        best weights (:class:`BestWeights` keeps them by training loss), and the start's
        predictions are reused, not repeated.
        """
        judge = copy.copy(self)
        judge.held_out, judge.picks_weights = cells, False
        start = [self._probabilities[id(crop)] for crop in cells.crops]
        judge.score = cells.score(start, self.settings)
        return judge

    def verdict(self, result: TrainingResult, folds: list | None = None) -> TrainingResult:
        """Keep the start, or the best of the trained network and its mixes with the start.

        Each fine-tuned candidate (:data:`MIX_SHARES`) gets its instance step fitted on
        the cells that score it. The gentlest mix is the fine-tuned choice unless a larger
        share beats it by more than
        :func:`~napari_unet.training.painted_score.min_gain`; the start is kept only if
        it beats that choice by the same margin (a tie keeps the mix: on 1 or 2 held-out
        cells the score cannot tell them apart, and on unseen images the gentlest mix
        scored above the start on average, ``docs/benchmarks.md``).

        Parameters
        ----------
        result : TrainingResult
            The run; its model is set to the weights kept, its report added.
        folds : list of (dict, HeldOutCells), optional
            Cross-fitted trainings (:mod:`napari_unet.training.cross_fit`): each one's
            weights (CPU state dict) and the painted cells it never saw, which score it;
            the weights returned are their average (a "model soup" of fine-tunes from one
            start; Wortsman et al., ICML 2022) at the chosen share. ``None``: the
            result's weights, scored on the held-out cells.
        """
        model = result.model
        if folds is None:
            folds = [(cpu_state(model), self.held_out)]
        trained_state = soup([state for state, _ in folds])
        cells = HeldOutCells([crop for _, fold_cells in folds for crop in fold_cells.crops])
        start_state = self.state if self.fitted is not None else trained_state  # from scratch
        chosen = None  # (share, settings, score)
        for share in MIX_SHARES if self.fitted is not None else (1.0,):
            probabilities = []
            for state, fold_cells in folds:
                model.load_state_dict(mixed_state(start_state, state, share))
                probabilities += fold_cells.predict(
                    model, self.device, output_classes=self.settings.output_classes
                )
            settings, score = fit_instance_step(
                cells, probabilities, self.settings, self.object_size
            )
            if chosen is None or score.better_than(chosen[2], min_gain(score.n_cells)):
                chosen = (share, settings, score)
        share, settings, trained = chosen
        model.load_state_dict(mixed_state(start_state, trained_state, share))
        if self.fitted is None or not self.fitted.better_than(trained, min_gain(trained.n_cells)):
            kept = "trained"
        else:
            kept = "start"
            result.set_aside = copy.deepcopy(model)
            result.set_aside.metadata["postprocessing"] = settings.postprocessing()
            settings = self.fitted_settings
            model.load_state_dict(self.state)
            result.best_iteration = 0
        record = model.metadata["training"]
        report = PaintedCellReport(
            self.score,
            self.fitted,
            trained,
            kept,
            record["seconds"],
            share=share,
            cross_fitted=len(folds) > 1,
        )
        model.metadata["postprocessing"] = settings.postprocessing()
        record["best_iteration"] = result.best_iteration
        record["painted_cells"] = report.to_dict()
        result.painted = report
        return result


def cpu_state(model: UNet) -> dict:
    """A CPU copy of ``model``'s state dict (detached)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def soup(states: list[dict]) -> dict:
    """The average of state dicts of one network (a "model soup"; counters from the last).

    Parameters
    ----------
    states : list of dict of str to torch.Tensor
        State dicts of networks fine-tuned from one start (CPU tensors).

    Returns
    -------
    dict of str to torch.Tensor
        The mean of every floating-point tensor; the one state itself when alone.
    """
    if len(states) == 1:
        return states[0]
    return {
        name: torch.stack([s[name] for s in states]).mean(0) if value.is_floating_point() else value
        for name, value in states[-1].items()
    }


class BestWeights:
    """The best weights of a run, kept as a CPU copy.

    By validation score when there is validation data, else by the SEG on the
    held-out painted cells when cells were held out (and ``start.picks_weights``), else by
    smoothed training loss (from iteration 10 on, so that one lucky batch does not win).
    """

    def __init__(self, model: UNet, validation_data: list | None, start: StartScore):
        self.model = model
        self.validation_data = validation_data
        self.start = start if start.held_out is not None else None
        self.by_painted = self.start is not None and start.picks_weights
        self.state, self.iteration = self._copy(), 0
        self.score = -math.inf
        self.painted = None
        self.smoothed = self.loss = math.inf

    def _copy(self) -> dict:
        return cpu_state(self.model)

    def update(self, iteration: int, loss: float, validate: bool, planned: int, device):
        """Smooth ``loss``, score if asked; return the score and the painted-cell score."""
        smoothed = self.smoothed
        self.smoothed = (
            loss if not math.isfinite(smoothed) else smoothed + LOSS_SMOOTHING * (loss - smoothed)
        )
        score = painted = None
        if self.validation_data and validate:
            self.model.eval()
            score = validation_score(self.model, self.validation_data, device)
            self.model.train()
            if score > self.score:
                self.score, self.state, self.iteration = score, self._copy(), iteration
        elif self.start is not None and validate:
            current = self.start.evaluate(self.model)
            score = current.seg
            if current.better_than(self.painted):
                self.painted = current
                if self.by_painted:
                    self.state, self.iteration = self._copy(), iteration
            painted = PaintedProgress(self.start.score, current, self.painted)
        if (
            not self.validation_data
            and not (self.by_painted and validate)
            and self.smoothed < self.loss
            and iteration >= min(10, planned)
        ):
            self.state, self.iteration = self._copy(), iteration
        self.loss = min(self.loss, self.smoothed)
        return score, painted

    def restore(self, last_iteration: int) -> int:
        """Load the best weights into the model (the last ones if none was kept)."""
        if self.iteration == 0 and last_iteration:
            self.state, self.iteration = self._copy(), last_iteration
        self.model.load_state_dict(self.state)
        return self.iteration
