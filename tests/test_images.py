import numpy as np
import pytest

from napari_unet.method.images import image_layout, iter_planes, normalize, percentile_normalization


def test_layouts():
    assert image_layout(np.zeros((30, 40))).labels_shape == (30, 40)
    rgb = image_layout(np.zeros((30, 40, 3), np.uint8))
    assert rgb.rgb and rgb.labels_shape == (30, 40)
    stack = image_layout(np.zeros((5, 30, 40), np.uint16))
    assert not stack.rgb and stack.n_planes == 5 and stack.labels_shape == (5, 30, 40)
    assert image_layout(np.zeros((2, 3, 30, 40))).leading_shape == (2, 3)
    # napari's own rule: a last axis of 3 on a stack of tiny planes is not RGB
    assert not image_layout(np.zeros((30, 4, 3))).rgb


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((0, 10)), "empty"),
        (np.zeros(10), "expected a 2D image"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        image_layout(image)


def test_rgb_true_needs_a_channel_axis():
    with pytest.raises(ValueError, match="not RGB"):
        image_layout(np.zeros((30, 40)), rgb=True)


def test_nan_is_reported():
    image = np.ones((20, 20), np.float32)
    image[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        percentile_normalization(image)


def test_percentile_normalisation_of_a_real_field(sample_image):
    low, high = percentile_normalization(sample_image)
    x = normalize(sample_image, low, high)
    assert x.dtype == np.float32
    assert np.mean(x < 0) == pytest.approx(0.01, abs=0.005)
    assert np.mean(x > 1) == pytest.approx(0.002, abs=0.002)
    # constant images do not divide by zero
    assert percentile_normalization(np.full((8, 8), 7)) == (7.0, 8.0)


def test_brightfield_rgb_is_inverted_so_nuclei_are_bright():
    rgb = np.full((64, 64, 3), 220, np.uint8)
    rgb[20:30, 20:30] = (60, 20, 90)  # a dark purple (H&E-like) nucleus
    ((_, gray),) = iter_planes(rgb, image_layout(rgb))
    assert gray[25, 25] > gray[5, 5]
    fluo = np.zeros((64, 64, 3), np.uint8)
    fluo[20:30, 20:30] = (10, 200, 30)
    ((_, gray),) = iter_planes(fluo, image_layout(fluo))
    assert gray[25, 25] > gray[5, 5]


def test_inverting_a_bright_background_is_an_explicit_option():
    rgb = np.full((64, 64, 3), 220, np.uint8)
    rgb[20:30, 20:30] = (60, 20, 90)
    ((_, plain),) = iter_planes(rgb, image_layout(rgb), invert_bright_background=False)
    assert plain[25, 25] < plain[5, 5]  # the luminance as it is: a dark nucleus
    ((_, inverted),) = iter_planes(rgb, image_layout(rgb))
    np.testing.assert_allclose(inverted + plain, inverted[5, 5] + plain[5, 5], atol=1e-3)
