"""Throughput of block-wise segmentation on local dask worker processes vs ``segment()``.

    PYTHONPATH=src python benchmarks/bench_distributed.py [--size 16384] [--workers 1 2]
        [--threads 1] [--block 2048] [--json out.json]

Tiles the shipped 520x696 nuclei field into a ``size`` x ``size`` uint16 zarr array on
disk (chunks 1024 px), then segments it with the default model

- in this process with ``napari_unet.segment`` (``--threads`` PyTorch threads), the
  single-machine reference, and
- with ``napari_unet.distributed.segment_zarr`` on a fresh ``LocalCluster`` of N worker
  processes (one dask thread and ``--threads`` PyTorch threads each), for each N,

and reports megapixels per second, the time of each stage (blocks, stitching), the
peak resident memory of each worker (VmHWM), the cost of one block, and the agreement
of the partitions with the reference (``metrics.partition_agreement``, cell counts).
``--projection`` adds a paper projection for a 100k x 100k slide on N GPU workers from
the measured per-block costs (``--gpu-block-seconds`` replaces the prediction part of
a block's cost by one measured on a GPU: ``--measure-gpu-block`` measures it here).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from importlib.resources import files

import numpy as np
import tifffile
import zarr
from machine import cpu_name, peak_rss_mib  # noqa: E402

from napari_unet import segment
from napari_unet.metrics import partition_agreement
from napari_unet.models.files import load_model


def tiled_image(path: str, size: int):
    field = tifffile.imread(files("napari_unet") / "data" / "nuclei.tif")
    image = zarr.create_array(store=path, shape=(size,) * 2, chunks=(1024, 1024), dtype="uint16")
    fy, fx = field.shape
    for y in range(0, size, 1024):  # chunk by chunk: memory stays small
        rows = (np.arange(y, min(y + 1024, size)) % fy)[:, None]
        for x in range(0, size, 1024):
            cols = (np.arange(x, min(x + 1024, size)) % fx)[None, :]
            image[y : y + rows.shape[0], x : x + cols.shape[1]] = field[rows, cols]
    return image


def run_cluster(image_path: str, out: str, n_workers: int, threads: int, block: int, precision):
    from distributed import Client, LocalCluster

    from napari_unet.distributed import iter_segment_zarr
    from napari_unet.runtime.progress import run_to_completion

    paths = [os.environ.get("PYTHONPATH", ""), os.path.dirname(os.path.abspath(__file__))]
    env = {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=env,
            memory_limit=0,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("napari_unet.inference.blocks"))  # imports are not the job
        t0 = time.perf_counter()
        stages: dict[str, float] = {}
        generator = iter_segment_zarr(
            client, image_path, out, model="default", block_shape=block, precision=precision
        )
        result = run_to_completion(
            generator, lambda progress: stages.__setitem__(progress.stage, progress.seconds)
        )
        seconds = time.perf_counter() - t0
        peaks = client.run(peak_rss_mib)
    blocks_done = stages.get("segment", seconds)
    return {
        "workers": n_workers,
        "seconds": seconds,
        "mp_per_s": result.plan.image_shape[0] * result.plan.image_shape[1] / seconds / 1e6,
        "segment_stage_s": blocks_done,
        "stitch_stage_s": seconds - blocks_done,
        "n_blocks": result.plan.n_blocks,
        "block_seconds": blocks_done * n_workers / result.plan.n_blocks,
        "worker_peak_rss_mib": sorted(peaks.values()),
        "n_cells": result.n_cells,
    }


def measure_block_parts(image, block: int, device: str, precision: str, repeats: int = 3):
    """Seconds of one block's prediction and of its instance step (median of repeats)."""
    from napari_unet.inference.blocks import plan_blocks, with_context
    from napari_unet.inference.segment import InstanceSettings, model_percentiles
    from napari_unet.method.images import percentile_normalization
    from napari_unet.method.tiling import predict_tiled

    model = load_model("default")
    plan = plan_blocks(image.shape, model, block)
    centre = plan.block(plan.grid_shape[1] * (plan.grid_shape[0] // 2) + plan.grid_shape[1] // 2)
    y0, y1, x0, x1 = plan.read_box(centre)
    padded = with_context(np.asarray(image[y0:y1, x0:x1]), plan, centre)
    normalization = percentile_normalization(image, model_percentiles(model))
    instances = InstanceSettings.for_model(model)
    predict, post = [], []
    for _ in range(repeats + 1):  # the first run warms up
        t0 = time.perf_counter()
        predicted = predict_tiled(
            padded,
            model,
            normalization=normalization,
            device=device,
            precision=precision,
            output_classes=instances.output_classes,
        )
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        t1 = time.perf_counter()
        c = plan.context
        instances.labels(np.ascontiguousarray(predicted[:, c:-c, c:-c]))
        t2 = time.perf_counter()
        predict.append(t1 - t0)
        post.append(t2 - t1)
    return {
        "device": device,
        "predict_s": float(np.median(predict[1:])),
        "instances_s": float(np.median(post[1:])),
        "padded_side": padded.shape[-1],
    }


def projection(run: dict, predict_s: float, instances_s: float, side: int = 100_000):
    """Paper projection for a side x side slide on N workers, from measured block costs."""
    n_blocks = math.ceil(side / run["block"]) ** 2
    scale = n_blocks / run["n_blocks"]
    stitch_s = run["stitch_stage_s"] * scale  # relabel pass: per block, parallel as well
    rows = []
    for n in (1, 4, 8, 16, 64):
        blocks_s = n_blocks * (predict_s + instances_s) / n
        rows.append({"workers": n, "hours": (blocks_s + stitch_s * run["workers"] / n) / 3600})
    return {"n_blocks": n_blocks, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--block", type=int, default=2048)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads per process")
    p.add_argument("--precision", default="float32")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--baseline-threads", type=int, nargs="+", default=[1], help="segment() with these"
    )
    p.add_argument("--measure-gpu-block", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "size": args.size,
        "block": args.block,
        "threads": args.threads,
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        image = tiled_image(f"{tmp}/image.zarr", args.size)
        reference = None
        report["baselines"] = []
        for threads in [] if args.no_baseline else args.baseline_threads:
            torch.set_num_threads(threads)
            model = load_model("default")
            t0 = time.perf_counter()
            labels = segment(image, model, precision=args.precision)
            seconds = time.perf_counter() - t0
            reference = labels if reference is None else reference
            del labels
            report["baselines"].append(
                {
                    "threads": threads,
                    "seconds": seconds,
                    "mp_per_s": args.size**2 / seconds / 1e6,
                    "n_cells": int(reference.max()),
                    "peak_rss_mib": peak_rss_mib(),
                }
            )
            print(json.dumps(report["baselines"][-1]), flush=True)
        torch.set_num_threads(args.threads)
        report["runs"] = []
        for n in args.workers:
            out = f"{tmp}/labels-{n}.zarr"
            run = run_cluster(f"{tmp}/image.zarr", out, n, args.threads, args.block, args.precision)
            run["block"] = args.block
            if reference is not None:
                labels = zarr.open_array(out, mode="r")
                run["agreement"] = partition_agreement(reference, labels)
                run["cell_count_difference"] = (run["n_cells"] - int(reference.max())) / max(
                    int(reference.max()), 1
                )
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
        del reference
        report["block_parts_cpu"] = measure_block_parts(image, args.block, "cpu", args.precision)
        if args.measure_gpu_block and torch.cuda.is_available():
            report["block_parts_gpu"] = measure_block_parts(image, args.block, "cuda", "auto")
            report["gpu"] = torch.cuda.get_device_name()
    report["load_after"] = os.getloadavg()
    parts = report.get("block_parts_gpu") or report["block_parts_cpu"]
    report["projection_100k"] = projection(
        report["runs"][-1], parts["predict_s"], parts["instances_s"]
    )
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
