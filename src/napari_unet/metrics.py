"""Instance segmentation scores: Cell Tracking Challenge SEG, AP@IoU, partition agreement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Matching:
    """Overlap statistics between ground-truth and predicted objects of one image.

    Attributes
    ----------
    gt_ids, pred_ids : np.ndarray
        Object ids of each overlapping (ground truth, prediction) pair.
    iou : np.ndarray
        Intersection over union of each pair.
    overlap_of_gt : np.ndarray
        Intersection divided by the ground-truth object's area.
    n_gt, n_pred : int
        Number of objects in each image.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    iou: np.ndarray
    overlap_of_gt: np.ndarray
    n_gt: int
    n_pred: int


def match(gt: np.ndarray, pred: np.ndarray) -> Matching:
    """Pairwise overlaps of all touching object pairs (vectorised, no dense matrix).

    Parameters
    ----------
    gt, pred : np.ndarray
        Integer label images of the same shape, 0 = background.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    _, g = np.unique(gt, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    g = g.ravel().astype(np.int64) + (0 if gt.min() == 0 else 1)
    p = p.ravel().astype(np.int64) + (0 if pred.min() == 0 else 1)
    n_g, n_p = int(g.max()) + 1, int(p.max()) + 1
    area_g = np.bincount(g, minlength=n_g)
    area_p = np.bincount(p, minlength=n_p)
    pairs = np.bincount(g * n_p + p, minlength=n_g * n_p)
    nz = np.flatnonzero(pairs)
    gi, pi = nz // n_p, nz % n_p
    keep = (gi > 0) & (pi > 0)
    gi, pi, inter = gi[keep], pi[keep], pairs[nz][keep]
    union = area_g[gi] + area_p[pi] - inter
    return Matching(
        gi,
        pi,
        inter / union,
        inter / area_g[gi],
        int((area_g[1:] > 0).sum()),
        int((area_p[1:] > 0).sum()),
    )


def seg_score(gt: np.ndarray, pred: np.ndarray) -> float:
    """Cell Tracking Challenge SEG: mean matched IoU per ground-truth object.

    A ground-truth object is matched to the predicted object that covers more than
    half of its pixels (at most one can); its score is their IoU, 0 if unmatched.
    (Maška et al., Bioinformatics 2014.)

    Returns
    -------
    float
        In [0, 1]; ``nan`` when the ground truth has no object.
    """
    m = match(gt, pred)
    if m.n_gt == 0:
        return float("nan")
    return float(m.iou[m.overlap_of_gt > 0.5].sum() / m.n_gt)


def average_precision(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Average precision at an IoU threshold as in the 2018 Data Science Bowl.

    ``TP / (TP + FP + FN)``, a pair being a true positive when IoU > ``threshold``
    (unique for thresholds >= 0.5).

    Returns
    -------
    float
        In [0, 1]; 1 when both images are empty.
    """
    counts = match_counts(gt, pred, threshold)
    denominator = counts[0] + counts[1] + counts[2]
    return 1.0 if denominator == 0 else counts[0] / denominator


def match_counts(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` at an IoU threshold >= 0.5 (see :func:`average_precision`).

    Raises
    ------
    ValueError
        If ``threshold`` < 0.5 (matches would not be unique).
    """
    if threshold < 0.5:
        raise ValueError(f"IoU threshold must be >= 0.5 for unique matching, got {threshold}")
    m = match(gt, pred)
    tp = int((m.iou > threshold).sum())
    return tp, m.n_pred - tp, m.n_gt - tp


def partition_agreement(reference, labels, band_rows: int = 1024) -> float:
    """Share of pixels on which two label images agree, up to the numbering of objects.

    Objects of the two images are matched one to one when their intersection over
    union exceeds 0.5. A pixel agrees when it is background in both, or lies in a
    matched pair's intersection. 1.0 means the same partition into background and
    objects, whatever the ids; a cell split in two loses at least its smaller part,
    two cells merged into one lose at least the smaller cell, a cell missing loses all
    its pixels. Used to compare block-wise (distributed) with single-machine
    segmentation.

    Parameters
    ----------
    reference, labels : array-like
        Integer label images of one shape, 0 = background; numpy, zarr or dask arrays
        are read ``band_rows`` rows at a time (memory follows the band, not the image).
    band_rows : int
        Rows read at a time.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If the shapes differ or the images are empty.
    """
    from scipy.sparse import coo_matrix

    if tuple(reference.shape) != tuple(labels.shape):
        raise ValueError(f"label images differ in shape: {reference.shape} and {labels.shape}")
    n_pixels = int(np.prod(reference.shape, dtype=np.int64))
    if n_pixels == 0:
        raise ValueError("label images are empty")
    counts = None
    for start in range(0, reference.shape[0], band_rows):
        a = np.asarray(reference[start : start + band_rows]).ravel().astype(np.int64)
        b = np.asarray(labels[start : start + band_rows]).ravel().astype(np.int64)
        band = coo_matrix((np.ones(a.size, np.int64), (a, b))).tocsr()
        if counts is None:
            counts = band
        else:
            shape = (max(counts.shape[0], band.shape[0]), max(counts.shape[1], band.shape[1]))
            counts.resize(shape)
            band.resize(shape)
            counts = counts + band
    counts = counts.tocoo()
    area_a = np.asarray(counts.sum(axis=1)).ravel()
    area_b = np.asarray(counts.sum(axis=0)).ravel()
    i, j, inter = counts.row, counts.col, counts.data
    objects = (i > 0) & (j > 0)
    iou = inter / (area_a[i] + area_b[j] - inter)
    agreeing = inter[objects & (iou > 0.5)].sum() + inter[(i == 0) & (j == 0)].sum()
    return float(agreeing / n_pixels)
