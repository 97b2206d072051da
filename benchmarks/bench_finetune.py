"""Fine-tuning benchmark: paint a few cells, fine-tune for a time budget, score held-out images.

    PYTHONPATH=src python benchmarks/bench_finetune.py --dataset usiigaci --protocol full2 --seconds 300
    PYTHONPATH=src python benchmarks/bench_finetune.py --dataset usiigaci --protocol cells10 --seconds 120
    PYTHONPATH=src python benchmarks/bench_finetune.py --dataset crowded --protocol none

Simulated painting, from the ground-truth masks of the ``train`` split (../shared/data):

- ``full2``: every cell of 2 train images painted, everything else painted background
  (seeded choice of the 2 images).
- ``cells10``, ``cells5``: 10 (5) cells of one train image (seeded), each with a
  background stroke around it (the background pixels within 8 px of the cell); the rest
  unannotated.
- ``none``: no fine-tuning, the default model as shipped.

``--score-on split`` scores the ``--split`` images; ``--score-on painted`` scores the
painted image itself, on the cells that were not painted (what a user who paints a few
cells of the open image sees on the rest of it).

Every run reports the starting model (``start``), the model as returned (no suffix: the
fine-tuned one with the instance step fitted to the held-out painted cells, or the starting
model with its step fitted to the painted cells when fine-tuning did not beat it: ``kept``),
the fine-tuned weights with their fitted step whichever was kept (``trained``), and the
fine-tuned weights with the starting model's own instance step (``fixed``), beside the load
average.

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
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from nuclei_data import load, touching_cells  # noqa: E402

from napari_unet.inference.segment import iter_segment  # noqa: E402
from napari_unet.metrics import average_precision, seg_score  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training import TrainingConfig, train  # noqa: E402

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


def inner_cells(masks: np.ndarray) -> np.ndarray:
    """Ids of the cells not cut by the image edge (the ones a user would paint)."""
    ids = np.unique(masks[masks > 0])
    edge = np.unique(np.concatenate([masks[0], masks[-1], masks[:, 0], masks[:, -1]]))
    return np.setdiff1d(ids, edge)


def paint_cells(masks: np.ndarray, chosen, ring: int = 8) -> np.ndarray:
    """The ``chosen`` true cells painted (ids >= 2), a background stroke of ``ring`` px around."""
    ann = np.zeros(masks.shape, np.int32)
    cells = np.isin(masks, chosen)
    around = ndi.binary_dilation(cells, iterations=ring) & (masks == 0)
    ann[around] = 1
    ann[cells] = masks[cells].astype(np.int32) + 1
    return ann


def chosen_cells(masks: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Ids of ``n`` cells not cut by the image edge, drawn with ``rng``."""
    ids = inner_cells(masks)
    return rng.choice(ids, size=min(n, len(ids)), replace=False)


def painted_cells(masks: np.ndarray, n: int, rng: np.random.Generator, ring: int = 8) -> np.ndarray:
    """``n`` cells (not cut by the image edge) with a background stroke around each."""
    return paint_cells(masks, chosen_cells(masks, n, rng), ring)


def cells_image(train_items: list, n: int, rng: np.random.Generator) -> int:
    """Index of the image a ``cellsN`` protocol paints: one with enough cells that some
    stay unpainted to score."""
    big = [i for i, t in enumerate(train_items) if len(np.unique(t.masks)) > 2 * n + 1]
    return int(rng.choice(big))


