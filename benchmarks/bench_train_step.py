"""Where one fine-tuning step spends its time, and what it costs in inference forward passes.

    PYTHONPATH=src python benchmarks/bench_train_step.py              # ~2 minutes on 2 cores
    PYTHONPATH=src python benchmarks/bench_train_step.py --steps 5    # smoke run

The shipped default model, in train mode, on batches of the shipped sample field and its
partial annotation (``TrainingConfig`` defaults: batch 2, 284² tiles, augmentation on).
Per step, timed separately: making the batch (augmentation, target and weights), forward,
loss, backward, optimiser step. Variants, interleaved round by round so that other
processes on the machine slow them alike: memory layout of the whole step (channels-last
or contiguous) and Adam's implementation (single-tensor, ``foreach``, ``fused``). The
inference forward pass of the same batch (the prediction network of
:mod:`napari_unet.method.tiling`, and the plain network in eval mode) is the unit of the step's
cost. Prints only; no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet.method.tiling import _inference_copy
from napari_unet.models.files import load_model
from napari_unet.training.config import TrainingConfig
from napari_unet.training.optimization import weighted_cross_entropy
from napari_unet.training.samples import prepare_samples, random_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402


def sample_batches(n: int, tile: int, batch_size: int, seed: int = 0):
    """``n`` training batches of the shipped sample, and the seconds each took to make."""
    from importlib.resources import files

    from napari_unet.io.files import read_image

    data = files("napari_unet") / "data"
    image, annotation = read_image(data / "nuclei.tif"), read_image(data / "nuclei_annotation.tif")
    config = TrainingConfig()
    model = load_model("default")
    samples = prepare_samples([image], [annotation], config, False, model.config.n_classes)
    rng = np.random.default_rng(seed)
    batches, seconds = [], []
    for _ in range(n):
        start = time.perf_counter()
        batches.append(
            random_batch(samples, model.halo, (tile, tile), batch_size, config.augmentation, rng)
        )
        seconds.append(time.perf_counter() - start)
    return batches, seconds


def make_optimizer(model, kind: str):
    options = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    return torch.optim.Adam(model.parameters(), lr=1e-4, **options[kind])


class Step:
    """One training variant: a model copy, its optimiser and its timings."""

    def __init__(self, layout: str, optimizer: str):
        self.name = f"{layout:13s} Adam {optimizer}"
        self.layout = torch.channels_last if layout == "channels-last" else torch.contiguous_format
        self.model = load_model("default").train().to(memory_format=self.layout)
        self.optimizer = make_optimizer(self.model, optimizer)
        self.times: dict[str, list[float]] = {
            k: [] for k in ("forward", "loss", "backward", "optimizer", "total")
        }

    def __call__(self, batch, record: bool = True) -> None:
        x, t, w = batch
        clock = [time.perf_counter()]
        inputs = torch.from_numpy(x).contiguous(memory_format=self.layout)
        logits = self.model(inputs)
        clock.append(time.perf_counter())
        loss = weighted_cross_entropy(logits, torch.from_numpy(t).long(), torch.from_numpy(w))
        clock.append(time.perf_counter())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock.append(time.perf_counter())
        self.optimizer.step()
        clock.append(time.perf_counter())
        if record:
            for key, a, b in zip(self.times, clock, clock[1:], strict=False):
                self.times[key].append(b - a)
            self.times["total"].append(clock[-1] - clock[0])


def forward_times(batch, model, repeat: int) -> dict[str, float]:
    """Median seconds of an inference forward pass of ``batch``: folded and plain."""
    x = torch.from_numpy(batch[0]).contiguous(memory_format=torch.channels_last)
    folded = _inference_copy(model, torch.device("cpu"), torch.float32)
    plain = load_model("default").eval().to(memory_format=torch.channels_last)
    result = {}
    with torch.inference_mode():
        for name, network in (("prediction network", folded), ("plain eval", plain)):
            network(x)
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                network(x)
                samples.append(time.perf_counter() - start)
            result[name] = statistics.median(samples)
    return result


def run(steps: int = 20, tile: int = 284, batch_size: int = 2, variants=None) -> dict:
    """Time the variants; print and return ``{variant: median step seconds, ...}``."""
    print(
        f"CPU: {cpu_name()} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
        f"capability {torch.backends.cpu.get_cpu_capability()}, load {os.getloadavg()}"
    )
    batches, prep = sample_batches(steps + 2, tile, batch_size)
    print(
        f"making one batch (augmentation, target, weights): median "
        f"{1e3 * statistics.median(prep):.1f} ms"
    )
    variants = variants or [
        ("channels-last", "single"),
        ("channels-last", "foreach"),
        ("channels-last", "fused"),
        ("contiguous", "single"),
        ("contiguous", "fused"),
    ]
    runs = [Step(*v) for v in variants]
    for r in runs:  # warm-up: oneDNN primitive caches, allocator
        r(batches[0], record=False)
        r(batches[1], record=False)
    for batch in batches[2:]:  # interleaved: the same load for every variant
        for r in runs:
            r(batch)
    forward = forward_times(batches[0], load_model("default"), max(5, steps // 2))
    print(
        "inference forward pass of the same batch: "
        + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in forward.items())
    )
    result = {"prep": statistics.median(prep), **forward}
    print(
        f"{'variant':32s} {'forward':>8s} {'loss':>6s} {'backward':>9s} {'Adam':>6s} "
        f"{'step':>7s} {'it/s':>6s} {'= fwd passes':>12s}"
    )
    for r in runs:
        m = {k: statistics.median(v) for k, v in r.times.items()}
        passes = m["total"] / forward["prediction network"]
        print(
            f"{r.name:32s} {1e3 * m['forward']:7.1f}  {1e3 * m['loss']:5.1f} "
            f"{1e3 * m['backward']:8.1f}  {1e3 * m['optimizer']:5.1f} {1e3 * m['total']:7.1f} "
            f"{1 / m['total']:6.2f} {passes:8.2f} ({m['total'] / forward['plain eval']:.2f} plain)"
        )
        result[r.name] = m["total"]
    print(f"load after: {os.getloadavg()}")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tile", type=int, default=284)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.steps, args.tile, args.batch_size)


if __name__ == "__main__":
    main()
