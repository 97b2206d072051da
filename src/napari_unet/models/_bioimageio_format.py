"""What a bioimage.io package of this project says: its constants, citations and axes rules.

Shared by the export (:mod:`napari_unet.models.bioimageio`), the model card and the package
reader, which import it from here so that none of them imports another in a circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.method.annotation import TARGET_CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from napari_unet.method.network import UNet

INSTALL_HINT = 'pip install "napari-unet-cells[bioimageio]"'
#: Key under the package's ``config`` holding what napari-unet needs to load it back.
CONFIG_KEY = "napari_unet"
#: Names of the description file inside a package (current, legacy).
DESCRIPTION_FILES = ("bioimageio.yaml", "rdf.yaml")
ARCHITECTURE_CALLABLE = "UNet"
ARCHITECTURE_FILE = "network.py"
INPUT_ID = "image"
OUTPUT_ID = "probabilities"
#: Spatial side (pixels) the test output covers at least; the test input is the
#: smallest valid crop of :data:`TEST_IMAGE` around its centre that gives it.
TEST_OUTPUT_SIZE = 96
#: Shipped sample (``napari_unet/data``, CC0) cropped for the test tensors.
TEST_IMAGE = "nuclei.tif"
#: Licence of an exported package unless another is given: the package's own, under
#: which the shipped default model's weights are distributed.
DEFAULT_LICENSE = "BSD-3-Clause"
#: Author of an export of the shipped model; others need ``authors`` (or get this
#: placeholder, to be edited before sharing).
SHIPPED_AUTHOR = "napari-unet developers"
UNKNOWN_AUTHOR = "napari-unet user"
#: bioimage.io ``id`` given to the shipped default model's package, and the ``parent``
#: of every model fine-tuned from it.
SHIPPED_MODEL_ID = "napari-unet-default"
RONNEBERGER_2015 = {
    "text": "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for "
    "Biomedical Image Segmentation. MICCAI 2015, LNCS 9351, pp. 234-241.",
    "doi": "10.1007/978-3-319-24574-4_28",
}
#: How to cite this project (no DOI yet: the spec accepts only a DOI or a URL, and any
#: URL is fetched when a package is validated, so it is cited in the model card).
PROJECT_CITATION = (
    "napari-unet (distribution napari-unet-cells): the U-Net of Ronneberger et al. 2015 "
    "as a napari plugin, with partial annotation, the separation-border weight map, "
    "background training and overlap-tile prediction."
)


def input_size_rule(model: UNet) -> tuple[int, int]:
    """``(min, step)``: the valid input sizes of one spatial axis are ``min + n * step``.

    Derived from :meth:`~napari_unet.method.network.UNet.valid_input_shape` (188 and 16 for
    depth 5). The output is ``2 * model.halo`` pixels smaller on each axis.
    """
    smallest = model.valid_input_shape((1,))[0]
    step = model.valid_input_shape((smallest + 1,))[0] - smallest
    return smallest, step


def class_names(n_classes: int) -> list[str]:
    """Output channel names (Python identifiers) of a network with ``n_classes``."""
    names = TARGET_CLASSES.get(n_classes, [f"class{i}" for i in range(n_classes)])
    return [n.replace(" ", "_") for n in names]
