"""Sample data contributions (no viewer needed, plus one test through napari)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet._sample_data import (
    cells_ground_truth,
    nuclei,
    nuclei_annotated,
    nuclei_ground_truth,
)


def test_nuclei_image():
    ((data, attributes, kind),) = nuclei()
    assert kind == "image" and attributes["name"] == "nuclei"
    assert data.shape == (520, 696) and data.dtype == np.uint16


def test_nuclei_with_partial_annotation():
    (image, _, _), (annotation, attributes, kind) = nuclei_annotated()
    assert kind == "labels" and attributes["name"] == "nuclei annotation"
    assert annotation.shape == image.shape and annotation.dtype == np.uint16
    ids = np.unique(annotation)
    assert ids[0] == 0 and 1 in ids  # not annotated, background
    assert len(ids[ids >= 2]) == 31  # one id per annotated cell


def test_nuclei_with_ground_truth():
    (image, _, _), (masks, attributes, kind) = nuclei_ground_truth()
    assert kind == "labels" and masks.shape == image.shape
    assert masks.max() > 100


def test_touching_cells_with_ground_truth():
    (image, attributes, _), (masks, mask_attributes, kind) = cells_ground_truth()
    assert attributes["name"] == "cells" and mask_attributes["name"] == "cells ground truth"
    assert kind == "labels" and image.shape == masks.shape == (384, 384)
    assert image.dtype == np.uint16 and masks.max() == 31
    grown = np.maximum.reduce([np.roll(masks, s, a) for s in (-1, 1) for a in (0, 1)])
    assert ((grown != masks) & (masks > 0) & (grown > 0)).any()  # some cells touch


@pytest.mark.gui
def test_open_sample_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet-cells", "nuclei_annotated")
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei annotation"]
    assert viewer.layers["nuclei annotation"].__class__.__name__ == "Labels"
