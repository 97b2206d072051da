"""Start labels: the starting model's confident classes on the pixels nobody painted."""

import numpy as np
import pytest
from conftest import _painted, _sample

from napari_unet.method.tiling import predict_tiled
from napari_unet.models.files import load_model
from napari_unet.runtime.progress import run_to_completion
from napari_unet.training import TrainingConfig, train
from napari_unet.training.config import DEFAULT_START_LABELS
from napari_unet.training.painted_score import hold_out_cells
from napari_unet.training.samples import prepare_samples
from napari_unet.training.start_labels import START_LABEL_CONFIDENCE, add_start_labels


@pytest.fixture
def nuclei():
    """The shipped fluorescence nuclei (BBBC039 crop) with 6 nuclei painted."""
    masks = _sample("nuclei_masks.tif")
    return np.array(_sample("nuclei.tif")), _painted(masks, 6), masks


def test_start_labels_only_on_confident_unpainted_pixels(nuclei, one_torch_thread):
    image, annotation, masks = nuclei
    start = load_model("default")
    config = TrainingConfig(max_seconds=None, n_iterations=1)
    kept, held_out, _ = hold_out_cells(
        [image], [annotation], dense=False, object_size=20, percentiles=config.percentiles,
        rng=np.random.default_rng(0), share=0.25,
    )  # fmt: skip
    samples = prepare_samples([image], kept, config, False, 3)
    painted_weights, painted_target = samples[0].weights.copy(), samples[0].target.copy()
    labelled = add_start_labels(samples, start, [annotation], weight=0.3, device="cpu")
    sample = samples[0]
    p = predict_tiled(sample.image, start, normalization=(0.0, 1.0), device="cpu")
    confident = p.max(0) >= START_LABEL_CONFIDENCE
    new = (painted_weights == 0) & (sample.weights > 0)
    assert labelled == int(new.sum()) > 0.5 * (annotation == 0).sum()
    # never on a painted pixel, held-out cells and their ring included
    assert not new[annotation != 0].any()
    assert held_out is not None and (annotation != 0).sum() > (kept[0] != 0).sum()
    # painted pixels keep their class and eq. 2 weight; start labels weigh 0.3
    painted = painted_weights > 0
    np.testing.assert_array_equal(sample.weights[painted], painted_weights[painted])
    np.testing.assert_array_equal(sample.target[painted], painted_target[painted])
    assert np.all(sample.weights[new] == np.float32(0.3))
    # only where the start is confident, with the class it gives there
    assert not new[~confident].any()
    np.testing.assert_array_equal(sample.target[new], p.argmax(0)[new])
    # on this image the default model is right: the start labels agree with the truth
    truth_fg = masks[new] > 0
    assert np.mean((sample.target[new] > 0) == truth_fg) > 0.95
    # tile centres stay on the painted pixels
    np.testing.assert_array_equal(sample.annotated, np.flatnonzero(painted))


def test_fine_tuning_uses_start_labels_and_records_them(nuclei, one_torch_thread, monkeypatch):
    image, annotation, _ = nuclei
    import napari_unet.training.loop as loop

    calls = []
    real = loop.add_start_labels

    def spy(samples, model, annotations, **options):
        calls.append(options["weight"])
        return real(samples, model, annotations, **options)

    monkeypatch.setattr(loop, "add_start_labels", spy)
    config = TrainingConfig(max_seconds=None, n_iterations=2, start_labels=0.3)
    result = run_to_completion(
        train([image], [annotation], model="default", config=config, seed=0, device="cpu")
    )
    assert calls == [0.3]
    assert result.model.metadata["training"]["config"]["start_labels"] == 0.3
    # off by default; from scratch and on dense ground truth there is no start to learn from
    off = TrainingConfig(max_seconds=None, n_iterations=1)
    assert off.start_labels == DEFAULT_START_LABELS == 0
    run_to_completion(train([image], [annotation], model="default", config=off, device="cpu"))
    run_to_completion(train([image], [annotation], config=config, device="cpu"))
    dense = np.where(annotation >= 2, annotation - 1, 0)
    run_to_completion(
        train([image], [dense], model="default", config=config, dense=True, device="cpu")
    )
    assert calls == [0.3]


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.3"])
def test_start_labels_weight_is_checked(bad):
    with pytest.raises(ValueError, match="start_labels must be a weight"):
        TrainingConfig(start_labels=bad)
