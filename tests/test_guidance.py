"""Uncertainty, cell confidence and the "Where next" ranking (core, no display)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.live.guidance import (
    ANNOTATED_SHARE,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_RANKING,
    GuidanceTour,
    confident_cells,
    iter_rank_plane,
    rank_candidates,
)
from napari_unet.method.typicality import (
    UNCERTAINTY_TURN,
    cell_features,
    typicality,
    uncertainty_weight,
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
    found = rank_candidates(labels, uncertainty, min_region=20, ranking="uncertain")
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
    (hollow,) = rank_candidates(ring, np.full(ring.shape, 0.01, np.float32), ranking="uncertain")
    assert hollow.contains((), hollow.center)  # not the centroid, which lies in the hole
    # annotated: cell 2 painted (> half of it), cell 3 a few background strokes only
    annotation = np.zeros(labels.shape, np.uint16)
    annotation[5:15, 40:48] = 5
    annotation[40:42, 5:15] = 1
    assert found[1].annotated_share(annotation) >= ANNOTATED_SHARE
    kept = rank_candidates(labels, uncertainty, annotation, min_region=20, ranking="uncertain")
    assert [c.label for c in kept] == [0, 3, 1]
    # small unsure patches are no candidates
    small = rank_candidates(labels, uncertainty, min_region=200, ranking="uncertain")
    assert [c.label for c in small] == [2, 3, 1]
    with pytest.raises(ValueError, match="same shape"):
        rank_candidates(labels, uncertainty[:, :10])
    with pytest.raises(ValueError, match="ranking"):
        rank_candidates(labels, uncertainty, ranking="random")


def test_the_tour_moves_on_skips_what_was_shown_and_what_got_annotated():
    labels, uncertainty = three_cells()
    tour = GuidanceTour()
    tour.update(rank_candidates(labels, uncertainty, min_region=20, ranking="uncertain"))
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
    tour.update(rank_candidates(shifted, uncertainty, min_region=20, ranking="uncertain"))
    assert [c.label for c in tour.remaining(annotation)] == [1]
    assert tour.next(annotation).label == 1
    assert tour.next(annotation) is None and tour.n_shown == 3
    tour.forget()
    assert tour.next(annotation).kind == "region"


def crowd_of_cells(seed: int = 0):
    """A 6x8 grid of round, bright cells of similar size, three of them odd (big, dim, unsure).

    Returns the labels, a noisy blurred image, the per-pixel uncertainty and the odd ids.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:144, :192]
    labels = np.zeros(yy.shape, np.int32)
    image = np.zeros(yy.shape, np.float32)
    uncertainty = np.full(yy.shape, 0.02, np.float32)
    odd = {9, 22, 40}
    for i in range(48):
        cy, cx = 12 + 24 * (i // 8), 12 + 24 * (i % 8)
        radius = 11 if i + 1 in odd else rng.uniform(6, 8)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        labels[disk] = i + 1
        image[disk] = 0.3 if i + 1 in odd else rng.uniform(0.8, 1.0)
        uncertainty[disk] = 0.7 if i + 1 in odd else rng.uniform(0.1, 0.3)
    image = ndi.gaussian_filter(image, 1.5) + rng.normal(0, 0.05, image.shape)
    return labels, image.astype(np.float32), uncertainty, odd


def test_the_mixed_ranking_starts_with_typical_cells_spread_out_and_turns_to_uncertain():
    labels, image, uncertainty, odd = crowd_of_cells()
    uncertain = rank_candidates(labels, uncertainty, image=image, ranking="uncertain")
    assert {c.label for c in uncertain[:3]} == odd  # uncertainty sampling: the odd ones
    mixed = rank_candidates(labels, uncertainty, image=image)  # the default
    assert DEFAULT_RANKING == "mixed" and {c.label for c in mixed} == set(range(1, 49))
    first = mixed[:8]
    assert not odd & {c.label for c in first}  # typical cells first
    assert min(i for i, c in enumerate(mixed) if c.label in odd) >= 24  # odd ones late
    centres = np.array([c.center for c in first])
    gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(8, dtype=bool)].min() > 24  # no two next to each other: spread out
    # with many cells painted, uncertainty counts more: the odd cells move up
    annotation = np.zeros(labels.shape, np.uint16)
    painted = [c.label for c in mixed[:30] if c.label not in odd][:25]
    for cell in painted:
        annotation[labels == cell] = cell + 1
    later = rank_candidates(labels, uncertainty, annotation, image=image)
    assert {c.label for c in later}.isdisjoint(painted)
    assert later[0].label in odd  # one of them first (the others are like it: later)
    assert uncertainty_weight(0) == 0 and uncertainty_weight(UNCERTAINTY_TURN) == 0.5
    # no cell predicted, or a single one: still a ranking
    unsure = np.zeros(labels.shape, np.float32)
    unsure[5:15, 5:15] = 0.9
    (region,) = rank_candidates(np.zeros_like(labels), unsure, min_region=20)
    assert region.kind == "region"
    single = np.where(labels == 5, 5, 0)
    assert [c.label for c in rank_candidates(single, unsure, image=image, min_region=20)] == [5, 0]


def test_typicality_is_high_in_the_crowd_and_low_for_outliers():
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(0, 1, (50, 3)), [[8.0, 8.0, 8.0]]])
    t = typicality(features, k=10)
    assert t.shape == (51,) and np.argmin(t) == 50
    assert t[np.argmin(np.linalg.norm(features[:50], axis=1))] > np.median(t)
    np.testing.assert_array_equal(typicality(features[:1]), [1.0])
    labels, image, uncertainty, _ = crowd_of_cells()
    ids, confidence = cell_confidence(labels, uncertainty)
    f = cell_features(labels, ids, confidence, image)
    assert f.shape == (48, 4)
    np.testing.assert_allclose(f[:, 0], np.log(np.bincount(labels.ravel())[1:]))
    assert cell_features(labels, ids, confidence).shape == (48, 2)
    with pytest.raises(ValueError, match="confidences"):
        cell_features(labels, ids, confidence[:3])
    with pytest.raises(ValueError, match="differ"):
        cell_features(labels, ids, confidence, image[:10])


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
    for c in found:
        assert c.annotated_share(annotation) < ANNOTATED_SHARE
    # the default ("mixed"): cells of typical size first, not next to each other
    areas = np.array([c.mask.sum() for c in found if c.kind == "cell"])
    first = found[:5]
    assert all(c.kind == "cell" and 0.5 < c.mask.sum() / np.median(areas) < 2 for c in first)
    centres = np.array([c.center for c in first])
    gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(5, dtype=bool)].min() > 2 * np.sqrt(np.median(areas) / np.pi)
    uncertain = run_to_completion(
        iter_rank_plane(sample_image, load_model(), annotation, ranking="uncertain")
    )
    confidence = [c.confidence for c in uncertain]
    assert confidence == sorted(confidence) and len(uncertain) == len(found)
