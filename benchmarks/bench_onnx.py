"""ONNX Runtime (and OpenVINO, if installed) against PyTorch on the prediction tiles.

    PYTHONPATH=src python benchmarks/bench_onnx.py [rounds]   # needs onnx, onnxruntime

The shipped default model is exported at the fixed tile shape that tiled prediction of a
2048x2048 image uses: the plain network (batch norm and concatenation in the graph; ONNX
Runtime folds and fuses what it can itself) and the prediction network
(``napari_unet.method.folded_network``, unfused operators). Each runtime runs the same tile
in float32 on every core and its output is compared with PyTorch's.

**Each runtime is timed alone, in its own process** (rounds alternate between processes).
Timed in one process, they slow each other down: ONNX Runtime's and OpenVINO's thread
pools keep spinning after a call and take the cores from PyTorch's next call (measured on
a 2-core AMD EPYC: PyTorch 1.27-1.38 s per tile beside an ONNX Runtime session, 0.76-0.80 s
alone), which made ONNX Runtime look 1.6-2x faster than it is. Prints only; no timing is
asserted anywhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from napari_unet.method.folded_network import fold_for_inference
from napari_unet.method.tiling import plan_tiles
from napari_unet.models.files import load_model
from napari_unet.runtime.devices import auto_tile_shape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402


def export(network, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (x,), str(path), input_names=["x"], output_names=["logits"])


RUNTIMES = (
    "pytorch (prediction network)",
    "onnxruntime, plain network",
    "onnxruntime, folded network",
    "openvino f32, folded network",
    "openvino bf16, folded network",
)


def runner(name: str, model, x: torch.Tensor, folder: Path):
    """A no-argument callable that runs ``x`` through ``name``'s runtime, or None."""
    if name.startswith("pytorch"):
        network, x_last = fold_for_inference(model), x.contiguous(memory_format=torch.channels_last)
        return lambda: network(x_last).numpy()
    path = folder / "network.onnx"
    plain = "plain" in name
    export(model.eval() if plain else fold_for_inference(model, fused=False), x, path)
    if name.startswith("onnxruntime"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"x": x.numpy()})[0]
    try:
        import openvino as ov
    except ImportError:
        return None
    hint = name.split()[1]  # OpenVINO runs bf16 by default on bf16-capable CPUs
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    return lambda: compiled(x.numpy())[0]


def child(name: str, tile_side: int, repeats: int = 3) -> None:
    """Time one runtime alone (this process); print one JSON line."""
    model = load_model("default")
    x = torch.rand(1, 1, tile_side, tile_side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = fold_for_inference(model)(x.contiguous(memory_format=torch.channels_last))
        reference = reference.numpy()
        with tempfile.TemporaryDirectory() as folder:
            try:
                run_once = runner(name, model, x, Path(folder))
            except Exception as error:  # a benchmark line, not a failure of the package
                print(json.dumps({"name": name, "failed": f"{type(error).__name__}: {error}"}))
                return
            if run_once is None:
                print(json.dumps({"name": name, "failed": "not installed"}))
                return
            output = run_once()  # warm-up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                run_once()
                seconds.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "name": name,
                "seconds": min(seconds),
                "max_error": float(np.abs(output - reference).max()),
                "same_class": float(np.mean(output.argmax(1) == reference.argmax(1))),
            }
        )
    )


def run(size: int = 2048, tile_side: int | None = None, rounds: int = 3) -> dict:
    """Best seconds per tile of each runtime, each timed alone; printed and returned."""
    model = load_model("default")
    tile = (
        (tile_side,) * 2
        if tile_side
        else auto_tile_shape(model, torch.device("cpu"), torch.float32)
    )
    plan = plan_tiles((size, size), model, tile)
    print(
        f"   CPU {cpu_name()}, {torch.get_num_threads()} threads, load {os.getloadavg()}; "
        f"tile {plan.tile_shape}, {plan.n_tiles} tiles per {size}x{size} image; "
        "each runtime timed alone in its own process"
    )
    best: dict = {}
    for round_ in range(rounds):
        for name in RUNTIMES:
            if best.get(name) is None and round_ > 0:
                continue  # failed or not installed in the first round
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, str(plan.tile_shape[0])],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"failed": done.stderr[-300:]}
            if "failed" in result:
                if round_ == 0:
                    print(f"   {name}: {result['failed']}")
                best[name] = None
                continue
            if round_ == 0:
                print(
                    f"   {name}: max |logit difference| {result['max_error']:.2e}, "
                    f"same class {100 * result['same_class']:.3f} %"
                )
            previous = best.get(name)
            best[name] = result["seconds"] if previous is None else min(previous, result["seconds"])
    best = {name: seconds for name, seconds in best.items() if seconds is not None}
    base = best["pytorch (prediction network)"]
    for name, seconds in best.items():
        print(
            f"   {name:32s} {seconds:6.3f} s per tile, {seconds * plan.n_tiles:6.2f} s per "
            f"{size}x{size} image ({base / seconds:.2f}x PyTorch)"
        )
    print(f"   load after: {os.getloadavg()}")
    return best


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3)
