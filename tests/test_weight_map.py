"""Separation-border weight map (Ronneberger et al. 2015, eq. 2)."""

import math
from functools import partial

import numpy as np
import pytest
from synthetic import voronoi_cells

from napari_unet import testing
from napari_unet.method import weight_map
from napari_unet.method.annotation import BACKGROUND, annotation_to_target
from napari_unet.method.weight_map import class_balance_weights
from napari_unet.runtime.progress import run_to_completion

#: Eq. 2 as the paper writes it: two classes, unit class weights. The package's defaults
#: (three classes, balanced weights) are checked in test_defaults_are_those_of_training.
PAPER = {"n_classes": 2, "class_weights": None}
separation_border_weight_map = partial(weight_map.separation_border_weight_map, **PAPER)
weight_map_reference = partial(testing.weight_map_reference, **PAPER)

TOLERANCE = 1e-3


def touching_squares():
    """Background (1) around two 10x10 squares (ids 2, 3) sharing the edge x = 19|20."""
    labels = np.full((40, 50), BACKGROUND, np.uint8)
    labels[10:20, 10:20] = 2
    labels[10:20, 20:30] = 3
    return labels


def assert_matches_reference(labels, **kwargs):
    fast = separation_border_weight_map(labels, **kwargs)
    reference = weight_map_reference(labels, **kwargs)
    assert fast.dtype == np.float32 and fast.shape == np.shape(labels)
    error = np.max(np.abs(fast.astype(np.float64) - reference.astype(np.float64)))
    assert error <= TOLERANCE, f"max abs error {error:.2e}"
    return fast, error


def border_term(d1, d2, w0=10.0, sigma=5.0):
    return w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


# --- exactness against the full-image reference -----------------------------------


