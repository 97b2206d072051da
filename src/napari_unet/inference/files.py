"""One image file segmented and its results written: the command line's and the cluster's task."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from napari_unet.inference.segment import SegmentProgress, iter_segment
from napari_unet.inference.settings import SegmentSettings
from napari_unet.io import files as image_files
from napari_unet.io.checks import refuse_foreign_output
from napari_unet.io.spacing import stored_spacing
from napari_unet.method.axes import check_axes, is_volume
from napari_unet.method.images import image_layout
from napari_unet.method.instances import count_cells


@dataclass(frozen=True)
class FileSegmentation:
    """What :func:`iter_segment_file` wrote.

    Attributes
    ----------
    outputs : tuple of Path
        The label TIFF, then the probability TIFF when one was asked for.
    n_cells : int
        Cells (summed over the planes of a stack, or over the volumes).
    device, precision : str
        Where and in which precision the network ran.
    seconds : float
        Wall time of the segmentation.
    """

    outputs: tuple[Path, ...]
    n_cells: int
    device: str
    precision: str
    seconds: float


def iter_segment_file(
    image: str | os.PathLike,
    outputs: Sequence[str | os.PathLike],
    model=None,
    settings: SegmentSettings | None = None,
) -> Generator[SegmentProgress, None, FileSegmentation]:
    """Read an image file, segment it in memory and write its labels (and probabilities).

    Parameters
    ----------
    image : str or os.PathLike
        An image file :func:`~napari_unet.io.files.read_image` reads.
    outputs : sequence of str or os.PathLike
        The label TIFF, and optionally the foreground-probability TIFF; both written
        atomically, the labels first.
    model : UNet, str or path, optional
        ``None``: the shipped default model.
    settings : SegmentSettings, optional
        Default ``SegmentSettings()``. For a volume (``axes`` with ``Z``) without a
        ``spacing``, the voxel size the TIFF file stores is used
        (:func:`~napari_unet.io.spacing.stored_spacing`); the label TIFF of a volume or
        a plane carries the spacing used (ImageJ resolution, ``spacing`` and unit).

    Yields
    ------
    SegmentProgress

    Returns
    -------
    FileSegmentation

    Raises
    ------
    ValueError
        For an output napari-unet did not write
        (:func:`~napari_unet.io.checks.refuse_foreign_output`), labels no TIFF can hold, or
        as :func:`~napari_unet.inference.segment.iter_segment`.
    OSError
        If the file cannot be read or the results cannot be written.
    """
    settings = SegmentSettings() if settings is None else settings
    for out in outputs:
        refuse_foreign_output(out)
    pixels = image_files.read_image(image)
    axes = check_axes(settings.axes, pixels.shape, settings.rgb)
    rgb = settings.rgb if axes is None else settings.axes.upper().endswith("XC")
    # labels no TIFF can hold are refused before any work
    image_files.check_label_shape(image_layout(pixels, rgb).labels_shape)
    stored, unit = stored_spacing(image)
    if settings.spacing is None and stored is not None and axes is not None:
        wanted = 3 if is_volume(axes) else 2
        if len(stored) >= wanted:
            settings = replace(settings, spacing=stored[-wanted:])
    result = yield from iter_segment(pixels, model, **settings.in_memory())
    scale = settings.spacing
    if scale is None and stored is not None and axes is None and result.labels.ndim == 2:
        scale = stored[-2:]
    if scale is not None and len(scale) != result.labels.ndim:
        scale = None  # a stack of planes or time points: no voxel depth to store
    # the masks first: a rerun sees both, or redoes the file
    written = [
        image_files.write_labels_tiff(
            outputs[0], result.labels, scale=scale, unit=(unit or "pixel") if scale else "pixel"
        )
    ]
    if len(outputs) > 1:
        written.append(image_files.write_tiff(outputs[1], result.probabilities))
    return FileSegmentation(
        tuple(Path(w) for w in written),
        count_cells(result.labels, axes),
        result.device,
        result.precision,
        result.seconds,
    )
