"""Pack training data into one compressed file, to train the default model on another machine.

    python scripts/pack_training_data.py --output runs/packed/data.npz [--datasets bbbc039 dsb2018 usiigaci]

Each image is reduced to the grey plane the network sees (``nuclei_data.grey``) and
stored as uint8 after a 0.1/99.9 % percentile stretch (the network normalises by its own
percentiles again, so only the quantisation is lost); masks are stored as uint16. Each
array is compressed with LZMA (a fifth smaller than zlib here, which matters for carrying
the file to a GPU machine). ``train_default_model.py --packed FILE`` reads it instead of
../shared/data (``nuclei_data.load_packed``). ``--every N`` keeps every N-th image.
"""

from __future__ import annotations

import argparse
import lzma
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nuclei_data import grey, load  # noqa: E402


def to_uint8(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, (0.1, 99.9))
    scaled = (plane.astype(np.float32) - low) / max(high - low, 1e-6)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=["bbbc039", "dsb2018"])
    p.add_argument("--splits", nargs="+", default=["train"])
    p.add_argument(
        "--every", type=int, nargs="+", default=[1], help="per dataset: keep every N-th image"
    )
    args = p.parse_args()
    arrays, index = {}, []
    every = dict(
        zip(args.datasets, args.every * len(args.datasets) if len(args.every) == 1 else args.every, strict=False)
    )
    for dataset in args.datasets:
        for split in args.splits:
            for n, item in enumerate(load(dataset, split)):
                if item.kind == "grey brightfield" or n % every[dataset]:
                    continue
                key = f"{dataset}/{split}/{item.name}"
                for part, array in (
                    ("image", to_uint8(grey(item.image))),
                    ("masks", item.masks.astype(np.uint16)),
                ):
                    arrays[f"{part}:{key}"] = np.frombuffer(
                        lzma.compress(array.tobytes(), preset=6), np.uint8
                    )
                    index.append(
                        f"{part}:{key}\t{item.kind}\t{array.dtype.str}\t{array.shape[0]}\t{array.shape[1]}"
                    )
    arrays["index"] = np.array(index)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.output, **arrays)
    print(f"{len(index)} images -> {args.output} ({args.output.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
