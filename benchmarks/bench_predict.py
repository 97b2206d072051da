"""Benchmark overlap-tile prediction: throughput, latency and memory (prints only).

    PYTHONPATH=src python benchmarks/bench_predict.py            # full run (minutes on 2 cores)
    PYTHONPATH=src python benchmarks/bench_predict.py --quick    # smoke run (~1 minute)

Sections:
1. raw throughput of one large 3x3 convolution (64 -> 64 channels), GFLOP/s;
2./3. tiled prediction of a large image: output megapixels/s, network GFLOP/s (FLOPs of
   the convolutions of the tiles actually run, halo included) and its ratio to (1);
4. time for one 512x512 image;
5. peak resident memory predicting a large uint16 zarr image (foreground only);
6. MONAI sliding-window inference with a same-width padded U-Net, if MONAI is installed;
7. the whole ``segment()`` of a 2048x2048 fluorescence field (the shipped nuclei sample,
   mirrored) with the shipped default model, and the share of its labels that agree;
8. ``torch.jit`` freezing and ``torch.compile`` on the fixed tile shape: warm-up and what
   it saves per 2048x2048 image;
9. one fine-tuning step: its parts, and its cost in inference forward passes
   (``bench_train_step.py``);
10. ONNX Runtime on the same network and tiles, if installed (``bench_onnx.py``).
Sections (2), (3) and (7) run the prediction network (batch norm folded, no
concatenation, fused ReLU: ``napari_unet.method.folded_network``) and, interleaved in the same
run, the plain network as prediction ran it before ("plain"). No timing is asserted
anywhere.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_unet.method import tiling
from napari_unet.method.network import UNet
from napari_unet.method.tiling import plan_tiles, predict_tiled
from napari_unet.runtime import devices
from napari_unet.runtime.devices import auto_tile_shape, resolve_device, resolve_precision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name, peak_rss_mib  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--base-channels", type=int, default=16, help="small network width")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument(
        "--model",
        default=None,
        help="model file or shipped name instead of --depth/--base-channels",
    )
    parser.add_argument("--conv-size", type=int, default=512, help="(1): conv input side")
    parser.add_argument("--size", type=int, default=2048, help="(3): image side, pixels")
    parser.add_argument("--single-size", type=int, default=512, help="(4): image side")
    parser.add_argument("--memory-size", type=int, default=8192, help="(5): image side")
    parser.add_argument("--precisions", default="float32,auto", help="comma-separated")
    parser.add_argument("--tile-shape", type=int, default=None, help="input tile side")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--skip-paper", action="store_true", help="no 64-channel network")
    parser.add_argument("--skip-memory", action="store_true", help="skip section 5")
    parser.add_argument("--monai-roi", type=int, default=512, help="(6): window side")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved plain/folded runs")
    parser.add_argument("--skip-segment", action="store_true", help="skip section 7")
    parser.add_argument("--skip-compile", action="store_true", help="skip section 8")
    parser.add_argument("--train-steps", type=int, default=12, help="(9); 0 skips it")
    parser.add_argument("--skip-onnx", action="store_true", help="skip section 10")
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: section 5
    args = parser.parse_args(argv)
    if args.quick:
        args.conv_size, args.size, args.single_size, args.memory_size = 256, 512, 256, 1024
        args.rounds, args.train_steps = 1, 3
    return args


def plain_inference_copy(model, device, dtype):
    """The prediction copy before the folded network: the UNet itself, channels-last."""
    network = copy.deepcopy(model).eval().requires_grad_(False)
    return network.to(device=device, dtype=dtype, memory_format=torch.channels_last)


class network_path:
    """``with network_path("plain"):`` predict with the plain network ("folded": default)."""

    def __init__(self, kind: str):
        self.kind, self.saved = kind, None

    def __enter__(self):
        self.saved = tiling._inference_copy
        if self.kind == "plain":
            tiling._inference_copy = plain_inference_copy

    def __exit__(self, *exc):
        tiling._inference_copy = self.saved


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeat: int = 1, warm_up=None) -> float:
    """Best of ``repeat`` runs after one warm-up (``warm_up`` or ``function``), seconds."""
    (warm_up or function)()
    best = math.inf
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


# -- (1) one convolution -----------------------------------------------------------------


def conv_throughput(size: int, device: torch.device, width: int = 64) -> dict[str, float]:
    """GFLOP/s of a ``width`` -> ``width``-channel 3x3 valid convolution, 1 x width x S x S."""
    flops = 2 * width * width * 9 * (size - 2) ** 2
    results = {}
    variants = [("float32", torch.float32, False), ("float32", torch.float32, True)]
    for name in ("bfloat16", "float16"):
        try:
            variants.append((name, resolve_precision(name, device), True))
        except ValueError as error:
            print(f"   {name}: skipped ({error})")
    for name, dtype, channels_last in variants:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        conv = torch.nn.Conv2d(width, width, 3).to(device, dtype, memory_format=layout).eval()
        x = torch.randn(1, width, size, size, device=device, dtype=dtype)
        x = x.contiguous(memory_format=layout)
        with torch.inference_mode():
            seconds = timed(lambda conv=conv, x=x: conv(x), device, repeat=3)
        key = f"{name} {'channels-last' if channels_last else 'NCHW'} {width} ch"
        results[key] = flops / seconds / 1e9
        print(f"   {key:30s} {results[key]:8.1f} GFLOP/s")
    return results


# -- (2), (3), (4) tiled prediction ------------------------------------------------------


def tile_flops(model: UNet, tile_shape: tuple[int, int]) -> int:
    """FLOPs of one forward pass over one tile (counted on the meta device: no compute)."""
    network = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.empty(1, model.config.in_channels, *tile_shape, device="meta"))
    return counter.get_total_flops()


def run_prediction(image, model, device, precision, args, repeat=1, path="folded") -> dict:
    """Time predicting ``image``; tiles, FLOPs and throughput.

    The warm-up predicts one tile of the same shape (kernel selection, allocations).
    """
    dtype = resolve_precision(precision, device)
    tile = (args.tile_shape,) * 2 if args.tile_shape else auto_tile_shape(model, device, dtype)
    plan = plan_tiles(image.shape[-2:], model, tile)
    options = dict(device=device, precision=precision, tile_shape=tile, output_classes=(1,))
    options["batch_size"] = args.batch_size
    one_tile = image[..., : plan.step[0], : plan.step[1]]
    with network_path(path):
        seconds = timed(
            lambda: predict_tiled(image, model, **options),
            device,
            repeat,
            warm_up=lambda: predict_tiled(one_tile, model, **options),
        )
    flops = tile_flops(model, plan.tile_shape) * plan.n_tiles
    return {
        "path": path,
        "precision": str(dtype).removeprefix("torch."),
        "seconds": seconds,
        "tiles": f"{plan.n_tiles} x {plan.tile_shape[0]}x{plan.tile_shape[1]}",
        "megapixels_per_s": image.shape[-2] * image.shape[-1] / seconds / 1e6,
        "gflops": flops / seconds / 1e9,
        "gflop": flops / 1e9,
    }


def raw_conv_rate(size: int, device, width: int, precision: str) -> float:
    """GFLOP/s of one ``width``-channel channels-last 3x3 convolution, best of 3, now."""
    dtype = resolve_precision(precision, device)
    conv = torch.nn.Conv2d(width, width, 3).to(device, dtype, memory_format=torch.channels_last)
    x = torch.randn(1, width, size, size, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = timed(lambda: conv(x), device, repeat=3)
    return 2 * width * width * 9 * (size - 2) ** 2 / seconds / 1e9


def conv_reference(conv: dict[str, float], precision: str, width: int = 64) -> float:
    """The raw convolution's rate at the network's first-level width (else 64 channels)."""
    return conv.get(
        f"{precision} channels-last {width} ch",
        conv.get(f"{precision} channels-last 64 ch", math.nan),
    )


def prediction_section(networks, device, precisions, args, conv) -> dict:
    """Sections (2)-(4); returns the float32 result of the first (small) network."""
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    print(f"\n(2)+(3) tiled prediction of a {args.size}x{args.size} image (foreground only)")
    first = {}
    for label, model in networks:
        done = {}
        for precision in precisions:
            resolved = str(resolve_precision(precision, device)).removeprefix("torch.")
            if resolved in done:
                print(f"   {label}: {precision} = {resolved}, same as above")
                continue
            runs, rates = [], []
            width = model.config.base_channels
            for _ in range(args.rounds):  # interleaved: both paths and the conv see one load
                rates.append(raw_conv_rate(args.conv_size, device, width, resolved))
                for path in ("plain", "folded"):
                    runs.append(run_prediction(image, model, device, precision, args, path=path))
            rate = max(rates)
            print(
                f"   raw 3x3 conv {width}->{width} ch, {resolved}, channels-last, in these rounds: "
                f"{', '.join(f'{r:.1f}' for r in rates)} GFLOP/s (best {rate:.1f}; section 1: "
                f"{conv_reference(conv, resolved, width):.1f})"
            )
            for path in ("plain", "folded"):
                per_round = [
                    x["gflops"] / c for x, c in zip(runs[path == "folded" :: 2], rates, strict=True)
                ]
                print(
                    f"   {path}: network / raw conv per round: "
                    f"{', '.join(f'{q:.2f}' for q in per_round)}"
                )
                r = min((x for x in runs if x["path"] == path), key=lambda x: x["seconds"])
                ratio = r["gflops"] / rate
                print(
                    f"   {label:28s} {r['precision']:8s} {path:6s} {r['seconds']:7.2f} s "
                    f"{r['megapixels_per_s']:7.3f} MP/s  network {r['gflops']:7.1f} GFLOP/s "
                    f"= {ratio:4.2f} x conv ({r['gflop']:.0f} GFLOP, tiles {r['tiles']})"
                )
            done[resolved] = r
            plain = min((x for x in runs if x["path"] == "plain"), key=lambda x: x["seconds"])
            print(f"   {'':28s} folded / plain speed-up: {plain['seconds'] / r['seconds']:.2f}x")
        first = first or done
    single = image[: args.single_size, : args.single_size]
    print(f"\n(4) one {args.single_size}x{args.single_size} image (warm, best of 3)")
    for label, model in networks:
        done = set()
        for precision in precisions:
            resolved = str(resolve_precision(precision, device)).removeprefix("torch.")
            if resolved in done:
                print(f"   {label}: {precision} = {resolved}, same as above")
                continue
            done.add(resolved)
            r = run_prediction(single, model, device, precision, args, repeat=3)
            print(f"   {label:28s} {r['precision']:8s} {r['seconds']:7.3f} s, tiles {r['tiles']}")
    return first.get("float32", {})


# -- (5) peak memory ---------------------------------------------------------------------


def write_zarr(path: Path, size: int) -> None:
    import zarr

    array = zarr.open_array(
        str(path), mode="w", shape=(size, size), chunks=(1024, 1024), dtype="uint16"
    )
    rng = np.random.default_rng(0)
    for y in range(0, size, 1024):  # row by row: the parent never holds the image either
        rows = min(1024, size - y)
        array[y : y + rows] = rng.integers(0, 4096, (rows, size), dtype=np.uint16)


def memory_child(args) -> None:
    """Run in a fresh process: predict the zarr image, print peak RSS as JSON."""
    import zarr

    image = zarr.open_array(args.memory_child, mode="r")
    torch.manual_seed(0)
    model = UNet(depth=args.depth, base_channels=args.base_channels)
    before = peak_rss_mib()
    start = time.perf_counter()
    result = predict_tiled(
        image,
        model,
        normalization=(0, 4095),
        device=args.device,
        output_classes=(1,),
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    device = resolve_device(args.device)
    tile = auto_tile_shape(model, device, resolve_precision("auto", device))
    plan = plan_tiles(image.shape, model, tile)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "before_mib": before,
                "peak_mib": peak,
                "ru_maxrss_mib": maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20,
                "tiles": f"{plan.n_tiles} x {plan.tile_shape[0]}x{plan.tile_shape[1]}",
                "seconds": seconds,
                "output_mib": result.nbytes / 2**20,
            }
        )
    )


def memory_section(args) -> None:
    try:
        import zarr  # noqa: F401
    except ImportError:
        print("\n(5) skipped: zarr not installed")
        return
    size = args.memory_size
    print(
        f"\n(5) peak resident memory, {size}x{size} uint16 zarr image on disk, "
        f"small network, foreground only"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.zarr"
        write_zarr(path, size)
        command = [
            sys.executable,
            __file__,
            "--memory-child",
            str(path),
            "--device",
            args.device,
            "--base-channels",
            str(args.base_channels),
            "--depth",
            str(args.depth),
        ]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    image_mib = size * size * 2 / 2**20
    print(
        f"   peak RSS {r['peak_mib']:.0f} MiB (after imports + model: {r['before_mib']:.0f} MiB; "
        f"image would be {image_mib:.0f} MiB, output {r['output_mib']:.0f} MiB), "
        f"{r['seconds']:.1f} s, {size * size / r['seconds'] / 1e6:.2f} MP/s, tiles {r['tiles']}"
    )
    if abs(r["ru_maxrss_mib"] - r["peak_mib"]) > 0.05 * r["peak_mib"]:
        print(
            f"   (ru_maxrss says {r['ru_maxrss_mib']:.0f} MiB: on Linux it keeps the parent's "
            "peak across fork + exec, hence VmHWM)"
        )


# -- (6) MONAI ---------------------------------------------------------------------------


def monai_runner(args, device, image: np.ndarray | None = None):
    """MONAI's sliding-window inference over ``image`` (default: random): (run, description).

    ``None`` when MONAI is not installed. BasicUNet always has 5 levels; ReLU and no
    normalisation, like the paper's network, but "same"-padded 3x3 convolutions (so its
    windows need blending, not a halo).
    """
    try:
        from monai.inferers import sliding_window_inference
        from monai.networks.nets import BasicUNet
    except ImportError:
        return None
    b = args.base_channels
    features = (*(b * 2**level for level in range(5)), b)
    network = BasicUNet(2, 1, 2, features=features, act="relu", norm=None).to(device).eval()
    if image is None:
        image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    tensor = torch.from_numpy(np.asarray(image, np.float32)[None, None]).to(device)
    roi, overlap = (args.monai_roi,) * 2, 0.25
    interval = int(roi[0] * (1 - overlap))
    windows = (math.ceil(max(args.size - roi[0], 0) / interval) + 1) ** 2
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        copy.deepcopy(network).to("meta")(torch.empty(1, 1, *roi, device="meta"))
    gflop = counter.get_total_flops() * windows / 1e9

    def run(x=tensor):
        with torch.inference_mode():
            return sliding_window_inference(x, roi, 1, network, overlap=overlap)

    run(tensor[..., : roi[0], : roi[1]])  # warm-up
    description = (
        f"MONAI BasicUNet {features}, roi {roi}, overlap {overlap}, {windows} windows, "
        f"{gflop:.0f} GFLOP"
    )
    return run, description


def monai_section(args, device, small_seconds: float | None) -> None:
    """The same image through MONAI's sliding-window inference, for comparison."""
    print(f"\n(6) MONAI sliding_window_inference, {args.size}x{args.size} image, float32")
    runner = monai_runner(args, device)
    if runner is None:
        print("   monai not installed")
        return
    run, description = runner
    seconds = timed(run, device, warm_up=lambda: None)
    print(f"   {description}: {seconds:.2f} s, {args.size**2 / seconds / 1e6:.3f} MP/s")
    if small_seconds:
        print(f"   = {seconds / small_seconds:.2f} x the time of napari-unet float32 tiled (3)")


