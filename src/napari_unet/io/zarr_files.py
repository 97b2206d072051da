"""Zarr and OME-Zarr images in and labels out, read and written block by block.

An input is a zarr array, an OME-Zarr image (its full-resolution level), a dask or a
numpy array; axes of length 1 before ``(Y, X)`` (``(Z, Y, X)`` for a volume) are
dropped. Boxes are flat ``(start, stop)`` pairs, one per axis: ``(y0, y1, x0, x1)``.
Labels are an int32 zarr array whose chunks are the blocks, so that every block writes
whole chunks of its own; for an OME-Zarr image they go into its ``labels/<name>`` group
with the OME-NGFF label metadata (``ome-zarr``, the image's NGFF version) and, for a
plane, a pyramid of coarser levels, once the labels are complete.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

#: dtype of the labels written (as :func:`napari_unet.segment` returns).
LABELS_DTYPE = np.int32
#: Attribute of a labels array this package wrote: ``{"complete": bool, "n_cells": int}``.
STATUS_ATTRIBUTE = "napari_unet"
#: Coarser levels of an OME-Zarr labels pyramid stop at this side, pixels.
PYRAMID_MIN_SIDE = 1024

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``s3://…``) rather than a local path."""
    return bool(_URL.match(os.fspath(path)))


def store_path(path: str | os.PathLike) -> str:
    """A path every process can open: absolute for a local path, unchanged for a URL."""
    text = os.fspath(path)
    return text if is_url(text) else str(Path(text).expanduser().resolve())


@dataclass(frozen=True)
class OmeImage:
    """Where an OME-Zarr image lies and how its full-resolution level is described.

    Attributes: ``group``, the image group's store path; ``version``, its OME-NGFF version
    (``"0.4"``, ``"0.5"``); ``axes``, the multiscales ``axes``; ``transforms``, the
    ``coordinateTransformations`` of the full-resolution level
    (:func:`napari_unet.io.spacing.ome_axes_and_spacing` reads both).
    """

    group: str
    version: str
    axes: list
    transforms: list


