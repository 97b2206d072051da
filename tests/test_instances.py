import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.method.annotation import annotation_to_target
from napari_unet.method.instances import (
    boundary_watershed,
    fill_cell_holes,
    probabilities_to_labels,
)
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


def _disc_probabilities(shape=(64, 64), centre=(32, 32), radius=14):
    """Three-class probabilities (background, interior) of one round cell."""
    yy, xx = np.indices(shape)
    r = np.hypot(yy - centre[0], xx - centre[1])
    cell = r <= radius
    background = np.where(cell, 0.05, 0.95).astype(np.float32)
    interior = np.where(r <= radius - 2, 0.9, 0.05).astype(np.float32)
    return background, interior, cell


def test_fill_holes_gives_a_cell_its_enclosed_background():
    background, interior, cell = _disc_probabilities()
    hole = np.zeros_like(cell)
    hole[29:35, 29:35] = True  # a dim nucleolus the network calls background
    background[hole], interior[hole] = 0.95, 0.05
    plain = boundary_watershed(background, interior, 0.5, 16, 0.5)
    filled = boundary_watershed(background, interior, 0.5, 16, 0.5, fill_holes=True)
    assert (plain[hole] == 0).all() and (filled[hole] == filled[32, 20]).all()
    assert seg_score(cell.astype(np.int32), filled) > seg_score(cell.astype(np.int32), plain)
    # background between two cells is not a hole of either
    two = np.zeros((40, 80), np.int32)
    two[5:35, 5:38], two[5:35, 42:75] = 1, 2
    np.testing.assert_array_equal(fill_cell_holes(two.copy()), two)


def test_smoothing_removes_a_ragged_spur_and_keeps_the_cell():
    background, interior, cell = _disc_probabilities()
    spur = np.zeros_like(cell)
    spur[31:33, 46:60] = True  # a 2 px protrusion out of the cell
    background[spur] = 0.3
    rough = boundary_watershed(background, interior, 0.5, 16, 0.5)
    smooth = boundary_watershed(background, interior, 0.5, 16, 0.5, smoothing=1.5)
    assert rough[spur].all() and not smooth[31:33, 50:60].any()
    assert seg_score(cell.astype(np.int32), smooth) > seg_score(cell.astype(np.int32), rough)
    with pytest.raises(ValueError, match="smoothing"):
        boundary_watershed(background, interior, 0.5, 16, 0.5, smoothing=-1)
