"""ONNX Runtime (and OpenVINO, if installed) against PyTorch on the prediction tiles.

    PYTHONPATH=src python benchmarks/bench_onnx.py          # needs onnx, onnxruntime, onnxscript

The shipped default model is exported twice at the fixed tile shape that tiled
prediction of a 2048x2048 image uses: the plain network (batch norm and concatenation
in the graph; ONNX Runtime folds and fuses what it can itself) and the prediction
network (``napari_unet.method.folded_network``, unfused operators). Each runs the same tile
batch, interleaved with PyTorch's prediction network, in float32 on every core; the
outputs are compared with PyTorch's. Prints only; no timing is asserted anywhere.
"""

from __future__ import annotations

import contextlib
import io
import os
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


def run(size: int = 2048, tile_side: int | None = None, rounds: int = 3) -> dict:
    """Seconds per tile batch for each runtime; printed and returned."""
    import onnxruntime as ort

    model = load_model("default")
    tile = (
        (tile_side,) * 2
        if tile_side
        else auto_tile_shape(model, torch.device("cpu"), torch.float32)
    )
    plan = plan_tiles((size, size), model, tile)
    x = torch.rand(1, 1, *plan.tile_shape)
    print(
        f"   CPU {cpu_name()}, {torch.get_num_threads()} threads, load {os.getloadavg()}; "
        f"onnxruntime {ort.__version__}; tile {plan.tile_shape}, {plan.n_tiles} tiles per "
        f"{size}x{size} image"
    )
    torch_network = fold_for_inference(model)
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        reference = torch_network(x_last).numpy()
    runners = {"pytorch (prediction network)": lambda: torch_network(x_last)}
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as folder:
        for name, network in (
            ("onnxruntime, plain network", model.eval()),
            ("onnxruntime, folded network", fold_for_inference(model, fused=False)),
        ):
            path = Path(folder) / f"{len(runners)}.onnx"
            try:
                export(network, x, path)
                session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as error:  # a benchmark line, not a failure of the package
                print(f"   {name}: export or session failed: {type(error).__name__}: {error}")
                continue
            feed = {"x": x.numpy()}
            output = session.run(None, feed)[0]
            error = float(np.abs(output - reference).max())
            labels = float(np.mean(output.argmax(1) == reference.argmax(1)))
            print(f"   {name}: max |logit difference| {error:.2e}, same class {100 * labels:.3f} %")
            runners[name] = lambda session=session, feed=feed: session.run(None, feed)
        try:
            import openvino as ov

            core = ov.Core()
            path = Path(folder) / "ov.onnx"
            export(fold_for_inference(model, fused=False), x, path)
            for hint in ("f32", "bf16"):  # OpenVINO runs bf16 by default on bf16-capable CPUs
                compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
                output = compiled(x.numpy())[0]
                error = float(np.abs(output - reference).max())
                same = float(np.mean(output.argmax(1) == reference.argmax(1)))
                print(
                    f"   openvino {hint}: max |logit difference| {error:.2e}, "
                    f"same class {100 * same:.3f} %"
                )
                runners[f"openvino {hint}, folded network"] = lambda c=compiled: c(x.numpy())
        except ImportError:
            print("   openvino not installed")
        except Exception as error:
            print(f"   openvino failed: {type(error).__name__}: {error}")
        times = {name: [] for name in runners}
        with torch.inference_mode():
            for runner in runners.values():
                runner()
            for _ in range(rounds):
                for name, runner in runners.items():
                    start = time.perf_counter()
                    runner()
                    times[name].append(time.perf_counter() - start)
    best = {name: min(samples) for name, samples in times.items()}
    base = best["pytorch (prediction network)"]
    for name, seconds in best.items():
        print(
            f"   {name:32s} {seconds:6.3f} s per tile, {seconds * plan.n_tiles:6.2f} s per "
            f"{size}x{size} image ({base / seconds:.2f}x PyTorch)"
        )
    print(f"   load after: {os.getloadavg()}")
    return best


if __name__ == "__main__":
    run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3)
