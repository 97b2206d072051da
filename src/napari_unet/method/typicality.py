"""Typical and spread-out cells first: the order "Where next" shows cells in with few painted.

Uncertainty sampling alone ("annotate where the model is unsure", Settles 2009) picks
the odd cells first; with a handful of painted cells they teach a poor fine-tune. In
that low-budget regime typical, representative samples do better, and uncertainty pays
off only later (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
Strategies Suit High and Low Budgets", ICML 2022, TypiClust). This module holds the
arithmetic, on plain arrays:

- :func:`cell_features` -- per cell: log area, mean and standard deviation of the
  intensity (texture), and the network's confidence;
- :func:`typicality` -- the inverse mean distance to the ``k`` nearest other cells in
  that feature space (Hacohen et al. 2022, eq. 4), a kNN density;
- :func:`uncertainty_weight` -- how much uncertainty counts, growing with the painted
  cells: ``n / (n + UNCERTAINTY_TURN)``;
- :func:`spread_order` -- greedy order by ``(1 - w) * typicality rank + w * uncertainty
  rank``, each step damped for cells near (in feature space and in the image) the cells
  painted or picked before it, so that the first picks cover the kinds of cells and the
  field.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "UNCERTAINTY_TURN",
    "cell_features",
    "spread_order",
    "typicality",
    "uncertainty_weight",
]

#: Painted cells at which uncertainty and typicality count equally in the ranking.
UNCERTAINTY_TURN = 20
#: Neighbours of the kNN density (Hacohen et al. 2022 use 20).
N_NEIGHBOURS = 20
#: Candidates ordered greedily; the rest follow by score (a user paints far fewer).
N_GREEDY = 64


def cell_features(
    labels: np.ndarray,
    ids: np.ndarray,
    confidence: np.ndarray,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Per-cell features: log area, [mean, std of intensity], confidence.

    Parameters
    ----------
    labels : np.ndarray
        int ``(Y, X)``, 0 = background.
    ids : np.ndarray
        int, the cells to describe (present in ``labels``).
    confidence : np.ndarray
        float, one per id, in [0, 1].
    image : np.ndarray, optional
        ``(Y, X)`` gray plane; without it the intensity columns are left out.

    Returns
    -------
    np.ndarray
        float64 ``(len(ids), 4)`` (``(len(ids), 2)`` without ``image``).

    Raises
    ------
    ValueError
        If ``confidence`` and ``ids`` differ in length or ``image`` in shape.
    """
    ids = np.asarray(ids, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if ids.shape != confidence.shape:
        raise ValueError(f"{ids.size} cell ids but {confidence.size} confidences")
    flat = np.asarray(labels, dtype=np.int64).ravel()
    size = max(int(flat.max(initial=0)), int(ids.max(initial=0))) + 1
    area = np.maximum(np.bincount(flat, minlength=size)[ids], 1)
    columns = [np.log(area), confidence]
    if image is not None:
        if np.shape(image) != np.shape(labels):
            raise ValueError(f"image {np.shape(image)} and labels {np.shape(labels)} differ")
        values = np.asarray(image, dtype=np.float64).ravel()
        mean = np.bincount(flat, values, minlength=size)[ids] / area
        square = np.bincount(flat, values**2, minlength=size)[ids] / area
        columns[1:1] = [mean, np.sqrt(np.maximum(square - mean**2, 0.0))]
    return np.stack(columns, axis=1) if ids.size else np.zeros((0, len(columns)))


def _standardized(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Columns centred on the reference's median, scaled by its spread (MAD, else std)."""
    centre = np.median(reference, axis=0)
    spread = 1.4826 * np.median(np.abs(reference - centre), axis=0)
    spread = np.where(spread > 1e-9, spread, reference.std(axis=0))
    return (features - centre) / np.where(spread > 1e-9, spread, 1.0)


def typicality(features: np.ndarray, k: int = N_NEIGHBOURS) -> np.ndarray:
    """Inverse mean distance to the ``k`` nearest other rows (Hacohen et al. 2022, eq. 4).

    Parameters
    ----------
    features : np.ndarray
        float ``(n, d)``, standardized columns.
    k : int
        Neighbours (fewer when ``n - 1 < k``).

    Returns
    -------
    np.ndarray
        float64 ``(n,)``, larger = denser (more typical); all ones when ``n < 2``.
    """
    n = len(features)
    if n < 2:
        return np.ones(n)
    k = min(int(k), n - 1)
    distances, _ = cKDTree(features).query(features, k=k + 1)
    return 1.0 / (np.asarray(distances).reshape(n, -1)[:, 1:].mean(axis=1) + 1e-6)


def uncertainty_weight(n_painted: int) -> float:
    """Weight of uncertainty in the score: 0 with no painted cell, 0.5 at the turn."""
    return float(n_painted) / (float(n_painted) + UNCERTAINTY_TURN)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties broken by position)."""
    if values.size < 2:
        return np.ones(values.size)
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / (values.size - 1)


def spread_order(
    features: np.ndarray,
    centres: np.ndarray,
    uncertainty: np.ndarray,
    is_cell: np.ndarray,
    painted_features: np.ndarray,
    painted_centres: np.ndarray,
    diameter: float,
) -> np.ndarray:
    """Typical, then uncertain, candidates, spread over the kinds of cells and the image.

    Parameters
    ----------
    features : np.ndarray
        float ``(n, d)`` features of the candidates (:func:`cell_features`); rows of
        non-cells (``is_cell`` False) are ignored.
    centres : np.ndarray
        float ``(n, 2)`` candidate centres ``(y, x)``, pixels.
    uncertainty : np.ndarray
        float ``(n,)``, ``1 - confidence``.
    is_cell : np.ndarray
        bool ``(n,)``: a predicted cell (True) or an uncertain region (typicality 0).
    painted_features, painted_centres : np.ndarray
        ``(m, d)`` and ``(m, 2)``: the cells painted already (``m`` may be 0).
    diameter : float
        A typical cell's diameter, pixels: candidates closer than two of them to a
        painted or picked cell are damped.

    Returns
    -------
    np.ndarray
        int64 ``(n,)``, indices into the candidates, first to show first.
    """
    n = len(centres)
    cells = np.flatnonzero(is_cell)
    typical = np.zeros(n)
    feats = np.zeros((n, features.shape[1] if features.ndim == 2 else 0))
    density = np.ones(0)
    if cells.size:
        reference = features[cells]
        feats[cells] = _standardized(reference, reference)
        density = typicality(feats[cells])
        typical[cells] = _ranks(density)
        if len(painted_features):
            painted_features = _standardized(painted_features, reference)
    w = uncertainty_weight(len(painted_features))
    score = (1.0 - w) * typical + w * _ranks(np.asarray(uncertainty, dtype=np.float64))
    # the distance at which a cell counts as "like" another: a typical neighbour distance
    radius = float(np.median(1.0 / density)) if cells.size > 1 else 1.0
    near_feat = np.full(n, np.inf)
    near_image = np.full(n, np.inf)
    for f, c in zip(painted_features, painted_centres, strict=True):
        near_feat = np.minimum(near_feat, np.linalg.norm(feats - f, axis=1))
        near_image = np.minimum(near_image, np.linalg.norm(centres - c, axis=1))
    order: list[int] = []
    left = np.ones(n, bool)
    for _ in range(min(n, N_GREEDY)):
        damp = np.minimum(1.0, near_image / (2.0 * max(diameter, 1.0)))
        damp = damp * np.where(is_cell, np.minimum(1.0, near_feat / max(radius, 1e-6)), 1.0)
        value = np.where(left, score * (damp + 1e-3), -np.inf)
        pick = int(np.argmax(value))
        order.append(pick)
        left[pick] = False
        if is_cell[pick]:
            near_feat = np.minimum(near_feat, np.linalg.norm(feats - feats[pick], axis=1))
        near_image = np.minimum(near_image, np.linalg.norm(centres - centres[pick], axis=1))
    rest = np.flatnonzero(left)
    rest = rest[np.argsort(-score[rest], kind="stable")]
    return np.concatenate([np.asarray(order, np.int64), rest.astype(np.int64)])
