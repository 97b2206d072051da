"""Cross-fitting the never-worse rule when only a few cells are painted.

With up to :data:`~napari_unet.training.painted_score.MAX_CROSS_FITTED` painted cells, the
held-out share of :func:`~napari_unet.training.painted_score.hold_out_cells` is a single
cell, and with 2 there is none: one IoU cannot tell a fine-tune that hurts from one that
helps (on small crowded phase-contrast cells, a 5-cell fine-tune kept by it lost 0.09 SEG
on unseen images, an unguarded 2-cell one 0.46). Here the
painted cells are split into two folds; the starting model is fine-tuned twice, each time
for half the budget without one fold (its cells and the painted background around them get
no loss), so that every painted cell scores a network that never saw it. The never-worse
rule (:meth:`napari_unet.training.selection.StartScore.verdict`) then compares the start
with the two networks, mixed with the start at each share, on all the painted cells, and
returns the average of the two networks (a "model soup" of fine-tunes from one start;
Wortsman et al., ICML 2022) at the chosen share, or the start.

This is cross-fitting (Chernozhukov et al., Econometrics Journal 2018), here in its simplest
use: an honest score for every sample when none can be spared. The cost: each network learns
from half the painted cells for half the time (``docs/method.md``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

import numpy as np

from napari_unet.method.annotation import BACKGROUND, FIRST_CELL
from napari_unet.training.config import TrainingConfig, TrainingProgress, TrainingResult
from napari_unet.training.painted_score import (
    MAX_CROSS_FITTED,
    MIN_CROSS_FITTED,
    CellCrops,
    HeldOutCells,
    as_partial,
    painted_planes,
    without_cells,
)
from napari_unet.training.selection import StartScore, cpu_state, soup


@dataclass(frozen=True)
class Fold:
    """One fold of a cross-fit over the painted cells.

    Attributes
    ----------
    trained_on : list of np.ndarray
        int32 annotations in the partial convention without this fold's cells and the
        painted background around them: what the fold's network is trained on.
    cells : HeldOutCells
        This fold's cells, which score that network.
    """

    trained_on: list
    cells: HeldOutCells


def cross_fit_folds(
    images,
    annotations,
    *,
    dense: bool,
    object_size: float,
    percentiles: tuple[float, float],
    rng: np.random.Generator,
) -> list[Fold] | None:
    """Split few painted cells into two folds, each held out of one of two trainings.

    With :data:`~napari_unet.training.painted_score.MIN_CROSS_FITTED` to
    :data:`~napari_unet.training.painted_score.MAX_CROSS_FITTED` painted cells a held-out
    share is one cell or none, too few to see a fine-tune that hurts; trained twice, each
    time without one fold, every painted cell scores a network that never saw it
    (cross-fitting; ``docs/method.md``).

    Parameters
    ----------
    images, annotations, dense, object_size, percentiles, rng
        As for :func:`hold_out_cells`; the annotations are not modified.

    Returns
    -------
    list of Fold or None
        Two folds (the larger first); ``None`` when the painted cells are fewer than
        ``MIN_CROSS_FITTED`` or more than ``MAX_CROSS_FITTED``, or when
        a fold's training would lack a painted cell or painted background.
    """
    partial = [as_partial(a, dense) for a in annotations]
    candidates, planes = painted_planes(images, partial)
    if not MIN_CROSS_FITTED <= len(candidates) <= MAX_CROSS_FITTED:
        return None
    order = rng.permutation(len(candidates))
    half = (len(candidates) + 1) // 2  # two folds: each network learns from half the cells
    crop = CellCrops(planes, partial, percentiles, object_size)
    folds = []
    for picked in (order[:half], order[half:]):
        cells = [candidates[i] for i in sorted(picked)]
        crops = [crop(c) for c in cells]
        trained_on = without_cells(partial, cells, crops)
        if not any((a == BACKGROUND).any() for a in trained_on) or not any(
            (a >= FIRST_CELL).any() for a in trained_on
        ):
            return None
        folds.append(Fold(trained_on, HeldOutCells(crops)))
    return folds


def all_cells(folds: list[Fold]) -> HeldOutCells:
    """Every fold's cells, in fold order."""
    return HeldOutCells([crop for fold in folds for crop in fold.cells.crops])


