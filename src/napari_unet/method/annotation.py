"""Partial annotations and the background/cell training target.

Convention (one integer label image per 2D image, axes ``"YX"``):

- ``0`` (:data:`NOT_ANNOTATED`): not annotated; ignored by the loss (weight 0).
- ``1`` (:data:`BACKGROUND`): background painted explicitly.
- ``2, 3, ...`` (:data:`FIRST_CELL` and up): one id per annotated cell (instance).

With ``dense=True`` the labels are complete ground truth from elsewhere (e.g. a
hand-drawn instance mask): ``0`` is background, ``>= 1`` are instances, and no pixel
is ignored.

Touching cells are separated by a thin background line, the *separation border* of
Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, section 3 ("The separation border is computed using
morphological operations"), so that the two-class network output can be split into
instances again.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "BACKGROUND",
    "BOUNDARY_WIDTH",
    "DEFAULT_GAP",
    "DEFAULT_N_CLASSES",
    "FIRST_CELL",
    "TARGET_CLASSES",
    "NOT_ANNOTATED",
    "Target",
    "annotation_to_target",
    "annotation_counts",
    "validate_annotation",
]

NOT_ANNOTATED = 0
"""Label of pixels the user has not annotated (ignored by the loss)."""
BACKGROUND = 1
"""Label of pixels painted explicitly as background."""
FIRST_CELL = 2
"""Smallest label of an annotated cell; every cell has its own id ``>= FIRST_CELL``."""

BOUNDARY_WIDTH = 2
"""Default width (pixels) of the cell-boundary class of the three-class target."""
DEFAULT_GAP = 1
"""Default separation gap (pixels) carved from each of two touching cells (Sec. 3)."""

DEFAULT_N_CLASSES = 3
"""Classes of a new network's target (:data:`TARGET_CLASSES`): the three-class target,
which splits touching cells best (docs/method.md)."""

TARGET_CLASSES = {
    2: ("background", "cell"),
    3: ("background", "cell interior", "cell boundary"),
}
"""Class names of the training targets by number of classes (index = class value).

Two classes are the paper's target (touching cells separated by a carved background
gap); three classes add the inner rim of every cell as its own class (Caicedo et al.,
Cytometry A 95:952, 2019), which lets the instance step split touching cells by seeded
watershed (:func:`napari_unet.method.instances.boundary_watershed`)."""

_LEGEND = "0 = not annotated, 1 = background, 2, 3, ... = one id per cell"


@dataclass(frozen=True, eq=False)
class Target:
    """Training target derived from an annotation by :func:`annotation_to_target`.

    Attributes
    ----------
    classes : numpy.ndarray
        ``uint8``, shape ``(Y, X)``, class per pixel (:data:`TARGET_CLASSES`). Two
        classes: ``0`` = background (including the separation gaps between touching
        cells and all non-annotated pixels), ``1`` = cell. Three classes: ``0`` =
        background, ``1`` = cell interior, ``2`` = cell boundary.
    mask : numpy.ndarray
        ``bool``, shape ``(Y, X)``: ``True`` where the pixel is annotated (counts in
        the loss). Gap pixels carved out of cells stay ``True``.
    instances : numpy.ndarray
        ``int32``, shape ``(Y, X)``: the cell id of every pixel of class 1 (cell, or
        cell interior), ``0`` elsewhere. Ids are those of the input labels (``>= 2``
        for a partial annotation, ``>= 1`` for dense labels). These are the "cells"
        whose distances ``d1``, ``d2`` enter the weight map (eq. 2).
    n_classes : int
        2 or 3, see :data:`TARGET_CLASSES`.
    """

    classes: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    n_classes: int = 2


def _as_labels(labels) -> np.ndarray:
    """Return ``labels`` as a 2D non-negative integer array or raise ``ValueError``.

    Checks only what every consumer needs (dtype, rank, sign), not the content.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    elif labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ValueError(
                f"annotation contains NaN or infinite values (dtype {labels.dtype}): "
                f"labels must be whole numbers ({_LEGEND})"
            )
        fractional = labels[labels != np.round(labels)]
        if fractional.size:
            raise ValueError(
                f"annotation has non-integer values (dtype {labels.dtype}, "
                f"e.g. {fractional.flat[0]!r}): labels must be whole numbers ({_LEGEND})"
            )
        if labels.size and np.abs(labels).max() > 2**53:  # beyond: not whole numbers exactly
            raise ValueError(
                f"annotation has values too large for label ids (up to {np.abs(labels).max():g}, "
                f"dtype {labels.dtype}): float labels must be at most 2**53 ({_LEGEND})"
            )
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise ValueError(f"annotation must have an integer dtype, got {labels.dtype} ({_LEGEND})")
    if labels.ndim != 2:
        raise ValueError(
            f"annotation must be 2D (YX), got a {labels.ndim}D array of shape "
            f"{labels.shape}; pass one 2D plane at a time"
        )
    if labels.size == 0:
        raise ValueError(f"annotation is empty: it has no pixels (shape {labels.shape})")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError(
            f"annotation has negative values (minimum {labels.min()}): labels must be "
            f">= 0 ({_LEGEND})"
        )
    return labels


