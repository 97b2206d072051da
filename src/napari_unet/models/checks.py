"""What a model file may declare, checked before anything is built.

Its format name, an architecture (:class:`~napari_unet.method.network.UNetConfig`) of
known fields and types within :data:`ARCHITECTURE_LIMITS` and
:data:`MAX_WIDEST_CHANNELS`, and stored tensors that fit it and hold finite numbers.
Both readers use these checks: safetensors model files (:mod:`napari_unet.models.files`)
and bioimage.io packages (:mod:`napari_unet.models._bioimageio_load`). Every value comes
from an untrusted file, so messages show short, truncated reprs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch

from napari_unet.method.network import UNet, UNetConfig
from napari_unet.runtime.checks import short_repr

#: The ``format`` a napari-unet model file (and a package's napari-unet entry) declares.
FORMAT_NAME = "napari-unet"
FORMAT_VERSION = "1"

#: Largest architecture a model file may declare (the paper's network: depth 5, 64
#: channels); checked before anything is built.
ARCHITECTURE_LIMITS = {"in_channels": 16, "n_classes": 256, "depth": 8, "base_channels": 512}
#: Most channels of the widest (lowest) level, ``base_channels * 2 ** (depth - 1)``: four
#: times the paper's 1024. Bounds the largest declarable network to about 5 * 10^8
#: weights (2 GB in float32) instead of 10^11 for depth 8 with 512 base channels.
MAX_WIDEST_CHANNELS = 4096


def config_from_dict(values, path: str | os.PathLike = "model") -> UNetConfig:
    """The architecture a model file or package declares, checked before anything is built.

    Parameters
    ----------
    values : Mapping
        ``UNetConfig`` keyword arguments as read from the file (untrusted: any type).
    path : str or os.PathLike
        Named in the messages.

    Returns
    -------
    UNetConfig

    Raises
    ------
    ValueError
        If ``values`` is not a mapping of known field names, a value has the wrong type
        (messages show short, truncated reprs), or the architecture exceeds
        :data:`ARCHITECTURE_LIMITS` (:func:`check_architecture`).
    """
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{path}: the architecture must be a mapping of UNetConfig fields, got "
            f"{type(values).__name__}: the file is damaged"
        )
    fields = {field.name for field in dataclasses.fields(UNetConfig)}
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise ValueError(
            f"{path}: unknown architecture field {short_repr(unknown[0])} (known: "
            f"{', '.join(sorted(fields))}): the file is damaged"
        )
    try:
        config = UNetConfig(**values)
    except ValueError as error:
        raise ValueError(f"{path}: damaged architecture: {error}") from error
    check_architecture(config, path)
    return config


def check_architecture(config: UNetConfig, path: str | os.PathLike = "model") -> None:
    """Refuse an architecture beyond :data:`ARCHITECTURE_LIMITS`, building nothing.

    Checked on the config alone, before any network is built (even on the meta
    device): a declared ``depth`` of 200,000 or ``base_channels`` of 10¹² costs nothing.

    Raises
    ------
    ValueError
        Naming the field, its value and the limit (:data:`ARCHITECTURE_LIMITS`,
        :data:`MAX_WIDEST_CHANNELS`).
    """
    for name, limit in ARCHITECTURE_LIMITS.items():
        if getattr(config, name) > limit:
            raise ValueError(
                f"{path} declares {name}={short_repr(getattr(config, name))}, more than the "
                f"limit of {limit} for model files: the file is damaged or not a napari-unet "
                "model"
            )
    widest = config.base_channels * 2 ** (config.depth - 1)
    if widest > MAX_WIDEST_CHANNELS:
        raise ValueError(
            f"{path} declares a network whose widest level has {widest} channels "
            f"(base_channels={config.base_channels}, depth={config.depth}), more than the "
            f"limit of {MAX_WIDEST_CHANNELS} for model files: the file is damaged or not a "
            "napari-unet model"
        )


def _architecture_from_tensors(state: dict) -> dict:
    """The architecture the stored tensors imply (first convolution, head, levels)."""
    found = {}
    first = state.get("contracting_path.0.0.weight")
    if first is not None and first.ndim == 4:
        found["base_channels"], found["in_channels"] = int(first.shape[0]), int(first.shape[1])
    head = state.get("head.weight")
    if head is not None and head.ndim == 4:
        found["n_classes"] = int(head.shape[0])
    levels = {key.split(".")[1] for key in state if key.startswith("contracting_path.")}
    if levels:
        found["depth"] = len(levels)
    found["batch_norm"] = any(key.endswith("running_mean") for key in state)
    return found


def check_state(config: UNetConfig, state: dict, path: str | os.PathLike = "model") -> None:
    """Check a declared architecture against bounds and stored tensors, building nothing.

    Parameters
    ----------
    config : UNetConfig
        The architecture the file declares.
    state : dict of str to torch.Tensor
        The stored tensors.
    path : str or os.PathLike
        Named in the messages.

    Raises
    ------
    ValueError
        If the architecture exceeds :data:`ARCHITECTURE_LIMITS`, differs from what the
        tensors imply (first convolution: ``base_channels`` and ``in_channels``; number
        of levels: ``depth``; head: ``n_classes``; batch-norm statistics), a tensor is
        missing, extra or of another shape than the architecture needs, or a stored
        number is NaN or infinite (or a batch-norm variance negative).
    """
    check_architecture(config, path)
    for name, value in _architecture_from_tensors(state).items():
        if getattr(config, name) != value:
            raise ValueError(
                f"{path} declares {name}={getattr(config, name)!r} but its stored weights "
                f"have {name}={value!r}: the file is damaged"
            )
    with torch.device("meta"):  # shapes only: no memory is allocated
        expected = {k: tuple(v.shape) for k, v in UNet(config=config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{path}: the stored weights do not fit the architecture {config}: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(
                f"{path}: tensor {key} has shape {tuple(state[key].shape)}, the architecture "
                f"{config} needs {shape}: the file is damaged"
            )
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{path}: tensor {key} holds NaN or infinite values; such a network "
                "predicts nothing useful, so the file is refused"
            )
        if key.endswith("running_var") and bool((tensor < 0).any()):
            raise ValueError(f"{path}: batch-norm variance {key} is negative: the file is damaged")
