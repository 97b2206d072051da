"""Partial-annotation convention, validation and the separation-border target."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi
from synthetic import voronoi_cells

from napari_unet.method.annotation import (
    BACKGROUND,
    FIRST_CELL,
    NOT_ANNOTATED,
    Target,
    annotation_to_target,
    validate_annotation,
)

EIGHT = np.ones((3, 3), bool)


def touching_squares(side=10, columns=(10, 20), background=BACKGROUND, shape=(40, 50)):
    """Two side-by-side squares (ids 2 and 3) sharing a vertical edge."""
    labels = np.full(shape, background, np.uint16)
    labels[10 : 10 + side, columns[0] : columns[0] + side] = 2
    labels[10 : 10 + side, columns[1] : columns[1] + side] = 3
    return labels


def carve_slowly(instances, gap):
    """Per-pixel definition: a cell pixel is carved if a different cell lies within
    ``gap`` pixels (chessboard distance) of it."""
    carved = instances.copy()
    rows, cols = instances.shape
    for r in range(rows):
        for c in range(cols):
            own = instances[r, c]
            if own == 0:
                continue
            window = instances[max(r - gap, 0) : r + gap + 1, max(c - gap, 0) : c + gap + 1]
            if np.any((window != 0) & (window != own)):
                carved[r, c] = 0
    return carved


# --- convention -------------------------------------------------------------------


def test_label_constants():
    assert (NOT_ANNOTATED, BACKGROUND, FIRST_CELL) == (0, 1, 2)


def test_shipped_annotation_follows_the_convention(sample_annotation, sample_image):
    labels = validate_annotation(sample_annotation, image_shape=sample_image.shape)
    assert isinstance(labels, np.ndarray) and labels.dtype.kind in "iu"
    assert labels.shape == (520, 696)
    cells = np.unique(labels[labels >= FIRST_CELL])
    assert len(cells) == 31
    assert np.any(labels == BACKGROUND) and np.any(labels == NOT_ANNOTATED)


def test_shipped_dense_masks_validate(sample_masks, sample_image):
    labels = validate_annotation(sample_masks, image_shape=sample_image.shape, dense=True)
    assert labels.max() == 156


# --- validation -------------------------------------------------------------------


def small_annotation():
    labels = np.zeros((8, 8), np.uint8)
    labels[0, :] = BACKGROUND
    labels[3:5, 3:5] = FIRST_CELL
    return labels


def test_whole_valued_floats_and_bools_are_accepted():
    labels = validate_annotation(small_annotation().astype(np.float32))
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels, small_annotation())
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    assert validate_annotation(mask, dense=True).dtype.kind in "iu"


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (small_annotation() + 0.5, "non-integer values"),
        (np.where(small_annotation() == 2, np.nan, small_annotation()), "NaN or infinite"),
        (small_annotation().astype(np.complex64), "integer dtype"),
        (small_annotation().astype(str), "integer dtype"),
        (small_annotation().astype(np.int16) - 1, r"negative values \(minimum -1\)"),
        (np.stack([small_annotation()] * 3), r"must be 2D \(YX\), got a 3D array"),
        (small_annotation()[0], r"must be 2D \(YX\), got a 1D array"),
        (np.zeros((0, 4), np.uint8), "no pixels"),
        (np.zeros((8, 8), np.uint8), "no pixel is annotated"),
        (
            np.where(small_annotation() == 1, 0, small_annotation()),
            r"no background pixels \(label 1\)",
        ),
        (np.where(small_annotation() == 2, 0, small_annotation()), r"no cells \(labels >= 2\)"),
    ],
    ids=[
        "fractional",
        "nan",
        "complex",
        "string",
        "negative",
        "3d",
        "1d",
        "no-pixels",
        "nothing-annotated",
        "only-cells",
        "only-background",
    ],
)
def test_bad_annotation_is_rejected_with_a_clear_message(labels, match):
    with pytest.raises(ValueError, match=match):
        validate_annotation(labels)


def test_shape_mismatch_names_both_shapes(sample_annotation):
    with pytest.raises(ValueError, match=r"\(520, 696\) does not match image shape \(512, 512\)"):
        validate_annotation(sample_annotation, image_shape=(512, 512))


def test_no_background_message_tells_what_to_do():
    labels = np.full((5, 5), 2, np.uint8)
    with pytest.raises(ValueError, match="paint some background so the network can learn"):
        validate_annotation(labels)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((5, 5), np.uint8), r"no cells \(labels >= 1\)"),
        (np.ones((5, 5), np.uint8), r"no background pixels \(label 0\)"),
    ],
)
def test_one_class_dense_labels_are_rejected(labels, match):
    with pytest.raises(ValueError, match=match):
        validate_annotation(labels, dense=True)


def test_dense_labels_one_is_a_cell():
    labels = np.zeros((5, 5), np.uint8)
    labels[1:3, 1:3] = 1
    validate_annotation(labels, dense=True)  # background 0 and one cell: fine
    with pytest.raises(ValueError, match="no cells"):
        validate_annotation(labels)  # partial: 1 is background, no cell


# --- target -----------------------------------------------------------------------


def test_target_of_the_shipped_annotation(sample_annotation):
    parts = annotation_to_target(sample_annotation)
    assert isinstance(parts, Target)
    assert parts.classes.dtype == np.uint8 and parts.mask.dtype == bool
    assert parts.instances.dtype == np.int32
    assert parts.classes.shape == parts.mask.shape == parts.instances.shape == (520, 696)
    np.testing.assert_array_equal(parts.mask, sample_annotation != 0)
    np.testing.assert_array_equal(parts.classes, parts.instances > 0)
    # not annotated and painted background are never cells
    assert not parts.classes[sample_annotation <= BACKGROUND].any()
    # cells keep their ids; only cell pixels can be carved
    kept = parts.instances > 0
    np.testing.assert_array_equal(parts.instances[kept], sample_annotation[kept])
    assert set(np.unique(parts.instances[kept])) == set(range(2, 33))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.classes = None


def test_two_touching_squares_are_separated_by_the_requested_gap():
    labels = touching_squares()
    for gap in (1, 2, 3):
        parts = annotation_to_target(labels, gap=gap)
        components, n = ndi.label(parts.classes, structure=EIGHT)
        assert n == 2, f"gap={gap}: touching squares not separated"
        row = parts.classes[15]
        # left square columns 10..19, right 20..29: gap px taken from each side
        np.testing.assert_array_equal(row[10 : 20 - gap], 1)
        np.testing.assert_array_equal(row[20 - gap : 20 + gap], 0)
        np.testing.assert_array_equal(row[20 + gap : 30], 1)
        # gap pixels stay annotated, as background
        assert parts.mask[10:20, 20 - gap : 20 + gap].all()
        # edges facing background are untouched
        np.testing.assert_array_equal(parts.classes[10:20, 10], 1)
        np.testing.assert_array_equal(parts.classes[10, 10 : 20 - gap], 1)


def test_diagonal_contact_is_separated():
    labels = np.ones((20, 20), np.uint8)
    labels[4:10, 4:10] = 2
    labels[10:16, 10:16] = 3  # touches 2 only at a corner (8-connectivity)
    parts = annotation_to_target(labels)
    assert ndi.label(parts.classes, structure=EIGHT)[1] == 2
    assert parts.classes[9, 9] == 0 and parts.classes[10, 10] == 0
    assert parts.classes[4, 9] == 1  # far from the other cell


def test_gap_zero_keeps_cells_and_lone_cells_are_not_carved():
    labels = touching_squares()
    parts = annotation_to_target(labels, gap=0)
    np.testing.assert_array_equal(parts.instances, np.where(labels >= 2, labels, 0))
    lone = np.zeros((20, 20), np.uint8)
    lone[5:12, 5:12] = 4  # next to non-annotated pixels only
    np.testing.assert_array_equal(annotation_to_target(lone, gap=3).classes, lone == 4)


@pytest.mark.parametrize("gap", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_carving_matches_the_per_pixel_definition(gap, seed):
    cells = voronoi_cells((36, 40), 12, seed, grow=6)
    parts = annotation_to_target(cells, dense=True, gap=gap)
    np.testing.assert_array_equal(parts.instances, carve_slowly(cells.astype(np.int32), gap))
    assert parts.mask.all()


def test_target_does_not_depend_on_cell_ids():
    cells = voronoi_cells((60, 60), 20, seed=3, grow=8)
    permuted = np.random.default_rng(0).permutation(np.arange(1, 21)) + 1
    relabelled = np.where(cells > 0, np.concatenate([[0], permuted])[cells], 0)
    np.testing.assert_array_equal(
        annotation_to_target(cells, dense=True).classes,
        annotation_to_target(relabelled, dense=True).classes,
    )


def test_dense_masks_are_split_into_separate_instances(sample_masks):
    parts = annotation_to_target(sample_masks, dense=True)
    assert parts.mask.all()
    touching = np.unique(sample_masks[(sample_masks > 0) & (parts.instances == 0)])
    assert len(touching) > 10  # the field really has touching nuclei
    components, n = ndi.label(parts.classes, structure=EIGHT)
    # no 8-connected foreground component holds two different nuclei
    for sl, component in zip(ndi.find_objects(components), range(1, n + 1), strict=True):
        ids = np.unique(parts.instances[sl][components[sl] == component])
        assert len(ids) == 1


def test_huge_ids_still_fit_int32():
    labels = np.ones((10, 10), np.uint64)
    labels[2:5, 2:5] = 2**40
    labels[6:9, 6:9] = 2**40 + 7
    parts = annotation_to_target(labels)
    assert parts.instances.dtype == np.int32
    assert len(np.unique(parts.instances[parts.instances > 0])) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gap": -1}, "gap must be a non-negative integer"),
        ({"gap": 1.5}, "gap must be a non-negative integer"),
        ({"labels": -np.ones((4, 4), np.int8)}, "negative values"),
        ({"labels": np.ones((2, 4, 4), np.uint8)}, "must be 2D"),
        ({"labels": np.full((4, 4), 0.25)}, "non-integer values"),
    ],
)
def test_annotation_to_target_rejects_bad_input(kwargs, match):
    kwargs = {"labels": small_annotation(), **kwargs}
    with pytest.raises(ValueError, match=match):
        annotation_to_target(**kwargs)


def test_annotation_to_target_accepts_one_class_annotations():
    empty = annotation_to_target(np.zeros((5, 5), np.uint8))
    assert not empty.mask.any() and not empty.classes.any()
    only_background = annotation_to_target(np.ones((5, 5), np.uint8))
    assert only_background.mask.all() and not only_background.classes.any()
