"""Reading images and writing results (TIFF via tifffile): atomic, permission-preserving.

Every file is written to a temporary file in the destination folder, then renamed over
the destination (:func:`atomic_path`), so an interrupted write never leaves a broken
result. The file gets the permissions any normal file write would give it (see
:func:`atomic_path`).
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: File suffixes read as images.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
#: ``Software`` tag of every TIFF this package writes; folders given to ``segment`` skip them.
SOFTWARE = "napari-unet"
#: Number of axes a label image file may have: ``(Y, X)`` or a stack ``(Z|T, Y, X)``.
LABEL_NDIMS = (2, 3)

#: Errors that fail one file of a batch: reported on one line naming the file, while the
#: other files go on (anything else is a bug and stops the batch).
FILE_ERRORS = (ValueError, OSError, OverflowError, FloatingPointError, MemoryError)

# Temporary files: ".<name>.napari-unet-<pid>.<random>.tmp" beside the destination.
TEMP_TAG = "napari-unet"
_TEMP_RE = re.compile(rf"^\..+\.{TEMP_TAG}-(\d+)\.[A-Za-z0-9_]+\.tmp$")


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. ``0o022``), read without changing it.

    Read from ``/proc/self/status`` on Linux; elsewhere set and restored at once with
    :func:`os.umask` (another thread creating a file in that instant could get mode 0o077).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (POSIX); True when unknown."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files this package left in ``folder`` when a writer was killed.

    Only files named as :func:`atomic_path` names them
    (``.<name>.napari-unet-<pid>.<random>.tmp``) whose writing process no longer runs
    are removed (POSIX only; on Windows nothing is removed). Errors are ignored.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary file lives in the destination folder (same file system, so the
    rename is atomic); on error it is removed and ``path`` is left untouched. Killed
    writers (SIGKILL, power loss) can leave a temporary file behind: the next write
    to the same folder removes it (:func:`remove_stale_temporary_files`).

    Permissions: a new file gets ``0o666`` less the process's umask, as :func:`open`
    would give it; a file that is overwritten keeps its permission bits.

    Raises
    ------
    IsADirectoryError
        If ``path`` is an existing folder.
    OSError
        If the folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(path.parent)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{TEMP_TAG}-{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)  # after writing: some writers replace the file they are given
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, data: np.ndarray, **kwargs) -> Path:
    """Write ``data`` with :func:`tifffile.imwrite` (zlib-compressed), atomically.

    The file's ``Software`` tag is :data:`SOFTWARE`, so that this package can tell its
    own results from the user's images (see :func:`written_by_this_package`).
    """
    import tifffile

    kwargs.setdefault("compression", "zlib")
    kwargs.setdefault("software", SOFTWARE)
    kwargs.setdefault("photometric", "minisblack")  # never RGB: a last axis of 3 is data
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, **kwargs)
    return Path(path)


def written_by_this_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TIFF file whose ``Software`` tag says this package wrote it."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages.first.tags.get("Software")
            return tag is not None and str(tag.value) == SOFTWARE
    except (OSError, ValueError, KeyError, IndexError):  # unreadable: reading it reports why
        return False


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (TIFF with tifffile, others with scikit-image).

    Returns
    -------
    np.ndarray
        The pixels, at least 2D and not empty.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the suffix is not one of :data:`IMAGE_SUFFIXES`, or the file is corrupt,
        truncated, or holds no pixels; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(
            f"cannot read {path}: unknown image type {suffix!r} (use {', '.join(IMAGE_SUFFIXES)})"
        )
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            from skimage.io import imread

            image = imread(path)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # each reader has its own errors for a corrupt file
        raise ValueError(f"cannot read {path}: not a valid image file ({error})") from error
    image = np.asarray(image)
    if image.ndim < 2 or image.size == 0 or image.dtype == object:
        raise ValueError(
            f"cannot read {path}: not a valid image file (it decodes to an array of shape "
            f"{image.shape}, dtype {image.dtype})"
        )
    return image


def image_files(paths, *, skip_written: bool = False) -> list[Path]:
    """Expand files and folders into a list of image files (each folder sorted by name).

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Files and folders.
    skip_written : bool
        Leave out the TIFF files in a folder that this package wrote (masks, probability
        and weight maps; see :func:`written_by_this_package`), so that segmenting a folder
        that also receives the results never segments the results. Files named
        explicitly are never left out.

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
            if skip_written:
                found = [f for f in found if not written_by_this_package(f)]
            if not found:
                raise FileNotFoundError(f"folder {p} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return files


# -- segmentation results -----------------------------------------------------------------

#: Names of the results of segmenting ``<stem>.<suffix>``: label image and probability.
MASKS_SUFFIX = "_masks.tif"
PROBABILITIES_SUFFIX = "_probabilities.tif"


def segmentation_outputs(
    path: str | os.PathLike, output_dir: str | os.PathLike, probabilities: bool = False
) -> list[Path]:
    """Result files of segmenting ``path`` into ``output_dir``: masks (and probabilities)."""
    stem, folder = Path(path).stem, Path(output_dir)
    names = [stem + MASKS_SUFFIX] + [stem + PROBABILITIES_SUFFIX] * bool(probabilities)
    return [folder / name for name in names]


# -- label images --------------------------------------------------------------------------


def check_label_shape(shape: tuple[int, ...]) -> None:
    """Refuse a label image shape that cannot be written.

    Raises
    ------
    ValueError
        If the rank is not one of :data:`LABEL_NDIMS`.
    """
    if len(shape) not in LABEL_NDIMS:
        raise ValueError(
            f"labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {tuple(shape)}; "
            "give a 2D image or one stack (..., Y, X) with one leading axis"
        )


def _label_dtype(labels: np.ndarray) -> np.dtype:
    """uint8/uint16 kept; else the smallest of uint16, uint32, uint64 holding every id."""
    if labels.size and labels.dtype.kind == "i" and labels.min() < 0:
        raise ValueError("label images must not hold negative values")
    if labels.dtype in (np.uint8, np.uint16):
        return labels.dtype
    top = int(labels.max()) if labels.size else 0
    for dtype in (np.uint16, np.uint32, np.uint64):
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label id {top} does not fit in 64 bits")  # pragma: no cover


#: Pixel sizes a TIFF resolution (a ratio of 32-bit integers) holds exactly enough.
_SCALE_RANGE = (1e-9, 1e9)
#: ImageJ spellings of units napari or users give in other forms.
_UNIT_ALIASES = {"µm": "um", "μm": "um", "micron": "um", "microns": "um"}


def _check_scale_and_unit(scale, unit: str, ndim: int) -> tuple[tuple[float, ...] | None, str]:
    unit = _UNIT_ALIASES.get(str(unit), str(unit))
    if not unit.isascii() or not unit.isprintable() or not unit:
        raise ValueError(
            f"unit {unit!r} cannot be stored in a TIFF: use ASCII, e.g. 'um' for micrometre"
        )
    if scale is None:
        return None, unit
    try:
        scale = tuple(float(s) for s in scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be numbers (pixel size per axis), got {scale!r}") from None
    if len(scale) != ndim:
        raise ValueError(f"scale {scale} does not match the labels' {ndim} dimensions")
    if not all(math.isfinite(s) and _SCALE_RANGE[0] <= s <= _SCALE_RANGE[1] for s in scale):
        raise ValueError(
            f"scale (pixel size per axis, in {unit}) must be positive finite numbers from "
            f"{_SCALE_RANGE[0]:g} to {_SCALE_RANGE[1]:g} (TIFF resolution), got {scale}"
        )
    return scale, unit


def write_labels_tiff(
    path: str | os.PathLike,
    labels: np.ndarray,
    scale: tuple[float, ...] | None = None,
    unit: str = "pixel",
) -> Path:
    """Write a label image to a compressed TIFF, atomically, with every id unchanged.

    Dtype policy: uint8 and uint16 labels keep their dtype; other integer labels are
    stored as uint16 when every id is below 65,536 (ImageJ/Fiji open these as label
    images, and the file is an ImageJ hyperstack); with larger ids as uint32 (which
    tifffile and Fiji's Bio-Formats read exactly), or uint64 from 2**32 on (tifffile
    reads it exactly; ImageJ has no 64-bit integer images), in a plain TIFF. Values
    are never changed. The file is written to a temporary file in the destination folder and
    renamed into place (:func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        ``.tif`` or ``.tiff`` file.
    labels : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` (or ``(T, Y, X)``) non-negative integer (or bool)
        labels.
    scale : tuple of float, optional
        Pixel size per axis (napari layer ``scale``), in ``unit``, positive; stored as
        the TIFF resolution (and ImageJ ``spacing`` for the first axis of a stack).
    unit : str
        Unit of ``scale`` (e.g. ``"um"``; ``"µm"`` is stored as ``"um"``), ASCII.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        For a non-integer dtype, negative labels, rank other than 2 or 3, a suffix
        other than ``.tif``/``.tiff``, a scale that is not positive and finite, or a
        unit that is not ASCII.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"label images are written as TIFF: {path} must end with .tif or .tiff")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    check_label_shape(labels.shape)
    if labels.size == 0:
        raise ValueError(f"labels are empty (shape {labels.shape})")
    scale, unit = _check_scale_and_unit(scale, unit, labels.ndim)
    dtype = _label_dtype(labels)
    data = labels.astype(dtype, copy=False)
    imagej = dtype.itemsize <= 2
    kwargs: dict = {}
    metadata: dict = {"unit": unit} if imagej else {}
    if scale is not None:
        kwargs["resolution"] = (1.0 / scale[-1], 1.0 / scale[-2])
        if labels.ndim == 3 and imagej:
            metadata["spacing"] = scale[0]
    if imagej:
        kwargs["imagej"] = True
        kwargs["metadata"] = {**metadata, "axes": "YX" if labels.ndim == 2 else "ZYX"}
    return write_tiff(path, data, **kwargs)
