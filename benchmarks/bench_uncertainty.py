"""Which uncertainty predicts the preview's errors, and which confidence predicts wrong cells.

    PYTHONPATH=src python benchmarks/bench_uncertainty.py --split val --limit 8
    PYTHONPATH=src python benchmarks/bench_uncertainty.py --split test --limit 8

For every image of the split (bbbc039, dsb2018, usiigaci; ../shared/data), the model
(default: the shipped one) predicts all class probabilities and the model's own instance
step makes the cells, as the preview does. Then:

- **pixels**: a pixel is *wrong* when prediction and truth disagree on foreground /
  background, or when it lies in a predicted cell whose best-overlapping true cell is not
  the pixel's own (a merge or a split). Each candidate uncertainty (class entropy, margin
  ``1 - (p1 - p2)``, ``1 - max p``, and the disagreement between the image and its
  horizontal flip, half the L1 distance of the two probability vectors) ranks the pixels;
  we report the area under the ROC curve (AUROC) and the average precision (AP) of that
  ranking for the wrong pixels, pooled over the images of a dataset.
- **cells**: a predicted cell is *correct* when its IoU with a true cell is >= 0.5. Each
  candidate confidence (mean ``1 - entropy``, mean ``max p``, mean ``1 - margin``, mean
  ``1 - flip disagreement`` over the cell) ranks the cells; AUROC and AP for the correct
  cells. For the chosen confidence, the smallest threshold whose accepted cells (above
  it) are >= 95 % correct, pooled over all datasets, and the share correct and accepted
  at :data:`~napari_unet.live.guidance.DEFAULT_MIN_CONFIDENCE`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from machine import report  # noqa: E402
from nuclei_data import grey, load  # noqa: E402

from napari_unet.inference.segment import InstanceSettings  # noqa: E402
from napari_unet.live.guidance import DEFAULT_MIN_CONFIDENCE  # noqa: E402
from napari_unet.method.images import percentile_normalization  # noqa: E402
from napari_unet.method.tiling import predict_tiled  # noqa: E402
from napari_unet.method.uncertainty import (  # noqa: E402
    cell_confidence,
    class_entropy,
    margin_uncertainty,
)
from napari_unet.metrics import match  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.models.metadata import model_percentiles  # noqa: E402

PIXEL = ("entropy", "margin", "1-max p", "flip")


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mean precision at the rank of every positive, by descending score."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].mean())


def wrong_pixels(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Foreground disagreement, or a pixel in a predicted cell matched to another true cell."""
    wrong = (truth > 0) != (labels > 0)
    both = (truth > 0) & (labels > 0)
    if both.any():
        pairs = np.stack([labels[both], truth[both]], 1).astype(np.int64)
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        best = np.zeros(int(labels.max()) + 1, np.int64)
        order = np.lexsort((counts, uniq[:, 0]))  # per predicted cell, largest overlap last
        for p, t in uniq[order]:
            best[p] = t
        wrong[both] |= best[labels[both]] != truth[both]
    return wrong


def correct_cells(truth: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    m = match(truth, labels)  # ids are ranks in np.unique(labels) (0 first)
    uniq = np.unique(labels)
    good = {int(uniq[p]) for p, iou in zip(m.pred_ids, m.iou, strict=True) if iou >= 0.5}
    return np.array([int(i) in good for i in ids], bool)


def acceptance(conf: np.ndarray, correct: np.ndarray) -> dict:
    """Lowest threshold with >= 95 % correct above it; share accepted and correct at the default."""
    order = np.argsort(-conf, kind="stable")
    precision = np.cumsum(correct[order]) / np.arange(1, conf.size + 1)
    ok = np.flatnonzero(precision >= 0.95)
    above = conf >= DEFAULT_MIN_CONFIDENCE
    return {
        "threshold_95": round(float(conf[order][ok[-1]]), 3) if ok.size else None,
        "default_threshold": DEFAULT_MIN_CONFIDENCE,
        "accepted_share": round(float(above.mean()), 3),
        "accepted_correct": round(float(correct[above].mean()), 3) if above.any() else None,
    }


def per_image(item, net, instances) -> dict:
    plane = grey(item.image)
    norm = percentile_normalization(plane, model_percentiles(net))
    p = predict_tiled(plane, net, normalization=norm, device="cpu")
    flipped = predict_tiled(plane[:, ::-1].copy(), net, normalization=norm, device="cpu")
    flipped = flipped[:, :, ::-1]
    labels, _ = instances.labels(p[list(instances.output_classes)])
    pixel = {
        "entropy": class_entropy(p),
        "margin": margin_uncertainty(p),
        "1-max p": 1.0 - p.max(axis=0),
        "flip": 0.5 * np.abs(p - flipped).sum(axis=0),
    }
    out = {"wrong": wrong_pixels(item.masks, labels).ravel(), "pixel": {}}
    # subsample pixels (every 7th) to keep the pooled ranking small
    for name, u in pixel.items():
        out["pixel"][name] = u.ravel()[::7]
    out["wrong"] = out["wrong"][::7]
    cells = {}
    for name, u in pixel.items():
        ids, conf = cell_confidence(labels, u)
        cells[name] = conf
    out["cells"] = cells
    out["correct"] = correct_cells(item.masks, labels, ids)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=8, help="images per dataset")
    parser.add_argument("--datasets", default="bbbc039,dsb2018,usiigaci")
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    net = load_model(args.model)
    instances = InstanceSettings.for_model(net)
    result = {"split": args.split, "limit": args.limit, "load_before": os.getloadavg()[0]}
    all_conf, all_correct = [], []
    for dataset in args.datasets.split(","):
        items = load(dataset, args.split)
        step = max(len(items) // args.limit, 1)
        runs = [per_image(item, net, instances) for item in items[::step][: args.limit]]
        wrong = np.concatenate([r["wrong"] for r in runs])
        correct = np.concatenate([r["correct"] for r in runs])
        row = {"images": len(runs), "wrong_pixel_share": round(float(wrong.mean()), 4)}
        row["cells"], row["correct_cell_share"] = int(correct.size), round(float(correct.mean()), 3)
        for name in PIXEL:
            u = np.concatenate([r["pixel"][name] for r in runs])
            c = np.concatenate([r["cells"][name] for r in runs])
            row[f"pixel_auroc[{name}]"] = round(auroc(u, wrong), 3)
            row[f"pixel_ap[{name}]"] = round(average_precision(u, wrong), 3)
            row[f"cell_auroc[{name}]"] = round(auroc(c, correct), 3)
            row[f"cell_ap[{name}]"] = round(average_precision(c, correct), 3)
        conf = np.concatenate([r["cells"]["entropy"] for r in runs])
        row.update(acceptance(conf, correct))
        result[dataset] = row
        all_conf.append(conf)
        all_correct.append(correct)
        print(dataset, json.dumps(row), flush=True)
    result["pooled"] = acceptance(np.concatenate(all_conf), np.concatenate(all_correct))
    result["load_after"] = os.getloadavg()[0]
    report(result, args.json)


if __name__ == "__main__":
    main()
