"""Compute devices and numeric precision for training and prediction."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from napari_unet.method.network import UNet

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")


def available_devices() -> list[str]:
    """Devices usable on this machine, best first, always ending with ``"cpu"``.

    Returns
    -------
    list of str
        A subset of ``["cuda", "mps", "cpu"]``.
    """
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (the best available: CUDA, then Apple MPS, then CPU), ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the name is unknown or the device is not available on this machine.
    """
    name = str(device).lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if kind not in available_devices():
        raise ValueError(
            f"device {device!r} is not available on this machine; available: "
            f"{', '.join(available_devices())}"
        )
    return torch.device(name)


def cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (Linux); empty elsewhere.

    Returns
    -------
    frozenset of str
        E.g. ``{"avx512f", "avx512_bf16", "amx_bf16", ...}``. A flag is listed only when
        the kernel (and hypervisor) lets programs use the feature.
    """
    return frozenset(_cpuinfo_field(("flags", "Features")).split())


def cpu_vendor() -> str:
    """The CPU vendor from ``/proc/cpuinfo`` (Linux), e.g. ``"AuthenticAMD"``; ``""`` elsewhere."""
    return _cpuinfo_field(("vendor_id",)).strip()


def _cpuinfo_field(names: tuple[str, ...]) -> str:
    """The value of the first ``/proc/cpuinfo`` line starting with one of ``names``."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            for line in file:
                if line.startswith(names):
                    return line.split(":", 1)[1]
    except OSError:
        pass
    return ""


def _torch_cpu_check(name: str) -> bool | None:
    """Call a private ``torch.cpu._is_*_supported`` check; None if this torch lacks it."""
    check = getattr(torch.cpu, name, None)
    if check is None:
        return None
    try:
        return bool(check())
    except RuntimeError:
        return None


def cpu_has_amx() -> bool:
    """Whether the CPU has usable AMX tiles with bfloat16 (Intel Sapphire Rapids and later)."""
    supported = _torch_cpu_check("_is_amx_tile_supported")
    if supported is not None:
        return supported
    return "amx_bf16" in cpu_flags()


def cpu_has_bf16() -> bool:
    """Whether the CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16)."""
    supported = _torch_cpu_check("_is_avx512_bf16_supported")
    flags = cpu_flags()  # "bf16": 64-bit Arm (Graviton 3 and later)
    return bool(supported) or cpu_has_amx() or bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)


def cpu_prefers_bf16() -> bool:
    """Whether bfloat16 runs the U-Net faster than float32 on this CPU.

    True with AMX (Intel Sapphire Rapids and later: ~3.5x), and with AVX512-BF16 on an
    AMD CPU (Zen 4 and later): on a 2-core AMD EPYC (Zen 4) one 876² prediction tile took
    0.153 s in bfloat16 against 0.321 s in float32, and 60 fine-tuning steps 6.4-6.9 s
    against 10.2-10.3 s (docs/benchmarks.md, "Round 3, session 5"). Not with AVX512-BF16
    alone on an Intel CPU: on an Emerald Rapids virtual machine without AMX, a 64→64-channel
    3×3 convolution ran at ~240 GFLOP/s in float32 but only ~120-170 GFLOP/s in bfloat16.
    """
    if not cpu_has_bf16():
        return False
    return cpu_has_amx() or (cpu_vendor() == "AuthenticAMD" and "avx512_bf16" in cpu_flags())


def cpu_has_fp16() -> bool:
    """Whether the CPU has float16 arithmetic (AVX512-FP16, AMX-FP16 or Arm FP16)."""
    supported = _torch_cpu_check("_is_amx_fp16_supported")
    return bool(supported) or bool({"avx512_fp16", "amx_fp16", "asimdhp"} & cpu_flags())


