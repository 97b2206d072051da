"""The instance step fitted to the user's cells.

The settings that turn probabilities into cells (foreground and seed thresholds, the
smallest cell, smoothing of the outlines scaled by the object size, hole filling) are
chosen by the SEG they give on the held-out painted cells
(:mod:`napari_unet.training.painted_score`). The network runs once per crop; only the instance
step is repeated, so a fit takes a second or two.

The search is a coordinate search from the model's own settings: thresholds jointly on
a grid, then smoothing, hole filling and the smallest cell, one at a time. A change is
kept only when it raises the score (SEG + AP@0.5 / 10) by more than
:func:`~napari_unet.training.painted_score.min_gain`, so a few cells do not move the settings on
noise.
"""

from __future__ import annotations

from dataclasses import replace

from napari_unet.method.instances import min_size_for
from napari_unet.training.painted_score import HeldOutCells, PaintedScore, min_gain

#: Foreground probability thresholds tried.
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: Seed (cell interior) probability thresholds tried (three classes).
SEED_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Outline smoothing tried, as a share of the object size (Gaussian sigma, pixels).
SMOOTHING_SHARES = (0.0, 0.03, 0.06)
#: Smallest cell tried, as a multiple of :func:`~napari_unet.method.instances.min_size_for`.
MIN_SIZE_FACTORS = (0.25, 0.5, 1.0)


def _objective(score: PaintedScore) -> float:
    return score.seg + 0.1 * score.ap


def fit_instance_step(
    held_out: HeldOutCells, probabilities: list, start, object_size: float
) -> tuple[object, PaintedScore]:
    """Choose the instance step that scores best on the held-out painted cells.

    Parameters
    ----------
    held_out : HeldOutCells
        The cells scored.
    probabilities : list of np.ndarray
        ``held_out.predict(model, output_classes=start.output_classes)``.
    start : napari_unet.inference.segment.InstanceSettings
        The model's current settings, where the search starts.
    object_size : float
        Typical cell diameter, pixels (scales the smoothing and smallest cell tried).

    Returns
    -------
    settings : InstanceSettings
        The fitted settings (``start`` when nothing scores better).
    score : PaintedScore
        Their score.
    """
    best, best_score = start, held_out.score(probabilities, start)
    cache = {start: best_score}
    least = min_gain(len(held_out))

    def consider(candidates):
        nonlocal best, best_score
        for candidate in candidates:
            if candidate not in cache:
                cache[candidate] = held_out.score(probabilities, candidate)
            if _objective(cache[candidate]) > _objective(best_score) + least:
                best, best_score = candidate, cache[candidate]

    if start.three_class:
        base = best
        consider(
            replace(base, threshold=t, seed_threshold=s)
            for t in THRESHOLDS
            for s in SEED_THRESHOLDS
        )
        base = best
        consider(
            replace(base, smoothing=round(share * object_size, 1)) for share in SMOOTHING_SHARES
        )
        consider([replace(best, fill_holes=not best.fill_holes)])
    else:
        base = best
        consider(replace(base, threshold=t) for t in THRESHOLDS)
    default_min = min_size_for(object_size)
    base = best
    consider(replace(base, min_size=max(8, int(f * default_min))) for f in MIN_SIZE_FACTORS)
    return best, best_score
