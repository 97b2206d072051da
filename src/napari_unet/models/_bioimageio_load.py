"""Load back a bioimage.io model package that napari-unet exported, running none of its code.

:func:`napari_unet.models.files.load_model` hands zips here. Only packages written by
:func:`napari_unet.models.bioimageio.export_bioimageio` are accepted (their ``config.napari_unet``
entry and ``UNet`` architecture say so); any other package gets an error that says what
is supported. The network is built from the declared keyword arguments, checked like a
model file (:func:`napari_unet.models.files.check_state`), and filled with the
``pytorch_state_dict`` weights read by ``torch.load(weights_only=True)`` after their
SHA-256 is checked. Nothing is downloaded and the package's ``network.py`` is not imported.

A package is untrusted input: every value read from it is type- and size-checked before
it is used or printed; the description is parsed with a cap on its size and on the nodes
its YAML aliases expand to; archive members are inflated with a hard cap on the bytes
actually produced, whatever their headers declare; and the weights file must be an
uncompressed PyTorch archive, so ``torch.load`` allocates no more than its size.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Mapping

import torch

from napari_unet.method.network import UNet, UNetConfig
from napari_unet.models._bioimageio_format import (
    ARCHITECTURE_CALLABLE,
    CONFIG_KEY,
    DESCRIPTION_FILES,
    INSTALL_HINT,
)
from napari_unet.models.checks import FORMAT_NAME, check_state, config_from_dict
from napari_unet.runtime.checks import short_repr

#: Largest description file read from a package (bytes); napari-unet writes about 6 KB.
MAX_DESCRIPTION_BYTES = 256 * 2**10
#: Most YAML nodes the description may expand to, counting every use of an alias:
#: a "billion laughs" file of 1 KB is refused before it is built or printed.
MAX_DESCRIPTION_NODES = 20_000
#: Largest ratio of inflated to compressed bytes accepted for the weights (network
#: weights compress little: 1.1 for the paper's network, 1.7 for the shipped model);
#: beyond it, a zip bomb.
MAX_COMPRESSION_RATIO = 16
#: Slack for the weights file beyond its tensors (the pickle and alignment), bytes.
WEIGHTS_SLACK_BYTES = 2**20

#: Errors of a damaged archive or member: bad CRC, truncated or invalid deflate data,
#: an unsupported compression (NotImplementedError) or encryption (RuntimeError).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip holding a bioimage.io description file at its root."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n in DESCRIPTION_FILES for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


@functools.cache
def _yaml_loader():
    """PyYAML's safe loader (the C one when available), bounded by :func:`_check_expansion`."""
    try:
        import yaml
    except ImportError as error:
        raise ImportError(f"reading a bioimage.io package needs PyYAML: {INSTALL_HINT}") from error
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class BoundedLoader(base):
        """A safe loader that refuses documents whose aliases expand beyond a budget."""

        def construct_document(self, node):
            _check_expansion(node, yaml.MappingNode, yaml.SequenceNode)
            return super().construct_document(node)

    return BoundedLoader


def _check_expansion(root, mapping_node, sequence_node) -> None:
    """Count the nodes of a YAML document as if every alias were copied out; refuse a flood.

    Also bounds what merge keys (``<<: *a``) make of the document, and refuses
    recursive aliases (they never end).
    """
    stack, seen = [root], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_DESCRIPTION_NODES:
            raise ValueError(
                f"its YAML expands to more than {MAX_DESCRIPTION_NODES} values "
                "(aliases nested to make it huge)"
            )
        if isinstance(node, mapping_node):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, sequence_node):
            stack.extend(node.value)


def _read_yaml(data: bytes):
    import yaml

    return yaml.load(data, Loader=_yaml_loader())


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

    Every value is checked before use: the description at most
    :data:`MAX_DESCRIPTION_BYTES` and :data:`MAX_DESCRIPTION_NODES`, the architecture
    within :data:`napari_unet.models.checks.ARCHITECTURE_LIMITS` before anything is built,
    the weights at most the declared network's tensors plus
    :data:`WEIGHTS_SLACK_BYTES` and :data:`MAX_COMPRESSION_RATIO` times their
    compressed size, counted as they inflate.

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
        If the file is not a zip (or an empty or corrupt one), not a bioimage.io model
        package, was not exported by napari-unet (the message says what is supported),
        exceeds a limit, or is damaged (as :func:`napari_unet.models.checks.check_state`).
    ImportError
        If PyYAML is missing (it comes with napari and with the bioimageio extra).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            description = _description(archive, path)
            config, metadata, weights = _our_entries(description, path)
            state = _read_state(archive, weights, config, path)
    except _ARCHIVE_ERRORS as error:  # file system errors (OSError) pass as they are
        raise ValueError(
            f"{path} is not a valid zip file (damaged, or not a zip): {str(error)[:200]}"
        ) from error
    check_state(config, state, path)
    model = UNet(config=config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.metadata = metadata
    return model.eval()


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, path) -> bytes:
    """A member's bytes, inflating at most ``limit + 1`` of them whatever its header says."""
    with archive.open(name) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise ValueError(
            f"{path}: {name} inflates to more than {limit} bytes: too large for a model "
            "package (or a zip bomb)"
        )
    return data


