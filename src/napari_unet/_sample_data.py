"""npe2 sample data: nuclei with a partial annotation, touching cells (no Qt, no napari).

The files ship in ``napari_unet/data`` (see its README): ``nuclei.tif`` (520×696 uint16
Hoechst field, CC0), ``nuclei_annotation.tif`` (partial annotation: 0 = not annotated,
1 = background strokes, 2.. = 31 complete nuclei of the upper-left quarter),
``nuclei_masks.tif`` (the field's dense hand-drawn instance mask), and ``cells.tif`` /
``cells_masks.tif`` (384×384 uint16 crop of Usiigaci phase-contrast frame set15, MIT, with
its hand-drawn mask: 31 cells, 23 touching another).
"""

from __future__ import annotations

from importlib import resources

#: ``layer.metadata`` key marking the role of a layer the plugin makes ("annotation",
#: "weight_map", "segmentation", "probabilities", "preview"); the widgets read it here.
ROLE_KEY = "napari_unet_role"
SOURCE = "BBBC039 (CC0), field IXMtest_A09_s1; Caicedo et al., Cytometry A 2019"
CELLS_SOURCE = "Usiigaci (MIT), frame set15; Tsai et al., SoftwareX 2019"


def _read(name: str):
    import tifffile

    with resources.as_file(resources.files("napari_unet") / "data" / name) as path:
        return tifffile.imread(path)


def _image_layer():
    return (_read("nuclei.tif"), {"name": "nuclei", "metadata": {"source": SOURCE}}, "image")


def nuclei() -> list[tuple]:
    """Load the nuclei image alone (to start annotating from scratch).

    Returns
    -------
    list of LayerDataTuple
        ``[(image (520, 696) uint16, {"name": "nuclei"}, "image")]``.
    """
    return [_image_layer()]


def nuclei_annotated() -> list[tuple]:
    """Load the nuclei image and its partial annotation, ready to train on.

    Returns
    -------
    list of LayerDataTuple
        The image and a ``labels`` layer ``"nuclei annotation"`` (uint16; 0 = not
        annotated, 1 = background, 2.. = one id per cell).
    """
    annotation = (
        _read("nuclei_annotation.tif"),
        {"name": "nuclei annotation", "metadata": {ROLE_KEY: "annotation", "source": SOURCE}},
        "labels",
    )
    return [_image_layer(), annotation]


def nuclei_ground_truth() -> list[tuple]:
    """Load the nuclei image and its dense ground-truth masks (to compare with).

    Returns
    -------
    list of LayerDataTuple
        The image and a ``labels`` layer ``"nuclei ground truth"`` (0 = background,
        1..N = nuclei).
    """
    masks = (
        _read("nuclei_masks.tif"),
        {"name": "nuclei ground truth", "metadata": {ROLE_KEY: "ground_truth", "source": SOURCE}},
        "labels",
    )
    return [_image_layer(), masks]


def cells_ground_truth() -> list[tuple]:
    """Load touching phase-contrast cells and their dense ground-truth masks.

    Returns
    -------
    list of LayerDataTuple
        ``[(image (384, 384) uint16, {"name": "cells"}, "image"), (masks uint16,
        {"name": "cells ground truth"}, "labels")]`` (0 = background, 1..31 = cells).
    """
    image = (_read("cells.tif"), {"name": "cells", "metadata": {"source": CELLS_SOURCE}}, "image")
    masks = (
        _read("cells_masks.tif"),
        {
            "name": "cells ground truth",
            "metadata": {ROLE_KEY: "ground_truth", "source": CELLS_SOURCE},
        },
        "labels",
    )
    return [image, masks]
