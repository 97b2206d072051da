"""The live preview's uncertainty layer and per-cell confidence (issue 18).

The numbers come from the preview's worker (:class:`napari_unet.live.preview.PreviewResult`:
``uncertainty``, ``cell_ids``, ``confidence``, from :mod:`napari_unet.method.uncertainty`);
this module only writes them into layers, on the GUI thread.
"""

from __future__ import annotations

import numpy as np

from ._common import ROLE_KEY, add_above, placement, spatial_shape


def show_confidence(layer, result) -> None:
    """Each cell's confidence in ``layer.features`` (napari shows it on hover)."""
    import pandas as pd

    if result.cell_ids is None:
        return
    layer.features = pd.DataFrame(
        {"index": result.cell_ids, "confidence": np.round(result.confidence, 3)}
    )


class UncertaintyLayer:
    """The ``"{image} uncertainty"`` Image layer: per-pixel uncertainty of the view.

    Parameters
    ----------
    viewer : napari.Viewer
    """

    def __init__(self, viewer):
        self._viewer = viewer
        #: The Image layer, or ``None`` before the first one (or after it was removed).
        self.layer = None
        self._region = None  # the ViewRegion written into it last

    def layer_for(self, image):
        """The layer of ``image`` (added, zero, just above it, when there is none)."""
        viewer, layer = self._viewer, self.layer
        shape = spatial_shape(image)
        if layer is None or layer not in viewer.layers or layer.data.shape != shape:
            self.layer = add_above(
                viewer,
                image,
                lambda: viewer.add_image(
                    np.zeros(shape, np.float32),
                    name=f"{image.name} uncertainty",
                    colormap="magma",
                    contrast_limits=(0.0, 1.0),
                    blending="additive",
                    opacity=0.6,
                    metadata={ROLE_KEY: "uncertainty"},
                    **placement(image),
                ),
            )
            self._region = None
        return self.layer

    def show(self, image, result) -> None:
        """Write a preview's uncertainty into the layer; the region shown before is cleared."""
        if result.uncertainty is None:
            return
        layer = self.layer_for(image)
        old = self._region
        if old is not None and old != result.region and layer.data.ndim == len(old.index):
            layer.data[old.index] = 0
        layer.data[result.region.index] = result.uncertainty
        self._region = result.region
        layer.visible = True
        layer.refresh()

    def set_visible(self, on: bool) -> None:
        """Show or hide the layer (if it is still in the viewer)."""
        if self.layer is not None and self.layer in self._viewer.layers:
            self.layer.visible = on
