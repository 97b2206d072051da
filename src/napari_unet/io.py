"""Reading images and writing label images (TIFF via tifffile), atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: File suffixes read as images.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary file lives in the destination folder (same file system, so the
    rename is atomic); on error it is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, data: np.ndarray, **kwargs) -> Path:
    """Write ``data`` with :func:`tifffile.imwrite` (zlib-compressed), atomically."""
    import tifffile

    kwargs.setdefault("compression", "zlib")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, **kwargs)
    return Path(path)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (TIFF with tifffile, others with scikit-image).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the suffix is not one of :data:`IMAGE_SUFFIXES`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if suffix in IMAGE_SUFFIXES:
        from skimage.io import imread

        return imread(path)
    raise ValueError(
        f"cannot read {path}: unknown image type {suffix!r} (use {', '.join(IMAGE_SUFFIXES)})"
    )


def image_files(paths) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Raises
    ------
    FileNotFoundError
        If a path does not exist or a folder holds no image.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            )
            if not found:
                raise FileNotFoundError(f"folder {p} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return files


def _imagej_dtype(labels: np.ndarray) -> np.dtype:
    """The labels' dtype if ImageJ reads it (uint8, uint16), else uint16 or uint32."""
    if labels.size and (labels.min() < 0):
        raise ValueError("label images must not hold negative values")
    if labels.dtype in (np.uint8, np.uint16):
        return labels.dtype
    top = int(labels.max()) if labels.size else 0
    if top < 2**16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def write_labels_tiff(
    path: str | os.PathLike,
    labels: np.ndarray,
    scale: tuple[float, ...] | None = None,
    unit: str = "pixel",
) -> Path:
    """Write a label image to a compressed, ImageJ-compatible TIFF, atomically.

    uint8 and uint16 labels keep their dtype; other integer labels are stored as uint16
    (which ImageJ/Fiji open as label images) or, with more than 65,535 labels, as
    uint32, which ImageJ hyperstacks cannot hold, so the file is then a plain TIFF.
    Values are never changed. The file is written to a temporary file in the
    destination folder and renamed into place.

    Parameters
    ----------
    path : str or os.PathLike
        ``.tif`` or ``.tiff`` file.
    labels : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` (or ``(T, Y, X)``) non-negative integer labels.
    scale : tuple of float, optional
        Pixel size per axis (napari layer ``scale``), in ``unit``; stored as the TIFF
        resolution (and ImageJ ``spacing`` for the first axis of a stack).
    unit : str
        Unit of ``scale`` (e.g. ``"um"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        For a non-integer dtype, negative labels, rank other than 2 or 3, or a suffix
        other than ``.tif``/``.tiff``.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"label images are written as TIFF: {path} must end with .tif or .tiff")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {labels.shape}")
    dtype = _imagej_dtype(labels)
    data = labels.astype(dtype, copy=False)
    imagej = dtype != np.uint32
    kwargs: dict = {}
    metadata: dict = {"unit": unit} if imagej else {}
    if scale is not None:
        scale = tuple(float(s) for s in scale)
        if len(scale) != labels.ndim:
            raise ValueError(f"scale {scale} does not match the labels' {labels.ndim} dimensions")
        kwargs["resolution"] = (1.0 / scale[-1], 1.0 / scale[-2])
        if labels.ndim == 3 and imagej:
            metadata["spacing"] = scale[0]
    if imagej:
        kwargs["imagej"] = True
        kwargs["metadata"] = {**metadata, "axes": "YX" if labels.ndim == 2 else "ZYX"}
    return write_tiff(path, data, **kwargs)