def unpainted_only(masks: np.ndarray, annotation: np.ndarray, labels: np.ndarray):
    """Truth and prediction without the painted cells (and predictions lying on them)."""
    painted = np.isin(masks, np.unique(masks[annotation >= 2]))
    truth = np.where(painted, 0, masks)
    ids, counts = np.unique(labels[painted], return_counts=True)
    sizes = np.bincount(labels.ravel())
    on_painted = ids[(ids > 0) & (counts * 2 > sizes[ids])]
    return truth, np.where(np.isin(labels, on_painted), 0, labels)


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
    return round(float(np.nanmean(segs)), 4), round(float(np.mean(aps)), 4)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset",
        default="usiigaci",
        help="usiigaci, bbbc039, dsb2018, crowded, or an extra set beside the repository "
        "(bbbc030: DIC CHO cells; usiigaci2: Usiigaci sets 26-45; scripts/nuclei_data.EXTRA)",
    )
    p.add_argument("--protocol", default="full2", help="full2, cellsN (e.g. cells10) or none")
    p.add_argument("--seconds", type=float, default=300.0, help="fine-tuning time budget")
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="fixed number of iterations instead of a time budget",
    )
    p.add_argument("--precision", default=None, help="training precision (default: auto)")
    p.add_argument(
        "--split", default="val", help="split scored: val (choose settings) or test (report)"
    )
    p.add_argument("--score-on", default="split", choices=("split", "painted"))
    p.add_argument(
        "--score-dataset",
        default=None,
        help="score the split of this data set instead of --dataset's (e.g. paint usiigaci2 "
        "frames, score the usiigaci test frames)",
    )
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--hold-out", type=float, default=None, help="TrainingConfig.hold_out")
    p.add_argument("--start-labels", type=float, default=None, help="TrainingConfig.start_labels")
    p.add_argument("--trained-layers", default=None, help="TrainingConfig.trained_layers")
    p.add_argument("--tile", type=int, default=None, help="input tile side")
    p.add_argument("--model", default="default", help="starting model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="score only this many images")
    p.add_argument("--save-model", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="append the result as one JSON line")
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    base = load_model(args.model)
    result: dict = {
        "dataset": args.dataset,
        "protocol": args.protocol,
        "score_on": args.score_on,
        "split": args.split,
        "score_dataset": args.score_dataset or args.dataset,
        "seed": args.seed,
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": round(os.getloadavg()[0], 2),
    }
    if args.protocol == "none":
        scored = items_for(args.score_dataset or args.dataset, args.split)[: args.limit]
        result["n_scored"] = len(scored)
        result["seg_start"], result["ap50_start"] = score(scored, lambda i: unet(i, base))
        emit(result, args.json)
        return
    train_items = items_for(args.dataset, "train")
    if args.protocol == "full2":
        picks = sorted(rng.choice(len(train_items), 2, replace=False))
        images = [train_items[i].image for i in picks]
        annotations = [painted_full(train_items[i].masks) for i in picks]
    else:
        n = int(args.protocol.removeprefix("cells"))
        picks = [cells_image(train_items, n, rng)]
        images = [train_items[picks[0]].image]
        annotations = [painted_cells(train_items[picks[0]].masks, n, rng)]
    result["train_images"] = [train_items[i].name for i in picks]
    result["painted_cells"] = int(sum(len(np.unique(a[a >= 2])) for a in annotations))
    overrides = {
        k: v
        for k, v in {
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "hold_out": args.hold_out,
            "start_labels": args.start_labels,
            "trained_layers": args.trained_layers,
            "tile_shape": (args.tile, args.tile) if args.tile else None,
            "precision": args.precision,
        }.items()
        if v is not None
    }
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
        object_size=model.metadata["object_size"],
        tile_shape=model.metadata["training"]["tile_shape"],
        precision=model.metadata["training"]["precision"],
        postprocessing=model.metadata["postprocessing"],
        kept=trained.painted.kept if trained.painted else None,
        share=trained.painted.share if trained.painted else None,
        message=trained.painted.message if trained.painted else None,
    )
    if args.save_model:
        from napari_unet.models.files import save_model

        save_model(model, args.save_model)
    trained_net = trained.set_aside or model  # the trained weights, kept or not
    fixed = copy.deepcopy(trained_net)
    fixed.metadata["postprocessing"] = dict(base.metadata["postprocessing"])
    if args.score_on == "painted":
        scored = [train_items[i] for i in picks]
        for name, net in (("start", base), ("", model), ("trained", trained_net), ("fixed", fixed)):
            segs, aps = [], []
            for item, annotation in zip(scored, annotations, strict=True):
                truth, labels = unpainted_only(item.masks, annotation, unet(item, net))
                segs.append(seg_score(truth, labels))
                aps.append(average_precision(truth, labels))
            key = f"_{name}" if name else ""
            result[f"seg{key}"] = round(float(np.nanmean(segs)), 4)
            result[f"ap50{key}"] = round(float(np.mean(aps)), 4)
    else:
        scored = items_for(args.score_dataset or args.dataset, args.split)[: args.limit]
        result["n_scored"] = len(scored)
        for name, net in (("start", base), ("", model), ("trained", trained_net), ("fixed", fixed)):
            key = f"_{name}" if name else ""
            result[f"seg{key}"], result[f"ap50{key}"] = score(scored, lambda i, n=net: unet(i, n))
    emit(result, args.json)


def unet(item, net):
    return run_to_completion(iter_segment(item.image, net)).labels


def emit(result: dict, path: Path | None) -> None:
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result), flush=True)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