def _description(archive: zipfile.ZipFile, path) -> dict:
    names = [n for n in DESCRIPTION_FILES if n in archive.namelist()]
    if not names:
        raise ValueError(f"{path} is a zip file but not a bioimage.io package (no rdf.yaml)")
    data = _read_member(archive, names[0], MAX_DESCRIPTION_BYTES, path)
    _yaml_loader()  # a missing PyYAML is an ImportError, not a damaged file
    try:
        description = _read_yaml(data)
    except Exception as error:  # any YAML error (or too many aliases): the file is damaged
        raise ValueError(f"{path}: {names[0]} is not valid YAML: {str(error)[:300]}") from error
    if not isinstance(description, Mapping) or description.get("type") != "model":
        raise ValueError(f"{path} is a bioimage.io package but does not describe a model")
    return description


def _mapping(parent: Mapping, key: str, what: str, path) -> Mapping:
    """``parent[key]`` when it is a mapping; {} when absent; a ValueError otherwise."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{path}: {what} must be a mapping, got {type(value).__name__} "
            f"{short_repr(value)}: the package is damaged"
        )
    return value


def _our_entries(description: Mapping, path) -> tuple[UNetConfig, dict, Mapping]:
    """The architecture, metadata and weights entry of one of our packages."""
    own = _mapping(_mapping(description, "config", "config", path), CONFIG_KEY, CONFIG_KEY, path)
    if own.get("format") != FORMAT_NAME:
        raise _not_ours(path, f"no config.{CONFIG_KEY} entry")
    weights = _mapping(description, "weights", "weights", path)
    weights = _mapping(weights, "pytorch_state_dict", "weights.pytorch_state_dict", path)
    if not weights:
        raise _not_ours(path, "no pytorch_state_dict weights")
    architecture = _mapping(weights, "architecture", "the architecture", path)
    if architecture.get("callable") != ARCHITECTURE_CALLABLE:
        raise _not_ours(path, f"architecture {short_repr(architecture.get('callable'))}, not UNet")
    kwargs = _mapping(architecture, "kwargs", "the architecture's kwargs", path)
    config = config_from_dict(kwargs, path)  # types and limits, before anything is built
    declared = own.get("architecture")
    if not isinstance(declared, Mapping) or config != config_from_dict(declared, path):
        raise ValueError(
            f"{path}: the architecture's arguments {short_repr(dict(kwargs), 200)} differ from "
            f"the napari-unet entry's {short_repr(declared, 200)}: the package was edited or "
            "is damaged"
        )
    metadata = own.get("metadata", "{}")
    if not isinstance(metadata, str):
        raise ValueError(f"{path}: damaged napari-unet entry: metadata is not JSON text")
    try:
        metadata = json.loads(metadata)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path}: damaged napari-unet entry: {short_repr(error, 200)}") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: damaged napari-unet entry: metadata is not a dict")
    return config, metadata, weights


def _weights_limit(archive: zipfile.ZipFile, source: str, config: UNetConfig, path) -> int:
    """Most bytes the weights may inflate to: the declared network's, and no bomb ratio."""
    with torch.device("meta"):  # shapes only, after check_architecture: costs nothing
        expected = sum(t.numel() * 8 for t in UNet(config=config).state_dict().values())
    compressed = min(archive.getinfo(source).compress_size, os.path.getsize(path))
    return min(expected, MAX_COMPRESSION_RATIO * compressed) + WEIGHTS_SLACK_BYTES


def _read_state(archive: zipfile.ZipFile, weights: Mapping, config: UNetConfig, path) -> dict:
    source = weights.get("source")
    if not isinstance(source, str) or "://" in source or source not in archive.namelist():
        raise ValueError(
            f"{path}: the weights {short_repr(source)} are not a file inside the package "
            "(napari-unet never downloads)"
        )
    declared = weights.get("sha256")
    if declared is not None and not (isinstance(declared, str) and _SHA256.match(declared)):
        raise ValueError(f"{path}: the weights' sha256 {short_repr(declared)} is not a SHA-256")
    data = _read_member(archive, source, _weights_limit(archive, source, config, path), path)
    if declared and hashlib.sha256(data).hexdigest() != declared.lower():
        raise ValueError(f"{path}: {source} does not match its SHA-256: the file is damaged")
    _check_torch_archive(data, source, path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have no common base class
        raise ValueError(f"{path}: cannot read the weights {source}: {str(error)[:300]}") from error
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: {source} is not a state dict of tensors")
    return dict(state)


def _check_torch_archive(data: bytes, source: str, path) -> None:
    """Refuse weights ``torch.load`` would inflate or allocate beyond their own size.

    ``torch.save`` writes an uncompressed zip; one with compressed records, or records
    declaring more bytes than the file holds, is refused (PyTorch allocates what a
    record declares).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            records = inner.infolist()
    except zipfile.BadZipFile as error:
        raise ValueError(
            f"{path}: {source} is not a PyTorch weights file (torch.save): {error}"
        ) from error
    declared = sum(record.file_size for record in records)
    compressed = any(record.compress_type != zipfile.ZIP_STORED for record in records)
    if compressed or declared > len(data):
        raise ValueError(
            f"{path}: {source} is not a plain torch.save file (compressed records, or records "
            "larger than the file): the package is damaged"
        )
