"""Guidance benchmark: does painting the cells "Where next" shows beat random or reading order?

    PYTHONPATH=src flock /work/heavy.lock python benchmarks/bench_guidance.py \
        --dataset usiigaci --seed 0 --iterations 60 --json results.jsonl

Three simulated users paint cells of one ``train`` image (seeded choice among the images
with more than 41 cells) with the ground-truth masks, each cell with an 8 px background
stroke around it (``bench_finetune.paint_cells``):

- **guided**: paints the cell "Where next" shows. The candidates are ranked by the
  plugin's core (:func:`napari_unet.live.guidance.iter_rank_plane` with its default
  ranking, annotated ones left out) with the current model: the starting model for the
  first 5 cells, then the model fine-tuned on the cells so far (a new round after 5 and
  10 cells, as a user who trains between rounds). For each candidate the user paints the
  true cell that overlaps it most (if it is not cut by the image edge and not painted
  yet); a candidate on true background is painted background (no cell counted).
- **guided-uncertain** (a variant, not in the default ``--users``): the same with the
  ranking ``"uncertain"`` (least confident first, the default until issue 18's typical
  ranking); **guided-typical**: least confident first among the predicted cells of
  typical size (0.5-2x the median predicted cell area).
- **random**: paints unpainted cells in a random order (seeded).
- **reading**: paints cells from the top left, row by row (rows one median cell
  diameter high), left to right.

After 5, 10 and 20 painted cells the shipped default model is fine-tuned on the
annotation with ``TrainingConfig(n_iterations=...)`` (every other setting at its default,
so the painted-cell score may keep the starting model) and the returned model scores the
first ``--n-scored`` images of the ``--split`` split, ``val`` by default (CTC SEG,
AP@0.5: ``bench_finetune.score``; ``test`` stays for the final numbers);
``seg_trained`` scores the fine-tuned weights even when the painted-cell score kept the
starting model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import inner_cells, items_for, paint_cells, score, unet  # noqa: E402
from machine import cpu_name, report  # noqa: E402
from nuclei_data import grey  # noqa: E402

from napari_unet.live.guidance import (  # noqa: E402
    DEFAULT_RANKING,
    GuidanceTour,
    iter_rank_plane,
)
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training import TrainingConfig, train  # noqa: E402

CHECKPOINTS = (5, 10, 20)


def reading_order(masks: np.ndarray) -> list[int]:
    """Edge-free cells from the top left, row by row, left to right."""
    from scipy import ndimage as ndi

    ids = inner_cells(masks)
    centres = np.array(ndi.center_of_mass(np.ones_like(masks), masks, ids))
    areas = np.bincount(masks.ravel())[ids]
    row = 2 * np.sqrt(np.median(areas) / np.pi)  # a median cell's diameter
    order = np.lexsort((centres[:, 1], np.floor(centres[:, 0] / row)))
    return [int(i) for i in ids[order]]


def guided_cells(
    item, model, painted: list[int], background: np.ndarray, n_new: int, user: str = "guided"
) -> list[int]:
    """The next ``n_new`` true cells the guided user paints (and background marked).

    ``user``: ``"guided"`` (the plugin's default ranking), ``"guided-uncertain"`` (least
    confident first) or ``"guided-typical"`` (least confident first among the predicted
    cells of typical size).
    """
    masks = item.masks
    inner = set(inner_cells(masks).tolist())
    annotation = paint_cells(masks, painted)
    annotation[(annotation == 0) & background] = 1
    tour = GuidanceTour()
    ranking = DEFAULT_RANKING if user == "guided" else "uncertain"
    found = run_to_completion(iter_rank_plane(grey(item.image), model, annotation, ranking=ranking))
    if user == "guided-typical":  # only predicted cells of typical size (0.5-2x the median area)
        areas = np.array([c.mask.sum() for c in found if c.kind == "cell"])
        median = np.median(areas) if areas.size else 0
        found = [c for c in found if c.kind == "cell" and 0.5 <= c.mask.sum() / median <= 2]
    tour.update(found)
    chosen: list[int] = []
    while len(chosen) < n_new:
        candidate = tour.next()
        if candidate is None:  # nothing left: fill up in reading order
            rest = [c for c in reading_order(masks) if c not in painted + chosen]
            return chosen + rest[: n_new - len(chosen)]
        under = masks[candidate.index()][candidate.mask]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        if ids.size == 0:  # a false cell or an unsure patch on background: paint it background
            top, left, bottom, right = candidate.box
            background[top:bottom, left:right] |= candidate.mask
            continue
        cell = int(ids[np.argmax(counts)])
        if cell in inner and cell not in painted and cell not in chosen:
            chosen.append(cell)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="usiigaci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--n-scored", type=int, default=3)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--users", default="guided,random,reading")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    base = load_model()
    train_items = items_for(args.dataset, "train")
    big = [
        i for i, t in enumerate(train_items) if len(np.unique(t.masks)) > 2 * CHECKPOINTS[-1] + 1
    ]
    item = train_items[int(rng.choice(big))]
    tests = items_for(args.dataset, args.split)[: args.n_scored]
    started = time.perf_counter()
    result = {
        "dataset": args.dataset,
        "seed": args.seed,
        "iterations": args.iterations,
        "train_image": item.name,
        "split": args.split,
        "scored_images": [t.name for t in tests],
        "cpu": cpu_name(),
        "load_before": round(os.getloadavg()[0], 2),
        "seg_start": score(tests, lambda t: unet(t, base))[0],
    }
    config = TrainingConfig(max_seconds=None, n_iterations=args.iterations)
    for user in args.users.split(","):
        painted: list[int] = []
        background = np.zeros(item.masks.shape, bool)
        order = reading_order(item.masks)
        if user == "random":
            order = [int(c) for c in rng.permutation(order)]
        model = base
        for n in CHECKPOINTS:
            if user.startswith("guided"):
                painted += guided_cells(item, model, painted, background, n - len(painted), user)
            else:
                painted = order[:n]
            annotation = paint_cells(item.masks, painted)
            annotation[(annotation == 0) & background] = 1
            trained = run_to_completion(
                train([item.image], [annotation], model=base, config=config, seed=args.seed)
            )
            model = trained.model
            seg, ap = score(tests, lambda t, m=model: unet(t, m))
            row = {"seg": seg, "ap50": ap, "kept": getattr(trained.painted, "kept", None)}
            if trained.set_aside is not None:  # the fine-tuned weights, not kept
                row["seg_trained"] = score(tests, lambda t, m=trained.set_aside: unet(t, m))[0]
            else:
                row["seg_trained"] = seg
            result[f"{user}_{n}"] = row
            print(user, n, json.dumps(row), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_after"] = round(os.getloadavg()[0], 2)
    report(result, args.json)


if __name__ == "__main__":
    main()
