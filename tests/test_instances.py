import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.method.annotation import annotation_to_target
from napari_unet.method.instances import probabilities_to_labels
from napari_unet.metrics import seg_score


def test_touching_cells_separated_by_the_gap_are_split_and_grown_back(sample_masks):
    # A perfect network output: the training target, whose separation gaps are 2 px wide.
    target = annotation_to_target(sample_masks, dense=True, gap=1).classes.astype(np.float32)
    n_true = len(np.unique(sample_masks)) - 1
    not_grown = probabilities_to_labels(target, threshold=0.5, min_size=1, grow=0)
    labels = probabilities_to_labels(target, threshold=0.5, min_size=1, grow=2)
    assert labels.dtype == np.int32
    # Every nucleus comes back as its own object, touching ones included.
    assert labels.max() == not_grown.max() == n_true
    # Growing back over the gaps restores most of the area lost to the border ...
    assert seg_score(sample_masks, labels) > seg_score(sample_masks, not_grown) + 0.005
    assert seg_score(sample_masks, labels) > 0.98
    # ... and only between cells: pixels more than 2 px from every cell stay 0.
    far = ndi.distance_transform_edt(sample_masks == 0) > 2
    assert not labels[far].any()


def test_small_objects_removed_and_isolated_cells_not_grown():
    prob = np.zeros((40, 40), np.float32)
    prob[5:15, 5:15] = 0.9
    prob[30, 30] = 0.9
    labels = probabilities_to_labels(prob, min_size=4, grow=2)
    assert labels.max() == 1
    assert (labels > 0).sum() == 100  # isolated: outline kept as predicted


def test_bad_input():
    with pytest.raises(ValueError, match="must be 2D"):
        probabilities_to_labels(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="threshold"):
        probabilities_to_labels(np.zeros((3, 4)), threshold=1.5)


def test_growing_in_bands_equals_growing_the_whole_image(sample_masks, monkeypatch):
    import napari_unet.method.instances as instances

    target = annotation_to_target(sample_masks, dense=True, gap=1).classes.astype(np.float32)
    whole = probabilities_to_labels(target, min_size=1, grow=2)
    monkeypatch.setattr(instances, "_BAND_ROWS", 7)
    np.testing.assert_array_equal(probabilities_to_labels(target, min_size=1, grow=2), whole)
