"""Input images: validation, RGB conversion, planes of stacks, percentile normalisation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Default normalisation percentiles (low, high), as in CSBDeep/StarDist.
DEFAULT_PERCENTILES = (1.0, 99.8)
#: Largest number of pixels read to estimate percentiles of a huge (lazy) image.
_PERCENTILE_SAMPLE = 4_000_000


@dataclass(frozen=True)
class ImageLayout:
    """How an input array maps onto 2D planes.

    Attributes
    ----------
    leading_shape : tuple of int
        Shape of the axes iterated plane by plane (``()`` for a 2D image, ``(Z,)`` for
        ``"ZYX"``, ``(T, Z)`` for ``"TZYX"``).
    spatial_shape : tuple of int
        ``(Y, X)`` of every plane.
    rgb : bool
        Whether the last axis holds RGB(A) channels.
    """

    leading_shape: tuple[int, ...]
    spatial_shape: tuple[int, int]
    rgb: bool

    @property
    def n_planes(self) -> int:
        """Number of 2D planes."""
        return int(np.prod(self.leading_shape, dtype=np.int64))

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of the label image for this input: the input's shape without RGB."""
        return (*self.leading_shape, *self.spatial_shape)


def _is_array_like(image) -> bool:
    return hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "__getitem__")


def image_layout(image, rgb: bool | None = None) -> ImageLayout:
    """Check an input image and describe its planes.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` grayscale, ``(Y, X, 3|4)`` RGB(A), or a stack ``(..., Y, X)`` /
        ``(..., Y, X, 3|4)`` processed plane by plane. Any integer, boolean or float
        dtype; numpy, dask or zarr arrays (read lazily).
    rgb : bool, optional
        Whether the last axis is RGB(A). ``None`` guesses as napari does: a last axis of
        length 3 or 4 on an array of at least 3 dimensions.

    Returns
    -------
    ImageLayout

    Raises
    ------
    ValueError
        If the image is empty, has fewer than 2 spatial dimensions, a non-numeric
        dtype, or (``rgb=True``) no channel axis of length 3 or 4.
    """
    if not _is_array_like(image):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"image has dtype {dtype}; expected an integer or float image")
    if rgb is None:
        rgb = len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4
    if rgb and (len(shape) < 3 or shape[-1] not in (3, 4)):
        raise ValueError(
            f"image of shape {shape} is not RGB(A): its last axis must have length 3 or 4"
        )
    spatial_ndim_end = len(shape) - 1 if rgb else len(shape)
    if spatial_ndim_end < 2:
        raise ValueError(
            f"image has shape {shape}; expected a 2D image (Y, X), an RGB image (Y, X, 3) or a "
            "stack of them (..., Y, X)"
        )
    spatial = shape[spatial_ndim_end - 2 : spatial_ndim_end]
    if 0 in shape:
        raise ValueError(f"image is empty (shape {shape})")
    return ImageLayout(shape[: spatial_ndim_end - 2], (spatial[0], spatial[1]), bool(rgb))


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (ITU-R BT.709), alpha ignored.

    Parameters
    ----------
    rgb : np.ndarray
        ``(Y, X, 3|4)``, any numeric dtype.

    Returns
    -------
    np.ndarray
        ``(Y, X)`` float32 in the input's units.
    """
    rgb = np.asarray(rgb)
    weights = np.array([0.2125, 0.7154, 0.0721], np.float32)
    return (rgb[..., :3].astype(np.float32) @ weights).astype(np.float32)


def rgb_plane_to_gray(rgb: np.ndarray, invert_bright_background: bool = True) -> np.ndarray:
    """Gray plane of an RGB image, optionally with a bright background inverted.

    Colour images of nuclei are mostly brightfield or H&E stains: dark nuclei on a
    bright background, the opposite of the fluorescence images the default model was
    trained on. With ``invert_bright_background`` (the default) the luminance
    (:func:`rgb_to_gray`) is inverted when its median (the background, as cells cover
    less than half of a field) lies in the upper half of its 1–99 % intensity range,
    so that cells come out bright. Grayscale images are never inverted.

    Parameters
    ----------
    rgb : np.ndarray
        ``(Y, X, 3|4)``, any numeric dtype.
    invert_bright_background : bool
        Invert a plane whose background is bright; ``False``: plain luminance.

    Returns
    -------
    np.ndarray
        ``(Y, X)`` float32.
    """
    gray = rgb_to_gray(rgb)
    if not invert_bright_background:
        return gray
    low, median, high = np.percentile(_sample(gray), (1, 50, 99))
    if median > (low + high) / 2:
        gray = np.float32(high) - gray
    return gray


def iter_planes(
    image, layout: ImageLayout, invert_bright_background: bool = True
) -> Iterator[tuple[tuple[int, ...], object]]:
    """Yield ``(index, plane)`` for every 2D plane; RGB planes are converted to gray.

    Grayscale planes are returned as views/lazy slices of ``image`` (dask and zarr stay
    lazy); RGB planes are read and converted with :func:`rgb_plane_to_gray`, which
    inverts a bright background when ``invert_bright_background`` is set.
    """
    if not _is_array_like(image):  # e.g. a list of lists
        image = np.asarray(image)
    for index in np.ndindex(*layout.leading_shape):
        plane = image[index] if index else image
        if layout.rgb:
            plane = rgb_plane_to_gray(np.asarray(plane), invert_bright_background)
        yield index, plane


def _sample(plane) -> np.ndarray:
    """Read a plane, or a regular subsample of it when it is huge."""
    y, x = plane.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(y * x / _PERCENTILE_SAMPLE))))
    return np.asarray(plane[..., ::step, ::step])


def percentile_normalization(
    plane, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[float, float]:
    """Intensities ``(low, high)`` that normalisation maps to 0 and 1.

    ``x_normalized = (x - low) / (high - low)``. Percentiles make the network
    independent of the microscope's gain and offset; on images with more than 4
    megapixels they are estimated from a regular subsample.

    Parameters
    ----------
    plane : array-like
        ``(Y, X)`` or ``(C, Y, X)`` image, any numeric dtype (numpy, dask, zarr).
    percentiles : (float, float)
        Low and high percentiles in [0, 100].

    Returns
    -------
    (float, float)
        ``low < high``; for a constant image ``high = low + 1``.

    Raises
    ------
    ValueError
        If the image contains NaN or infinite values (checked on every pixel of a
        numpy array, on the subsample of a lazy one), or its range is too wide for
        ``high - low`` to be finite.
    """
    values = _sample(plane)
    if values.dtype == bool:  # percentiles need arithmetic; False/True become 0/1
        values = values.view(np.uint8)
    # all pixels of an in-memory image; the sample of a lazy (dask, zarr) one
    checked = plane if isinstance(plane, np.ndarray) else values
    if checked.dtype.kind == "f" and not np.isfinite(checked).all():
        raise ValueError("image contains NaN or infinite values; replace them before segmenting")
    low, high = np.percentile(values, percentiles)
    low, high = float(low), float(high)
    if not high > low:
        high = float(values.max()) if float(values.max()) > low else low + 1.0
        if not high > low:  # a constant image of huge values: low + 1 rounds to low
            high = low + abs(low) * 2.0**-20
    if not math.isfinite(high - low):
        raise ValueError(
            f"image intensities span {low:g} to {high:g}, a range too wide to normalise; "
            "rescale the image"
        )
    return low, high


def network_input_shape(image, in_channels: int) -> tuple[object, tuple[int, int]]:
    """Check one plane as network input; return it as an array-like and its ``(Y, X)``.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` (one input channel) or ``(C, Y, X)`` with ``C == in_channels``, any
        real numeric dtype; numpy, dask or zarr (not read).
    in_channels : int
        The network's input channels.

    Raises
    ------
    ValueError
        For another number of axes or channels, an empty image, or a non-real dtype.
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) not in (2, 3) or (len(shape) == 2 and in_channels != 1):
        axes = "(Y, X) or (C, Y, X)" if in_channels == 1 else f"({in_channels}, Y, X)"
        raise ValueError(f"image must have shape {axes}, got {shape}")
    if len(shape) == 3 and shape[0] != in_channels:
        raise ValueError(
            f"image has {shape[0]} channels (axis 0 of {shape}) but the network expects "
            f"{in_channels}"
        )
    if min(shape[-2:]) < 1:
        raise ValueError(f"image is empty: shape {shape}")
    if np.dtype(image.dtype).kind not in "buif":
        raise ValueError(f"image must have a real numeric dtype, got {image.dtype}")
    return image, (shape[-2], shape[-1])


def check_normalization(normalization) -> tuple[float, float] | None:
    """Check a ``(low, high)`` pair (or ``None``); return it as floats.

    Raises
    ------
    ValueError
        If ``low`` and ``high`` are not finite or are equal.
    """
    if normalization is None:
        return None
    low, high = (float(v) for v in normalization)
    if not math.isfinite(high - low) or high == low:
        raise ValueError(
            f"normalization (low, high) must be finite and differ, got {normalization}"
        )
    return low, high


def normalize(plane, low: float, high: float) -> np.ndarray:
    """Return ``(plane - low) / (high - low)`` as float32 ``(…, Y, X)``.

    Computed in float64 for 64-bit inputs (float64 values beyond the float32 range,
    int64 ids beyond its precision), else in float32.

    Raises
    ------
    ValueError
        If a normalised value is NaN or beyond the float32 range.
    """
    plane = np.asarray(plane)
    work = np.float64 if plane.dtype.itemsize > 4 else np.float32
    result = plane.astype(work)  # a copy, normalised in place
    result -= work(low)
    result /= work(high - low)
    result = result.astype(np.float32, copy=False)
    if not np.isfinite(result).all():
        raise ValueError(
            "image contains NaN or infinite values, or values too far from the rest to be "
            "normalised in float32"
        )
    return result


def to_float32(block, normalization: tuple[float, float] | None) -> np.ndarray:
    """A new float32 array: ``normalize(block, low, high)``, or ``block`` as it is.

    The one conversion of network input, for tiles and the whole image alike; a copy,
    so it is safe to modify in place.

    Raises
    ------
    ValueError
        If a value is NaN or infinite (it would spread through the convolutions to the
        whole tile), also after normalisation.
    """
    if normalization is not None:
        return normalize(block, *normalization)
    result = np.array(block, dtype=np.float32)
    if not np.isfinite(result).all():
        raise ValueError("image contains NaN or infinite values; replace them before predicting")
    return result
