"""The painted-cell score: painted cells held out of training measure what it gives.

A share of the painted cells (:data:`HELD_OUT_SHARE`, at most :data:`MAX_HELD_OUT`) is
held out of training: their pixels and the painted background around them get no loss.
They score any network on the user's own cells with the Cell Tracking Challenge SEG
(mean IoU of each held-out cell with the predicted cell that covers more than half of
it; Maška et al., Bioinformatics 2014) and AP@0.5 (predicted cells lying mostly on the
painted background around them count as false positives). Training uses that score to
compare the starting model with the model being trained, to keep the better one, and to
fit the instance step (:mod:`napari_unet.training.instance_fit`).

Held-out cells, not a cross-validation over the painted cells: a k-fold would train k
networks in a budget of minutes that fits one. Except with very few painted cells
(:data:`MIN_CROSS_FITTED` to :data:`MAX_CROSS_FITTED`), where a held-out share is a
single cell or none, which cannot show a fine-tune that hurts: there the cells are split
into two folds (:mod:`napari_unet.training.cross_fit`), each trained without one fold for
half the budget, so that every painted cell scores a network that never saw it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_unet.method.annotation import BACKGROUND, FIRST_CELL
from napari_unet.method.images import image_layout, iter_planes, percentile_normalization
from napari_unet.method.regions import predict_regions

#: Share of the painted cells held out of training to score it.
HELD_OUT_SHARE = 0.25
#: Most cells held out (scoring them costs time in every evaluation).
MAX_HELD_OUT = 10
#: Most painted cells a model not trained on them (the start) is scored on.
MAX_SCORED = 40
#: Fewest painted cells with which any is held out (two or more stay for training).
MIN_PAINTED_TO_HOLD_OUT = 3
#: Fewest painted cells with which a fine-tune is cross-fitted (one cell per fold): with
#: 2 painted cells nothing can be held out, and an unguarded 2-cell fine-tune fell to SEG
#: 0.05 on unseen small crowded cells (``docs/benchmarks.md``, "Round 3, session 6").
MIN_CROSS_FITTED = 2
#: Most painted cells that are cross-fitted (:mod:`napari_unet.training.cross_fit`) rather
#: than held out by share: with 5 the share holds out one cell. With 10 cells on Usiigaci
#: 1–25 cross-fitting cost 0.04 SEG on unseen images, each fold learning from half the
#: cells (``docs/benchmarks.md``, "Round 3").
MAX_CROSS_FITTED = 5
#: Spread of one cell's IoU between two models or two instance steps that are equally
#: good (the noise of a score on one cell). A model or a setting must beat another by
#: more than ``CELL_NOISE / sqrt(n_cells)`` (:func:`min_gain`) to replace it: 0.035 on 2
#: held-out cells, 0.016 on 10, 0.008 on 40. A tie keeps the start, which has seen far
#: more cells than were painted.
CELL_NOISE = 0.05


def min_gain(n_cells: int) -> float:
    """Least score gain that is not noise, on ``n_cells`` cells (see :data:`CELL_NOISE`)."""
    return CELL_NOISE / math.sqrt(max(n_cells, 1))


@dataclass(frozen=True)
class PaintedScore:
    """A network's score on the held-out painted cells.

    Attributes
    ----------
    seg : float
        Cell Tracking Challenge SEG in [0, 1]: mean IoU of each held-out cell with its
        matching predicted cell (0 when none covers more than half of it).
    ap : float
        AP@0.5 in [0, 1]: ``TP / (TP + FP + FN)`` over the held-out cells, a false
        positive being a predicted cell that lies mostly on the painted background
        around them.
    n_cells : int
        Held-out cells scored.
    """

    seg: float
    ap: float
    n_cells: int

    def better_than(self, other: PaintedScore | None, margin: float = 0.0) -> bool:
        """Whether this score beats ``other`` by more than ``margin``.

        SEG decides; AP@0.5 breaks a tie.
        """
        if other is None:
            return True
        if self.seg != other.seg:
            return self.seg > other.seg + margin
        return self.ap > other.ap + margin


@dataclass(frozen=True)
class PaintedProgress:
    """The painted-cell score while training runs.

    Attributes
    ----------
    start : PaintedScore
        The starting model (its own instance step).
    current : PaintedScore
        The network being trained now (the start's fitted instance step).
    best : PaintedScore
        The best so far in this run (the weights that would be kept now).
    """

    start: PaintedScore | None
    current: PaintedScore
    best: PaintedScore

    @property
    def message(self) -> str:
        """One line for a status display."""
        start = f"start {self.start.seg:.2f} · " if self.start is not None else ""
        return (
            f"painted-cell SEG: {start}now {self.current.seg:.2f} · "
            f"best {self.best.seg:.2f} ({self.current.n_cells} held-out cells)"
        )


@dataclass(frozen=True)
class _Crop:
    """One held-out cell: where it is, and its masks in that region."""

    plane: np.ndarray  # the whole plane (Y, X), as given
    normalization: tuple[float, float]  # the plane's (low, high)
    box: tuple[slice, slice]  # the region scored: the cell and the ring around it
    truth: np.ndarray  # bool, region-shaped: the held-out cell
    background: np.ndarray  # bool, region-shaped: painted background around it


class HeldOutCells:
    """Painted cells held out of training, ready to score networks on.

    Build it with :func:`hold_out_cells`.
    """

    def __init__(self, crops: list[_Crop]):
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def first(self, n: int) -> HeldOutCells:
        """The first ``n`` cells (those of ``painted`` that were held out)."""
        return HeldOutCells(self.crops[:n])

    def predict(self, model, device="auto", precision="auto", output_classes=None) -> list:
        """Class probabilities of ``model`` on every held-out crop.

        Returns
        -------
        list of np.ndarray
            float32 ``(len(output_classes), Y, X)`` per crop.
        """
        return predict_regions(
            [(crop.plane, crop.normalization, crop.box) for crop in self.crops],
            model,
            device=device,
            precision=precision,
            output_classes=output_classes,
        )

    def score(self, probabilities: list, settings) -> PaintedScore:
        """Score predicted probabilities split into cells by ``settings``.

        Parameters
        ----------
        probabilities : list of np.ndarray
            From :meth:`predict` with ``settings.output_classes``.
        settings : napari_unet.inference.segment.InstanceSettings
            The instance step.
        """
        ious, true_positives, false_positives = [], 0, 0
        for crop, predicted in zip(self.crops, probabilities, strict=True):
            labels = settings.labels(predicted)[0]
            iou, extra = _match_one(crop, labels)
            ious.append(iou)
            true_positives += iou > 0.5
            false_positives += extra
        n = len(ious)
        seg = float(np.mean(ious)) if n else math.nan
        denominator = n + false_positives  # TP + FN = n
        ap = true_positives / denominator if denominator else math.nan
        return PaintedScore(round(seg, 4), round(float(ap), 4), n)

    def evaluate(self, model, settings, device="auto", precision="auto") -> PaintedScore:
        """Predict and score in one call."""
        return self.score(self.predict(model, device, precision, settings.output_classes), settings)


def _match_one(crop: _Crop, labels: np.ndarray) -> tuple[float, int]:
    """Score one held-out cell against the predicted labels of its crop.

    Returns the IoU with the predicted cell covering more than half of it (0 if none)
    and the number of other predicted cells lying mostly on the painted background.
    """
    truth = crop.truth
    area = int(truth.sum())
    ids, counts = np.unique(labels[truth], return_counts=True)
    iou, matched = 0.0, 0
    for cell, overlap in zip(ids, counts, strict=True):
        if cell and overlap > area / 2:
            union = area + int((labels == cell).sum()) - int(overlap)
            iou, matched = overlap / union, int(cell)
    sizes = np.bincount(labels.ravel())
    on_background = np.bincount(labels[crop.background], minlength=len(sizes))
    mostly_background = np.flatnonzero(on_background[1:] * 2 > sizes[1:]) + 1
    return float(iou), int(np.count_nonzero(mostly_background != matched))


def as_partial(annotation: np.ndarray, dense: bool) -> np.ndarray:
    """An annotation in the partial convention (0 ignored, 1 background, 2… cells), int32.

    A dense annotation (0 background, 1… cells) is converted; a partial one copied.
    """
    annotation = np.asarray(annotation)
    if not dense:
        return annotation.astype(np.int32, copy=True)
    return np.where(annotation > 0, annotation.astype(np.int32) + 1, BACKGROUND).astype(np.int32)


def painted_planes(images, partial) -> tuple[list, dict]:
    """Every painted cell, and the planes they are painted in.

    Returns
    -------
    candidates : list of tuple
        ``(image, plane index, cell id, cut by the image edge)`` per painted cell.
    planes : dict
        The painted planes by ``(image, plane index)``.
    """
    candidates = []
    planes: dict = {}
    for n, (image, annotation) in enumerate(zip(images, partial, strict=True)):
        for index, plane in iter_planes(image, image_layout(image)):
            labels = annotation[index] if index else annotation
            ids = np.unique(labels[labels >= FIRST_CELL])
            if not len(ids):
                continue
            planes[n, index] = plane
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            candidates.extend((n, index, int(i), bool(np.isin(i, edge))) for i in ids)
    return candidates, planes


class CellCrops:
    """Builds the :class:`_Crop` of painted cells (read before any cell is hidden)."""

    def __init__(self, planes: dict, partial: list, percentiles, object_size: float):
        self.planes, self.partial, self.percentiles = planes, partial, percentiles
        self.ring = max(3, round(object_size / 4))
        self.prepared: dict = {}  # once per plane: pixels, normalisation, each cell's box

    def __call__(self, candidate: tuple) -> _Crop:
        """The crop of one cell of :func:`painted_planes`."""
        n, index, cell, _ = candidate
        labels = self.partial[n][index] if index else self.partial[n]
        if (n, index) not in self.prepared:
            plane = np.asarray(self.planes[n, index])
            normalization = percentile_normalization(plane, self.percentiles)
            self.prepared[n, index] = plane, normalization, ndi.find_objects(labels)
        plane, normalization, boxes = self.prepared[n, index]
        box = _grown_box(boxes[cell - 1], self.ring + 1, plane.shape)
        truth = labels[box] == cell
        around = ndi.binary_dilation(truth, iterations=self.ring)
        background = around & (labels[box] == BACKGROUND)
        return _Crop(plane, normalization, box, truth, background)


def without_cells(partial: list, cells: list, crops: list[_Crop]) -> list[np.ndarray]:
    """Copies of ``partial`` without ``cells`` and the painted background around them."""
    hidden = [a.copy() for a in partial]
    for (n, index, _, _), crop in zip(cells, crops, strict=True):
        plane_labels = hidden[n][index] if index else hidden[n]
        plane_labels[crop.box][crop.truth | crop.background] = 0
    return hidden


def hold_out_cells(
    images,
    annotations,
    *,
    dense: bool,
    object_size: float,
    percentiles: tuple[float, float],
    rng: np.random.Generator,
    share: float = HELD_OUT_SHARE,
) -> tuple[list[np.ndarray], HeldOutCells | None, HeldOutCells | None]:
    """Hold a share of the painted cells out of training.

    Parameters
    ----------
    images, annotations : sequence of array-like
        As for :func:`napari_unet.training.train` (2D, RGB, or stacks whose painted
        planes count), already checked (:func:`napari_unet.training.samples.check_pairs`);
        the annotations are not modified.
    dense : bool
        The annotations are dense ground truth (0 = background).
    object_size : float
        Typical cell diameter, pixels: sets the painted background held out around a
        cell (a quarter of it, at least 3 px).
    percentiles : (float, float)
        Normalisation percentiles of the network.
    rng : np.random.Generator
        Picks the cells.
    share : float
        Share of the painted cells held out, in [0, 1); 0 holds none out.

    Returns
    -------
    annotations : list of np.ndarray
        int32 copies in the partial convention, without the held-out cells and the
        painted background around them (0 there).
    held_out : HeldOutCells or None
        The held-out cells; ``None`` when fewer than :data:`MIN_PAINTED_TO_HOLD_OUT`
        cells are painted or ``share`` is 0.
    painted : HeldOutCells or None
        The held-out cells and other painted cells, :data:`MAX_SCORED` at most: a
        model that has not been trained on them (the starting model) is scored and
        its instance step fitted on these; ``None`` with ``held_out``.
    """
    partial = [as_partial(a, dense) for a in annotations]
    candidates, planes = painted_planes(images, partial)
    n_held = min(MAX_HELD_OUT, max(1, round(share * len(candidates)))) if share > 0 else 0
    if len(candidates) < MIN_PAINTED_TO_HOLD_OUT or n_held == 0:
        return partial, None, None
    inside = [c for c in candidates if not c[3]]
    pool = inside if len(inside) >= n_held else candidates
    order = rng.permutation(len(pool))
    held = [pool[i] for i in sorted(order[:n_held])]
    others = [pool[i] for i in sorted(order[n_held:MAX_SCORED])]
    crop = CellCrops(planes, partial, percentiles, object_size)
    held_crops = [crop(c) for c in held]
    other_crops = [crop(c) for c in others]
    kept = without_cells(partial, held, held_crops)
    return kept, HeldOutCells(held_crops), HeldOutCells(held_crops + other_crops)


def _grown_box(box: tuple, margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, size))
        for s, size in zip(box, shape, strict=True)
    )
