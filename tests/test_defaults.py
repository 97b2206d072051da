"""One home per default (issue 17): the API, the CLI and the widgets show the same values."""

import inspect
from dataclasses import fields

import pytest

from napari_unet.cli.commands import build_parser
from napari_unet.inference.segment import iter_segment
from napari_unet.inference.settings import SegmentSettings
from napari_unet.inference.to_zarr import iter_segment_to_zarr
from napari_unet.method.annotation import DEFAULT_N_CLASSES
from napari_unet.method.weight_map import (
    DEFAULT_CLASS_WEIGHTS,
    DEFAULT_SIGMA,
    DEFAULT_W0,
    separation_border_weight_map,
)
from napari_unet.training.config import DEFAULT_TRAINING_MINUTES, TrainingConfig
from napari_unet.training.settings_help import SETTINGS_HELP


def _defaults(function) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_segment_defaults_of_the_api_the_routes_and_the_cli():
    settings = {f.name: f.default for f in fields(SegmentSettings)}
    in_memory = _defaults(iter_segment)
    assert {k: in_memory[k] for k in settings} == settings
    to_zarr = _defaults(iter_segment_to_zarr)
    assert {k: to_zarr[k] for k in settings if k in to_zarr} == {
        k: v for k, v in settings.items() if k in to_zarr
    }
    args = build_parser().parse_args(["segment", "a.tif", "-o", "out"])
    cli = {
        "tile_shape": args.tile_size,
        "device": args.device,
        "precision": args.precision,
        "threshold": args.threshold,
        "min_size": args.min_size,
        "object_size": args.object_size,
    }
    assert cli == {k: settings[k] for k in cli}


def test_cluster_defaults_are_the_settings():
    pytest.importorskip("distributed")
    from napari_unet.distributed import iter_segment_zarr

    cluster = _defaults(iter_segment_zarr)
    shared = SegmentSettings().shared()
    assert {k: cluster[k] for k in shared} == shared


def test_training_and_weight_map_defaults_of_the_api_and_the_cli():
    config = TrainingConfig()
    assert config.max_seconds == DEFAULT_TRAINING_MINUTES * 60
    assert (config.w0, config.sigma) == (DEFAULT_W0, DEFAULT_SIGMA)
    assert config.class_weights == DEFAULT_CLASS_WEIGHTS  # n_classes: the starting model's
    api = _defaults(separation_border_weight_map)
    assert (api["w0"], api["sigma"]) == (DEFAULT_W0, DEFAULT_SIGMA)
    assert (api["class_weights"], api["n_classes"]) == (DEFAULT_CLASS_WEIGHTS, DEFAULT_N_CLASSES)
    weight_map = build_parser().parse_args(["weight-map", "a.tif", "-o", "w.tif"])
    assert (weight_map.w0, weight_map.sigma) == (DEFAULT_W0, DEFAULT_SIGMA)
    assert (weight_map.class_weights, weight_map.n_classes) == (
        DEFAULT_CLASS_WEIGHTS,
        DEFAULT_N_CLASSES,
    )
    train = build_parser().parse_args(["train", "--images", "i", "--annotations", "a", "-o", "m"])
    assert (train.minutes, train.learning_rate, train.batch_size) == (
        DEFAULT_TRAINING_MINUTES,
        config.learning_rate,
        config.batch_size,
    )


@pytest.mark.gui
def test_widgets_show_the_cores_defaults(make_napari_viewer):
    from napari_helpers import dock

    viewer = make_napari_viewer()
    segment = dock(viewer, "Segment")
    settings = SegmentSettings()
    assert segment.auto_tile.value == (settings.tile_shape is None)  # automatic tile
    assert (segment.device.value, segment.precision.value) == (settings.device, settings.precision)
    train = dock(viewer, "Train")
    config = TrainingConfig()
    assert train.settings.minutes.value == DEFAULT_TRAINING_MINUTES
    assert train.settings.minutes.tooltip == SETTINGS_HELP["minutes"]  # one text
    assert train.loss.w0.tooltip == SETTINGS_HELP["w0"]
    assert train.settings.learning_rate.value == pytest.approx(config.learning_rate)
    assert train.settings.batch_size.value == config.batch_size
    weight_map = dock(viewer, "Weight map")
    assert (weight_map.w0.value, weight_map.sigma.value) == (DEFAULT_W0, DEFAULT_SIGMA)


def test_one_help_text_per_setting_for_the_cli_and_the_user_guide():
    from pathlib import Path

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    helps = {option: action.help for action in train._actions for option in action.option_strings}
    for option, key in {
        "--minutes": "minutes",
        "--iterations": "n_iterations",
        "--learning-rate": "learning_rate",
        "--batch-size": "batch_size",
        "--object-size": "object_size",
        "--no-augmentation": "augment",
        "--w0": "w0",
        "--sigma": "sigma",
        "--device": "device",
        "--seed": "seed",
        "--dense": "dense",
    }.items():
        assert SETTINGS_HELP[key] in helps[option], option
    guide = " ".join((Path(__file__).parents[1] / "docs" / "user-guide.md").read_text().split())
    missing = [key for key, text in SETTINGS_HELP.items() if " ".join(text.split()) not in guide]
    assert missing == []
