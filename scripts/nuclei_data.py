"""Load the project's data (../shared/data) by split: nuclei (BBBC039, DSB2018; CC0) and
phase-contrast cells (Usiigaci; MIT)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from skimage.io import imread

DATA = Path(
    os.environ.get("NAPARI_UNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
#: Extra public data sets beside the repository (not in ../shared; each folder holds its
#: README, LICENSE, split.tsv, images/<name>.tif and masks/<name>.png): BBBC030 DIC CHO cells
#: (CC BY 3.0) and Usiigaci sets 26-45 (MIT). Used by benchmarks when present.
EXTRA = Path(
    os.environ.get("NAPARI_UNET_EXTRA_DATA", Path(__file__).resolve().parents[2] / "extra_data")
)
#: Extra data set name -> (folder under EXTRA, kind of image).
EXTRA_SETS = {
    "bbbc030": ("bbbc030_cho_dic", "DIC"),
    "usiigaci2": ("usiigaci_26-45", "phase contrast"),
}


@dataclass
class Item:
    dataset: str
    name: str
    image: np.ndarray  # (Y, X) grey or (Y, X, 3) RGB
    masks: np.ndarray  # (Y, X) uint16 instances, 0 = background
    kind: str  # "fluorescence", "colour", "grey brightfield"


def grey(image: np.ndarray) -> np.ndarray:
    """The 2D grey plane the network sees (RGB: luminance, inverted on bright background)."""
    from napari_unet.method.images import image_layout, iter_planes

    return np.asarray(next(iter_planes(image, image_layout(image)))[1])


def _split(folder: Path) -> dict[str, str]:
    with open(folder / "split.tsv") as f:
        return {row["name"]: row["split"] for row in csv.DictReader(f, delimiter="\t")}


def load(dataset: str, split: str, limit: int | None = None) -> list[Item]:
    """Images and masks of one split of a data set (``"bbbc039"``, ``"dsb2018"``,
    ``"usiigaci"``, or one of :data:`EXTRA_SETS`)."""
    kind = "phase contrast"
    folder = DATA / dataset
    if dataset in EXTRA_SETS:
        folder, kind = EXTRA / EXTRA_SETS[dataset][0], EXTRA_SETS[dataset][1]
    names = sorted(n for n, s in _split(folder).items() if s == split)[:limit]
    items = []
    if dataset == "usiigaci" or dataset in EXTRA_SETS:
        return [
            Item(
                dataset,
                n,
                tifffile.imread(folder / "images" / f"{n}.tif"),
                imread(folder / "masks" / f"{n}.png"),
                kind,
            )
            for n in names
        ]
    if dataset == "bbbc039":
        for n in names:
            items.append(
                Item(
                    dataset,
                    n,
                    tifffile.imread(folder / "images" / f"{n}.tif"),
                    imread(folder / "masks" / f"{n}.png"),
                    "fluorescence",
                )
            )
        return items
    with open(folder / "index.tsv") as f:
        index = {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}
    for n in names:
        rgba = imread(folder / "images" / f"{n}.png")
        colour = index[n]["color"] == "color"
        if colour:
            image, kind = rgba[..., :3], "colour"
        else:
            image = rgba[..., 0]
            kind = "grey brightfield" if float(index[n]["mean_intensity"]) > 100 else "fluorescence"
        items.append(Item(dataset, n, image, imread(folder / "masks" / f"{n}.png"), kind))
    return items


def touching_cells(masks: np.ndarray) -> np.ndarray:
    """Ids of the cells of an instance mask that touch another cell (8-connectivity).

    int32, not int64: scipy's rank filters lose the int64 maximum used as "no cell"
    (every cell then counts as touching).
    """
    from scipy import ndimage as ndi

    masks = masks.astype(np.int32)
    big = np.iinfo(np.int32).max
    highest = ndi.maximum_filter(masks, size=3)
    lowest = ndi.minimum_filter(np.where(masks > 0, masks, big), size=3)
    return np.unique(masks[(masks > 0) & ((highest > masks) | (lowest < masks))])


def load_packed(path: Path, split: str) -> list[Item]:
    """Items of one split from a file written by pack_training_data.py."""
    import lzma

    data = np.load(path)
    arrays, kinds = {}, {}
    for row in data["index"]:
        name, kind, dtype, height, width = str(row).split("\t")
        raw = lzma.decompress(data[name].tobytes())
        arrays[name] = np.frombuffer(raw, np.dtype(dtype)).reshape(int(height), int(width))
        kinds[name.split(":", 1)[1]] = kind
    items = []
    for key, kind in kinds.items():
        dataset, item_split, name = key.split("/")
        if item_split == split:
            items.append(Item(dataset, name, arrays[f"image:{key}"], arrays[f"masks:{key}"], kind))
    return items
