"""The prediction network (batch norm folded, split copy-and-crop, fused ReLU) against
the plain U-Net it comes from: on the shipped default model and the shipped sample field."""

import copy
import warnings

import numpy as np
import pytest
import torch

from napari_unet import segment
from napari_unet.method import tiling
from napari_unet.method.folded_network import FoldedUNet, fold_for_inference
from napari_unet.method.images import normalize, percentile_normalization
from napari_unet.method.network import UNet
from napari_unet.method.tiling import predict_tiled

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def default_model():
    from napari_unet.models.files import load_model

    return load_model("default")


def _plain_copy(model, device, dtype):
    """The prediction copy before the folded network: the UNet itself, channels-last."""
    network = copy.deepcopy(model).eval().requires_grad_(False)
    return network.to(device=device, dtype=dtype, memory_format=torch.channels_last)


def _tile(sample_image, model, side=284):
    low, high = percentile_normalization(sample_image, (1.0, 99.8))
    side = model.valid_input_shape((side,))[0]
    image = normalize(sample_image[:side, :side], low, high)
    return torch.from_numpy(np.ascontiguousarray(image))[None, None]


@pytest.mark.parametrize("fused", [False, True])
def test_folded_network_equals_the_plain_one_on_the_shipped_model(
    sample_image, default_model, fused
):
    assert default_model.config.batch_norm  # what is folded
    x = _tile(sample_image, default_model)
    folded = fold_for_inference(default_model, fused=fused)
    assert isinstance(folded, FoldedUNet) and not folded.training
    assert folded.halo == default_model.halo
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        expected = copy.deepcopy(default_model).eval()(x)
        logits = folded(x.contiguous(memory_format=torch.channels_last))
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    assert torch.equal(logits.argmax(1), expected.argmax(1))


def test_folding_uses_the_running_statistics(default_model):
    """Non-trivial batch-norm statistics and affine parameters, depth 3, two batches."""
    torch.manual_seed(0)
    model = UNet(depth=3, base_channels=8, n_classes=3, batch_norm=True)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 3.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    x = torch.randn(2, 1, *model.valid_input_shape((100, 120)))
    model.eval()
    with torch.inference_mode():
        expected = model(x)
        for fused in (False, True):
            folded = fold_for_inference(model, fused=fused)
            got = folded(x.contiguous(memory_format=torch.channels_last))
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    assert model.contracting_path[0][1].running_var.min() >= 0.2  # source not modified


def test_network_without_batch_norm():
    torch.manual_seed(1)
    model = UNet(depth=2, base_channels=4).eval()
    x = torch.randn(1, 1, *model.valid_input_shape((60, 60)))
    with torch.inference_mode():
        np.testing.assert_allclose(
            fold_for_inference(model)(x.contiguous(memory_format=torch.channels_last)).numpy(),
            model(x).numpy(),
            rtol=1e-4,
            atol=1e-5,
        )


def test_folded_network_is_for_prediction_only(default_model):
    folded = fold_for_inference(default_model)
    with pytest.raises(ValueError, match="prediction only"):
        folded.train()
    assert not any(p.requires_grad for p in folded.parameters())
    with pytest.raises(ValueError, match="must be a UNet"):
        fold_for_inference(folded)


def test_unfused_folded_network_scripts(sample_image, default_model):
    """The bioimage.io torchscript weights are the unfused folded network."""
    x = _tile(sample_image, default_model, side=188)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(fold_for_inference(default_model, fused=False))
    with torch.inference_mode():
        expected = copy.deepcopy(default_model).eval()(x)
        np.testing.assert_allclose(scripted(x).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_segment_gives_the_same_labels_as_the_plain_network(
    sample_image, default_model, monkeypatch
):
    """segment() (and so the preview and the block-wise paths, which call the same tiling)
    with the folded network against the plain network, on the whole sample field."""
    options = dict(precision="float32", tile_shape=(380, 380))
    fast_probabilities = predict_tiled(
        sample_image, default_model, normalization=(100.0, 2000.0), **options
    )
    fast_labels = segment(sample_image, default_model, **options)
    with monkeypatch.context() as patch:
        patch.setattr(tiling, "_inference_copy", _plain_copy)
        probabilities = predict_tiled(
            sample_image, default_model, normalization=(100.0, 2000.0), **options
        )
        labels = segment(sample_image, default_model, **options)
    np.testing.assert_allclose(fast_probabilities, probabilities, atol=1e-4)
    assert labels.max() > 50
    np.testing.assert_array_equal(fast_labels, labels)
