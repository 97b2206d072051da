"""Crisp borders: what test-time augmentation, outline smoothing and hole filling cost and give.

    PYTHONPATH=src python benchmarks/bench_borders.py --dataset usiigaci --model runs/ft.safetensors

For each image of the split: the network's probabilities once (and, for test-time
augmentation, on the 4 flips or the 8 flips and transposes, averaged after mapping back),
then the instance step with and without Gaussian smoothing of the probabilities (sigma a
share of the object size) and hole filling. Reports SEG, AP@0.5 and seconds per image.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from nuclei_data import grey, load  # noqa: E402

from napari_unet.inference.segment import InstanceSettings  # noqa: E402
from napari_unet.method.images import percentile_normalization  # noqa: E402
from napari_unet.method.tiling import predict_tiled  # noqa: E402
from napari_unet.metrics import average_precision, seg_score  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.models.metadata import model_percentiles  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name, report  # noqa: E402

TRANSFORMS = {
    "none": [(False, False, False)],
    "flips4": [(a, b, False) for a in (False, True) for b in (False, True)],
    "dihedral8": [(a, b, t) for a in (False, True) for b in (False, True) for t in (False, True)],
}


def _apply(x: np.ndarray, flip_y: bool, flip_x: bool, transpose: bool) -> np.ndarray:
    if flip_y:
        x = x[..., ::-1, :]
    if flip_x:
        x = x[..., :, ::-1]
    if transpose:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(x)


def _undo(x: np.ndarray, flip_y: bool, flip_x: bool, transpose: bool) -> np.ndarray:
    if transpose:
        x = np.swapaxes(x, -1, -2)
    if flip_x:
        x = x[..., :, ::-1]
    if flip_y:
        x = x[..., ::-1, :]
    return np.ascontiguousarray(x)


def probabilities(plane, model, settings, tta: str) -> np.ndarray:
    normalization = percentile_normalization(plane, model_percentiles(model))
    total = None
    for t in TRANSFORMS[tta]:
        p = predict_tiled(
            _apply(plane, *t),
            model,
            normalization=normalization,
            output_classes=settings.output_classes,
        )
        p = _undo(p, *t)
        total = p if total is None else total + p
    return total / len(TRANSFORMS[tta])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="usiigaci")
    p.add_argument("--split", default="val")
    p.add_argument("--model", default="default")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--tta", default="none,flips4,dihedral8")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    model = load_model(args.model)
    base = InstanceSettings.for_model(model)
    object_size = float(model.metadata.get("object_size", 30.0))
    variants = {
        "as stored": base,
        "smoothing 0.03 d": replace(base, smoothing=round(0.03 * object_size, 1)),
        "smoothing 0.06 d": replace(base, smoothing=round(0.06 * object_size, 1)),
        "fill holes": replace(base, fill_holes=True),
    }
    items = load(args.dataset, args.split)[: args.limit]
    for tta in args.tta.split(","):
        seconds, scores = 0.0, {name: ([], []) for name in variants}
        for item in items:
            plane = grey(item.image)
            t0 = time.perf_counter()
            probs = probabilities(plane, model, base, tta)
            seconds += time.perf_counter() - t0
            for name, settings in variants.items():
                labels = settings.labels(probs)[0]
                scores[name][0].append(seg_score(item.masks, labels))
                scores[name][1].append(average_precision(item.masks, labels))
        for name, (segs, aps) in scores.items():
            result = {
                "dataset": args.dataset,
                "split": args.split,
                "model": str(args.model),
                "tta": tta,
                "instance step": name,
                "seg": round(float(np.nanmean(segs)), 4),
                "ap50": round(float(np.mean(aps)), 4),
                "predict_seconds_per_image": round(seconds / len(items), 2),
                "cpu": cpu_name(),
                "torch_threads": torch.get_num_threads(),
                "load_average": round(os.getloadavg()[0], 2),
            }
            report(result, args.json)


if __name__ == "__main__":
    main()
