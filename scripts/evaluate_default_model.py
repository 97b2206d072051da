"""Score the default model and a classical baseline on the test splits; write the table.

    python scripts/evaluate_default_model.py [--model default] [--output docs/default-model-results.md]

Measures per image, then averages over images: the Cell Tracking Challenge SEG measure
(mean matched IoU per ground-truth nucleus) and average precision at IoU 0.5
(TP / (TP + FP + FN), as in the 2018 Data Science Bowl). The baseline is the classical
pipeline: Gaussian smoothing, Otsu threshold, distance-transform watershed (scikit-image),
run on the same grey (RGB-inverted) input as the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nuclei_data import grey, load  # noqa: E402

from napari_unet.inference.segment import iter_segment  # noqa: E402
from napari_unet.metrics import average_precision, seg_score  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402


def classical_baseline(gray: np.ndarray, sigma: float = 2.0, min_distance: int = 5) -> np.ndarray:
    """Gaussian + Otsu + distance-transform watershed."""
    smooth = gaussian(gray.astype(np.float32), sigma=sigma, preserve_range=True)
    mask = smooth > threshold_otsu(smooth)
    mask = remove_small_objects(mask, max_size=15)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=ndi.label(mask)[0], exclude_border=False
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


def tune_baseline(dataset: str, n: int = 20) -> int:
    """The watershed's ``min_distance`` with the best mean AP@0.5 on ``n`` val images."""
    items = load(dataset, "val", n)
    best = max(
        (
            np.mean(
                [
                    average_precision(i.masks, classical_baseline(grey(i.image), min_distance=d))
                    for i in items
                ]
            ),
            d,
        )
        for d in (5, 7, 9, 11, 13, 21, 31)
    )
    print(f"{dataset}: baseline min_distance {best[1]} (val AP@0.5 {best[0]:.3f})", flush=True)
    return best[1]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="default")
    p.add_argument("--split", default="test")
    p.add_argument("--precision", default="float32")
    p.add_argument("--output", type=Path, default=Path("docs/default-model-results.md"))
    args = p.parse_args()
    model = load_model(args.model)
    scores = defaultdict(lambda: defaultdict(list))
    seconds = 0.0
    tuned = {}
    for dataset in ("bbbc039", "dsb2018", "usiigaci"):
        tuned[dataset] = min_distance = tune_baseline(dataset)
        for item in load(dataset, args.split):
            t0 = time.perf_counter()
            result = run_to_completion(iter_segment(item.image, model, precision=args.precision))
            seconds += time.perf_counter() - t0
            baseline = classical_baseline(grey(item.image), min_distance=min_distance)
            groups = [dataset] + ([f"{dataset} {item.kind}"] if dataset == "dsb2018" else [])
            for group in groups:
                for method, labels in (
                    ("U-Net (default model)", result.labels),
                    ("Otsu + watershed", baseline),
                ):
                    scores[group][method, "seg"].append(seg_score(item.masks, labels))
                    scores[group][method, "ap"].append(average_precision(item.masks, labels))
            print(
                f"{dataset} {item.name[:16]} {item.kind}: U-Net AP {scores[dataset]['U-Net (default model)', 'ap'][-1]:.3f} "
                f"baseline AP {scores[dataset]['Otsu + watershed', 'ap'][-1]:.3f}",
                flush=True,
            )
    lines = [
        f"| data ({args.split} split) | images | method | SEG (mean matched IoU) | AP@0.5 |",
        "|---|---|---|---|---|",
    ]
    for group, by in scores.items():
        for method in ("U-Net (default model)", "Otsu + watershed"):
            seg = np.nanmean(by[method, "seg"])
            ap = np.mean(by[method, "ap"])
            lines.append(f"| {group} | {len(by[method, 'ap'])} | {method} | {seg:.3f} | {ap:.3f} |")
    table = "\n".join(lines)
    meta = model.metadata
    args.output.write_text(
        f"<!-- written by scripts/evaluate_default_model.py --model {args.model} --split {args.split} -->\n"
        f"{table}\n\nU-Net prediction time over the split: {seconds:.0f} s "
        f"({args.precision}); post-processing {meta.get('postprocessing')}; baseline watershed "
        f"min_distance chosen on val: {tuned}.\n"
    )
    print(table)


if __name__ == "__main__":
    main()
