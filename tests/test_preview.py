"""The live preview's core: the visible region, its context, and its segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.live.preview import ViewRegion, context_box, iter_preview, plane_of, view_region
from napari_unet.method.network import UNet, UNetConfig
from napari_unet.runtime.progress import run_to_completion


def test_view_region_from_napari_corner_pixels():
    # corner_pixels holds the first and last visible pixel, inclusive, of every axis
    region = view_region([[3, 10, 20], [3, 99, 149]], (5, 520, 696), plane=(3,))
    assert region == ViewRegion((3,), 10, 20, 100, 150)
    assert region.shape == (90, 130)
    assert region.index == (3, slice(10, 100), slice(20, 150))
    # clipped to the plane
    assert view_region([[-40, -5], [900, 800]], (520, 696)).box == (0, 0, 520, 696)
    # napari's corners before the first draw (all zero) give the whole plane
    assert view_region(np.zeros((2, 2)), (520, 696)).box == (0, 0, 520, 696)


def test_context_box_adds_the_halo_and_starts_on_the_pooling_grid():
    model = UNet(config=UNetConfig(depth=3, base_channels=4))
    p, margin = model.pooling_factor, model.halo + model.pooling_factor
    region = ViewRegion((), 101, 203, 150, 260)
    top, left, bottom, right = context_box(region, (1000, 1000), model)
    assert top % p == 0 and left % p == 0
    assert region.top - top >= margin and region.left - left >= margin
    assert bottom == region.bottom + margin and right == region.right + margin
    assert context_box(ViewRegion((), 0, 0, 50, 50), (60, 70), model) == (0, 0, 60, 70)


def test_preview_equals_the_whole_image_segmentation_in_the_view(sample_image):
    from napari_unet.inference.segment import segment
    from napari_unet.models.files import load_model

    model = load_model()
    whole = segment(sample_image, model, device="cpu", precision="float32")
    region = ViewRegion((), 150, 200, 350, 450)
    result = run_to_completion(
        iter_preview(sample_image, region, model, device="cpu", precision="float32")
    )
    assert result.region is region and result.labels.shape == region.shape
    expected = whole[region.index]
    # the same cells: one-to-one between the two numberings, pixel for pixel
    pairs = np.unique(np.stack([expected.ravel(), result.labels.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    assert (expected > 0).sum() > 1000
    assert result.n_cells == len(np.unique(expected[expected > 0])) > 5  # counted in the worker


def test_preview_normalises_with_the_whole_plane(sample_image):
    # A view of background only: with the crop's own percentiles its noise would be
    # stretched to the full range and predicted as cells.
    from napari_unet.inference.segment import segment
    from napari_unet.models.files import load_model

    model = load_model()
    whole = segment(sample_image, model, device="cpu")
    ys, xs = np.nonzero(whole == 0)
    empty = None
    for y in range(0, 520 - 40, 8):
        for x in range(0, 696 - 40, 8):
            if not whole[y : y + 40, x : x + 40].any():
                empty = ViewRegion((), y, x, y + 40, x + 40)
                break
        if empty:
            break
    assert empty is not None
    result = run_to_completion(iter_preview(sample_image, empty, model, device="cpu"))
    assert not result.labels.any()


def test_plane_of_a_stack_and_of_rgb():
    stack = np.arange(2 * 3 * 8 * 9, dtype=np.uint16).reshape(2, 3, 8, 9)
    plane = plane_of(stack, ViewRegion((1, 2), 0, 0, 8, 9))
    np.testing.assert_array_equal(plane, stack[1, 2])
    rgb = np.zeros((8, 9, 3), np.uint8)
    assert plane_of(rgb, ViewRegion((), 0, 0, 8, 9)).shape == (8, 9)
    with pytest.raises(ValueError, match="leading axes"):
        plane_of(stack, ViewRegion((1,), 0, 0, 8, 9))


def test_preview_rejects_a_region_outside_the_plane():
    model = UNet(config=UNetConfig(depth=2, base_channels=4))
    with pytest.raises(ValueError, match="outside"):
        run_to_completion(iter_preview(np.zeros((20, 20)), ViewRegion((), 0, 0, 30, 10), model))
