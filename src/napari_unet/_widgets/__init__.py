"""napari dock widgets of napari-unet (the only place with Qt, magicgui and napari.qt).

Each widget is a magicgui :class:`~magicgui.widgets.Container` built by napari with
the viewer; widgets only gather inputs, copy layer data and run the Qt-free core in
napari thread workers. The widgets of one viewer share a
:class:`~napari_unet._widgets._session.UNetSession` (trained model, training state,
weight-map parameters), found with :func:`~napari_unet._widgets._session.session_for`.

- :class:`AnnotateWidget` - annotation layer, background / new cell / eraser brushes.
- :class:`WeightMapWidget` - live separation-border weight map (eq. 2 of the paper).
- :class:`TrainWidget` - training with a live loss curve, Stop, Save model; a live
  preview of the view while training; predicted cells taken into the annotation.
- :class:`SegmentWidget` - overlap-tile segmentation into a Labels layer, export.
- :class:`LoopWidget` - all of the above as tabs of one dock, and "Segment whole image".
"""

from ._annotate import AnnotateWidget
from ._loop import LoopWidget
from ._segment import SegmentWidget
from ._session import TrainingState, UNetSession, session_for
from ._train import TrainWidget
from ._weight_map import WeightMapWidget

__all__ = [
    "AnnotateWidget",
    "LoopWidget",
    "SegmentWidget",
    "TrainWidget",
    "TrainingState",
    "UNetSession",
    "WeightMapWidget",
    "session_for",
]