def validate_annotation(labels, image_shape=None, dense: bool = False) -> np.ndarray:
    """Check that an annotation can be used for training and return it as an array.

    Parameters
    ----------
    labels : array_like
        Integer label image, shape ``(Y, X)``, in the partial-annotation convention
        (``0`` = not annotated, ``1`` = background, ``2, 3, ...`` = cells) or, with
        ``dense=True``, dense labels (``0`` = background, ``>= 1`` = cells). Boolean
        arrays and floating-point arrays holding whole numbers are accepted.
    image_shape : tuple of int, optional
        Shape ``(Y, X)`` of the image the annotation belongs to; checked when given.
    dense : bool, default False
        Interpret ``labels`` as dense ground truth instead of a partial annotation.

    Returns
    -------
    numpy.ndarray
        ``labels`` as a plain numpy integer array, shape ``(Y, X)`` (not copied when
        it already is one).

    Raises
    ------
    ValueError
        If the dtype is not integer (or whole-valued float), values are negative,
        the array is not 2D, its shape differs from ``image_shape`` (both shapes are
        named), it is empty, nothing is annotated, or only one class is present: the
        network needs both background and at least one cell to learn from.

    Notes
    -----
    Training needs both classes of the two-class U-Net (Ronneberger et al. 2015,
    eq. 1); the weight map itself (:func:`napari_unet.separation_border_weight_map`)
    is also defined for one-class annotations so it can be shown while painting.
    """
    labels = _as_labels(labels)
    if image_shape is not None and tuple(labels.shape) != tuple(image_shape):
        raise ValueError(
            f"annotation shape {tuple(labels.shape)} does not match image shape "
            f"{tuple(image_shape)}"
        )
    if labels.size == 0:
        raise ValueError(f"annotation is empty: it has no pixels (shape {labels.shape})")
    if dense:
        if not np.any(labels == 0):
            raise ValueError(
                "dense labels have no background pixels (label 0): every pixel is a "
                "cell, so the network cannot learn what is not a cell"
            )
        if not np.any(labels > 0):
            raise ValueError(
                "dense labels have no cells (labels >= 1): the network cannot learn what a cell is"
            )
        return labels
    has_background = np.any(labels == BACKGROUND)
    has_cells = np.any(labels >= FIRST_CELL)
    if not has_background and not has_cells:
        raise ValueError(
            "annotation is empty: no pixel is annotated (all labels are 0); paint some "
            "background (label 1) and at least one cell (label 2 or higher)"
        )
    if not has_background:
        raise ValueError(
            "annotation has no background pixels (label 1): paint some background so "
            "the network can learn what is not a cell"
        )
    if not has_cells:
        raise ValueError(
            "annotation has no cells (labels >= 2): paint at least one cell so the "
            "network can learn what a cell is"
        )
    return labels


