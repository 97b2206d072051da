"""Annotation edits of the interactive loop: stroke ids, accepted cells, cells in a box."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.live.corrections import accept_cells, cells_inside, next_cell_id, stroke_label


def test_next_cell_id():
    assert next_cell_id(np.zeros((4, 4), np.uint16)) == 2
    assert next_cell_id(np.array([[0, 1]])) == 2
    assert next_cell_id(np.array([[0, 1, 7]])) == 8


def test_a_stroke_away_from_the_current_cell_starts_a_new_id():
    annotation = np.zeros((50, 50), np.uint16)
    annotation[10:20, 10:20] = 2
    annotation[30:35, 0:50] = 1
    # starting on the current cell continues it
    assert stroke_label(annotation, 2, (15, 15), radius=3) == 2
    # the brush covers the cell's edge from outside: still the same cell
    assert stroke_label(annotation, 2, (22, 15), radius=3) == 2
    # starting away from it: the next free id, even right next to the cell
    assert stroke_label(annotation, 2, (24, 15), radius=3) == 3
    assert stroke_label(annotation, 2, (45, 45), radius=3) == 3
    # background and eraser strokes keep their label
    assert stroke_label(annotation, 1, (45, 45), radius=3) == 1
    assert stroke_label(annotation, 0, (45, 45), radius=3) == 0
    # a fresh id (from "New cell") keeps it for its first stroke
    assert stroke_label(annotation, 3, (45, 45), radius=3) == 3
    # for a stack the caller passes the next id over all planes
    assert stroke_label(annotation, 2, (45, 45), radius=3, next_id=9) == 9


def test_cells_inside_leaves_out_cells_cut_by_the_box():
    prediction = np.zeros((40, 40), np.int32)
    prediction[5:10, 5:10] = 1  # inside
    prediction[5:10, 18:25] = 2  # cut by the box's right edge (x = 20)
    prediction[0:4, 0:4] = 3  # touches the image's edge, inside the box
    prediction[30:35, 30:35] = 4  # outside
    np.testing.assert_array_equal(cells_inside(prediction, (0, 0, 20, 20)), [1, 3])
    np.testing.assert_array_equal(cells_inside(prediction, (0, 0, 40, 40)), [1, 2, 3, 4])
    assert cells_inside(prediction, (10, 10, 10, 30)).size == 0


def test_cells_inside_a_prediction_that_covers_only_the_box():
    # The live preview predicts only the view: beyond its edge the labels are 0, so
    # a cell cut by the view shows no pixel outside it, only pixels on its edge.
    prediction = np.zeros((40, 40), np.int32)
    prediction[10:20, 10:16] = 5  # cut at x = 16 by the edge of the predicted view
    prediction[12:15, 11:14] = 6  # well inside
    prediction[10:30, 0:3] = 7  # at the image's left edge, inside
    np.testing.assert_array_equal(cells_inside(prediction, (5, 0, 35, 16)), [6, 7])


def test_accepted_cells_get_new_ids_and_never_overwrite_the_annotation():
    annotation = np.zeros((30, 30), np.uint16)
    annotation[0:3, :] = 1  # background stroke across cell 1's top
    annotation[20:25, 20:25] = 5  # an annotated cell
    prediction = np.zeros((30, 30), np.int32)
    prediction[1:8, 1:8] = 1
    prediction[10:15, 10:15] = 2
    prediction[19:26, 19:26] = 3  # the annotated cell, predicted
    accepted = accept_cells(annotation, prediction, [1, 2, 3, 99])
    assert accepted.ids == [6, 7] and accepted.n_cells == 2 and accepted.skipped == 1
    assert accepted.values.dtype == annotation.dtype
    edited = annotation.copy()
    edited[accepted.indices] = accepted.values
    # cell 1 keeps the user's background at its top; cell 2 is whole
    assert np.all(edited[0:3] == 1)
    assert np.all(edited[3:8, 1:8] == 6)
    assert np.all(edited[10:15, 10:15] == 7)
    # nothing else changed
    untouched = (prediction != 1) & (prediction != 2)
    np.testing.assert_array_equal(edited[untouched], annotation[untouched])
    # ids can also be given (a stack's next id over all planes)
    assert accept_cells(annotation, prediction, [2], first_id=40).ids == [40]


def test_accepting_nothing_and_overflowing_ids():
    annotation = np.zeros((8, 8), np.uint8)
    prediction = np.zeros((8, 8), np.int32)
    prediction[2:4, 2:4] = 1
    nothing = accept_cells(annotation, prediction, [])
    assert nothing.n_cells == 0 and nothing.indices[0].size == 0
    annotation[0, 0] = 255
    with pytest.raises(ValueError, match="uint8"):
        accept_cells(annotation, prediction, [1])
    with pytest.raises(ValueError, match="same shape"):
        accept_cells(annotation, prediction[:4], [1])
