"""Regenerate the small CC0 sample shipped in ``src/napari_unet/data``.

Source: BBBC039 (CC0), field IXMtest_A09_s1 (``train`` split of ../shared/data).
Writes the raw field, its dense hand-drawn instance mask and a *partial*
annotation in the plugin's convention (0 = not annotated, 1 = background,
2.. = cells) that imitates what a biologist paints in a few minutes: the
complete nuclei of the upper-left quarter and a few background brush strokes.
"""

from pathlib import Path

import numpy as np
import tifffile
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


if __name__ == "__main__":
    main()
