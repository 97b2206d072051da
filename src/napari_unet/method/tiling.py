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

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_unet.method.folded_network import FoldedUNet, fold_for_inference
from napari_unet.method.images import check_normalization, network_input_shape, to_float32
from napari_unet.method.network import UNet
from napari_unet.runtime.devices import (
    auto_batch_size,
    auto_tile_shape,
    precision_name,
    resolve_device,
    resolve_precision,
)
from napari_unet.runtime.progress import run_to_completion


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


# -- input -------------------------------------------------------------------------------


def _check_network_input(image, model: UNet):
    """Check the model type and the image; return the image and its ``(Y, X)``."""
    if not isinstance(model, UNet):
        raise ValueError(
            f"model must be a UNet (load one with napari_unet.load_model), got {model!r}"
        )
    return network_input_shape(image, model.config.in_channels)


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


def _inference_copy(model: UNet, device: torch.device, dtype: torch.dtype) -> FoldedUNet:
    """The prediction network of ``model`` on ``device`` in ``dtype``, channels-last.

    Batch norm folded into the convolutions, no copy-and-crop concatenation, ReLU fused
    on a CPU (:func:`~napari_unet.folded_network.fold_for_inference`): the same function,
    1.3x faster on a 2-core CPU (docs/benchmarks.md). channels-last: the oneDNN (CPU)
    and cuDNN kernels for it are the fastest (1.5x on a CPU in float32, measured).
    """
    return fold_for_inference(model, device, dtype)


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
        output of at most ``MAX_AUTO_TILE_OUTPUT`` pixels (768 on a CPU).
    batch_size : int, optional
        Tiles per forward pass. ``None``: as many as fit in the memory share, on a CPU
        no more pixels than one automatic tile, on a GPU at most 16.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``
        (:func:`~napari_unet.runtime.devices.resolve_device`).
    precision : str
        ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``
        (:func:`~napari_unet.runtime.devices.resolve_precision`). float32 reproduces
        :func:`napari_unet.testing.predict_whole` to ~1e-6; in bfloat16 or float16
        the network's weights and activations are in that type, and the softmax is
        computed in float32.
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
    image, image_shape = _check_network_input(image, model)
    classes = _check_classes(output_classes, model)
    normalization = check_normalization(normalization)
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    if tile_shape is None:
        tile_shape = auto_tile_shape(model, torch_device, dtype)
    plan = plan_tiles(image_shape, model, tile_shape)
    if batch_size is None:
        batch_size = auto_batch_size(plan.tile_shape, plan.n_tiles, model, torch_device, dtype)
    elif isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)

    network = _inference_copy(model, torch_device, dtype)
    class_index = torch.tensor(classes, device=torch_device)
    probabilities = np.empty((len(classes), *image_shape), dtype=np.float32)
    (tile_y, tile_x), (step_y, step_x), halo = plan.tile_shape, plan.step, plan.halo
    size_y, size_x = image_shape
    device_name = str(torch_device)
    dtype_name = precision_name(dtype)
    for start in range(0, plan.n_tiles, batch_size):
        origins = plan.origins[start : start + batch_size]
        tiles = np.stack(
            [
                to_float32(
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
            dtype_name,
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
