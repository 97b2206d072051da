"""``napari-unet train --axes --spacing``: training on volumes from the command line.

Volumes (``--axes ZYX`` or ``TZYX``) are trained from their painted XY planes with the 3D
weight map (:func:`napari_unet.training.loop.train` with ``axes`` and ``spacing``). The
voxel size is ``--spacing`` when given, else the one each ImageJ TIFF stores
(:func:`napari_unet.io.spacing.stored_spacing`), else isotropic.
"""

from __future__ import annotations

from pathlib import Path

from napari_unet.cli._settings import add_axes_options
from napari_unet.io.spacing import stored_spacing
from napari_unet.method.axes import check_spacing, is_volume, spatial_axes

__all__ = ["add_volume_arguments", "training_spacings"]


def add_volume_arguments(parser) -> None:
    """Add ``--axes`` and ``--spacing`` to the ``train`` subcommand's parser."""
    add_axes_options(
        parser,
        "each volume is trained from its painted XY planes (never painted planes are "
        "ignored; one id across planes is one 3D cell)",
    )


def training_spacings(images: list[Path], axes: str | None, spacing) -> list | None:
    """Per image, the voxel size ``train`` gets: ``--spacing``, the file's, or ``None``.

    Raises
    ------
    ValueError
        For a ``--spacing`` without ``--axes`` or of the wrong length.
    """
    if axes is None:
        if spacing is not None:
            raise ValueError("--spacing needs --axes (ZYX or TZYX)")
        return None
    spacing = check_spacing(spacing, spatial_axes(axes.upper()))
    if spacing is not None or not is_volume(axes.upper()):
        return [spacing] * len(images)
    stored = [stored_spacing(path)[0] for path in images]
    return [size if size is not None and len(size) == 3 else None for size in stored]
