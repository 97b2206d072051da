"""End-to-end segmentation with the shipped default model on the shipped real field."""

import dask.array as da
import numpy as np
import pytest

from napari_unet import segment
from napari_unet.inference.segment import SegmentProgress, iter_segment
from napari_unet.metrics import average_precision, seg_score

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def default_model():
    from napari_unet.models.files import load_model

    return load_model("default")


@pytest.fixture(scope="module")
def crop():
    from importlib.resources import files

    from napari_unet.io.files import read_image

    image = read_image(files("napari_unet") / "data" / "nuclei.tif")
    masks = read_image(files("napari_unet") / "data" / "nuclei_masks.tif")
    return image[:200, :260], masks[:200, :260]


def test_default_model_segments_the_sample_field(sample_image, sample_masks, default_model):
    labels = segment(sample_image)  # model=None: the shipped default
    assert labels.dtype == np.int32 and labels.shape == sample_image.shape
    n_true = len(np.unique(sample_masks)) - 1
    assert 0.8 * n_true < labels.max() < 1.2 * n_true
    # The field is from the training split: a sanity check, not an accuracy claim
    # (docs/default-model.md reports the test split).
    assert seg_score(sample_masks, labels) > 0.75
    assert average_precision(sample_masks, labels) > 0.7


def test_progress_and_result(crop, default_model):
    image, _ = crop
    gen = iter_segment(image, default_model, tile_shape=(188, 188), precision="float32")
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as done:
            result = done.value
            break
    assert all(isinstance(p, SegmentProgress) for p in progress)
    assert progress[-1].fraction == pytest.approx(1.0)
    assert progress[-1].n_tiles > 1
    assert result.device == "cpu" and result.precision == "float32"
    assert result.probabilities.dtype == np.float32
    assert 0 <= result.probabilities.min() and result.probabilities.max() <= 1
    assert result.labels.max() > 5
    # cells are where the network is confident (plus the grown-back separation gaps)
    assert np.mean(result.probabilities[result.labels > 0] > 0.5) > 0.95


def test_stacks_are_segmented_plane_by_plane(crop, default_model):
    image, _ = crop
    stack = np.stack([image, image[::-1]])
    labels = segment(stack, default_model, precision="float32")
    assert labels.shape == stack.shape
    np.testing.assert_array_equal(labels[0], segment(image, default_model, precision="float32"))
    flipped = segment(np.ascontiguousarray(image[::-1]), default_model, precision="float32")
    np.testing.assert_array_equal(labels[1], flipped)
    assert abs(int(labels[1].max()) - int(labels[0].max())) <= 2


def test_dask_and_rgb_inputs(crop, default_model):
    image, _ = crop
    reference = segment(image, default_model, precision="float32")
    lazy = da.from_array(image, chunks=(64, 64))
    np.testing.assert_array_equal(segment(lazy, default_model, precision="float32"), reference)
    rgb = np.stack([image] * 3, axis=-1)
    labels = segment(rgb, default_model, precision="float32")
    assert labels.shape == image.shape
    assert abs(int(labels.max()) - int(reference.max())) <= 2


@pytest.mark.parametrize("precision", ["auto", "bfloat16"])
def test_reduced_precision_agrees_with_float32(sample_image, default_model, precision):
    from napari_unet.runtime.devices import resolve_precision

    try:
        resolve_precision(precision, "cpu")
    except ValueError as error:
        pytest.skip(str(error))
    reference = segment(sample_image, default_model, precision="float32")
    labels = segment(sample_image, default_model, precision=precision)
    assert np.mean((labels > 0) == (reference > 0)) >= 0.999


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros(5), "expected a 2D image"),
        (np.full((32, 32), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_input(image, message, default_model):
    with pytest.raises(ValueError, match=message):
        segment(image, default_model)


def test_unknown_model_file():
    with pytest.raises(FileNotFoundError):
        segment(np.zeros((32, 32)), "no/such/model.safetensors")
