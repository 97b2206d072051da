"""Overlap-tile prediction (Ronneberger, Fischer & Brox 2015, Fig. 2).

The U-Net uses unpadded convolutions, so its output is smaller than its input by
``halo`` pixels on every side. An image of any size is predicted tile by tile: each
tile's input is the output region it produces plus the halo around it, and where
that context lies outside the image it is filled by mirroring the image. The output
regions of neighbouring tiles abut exactly, so the result is the same as one forward
pass over the whole (mirror-padded) image.

Two details make that equality exact:

- tile origins lie on the ``pooling_factor`` grid (16 for the paper's depth of 5), so
  every 2×2 max-pooling sees the same pixel pairs in a tile as in the whole image;
- the mirrored value at a coordinate outside the image does not depend on how far
  the padding reaches (:func:`mirror_index`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_unet.devices import available_memory, resolve_device, resolve_precision
from napari_unet.generators import run_to_completion
from napari_unet.network import UNet

#: Largest tile *output* side chosen automatically, in pixels, per device type. For depth
#: 5 a 1024 px output needs a 1212 px input (40 % more pixels); 2048 px would cut that to
#: 19 %, but on a CPU it quadruples the wait between progress records (and cancellation).
MAX_AUTO_TILE_OUTPUT = {"cpu": 1024, "cuda": 2048, "mps": 2048}

#: Bytes of activations per input pixel, per first-level channel and per byte of the
#: element type, for one tile in inference (peak). Measured ~5.3 on a CPU in float32
#: (channels-last); 8 leaves room for allocator slack and convolution workspaces.
_ACTIVATION_BYTES_FACTOR = 8

#: Share of the free memory one batch of tiles may use.
_MEMORY_SHARE = {"cpu": 0.25, "cuda": 0.5, "mps": 0.25}


@dataclass(frozen=True)
class TileProgress:
    """Progress of an overlap-tile prediction, yielded after each batch of tiles.

    Attributes
    ----------
    tile_index : int
        Number of tiles done so far (1-based: ``n_tiles`` after the last batch).
    n_tiles : int
        Number of tiles in the image.
    seconds : float
        Time since the prediction started, in seconds.
    device : str
        Device the network runs on, e.g. ``"cpu"`` or ``"cuda"``.
    precision : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """

    tile_index: int
    n_tiles: int
    seconds: float
    device: str
    precision: str


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image lie.

    Attributes
    ----------
    image_shape : (int, int)
        Spatial image shape ``(Y, X)`` in pixels.
    tile_shape : (int, int)
        Spatial input shape of every tile, a valid U-Net input shape.
    step : (int, int)
        Distance between neighbouring tile origins; each tile keeps the first ``step``
        pixels of its output (a multiple of the pooling factor, or the image size when
        one tile covers the axis).
    origins : tuple of (int, int)
        Output origin of every tile in image pixels, row by row. The tile's input
        starts ``halo`` pixels before it.
    halo : int
        Context pixels on each side of a tile's output.
    """

    image_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    step: tuple[int, int]
    origins: tuple[tuple[int, int], ...]
    halo: int

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.origins)


def mirror_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map coordinates outside ``[0, size)`` into it by mirroring at the image border.

    The reflection does not repeat the edge pixel (``... 2 1 | 0 1 2 ... n-1 | n-2 ...``,
    NumPy's ``"reflect"``) and continues periodically (period ``2 (size - 1)``), so
    padding may be wider than the image and the value at a coordinate does not depend
    on the pad width. A 1-pixel axis repeats its only pixel. This is the extrapolation
    of the paper's Fig. 2.

    Parameters
    ----------
    index : numpy.ndarray of int
        Coordinates in pixels, any shape, may be negative or ``>= size``.
    size : int
        Length of the axis in pixels, at least 1.

    Returns
    -------
    numpy.ndarray of int
        Same shape as ``index``, values in ``[0, size)``.

    Raises
    ------
    ValueError
        If ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"axis size must be at least 1, got {size}")
    index = np.asarray(index, dtype=np.int64)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index < size, index, period - index)