# -- (7) whole segment() -----------------------------------------------------------------


def fluorescence_field(size: int) -> np.ndarray:
    """The shipped nuclei sample (uint16, 520x696), mirrored to ``size`` x ``size``."""
    from importlib.resources import files

    from napari_unet.io.files import read_image

    sample = np.asarray(read_image(files("napari_unet") / "data" / "nuclei.tif"))
    reps = (math.ceil(size / sample.shape[0]), math.ceil(size / sample.shape[1]))
    rows = [np.flip(sample, 0) if i % 2 else sample for i in range(reps[0])]
    column = np.concatenate(rows, 0)
    field = np.concatenate([np.flip(column, 1) if j % 2 else column for j in range(reps[1])], 1)
    return np.ascontiguousarray(field[:size, :size])


def segment_section(args, device) -> dict:
    """``segment()`` of a 2048x2048 field with the default model, plain and folded."""
    from napari_unet import segment
    from napari_unet.models.files import load_model

    model = load_model("default")
    image = fluorescence_field(args.size)
    print(
        f"\n(7) segment() of a {args.size}x{args.size} fluorescence field (nuclei sample, "
        f"mirrored), default model, float32, after one warm-up call"
    )
    options = dict(device=device, precision="float32")
    if args.tile_shape:
        options["tile_shape"] = (args.tile_shape,) * 2
    runner = monai_runner(args, device, image.astype(np.float32) / max(float(image.max()), 1.0))
    times = {"plain": [], "folded": [], "monai": []}
    labels = {}
    for path in ("plain", "folded"):  # warm-up (kernel choice, allocations)
        with network_path(path):
            segment(image[:512, :512], model, **options)
    for _ in range(args.rounds):  # interleaved: every round sees one load
        for path in ("plain", "folded"):
            with network_path(path):
                start = time.perf_counter()
                labels[path] = segment(image, model, **options)
                times[path].append(time.perf_counter() - start)
        if runner is not None:
            start = time.perf_counter()
            runner[0]()
            times["monai"].append(time.perf_counter() - start)
    print(f"   load average during: {load_average()}")
    best = {k: min(v) for k, v in times.items() if v}
    agree = float(np.mean((labels["plain"] > 0) == (labels["folded"] > 0)))
    same = float(np.mean(labels["plain"] == labels["folded"]))
    for path in times:
        if times[path]:
            print(
                f"   {path:6s} best {best[path]:6.2f} s (runs: "
                f"{', '.join(f'{t:.2f}' for t in times[path])})"
                + (f", {labels[path].max()} cells" if path in labels else "")
            )
    ratio = [p / f for p, f in zip(times["plain"], times["folded"], strict=True)]
    print(
        f"   folded vs plain, per round: {', '.join(f'{r:.2f}x' for r in ratio)}; pixels "
        f"agreeing: foreground {100 * agree:.3f} %, identical label ids {100 * same:.3f} %"
    )
    if runner is not None:
        print(f"   {runner[1]} (a 16-channel BasicUNet beside the default model)")
        for path in ("plain", "folded"):
            ratio = [m / t for m, t in zip(times["monai"], times[path], strict=True)]
            print(
                f"   MONAI / segment() {path}, per round: "
                f"{', '.join(f'{r:.2f}x' for r in ratio)} (median {np.median(ratio):.2f}x)"
            )
    return best


