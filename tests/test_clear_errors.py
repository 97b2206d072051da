"""Bad input through the API: a correct result or a ValueError that names the problem (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_unet
from napari_unet.method.network import UNet
from napari_unet.models.files import default_model_available
from napari_unet.runtime.progress import run_to_completion
from napari_unet.training.loop import TrainingConfig, train


@pytest.fixture(scope="module")
def tiny():
    return UNet(depth=2, base_channels=2).eval()


def small_pair(shape=(48, 48)):
    rng = np.random.default_rng(0)
    image = rng.random(shape)
    labels = np.ones(shape, np.uint8)
    labels[10:20, 10:20] = 2
    return image, labels


def test_bool_images_segment_and_train(tiny):
    image, labels = small_pair()
    mask = image > 0.5
    assert napari_unet.segment(mask, tiny, precision="float32").shape == mask.shape
    result = run_to_completion(
        train([mask], [labels], config=TrainingConfig(n_iterations=1, batch_size=1), seed=0)
    )
    assert result.history[-1].iteration == 1


def test_a_list_of_lists_image_segments(tiny):
    image = (np.arange(40 * 40) % 7).reshape(40, 40).tolist()
    assert napari_unet.segment(image, tiny, precision="float32").shape == (40, 40)


def test_train_loads_a_model_name_and_refuses_other_types(tiny):
    image, labels = small_pair()
    config = TrainingConfig(n_iterations=1, batch_size=1)
    if default_model_available():
        result = run_to_completion(train([image], [labels], model="default", config=config))
        assert result.model.config == napari_unet.load_model("default").config
    with pytest.raises(ValueError, match="model must be a UNet, a model file or a shipped"):
        run_to_completion(train([image], [labels], model=42, config=config))


def test_predict_tiled_without_a_model():
    with pytest.raises(ValueError, match="model must be a UNet"):
        napari_unet.predict_tiled(np.zeros((30, 30)), None)


def test_one_nan_pixel_is_refused_not_spread(tiny):
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    image[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        napari_unet.predict_tiled(image, tiny, precision="float32")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"validation_interval": 0}, "validation_interval must be a positive integer, got 0"),
        ({"batch_size": 1.5}, "batch_size must be a positive integer, got 1.5"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"n_iterations": 0}, "n_iterations must be a positive integer"),
        ({"tile_shape": (-5, -5)}, r"tile_shape must be two positive integers \(Y, X\)"),
        ({"tile_shape": (100,)}, r"tile_shape must be two positive integers"),
    ],
)
def test_training_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**kwargs)


def test_a_training_tile_too_large_for_memory_is_refused_before_training(monkeypatch):
    import napari_unet.runtime.devices

    monkeypatch.setattr(napari_unet.runtime.devices, "available_memory", lambda device="cpu": 2**30)
    image, labels = small_pair()
    config = TrainingConfig(n_iterations=1, tile_shape=(20000, 20000))
    with pytest.raises(ValueError, match=r"would need about .* GiB of memory but 1.0 GiB"):
        next(train([image], [labels], config=config))


def test_a_bad_validation_pair_fails_before_the_first_iteration():
    image, labels = small_pair()
    config = TrainingConfig(n_iterations=5, batch_size=1, validation_interval=1)
    for bad in [(image, labels[:40]), (np.stack([image, image]), labels)]:
        generator = train([image], [labels], config=config, validation=[bad])
        with pytest.raises(ValueError, match="validation pair 0"):
            next(generator)


def test_dense_mode_message_names_the_dense_convention():
    image = np.random.default_rng(0).random((32, 32))
    with pytest.raises(ValueError, match=r"no cell \(labels >= 1\)"):
        next(train([image], [np.zeros((32, 32), np.uint8)], dense=True))


def test_weight_map_errors():
    labels = np.ones((8, 8), np.uint8)
    labels[2:4, 2:4] = 2
    with pytest.raises(
        ValueError, match=r"annotation is empty: it has no pixels \(shape \(0, 5\)\)"
    ):
        napari_unet.separation_border_weight_map(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match="w0 must be at most"):
        napari_unet.separation_border_weight_map(labels, w0=1e308)
    with pytest.raises(ValueError, match="sigma must be at most"):
        napari_unet.separation_border_weight_map(labels, sigma=1e308)
    with pytest.raises(ValueError, match="too large for label ids"):
        napari_unet.separation_border_weight_map(np.where(labels == 2, 1e300, 1.0))


def test_float64_beyond_the_float32_range_segments_like_the_original(sample_image):
    crop = sample_image[:128, :160]
    if not default_model_available():
        pytest.skip("no shipped default model")
    model = napari_unet.load_model("default")
    reference = napari_unet.segment(crop, model, precision="float32")
    huge = napari_unet.segment(crop.astype(np.float64) * 1e300, model, precision="float32")
    assert reference.max() > 3
    np.testing.assert_array_equal(huge, reference)
