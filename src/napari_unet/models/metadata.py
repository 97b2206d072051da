"""What a model says about itself: the typed readers of its metadata, with their fallbacks.

Every reader and writer of a model file (safetensors, bioimage.io) and every user of a
model (segmentation, the preview, blocks) reads the model's metadata here. It imports
nothing above ``method/``, so the format-specific code in ``models/`` sits below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.method.images import DEFAULT_PERCENTILES
from napari_unet.method.instances import DEFAULT_MIN_SIZE, DEFAULT_SEED_THRESHOLD, DEFAULT_THRESHOLD
from napari_unet.method.object_size import DEFAULT_OBJECT_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from napari_unet.method.network import UNet

#: Name of the shipped default model, recorded in its metadata and in its fine-tunes'.
DEFAULT_MODEL_NAME = "default"

__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PERCENTILES",
    "DEFAULT_SEED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "fine_tuned_from_shipped",
    "is_shipped",
    "model_object_size",
    "model_percentiles",
]


def model_percentiles(model: UNet) -> tuple[float, float]:
    """Normalisation percentiles stored in a model (the defaults when it has none)."""
    metadata = getattr(model, "metadata", None) or {}
    return tuple(metadata.get("normalization", {}).get("percentiles", DEFAULT_PERCENTILES))


def model_object_size(model: UNet) -> float:
    """Typical cell diameter (pixels) stored in a model (:data:`DEFAULT_OBJECT_SIZE` if none)."""
    metadata = getattr(model, "metadata", None) or {}
    return float(metadata.get("object_size", DEFAULT_OBJECT_SIZE))


def is_shipped(model: UNet) -> bool:
    """Whether ``model`` is the shipped default model (by the name in its metadata)."""
    return (getattr(model, "metadata", None) or {}).get("name") == DEFAULT_MODEL_NAME


def fine_tuned_from_shipped(model: UNet) -> bool:
    """Whether ``model`` was fine-tuned from the shipped default model."""
    metadata = getattr(model, "metadata", None) or {}
    training = metadata.get("training") or {}
    return not is_shipped(model) and training.get("fine_tuned_from") == DEFAULT_MODEL_NAME
