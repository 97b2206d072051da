"""Self-describing model files (safetensors): architecture, normalisation, metadata, weights.

A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: the
weights as plain tensors and, in its string header, JSON with the architecture
(:class:`~napari_unet.method.network.UNetConfig`) and free-form metadata (normalisation,
training settings, scores). Loading never executes code: a pickle (``torch.save``)
file is refused. Before a network is built, the declared architecture is checked
against sane bounds and against the shapes of the stored tensors, and every stored
number must be finite, so a small or damaged file can neither allocate gigabytes nor
give a network that silently finds no cell.

Model names and paths: a ``str`` without a path separator and without a suffix
(``"default"``) names a shipped model when one of that name exists, even when a file
or folder of that name is in the working directory; write ``"./default"`` (or pass a
:class:`pathlib.Path`) to mean the file.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import torch

from napari_unet.io.files import atomic_path
from napari_unet.method.network import UNet
from napari_unet.models.checks import (  # noqa: F401 - also read from here
    ARCHITECTURE_LIMITS,
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_WIDEST_CHANNELS,
    check_architecture,
    check_state,
    config_from_dict,
)
from napari_unet.models.metadata import DEFAULT_MODEL_NAME

SUFFIX = ".safetensors"
#: Suffixes of the model files :func:`load_model` reads (the widgets' file filters).
#: A bioimage.io model package (zip), as :func:`napari_unet.export_bioimageio` writes.
PACKAGE_SUFFIX = ".zip"
READABLE_SUFFIXES = (SUFFIX, PACKAGE_SUFFIX)


def shipped_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Path of a model shipped inside the package (it may not exist)."""
    return Path(str(resources.files("napari_unet") / "models" / f"{name}{SUFFIX}"))


def is_model_name(path_or_name) -> bool:
    """Whether ``path_or_name`` is written as a shipped model's name, not as a path.

    A name is a ``str`` with no path separator and no suffix, other than ``.`` and
    ``..`` (``"default"``); ``"./default"``, ``"default.safetensors"`` and any
    :class:`os.PathLike` are paths.
    """
    if not isinstance(path_or_name, str) or path_or_name in ("", ".", ".."):
        return False
    separators = {"/", os.sep, os.altsep} - {None}
    return not any(sep in path_or_name for sep in separators) and "." not in path_or_name


def resolve_model_path(path_or_name: str | os.PathLike = DEFAULT_MODEL_NAME) -> Path:
    """The file that ``path_or_name`` means (see :func:`is_model_name` for the rule).

    Raises
    ------
    FileNotFoundError
        If there is no such shipped model or file, or the path is a folder.
    """
    if is_model_name(path_or_name):
        shipped = shipped_model_path(path_or_name)
        if shipped.is_file():
            return shipped
    path = Path(path_or_name)
    if path.is_dir():
        raise FileNotFoundError(f"{str(path_or_name)!r} is a folder, not a model file")
    if not path.is_file():
        shipped = " (and no shipped model of that name)" if is_model_name(path_or_name) else ""
        raise FileNotFoundError(f"no model file {str(path_or_name)!r}{shipped}")
    return path


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
        A file written by :func:`save_model`, a bioimage.io package (zip) written by
        :func:`napari_unet.models.bioimageio.export_bioimageio`, or the name of a shipped model
        (``"default"``: the nuclei model trained on BBBC039 + DSB2018). A ``str`` with
        no path separator and no suffix is a shipped name first; ``"./default"`` or a
        :class:`pathlib.Path` always means a file (:func:`is_model_name`).

    Returns
    -------
    UNet
        float32 network on the CPU in evaluation mode, with ``.config`` and
        ``.metadata`` (dict) restored.

    Raises
    ------
    FileNotFoundError
        If there is no such file or shipped model, or the path is a folder.
    ValueError
        If the file is not a napari-unet safetensors model (for example a pickle
        written by ``torch.save``, which is refused because unpickling can execute
        arbitrary code), its declared architecture exceeds
        :data:`ARCHITECTURE_LIMITS` or does not fit its weights (checked before the
        network is built), or a weight or batch-norm statistic is NaN or infinite
        (:func:`check_state`); or a bioimage.io package was not exported by napari-unet
        (:func:`napari_unet.models._bioimageio_load.load_package`).
    """
    from safetensors import SafetensorError, safe_open

    path = resolve_model_path(path_or_name)
    from napari_unet.models import _bioimageio_load as bioimageio

    if path.suffix.lower() == PACKAGE_SUFFIX or bioimageio.is_package(path):
        return bioimageio.load_package(path)
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
        values = json.loads(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, TypeError, RecursionError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} has a corrupt napari-unet header: {error}") from error
    config = config_from_dict(values, path)
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} has a corrupt napari-unet header: metadata is not a dict")
    check_state(config, state, path)
    model = UNet(config=config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # pragma: no cover - check_state compares every shape
        raise ValueError(
            f"{path}: weights do not match the architecture {config}: {error}"
        ) from error
    model.metadata = metadata
    return model.eval()


def as_model(model: UNet | str | os.PathLike) -> UNet:
    """A network as it is, or loaded from a model file or shipped name (:func:`load_model`).

    Raises
    ------
    ValueError
        If ``model`` is neither a :class:`UNet`, nor a ``str`` or path (or as
        :func:`load_model`).
    FileNotFoundError
        As :func:`load_model`.
    """
    if isinstance(model, UNet):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise ValueError(
        f"model must be a UNet, a model file or a shipped model name, got {type(model).__name__}"
    )


def save_model_or_keep(model: UNet, path: str | os.PathLike) -> tuple[Path, OSError | None]:
    """Save a model to ``path``; if that fails, save it elsewhere rather than lose it.

    Tried in turn: ``path``; beside it, as ``<stem>.unsaved-<time>.safetensors``; the
    temporary folder; the home folder.

    Returns
    -------
    (pathlib.Path, OSError or None)
        Where the model was written, and the error that prevented writing ``path``
        (``None`` when ``path`` was written).

    Raises
    ------
    OSError
        The first error, when no location could be written.
    """
    path = Path(path)
    try:
        return save_model(model, path), None
    except OSError as error:
        first = error
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{path.stem or 'model'}.unsaved-{stamp}{SUFFIX}"
    for folder in (path.parent, Path(tempfile.gettempdir()), Path.home()):
        try:
            return save_model(model, folder / name), first
        except OSError:
            continue
    raise first


def model_file_bytes(model: UNet) -> int:
    """Approximate size of the model's file in bytes (float32 weights + header)."""
    return sum(t.numel() * 4 for t in model.state_dict().values()) + 2**16
