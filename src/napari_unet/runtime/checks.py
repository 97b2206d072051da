"""Argument checks shared by the core, each raising a ``ValueError`` that names the problem."""

from __future__ import annotations

import math
import numbers
import reprlib
from numbers import Real

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 40, 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4

#: Estimated bytes per input pixel and first-level channel for one training tile:
#: activations kept for the backward pass on both paths of the U-Net (about 24 values
#: of 4 bytes, summed over the levels) plus the gradients flowing back. Measured on a
#: CPU in float32, 2 tiles of 572x572 with the scratch network (16 channels): 0.86 GiB
#: peak growth, estimated 1.33 GiB, so the check errs on the safe side by ~1.5x.
TRAINING_BYTES_PER_PIXEL_CHANNEL = 128


def short_repr(value, limit: int = 80) -> str:
    """A repr of ``value`` of at most ``limit`` characters, cheap for any input.

    Nested containers are shown to three levels and four items each (:mod:`reprlib`),
    so a value read from an untrusted file (a YAML list that aliases make 10⁹ items
    wide) costs no more to print than a short one.
    """
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int; raise ``ValueError`` unless it is an integer >= 1.

    Booleans and non-whole numbers (``1.5``) are refused; whole floats (``2.0``) pass.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or value != value  # NaN
        or int(value) != value
        or value < 1
    ):
        raise ValueError(f"{name} must be a positive integer, got {short_repr(value)}")
    return int(value)


def check_positive_int_pair(name: str, value) -> tuple[int, int]:
    """Return ``value`` as ``(int, int)``; each must be an integer >= 1 (pixels)."""
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be two positive integers (Y, X), got {short_repr(value)}"
        ) from None
    try:
        return check_positive_int(name, first), check_positive_int(name, second)
    except ValueError:
        raise ValueError(
            f"{name} must be two positive integers (Y, X) in pixels, got {short_repr(value)}"
        ) from None


def check_training_memory(model, tile_shape, batch_size: int, device) -> None:
    """Refuse a training tile and batch whose activations cannot fit in memory.

    Parameters
    ----------
    model : UNet
        The network (its ``base_channels`` is used).
    tile_shape : (int, int)
        Spatial input tile shape, pixels.
    batch_size : int
        Tiles per step.
    device : torch.device
        Its free memory (:func:`~napari_unet.runtime.devices.available_memory`) is the budget.

    Raises
    ------
    ValueError
        Naming the estimated need and the free memory, when the estimate exceeds it.
    """
    from napari_unet.runtime.devices import available_memory

    pixels = int(tile_shape[0]) * int(tile_shape[1]) * int(batch_size)
    need = pixels * (model.config.base_channels + 1) * TRAINING_BYTES_PER_PIXEL_CHANNEL
    free = available_memory(device)
    if need > free:
        raise ValueError(
            f"training tiles of {tile_shape[0]}x{tile_shape[1]} pixels, {batch_size} per step, "
            f"would need about {need / 2**30:.1f} GiB of memory but {free / 2**30:.1f} GiB are "
            f"free on {device}: choose a smaller tile_shape or batch_size"
        )


MAX_W0_SIGMA = {"w0": 1e6, "sigma": 1e4}
"""Largest ``w0`` (weight units; the paper uses 10) and ``sigma`` (pixels; the paper uses 5)."""


def check_w0_sigma(w0, sigma) -> tuple[float, float]:
    """Return eq. 2's ``(w0, sigma)`` as floats or raise ``ValueError`` naming the bad one."""
    for name, value, unit in (("w0", w0, "weight units"), ("sigma", sigma, "pixels")):
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name} must be a positive finite number ({unit}), got {value!r}")
        if value > MAX_W0_SIGMA[name]:  # the float32 map (w0) or the reach (sigma) overflows
            raise ValueError(
                f"{name} must be at most {MAX_W0_SIGMA[name]:g} ({unit}), got {value!r}"
            )
    return float(w0), float(sigma)
