"""Peak memory and time of ``napari_unet.segment`` on a huge image read lazily from zarr.

    PYTHONPATH=src python benchmarks/bench_segment_memory.py [--size 8192]

Tiles the shipped 520x696 nuclei field into a ``size`` x ``size`` uint16 zarr array on
disk, then runs the whole pipeline (overlap-tile prediction, threshold, connected
components, growing cells back over the separation gaps) with the default model and
prints the peak resident memory (VmHWM) of this process. Linux only (/proc).
"""

import argparse
import tempfile
import time
from importlib.resources import files

import tifffile
import zarr
from machine import peak_rss_mib  # noqa: E402

from napari_unet import segment
from napari_unet.models.files import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--precision", default="auto")
    args = p.parse_args()
    field = tifffile.imread(files("napari_unet") / "data" / "nuclei.tif")
    with tempfile.TemporaryDirectory() as tmp:
        image = zarr.create_array(
            store=f"{tmp}/image.zarr", shape=(args.size,) * 2, chunks=(1024, 1024), dtype="uint16"
        )
        fy, fx = field.shape
        for y in range(0, args.size, fy):
            for x in range(0, args.size, fx):
                h, w = min(fy, args.size - y), min(fx, args.size - x)
                image[y : y + h, x : x + w] = field[:h, :w]
        model = load_model("default")
        before = peak_rss_mib()
        t0 = time.perf_counter()
        labels = segment(image, model, precision=args.precision)
        seconds = time.perf_counter() - t0
    n_pixels = args.size**2
    print(
        f"segment() {args.size}x{args.size} uint16 zarr: {seconds:.1f} s, "
        f"{n_pixels / seconds / 1e6:.2f} MP/s, {int(labels.max())} cells"
    )
    print(
        f"peak RSS {peak_rss_mib():.0f} MiB (before segment: {before:.0f} MiB; "
        f"outputs: labels {labels.nbytes / 2**20:.0f} MiB + probabilities {n_pixels * 4 / 2**20:.0f} MiB, "
        f"image {n_pixels * 2 / 2**20:.0f} MiB stays on disk)"
    )


if __name__ == "__main__":
    main()