# -- (8) torch.jit freezing and torch.compile ---------------------------------------------


def compile_section(args, device) -> None:
    """Warm-up and per-tile time of frozen / compiled networks on the fixed tile shape."""
    from napari_unet.method.folded_network import fold_for_inference
    from napari_unet.models.files import load_model

    model = load_model("default")
    dtype = torch.float32
    tile = (args.tile_shape,) * 2 if args.tile_shape else auto_tile_shape(model, device, dtype)
    plan = plan_tiles((args.size, args.size), model, tile)
    batch = args.batch_size or 1
    n_calls = math.ceil(plan.n_tiles / batch)
    x = torch.rand(batch, 1, *plan.tile_shape).contiguous(memory_format=torch.channels_last)
    print(
        f"\n(8) fixed tile {plan.tile_shape}, batch {batch}: {n_calls} calls per "
        f"{args.size}x{args.size} image; warm-up = first call(s) minus a steady call"
    )
    candidates = {
        "folded, fused (default)": lambda: fold_for_inference(model, device, dtype),
        "plain": lambda: plain_inference_copy(model, device, dtype),
    }

    def frozen(network):
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(network, x)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    candidates["plain + jit.freeze + optimize_for_inference"] = lambda: frozen(
        plain_inference_copy(model, device, dtype)
    )
    candidates["folded + jit.freeze + optimize_for_inference"] = lambda: frozen(
        fold_for_inference(model, device, dtype, fused=False)
    )
    candidates["folded + torch.compile"] = lambda: torch.compile(
        fold_for_inference(model, device, dtype, fused=False)
    )
    steady = {}
    for name, build in candidates.items():
        try:
            start = time.perf_counter()
            with torch.no_grad():
                network = build()
                network(x)
                network(x)
            first = time.perf_counter() - start
            samples = []
            with torch.no_grad():
                for _ in range(3):
                    start = time.perf_counter()
                    network(x)
                    samples.append(time.perf_counter() - start)
        except Exception as error:  # a benchmark line, not a failure of the package
            print(f"   {name:46s} failed: {type(error).__name__}: {str(error)[:120]}")
            continue
        steady[name] = min(samples)
        warm_up = first - 2 * steady[name]
        base = steady.get("folded, fused (default)", steady[name])
        saved = (base - steady[name]) * n_calls
        verdict = (
            f"saves {saved:.2f} s per image for {warm_up:.1f} s of warm-up: "
            f"{'pays' if saved > warm_up else 'does not pay'} within one image"
            if name != "folded, fused (default)"
            else "the reference"
        )
        print(f"   {name:46s} {steady[name]:6.3f} s per call; {verdict}")


