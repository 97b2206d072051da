import numpy as np
import pytest

from napari_unet.metrics import average_precision, match_counts, seg_score


def _two_squares():
    gt = np.zeros((20, 20), np.uint16)
    gt[2:8, 2:8] = 1
    gt[12:18, 12:18] = 2
    return gt


def test_identical_labels_score_one_whatever_the_ids():
    gt = _two_squares()
    pred = np.where(gt == 1, 7, np.where(gt == 2, 3, 0))
    assert seg_score(gt, pred) == 1.0
    assert average_precision(gt, pred) == 1.0


def test_partial_overlap_missing_and_false_objects():
    gt = _two_squares()
    pred = np.zeros_like(gt)
    pred[2:8, 2:5] = 1  # half of object 1: IoU 0.5, covers exactly half -> not matched for SEG
    pred[0:2, 15:20] = 2  # false positive
    assert seg_score(gt, pred) == 0.0
    assert match_counts(gt, pred) == (0, 2, 2)
    pred[2:8, 2:6] = 1  # 2/3 of object 1: IoU 2/3
    assert seg_score(gt, pred) == pytest.approx((2 / 3) / 2)
    assert match_counts(gt, pred) == (1, 1, 1)
    assert average_precision(gt, pred) == pytest.approx(1 / 3)


def test_empty_images():
    empty = np.zeros((5, 5), int)
    assert np.isnan(seg_score(empty, empty))
    assert average_precision(empty, empty) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        seg_score(empty, np.zeros((5, 6), int))