def _plan_axis(size: int, max_tile: int, model: UNet) -> tuple[int, int, int]:
    """Tile input size, step and number of tiles along one axis."""
    p = model.pooling_factor
    tile = model.valid_input_shape((max_tile,))[0]
    out = model.valid_output_shape((tile,))[0]
    if out < p:  # the step must hold at least one pooling cell
        tile = model.input_shape_for_output((p,))[0]
        out = model.valid_output_shape((tile,))[0]
    if out >= size:  # one tile, no larger than this image needs
        return model.input_shape_for_output((size,))[0], size, 1
    n = math.ceil(size / (out // p * p))
    step = math.ceil(math.ceil(size / n) / p) * p  # balance the tiles, keep the grid
    return model.input_shape_for_output((step,))[0], step, math.ceil(size / step)


def plan_tiles(image_shape: tuple[int, int], model: UNet, tile_shape: tuple[int, int]) -> TilePlan:
    """Place overlap tiles over an image (paper, Fig. 2).

    Parameters
    ----------
    image_shape : (int, int)
        Spatial image shape ``(Y, X)`` in pixels.
    model : UNet
        The network (its halo, pooling factor and valid shapes are used).
    tile_shape : (int, int)
        Largest spatial input tile shape in pixels. It is rounded up to the next valid
        input shape, and further up if its output would be smaller than the pooling
        factor. The tiles used may be smaller: as small as the image needs on an axis
        one tile covers, and otherwise split evenly (on the pooling grid) into the
        fewest tiles that fit.

    Returns
    -------
    TilePlan

    Raises
    ------
    ValueError
        If a shape is not two positive integers.
    """
    image_shape = _check_pair(image_shape, "image_shape")
    tile_shape = _check_pair(tile_shape, "tile_shape")
    axes = [_plan_axis(s, t, model) for s, t in zip(image_shape, tile_shape, strict=True)]
    (tile_y, step_y, n_y), (tile_x, step_x, n_x) = axes
    origins = tuple((iy * step_y, ix * step_x) for iy in range(n_y) for ix in range(n_x))
    return TilePlan(image_shape, (tile_y, tile_x), (step_y, step_x), origins, model.halo)


def _check_pair(shape, name: str) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
        raise ValueError(f"{name} must be two positive integers (Y, X), got {shape!r}")
    return int(shape[0]), int(shape[1])


# -- memory ------------------------------------------------------------------------------


def _bytes_per_pixel(model: UNet, dtype: torch.dtype) -> int:
    """Estimated peak activation bytes per input pixel of one tile."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return _ACTIVATION_BYTES_FACTOR * itemsize * (model.config.base_channels + 1)


def auto_tile_shape(model: UNet, device: torch.device, dtype: torch.dtype) -> tuple[int, int]:
    """Largest square input tile that fits in a share of the device's free memory.

    Parameters
    ----------
    model : UNet
        The network (its width, halo and valid shapes are used).
    device : torch.device
        Where it runs; a share of its free memory is the budget (``available_memory``).
    dtype : torch.dtype
        Precision the network runs in.

    Returns
    -------
    (int, int)
        A valid input shape whose output side is a multiple of the pooling factor, at
        most ``MAX_AUTO_TILE_OUTPUT[device.type]`` and at least the pooling factor.
    """
    budget = _MEMORY_SHARE.get(device.type, 0.25) * available_memory(device)
    side = math.isqrt(int(budget // _bytes_per_pixel(model, dtype)))
    p = model.pooling_factor
    cap = MAX_AUTO_TILE_OUTPUT.get(device.type, 1024)
    out = max(p, min(cap, side - 2 * model.halo) // p * p)
    return model.input_shape_for_output((out, out))


def _auto_batch_size(plan: TilePlan, model: UNet, device: torch.device, dtype: torch.dtype) -> int:
    """Choose the tiles per forward pass: as many as fit in the memory share.

    On a CPU, no more pixels per batch than one automatic tile: batches only help small
    tiles there, and long batches delay progress and cancellation. At most 16 on a GPU.
    """
    tile_bytes = plan.tile_shape[0] * plan.tile_shape[1] * _bytes_per_pixel(model, dtype)
    budget = _MEMORY_SHARE.get(device.type, 0.25) * available_memory(device)
    batch = max(1, int(budget // tile_bytes))
    if device.type == "cpu":
        largest = auto_tile_shape(model, device, dtype)
        batch = min(batch, max(1, largest[0] * largest[1] // math.prod(plan.tile_shape)))
    else:
        batch = min(batch, 16)
    return min(batch, plan.n_tiles)


# -- input -------------------------------------------------------------------------------


def _check_image(image, model: UNet):
    """Check the image; return it as an array-like, and its spatial shape."""
    if not isinstance(model, UNet):
        raise ValueError(
            f"model must be a UNet (load one with napari_unet.load_model), got {model!r}"
        )
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    channels = model.config.in_channels
    if len(shape) not in (2, 3) or (len(shape) == 2 and channels != 1):
        axes = "(Y, X) or (C, Y, X)" if channels == 1 else f"({channels}, Y, X)"
        raise ValueError(f"image must have shape {axes}, got {shape}")
    if len(shape) == 3 and shape[0] != channels:
        raise ValueError(
            f"image has {shape[0]} channels (axis 0 of {shape}) but the network expects {channels}"
        )
    if min(shape[-2:]) < 1:
        raise ValueError(f"image is empty: shape {shape}")
    if np.dtype(image.dtype).kind not in "buif":
        raise ValueError(f"image must have a real numeric dtype, got {image.dtype}")
    return image, shape[-2:]


def _check_classes(output_classes, model: UNet) -> list[int]:
    n = model.config.n_classes
    if output_classes is None:
        return list(range(n))
    classes = [int(c) for c in output_classes]
    if not classes or any(c < 0 or c >= n for c in classes):
        raise ValueError(
            f"output_classes must be a non-empty list of class indices in 0..{n - 1}, "
            f"got {output_classes!r}"
        )
    return classes


def _check_normalization(normalization) -> tuple[float, float] | None:
    if normalization is None:
        return None
    low, high = (float(v) for v in normalization)
    if not math.isfinite(high - low) or high == low:
        raise ValueError(
            f"normalization (low, high) must be finite and differ, got {normalization}"
        )
    return low, high


def _to_float(block: np.ndarray, normalization: tuple[float, float] | None) -> np.ndarray:
    """``(x - low) / (high - low)`` in float32, the same expression for tiles and whole.

    64-bit inputs are normalised in float64 first (their values may lie beyond the
    float32 range). A NaN or infinite value would spread through the convolutions to
    the whole tile, so it is refused.
    """
    block = np.asarray(block)
    if normalization is not None and block.dtype.itemsize > 4:
        low, high = normalization
        block = ((block.astype(np.float64) - low) / (high - low)).astype(np.float32)
    else:
        block = np.array(block, dtype=np.float32)  # always a copy: safe to modify in place
        if normalization is not None:
            low, high = normalization
            block -= np.float32(low)
            block /= np.float32(high - low)
    if not np.isfinite(block).all():
        raise ValueError(
            "image contains NaN or infinite values (or values beyond the float32 range "
            "after normalisation); replace them before predicting"
        )
    return block


def _read_mirrored(image, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``image[..., ys, xs]`` (mirror-mapped coordinates) as ``(C, len(ys), len(xs))``.

    Reads only the bounding box of the coordinates, so dask and zarr arrays stay lazy.
    """
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    lead = (slice(None),) * (len(image.shape) - 2)
    block = np.asarray(image[(*lead, slice(y0, y1), slice(x0, x1))])
    inside_y = y1 - y0 == len(ys) and ys[0] == y0 and bool(np.all(np.diff(ys) == 1))
    inside_x = x1 - x0 == len(xs) and xs[0] == x0 and bool(np.all(np.diff(xs) == 1))
    if not (inside_y and inside_x):
        block = block[..., (ys - y0)[:, None], (xs - x0)[None, :]]
    return block if block.ndim == 3 else block[None]


def _inference_copy(model: UNet, device: torch.device, dtype: torch.dtype) -> UNet:
    """Copy the network to ``device`` and ``dtype``, channels-last, in eval mode."""
    network = copy.deepcopy(model).eval()
    network.requires_grad_(False)
    # channels-last: the oneDNN (CPU) and cuDNN kernels for it are the fastest (1.5x
    # on a CPU in float32, measured); the result is the same up to rounding.
    return network.to(device=device, dtype=dtype, memory_format=torch.channels_last)


# -- prediction --------------------------------------------------------------------------


def iter_predict_tiled(
    image,
    model: UNet,
    *,
    normalization: tuple[float, float] | None = None,
    tile_shape: tuple[int, int] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    output_classes: Sequence[int] | None = None,
) -> Generator[TileProgress, None, np.ndarray]:
    """Predict class probabilities tile by tile (overlap-tile strategy, paper Fig. 2).

    A generator: it yields a :class:`TileProgress` after each batch of tiles and
    returns the probabilities (``StopIteration.value``; see :func:`predict_tiled`).
    Stopping the iteration early cancels the prediction. The arguments are checked
    when the iteration starts.

    Parameters
    ----------
    image : array-like
        One plane ``(Y, X)`` or ``(C, Y, X)`` with ``C`` the network's input channels,
        any real numeric dtype, any size (also smaller than a tile, down to 1×1). A
        numpy array, or anything sliceable with a ``shape`` (dask or zarr array): only
        the region each tile needs is read.
    model : UNet
        The network. It is not modified: a copy runs on ``device`` in eval mode.
    normalization : (float, float), optional
        ``(low, high)``: each tile becomes ``(x - low) / (high - low)`` in float32.
        ``None``: the image is used as it is (already normalised), as float32.
    tile_shape : (int, int), optional
        Largest spatial input tile shape in pixels; see :func:`plan_tiles` for how it is
        rounded up to a valid shape and reduced to what the image needs. ``None``: the
        largest square tile that fits in a share of the free memory (a quarter of the
        available system memory on a CPU, half the free GPU memory on CUDA), with an
        output of at most ``MAX_AUTO_TILE_OUTPUT`` pixels (1024 on a CPU).
    batch_size : int, optional
        Tiles per forward pass. ``None``: as many as fit in the memory share, on a CPU
        no more pixels than one automatic tile, on a GPU at most 16.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``
        (:func:`~napari_unet.devices.resolve_device`).
    precision : str
        ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``
        (:func:`~napari_unet.devices.resolve_precision`). float32 reproduces
        :func:`predict_whole` to ~1e-6; in bfloat16 or float16 the network's weights and
        activations are in that type, and the softmax is computed in float32.
    output_classes : sequence of int, optional
        Class indices to return, e.g. ``(1,)`` for only the foreground of a 2-class
        network; ``None`` returns all classes.

    Yields
    ------
    TileProgress
        After each batch of tiles.

    Returns
    -------
    numpy.ndarray
        ``probabilities``, float32 ``(len(output_classes), Y, X)`` (``(n_classes, Y, X)``
        by default): the softmax over all classes, for the selected classes.

    Raises
    ------
    ValueError
        For a ``model`` that is not a :class:`UNet`, an image of the wrong shape or
        dtype, an empty image, NaN or infinite pixels (a NaN would spread to the whole
        tile), ``high == low``, invalid ``output_classes``, ``tile_shape`` or
        ``batch_size``, or an unknown or unavailable device or precision.
    """
    started = time.perf_counter()
    image, image_shape = _check_image(image, model)
    classes = _check_classes(output_classes, model)
    normalization = _check_normalization(normalization)
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    if tile_shape is None:
        tile_shape = auto_tile_shape(model, torch_device, dtype)
    plan = plan_tiles(image_shape, model, tile_shape)
    if batch_size is None:
        batch_size = _auto_batch_size(plan, model, torch_device, dtype)
    elif isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)

    network = _inference_copy(model, torch_device, dtype)
    class_index = torch.tensor(classes, device=torch_device)
    probabilities = np.empty((len(classes), *image_shape), dtype=np.float32)
    (tile_y, tile_x), (step_y, step_x), halo = plan.tile_shape, plan.step, plan.halo
    size_y, size_x = image_shape
    device_name = str(torch_device)
    precision_name = str(dtype).removeprefix("torch.")
    for start in range(0, plan.n_tiles, batch_size):
        origins = plan.origins[start : start + batch_size]
        tiles = np.stack(
            [
                _to_float(
                    _read_mirrored(
                        image,
                        mirror_index(np.arange(oy - halo, oy - halo + tile_y), size_y),
                        mirror_index(np.arange(ox - halo, ox - halo + tile_x), size_x),
                    ),
                    normalization,
                )
                for oy, ox in origins
            ]
        )
        # Only around the forward pass: inference mode is thread-local state and must not
        # stay switched on in the consumer's code while this generator is suspended.
        with torch.inference_mode():
            batch = torch.from_numpy(tiles).to(torch_device, dtype)
            logits = network(batch.contiguous(memory_format=torch.channels_last))
            kept = logits[:, :, :step_y, :step_x].float().softmax(dim=1)
            kept = kept.index_select(1, class_index).cpu().numpy()
        for (oy, ox), tile_probabilities in zip(origins, kept, strict=True):
            height, width = min(step_y, size_y - oy), min(step_x, size_x - ox)
            probabilities[:, oy : oy + height, ox : ox + width] = tile_probabilities[
                :, :height, :width
            ]
        yield TileProgress(
            start + len(origins),
            plan.n_tiles,
            time.perf_counter() - started,
            device_name,
            precision_name,
        )
    return probabilities


def predict_tiled(image, model: UNet, **options) -> np.ndarray:
    """Predict class probabilities with the overlap-tile strategy (paper Fig. 2).

    Runs :func:`iter_predict_tiled` to the end.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` or ``(C, Y, X)``; see :func:`iter_predict_tiled`.
    model : UNet
        The network (not modified).
    **options
        ``normalization``, ``tile_shape``, ``batch_size``, ``device``, ``precision``,
        ``output_classes``: see :func:`iter_predict_tiled`.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_classes, Y, X)``, or ``(len(output_classes), Y, X)``.

    Raises
    ------
    ValueError
        See :func:`iter_predict_tiled`.
    """
    return run_to_completion(iter_predict_tiled(image, model, **options))


def predict_whole(
    image,
    model: UNet,
    *,
    normalization: tuple[float, float] | None = None,
    device: str | torch.device = "cpu",
    output_classes: Sequence[int] | None = None,
) -> np.ndarray:
    """Predict in one forward pass over the mirror-padded image: the tiling reference.

    The image is extended by mirroring (:func:`mirror_index`) by ``halo`` pixels before
    and ``halo`` plus what makes a valid input shape after, and run through the network
    in float32 in the default (contiguous) memory layout. :func:`iter_predict_tiled`
    with ``precision="float32"`` gives the same result up to rounding.

    Parameters
    ----------
    image : array-like
        ``(Y, X)`` or ``(C, Y, X)``, read whole into memory.
    model : UNet
        The network (not modified: a float32 copy in eval mode runs).
    normalization : (float, float), optional
        ``(low, high)`` as in :func:`iter_predict_tiled`.
    device : str or torch.device
        Where the forward pass runs.
    output_classes : sequence of int, optional
        Class indices to return; all when ``None``.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(output_classes), Y, X)`` softmax probabilities.

    Raises
    ------
    ValueError
        As :func:`iter_predict_tiled`.
    """
    image, (size_y, size_x) = _check_image(image, model)
    classes = _check_classes(output_classes, model)
    normalization = _check_normalization(normalization)
    torch_device = resolve_device(device)
    halo = model.halo
    input_y, input_x = model.input_shape_for_output((size_y, size_x))
    ys = mirror_index(np.arange(-halo, input_y - halo), size_y)
    xs = mirror_index(np.arange(-halo, input_x - halo), size_x)
    array = np.asarray(image)
    array = array[..., ys[:, None], xs[None, :]]
    padded = _to_float(array if array.ndim == 3 else array[None], normalization)
    network = copy.deepcopy(model).eval().to(device=torch_device, dtype=torch.float32)
    with torch.inference_mode():
        logits = network(torch.from_numpy(padded[None]).to(torch_device))
        probabilities = logits.float().softmax(dim=1)[0, classes, :size_y, :size_x]
        return probabilities.cpu().numpy()
