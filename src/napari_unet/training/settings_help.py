"""What each training setting means, in plain words with units: the one text for all readers.

The *Train* widget's tooltips, the ``napari-unet train`` command's ``--help`` and the user
guide (docs/user-guide.md, section 4) read :data:`SETTINGS_HELP`; ``tests/test_defaults.py``
checks that they do. Keys are the names of the
:class:`~napari_unet.training.config.TrainingConfig` fields and of
:func:`~napari_unet.training.loop.train`'s arguments where there is one. The texts hold
no ``%`` (argparse formats its help with it).
"""

from __future__ import annotations

from napari_unet.method.weight_map import DEFAULT_SIGMA, DEFAULT_W0
from napari_unet.training.config import (
    DEFAULT_TRAINING_MINUTES,
    MAX_TILE_OUTPUT,
    MIN_TILE_OUTPUT,
    TrainingConfig,
)
from napari_unet.training.painted_score import (
    HELD_OUT_SHARE,
    MAX_CROSS_FITTED,
    MAX_HELD_OUT,
    MIN_CROSS_FITTED,
    MIN_PAINTED_TO_HOLD_OUT,
)

_DEFAULTS = TrainingConfig()

#: Setting name → what it means, in plain words with its unit.
SETTINGS_HELP: dict[str, str] = {
    "image": "The image to train on: a 2D image, a stack of planes, or RGB.",
    "annotation": (
        "Your painting on that image: 0 = not painted (ignored), 1 = background, "
        "2, 3, … = one id per cell. Only painted pixels teach the network."
    ),
    "minutes": (
        f"How long a run trains, in minutes (default {DEFAULT_TRAINING_MINUTES:g}). The "
        "learning rate decays over this time; Stop ends the run earlier and keeps the "
        "best model so far."
    ),
    "n_iterations": (
        "Largest number of training steps (iterations): the run ends at the time budget "
        "or at this cap, whichever comes first."
    ),
    "start_from": (
        "The network training begins with: the shipped default model (the fastest way "
        "to good results), a model file, the model trained in this session (continues "
        "the last run), or a new network from scratch."
    ),
    "model_file": (
        "A model file saved by napari-unet (.safetensors), or a bioimage.io package "
        "(.zip) it exported."
    ),
    "depth": "Resolution levels of a new network (the paper: 5); each level halves the image.",
    "base_channels": (
        "Feature channels at the first level of a new network (the paper: 64); they "
        "double at each level down."
    ),
    "object_size": (
        "Typical cell diameter, in pixels. It sets the training tile and the smallest "
        "cell kept when segmenting."
    ),
    "learning_rate": (
        f"Size of the optimiser's steps at the start of a run (Adam, default "
        f"{_DEFAULTS.learning_rate:g}; no unit); it decays to a tenth of it over the run."
    ),
    "batch_size": (
        f"Tiles per training step (default {_DEFAULTS.batch_size}). More tiles: steadier "
        "steps, more memory and time per step."
    ),
    "tile_shape": (
        "Side of the square training tile, in pixels, rounded up to a size the network "
        "takes. Automatic: the smallest tile whose output is twice the cell diameter, "
        f"from {MIN_TILE_OUTPUT} to {MAX_TILE_OUTPUT} pixels."
    ),
    "augment": (
        "Random elastic deformations, shifts, flips, rotations and grey values of the "
        "tiles (the paper, sec. 3.1). Keep it on unless you have many annotations."
    ),
    "seed": (
        "Seed of the random tile choice, augmentation and new weights, to repeat a run "
        "exactly (on the same device)."
    ),
    "device": (
        "Where training runs: auto takes an NVIDIA GPU (CUDA), then an Apple GPU (MPS), "
        "then the CPU."
    ),
    "w0": (
        f"Extra weight of the thin background gaps between touching cells (w0 of eq. 2, "
        f"no unit, default {DEFAULT_W0:g}); higher separates touching cells harder."
    ),
    "sigma": (
        f"Width of that extra weight around the gaps, in pixels (σ of eq. 2, default "
        f"{DEFAULT_SIGMA:g})."
    ),
    "dense": (
        "The annotation is a complete mask: 0 = background, 1, 2, … = cells (e.g. masks "
        "made with another tool); nothing is ignored."
    ),
    "pairs": "Image/annotation pairs to train on together; when empty, the pair selected on top.",
    "painted_score": (
        "How the model does on your own painted cells (SEG: mean overlap of each cell with "
        "its predicted cell, 0 to 1), for the starting model and the model being trained; "
        "the better one is kept, and the instance step is fitted to them. From "
        f"{MAX_CROSS_FITTED + 1} painted cells on, one in {round(1 / HELD_OUT_SHARE)} (at "
        f"most {MAX_HELD_OUT}) is held out of training to score it. With "
        f"{MIN_CROSS_FITTED} to {MAX_CROSS_FITTED}, a fine-tune runs twice, half the "
        "time each, each time without half of your cells, so that every painted cell "
        f"scores a model that never saw it. Paint {MIN_CROSS_FITTED} cells or more "
        f"({MIN_PAINTED_TO_HOLD_OUT} from scratch)."
    ),
}


def help_text(name: str, zero: str | None = None) -> str:
    """The help of setting ``name``; with ``zero``, what a 0 in its field means.

    Parameters
    ----------
    name : str
        A key of :data:`SETTINGS_HELP`.
    zero : str, optional
        For widget fields where 0 stands for "none" or "automatic", e.g. ``"no cap"``.

    Raises
    ------
    KeyError
        For a name without help.
    """
    text = SETTINGS_HELP[name]
    return f"{text} 0: {zero}." if zero else text
