"""One id per cell across blocks: match cells in the seams, merge with a graph.

Two neighbouring blocks (:mod:`napari_unet.inference.blocks`) both find every cell that crosses
their common border, each in its own numbering. In the strip around the border where
both are trusted (:class:`~napari_unet.inference.blocks.Seam`), a cell of one block and a cell
of the other are the same cell when their intersection over union there exceeds 0.5
(a one-to-one match). Matches are the edges of a graph over all the blocks' cells;
its connected components (:func:`scipy.sparse.csgraph.connected_components`) are the
cells of the whole image, numbered 1..N in raster order of blocks and, within a
block, in its order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Intersection over union (in a seam strip) above which two blocks' cells are one.
MATCH_IOU = 0.5


def match_cells(first: np.ndarray, second: np.ndarray, min_iou: float = MATCH_IOU) -> np.ndarray:
    """Pairs of cells of two label images of one region that are the same cell.

    Parameters
    ----------
    first, second : np.ndarray
        Integer labels of the same pixels (0 = background), e.g. two blocks' labels
        in their seam strip.
    min_iou : float
        Intersection over union, counted in this region, above which two cells are
        matched; 0.5 or more, so a cell matches at most one other.

    Returns
    -------
    np.ndarray
        int64 ``(n_matches, 2)``: ``(id in first, id in second)``.

    Raises
    ------
    ValueError
        If the shapes differ or ``min_iou < 0.5``.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise ValueError(
            f"labels of one region must have one shape, got {first.shape} and {second.shape}"
        )
    if min_iou < 0.5:
        raise ValueError(f"min_iou must be at least 0.5 for one-to-one matches, got {min_iou}")
    a, b = first.ravel().astype(np.int64), second.ravel().astype(np.int64)
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    area_a = np.bincount(a, minlength=1)
    area_b = np.bincount(b, minlength=1)
    pairs, inter = np.unique(np.stack([a[both], b[both]], axis=1), axis=0, return_counts=True)
    iou = inter / (area_a[pairs[:, 0]] + area_b[pairs[:, 1]] - inter)
    return pairs[iou > min_iou]


@dataclass(frozen=True)
class BlockCells:
    """How many cells a block found.

    Attributes
    ----------
    n_core : int
        Cells with pixels in the core: local ids ``1..n_core`` (the only ids written).
    n_total : int
        All cells on the extent, ``n_core`` of them first.
    """

    n_core: int
    n_total: int


def global_ids(
    cells: Sequence[BlockCells], matches: dict[tuple[int, int], np.ndarray]
) -> tuple[list[np.ndarray], int]:
    """Lookup tables from every block's local ids to the image's cell ids.

    Parameters
    ----------
    cells : sequence of BlockCells
        One per block, in block order.
    matches : dict
        ``(first block, second block) -> (n, 2)`` matched local ids
        (:func:`match_cells`).

    Returns
    -------
    tables : list of np.ndarray
        One int32 array per block, ``table[local_id]`` for local ids ``0..n_core``
        (``table[0] = 0``).
    n_cells : int
        Cells in the image; the ids are ``1..n_cells``.
    """
    n_total = np.array([c.n_total for c in cells], np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_total)])
    n_nodes = int(offsets[-1])
    rows, cols = [], []
    for (i, j), pairs in matches.items():
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        rows.append(offsets[i] + pairs[:, 0] - 1)
        cols.append(offsets[j] + pairs[:, 1] - 1)
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    _, component = connected_components(graph, directed=False)
    # Cells written are those with pixels in a core; number their components in the
    # order of their first such node.
    core_nodes = np.concatenate(
        [np.arange(offsets[b], offsets[b] + c.n_core) for b, c in enumerate(cells)]
        + [np.zeros(0, np.int64)]
    )
    ids = np.zeros(max(n_nodes, 1), np.int64)
    if len(core_nodes):
        found, first = np.unique(component[core_nodes], return_index=True)
        ids[found[np.argsort(first)]] = np.arange(1, len(found) + 1)
        n_cells = len(found)
    else:
        n_cells = 0
    if n_cells > np.iinfo(np.int32).max:  # pragma: no cover
        raise ValueError(f"{n_cells} cells do not fit in int32 labels")
    tables = []
    for b, c in enumerate(cells):
        table = np.zeros(c.n_core + 1, np.int32)
        table[1:] = ids[component[offsets[b] : offsets[b] + c.n_core]] if c.n_core else []
        tables.append(table)
    return tables, n_cells