# -- (9) one fine-tuning step, (10) ONNX Runtime -----------------------------------------


def train_section(args) -> None:
    import bench_train_step

    print(
        f"\n(9) one fine-tuning step, default model, batch 2, 284x284 tiles ({args.train_steps} steps)"
    )
    bench_train_step.run(args.train_steps)


def onnx_section(args, device) -> None:
    try:
        import bench_onnx
    except ImportError as error:
        print(f"\n(10) ONNX Runtime: skipped ({error})")
        return
    print("\n(10) ONNX Runtime against PyTorch, default model, same tiles")
    bench_onnx.run(args.size, args.tile_shape, args.rounds)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    device = resolve_device(args.device)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    print(f"device: {device} - {device_name(device)}")
    print(f"load average before: {load_average()} (other processes slow every number down)")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"AMX {devices.cpu_has_amx()}, bf16 instructions {devices.cpu_has_bf16()}, "
        f"auto precision = {resolve_precision('auto', device)}"
    )

    conv = {}
    for width in sorted({args.base_channels, 16, 64}):
        print(
            f"\n(1) one 3x3 convolution, 1x{width}x{args.conv_size}x{args.conv_size} -> {width} channels"
        )
        conv.update(conv_throughput(args.conv_size, device, width))

    torch.manual_seed(0)
    if args.model:
        from napari_unet.models.files import load_model

        model = load_model(args.model)
        c = model.config
        networks = [(f"model {args.model!r} (depth {c.depth}, {c.base_channels} channels)", model)]
    else:
        networks = [
            (
                f"depth {args.depth}, {args.base_channels} channels",
                UNet(depth=args.depth, base_channels=args.base_channels),
            )
        ]
    if not args.skip_paper:
        networks.append(("paper (depth 5, 64 channels)", UNet()))
    small = prediction_section(networks, device, precisions, args, conv)
    if not args.skip_memory:
        memory_section(args)
    if args.skip_segment:
        monai_section(args, device, small.get("seconds"))
    else:
        segment_section(args, device)
    if not args.skip_compile:
        compile_section(args, device)
    if args.train_steps:
        train_section(args)
    if not args.skip_onnx:
        onnx_section(args, device)
    print(f"\nload average after: {load_average()}")


def load_average() -> str:
    try:
        return ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


if __name__ == "__main__":
    main()
