"""Self-describing model files (safetensors): architecture, normalisation, metadata, weights.

A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: the
weights as plain tensors and, in its string header, JSON with the architecture
(:class:`~napari_unet.network.UNetConfig`) and free-form metadata (normalisation,
training settings, scores). Loading never executes code: a pickle (``torch.save``)
file is refused.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch

from napari_unet.io import atomic_path
from napari_unet.network import UNet, UNetConfig

FORMAT_NAME = "napari-unet"
FORMAT_VERSION = "1"
DEFAULT_MODEL_NAME = "default"
SUFFIX = ".safetensors"


def shipped_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Path of a model shipped inside the package (it may not exist)."""
    return Path(str(resources.files("napari_unet") / "models" / f"{name}{SUFFIX}"))


def default_model_available() -> bool:
    """Whether the shipped default model file is present."""
    return shipped_model_path().is_file()


def save_model(model: UNet, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
    """Write a model file atomically.

    The file is first written to a temporary file in the destination folder, then
    renamed over ``path``: a crash never leaves a half-written model behind.

    Parameters
    ----------
    model : UNet
        The network; its ``config`` and ``metadata`` (JSON-serialisable dict) are stored.
    path : str or os.PathLike
        Destination; ``.safetensors`` is the conventional suffix.
    dtype : torch.dtype, optional
        Store floating-point weights in this dtype (e.g. ``torch.float16`` halves the
        size). Loading always returns float32 weights.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        If ``metadata`` is not JSON-serialisable.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "metadata": json.dumps(getattr(model, "metadata", {}) or {}),
    }
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=header)
    return path


def load_model(path_or_name: str | os.PathLike = DEFAULT_MODEL_NAME) -> UNet:
    """Load a model file without executing code.

    Parameters
    ----------
    path_or_name : str or os.PathLike
        A file written by :func:`save_model`, or the name of a shipped model
        (``"default"``: the nuclei model trained on BBBC039 + DSB2018).

    Returns
    -------
    UNet
        float32 network on the CPU in evaluation mode, with ``.config`` and
        ``.metadata`` (dict) restored.

    Raises
    ------
    FileNotFoundError
        If there is no such file or shipped model.
    ValueError
        If the file is not a napari-unet safetensors model (for example a pickle
        written by ``torch.save``, which is refused because unpickling can execute
        arbitrary code), or its weights do not fit its architecture.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path_or_name)
    if (
        not path.exists()
        and str(path_or_name) == path.name
        and shipped_model_path(path.name).is_file()
    ):
        path = shipped_model_path(path.name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no model file {str(path_or_name)!r} (and no shipped model of that name)"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a napari-unet model file (safetensors); files that need "
            f"unpickling (torch.save) are refused because loading them can execute code: {error}"
        ) from error
    if header.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is a safetensors file but not a napari-unet model (no header)")
    try:
        config = UNetConfig(**json.loads(header["config"]))
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} has a corrupt napari-unet header: {error}") from error
    model = UNet(config=config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: weights do not match the architecture {config}: {error}"
        ) from error
    model.metadata = metadata
    return model.eval()
