"""Peak memory, time and agreement of a zarr volume segmented block by block vs in memory.

    PYTHONPATH=src:benchmarks python benchmarks/bench_volume_blocks.py \
        [--shape 64x512x512] [--block 32x256x256] [--method orthogonal]

A synthetic volume (:func:`napari_unet.testing.synthetic_nuclei_volume`, spacing 2, 1, 1,
touching 0.1, about as dense as ``bench_volume.py --synthetic``) is written to a uint16
zarr array on disk (chunks of the block shape). Then, each in its own process so that
its peak resident memory (VmHWM, model included) is its own:

- ``memory``: ``segment(zarr_array, axes="ZYX", spacing=...)`` (the volume read whole);
- ``blocks``: :func:`napari_unet.inference.to_zarr.iter_segment_to_zarr` with
  ``block_shape`` (3D blocks with halos, labels written to zarr block by block); its peak
  is taken before anything reads the labels back.

Reported: seconds, peak MiB, 3D SEG and AP@0.5 of each against the synthetic truth, and
the agreement of the two: SEG of the block-wise labels against the in-memory ones, and
how many in-memory objects have a block-wise object of IoU > 0.5.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name, peak_rss_mib  # noqa: E402

SPACING = (2.0, 1.0, 1.0)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def run_child(args) -> None:
    """One mode in this process: segment the zarr volume, print seconds and peak MiB."""
    import zarr

    from napari_unet.models.files import load_model

    image = zarr.open_array(str(Path(args.tmp) / "image.zarr"), mode="r")
    model = load_model("default")
    started = time.perf_counter()
    if args.child == "memory":
        from napari_unet import segment

        labels = segment(image, model, axes="ZYX", spacing=SPACING, volume_method=args.method)
        seconds, peak = time.perf_counter() - started, peak_rss_mib()
        np.save(Path(args.tmp) / "memory.npy", labels)
        n_blocks = 1
    else:
        from napari_unet.inference.to_zarr import iter_segment_to_zarr
        from napari_unet.runtime.progress import run_to_completion

        run_to_completion(
            iter_segment_to_zarr(
                image, Path(args.tmp) / "labels.zarr", model, axes="ZYX", spacing=SPACING,
                block_shape=_shape(args.block), volume_method=args.method,
            )
        )  # fmt: skip
        seconds, peak = time.perf_counter() - started, peak_rss_mib()
        n_blocks = math.prod(
            math.ceil(s / b) for s, b in zip(image.shape, _shape(args.block), strict=True)
        )
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "n_blocks": n_blocks}), flush=True)


def child(args, mode: str) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--tmp", args.tmp,
               "--block", args.block, "--method", args.method]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{mode} failed")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")][-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="64x512x512", help="ZxYxX voxels")
    p.add_argument("--block", default="32x256x256", help="block core ZxYxX voxels")
    p.add_argument("--method", default="orthogonal")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_child(args)
        return
    import zarr

    from napari_unet.metrics import average_precision, match, seg_score
    from napari_unet.testing import synthetic_nuclei_volume

    shape = _shape(args.shape)
    n = max(1, int(np.prod(shape) / (4 / 3 * math.pi * 11**3 / 2) * 0.25))
    image, truth = synthetic_nuclei_volume(shape, n_nuclei=n, spacing=SPACING, touching=0.1)
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; volume "
          f"{args.shape} ({truth.max()} nuclei), blocks {args.block}, {args.method}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        store = zarr.create_array(store=f"{tmp}/image.zarr", shape=shape,
                                  chunks=_shape(args.block), dtype=image.dtype)  # fmt: skip
        store[:] = image
        del image
        runs = {mode: child(args, mode) for mode in ("memory", "blocks")}
        memory = np.load(Path(tmp) / "memory.npy")
        blocks = zarr.open_array(store=f"{tmp}/labels.zarr", path="0", mode="r")[:]
    for mode, labels in (("memory", memory), ("blocks", blocks)):
        r = runs[mode]
        print(f"  {mode}: {r['seconds']:.1f} s, peak {r['peak_mib']:.0f} MiB, "
              f"{r['n_blocks']} block(s), {len(np.unique(labels)) - 1} objects, SEG "
              f"{seg_score(truth, labels):.3f}, AP@0.5 {average_precision(truth, labels):.3f}")  # fmt: skip
    m = match(memory, blocks)
    print(f"  agreement: SEG(blocks vs memory) {seg_score(memory, blocks):.3f}, "
          f"{int((m.iou > 0.5).sum())} of {m.n_gt} in-memory objects matched (IoU > 0.5), "
          f"{m.n_pred} block-wise objects")  # fmt: skip
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
