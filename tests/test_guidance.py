"""Uncertainty, cell confidence and the "Where next" ranking (core, no display)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.live.guidance import (
    ANNOTATED_SHARE,
    DEFAULT_MIN_CONFIDENCE,
    GuidanceTour,
    confident_cells,
    iter_rank_plane,
    rank_candidates,
)
from napari_unet.method.uncertainty import (
    cell_confidence,
    class_entropy,
    full_probabilities,
    margin_uncertainty,
    pixel_uncertainty,
)
from napari_unet.runtime.progress import run_to_completion


def three_cells():
    """Three square cells and an uncertainty map: cell 2 unsure, a patch unsure on background."""
    labels = np.zeros((64, 96), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 40:50] = 2
    labels[40:50, 5:15] = 3
    uncertainty = np.full(labels.shape, 0.05, np.float32)
    uncertainty[labels == 2] = 0.6
    uncertainty[labels == 3] = 0.3
    uncertainty[40:52, 60:72] = 0.9  # a patch of background the network hesitates on
    return labels, uncertainty


def test_full_probabilities_recover_the_missing_class_and_entropy_bounds():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 8, 8))
    p = np.exp(logits) / np.exp(logits).sum(0)
    full = full_probabilities(p[[0, 1]], (0, 1), 3)
    np.testing.assert_allclose(full, p, atol=1e-6)
    np.testing.assert_allclose(full_probabilities(p[[2]] * 0 + 0.3, (1,), 2)[0], 0.7, atol=1e-6)
    h = class_entropy(p)
    assert h.dtype == np.float32 and 0 <= h.min() and h.max() <= 1
    # certain pixels: 0; a three-way tie: 1
    assert class_entropy(np.array([[1.0], [0.0], [0.0]]))[0] == pytest.approx(0, abs=1e-5)
    assert class_entropy(np.full((3, 1), 1 / 3))[0] == pytest.approx(1, abs=1e-5)
    assert margin_uncertainty(np.array([[0.5], [0.5], [0.0]]))[0] == pytest.approx(1)
    np.testing.assert_allclose(pixel_uncertainty(p[[0, 1]], (0, 1), 3), h, atol=1e-5)
    with pytest.raises(ValueError, match="missing"):
        full_probabilities(p[[0]], (0,), 3)
    with pytest.raises(ValueError, match="distinct"):
        full_probabilities(p[[0, 1]], (0, 0), 3)


def test_cell_confidence_is_the_mean_certainty_over_the_cell():
    labels, uncertainty = three_cells()
    ids, confidence = cell_confidence(labels, uncertainty)
    np.testing.assert_array_equal(ids, [1, 2, 3])
    np.testing.assert_allclose(confidence, [0.95, 0.4, 0.7], atol=1e-6)
    ids, confidence = cell_confidence(np.zeros((4, 4), int), np.zeros((4, 4)))
    assert ids.size == 0 and confidence.size == 0
    with pytest.raises(ValueError, match="differ"):
        cell_confidence(labels, uncertainty[:10])


def test_uncertainty_marks_the_pixels_the_default_model_gets_wrong(sample_image, sample_masks):
    """On the shipped nuclei sample, wrong pixels are far more uncertain than right ones."""
    from napari_unet.inference.segment import iter_segment

    result = run_to_completion(iter_segment(sample_image, uncertainty=True, device="cpu"))
    u = result.uncertainty
    assert u.shape == sample_image.shape and u.dtype == np.float32
    wrong = (result.labels > 0) != (sample_masks > 0)
    assert 0 < wrong.mean() < 0.2
    assert u[wrong].mean() > 3 * u[~wrong].mean()
    # and the cells it gets right are the more confident ones
    from napari_unet.metrics import match

    ids, confidence = cell_confidence(result.labels, u)
    m = match(sample_masks, result.labels)
    uniq = np.unique(result.labels)
    good = {int(uniq[p]) for p, iou in zip(m.pred_ids, m.iou, strict=True) if iou >= 0.5}
    correct = np.isin(ids, list(good))
    assert correct.any() and (~correct).any()
    assert confidence[correct].mean() > confidence[~correct].mean()
    # at the default threshold, the accepted cells are (almost all) correct
    assert correct[confidence >= DEFAULT_MIN_CONFIDENCE].mean() >= 0.95


def test_candidates_are_ranked_least_confident_first_and_annotated_ones_left_out():
    labels, uncertainty = three_cells()
    found = rank_candidates(labels, uncertainty, min_region=20)
    assert [(c.kind, c.label) for c in found] == [
        ("region", 0),
        ("cell", 2),
        ("cell", 3),
        ("cell", 1),
    ]
    assert [round(c.confidence, 3) for c in found] == [0.1, 0.4, 0.7, 0.95]
    region = found[0]
    assert region.box == (40, 60, 52, 72) and region.mask.all()
    # the centre is a pixel of the candidate, next to its centroid (9.5, 44.5)
    assert found[1].contains((), found[1].center)
    assert np.hypot(found[1].center[0] - 9.5, found[1].center[1] - 44.5) <= 1
    ring = np.zeros((20, 20), np.int32)
    ring[2:18, 2:18] = 1
    ring[5:15, 5:15] = 0
    (hollow,) = rank_candidates(ring, np.full(ring.shape, 0.01, np.float32))
    assert hollow.contains((), hollow.center)  # not the centroid, which lies in the hole
    # annotated: cell 2 painted (> half of it), cell 3 a few background strokes only
    annotation = np.zeros(labels.shape, np.uint16)
    annotation[5:15, 40:48] = 5
    annotation[40:42, 5:15] = 1
    assert found[1].annotated_share(annotation) >= ANNOTATED_SHARE
    kept = rank_candidates(labels, uncertainty, annotation, min_region=20)
    assert [c.label for c in kept] == [0, 3, 1]
    # small unsure patches are no candidates
    assert [c.label for c in rank_candidates(labels, uncertainty, min_region=200)] == [2, 3, 1]
    with pytest.raises(ValueError, match="same shape"):
        rank_candidates(labels, uncertainty[:, :10])


def test_the_tour_moves_on_skips_what_was_shown_and_what_got_annotated():
    labels, uncertainty = three_cells()
    tour = GuidanceTour()
    tour.update(rank_candidates(labels, uncertainty, min_region=20))
    annotation = np.zeros(labels.shape, np.uint16)
    first = tour.next(annotation)
    assert first.kind == "region"
    # the user paints cell 2 before asking again: it is skipped
    annotation[labels == 2] = 7
    second = tour.next(annotation)
    assert second.label == 3
    # a new ranking (a newer network) keeps the memory of what was shown
    shifted = labels.copy()
    shifted[shifted == 3] = 9  # the same cell under another id
    tour.update(rank_candidates(shifted, uncertainty, min_region=20))
    assert [c.label for c in tour.remaining(annotation)] == [1]
    assert tour.next(annotation).label == 1
    assert tour.next(annotation) is None and tour.n_shown == 3
    tour.forget()
    assert tour.next(annotation).kind == "region"


def test_confident_cells_uses_the_threshold():
    kept = confident_cells([3, 1, 2, 8], [1, 2, 3], [0.9, 0.5, 0.7], 0.6)
    np.testing.assert_array_equal(kept, [3, 1])  # 8 has no confidence: left out
    np.testing.assert_array_equal(confident_cells([3, 8], [3], [0.1], 0.0), [3, 8])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confident_cells([1], [1], [0.5], 1.5)


def test_rank_plane_with_the_default_model_points_at_unannotated_cells(sample_image, sample_masks):
    from napari_unet.models.files import load_model

    annotation = np.zeros(sample_masks.shape, np.uint16)
    annotation[:260, :348] = np.where(sample_masks[:260, :348] > 0, 2, 1)  # upper-left quarter
    found = run_to_completion(
        iter_rank_plane(sample_image, load_model(), annotation, plane_index=(), device="cpu")
    )
    assert len(found) > 20
    confidence = [c.confidence for c in found]
    assert confidence == sorted(confidence)
    for c in found:
        assert c.annotated_share(annotation) < ANNOTATED_SHARE