def test_matches_reference_on_the_shipped_dense_masks(sample_masks):
    # upper half (80 nuclei, 31 touching): the full field takes the reference ~2 s
    weight, _ = assert_matches_reference(sample_masks[:260], dense=True)
    assert (weight > 0).all()  # dense: every pixel counts
    assert weight.max() > 5  # real touching nuclei give strong border weights


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"w0": 30.0, "sigma": 10.0, "class_weights": "balanced"},
        {"w0": 3.0, "sigma": 2.0, "gap": 2},
        {"class_weights": (0.5, 2.0), "gap": 0},
    ],
    ids=["defaults", "wide-balanced", "narrow-gap2", "explicit-gap0"],
)
def test_matches_reference_on_the_shipped_partial_annotation(sample_annotation, kwargs):
    weight, _ = assert_matches_reference(sample_annotation, **kwargs)
    assert np.all(weight[sample_annotation == 0] == 0)
    assert np.all(weight[sample_annotation != 0] > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_synthetic_touching_cells(seed):
    cells = voronoi_cells((160, 200), 60, seed, grow=12)
    _, error = assert_matches_reference(cells, dense=True)
    # documented: only border terms below 1e-5 are dropped (plus float32 rounding)
    assert error <= 1.2e-5
    # the same cells as a partial annotation with a hole nobody painted
    partial = np.where(cells > 0, cells + 1, BACKGROUND)
    partial[40:90, 60:140] = 0
    weight, _ = assert_matches_reference(partial, w0=10.0, sigma=3.0)
    assert np.all(weight[40:90, 60:140] == 0)


def test_matches_reference_when_the_reach_exceeds_the_image():
    cells = voronoi_cells((48, 64), 10, seed=4, grow=5)
    assert_matches_reference(cells, w0=100.0, sigma=40.0, dense=True)


def test_matches_reference_for_a_cell_split_in_two_places():
    labels = touching_squares()
    labels[30:35, 40:45] = 2  # second piece of cell 2, far from the first
    labels[30:35, 34:40] = 4
    assert_matches_reference(labels)


# --- shape of the map -------------------------------------------------------------


def test_weight_is_zero_exactly_where_not_annotated(sample_annotation):
    weight = separation_border_weight_map(sample_annotation, class_weights="balanced")
    assert weight.dtype == np.float32 and weight.shape == sample_annotation.shape
    assert np.count_nonzero(weight[sample_annotation == 0]) == 0
    assert np.all(weight[sample_annotation != 0] > 0)


def test_border_term_peaks_in_the_gap_between_touching_cells():
    labels = touching_squares()
    parts = annotation_to_target(labels)
    weight = separation_border_weight_map(labels)
    gap = np.zeros(labels.shape, bool)
    gap[10:20, 19:21] = True
    assert np.all(parts.classes[gap] == 0) and np.all(parts.mask[gap])
    peak = np.unravel_index(np.argmax(weight), weight.shape)
    assert gap[peak]
    # in mid-gap a pixel is 1 px from one square and 2 px from the other
    expected = 1.0 + border_term(1, 2)
    np.testing.assert_allclose(weight[15, 19], expected, rtol=1e-6)
    np.testing.assert_allclose(weight[15, 20], expected, rtol=1e-6)
    # cells carry w_c only; background far from the pair carries ~w_c
    np.testing.assert_array_equal(weight[parts.classes == 1], 1.0)
    assert weight[2, 45] == pytest.approx(1.0, abs=1e-6)
    # the border weight falls off away from the gap
    assert weight[15, 19] > weight[8, 19] > weight[3, 19] > 1.0


def test_one_cell_has_no_border_term_and_does_not_raise():
    labels = np.full((30, 30), BACKGROUND, np.uint8)
    labels[10:20, 10:20] = 2
    weight = separation_border_weight_map(labels)
    np.testing.assert_array_equal(weight, 1.0)


def test_no_cell_and_nothing_annotated_do_not_raise():
    only_background = np.zeros((20, 20), np.uint8)
    only_background[:, :5] = BACKGROUND
    weight = separation_border_weight_map(only_background)
    np.testing.assert_array_equal(weight[:, :5], 1.0)
    np.testing.assert_array_equal(weight[:, 5:], 0.0)
    np.testing.assert_array_equal(separation_border_weight_map(np.zeros((8, 8), np.uint8)), 0)


def test_dense_mode_weights_every_pixel():
    cells = np.zeros((40, 50), np.uint8)
    cells[10:20, 10:20] = 1
    cells[10:20, 20:30] = 2
    weight, _ = assert_matches_reference(cells, dense=True)
    assert np.all(weight > 0)
    partial = np.where(cells > 0, cells + 1, BACKGROUND)
    np.testing.assert_allclose(weight, separation_border_weight_map(partial))


def test_w0_and_sigma_shape_the_border_term():
    labels = touching_squares()
    base = separation_border_weight_map(labels)[15, 19] - 1
    doubled = separation_border_weight_map(labels, w0=20.0)[15, 19] - 1
    assert doubled == pytest.approx(2 * base, rel=1e-6)
    wide = separation_border_weight_map(labels, sigma=10.0)[15, 19] - 1
    assert wide == pytest.approx(border_term(1, 2, sigma=10.0), rel=1e-6)


# --- class weights ----------------------------------------------------------------


def test_class_balance_weights_inverse_frequency_with_mean_one():
    target = np.zeros((10, 10), np.uint8)
    target[:5, :5] = 1  # 25 cell pixels
    mask = np.ones((10, 10), bool)  # 75 background pixels
    w_background, w_cell = class_balance_weights(target, mask)
    assert w_background == pytest.approx(100 / (2 * 75))
    assert w_cell == pytest.approx(100 / (2 * 25))
    assert (75 * w_background + 25 * w_cell) / 100 == pytest.approx(1.0)


def test_class_balance_weights_count_annotated_pixels_only(sample_annotation):
    parts = annotation_to_target(sample_annotation)
    w_background, w_cell = class_balance_weights(parts.classes, parts.mask)
    annotated = parts.classes[parts.mask]
    mean = np.where(annotated == 1, w_cell, w_background).mean()
    assert mean == pytest.approx(1.0)
    n_cell = np.count_nonzero(annotated)
    assert w_cell / w_background == pytest.approx((annotated.size - n_cell) / n_cell)


def test_class_balance_weights_with_one_or_no_class():
    target = np.zeros((4, 4), np.uint8)
    assert class_balance_weights(target, np.ones((4, 4), bool)) == (1.0, 1.0)
    assert class_balance_weights(target, np.zeros((4, 4), bool)) == (1.0, 1.0)
    with pytest.raises(ValueError, match=r"target shape \(4, 4\) does not match mask shape"):
        class_balance_weights(target, np.ones((4, 5), bool))


def test_class_weight_variants_set_w_c(sample_annotation):
    parts = annotation_to_target(sample_annotation)
    cells = parts.classes == 1
    far = parts.mask & (parts.classes == 0)
    far &= separation_border_weight_map(sample_annotation) == 1.0  # no border term
    assert far.sum() > 1000
    for class_weights, expected in [
        (None, (1.0, 1.0)),
        ((0.5, 3.0), (0.5, 3.0)),
        ("balanced", class_balance_weights(parts.classes, parts.mask)),
    ]:
        weight = separation_border_weight_map(sample_annotation, class_weights=class_weights)
        np.testing.assert_allclose(weight[cells], expected[1], rtol=1e-6)
        np.testing.assert_allclose(weight[far], expected[0], rtol=1e-6)


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.ones((2, 8, 8), np.uint8), r"must be 2D \(YX\)"),
        (-np.ones((8, 8), np.int16), "negative values"),
        (np.full((8, 8), 1.5), "non-integer values"),
        (np.full((8, 8), "a"), "integer dtype"),
    ],
    ids=["3d", "negative", "fractional", "string"],
)
def test_bad_labels_are_rejected(labels, match):
    with pytest.raises(ValueError, match=match):
        separation_border_weight_map(labels)
    with pytest.raises(ValueError, match=match):
        weight_map_reference(labels)


