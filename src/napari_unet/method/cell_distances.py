"""Distances to the two nearest cells, ``d1`` and ``d2`` of eq. 2, in 2D or 3D.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, eq. 2 weighs a background pixel by the distances ``d1`` and
``d2`` to the borders of the nearest and second-nearest cell. Used by the 2D map
(:mod:`napari_unet.method.weight_map`) and the volume map
(:mod:`napari_unet.method.weight_map_3d`), whose voxels may be anisotropic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["two_nearest_cell_distances"]


def two_nearest_cell_distances(
    instances: np.ndarray, reach: float, sampling=None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1 <= d2`` to the two nearest cells, exact within ``reach``.

    ``d_i(x)`` is the Euclidean distance from ``x`` to the nearest pixel of cell ``i``
    (``distance_transform_edt(instances != i, sampling=sampling)``: 0 on the cell, one
    pixel step next to it). Each cell's transform is computed only in its bounding box
    grown by ``floor(reach / sampling[a])`` pixels along axis ``a``: a pixel outside is
    farther than ``reach`` from the cell, so wherever the true ``d2 <= reach`` both
    distances are exact; elsewhere ``d2`` (and possibly ``d1``) may be ``inf`` or larger
    than the truth.

    Parameters
    ----------
    instances : np.ndarray
        Integer cell ids, any number of dimensions (``(Y, X)`` or ``(Z, Y, X)``), 0 = no
        cell.
    reach : float
        Largest distance that must be exact, in the units of ``sampling``.
    sampling : sequence of float, optional
        Size of a pixel along every axis (e.g. ``(dz / dx, 1, 1)`` for a volume measured
        in in-plane pixels); ``None``: 1 along every axis.

    Returns
    -------
    (np.ndarray, np.ndarray)
        float64 ``d1`` and ``d2``, the shape of ``instances``.
    """
    sampling = (1.0,) * instances.ndim if sampling is None else tuple(float(s) for s in sampling)
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    margins = [math.floor(reach / s) for s in sampling]
    if instances.size and instances.max() > instances.size:
        # sparse huge ids: renumber 1..n so find_objects does not list ~max(id) boxes
        cells = instances > 0
        _, inverse = np.unique(instances[cells], return_inverse=True)
        instances = np.zeros_like(instances)
        instances[cells] = inverse + 1
    for index, box in enumerate(ndi.find_objects(instances)):
        if box is None:
            continue
        window = tuple(
            slice(max(s.start - m, 0), min(s.stop + m, n))
            for s, m, n in zip(box, margins, instances.shape, strict=True)
        )
        d = ndi.distance_transform_edt(instances[window] != index + 1, sampling=sampling)
        d1_window = d1[window]
        d2_window = d2[window]
        np.minimum(d2_window, np.maximum(d1_window, d), out=d2_window)
        np.minimum(d1_window, d, out=d1_window)
    return d1, d2
