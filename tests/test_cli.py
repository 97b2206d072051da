import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.cli.commands import main
from napari_unet.method.network import UNet
from napari_unet.models.files import load_model, save_model


@pytest.mark.parametrize("command", [[], ["segment"], ["train"], ["weight-map"]])
def test_help_of_every_subcommand(command):
    out = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli.commands", *command, "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert "usage: napari-unet" in out.stdout


def test_segment_folder_writes_label_tiffs(tmp_path, sample_image):
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "a.tif", sample_image[:160, :200])
    tifffile.imwrite(inputs / "b.tif", sample_image[200:, 300:])
    model = tmp_path / "tiny.safetensors"
    save_model(UNet(depth=2, base_channels=4), model)
    assert (
        main(
            [
                "segment",
                str(inputs),
                "-o",
                str(tmp_path / "out"),
                "-m",
                str(model),
                "--probabilities",
                "--precision",
                "float32",
                "--tile-size",
                "64",
            ]
        )
        == 0
    )
    for name, shape in (("a", (160, 200)), ("b", (320, 396))):
        masks = tifffile.imread(tmp_path / "out" / f"{name}_masks.tif")
        assert masks.shape == shape and masks.dtype.kind == "u"
        prob = tifffile.imread(tmp_path / "out" / f"{name}_probabilities.tif")
        assert prob.shape == shape and prob.dtype == np.float32


def test_train_then_weight_map(tmp_path, sample_image, sample_annotation, capsys):
    tifffile.imwrite(tmp_path / "img.tif", sample_image[:256, :352])
    tifffile.imwrite(tmp_path / "ann.tif", sample_annotation[:256, :352])
    out = tmp_path / "model.safetensors"
    assert (
        main(
            [
                "train",
                "--images",
                str(tmp_path / "img.tif"),
                "--annotations",
                str(tmp_path / "ann.tif"),
                "-o",
                str(out),
                "--from",
                "scratch",
                "--iterations",
                "3",
                "--seed",
                "0",
                "--batch-size",
                "1",
            ]
        )
        == 0
    )
    model = load_model(out)
    assert model.metadata["training"]["iterations_done"] == 3
    assert main(["weight-map", str(tmp_path / "ann.tif"), "-o", str(tmp_path / "w.tif")]) == 0
    weights = tifffile.imread(tmp_path / "w.tif")
    assert weights.dtype == np.float32 and weights.shape == (256, 352)
    assert (weights[sample_annotation[:256, :352] == 0] == 0).all() and weights.max() > 5


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "missing.tif"), "-o", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, np.zeros((10, 10), np.uint8))
    assert (
        main(
            [
                "train",
                "--images",
                str(bad),
                "--annotations",
                str(bad),
                "-o",
                str(tmp_path / "m"),
                "--from",
                "scratch",
            ]
        )
        == 2
    )
    assert "no annotated pixel" in capsys.readouterr().err


def test_cli_defaults_are_the_cores():
    """One home per default: the CLI reads TrainingConfig and the weight-map constants."""
    from napari_unet.cli.commands import build_parser
    from napari_unet.method.annotation import DEFAULT_N_CLASSES
    from napari_unet.training.loop import TrainingConfig

    config = TrainingConfig()
    parser = build_parser()
    train = parser.parse_args(["train", "--images", "i", "--annotations", "a", "-o", "m"])
    assert train.minutes * 60 == config.max_seconds
    assert train.iterations == config.n_iterations
    assert (train.learning_rate, train.batch_size) == (config.learning_rate, config.batch_size)
    assert (train.w0, train.sigma) == (config.w0, config.sigma)
    assert train.object_size == config.object_size and train.n_classes == config.n_classes
    weight_map = parser.parse_args(["weight-map", "a.tif", "-o", "w.tif"])
    assert (weight_map.w0, weight_map.sigma) == (config.w0, config.sigma)
    assert weight_map.class_weights == config.class_weights == "balanced"
    assert weight_map.n_classes == DEFAULT_N_CLASSES


def test_train_for_a_time_budget_from_the_default_model(tmp_path, sample_image, sample_annotation):
    tifffile.imwrite(tmp_path / "img.tif", sample_image[:256, :352])
    tifffile.imwrite(tmp_path / "ann.tif", sample_annotation[:256, :352])
    out = tmp_path / "model.safetensors"
    args = [
        "train",
        "--images",
        str(tmp_path / "img.tif"),
        "--annotations",
        str(tmp_path / "ann.tif"),
    ]
    assert (
        main([*args, "-o", str(out), "--minutes", "0.1", "--object-size", "24", "--seed", "0"]) == 0
    )
    model = load_model(out)
    training = model.metadata["training"]
    assert model.config.n_classes == 3 and model.metadata["object_size"] == 24
    assert training["config"]["max_seconds"] == pytest.approx(6.0)
    assert training["iterations_done"] >= 1 and training["seconds"] < 6.0 + 30
    assert main([*args, "-o", str(tmp_path / "bad.safetensors"), "--object-size", "0"]) == 2


def test_weight_map_api_and_cli_give_the_same_map(tmp_path, sample_annotation):
    """One default per rule: ``napari-unet weight-map`` equals the API's default call."""
    from napari_unet import separation_border_weight_map

    annotation = sample_annotation[:128, :160]
    tifffile.imwrite(tmp_path / "ann.tif", annotation)
    assert main(["weight-map", str(tmp_path / "ann.tif"), "-o", str(tmp_path / "w.tif")]) == 0
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "w.tif"), separation_border_weight_map(annotation)
    )
