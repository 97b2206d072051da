"""Training planes from the XZ and YZ views of a volume painted in XY planes.

The default way to segment a volume (``volume_method="orthogonal"``,
:mod:`napari_unet.inference.volumes`) runs the 2D network on the XY, XZ and YZ planes of
the volume resampled to cubic voxels, as Cellpose does with its 2D network (Stringer et
al., Nat Methods 18:100, 2021). In the XZ and YZ views nuclei look different (stretched by
the axial blur): the network learns them from the same painted planes, seen from the side.
A painted XY plane ``z`` is one annotated row of every XZ and YZ view, at the row the
resampling puts it; its classes and eq. 2 weights are those of the XY plane
(:mod:`napari_unet.method.weight_map_3d`), the other rows are not annotated.
"""

from __future__ import annotations

import numpy as np

from napari_unet.inference.volumes import denoise_volume, resize
from napari_unet.method.images import normalize, percentile_normalization

__all__ = ["MAX_VIEWS", "prepared_volume", "side_views"]

#: Largest number of XZ views (and of YZ views) taken from one volume, evenly spaced.
MAX_VIEWS = 32


def prepared_volume(volume, spacing, percentiles) -> np.ndarray:
    """A volume as the network sees it when it segments one: normalised, then denoised.

    The percentiles are those of the whole volume and the denoising is
    :func:`~napari_unet.inference.volumes.denoise_volume`'s default, as in
    :func:`~napari_unet.inference.volumes.iter_segment_volumes` (without rescaling),
    so that a network trained on a volume learns from what it will be given.

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` gray volume, any numeric dtype.
    spacing : sequence of 3 float
        Voxel size ``(dz, dy, dx)``.
    percentiles : (float, float)
        Normalisation percentiles.

    Returns
    -------
    np.ndarray
        float32 ``(Z, Y, X)``.
    """
    volume = np.asarray(volume)
    low, high = percentile_normalization(volume, percentiles)
    return denoise_volume(normalize(volume, low, high), spacing)


def side_views(volume: np.ndarray, targets, spacing) -> list[tuple]:
    """The XZ and YZ views of a painted volume, resampled to cubic voxels.

    Parameters
    ----------
    volume : np.ndarray
        ``(Z, Y, X)`` float32 volume as the network sees it (:func:`prepared_volume`).
    targets : VolumeTargets
        Of the volume's annotation
        (:func:`~napari_unet.method.weight_map_3d.volume_training_weights`).
    spacing : sequence of 3 float
        Voxel size ``(dz, dy, dx)``; Z is resampled to ``round(Z * dz / dy)`` rows.

    Returns
    -------
    list of (np.ndarray, np.ndarray, np.ndarray)
        Per view with an annotated pixel: the normalised ``(1, Z', W)`` float32 image, its
        ``(Z', W)`` uint8 classes and float32 weights (0 off the painted rows). At most
        :data:`MAX_VIEWS` XZ and as many YZ views; none when the volume resamples to
        fewer than 2 rows.
    """
    volume = np.asarray(volume)
    z, y, x = volume.shape
    dz, dy, _ = spacing
    rows = max(1, round(z * dz / dy))
    if rows < 2 or not targets.targets:
        return []
    side = resize(volume, (rows, y, x))
    classes = np.zeros((rows, y, x), np.uint8)
    weights = np.zeros((rows, y, x), np.float32)
    for plane, parts in sorted(targets.targets.items()):  # where the resampling puts it
        row = min(rows - 1, max(0, round((plane + 0.5) * rows / z - 0.5)))
        classes[row], weights[row] = parts.classes, targets.weights[plane]
    views = []
    for axis, n in ((1, y), (2, x)):
        step = max(1, -(-n // MAX_VIEWS))
        for i in range(step // 2, n, step):
            view_weights = np.take(weights, i, axis=axis)
            if view_weights.any():
                image = np.ascontiguousarray(np.take(side, i, axis=axis), np.float32)
                views.append((image[None], np.take(classes, i, axis=axis), view_weights))
    return views
