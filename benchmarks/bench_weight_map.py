"""Benchmark: fast separation-border weight map against the full-image reference.

Builds a 1024x1024 field of ~400 touching cells (Voronoi cells of random seeds,
grown by ``expand_labels`` until neighbours meet; only a few background holes remain
where seeds are sparse), times ``weight_map_reference`` (one full-image distance transform
per cell) and ``separation_border_weight_map`` (best of several runs), and checks that
they agree to 1e-3.

Run with ``PYTHONPATH=src python benchmarks/bench_weight_map.py [--size 1024] [--cells 400]``.
"""

import argparse
import sys
import time

import numpy as np
from machine import cpu_name  # noqa: E402
from skimage.segmentation import expand_labels

from napari_unet.method.annotation import annotation_to_target
from napari_unet.method.weight_map import separation_border_weight_map
from napari_unet.testing import weight_map_reference

TOLERANCE = 1e-3


def touching_cells(size: int, n_cells: int, seed: int = 0) -> np.ndarray:
    """Dense labels (0 = background, 1..n = cells) of Voronoi cells that touch."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.int32)
    rows, cols = rng.integers(0, size, (2, n_cells))
    seeds[rows, cols] = np.arange(1, n_cells + 1)
    spacing = size / np.sqrt(n_cells)
    # grown by the mean seed spacing: neighbours meet along Voronoi edges, only the
    # largest empty regions (about 6 % of the field) remain background
    return expand_labels(seeds, distance=spacing)


def best_time(function, repeats: int) -> tuple[float, np.ndarray]:
    """Best wall-clock time (seconds) of ``repeats`` calls and the last result."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--w0", type=float, default=10.0)
    parser.add_argument("--sigma", type=float, default=5.0)
    args = parser.parse_args()

    labels = touching_cells(args.size, args.cells)
    n_cells = len(np.unique(labels)) - (0 in labels)
    background = float(np.mean(labels == 0))
    carved = annotation_to_target(labels, dense=True).instances
    n_touching = len(np.unique(labels[(labels > 0) & (carved == 0)]))

    def fast():
        return separation_border_weight_map(labels, args.w0, args.sigma, dense=True)

    def reference():
        return weight_map_reference(labels, args.w0, args.sigma, dense=True)

    fast()  # warm-up (imports, caches)
    t_reference, expected = best_time(reference, 1)
    t_fast, result = best_time(fast, args.repeats)
    error = float(np.max(np.abs(result.astype(np.float64) - expected.astype(np.float64))))

    print(f"machine: {cpu_name()}, python {sys.version.split()[0]}")
    print(
        f"field {args.size}x{args.size}, {n_cells} cells ({n_touching} touch a neighbour), "
        f"{background:.1%} background, "
        f"w0={args.w0:g}, sigma={args.sigma:g}"
    )
    print(
        f"weight map {args.size}x{args.size}, {n_cells} cells: reference {t_reference:.2f} s, "
        f"fast {t_fast:.3f} s, speed-up {t_reference / t_fast:.0f}x, "
        f"max abs error {error:.1e}"
    )
    if error > TOLERANCE:
        print(f"FAIL: max abs error {error:.1e} > {TOLERANCE:g}")
        return 1
    print(f"OK: max abs error <= {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