def _phase_config(
    config: TrainingConfig, started: float, done: int, phases_left: int
) -> TrainingConfig | None:
    """``config`` with the budget left (seconds, iterations) shared among the phases left.

    ``None`` when no iteration is left (a cap smaller than the number of folds).
    """
    seconds = None
    if config.max_seconds is not None:
        left = config.max_seconds - (time.perf_counter() - started)
        seconds = max(left, 0.0) / phases_left
    n_iterations = None
    if config.n_iterations is not None:
        n_iterations = math.ceil((config.n_iterations - done) / phases_left)
        if n_iterations < 1:
            return None
    return replace(config, max_seconds=seconds, n_iterations=n_iterations)


def train_folds(
    fit: Callable,
    model,
    folds: list[Fold],
    start: StartScore,
    config: TrainingConfig,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """Fine-tune ``model`` once per fold, without that fold's cells; then the verdict.

    Parameters
    ----------
    fit : callable
        ``fit(network, trained_on, scorer, config)``: the training generator of one
        phase (:func:`napari_unet.training.train` builds it), returning a
        :class:`TrainingResult` with ``network`` trained on the annotations
        ``trained_on``, its weights chosen by the training loss (not by the cells that
        judge them), its progress scored against ``scorer``.
    model : UNet
        The starting network (not modified).
    folds : list of Fold
        From :func:`cross_fit_folds`.
    start : StartScore
        The starting model scored on :func:`all_cells`.
    config : TrainingConfig
        The run's settings; its budget is shared among the folds.

    Yields
    ------
    TrainingProgress
        One run's records: iterations and seconds count on across the phases, and a
        snapshot in a later phase is the average of the networks trained so far
        (closest to what will be returned).

    Returns
    -------
    TrainingResult
        After :meth:`StartScore.verdict`: the start, or the average of the fold networks
        mixed with the start; ``history`` over all phases.
    """
    started = time.perf_counter()
    states, history, lengths, result = [], [], [], None
    for k, fold in enumerate(folds):
        phase_config = _phase_config(config, started, len(history), len(folds) - k)
        if phase_config is None:
            break
        scorer = start.judged_on(fold.cells)
        offset, elapsed = len(history), time.perf_counter() - started
        phase = fit(copy.deepcopy(model), fold.trained_on, scorer, phase_config)
        try:
            while True:
                try:
                    progress = next(phase)
                except StopIteration as end:
                    result = end.value
                    break
                planned = offset + progress.n_iterations * (len(folds) - k)
                if config.n_iterations is not None:
                    planned = min(planned, config.n_iterations)
                snapshot = progress.snapshot
                if snapshot is not None and states:
                    snapshot.load_state_dict(soup([*states, snapshot.state_dict()]))
                progress = replace(
                    progress,
                    iteration=offset + progress.iteration,
                    n_iterations=max(planned, offset + progress.iteration),
                    seconds=elapsed + progress.seconds,
                    fraction=(k + progress.fraction) / len(folds),
                    snapshot=snapshot,
                )
                history.append(progress)
                yield progress
        finally:
            phase.close()
        states.append(cpu_state(result.model))
        lengths.append(len(history) - offset)
        if result.stopped:
            break
    record = result.model.metadata["training"]
    record.update(
        config=config.to_dict(),
        iterations_done=len(history),
        seconds=time.perf_counter() - started,
        stopped=result.stopped,
        cross_fit={
            "cells": [len(fold.cells) for fold in folds[: len(states)]],
            "iterations": lengths,
        },
    )
    result.history, result.best_iteration = history, len(history)
    scored = [(state, fold.cells) for state, fold in zip(states, folds, strict=False)]
    return start.verdict(result, folds=scored)