def annotation_to_target(
    labels,
    dense: bool = False,
    gap: int = DEFAULT_GAP,
    *,
    n_classes: int = 2,
    boundary_width: int = BOUNDARY_WIDTH,
) -> Target:
    """Turn an annotation into the training target, its mask and the cell instances.

    Three classes (``n_classes=3``): every cell pixel within ``boundary_width``
    pixels (chessboard distance) of a pixel that is not of the same cell (another
    cell, background, or not annotated; the image edge does not count) is class 2,
    *cell boundary*; the rest of the cell is class 1, *cell interior*. Two touching
    cells are then separated by ``2 * boundary_width`` px of boundary class, and
    ``gap`` is not used. Two classes (default, the paper's target) are described
    below.

    Where two different cells touch, a separation gap is carved: a pixel of cell
    ``i`` becomes background if a pixel of a different cell ``j`` lies within
    ``gap`` pixels of it in the chessboard (8-connectivity) metric, i.e. inside the
    ``(2 * gap + 1) x (2 * gap + 1)`` square centred on it, looking at the labels
    *before* carving. Both cells lose their rim facing the other, so a straight
    contact line becomes a background line ``2 * gap`` pixels wide (2 px for the
    default ``gap=1``); diagonal contacts are separated too, and the result does not
    depend on the cell ids. Pixels next to background or non-annotated pixels are
    untouched. Gap pixels stay annotated (``mask`` is ``True``) and are background
    in ``target``.

    Parameters
    ----------
    labels : array_like
        Integer label image, shape ``(Y, X)``: ``0`` = not annotated, ``1`` =
        background, ``2, 3, ...`` = cells; with ``dense=True`` ``0`` = background
        and ``>= 1`` = cells.
    dense : bool, default False
        Interpret ``labels`` as dense ground truth: every pixel is annotated.
    gap : int, default 1
        Pixels removed from each cell along a contact with another cell (chessboard
        distance, pixels). ``0`` disables the separation border. Two classes only.
    n_classes : {2, 3}, default 2
        Background/cell, or background/cell interior/cell boundary.
    boundary_width : int, default :data:`BOUNDARY_WIDTH`
        Width of the boundary class (pixels, >= 1). Three classes only.

    Returns
    -------
    Target
        ``target`` (``uint8``, ``(Y, X)``, class per pixel), ``mask``
        (``bool``, ``(Y, X)``, annotated pixels) and ``instances`` (``int32``,
        ``(Y, X)``, cell ids after carving, 0 elsewhere).

    Raises
    ------
    ValueError
        If ``labels`` is not a 2D array of non-negative whole numbers, ``gap`` is
        not a non-negative integer, ``n_classes`` is not 2 or 3, or
        ``boundary_width`` is not a positive integer. Content (empty, one class) is not checked; use
        :func:`validate_annotation` before training.

    Notes
    -----
    Separation border of Ronneberger, Fischer & Brox, MICCAI 2015, section 3, made
    with two grey-value filters instead of a loop over cells: a cell pixel is on a
    contact iff the maximum or the minimum of the cell ids in its neighbourhood
    (ignoring 0) differs from its own id.
    """
    labels = _as_labels(labels)
    try:
        gap = operator.index(gap)
    except TypeError:
        raise ValueError(f"gap must be a non-negative integer (pixels), got {gap!r}") from None
    if gap < 0:
        raise ValueError(f"gap must be a non-negative integer (pixels), got {gap}")

    if n_classes not in TARGET_CLASSES:
        raise ValueError(f"n_classes must be 2 or 3, got {n_classes!r}")
    first_cell = 1 if dense else FIRST_CELL
    mask = np.ones(labels.shape, bool) if dense else labels != NOT_ANNOTATED
    instances = _cell_ids_int32(labels, first_cell)
    if n_classes == 3:
        return _three_class_target(instances, mask, boundary_width)
    if gap > 0 and instances.size:
        size = 2 * gap + 1
        highest = ndi.maximum_filter(instances, size=size, mode="constant", cval=0)
        empty = np.iinfo(np.int32).max
        lowest = ndi.minimum_filter(
            np.where(instances > 0, instances, empty), size=size, mode="constant", cval=empty
        )
        contact = (instances > 0) & ((highest > instances) | (lowest < instances))
        instances[contact] = 0
    target = (instances > 0).astype(np.uint8)
    return Target(classes=target, mask=mask, instances=instances, n_classes=2)


def _three_class_target(instances: np.ndarray, mask: np.ndarray, boundary_width) -> Target:
    """Background / cell interior / cell boundary (see :func:`annotation_to_target`)."""
    try:
        width = operator.index(boundary_width)
    except TypeError:
        width = 0
    if width < 1:
        raise ValueError(
            f"boundary_width must be a positive integer (pixels), got {boundary_width!r}"
        )
    target = (instances > 0).astype(np.uint8)
    if instances.size:
        # A cell pixel is boundary iff its (2w+1)² neighbourhood holds another value
        # (0 included); "nearest" padding: the image edge is no boundary.
        size = 2 * width + 1
        highest = ndi.maximum_filter(instances, size=size, mode="nearest")
        lowest = ndi.minimum_filter(instances, size=size, mode="nearest")
        boundary = (instances > 0) & ((highest != instances) | (lowest != instances))
        target[boundary] = 2
        instances = np.where(boundary, 0, instances).astype(np.int32)
    return Target(classes=target, mask=mask, instances=instances, n_classes=3)


def _cell_ids_int32(labels: np.ndarray, first_cell: int) -> np.ndarray:
    """Cell ids (``labels >= first_cell``) as a fresh ``int32`` array, 0 elsewhere.

    Ids that do not fit in ``int32`` are renumbered ``1..n`` in increasing order.
    """
    cells = labels >= first_cell
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        _, inverse = np.unique(labels[cells], return_inverse=True)
        instances = np.zeros(labels.shape, np.int32)
        instances[cells] = inverse.astype(np.int32) + 1
        return instances
    return np.where(cells, labels, 0).astype(np.int32)


def annotation_counts(labels: np.ndarray) -> tuple[int, int, int]:
    """Annotated cells, annotated pixels and background pixels of an annotation.

    Parameters
    ----------
    labels : np.ndarray
        Integer annotation in the partial convention (any shape).

    Returns
    -------
    n_cells, n_annotated, n_background : int
        Distinct cell ids (>= 2), pixels with a label != 0, pixels labelled 1.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel().astype(np.int64, copy=False), minlength=FIRST_CELL)
    n_cells = int(np.count_nonzero(counts[FIRST_CELL:]))
    n_annotated = int(labels.size - counts[NOT_ANNOTATED])
    return n_cells, n_annotated, int(counts[BACKGROUND])
