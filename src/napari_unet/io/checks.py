"""Checks on the files a run reads and writes, made before any work starts.

Outputs that are inputs, output names that collide, unwritable or full folders, and
the pairing of images with annotations by name: the command line calls these before
the first image is read, so that nothing the user made is overwritten and no result
is lost at the end of a long run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from napari_unet.io.files import TEMP_TAG, written_by_this_package


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (also through links, ``..`` or case folding)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def refuse_foreign_output(
    output: str | os.PathLike,
    zarr_path: str | None = None,
    *,
    replaces_store: bool = False,
    what: str | None = None,
    instead: str = "choose another output folder",
) -> None:
    """Refuse to overwrite a file or zarr array this package did not write.

    The one guard of every writer: the command line, the cluster's file tasks, and the
    zarr labels of :mod:`napari_unet.inference.to_zarr` and :mod:`napari_unet.distributed`.

    Parameters
    ----------
    output : str or os.PathLike
        A file (TIFF, model), or a zarr store when ``zarr_path`` is given.
    zarr_path : str, optional
        The array's path in the store (``""`` for the store's root array).
    replaces_store : bool
        Whether the writer deletes the whole store first: then any existing store counts,
        not only one with an array at ``zarr_path``.
    what : str, optional
        How the message names the output; default ``output``.
    instead : str
        What the user can do instead, ending the message.

    Raises
    ------
    ValueError
        If ``output`` exists and does not carry this package's mark
        (:func:`~napari_unet.io.files.written_by_this_package`,
        :func:`~napari_unet.io.zarr_files.written_by_napari_unet`).
    """
    if zarr_path is None:
        foreign = Path(output).exists() and not written_by_this_package(output)
    else:
        from napari_unet.io import zarr_files

        store = str(output)
        existing = zarr_files.exists(store, "" if replaces_store else zarr_path)
        foreign = existing and not zarr_files.written_by_napari_unet(store, zarr_path)
    if foreign:
        raise ValueError(
            f"{what or output} exists and was not written by napari-unet: move it, or {instead}"
        )


def check_output_path(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    min_free_bytes: int = 0,
) -> Path:
    """Check, before any work, that a result can be written to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    inputs : iterable of path
        Files the run reads; ``path`` must not be one of them.
    min_free_bytes : int
        Bytes the result needs; the file system must have that much free.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``path`` is one of ``inputs`` or a folder, a part of its folder is a file,
        the folder cannot be written (a test file is created and removed), or there is
        less free space than ``min_free_bytes``.
    """
    path = Path(path)
    for source in inputs:
        if same_file(path, source):
            raise ValueError(
                f"the output {path} is also an input: writing it would destroy the input; "
                "choose another output name"
            )
    if path.is_dir():
        raise ValueError(f"the output {path} is a folder; give a file name")
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{TEMP_TAG}-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"cannot write {path}: {folder} is not writable ({error})") from None
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise ValueError(
            f"cannot write {path}: {free / 2**20:.1f} MiB free on its file system, "
            f"{min_free_bytes / 2**20:.1f} MiB needed"
        )
    return path


def check_unique_outputs(outputs: Sequence[str | os.PathLike], inputs: Sequence = ()) -> None:
    """Refuse output paths that collide with each other (ignoring case) or with an input.

    Raises
    ------
    ValueError
        Naming both colliding paths.
    """
    seen: dict[str, Path] = {}
    for out in map(Path, outputs):
        key = os.path.normcase(os.path.abspath(out)).casefold()
        if key in seen:
            raise ValueError(
                f"two results would be written to {out} (also {seen[key]}): give inputs "
                "with different names, or segment them into different folders"
            )
        seen[key] = out
        for source in inputs:
            if same_file(out, source):
                raise ValueError(
                    f"the output {out} is also an input: writing it would destroy the input; "
                    "choose another output folder"
                )


#: Suffixes an annotation's name may add to its image's name (``cells.tif`` and
#: ``cells_masks.tif``), for :func:`pair_by_name`.
ANNOTATION_NAME_SUFFIXES = ("", "_annotation", "_annotations", "_labels", "_masks", "_mask")


def pair_by_name(images: Sequence[Path], annotations: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pair image files with annotation files by name.

    An annotation belongs to the image whose file stem it repeats, optionally followed
    by one of :data:`ANNOTATION_NAME_SUFFIXES` (``cells.png`` with ``cells.tif`` or
    ``cells_masks.tif``); the comparison ignores case. One image and one annotation
    always pair, whatever their names.

    Returns
    -------
    list of (Path, Path)
        ``(image, annotation)`` in the order of ``images``.

    Raises
    ------
    ValueError
        If the counts differ, two images have the same stem, or an image has no
        annotation or several (the names are given).
    """
    images, annotations = [Path(p) for p in images], [Path(p) for p in annotations]
    if len(images) != len(annotations):
        raise ValueError(
            f"{len(images)} images but {len(annotations)} annotations: give one per image"
        )
    if len(images) == 1:
        return [(images[0], annotations[0])]
    stems: dict[str, Path] = {}
    for image in images:
        key = image.stem.casefold()
        if key in stems:
            raise ValueError(
                f"images {stems[key]} and {image} have the same name: annotations are "
                "paired with images by name"
            )
        stems[key] = image
    matches: dict[str, list[Path]] = {key: [] for key in stems}
    unmatched = []
    for annotation in annotations:
        stem = annotation.stem.casefold()
        keys = [stem.removesuffix(s) for s in ANNOTATION_NAME_SUFFIXES if stem.endswith(s)]
        found = [k for k in dict.fromkeys(keys) if k in stems]
        if len(found) != 1:
            unmatched.append(annotation)
        else:
            matches[found[0]].append(annotation)
    problems = [f"no image for annotation {a.name}" for a in unmatched]
    for key, found in matches.items():
        if len(found) != 1:
            what = "no annotation" if not found else f"{len(found)} annotations"
            problems.append(f"{what} for image {stems[key].name}")
    if problems:
        raise ValueError(
            "annotations are paired with images by name (cells.tif with cells.tif or "
            f"cells_masks.tif): {'; '.join(problems)}"
        )
    return [(stems[key], matches[key][0]) for key in stems]
