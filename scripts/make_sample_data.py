"""Regenerate the small samples shipped in ``src/napari_unet/data``.

Nuclei (CC0):
Source: BBBC039 (CC0), field IXMtest_A09_s1 (``train`` split of ../shared/data).
Writes the raw field, its dense hand-drawn instance mask and a *partial*
annotation in the plugin's convention (0 = not annotated, 1 = background,
2.. = cells) that imitates what a biologist paints in a few minutes: the
complete nuclei of the upper-left quarter and a few background brush strokes.

Phase-contrast cells (MIT, Usiigaci, train frame set15): the 384x384 crop with the most
touching cells, and its dense hand-drawn instance mask.
"""

from pathlib import Path

import numpy as np
import tifffile
from nuclei_data import touching_cells
from scipy import ndimage as ndi
from skimage.draw import line
from skimage.io import imread
from skimage.segmentation import relabel_sequential

NAME = "IXMtest_A09_s1_w1CE70AD49-290D-4312-82E6-CDC717F32637"
SRC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bbbc039"
DST = Path(__file__).resolve().parents[1] / "src" / "napari_unet" / "data"


def main() -> None:
    image = tifffile.imread(SRC / "images" / f"{NAME}.tif")
    masks = relabel_sequential(imread(SRC / "masks" / f"{NAME}.png").astype(np.uint16))[0]
    rng = np.random.default_rng(0)

    region = np.zeros(masks.shape, bool)
    region[:260, :348] = True
    annotation = np.zeros(masks.shape, np.uint16)
    next_id = 2
    for i, sl in enumerate(ndi.find_objects(masks), start=1):
        if sl is None:
            continue
        cell = masks == i
        if region[cell].all():
            annotation[cell] = next_id
            next_id += 1
    far_from_cells = ndi.distance_transform_edt(masks == 0) > 2
    strokes = np.zeros(masks.shape, bool)
    for _ in range(14):
        r0, c0 = rng.integers(0, 260), rng.integers(0, 348)
        r1, c1 = (
            np.clip(r0 + rng.integers(-60, 60), 0, 259),
            np.clip(c0 + rng.integers(-80, 80), 0, 347),
        )
        rr, cc = line(r0, c0, r1, c1)
        strokes[rr, cc] = True
    strokes = ndi.binary_dilation(strokes, iterations=3) & far_from_cells & region
    annotation[strokes] = 1

    DST.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(DST / "nuclei.tif", image, compression="zlib")
    tifffile.imwrite(DST / "nuclei_masks.tif", masks, compression="zlib")
    tifffile.imwrite(DST / "nuclei_annotation.tif", annotation, compression="zlib")
    print(
        f"cells annotated: {next_id - 2}, background px: {int(strokes.sum())}, nuclei: {masks.max()}"
    )


# -- phase-contrast cells (Usiigaci, MIT) ---------------------------------------------------
CELLS_NAME = "set15"
CELLS_SRC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "usiigaci"
CELLS_CROP = 384


def make_cells_sample() -> None:
    """A 384x384 crop of a train frame of Usiigaci with the most touching cells."""
    image = tifffile.imread(CELLS_SRC / "images" / f"{CELLS_NAME}.tif")
    masks = imread(CELLS_SRC / "masks" / f"{CELLS_NAME}.png").astype(np.int32)
    best = None
    for y in range(0, masks.shape[0] - CELLS_CROP + 1, 32):
        for x in range(0, masks.shape[1] - CELLS_CROP + 1, 32):
            crop = masks[y : y + CELLS_CROP, x : x + CELLS_CROP]
            n = len(touching_cells(crop))
            if best is None or n > best[0]:
                best = (n, y, x)
    _, y, x = best
    window = (slice(y, y + CELLS_CROP), slice(x, x + CELLS_CROP))
    crop_masks = relabel_sequential(masks[window])[0].astype(np.uint16)
    tifffile.imwrite(DST / "cells.tif", image[window], compression="zlib")
    tifffile.imwrite(DST / "cells_masks.tif", crop_masks, compression="zlib")
    print(
        f"cells: crop y={y} x={x} of {CELLS_NAME}, {crop_masks.max()} cells, "
        f"{len(touching_cells(crop_masks))} touching"
    )


if __name__ == "__main__":
    main()
    make_cells_sample()
