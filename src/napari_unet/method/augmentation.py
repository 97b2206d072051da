"""Data augmentation of Ronneberger et al. 2015, Sec. 3.1.

"We generate smooth deformations using random displacement vectors on a coarse 3 by 3
grid. The displacements are sampled from a Gaussian distribution with 10 pixels
standard deviation. Per-pixel displacements are then computed using bicubic
interpolation." Together with shifts, rotations, flips, a mild scale change and gray
value variations, all geometric transforms are composed into one sampling grid, so each
training patch is interpolated exactly once (image: linear, with mirrored context
outside the image; target and weights: nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class AugmentationConfig:
    """Settings of the random augmentation.

    Attributes
    ----------
    elastic_sigma : float
        Standard deviation (pixels) of the random displacements on the coarse grid;
        the paper uses 10. 0 disables elastic deformation.
    elastic_grid : int
        Points per axis of the coarse displacement grid (paper: 3).
    rotation : bool
        Random rotation by any angle.
    flip : bool
        Random mirror flip.
    scale_range : (float, float)
        Range of a random isotropic zoom (log-uniform). ``(1, 1)`` disables it.
    contrast_range : (float, float)
        Range of a random gain applied to the normalised image.
    brightness : float
        Largest random offset added to the normalised image.
    noise : float
        Largest standard deviation of added Gaussian noise (normalised units).
    """

    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    rotation: bool = True
    flip: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    contrast_range: tuple[float, float] = (0.7, 1.4)
    brightness: float = 0.15
    noise: float = 0.03

    def to_dict(self) -> dict:
        """Return the settings as a JSON-serialisable dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def elastic_displacement(
    shape: tuple[int, int], sigma: float, grid: int, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random displacement field (paper Sec. 3.1).

    Parameters
    ----------
    shape : (int, int)
        ``(Y, X)`` of the field, pixels.
    sigma : float
        Standard deviation of the displacements on the coarse grid, pixels.
    grid : int
        Coarse grid points per axis (>= 2).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    np.ndarray
        ``(2, Y, X)`` float32 displacements in pixels (dy, dx), bicubic interpolation of
        the ``(2, grid, grid)`` Gaussian samples.
    """
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    # Bicubic spline interpolation is a tensor product, linear in the coarse samples:
    # field = U @ coarse @ V.T with U, V the 1D interpolation weights of each axis (the
    # same ``map_coordinates`` applied to unit vectors). Equal to interpolating the 2D
    # field with ``map_coordinates`` directly, 50x faster for a 284-pixel tile.
    rows, columns = _bicubic_weights(shape[0], grid), _bicubic_weights(shape[1], grid)
    return np.einsum("yi,cij,xj->cyx", rows, coarse, columns).astype(np.float32)


@lru_cache(maxsize=16)
def _bicubic_weights(size: int, grid: int) -> np.ndarray:
    """Bicubic interpolation weights of one axis, ``(size, grid)``, read-only, cached.

    Row ``k`` interpolates a ``grid``-point axis at point ``k`` of ``size`` points evenly
    spaced from the first to the last grid point.
    """
    coords = np.linspace(0, grid - 1, size, dtype=np.float32)[None]
    weights = np.stack(
        [ndi.map_coordinates(unit, coords, order=3, mode="nearest") for unit in np.eye(grid)],
        axis=1,
    )
    weights.flags.writeable = False
    return weights


def sampling_grid(
    center: tuple[float, float],
    shape: tuple[int, int],
    config: AugmentationConfig | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Source coordinates of a randomly transformed patch.

    Parameters
    ----------
    center : (float, float)
        Patch centre in source pixel coordinates (y, x).
    shape : (int, int)
        ``(Y, X)`` of the patch, pixels.
    config : AugmentationConfig or None
        ``None``: no geometric transform (an axis-aligned crop).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    np.ndarray
        ``(2, Y, X)`` float32 source coordinates (y, x) for every patch pixel.
    """
    offsets = np.stack(
        np.meshgrid(
            np.arange(shape[0], dtype=np.float32) - (shape[0] - 1) / 2,
            np.arange(shape[1], dtype=np.float32) - (shape[1] - 1) / 2,
            indexing="ij",
        )
    )
    if config is not None:
        matrix = np.eye(2)
        if config.rotation:
            angle = rng.uniform(0, 2 * np.pi)
            c, s = np.cos(angle), np.sin(angle)
            matrix = np.array([[c, -s], [s, c]])
        if config.flip and rng.random() < 0.5:
            matrix = matrix @ np.diag([1.0, -1.0])
        lo, hi = config.scale_range
        if hi > lo:
            matrix = matrix * np.exp(rng.uniform(np.log(lo), np.log(hi)))
        offsets = np.einsum("ij,jyx->iyx", matrix.astype(np.float32), offsets)
        if config.elastic_sigma > 0:
            offsets += elastic_displacement(shape, config.elastic_sigma, config.elastic_grid, rng)
    offsets[0] += center[0]
    offsets[1] += center[1]
    return offsets


def crop_grid(grid: np.ndarray, border: int) -> np.ndarray:
    """Central part of a ``(2, Y, X)`` sampling grid without ``border`` pixels per side."""
    if border == 0:
        return grid
    return grid[:, border:-border, border:-border]


def warp_image(image: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sample a ``(C, Y, X)`` float image at ``grid`` (linear, mirrored outside)."""
    return np.stack(
        [ndi.map_coordinates(c, grid, order=1, mode="mirror", output=np.float32) for c in image]
    )


def warp_labels(labels: np.ndarray, grid: np.ndarray, fill=0) -> np.ndarray:
    """Sample a ``(Y, X)`` label or weight image at ``grid`` (nearest, ``fill`` outside)."""
    return ndi.map_coordinates(labels, grid, order=0, mode="constant", cval=fill)


def augment_intensity(
    patch: np.ndarray, config: AugmentationConfig, rng: np.random.Generator
) -> np.ndarray:
    """Random gain, offset and Gaussian noise on a normalised float32 patch."""
    lo, hi = config.contrast_range
    gain = np.exp(rng.uniform(np.log(lo), np.log(hi))) if hi > lo else 1.0
    offset = rng.uniform(-config.brightness, config.brightness) if config.brightness else 0.0
    patch = patch * np.float32(gain) + np.float32(offset)
    if config.noise > 0:
        patch = patch + rng.normal(0, rng.uniform(0, config.noise), patch.shape).astype(np.float32)
    return patch.astype(np.float32, copy=False)
