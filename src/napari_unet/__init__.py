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
    "separation_border_weight_map": "napari_unet.weight_map",
    "class_balance_weights": "napari_unet.weight_map",
    "annotation_to_target": "napari_unet.annotation",
    "validate_annotation": "napari_unet.annotation",
    "UNet": "napari_unet.network",
    "UNetConfig": "napari_unet.network",
    "train": "napari_unet.training",
    "TrainingConfig": "napari_unet.training",
    "TrainingProgress": "napari_unet.training",
    "TrainingResult": "napari_unet.training",
    "predict_tiled": "napari_unet.tiling",
    "iter_predict_tiled": "napari_unet.tiling",
    "TileProgress": "napari_unet.tiling",
    "probabilities_to_labels": "napari_unet.instances",
    "segment": "napari_unet.segmentation",
    "iter_segment": "napari_unet.segmentation",
    "load_model": "napari_unet.model_io",
    "save_model": "napari_unet.model_io",
    "export_bioimageio": "napari_unet.bioimageio",
    "available_devices": "napari_unet.devices",
    "resolve_device": "napari_unet.devices",
    "resolve_precision": "napari_unet.devices",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    # ruff: noqa: F401
    from napari_unet.annotation import annotation_to_target, validate_annotation
    from napari_unet.bioimageio import export_bioimageio
    from napari_unet.devices import available_devices, resolve_device, resolve_precision
    from napari_unet.instances import probabilities_to_labels
    from napari_unet.model_io import load_model, save_model
    from napari_unet.network import UNet, UNetConfig
    from napari_unet.segmentation import iter_segment, segment
    from napari_unet.tiling import TileProgress, iter_predict_tiled, predict_tiled
    from napari_unet.training import TrainingConfig, TrainingProgress, TrainingResult, train
    from napari_unet.weight_map import class_balance_weights, separation_border_weight_map


def __getattr__(name: str):
    """Import public names lazily so that ``import napari_unet`` stays light."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")


def __dir__():
    return __all__
