"""napari-unet: the U-Net of Ronneberger, Fischer & Brox (MICCAI 2015) for napari.

The package root is the Qt-free core: importing it pulls in neither Qt nor napari,
and heavy modules (torch) are imported lazily on first use of a name that needs them.

Public API
----------
separation_border_weight_map
    Weight map of eq. 2 of the paper for a (partial) annotation.
annotation_to_target
    Background/cell training target with separation gaps between touching cells.
UNet
    The network of Fig. 1 of the paper (configurable depth and width).
train
    Training generator that yields progress and returns the trained model.
predict_tiled, iter_predict_tiled
    Overlap-tile prediction (Fig. 2 of the paper).
probabilities_to_labels
    Foreground probability to an instance label image.
segment
    Image in, label image out, with the shipped default model.
load_model, save_model
    Self-describing safetensors model files (``load_model`` also reads the
    bioimage.io packages ``export_bioimageio`` writes).
export_bioimageio
    A model as a bioimage.io model package (needs the ``bioimageio`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "separation_border_weight_map": "napari_unet.method.weight_map",
    "class_balance_weights": "napari_unet.method.weight_map",
    "annotation_to_target": "napari_unet.method.annotation",
    "validate_annotation": "napari_unet.method.annotation",
    "UNet": "napari_unet.method.network",
    "UNetConfig": "napari_unet.method.network",
    "train": "napari_unet.training.loop",
    "TrainingConfig": "napari_unet.training.loop",
    "TrainingProgress": "napari_unet.training.loop",
    "TrainingResult": "napari_unet.training.loop",
    "predict_tiled": "napari_unet.method.tiling",
    "iter_predict_tiled": "napari_unet.method.tiling",
    "TileProgress": "napari_unet.method.tiling",
    "probabilities_to_labels": "napari_unet.method.instances",
    "segment": "napari_unet.inference.segment",
    "iter_segment": "napari_unet.inference.segment",
    "load_model": "napari_unet.models.files",
    "save_model": "napari_unet.models.files",
    "export_bioimageio": "napari_unet.models.bioimageio",
    "available_devices": "napari_unet.runtime.devices",
    "resolve_device": "napari_unet.runtime.devices",
    "resolve_precision": "napari_unet.runtime.devices",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    # ruff: noqa: F401
    from napari_unet.inference.segment import iter_segment, segment
    from napari_unet.method.annotation import annotation_to_target, validate_annotation
    from napari_unet.method.instances import probabilities_to_labels
    from napari_unet.method.network import UNet, UNetConfig
    from napari_unet.method.tiling import TileProgress, iter_predict_tiled, predict_tiled
    from napari_unet.method.weight_map import class_balance_weights, separation_border_weight_map
    from napari_unet.models.bioimageio import export_bioimageio
    from napari_unet.models.files import load_model, save_model
    from napari_unet.runtime.devices import available_devices, resolve_device, resolve_precision
    from napari_unet.training.loop import TrainingConfig, TrainingProgress, TrainingResult, train


def __getattr__(name: str):
    """Import public names lazily so that ``import napari_unet`` stays light."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")


def __dir__():
    return __all__
