"""Load back a bioimage.io model package that napari-unet exported, running none of its code.

:func:`napari_unet.models.files.load_model` hands zips here. Only packages written by
:func:`napari_unet.models.bioimageio.export_bioimageio` are accepted (their ``config.napari_unet``
entry and ``UNet`` architecture say so); any other package gets an error that says what
is supported. The network is built from the declared keyword arguments, checked like a
model file (:func:`napari_unet.models.files.check_state`), and filled with the
``pytorch_state_dict`` weights read by ``torch.load(weights_only=True)`` after their
SHA-256 is checked. Nothing is downloaded and the package's ``network.py`` is not imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import torch

from napari_unet.method.network import UNet, UNetConfig
from napari_unet.models._bioimageio_format import (
    ARCHITECTURE_CALLABLE,
    CONFIG_KEY,
    DESCRIPTION_FILES,
    INSTALL_HINT,
)
from napari_unet.models.files import FORMAT_NAME, check_state

#: Largest description file read from a package (bytes).
MAX_DESCRIPTION_BYTES = 4 * 2**20


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip holding a bioimage.io description file at its root."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n in DESCRIPTION_FILES for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_yaml(data: bytes):
    try:
        import yaml
    except ImportError as error:
        raise ImportError(f"reading a bioimage.io package needs PyYAML: {INSTALL_HINT}") from error
    return yaml.safe_load(data)


def _not_ours(path, why: str) -> ValueError:
    return ValueError(
        f"{path} is a bioimage.io model package but not one exported by napari-unet "
        f"({why}). napari-unet loads its own model files (.safetensors) and the "
        "bioimage.io packages it exports (napari-unet export-bioimageio); run other "
        "bioimage.io models with a bioimage.io consumer (bioimageio.core, ilastik, "
        "deepImageJ, QuPath)."
    )


def load_package(path: str | os.PathLike) -> UNet:
    """Load a bioimage.io package that napari-unet exported, without executing its code.

    The architecture is built from the keyword arguments the package declares for
    ``UNet`` (the package's ``network.py`` is not imported), the ``pytorch_state_dict``
    weights are read with ``torch.load(weights_only=True)`` after their SHA-256 is
    checked, and the model metadata comes from the package's ``config.napari_unet``.

    Parameters
    ----------
    path : str or os.PathLike
        A zip written by :func:`export_bioimageio`.

    Returns
    -------
    UNet
        float32 network on the CPU in evaluation mode, with ``metadata`` restored.

    Raises
    ------
    ValueError
        If the file is not a bioimage.io model package, was not exported by
        napari-unet (the message says what is supported), or is damaged (as
        :func:`napari_unet.models.files.check_state`).
    ImportError
        If PyYAML is missing (it comes with napari and with the bioimageio extra).
    """
    with zipfile.ZipFile(path) as archive:
        description = _description(archive, path)
        config, metadata, weights = _our_entries(description, path)
        state = _read_state(archive, weights, config, path)
    check_state(config, state, path)
    model = UNet(config=config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.metadata = metadata
    return model.eval()


def _description(archive: zipfile.ZipFile, path) -> dict:
    names = [n for n in DESCRIPTION_FILES if n in archive.namelist()]
    if not names:
        raise ValueError(f"{path} is a zip file but not a bioimage.io package (no rdf.yaml)")
    if archive.getinfo(names[0]).file_size > MAX_DESCRIPTION_BYTES:
        raise ValueError(f"{path}: {names[0]} is too large for a model description")
    try:
        description = _read_yaml(archive.read(names[0]))
    except ImportError:
        raise
    except Exception as error:  # any YAML error: the file is damaged
        raise ValueError(f"{path}: {names[0]} is not valid YAML: {error}") from error
    if not isinstance(description, dict) or description.get("type") != "model":
        raise ValueError(f"{path} is a bioimage.io package but does not describe a model")
    return description


def _our_entries(description: dict, path) -> tuple[UNetConfig, dict, dict]:
    """The architecture, metadata and weights entry of one of our packages."""
    own = (description.get("config") or {}).get(CONFIG_KEY)
    if not isinstance(own, dict) or own.get("format") != FORMAT_NAME:
        raise _not_ours(path, f"no config.{CONFIG_KEY} entry")
    weights = (description.get("weights") or {}).get("pytorch_state_dict")
    if not isinstance(weights, dict):
        raise _not_ours(path, "no pytorch_state_dict weights")
    architecture = weights.get("architecture") or {}
    if architecture.get("callable") != ARCHITECTURE_CALLABLE:
        raise _not_ours(path, f"architecture {architecture.get('callable')!r}, not UNet")
    kwargs = architecture.get("kwargs") or {}
    try:
        config = UNetConfig(**kwargs)
        metadata = json.loads(own.get("metadata", "{}"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: damaged napari-unet entry: {error}") from error
    if kwargs != own.get("architecture"):
        raise ValueError(
            f"{path}: the architecture's arguments {kwargs} differ from the napari-unet "
            f"entry's {own.get('architecture')}: the package was edited or is damaged"
        )
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: damaged napari-unet entry: metadata is not a dict")
    return config, metadata, weights


def _read_state(archive: zipfile.ZipFile, weights: dict, config: UNetConfig, path) -> dict:
    source = str(weights.get("source", ""))
    if "://" in source or source not in archive.namelist():
        raise ValueError(
            f"{path}: the weights {source!r} are not a file inside the package "
            "(napari-unet never downloads)"
        )
    with torch.device("meta"):
        expected = sum(t.numel() * 8 for t in UNet(config=config).state_dict().values())
    if archive.getinfo(source).file_size > expected + 2**20:
        raise ValueError(f"{path}: {source} is larger than the weights of {config}")
    data = archive.read(source)
    declared = weights.get("sha256")
    if declared and hashlib.sha256(data).hexdigest() != declared:
        raise ValueError(f"{path}: {source} does not match its SHA-256: the file is damaged")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have no common base class
        raise ValueError(f"{path}: cannot read the weights {source}: {error}") from error
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: {source} is not a state dict of tensors")
    return dict(state)
