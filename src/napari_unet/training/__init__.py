"""Training: the config and its defaults, samples, optimisation (eq. 1) and the loop.

``train``, ``TrainingConfig``, ``TrainingProgress`` and ``TrainingResult`` are read from
here lazily, so that importing one submodule (``training.config``) does not pull in torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "train": "napari_unet.training.loop",
    "TrainingConfig": "napari_unet.training.config",
    "TrainingProgress": "napari_unet.training.config",
    "TrainingResult": "napari_unet.training.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Import the public training names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_unet.training' has no attribute {name!r}")
