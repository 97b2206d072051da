"""3D SEG, AP@0.5, time and peak memory of segmenting volumes, per method.

    PYTHONPATH=src python benchmarks/bench_volume.py [--data ../shared/data/volumes]
        [--methods stack planes orthogonal orthogonal@gt] [--rescale no gt]
        [--synthetic 64x512x512]

Methods, all with the shipped default model (2D, three classes) and no fine-tuning:

- ``stack``: the baseline, today's plane-by-plane result without axes; its ids are made
  unique per plane (one nucleus over 12 planes is 12 objects), as a user gets them;
- ``planes``: ``segment(axes="ZYX", spacing=..., volume_method="planes")``;
- ``orthogonal``: ``volume_method="orthogonal"`` (XY, XZ, YZ views averaged);
- a ``+raw`` suffix: without the denoising before the network; ``+sharp``: with the
  model's own (2D) smoothing before the 3D watershed instead of ``VOLUME_SMOOTHING``.

Images whose adjacent pixels are uncorrelated (:data:`NOISE_CORRELATION`; three of the
GoNuclear crops as stored in ``shared/data/volumes`` are noise: no method can segment
them) are reported apart, flagged "image is noise". ``--rescale gt`` gives
``object_size``: the median nucleus diameter of the volume's ground truth (the ball of
each object's volume, in XY pixels), as a user's hint would; ``no`` leaves the model's
(``METHOD@gt``: that method with ``gt`` alone). Each (method, rescale) runs in its own
process, so that its peak resident memory (VmHWM, model and all) is its own. Splits are
reported apart: ``test``, ``val``, and ``train`` (the default model never saw any of
these volumes; the split is that of the data set). ``--synthetic`` times one synthetic
volume of that shape (:func:`napari_unet.testing.synthetic_nuclei_volume`, spacing 2, 1, 1).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_name, peak_rss_mib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "volumes"
#: Below this neighbour-pixel correlation an image holds no structure (reported apart).
NOISE_CORRELATION = 0.3


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A ZYX ImageJ TIFF and its voxel size, as the command line reads it."""
    from napari_unet.io.files import read_image
    from napari_unet.io.spacing import read_tiff_spacing

    return read_image(path), read_tiff_spacing(path)[0]


def object_size_of(labels: np.ndarray, spacing) -> float:
    """Median diameter (XY pixels) of the balls of the objects' volumes."""
    dz, dy, dx = spacing
    volumes = np.bincount(labels.ravel())[1:]
    volumes = volumes[volumes > 0] * dz * dy * dx
    return float(np.median((6 * volumes / math.pi) ** (1 / 3)) / dy)


def neighbour_correlation(image: np.ndarray) -> float:
    """Correlation of horizontally adjacent pixels: about 0 for an image of pure noise."""
    image = image.astype(np.float64)
    return float(np.corrcoef(image[..., :-1].ravel(), image[..., 1:].ravel())[0, 1])


def unique_per_plane(labels: np.ndarray) -> np.ndarray:
    """Stack labels numbered per plane, made unique across planes (one object per plane)."""
    out = np.zeros(labels.shape, np.int64)
    offset = 0
    for z, plane in enumerate(labels):
        out[z] = np.where(plane > 0, plane.astype(np.int64) + offset, 0)
        offset = max(offset, int(out[z].max()))
    return out


def configure(method: str) -> str:
    """``planes`` or ``orthogonal``, optionally ``+raw`` (no denoising) or ``+sharp`` (the
    model's own smoothing); sets those module defaults and returns the method."""
    import napari_unet.inference.volumes as volumes

    method, *variants = method.split("+")
    if "raw" in variants:
        volumes.DEFAULT_DENOISE = 0.0
    if "sharp" in variants:
        volumes.VOLUME_SMOOTHING = 0.0
    return method


