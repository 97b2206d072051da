import pytest
import torch

from napari_unet.method.network import UNet, UNetConfig


def test_paper_network_shapes_and_layers():
    net = UNet()  # the paper's: depth 5, 64 base channels
    assert net.n_conv_layers() == 23
    assert net.halo == 92
    assert net.valid_output_shape((572, 572)) == (388, 388)
    assert net.pooling_factor == 16
    assert net.contracting_path[-1][0].out_channels == 1024
    assert net.contracting_path[0][0].out_channels == 64


@pytest.mark.parametrize("depth,base", [(2, 4), (3, 8), (4, 4)])
def test_forward_gives_the_valid_output_shape(depth, base):
    net = UNet(depth=depth, base_channels=base, batch_norm=True).eval()
    shape = net.valid_input_shape((61, 90))
    assert shape[0] >= 61 and shape[1] >= 90
    with torch.inference_mode():
        out = net(torch.zeros(2, 1, *shape))
    assert tuple(out.shape) == (2, 2, *net.valid_output_shape(shape))
    assert shape[0] - out.shape[-2] == 2 * net.halo


def test_invalid_input_shape_names_the_nearest_valid_shapes():
    net = UNet(depth=3, base_channels=4)
    with pytest.raises(ValueError, match=r"nearest valid input shapes are \(\d+, \d+\) and"):
        net.valid_output_shape((101, 100))


def test_input_shape_for_output_covers_the_request():
    net = UNet(depth=4, base_channels=4)
    shape = net.input_shape_for_output((100, 37))
    out = net.valid_output_shape(shape)
    assert out[0] >= 100 and out[1] >= 37


@pytest.mark.parametrize(
    "bad", [{"depth": 1}, {"n_classes": 1}, {"base_channels": 0}, {"depth": 2.5}]
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ValueError):
        UNetConfig(**bad)
