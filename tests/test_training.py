import threading

import numpy as np
import pytest
import torch

from napari_unet.method.network import UNet
from napari_unet.runtime.progress import run_to_completion
from napari_unet.training.loop import (
    TrainingConfig,
    TrainingProgress,
    train,
    weighted_cross_entropy,
)

TINY = {"depth": 3, "base_channels": 8, "batch_norm": True}


def _crop(sample_image, sample_annotation):
    # The annotated upper-left quarter of the shipped field (31 cells + background strokes).
    return np.array(sample_image[:256, :352]), np.array(sample_annotation[:256, :352])


def test_loss_falls_on_a_real_image_with_partial_labels(sample_image, sample_annotation):
    image, annotation = _crop(sample_image, sample_annotation)
    config = TrainingConfig(
        n_iterations=60, batch_size=2, learning_rate=3e-3, tile_shape=(124, 124)
    )
    torch.manual_seed(0)
    result = run_to_completion(
        train([image], [annotation], model=UNet(**TINY), config=config, seed=0, device="cpu")
    )
    losses = np.array([p.loss for p in result.history])
    assert len(losses) == 60
    assert losses[-15:].mean() < 0.6 * losses[:5].mean()
    assert all(isinstance(p, TrainingProgress) and p.pixels_per_second > 0 for p in result.history)
    assert not result.stopped and 1 <= result.best_iteration <= 60
    meta = result.model.metadata["training"]
    assert meta["iterations_done"] == 60 and meta["config"]["n_iterations"] == 60
    assert result.model.metadata["normalization"]["percentiles"] == [1.0, 99.8]
    assert not result.model.training  # returned in eval mode


def test_stop_event_returns_best_model_and_leaves_inputs_alone(sample_image, sample_annotation):
    image, annotation = _crop(sample_image, sample_annotation)
    before = annotation.copy()
    start = UNet(**TINY)
    start_weights = {k: v.clone() for k, v in start.state_dict().items()}
    stop = threading.Event()
    gen = train(
        [image],
        [annotation],
        model=start,
        stop=stop,
        seed=1,
        device="cpu",
        config=TrainingConfig(n_iterations=1000, tile_shape=(124, 124)),
    )
    result = run_to_completion(gen, lambda p: p.iteration == 12 and stop.set())
    assert result.stopped and len(result.history) == 12
    assert 1 <= result.best_iteration <= 12
    np.testing.assert_array_equal(annotation, before)
    for k, v in start.state_dict().items():  # fine-tuning works on a copy
        assert torch.equal(v, start_weights[k])
    assert any(not torch.equal(v, start_weights[k]) for k, v in result.model.state_dict().items())


def test_validation_score_picks_the_model(sample_image, sample_masks, sample_annotation):
    image, annotation = _crop(sample_image, sample_annotation)
    val = (np.array(sample_image[256:, 352:]), np.array(sample_masks[256:, 352:]))
    # no painted cell held out: the validation pairs alone pick the weights
    config = TrainingConfig(
        n_iterations=20, validation_interval=10, tile_shape=(124, 124), hold_out=0
    )
    result = run_to_completion(
        train(
            [image],
            [annotation],
            model=UNet(**TINY),
            config=config,
            seed=0,
            device="cpu",
            validation=[val],
            dense=False,
        )
    )
    scores = [p.validation_score for p in result.history if p.validation_score is not None]
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    assert result.best_iteration in (10, 20)


def test_weighted_cross_entropy_ignores_zero_weight_pixels():
    logits = torch.tensor([[[[5.0, -5.0]], [[-5.0, 5.0]]]])  # (1, 2, 1, 2): class 0, class 1
    target = torch.tensor([[[0, 0]]])
    right_only = weighted_cross_entropy(logits, target, torch.tensor([[[1.0, 0.0]]]))
    both = weighted_cross_entropy(logits, target, torch.tensor([[[1.0, 1.0]]]))
    assert right_only < 1e-3 < both


@pytest.mark.parametrize(
    "images,annotations,message",
    [
        ([], [], "no training images"),
        ([np.zeros((64, 64))], [], "1 images but 0 annotations"),
        ([np.zeros((64, 64))], [np.zeros((64, 65), np.uint8)], "has shape"),
        ([np.ones((64, 64))], [np.zeros((64, 64), np.uint8)], "no annotated pixel"),
        ([np.ones((64, 64))], [np.ones((64, 64), np.uint8)], "no cell"),
        ([np.ones((64, 64))], [np.full((64, 64), 2, np.uint8)], "no background"),
        ([np.zeros((0, 64))], [np.zeros((0, 64), np.uint8)], "empty"),
        ([np.zeros(64)], [np.zeros(64, np.uint8)], "expected a 2D image"),
    ],
)
def test_bad_training_input(images, annotations, message):
    with pytest.raises(ValueError, match=message):
        next(train(images, annotations, device="cpu"))


def test_bad_config():
    with pytest.raises(ValueError, match="n_iterations"):
        TrainingConfig(n_iterations=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainingConfig(optimizer="lbfgs")


def test_map_progress_converts_records_and_keeps_the_result():
    from napari_unet.runtime.progress import map_progress, run_to_completion

    def inner():
        yield 1
        yield 2
        return "done"

    seen = []
    result = run_to_completion(map_progress(inner(), lambda p: 10 * p), seen.append)
    assert seen == [10, 20] and result == "done"


@pytest.mark.parametrize("shape,sigma,grid", [((284, 284), 10.0, 3), ((100, 137), 4.0, 5)])
def test_elastic_displacement_is_the_bicubic_interpolation_of_the_coarse_grid(shape, sigma, grid):
    """The separable evaluation equals interpolating the 2D field with map_coordinates."""
    from scipy import ndimage as ndi

    from napari_unet.method.augmentation import elastic_displacement

    field = elastic_displacement(shape, sigma, grid, np.random.default_rng(3))
    coarse = np.random.default_rng(3).normal(0.0, sigma, size=(2, grid, grid))
    ys = np.linspace(0, grid - 1, shape[0], dtype=np.float32)
    xs = np.linspace(0, grid - 1, shape[1], dtype=np.float32)
    coords = np.stack(np.meshgrid(ys, xs, indexing="ij"))
    expected = np.stack([ndi.map_coordinates(c, coords, order=3, mode="nearest") for c in coarse])
    assert field.dtype == np.float32 and field.shape == (2, *shape)
    np.testing.assert_allclose(field, expected, atol=1e-5)
