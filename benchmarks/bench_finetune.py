"""Fine-tuning benchmark: paint a few cells, fine-tune for a time budget, score held-out images.

    PYTHONPATH=src python benchmarks/bench_finetune.py --dataset usiigaci --protocol full2 --seconds 300
    PYTHONPATH=src python benchmarks/bench_finetune.py --dataset usiigaci --protocol cells10 --seconds 120
    PYTHONPATH=src python benchmarks/bench_finetune.py --dataset crowded --protocol none

Simulated painting, from the ground-truth masks of the ``train`` split (../shared/data):

- ``full2``: every cell of 2 train images painted, everything else painted background
  (seeded choice of the 2 images).
- ``cells10``: 10 cells of one train image (seeded), each with a background stroke
  around it (the background pixels within 8 px of the cell); the rest unannotated.
- ``none``: no fine-tuning, the default model as shipped.

The default model is fine-tuned with ``TrainingConfig(max_seconds=...)`` (every other
setting at its default unless given) and scored on the ``--split`` images (``val`` to
choose settings, ``test`` only to report) with the Cell Tracking Challenge SEG measure
and AP@0.5. Baselines on the same images: the default model as shipped, and Gaussian +
Otsu + distance-transform watershed (``min_distance`` from the object size).

``--dataset crowded`` is the crowded-nuclei subset: BBBC039 and DSB2018 fluorescence
images of the split in which at least 20 % of the nuclei touch another one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from evaluate_default_model import classical_baseline  # noqa: E402
from nuclei_data import grey, load, touching_cells  # noqa: E402

from napari_unet.inference.segment import iter_segment  # noqa: E402
from napari_unet.method.object_size import estimate_object_size  # noqa: E402
from napari_unet.metrics import average_precision, seg_score  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training.loop import TrainingConfig, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402


def touching_fraction(masks: np.ndarray) -> float:
    """Share of cells that touch another cell (8-connectivity)."""
    n = len(np.unique(masks[masks > 0]))
    return len(touching_cells(masks)) / n if n else 0.0


def painted_full(masks: np.ndarray) -> np.ndarray:
    """Every cell painted (ids >= 2) and all the rest painted background (1)."""
    ann = np.where(masks > 0, masks.astype(np.int32) + 1, 1)
    return ann.astype(np.int32)


def painted_cells(masks: np.ndarray, n: int, rng: np.random.Generator, ring: int = 8) -> np.ndarray:
    """``n`` cells (not cut by the image edge) with a background stroke around each."""
    ids = np.unique(masks[masks > 0])
    edge = np.unique(np.concatenate([masks[0], masks[-1], masks[:, 0], masks[:, -1]]))
    ids = np.setdiff1d(ids, edge)
    chosen = rng.choice(ids, size=min(n, len(ids)), replace=False)
    ann = np.zeros(masks.shape, np.int32)
    cells = np.isin(masks, chosen)
    around = ndi.binary_dilation(cells, iterations=ring) & (masks == 0)
    ann[around] = 1
    ann[cells] = masks[cells].astype(np.int32) + 1
    return ann


def items_for(dataset: str, split: str):
    if dataset == "crowded":
        items = [
            i
            for d in ("bbbc039", "dsb2018")
            for i in load(d, split)
            if i.kind == "fluorescence" and touching_fraction(i.masks) >= 0.2
        ]
        return items
    return load(dataset, split)


def score(items, labels_of) -> tuple[float, float]:
    segs, aps = [], []
    for item in items:
        labels = labels_of(item)
        segs.append(seg_score(item.masks, labels))
        aps.append(average_precision(item.masks, labels))
    return float(np.nanmean(segs)), float(np.mean(aps))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="usiigaci", help="usiigaci, bbbc039, dsb2018 or crowded")
    p.add_argument("--protocol", default="full2", choices=("full2", "cells10", "none"))
    p.add_argument("--seconds", type=float, default=300.0, help="fine-tuning time budget")
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="fixed number of iterations instead of a time budget (e.g. to replay on a GPU "
        "what a CPU does in --seconds)",
    )
    p.add_argument("--precision", default=None, help="training precision (default: auto)")
    p.add_argument(
        "--split", default="val", help="split scored: val (choose settings) or test (report)"
    )
    p.add_argument("--n-classes", type=int, default=None, help="target (default: TrainingConfig's)")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--tile", type=int, default=None, help="input tile side (default: from object size)"
    )
    p.add_argument("--model", default="default", help="starting model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also score the model as shipped and Otsu + watershed",
    )
    p.add_argument("--limit", type=int, default=None, help="score only this many images")
    p.add_argument("--save-model", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="append the result as one JSON line")
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    base = load_model(args.model)
    scored = items_for(args.dataset, args.split)[: args.limit]
    result: dict = {
        "dataset": args.dataset,
        "protocol": args.protocol,
        "split": args.split,
        "n_scored": len(scored),
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    model = base
    if args.protocol != "none":
        train_items = load(args.dataset, "train")
        if args.protocol == "full2":
            picks = sorted(rng.choice(len(train_items), 2, replace=False))
            images = [train_items[i].image for i in picks]
            annotations = [painted_full(train_items[i].masks) for i in picks]
            result["train_images"] = [train_items[i].name for i in picks]
        else:
            pick = int(rng.integers(len(train_items)))
            images = [train_items[pick].image]
            annotations = [painted_cells(train_items[pick].masks, 10, rng)]
            result["train_images"] = [train_items[pick].name]
        result["painted_cells"] = int(sum(len(np.unique(a[a >= 2])) for a in annotations))
        overrides = {
            k: v
            for k, v in {
                "n_classes": args.n_classes,
                "learning_rate": args.learning_rate,
                "batch_size": args.batch_size,
                "tile_shape": (args.tile, args.tile) if args.tile else None,
            }.items()
            if v is not None
        }
        if args.precision:
            overrides["precision"] = args.precision
        if args.iterations:
            config = TrainingConfig(max_seconds=None, n_iterations=args.iterations, **overrides)
        else:
            config = TrainingConfig(max_seconds=args.seconds, **overrides)
        t0 = time.perf_counter()
        trained = run_to_completion(
            train(images, annotations, model=base, config=config, seed=args.seed)
        )
        model = trained.model
        result.update(
            seconds=round(time.perf_counter() - t0, 1),
            iterations=len(trained.history),
            config=overrides,
            n_classes=model.config.n_classes,
            object_size=model.metadata["object_size"],
            tile_shape=model.metadata["training"]["tile_shape"],
            precision=model.metadata["training"]["precision"],
        )
        if args.save_model:
            from napari_unet.models.files import save_model

            save_model(model, args.save_model)

    def unet(item, net=model):
        return run_to_completion(iter_segment(item.image, net)).labels

    t0 = time.perf_counter()
    result["seg"], result["ap50"] = score(scored, unet)
    result["predict_seconds"] = round(time.perf_counter() - t0, 1)
    if args.baselines:
        result["seg_shipped"], result["ap50_shipped"] = score(scored, lambda i: unet(i, base))
        size = estimate_object_size(
            [
                i.masks
                for i in load(args.dataset if args.dataset != "crowded" else "bbbc039", "train", 2)
            ],
            dense=True,
        )
        min_distance = max(int(size / 3), 3)
        result["seg_watershed"], result["ap50_watershed"] = score(
            scored, lambda i: classical_baseline(grey(i.image), min_distance=min_distance)
        )
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