def _cuda_supports_bf16(device: torch.device) -> bool:
    """Native (not emulated) bfloat16 on a CUDA device: compute capability 8.0 or newer."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """Choose the floating-point type the network runs in on a device.

    Parameters
    ----------
    precision : str or torch.dtype
        ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or that torch.dtype).
    device : str or torch.device
        The device the network runs on (resolved with :func:`resolve_device`).

    Returns
    -------
    torch.dtype
        ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.

    Raises
    ------
    ValueError
        If the name is unknown, or the device cannot compute in that precision: bfloat16
        on a CPU without AVX512-BF16/AMX or on a CUDA GPU older than compute capability
        8.0 (it would be emulated, slower than float32); float16 on a CPU without
        AVX512-FP16/AMX-FP16; bfloat16 on an MPS device that lacks it (before macOS 14).

    Notes
    -----
    ``"auto"`` picks the fastest precision that is safe for U-Net inference:

    - CPU: bfloat16 where it is faster (:func:`cpu_prefers_bf16`: AMX, or AVX512-BF16 on
      an AMD CPU); float32 otherwise.
    - CUDA: bfloat16 on compute capability ≥ 8.0 (Ampere and later: same range as
      float32, tensor cores); float16 on 7.x (Volta, Turing: tensor cores); float32
      on older GPUs, where float16 arithmetic is slow.
    - MPS: float32. float16 is faster on Apple GPUs but risks overflow for networks
      with large activations; ask for it explicitly.

    ``"float32"`` is the reference. On CUDA, PyTorch's ``torch.backends.cudnn.allow_tf32``
    setting (on by default) still lets cuDNN use TF32 for float32 convolutions.
    """
    name = str(precision).lower().removeprefix("torch.")  # also accept a torch.dtype
    if name not in PRECISION_CHOICES:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}"
        )
    device = resolve_device(device)
    if name == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_prefers_bf16() else torch.float32
        if device.type == "cuda":
            if _cuda_supports_bf16(device):
                return torch.bfloat16
            return (
                torch.float16 if torch.cuda.get_device_capability(device)[0] >= 7 else torch.float32
            )
        return torch.float32
    dtype = getattr(torch, name)
    if dtype is torch.float32:
        return dtype
    if device.type == "cpu":
        supported = cpu_has_bf16() if dtype is torch.bfloat16 else cpu_has_fp16()
        needs = "AVX512-BF16 or AMX" if dtype is torch.bfloat16 else "AVX512-FP16 or AMX-FP16"
        if not supported:
            raise ValueError(
                f"this CPU cannot compute in {name} natively (needs {needs}); "
                "use precision='float32'"
            )
    elif device.type == "cuda" and dtype is torch.bfloat16 and not _cuda_supports_bf16(device):
        raise ValueError(
            f"CUDA device {torch.cuda.get_device_name(device)} has no native bfloat16 "
            "(needs compute capability 8.0); use precision='float16' or 'float32'"
        )
    elif device.type == "mps" and dtype is torch.bfloat16:
        try:
            torch.ones(1, dtype=dtype, device=device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"this MPS device cannot compute in bfloat16: {error}") from None
    return dtype


def precision_name(dtype: torch.dtype) -> str:
    """How results and model files name a precision: ``"float32"`` for ``torch.float32``."""
    return str(dtype).removeprefix("torch.")


def resolved_names(device: str | torch.device = "auto", precision: str = "auto") -> tuple[str, str]:
    """Names of the device and precision that ``device`` and ``precision`` resolve to.

    Raises
    ------
    ValueError
        As :func:`resolve_device` and :func:`resolve_precision`.
    """
    torch_device = resolve_device(device)
    return str(torch_device), precision_name(resolve_precision(precision, torch_device))


def available_memory(device: str | torch.device = "cpu") -> int:
    """Free memory on a device, in bytes.

    Parameters
    ----------
    device : str or torch.device
        For CUDA, the device's free memory (``torch.cuda.mem_get_info``); for the CPU
        and Apple MPS (unified memory), the available system memory (``MemAvailable``
        in ``/proc/meminfo``, else ``os.sysconf``, else 4 GiB).

    Returns
    -------
    int
        Bytes.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


# -- memory budget of prediction tiles ---------------------------------------------------

#: Largest tile *output* side chosen automatically, in pixels, per device type. Larger
#: tiles waste less on the halo (a 768 px output needs a 956 px input at depth 5, 55 %
#: more pixels; 1024 px, 40 %), but on a CPU a tile whose feature maps outgrow the cache
#: runs slower per pixel: on a 2-core AMD EPYC (32 MiB L3), float32, 2048² took 2.84 s in
#: 876² tiles against 3.23 s in 1212² tiles, and 1022² 0.68 s in four 700² tiles against
#: 0.78-0.83 s in one 1212² tile; 512 px was no faster and slower on 520×696
#: (docs/benchmarks.md, "Round 3, session 5"). On a GPU 2048 px.
MAX_AUTO_TILE_OUTPUT = {"cpu": 768, "cuda": 2048, "mps": 2048}

#: Bytes of activations per input pixel, per first-level channel and per byte of the
#: element type, for one tile in inference (peak). Measured ~5.3 on a CPU in float32
#: (channels-last); 8 leaves room for allocator slack and convolution workspaces.
_ACTIVATION_BYTES_FACTOR = 8

#: Share of the free memory one batch of tiles may use.
_MEMORY_SHARE = {"cpu": 0.25, "cuda": 0.5, "mps": 0.25}


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


def auto_batch_size(
    tile_shape: tuple[int, int], n_tiles: int, model: UNet, device: torch.device, dtype: torch.dtype
) -> int:
    """Tiles per forward pass: as many ``tile_shape`` inputs as fit in the memory share.

    On a CPU, no more pixels per batch than one automatic tile: batches only help small
    tiles there, and long batches delay progress and cancellation. At most 16 on a GPU,
    and never more than ``n_tiles``.
    """
    tile_bytes = tile_shape[0] * tile_shape[1] * _bytes_per_pixel(model, dtype)
    budget = _MEMORY_SHARE.get(device.type, 0.25) * available_memory(device)
    batch = max(1, int(budget // tile_bytes))
    if device.type == "cpu":
        largest = auto_tile_shape(model, device, dtype)
        batch = min(batch, max(1, largest[0] * largest[1] // math.prod(tile_shape)))
    else:
        batch = min(batch, 16)
    return min(batch, n_tiles)
