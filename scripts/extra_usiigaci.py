"""Build the extra Usiigaci set (``usiigaci2``: sets 26-45) beside the repository.

    git clone https://github.com/oist/Usiigaci   # commit 9501d80, MIT licence
    PYTHONPATH=src python scripts/extra_usiigaci.py path/to/Usiigaci

``../shared/data/usiigaci`` holds 30 of the 50 hand-annotated frames of the Usiigaci
phase-contrast set (Tsai et al., SoftwareX 2019): sets 1-25 and 46-50. The other 20
(``Mask R-CNN/train/set26`` ... ``set45``) are smaller, more crowded cells like the shared
test frames. This script writes them in the shared layout into
``scripts/nuclei_data.EXTRA / "usiigaci_26-45"``: ``images/setNN.tif`` (uint16, zlib),
``masks/setNN.png`` (uint16 instance labels, relabelled 1..N), ``split.tsv`` (a seeded
11 train / 4 val / 5 test split), ``README.md`` and the licence. The source may be a
checkout or a bare git directory (read with ``git show``). Nothing in ``../shared`` is
touched.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from skimage.segmentation import relabel_sequential

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nuclei_data import EXTRA, EXTRA_SETS  # noqa: E402

SETS = range(26, 46)
SPLIT = {"train": 11, "val": 4, "test": 5}
SEED = 2026


def read(source: Path, path: str) -> bytes:
    """One file of the Usiigaci repository, from a checkout or a (bare) git directory."""
    if (source / path).is_file():
        return (source / path).read_bytes()
    return subprocess.run(
        ["git", "--git-dir", str(source), "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", type=Path, help="a checkout (or git directory) of oist/Usiigaci")
    args = p.parse_args()
    out = EXTRA / EXTRA_SETS["usiigaci2"][0]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    names = [f"set{n:02d}" for n in SETS]
    order = np.random.default_rng(SEED).permutation(len(names))
    split, start = {}, 0
    for part, count in SPLIT.items():
        for i in order[start : start + count]:
            split[names[i]] = part
        start += count
    rows = ["name\tsplit\tcells\toriginal"]
    for n, name in zip(SETS, names, strict=True):
        folder = f"Mask R-CNN/train/set{n}"
        image = tifffile.imread(io.BytesIO(read(args.source, f"{folder}/raw.tif")))
        masks = iio.imread(read(args.source, f"{folder}/instances_ids.png"))
        masks = relabel_sequential(masks.astype(np.uint16))[0]
        tifffile.imwrite(out / "images" / f"{name}.tif", image, compression="zlib")
        iio.imwrite(out / "masks" / f"{name}.png", masks)
        rows.append(f"{name}\t{split[name]}\t{int(masks.max())}\ttrain/set{n}")
    (out / "split.tsv").write_text("\n".join(rows) + "\n")
    (out / "LICENSE").write_bytes(read(args.source, "LICENSE"))
    (out / "README.md").write_text(
        "# Usiigaci sets 26-45\n\nHand-annotated phase-contrast frames from github oist/Usiigaci "
        "(`Mask R-CNN/train/set26`..`set45`, MIT licence: `LICENSE`), Tsai et al., SoftwareX 9:230 "
        "(2019). Written by `scripts/extra_usiigaci.py`; split seeded "
        f"({SEED}): {SPLIT}.\n"
    )
    print(f"wrote {len(names)} frames to {out}")


if __name__ == "__main__":
    main()