def run_one(args) -> None:
    """One (method, rescale): every volume, one JSON line each, then the peak memory."""
    from napari_unet import segment
    from napari_unet.metrics import average_precision, seg_score
    from napari_unet.models.files import load_model

    method = configure(args.one)
    model = load_model("default")
    rows = [line.split("\t") for line in (args.data / "index.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    for row in rows:
        entry = dict(zip(header, row, strict=True))
        image, spacing = read_volume(args.data / "images" / f"{entry['name']}.tif")
        import tifffile

        truth = tifffile.imread(args.data / "masks" / f"{entry['name']}.tif")
        size = object_size_of(truth, spacing) if args.rescale[0] == "gt" else None
        started = time.perf_counter()
        if args.one == "stack":
            labels = unique_per_plane(segment(image, model, object_size=size))
        else:
            labels = segment(
                image, model, axes="ZYX", spacing=spacing, volume_method=method,
                object_size=size,
            )  # fmt: skip
        seconds = time.perf_counter() - started
        print(json.dumps({
            "name": entry["name"], "split": entry["split"], "kind": entry["kind"],
            "neighbour_correlation": neighbour_correlation(image),
            "seg": seg_score(truth, labels), "ap50": average_precision(truth, labels),
            "seconds": seconds, "n_pred": int(len(np.unique(labels)) - 1),
            "n_gt": int(len(np.unique(truth)) - 1), "object_size": size,
        }), flush=True)  # fmt: skip
    print(json.dumps({"peak_mib": peak_rss_mib()}), flush=True)


def run_synthetic(args) -> None:
    """Time one synthetic volume of ``args.synthetic`` voxels with ``args.one``."""
    from napari_unet import segment
    from napari_unet.metrics import average_precision, seg_score
    from napari_unet.models.files import load_model
    from napari_unet.testing import synthetic_nuclei_volume

    method = configure(args.one)
    shape = tuple(int(v) for v in args.synthetic.lower().split("x"))
    spacing = (2.0, 1.0, 1.0)
    n = max(1, int(np.prod(shape) / (4 / 3 * math.pi * 11**3 / 2) * 0.25))
    image, truth = synthetic_nuclei_volume(shape, n_nuclei=n, spacing=spacing, touching=0.1)
    model = load_model("default")
    started = time.perf_counter()
    if args.one == "stack":
        labels = unique_per_plane(segment(image, model))
    else:
        labels = segment(image, model, axes="ZYX", spacing=spacing, volume_method=method)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "synthetic": args.synthetic, "seconds": seconds, "n_gt": int(truth.max()),
        "seg": seg_score(truth, labels), "ap50": average_precision(truth, labels),
    }), flush=True)  # fmt: skip
    print(json.dumps({"peak_mib": peak_rss_mib()}), flush=True)


def child(args, extra: list[str]) -> list[dict]:
    command = [sys.executable, __file__, "--data", str(args.data), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{' '.join(extra)} failed")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def summary(results: list[dict]) -> None:
    """One Markdown table: per split, nuclei and the membrane crop apart."""
    print("| method | rescale | set | volumes | 3D SEG | 3D AP@0.5 | objects pred/true | "
          "s/volume | peak MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for entry in results:
        rows, peak = entry["rows"], entry["peak"]
        groups = {}
        for row in rows:
            what = "nuclei" if "nuclei" in row["kind"] else "cells"
            if row["neighbour_correlation"] < NOISE_CORRELATION:
                what += " (image is noise)"
            groups.setdefault((row["split"], what), []).append(row)
        for (split, what), group in sorted(groups.items()):
            seg = np.mean([r["seg"] for r in group])
            ap = np.mean([r["ap50"] for r in group])
            pred = sum(r["n_pred"] for r in group)
            true = sum(r["n_gt"] for r in group)
            secs = np.mean([r["seconds"] for r in group])
            print(f"| {entry['method']} | {entry['rescale']} | {split} {what} | {len(group)} | "
                  f"{seg:.3f} | {ap:.3f} | {pred}/{true} | {secs:.2f} | {peak:.0f} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--methods", nargs="+", default=["stack", "planes", "orthogonal"])
    p.add_argument("--rescale", nargs="+", choices=("no", "gt"), default=["no"])
    p.add_argument("--synthetic", default=None, help="also time a synthetic ZxYxX volume")
    p.add_argument("--synthetic-methods", nargs="+", default=None, help="default: --methods")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--per-volume", action="store_true", help="print every volume's scores")
    args = p.parse_args()
    if args.one is not None:
        run_synthetic(args) if args.synthetic else run_one(args)
        return
    import os

    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    results = []
    for spec in args.methods:
        method, _, only = spec.partition("@")  # "orthogonal@gt": that rescale alone
        for rescale in [only] if only else args.rescale:
            lines = child(args, ["--one", method, "--rescale", rescale])
            rows = lines[:-1]
            results.append({"method": method, "rescale": rescale, "rows": rows,
                            "peak": lines[-1]["peak_mib"]})  # fmt: skip
            if args.per_volume:
                for row in rows:
                    print(f"  {method} {rescale} {row['name']} ({row['split']}): SEG "
                          f"{row['seg']:.3f} AP {row['ap50']:.3f} {row['n_pred']}/{row['n_gt']} "
                          f"{row['seconds']:.1f} s", flush=True)  # fmt: skip
    summary(results)
    if args.synthetic:
        print(f"\nsynthetic {args.synthetic} (spacing 2, 1, 1), load {os.getloadavg()[0]:.2f}:")
        for method in args.synthetic_methods or args.methods:
            lines = child(args, ["--one", method, "--synthetic", args.synthetic])
            r = lines[0]
            print(f"  {method}: {r['seconds']:.1f} s, peak {lines[-1]['peak_mib']:.0f} MiB, "
                  f"SEG {r['seg']:.3f}, AP@0.5 {r['ap50']:.3f} ({r['n_gt']} nuclei)")  # fmt: skip
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