def box_slices(box: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of a flat box ``(start, stop, start, stop, …)``, one per axis."""
    return tuple(slice(box[i], box[i + 1]) for i in range(0, len(box), 2))


@dataclass(frozen=True)
class Plane:
    """A ``(Y, X)`` (or ``(Z, Y, X)``) view of an array whose leading axes have length 1.

    Picklable. Attributes: ``array``, a zarr, dask or numpy array ``(1, …, 1, Y, X)``;
    ``spatial``, its last axes kept (2, or 3 for a volume).
    """

    array: object
    spatial: int = 2

    @property
    def shape(self) -> tuple[int, ...]:
        """``(Y, X)`` or ``(Z, Y, X)``."""
        return tuple(int(s) for s in self.array.shape[-self.spatial :])

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype."""
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        """2, or 3 for a volume."""
        return self.spatial

    def __getitem__(self, key):
        lead = (0,) * (len(self.array.shape) - self.spatial)
        key = key if isinstance(key, tuple) else (key,)
        fill = (slice(None),) * (self.spatial - len(key) + 1)  # what an Ellipsis stands for
        key = sum(((*fill,) if k is Ellipsis else (k,) for k in key), ())
        return self.array[(*lead, *key)]


def _ome_metadata(group) -> dict | None:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales")
    if not multiscales:
        return None
    version = ome.get("version") or multiscales[0].get("version", "0.4")
    return {"version": str(version), **multiscales[0]}


def open_image(image, spatial: int | None = 2) -> tuple[Plane, OmeImage | None]:
    """Open an image for block-wise reading, without reading its pixels.

    Parameters
    ----------
    image : str, os.PathLike, zarr.Array, dask array or np.ndarray
        A path or URL of a zarr array or an OME-Zarr image group, or an array.
    spatial : int, optional
        2 for one plane ``(Y, X)``, 3 for one volume ``(Z, Y, X)``; ``None``: all axes.

    Returns
    -------
    plane : Plane
        The ``(Y, X)`` (or ``(Z, Y, X)``) image.
    ome : OmeImage or None
        The OME-Zarr description when ``image`` is an OME-Zarr image.

    Raises
    ------
    ValueError
        If the image has axes of length > 1 besides ``(Y, X)`` (``(Z, Y, X)``), a non-numeric dtype,
        or a path holds neither a zarr array nor an OME-Zarr image.
    FileNotFoundError
        If the path does not exist.
    """
    import zarr

    ome = None
    if isinstance(image, (str, os.PathLike)):
        path = store_path(image)
        if not is_url(path) and not Path(path).exists():
            raise FileNotFoundError(f"no zarr array or OME-Zarr image at {image}")
        node = zarr.open(store=path, mode="r")
        if isinstance(node, zarr.Group):
            meta = _ome_metadata(node)
            if meta is None:
                raise ValueError(f"{image} is a zarr group but not an OME-Zarr image")
            level = meta["datasets"][0]
            node = node[level["path"]]
            ome = OmeImage(
                path,
                meta["version"],
                meta.get("axes", []),
                level.get("coordinateTransformations", []),
            )
        image = node
    elif not (hasattr(image, "shape") and hasattr(image, "dtype")):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    spatial = len(shape) if spatial is None else spatial
    if len(shape) < spatial or any(s != 1 for s in shape[:-spatial]):
        what, axes = ("2D plane", "Y, X") if spatial == 2 else ("volume", "Z, Y, X")
        raise ValueError(
            f"image of shape {shape} is not one {what} ({axes}): segment its planes, volumes or "
            f"channels one at a time (axes before {axes} must have length 1)"
        )
    if min(shape) < 1:
        raise ValueError(f"image is empty (shape {shape})")
    if np.dtype(image.dtype).kind not in "biuf":
        raise ValueError(f"image has dtype {image.dtype}; expected an integer or float image")
    return Plane(image, spatial), ome


# -- labels out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelsTarget:
    """A labels array being written block by block; picklable, opened where used.

    Attributes: ``store``, a store path or URL; ``path``, the array's path inside it
    (``""`` at the store's root); ``n_leading``, axes of length 1 before ``(Y, X)``
    (``(Z, Y, X)``).
    """

    store: str
    path: str
    n_leading: int

    def open(self, mode: str = "r+"):
        """The zarr array (opened once per process and mode)."""
        return _open_array(self.store, self.path, mode)

    def write(self, box: tuple[int, ...], labels: np.ndarray) -> None:
        """Write ``labels`` into a box (``(y0, y1, x0, x1)`` or with ``z0, z1`` first)."""
        self.open()[(0,) * self.n_leading + box_slices(box)] = labels

    def read(self, box: tuple[int, ...]) -> np.ndarray:
        """Read the labels in a box."""
        return np.asarray(self.open("r")[(0,) * self.n_leading + box_slices(box)])


@lru_cache(maxsize=32)
def _open_array(store: str, path: str, mode: str):
    import zarr

    return zarr.open_array(store=store, path=path or None, mode=mode)


def create_labels(
    store: str,
    path: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    zarr_format: int = 3,
    status: bool = True,
) -> LabelsTarget:
    """Create (or replace) an int32 labels array of zeros.

    Parameters
    ----------
    store, path : str
        Where: a store path or URL and the array's path in it (``""``: the root).
    shape : tuple of int
        ``(1, …, 1, Y, X)`` or ``(1, …, 1, Z, Y, X)``.
    chunks : tuple of int
        Chunk shape in ``(Y, X)`` (``(Z, Y, X)``), the block shape.
    zarr_format : int
        2 for OME-NGFF 0.4 images (with ``/`` as chunk key separator), else 3.
    status : bool
        Mark it as napari-unet's, incomplete (:func:`mark_complete` completes it).

    Returns
    -------
    LabelsTarget
    """
    import zarr

    n_leading = len(shape) - len(chunks)
    extra = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if zarr_format == 2 else {}
    array = zarr.create_array(
        store=store,
        name=path or None,
        shape=tuple(int(s) for s in shape),
        chunks=(1,) * n_leading + tuple(int(c) for c in chunks),
        dtype=LABELS_DTYPE,
        fill_value=0,
        zarr_format=zarr_format,
        overwrite=True,
        **extra,
    )
    if status:
        array.attrs[STATUS_ATTRIBUTE] = {"complete": False}
    _open_array.cache_clear()
    return LabelsTarget(store, path, n_leading)


def mark_complete(target: LabelsTarget, n_cells: int) -> None:
    """Record that every block of ``target`` is written, and how many cells it holds."""
    target.open().attrs[STATUS_ATTRIBUTE] = {"complete": True, "n_cells": int(n_cells)}


def _status(store: str, path: str = "") -> dict | None:
    """The status attribute of the array there; ``None`` if there is none."""
    import zarr

    try:
        node = zarr.open(store=store_path(store), path=path or None, mode="r")
    except (FileNotFoundError, KeyError, ValueError, TypeError, OSError):
        return None
    status = dict(node.attrs).get(STATUS_ATTRIBUTE)
    return status if isinstance(status, dict) else None


def exists(store: str, path: str = "") -> bool:
    """Whether a local store (and a node at ``path`` in it) exists; URLs: whether it opens."""
    import zarr

    store = store_path(store)
    if not is_url(store) and not Path(store).exists():
        return False
    try:
        zarr.open(store=store, path=path or None, mode="r")
    except (FileNotFoundError, KeyError, ValueError, TypeError, OSError):
        return not path and not is_url(store)  # a folder or file that is not zarr
    return True


def written_by_napari_unet(store: str, path: str = "") -> bool:
    """Whether the array there carries this package's status attribute."""
    return _status(store, path) is not None


def remove(store: str) -> None:
    """Delete a local zarr store (a folder); URLs are left alone."""
    if not is_url(store):
        shutil.rmtree(store, ignore_errors=True)


# -- OME-Zarr labels -----------------------------------------------------------------------


def ome_labels_location(ome: OmeImage, name: str) -> tuple[str, str]:
    """``(store, path)`` of the full-resolution labels of image ``ome`` called ``name``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"labels name {name!r} must be letters, digits, '_', '-' or '.'")
    return ome.group, f"labels/{name}/0"


def zarr_format_of(ome: OmeImage | None) -> int:
    """Zarr format of an OME-Zarr image's NGFF version (3 when there is no image)."""
    return 2 if ome is not None and ome.version in ("0.1", "0.2", "0.3", "0.4") else 3


def pyramid_factors(shape: tuple[int, ...]) -> list[int]:
    """Subsampling factors (2, 4, …) of the coarser levels, down to :data:`PYRAMID_MIN_SIDE`.

    A volume ``(Z, Y, X)`` gets none (its labels are one level, read chunk by chunk).
    """
    factors, f = [], 2
    while len(shape) == 2 and max(shape) / (f // 2) > PYRAMID_MIN_SIDE:
        factors.append(f)
        f *= 2
    return factors


def create_pyramid_level(
    level0: LabelsTarget, factor: int, chunks: tuple[int, int]
) -> tuple[LabelsTarget, list[tuple[int, int, int, int]]]:
    """Create the level of a labels pyramid ``factor`` times coarser than ``level0``.

    Its path is the level's number (``log2(factor)``) beside ``level0``'s; returns it and
    the boxes, one per chunk, that :func:`write_subsampled` fills.
    """
    full = level0.open("r")
    size_y, size_x = (-(-int(s) // factor) for s in full.shape[-2:])
    group = level0.path.rpartition("/")[0]
    number = str(factor.bit_length() - 1)
    level = create_labels(
        level0.store,
        f"{group}/{number}" if group else number,
        (1,) * level0.n_leading + (size_y, size_x),
        chunks,
        full.metadata.zarr_format,
        status=False,
    )
    by, bx = chunks
    boxes = [
        (y, min(y + by, size_y), x, min(x + bx, size_x))
        for y in range(0, size_y, by)
        for x in range(0, size_x, bx)
    ]
    return level, boxes


def write_subsampled(finer: LabelsTarget, coarser: LabelsTarget, box) -> None:
    """Fill ``box`` of a level with every other pixel of the next finer level."""
    y0, y1, x0, x1 = box
    coarser.write(box, finer.read((2 * y0, 2 * y1, 2 * x0, 2 * x1))[::2, ::2])


def write_ome_label_metadata(ome: OmeImage, name: str, factors: list[int]) -> None:
    """Write the multiscales and image-label metadata of ``labels/<name>`` (ome-zarr).

    Level ``k`` (path ``"k"``) subsamples the full resolution by ``factors[k-1]`` on
    ``Y`` and ``X`` (nearest neighbour); its scale is the image's scaled accordingly.
    """
    import zarr
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    fmt = format_from_version(ome.version)
    root = zarr.open_group(store=ome.group, mode="r+")
    labels_group = root.require_group("labels")
    group = labels_group[name]
    datasets = []
    for level, factor in enumerate([1, *factors]):
        transforms = []
        for transform in ome.transforms or [{"type": "scale", "scale": [1.0] * 2}]:
            transform = dict(transform)
            if transform.get("type") == "scale":
                scale = list(transform["scale"])
                scale[-2:] = [s * factor for s in scale[-2:]]
                transform["scale"] = scale
            transforms.append(transform)
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    write_multiscales_metadata(group, datasets, fmt=fmt, axes=ome.axes or None, name=name)
    existing = _ome_metadata_labels(labels_group)
    if name not in existing:
        write_label_metadata(labels_group, name, fmt=fmt)
    else:  # rewritten: keep the list, refresh this label's own metadata
        from ome_zarr.writer import add_metadata

        add_metadata(group, {"image-label": {"version": fmt.version}}, fmt=fmt)


def _ome_metadata_labels(labels_group) -> list:
    attrs = dict(labels_group.attrs)
    return list(attrs.get("ome", attrs).get("labels", []))
