"""Which training images are volumes (``Z`` in their axes), and their voxel size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_unet.method.axes import check_axes, check_spacing, is_volume

__all__ = ["check_painted", "volume_spacings"]


def volume_spacings(images: Sequence, axes, spacing) -> list | None:
    """Per image: ``None`` (a plane or a stack of planes), or the voxel size of a volume.

    Parameters
    ----------
    images : sequence of array-like
        The training images.
    axes : str, sequence of str or None
        One axes string for all images or one per image
        (:func:`~napari_unet.method.axes.check_axes`);
        ``None``: no volumes.
    spacing : sequence of float, sequence of them, or None
        Voxel size ``(dz, dy, dx)`` for all images (with one axes string), or one per
        image (with one axes string per image); ``None``: isotropic.

    Returns
    -------
    list or None
        ``None`` without axes; else per image ``None`` or a tuple ``(dz, dy, dx)``.

    Raises
    ------
    ValueError
        For a spacing without axes, axes that do not match an image, channel axes
        (``CYX``: training takes one channel), a bad spacing, or per-image lists of
        the wrong length.
    """
    if axes is None:
        if spacing is not None:
            raise ValueError("spacing needs axes: give axes='ZYX' (or 'TZYX') with it")
        return None
    n = len(images)
    per_image_axes = [axes] * n if isinstance(axes, str) else list(axes)
    if isinstance(axes, str) or spacing is None:
        per_image_spacing = [spacing] * n
    else:
        per_image_spacing = list(spacing)
    if len(per_image_axes) != n or len(per_image_spacing) != n:
        raise ValueError(
            f"got {n} images: give one axes string (and one spacing) for all, or one per image"
        )
    volumes = []
    for k, (image, name, size) in enumerate(
        zip(images, per_image_axes, per_image_spacing, strict=True)
    ):
        name = check_axes(name, np.shape(image))
        if name is not None and "C" in name:
            raise ValueError(
                f"image {k} has channels ({name}): training takes one channel; give the "
                "channel to train on as a YX image"
            )
        volumes.append((check_spacing(size, name) or (1.0, 1.0, 1.0)) if is_volume(name) else None)
    return volumes


def check_painted(annotation, name: str, dense: bool = False) -> None:
    """Refuse a volume annotation with nothing painted.

    Parameters
    ----------
    annotation : array-like
        ``(..., Z, Y, X)`` labels in the partial convention (0 = not annotated).
    name : str
        How the message names the volume (``"volume 0"``, a layer's name).
    dense : bool
        Dense labels are never "not painted" (0 is background there).

    Raises
    ------
    ValueError
        If no voxel is annotated.
    """
    if not dense and not np.any(annotation):
        raise ValueError(
            f"{name} (shape {tuple(np.shape(annotation))}) has nothing painted: paint "
            "background (label 1) and cells (labels 2, 3, …) in at least one of its planes"
        )
