"""Edits of a partial annotation: new cell ids, and predicted cells taken into it.

The interactive loop (paint, train, look at the prediction, correct, train again) edits
the annotation in three ways, all computed here without Qt and applied by the widgets
as one undoable step each:

- a brush stroke gets a cell id (:func:`stroke_label`): a stroke that starts away from
  the current cell starts the next free id, so two cells never share an id by accident;
- a predicted cell becomes an annotated cell (:func:`accept_cells`), with a new id;
- the cells of a box or of the view are picked for that (:func:`cells_inside`).

Annotation convention (:mod:`napari_unet.method.annotation`): 0 = not annotated, 1 =
background, 2, 3, ... = one id per cell. Predictions are label images with 0 =
background and 1, 2, ... = cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_unet.method.annotation import FIRST_CELL, NOT_ANNOTATED

__all__ = ["AcceptedCells", "accept_cells", "cells_inside", "next_cell_id", "stroke_label"]


def next_cell_id(labels: np.ndarray) -> int:
    """Smallest cell id above every id used so far (at least ``FIRST_CELL``).

    Parameters
    ----------
    labels : np.ndarray
        Annotation of any shape (all planes of a stack: ids are unique per layer).

    Returns
    -------
    int
    """
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    return max(FIRST_CELL, top + 1)


def stroke_label(
    annotation: np.ndarray,
    current: int,
    center: tuple[int, ...],
    radius: float,
    next_id: int | None = None,
) -> int:
    """Label a new brush stroke paints with, in "new cell per stroke" painting.

    A stroke continues the current cell only if the brush, where the stroke starts,
    covers pixels of that cell; otherwise it starts the next free id. The background
    (1) and the eraser (0) are left alone, as is a cell id not painted yet.

    Parameters
    ----------
    annotation : np.ndarray
        The annotation plane being painted, ``(Y, X)``.
    current : int
        The label selected now.
    center : (int, int)
        Pixel ``(y, x)`` where the stroke starts.
    radius : float
        Brush radius in pixels (napari's ``brush_size / 2``).
    next_id : int, optional
        The next free id; :func:`next_cell_id` of ``annotation`` when ``None`` (pass
        it for a stack, whose ids are unique over all planes).

    Returns
    -------
    int
        ``current`` or a new id.
    """
    if current < FIRST_CELL:
        return int(current)
    annotation = np.asarray(annotation)
    r = max(float(radius), 0.5)
    reach = int(np.ceil(r))
    y, x = (int(round(c)) for c in center[-2:])
    top, left = max(y - reach, 0), max(x - reach, 0)
    window = annotation[top : y + reach + 1, left : x + reach + 1]
    if window.size:
        yy, xx = np.ogrid[top : top + window.shape[0], left : left + window.shape[1]]
        disk = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        if np.any(window[disk] == current):
            return int(current)
    if not np.any(annotation == current):
        # an id not painted yet (e.g. just given by "New cell"): its first stroke keeps it
        return int(current)
    return int(next_cell_id(annotation) if next_id is None else next_id)


def cells_inside(prediction: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Ids of the predicted cells that lie entirely inside a box.

    A cell that reaches the box's edge is left out (taking half a cell would teach a
    wrong border), unless that edge is the image's edge. "Reaches" means it has
    pixels on the box's outermost rows or columns or beyond them: a prediction that
    covers only the box (the live preview of a view) shows no pixel beyond it.

    Parameters
    ----------
    prediction : np.ndarray
        ``(Y, X)`` labels, 0 = background.
    box : (top, left, bottom, right)
        Pixels; bottom and right exclusive; clipped to the image.

    Returns
    -------
    np.ndarray
        Sorted int64 ids (possibly empty).
    """
    prediction = np.asarray(prediction)
    height, width = prediction.shape
    top, left = max(int(box[0]), 0), max(int(box[1]), 0)
    bottom, right = min(int(box[2]), height), min(int(box[3]), width)
    if bottom <= top or right <= left:
        return np.zeros(0, np.int64)
    ids = np.unique(prediction[top:bottom, left:right])
    ids = ids[ids > 0]
    # The edges of the box that are not edges of the image, one pixel thick on each
    # side of the line: a cell with a pixel there is cut (or touches the cut).
    edge = np.zeros(prediction.shape, bool)
    rows, cols = slice(max(top - 1, 0), bottom + 1), slice(max(left - 1, 0), right + 1)
    if top > 0:
        edge[top - 1 : top + 1, cols] = True
    if bottom < height:
        edge[bottom - 1 : bottom + 1, cols] = True
    if left > 0:
        edge[rows, left - 1 : left + 1] = True
    if right < width:
        edge[rows, right - 1 : right + 1] = True
    cut = np.unique(prediction[edge])
    return np.setdiff1d(ids, cut).astype(np.int64)


@dataclass(frozen=True)
class AcceptedCells:
    """What :func:`accept_cells` writes into an annotation.

    Attributes
    ----------
    indices : tuple of np.ndarray
        One array per axis (``(ys, xs)`` for a plane, ``(zs, ys, xs)`` for a volume) of
        the pixels to write (napari's ``data_setitem`` format).
    values : np.ndarray
        The new cell id of each pixel.
    ids : list of int
        New annotation ids, one per accepted cell.
    skipped : int
        Predicted cells left out: already annotated as a cell, or with no pixel left
        that is not annotated.
    """

    indices: tuple[np.ndarray, ...]
    values: np.ndarray
    ids: list[int]
    skipped: int

    @property
    def n_cells(self) -> int:
        """Number of cells taken into the annotation."""
        return len(self.ids)


def accept_cells(
    annotation: np.ndarray,
    prediction: np.ndarray,
    cell_ids,
    first_id: int | None = None,
) -> AcceptedCells:
    """Take predicted cells into a partial annotation, each as a new annotated cell.

    Only pixels that are not annotated change: what the user painted (background,
    other cells) always wins. A predicted cell that overlaps an annotated cell is
    skipped (it is annotated already; a second id inside one cell would teach the
    network a border through it). In a volume (``(Z, Y, X)`` arrays, a 3D prediction
    with one id per cell across planes) a cell is taken whole: all its planes, one id.

    Parameters
    ----------
    annotation : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` partial annotation (0 not annotated, 1 background,
        >= 2 cells).
    prediction : np.ndarray
        Predicted labels of the same shape, 0 = background.
    cell_ids : iterable of int
        Predicted ids to accept (0 and ids absent from ``prediction`` are ignored).
    first_id : int, optional
        Id of the first accepted cell, the next ones counting up; default
        :func:`next_cell_id` of ``annotation`` (pass it for a stack).

    Returns
    -------
    AcceptedCells

    Raises
    ------
    ValueError
        If the two arrays differ in shape, or the new ids do not fit the
        annotation's dtype.
    """
    annotation = np.asarray(annotation)
    prediction = np.asarray(prediction)
    if annotation.shape != prediction.shape or annotation.ndim not in (2, 3):
        raise ValueError(
            f"annotation {annotation.shape} and prediction {prediction.shape} must be 2D "
            "planes or 3D volumes of the same shape"
        )
    wanted = np.unique(np.asarray(list(cell_ids), dtype=np.int64))
    wanted = wanted[wanted > 0]
    next_id = next_cell_id(annotation) if first_id is None else int(first_id)
    chosen, values, ids = [], [], []  # flat indices of the pixels written, their ids
    skipped = 0
    if wanted.size:
        painted = annotation.ravel()
        flat = np.flatnonzero(np.isin(prediction, wanted))
        cell = prediction.ravel()[flat]
        order = np.argsort(cell, kind="stable")
        flat, cell = flat[order], cell[order]
        bounds = np.flatnonzero(np.diff(cell)) + 1
        for pixels, c in zip(np.split(flat, bounds), np.split(cell, bounds), strict=True):
            if c.size == 0:
                continue
            existing = painted[pixels]
            free = existing == NOT_ANNOTATED
            if np.any(existing >= FIRST_CELL) or not free.any():
                skipped += 1
                continue
            chosen.append(pixels[free])
            values.append(np.full(int(free.sum()), next_id, np.int64))
            ids.append(next_id)
            next_id += 1
    if ids and ids[-1] > _max_value(annotation.dtype):
        raise ValueError(
            f"the annotation's dtype {annotation.dtype} holds no cell id above "
            f"{_max_value(annotation.dtype)}"
        )
    if not ids:
        empty = np.zeros(0, np.intp)
        indices = (empty,) * annotation.ndim
        return AcceptedCells(indices, np.zeros(0, annotation.dtype), [], skipped)
    return AcceptedCells(
        np.unravel_index(np.concatenate(chosen), annotation.shape),
        np.concatenate(values).astype(annotation.dtype),
        ids,
        skipped,
    )


def _max_value(dtype) -> int:
    dtype = np.dtype(dtype)
    return int(np.iinfo(dtype).max) if dtype.kind in "iu" else 2**53
