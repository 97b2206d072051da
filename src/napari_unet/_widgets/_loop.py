"""*U-Net* dock widget: the whole interactive loop in one dock.

Tabs hold the four widgets (*Annotate*, *Weight map*, *Train* with its live preview
and corrections, *Segment*), sharing the viewer's session as the separate docks do;
above the tabs one button segments the whole image or stack with the model trained
in this session. The widgets are the same classes as the separate docks, which stay
available.
"""

from __future__ import annotations

from magicgui.widgets import Container, PushButton
from napari.utils.notifications import show_error

from ._annotate import AnnotateWidget
from ._lifetime import WidgetLifetime
from ._segment import SegmentWidget
from ._session import session_for
from ._train import TrainWidget
from ._weight_map import WeightMapWidget


class LoopWidget(Container):
    """Annotate, train with a live preview, correct, and segment, in one dock.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        from qtpy.QtWidgets import QScrollArea, QTabWidget

        super().__init__(labels=False)
        self._session = session_for(napari_viewer)
        self._lifetime = WidgetLifetime(self.native)
        self.annotate = AnnotateWidget(napari_viewer)
        self.weight_map = WeightMapWidget(napari_viewer)
        self.train = TrainWidget(napari_viewer)
        self.segment = SegmentWidget(napari_viewer)
        self.tabs = QTabWidget()
        for name, widget in (
            ("Annotate", self.annotate),
            ("Weight map", self.weight_map),
            ("Train", self.train),
            ("Segment", self.segment),
        ):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(widget.native)
            self.tabs.addTab(scroll, name)
        self.native.layout().addWidget(self.tabs)
        self.segment_button = PushButton(text="Segment whole image")
        self.segment_button.tooltip = (
            "Segment the whole image (or stack) being trained on with the model trained "
            "in this session; the result is a new Labels layer"
        )
        self.append(self.segment_button)
        self.segment_button.changed.connect(self._lifetime.guard(self.segment_all))
        self._lifetime.connect(self._session.model_changed, self._on_model_changed)
        self._on_model_changed(self._session.model)

    def show_tab(self, name: str) -> None:
        """Bring the tab ``name`` ("Annotate", "Weight map", "Train", "Segment") forward."""
        for index in range(self.tabs.count()):
            if self.tabs.tabText(index) == name:
                self.tabs.setCurrentIndex(index)
                return
        raise ValueError(f"no tab {name!r}")

    def segment_all(self, *_):
        """Segment the image of the training pair with the session's model.

        Returns the Segment tab's worker, or ``None`` (the reason is shown).
        """
        if self._session.model is None:
            show_error("Train first: there is no model trained in this session yet.")
            return None
        image = self.train.data.image_layer.value
        if image is None:
            show_error("Select the image to segment in the Train tab.")
            return None
        if self.segment.running:
            return None
        self.segment.image_layer.value = image
        self.segment.model.value = "session"
        self.show_tab("Segment")
        return self.segment.run()

    def _on_model_changed(self, model) -> None:
        self.segment_button.enabled = model is not None