@pytest.mark.parametrize("name", ["w0", "sigma"])
@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, "10", True, None])
def test_w0_and_sigma_must_be_positive_finite(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a positive finite number"):
        separation_border_weight_map(touching_squares(), **{name: value})


@pytest.mark.parametrize("class_weights", ["inverse", (1.0,), (1.0, -1.0), (1.0, math.nan), 3])
def test_bad_class_weights_are_rejected(class_weights):
    with pytest.raises(ValueError, match="class_weights"):
        separation_border_weight_map(touching_squares(), class_weights=class_weights)


def test_numpy_scalars_are_accepted():
    weight = separation_border_weight_map(touching_squares(), np.float32(10), np.int64(5))
    np.testing.assert_allclose(weight, separation_border_weight_map(touching_squares()))


def test_the_map_shown_is_the_map_trained_with(sample_image, sample_annotation):
    """The Weight-map widget's stack map and training's samples share one conversion."""
    from napari_unet.method.weight_map import iter_weight_map
    from napari_unet.training.loop import TrainingConfig
    from napari_unet.training.samples import prepare_samples

    config = TrainingConfig(w0=12.0, sigma=4.0)
    stack = np.stack([np.zeros_like(sample_annotation), sample_annotation])
    shown = run_to_completion(iter_weight_map(stack, config, n_classes=3))
    (sample,) = prepare_samples([sample_image], [sample_annotation], config, False, 3)
    np.testing.assert_array_equal(shown[0], 0)  # a plane without annotation
    np.testing.assert_array_equal(shown[1], sample.weights)
    assert shown[1].max() > 5  # separation borders between the touching nuclei


def test_defaults_are_those_of_training():
    """One default per rule: the API's class count and class weights are training's."""
    from napari_unet.training.config import SCRATCH_CONFIG, TrainingConfig

    labels = touching_squares()
    config = TrainingConfig()
    n_classes = config.n_classes or SCRATCH_CONFIG.n_classes  # None: the starting model's
    np.testing.assert_array_equal(
        weight_map.separation_border_weight_map(labels),
        weight_map.separation_border_weight_map(
            labels, n_classes=n_classes, class_weights=config.class_weights
        ),
    )
    np.testing.assert_allclose(
        weight_map.separation_border_weight_map(labels),
        testing.weight_map_reference(labels),
        atol=TOLERANCE,
    )
