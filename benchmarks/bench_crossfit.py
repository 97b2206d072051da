"""A cross-fitted never-worse verdict, simulated outside ``train()`` (issue 21).

Since round 3, session 6 the verdict is in ``train()`` (``napari_unet.training.cross_fit``,
measured with ``bench_finetune.py``); this script reproduces the session-5 simulation that
led to it.

    PYTHONPATH=src python benchmarks/bench_crossfit.py usiigaci2 5 0     # data, cells, seed

Paints ``cells`` cells of one ``train`` image as ``bench_finetune.py`` does (same seed, same
cells) and compares, on the first 5 ``val`` images:

- today's rule: ``train()`` with its defaults for ``--seconds`` (one held-out share);
- a cross-fitted verdict: the painted cells split into two folds, each fold fine-tuning
  the start for half the budget with the other fold unpainted; each fold's model, mixed
  with the start (``training.selection.mixed_state``), scored (SEG) on the other fold's
  cells; and the two fold models averaged (a soup) and mixed at each share.

Prints one JSON line (and appends it to ``--json``); no rule is applied here: the choice is
read off the scores (``docs/benchmarks.md``, "Round 3, session 5").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import cells_image, chosen_cells, items_for, paint_cells, score  # noqa: E402

from napari_unet.inference.segment import iter_segment  # noqa: E402
from napari_unet.metrics import seg_score  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training import TrainingConfig, train  # noqa: E402
from napari_unet.training.selection import MIX_SHARES, mixed_state  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("cells", type=int)
    p.add_argument("seed", type=int)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    base = load_model("default")
    train_items = items_for(args.dataset, "train")
    item = train_items[cells_image(train_items, args.cells, rng)]
    chosen = chosen_cells(item.masks, args.cells, rng)
    val = items_for(args.dataset, "val")[:5]

    def labels(net, image):
        return run_to_completion(iter_segment(image, net)).labels

    def fine_tune(cells, config):
        annotation = paint_cells(item.masks, cells)
        return run_to_completion(
            train([item.image], [annotation], model=base, config=config, seed=args.seed)
        )

    out = {"dataset": args.dataset, "cells": args.cells, "seed": args.seed, "image": item.name}
    out["val_start"] = score(val, lambda i: labels(base, i.image))
    today = fine_tune(chosen, TrainingConfig(max_seconds=args.seconds))
    out["today"] = {
        "kept": today.painted.kept,
        "share": today.painted.share,
        "iterations": len(today.history),
        "val": score(val, lambda i: labels(today.model, i.image)),
    }
    order = rng.permutation(len(chosen))
    half = (len(chosen) + 1) // 2
    folds = [chosen[order[:half]], chosen[order[half:]]]
    start = {k: v.clone() for k, v in base.state_dict().items()}
    states, iterations = [], []
    for fold in folds:
        config = TrainingConfig(max_seconds=args.seconds / 2, hold_out=0)
        result = fine_tune(fold, config)
        states.append({k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()})
        iterations.append(len(result.history))
    out["fold_iterations"] = iterations

    def mixed(state, share):
        net = copy.deepcopy(base)
        net.load_state_dict(mixed_state(start, state, share))
        return net

    def on_cells(predicted, cells) -> float:
        return seg_score(np.where(np.isin(item.masks, cells), item.masks, 0), predicted)

    def cross_fitted(first, second) -> float:
        a, b = on_cells(first, folds[1]), on_cells(second, folds[0])
        return round((a * len(folds[1]) + b * len(folds[0])) / len(chosen), 4)

    start_labels = labels(base, item.image)
    out["crossfit_start"] = cross_fitted(start_labels, start_labels)
    soup = {k: (v + states[1][k]) / 2 if v.is_floating_point() else v for k, v in states[0].items()}
    for share in MIX_SHARES:
        first = labels(mixed(states[0], share), item.image)
        second = labels(mixed(states[1], share), item.image)
        out[f"crossfit_{share}"] = cross_fitted(first, second)
        out[f"val_soup_{share}"] = score(val, lambda i, s=share: labels(mixed(soup, s), i.image))
    print(json.dumps(out))
    if args.json:
        with open(args.json, "a") as file:
            file.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
