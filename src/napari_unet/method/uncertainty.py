"""How unsure the network is: per-pixel uncertainty and per-cell confidence.

Both come from the class probabilities the network predicts anyway (no extra forward
pass), so the live preview can show them at no noticeable cost:

- :func:`class_entropy` -- entropy of the class probabilities, divided by ``log(C)``
  so that it lies in [0, 1] (0: one class has probability 1; 1: all classes equal);
- :func:`margin_uncertainty` -- ``1 - (p1 - p2)``, one minus the margin between the
  two most probable classes;
- :func:`cell_confidence` -- one number per predicted cell: the mean of ``1 -
  uncertainty`` over its pixels.

The choice of the entropy for the preview's uncertainty layer and of the mean
certainty for the cell confidence was made by measuring how well each candidate
predicts wrong pixels and wrong cells on annotated images (``benchmarks/
bench_uncertainty.py``, docs/method.md, "Uncertainty").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "cell_confidence",
    "class_entropy",
    "full_probabilities",
    "margin_uncertainty",
    "pixel_uncertainty",
]


def full_probabilities(
    predicted: np.ndarray, output_classes: Sequence[int], n_classes: int
) -> np.ndarray:
    """All class probabilities from those of all classes but (at most) one.

    The instance step asks the tiled prediction for fewer classes than the network
    has (background and interior of a three-class model; the cell class of a
    two-class one); the missing class is ``1 - sum`` of the others (the softmax
    sums to 1).

    Parameters
    ----------
    predicted : np.ndarray
        float ``(len(output_classes), ...)`` probabilities of ``output_classes``.
    output_classes : sequence of int
        Class indices of the rows of ``predicted``, distinct, in ``0 .. n_classes-1``.
    n_classes : int
        Number of classes of the network.

    Returns
    -------
    np.ndarray
        float32 ``(n_classes, ...)``.

    Raises
    ------
    ValueError
        If more than one class is missing or the classes do not fit ``n_classes``.
    """
    predicted = np.asarray(predicted, dtype=np.float32)
    classes = [int(c) for c in output_classes]
    if len(set(classes)) != len(classes) or any(not 0 <= c < n_classes for c in classes):
        raise ValueError(f"output_classes {classes} are not distinct classes of 0..{n_classes - 1}")
    if predicted.shape[0] != len(classes):
        raise ValueError(
            f"predicted has {predicted.shape[0]} rows for {len(classes)} output classes"
        )
    missing = [c for c in range(n_classes) if c not in classes]
    if len(missing) > 1:
        raise ValueError(f"classes {missing} are missing: at most one can be recovered")
    full = np.empty((n_classes, *predicted.shape[1:]), np.float32)
    for row, c in enumerate(classes):
        full[c] = predicted[row]
    if missing:
        full[missing[0]] = np.clip(1.0 - predicted.sum(axis=0), 0.0, 1.0)
    return full


def class_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Normalised entropy of the class probabilities, per pixel.

    ``H = -sum_c p_c log p_c / log C`` (Shannon entropy; the usual uncertainty
    measure of active learning, Settles 2009, "Active Learning Literature Survey",
    sec. 3.1).

    Parameters
    ----------
    probabilities : np.ndarray
        float ``(C, ...)``, C >= 2, summing to 1 over the first axis.

    Returns
    -------
    np.ndarray
        float32 ``(...)`` in [0, 1].
    """
    p = np.asarray(probabilities, dtype=np.float32)
    if p.shape[0] < 2:
        raise ValueError(f"need the probabilities of >= 2 classes, got {p.shape[0]}")
    logs = np.log(np.clip(p, 1e-7, 1.0))
    h = -(p * logs).sum(axis=0) / np.float32(np.log(p.shape[0]))
    return np.clip(h, 0.0, 1.0).astype(np.float32, copy=False)


def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """``1 - (p1 - p2)``: one minus the margin of the two most probable classes.

    Parameters
    ----------
    probabilities : np.ndarray
        float ``(C, ...)``, C >= 2.

    Returns
    -------
    np.ndarray
        float32 ``(...)`` in [0, 1] (1: a tie between the two most probable classes).
    """
    p = np.asarray(probabilities, dtype=np.float32)
    if p.shape[0] < 2:
        raise ValueError(f"need the probabilities of >= 2 classes, got {p.shape[0]}")
    top = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
    return np.clip(1.0 - (top[1] - top[0]), 0.0, 1.0).astype(np.float32, copy=False)


def pixel_uncertainty(
    predicted: np.ndarray, output_classes: Sequence[int], n_classes: int
) -> np.ndarray:
    """The uncertainty the plugin shows: :func:`class_entropy` of all classes.

    Parameters
    ----------
    predicted, output_classes, n_classes
        As for :func:`full_probabilities`.

    Returns
    -------
    np.ndarray
        float32 ``predicted.shape[1:]`` in [0, 1].
    """
    return class_entropy(full_probabilities(predicted, output_classes, n_classes))


def cell_confidence(labels: np.ndarray, uncertainty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence of every cell: the mean of ``1 - uncertainty`` over its pixels.

    Parameters
    ----------
    labels : np.ndarray
        int label image, 0 = background, any shape.
    uncertainty : np.ndarray
        float, same shape, in [0, 1] (:func:`pixel_uncertainty`).

    Returns
    -------
    ids, confidence : np.ndarray
        int64 ids of the cells present (sorted, no 0) and their float32 confidence
        in [0, 1].

    Raises
    ------
    ValueError
        If the shapes differ or a label is negative.
    """
    labels = np.asarray(labels)
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    if labels.shape != uncertainty.shape:
        raise ValueError(f"labels {labels.shape} and uncertainty {uncertainty.shape} differ")
    if labels.size == 0 or labels.max() <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if labels.min() < 0:
        raise ValueError("labels must not be negative")
    flat = labels.ravel().astype(np.int64)
    counts = np.bincount(flat)
    sums = np.bincount(flat, weights=1.0 - uncertainty.ravel(), minlength=counts.size)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    return ids.astype(np.int64), (sums[ids] / counts[ids]).astype(np.float32)
