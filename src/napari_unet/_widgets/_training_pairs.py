"""The training-data part of the *Train* widget: image/annotation pairs, copied on demand."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, Select
from napari.layers import Image
from napari.utils.notifications import show_error

from ._common import annotation_choices, layer_choices, layer_data, spatial_shape
from ._lifetime import WidgetLifetime
from ._stack_kind import StackKind


class TrainingPairs(Container):
    """Pick the image/annotation pairs to train on.

    The list holds the pairs added with *Add pair*; when it is empty, the pair selected
    in the two combo boxes is used. Pairs whose layers are deleted leave the list.
    The container holds the list and its buttons (in the *Advanced* section of the
    *Train* widget); the two combo boxes, :attr:`image_layer` and
    :attr:`annotation_layer`, go on top of the widget.

    Parameters
    ----------
    viewer : napari.Viewer
    session : UNetSession
        Knows which annotation belongs to which image.
    lifetime : WidgetLifetime
        The lifetime of the widget this part belongs to.
    """

    def __init__(self, viewer, session, lifetime: WidgetLifetime):
        super().__init__()
        self.margins = (0, 0, 0, 0)
        self._pairs: list[tuple] = []
        from napari_unet.training.settings_help import help_text

        self.image_layer = ComboBox(label="image", choices=layer_choices(viewer, Image))
        self._stack = StackKind()  # where the layer does not say: volume, time series, …
        self.stack_kind = self._stack.combo
        self.image_layer.tooltip = help_text("image")
        self.annotation_layer = ComboBox(
            label="annotation", choices=annotation_choices(viewer, session, self.image_layer)
        )
        self.annotation_layer.tooltip = help_text("annotation")
        self.pair_list = Select(label="pairs", choices=self._choices)
        self.pair_list.tooltip = help_text("pairs")
        self.pair_list.native.setMaximumHeight(80)
        self.add_button = PushButton(text="Add pair")
        self.add_button.tooltip = "Add the image and annotation selected on top to the pairs"
        self.remove_button = PushButton(text="Remove selected pairs")
        self.remove_button.tooltip = "Take the pairs selected in the list out of it"
        self.extend([self.pair_list, self.add_button, self.remove_button])

        self.image_layer.changed.connect(lifetime.guard(self._on_image_changed))
        self.add_button.changed.connect(lifetime.guard(self.add_selected))
        self.remove_button.changed.connect(lifetime.guard(self._remove_selected))
        lifetime.connect(viewer.layers.events.removed, self._on_layer_removed)
        self._stack.follow(self.image_layer.value)  # the image chosen before the connection

    def add_selected(self, *_) -> None:
        """Add the pair selected in the combo boxes to the list."""
        image, annotation = self.image_layer.value, self.annotation_layer.value
        if image is None or annotation is None:
            show_error("Select an image and its annotation first.")
            return
        if (image, annotation) not in self._pairs:
            self._pairs.append((image, annotation))
        self.pair_list.reset_choices()

    def pairs(self) -> list[tuple]:
        """Return the ``(image_layer, annotation_layer)`` pairs to train on.

        Raises
        ------
        ValueError
            If the list is empty and no pair is selected.
        """
        if self._pairs:
            return list(self._pairs)
        if self.image_layer.value is None or self.annotation_layer.value is None:
            raise ValueError("select an image and its annotation (or add pairs)")
        return [(self.image_layer.value, self.annotation_layer.value)]

    def copy_data(self, dense: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Copy the images and annotations of :meth:`pairs` for a worker, checked.

        Returns
        -------
        images, annotations : list of np.ndarray
            Copies of the layers' data (the layers stay untouched).

        Raises
        ------
        ValueError
            If an annotation does not have its image's shape, a 2D annotation has
            no background or no cell (:func:`napari_unet.method.annotation.validate_annotation`),
            or a volume has nothing painted.
        """
        from napari_unet.method.annotation import validate_annotation
        from napari_unet.method.axes import is_volume
        from napari_unet.training.volumes import check_painted

        images, annotations = [], []
        for image_layer, annotation_layer in self.pairs():
            image, annotation = layer_data(image_layer), layer_data(annotation_layer)
            expected = spatial_shape(image_layer)
            if annotation.shape != expected:
                raise ValueError(
                    f"annotation {annotation_layer.name!r} has shape {annotation.shape} but "
                    f"image {image_layer.name!r} needs {expected}"
                )
            if annotation.ndim == 2:
                validate_annotation(annotation, dense=dense)
            elif is_volume(self._stack.axes_and_spacing(image_layer)[0]):
                check_painted(annotation, f"the volume {annotation_layer.name!r}", dense)
            images.append(image)
            annotations.append(annotation)
        return images, annotations

    def axes_and_spacings(self) -> tuple[list[str], list]:
        """Per pair of :meth:`pairs`: the image's axes, and a volume's voxel size.

        The axes carry a trailing ``C`` for RGB; the voxel size comes from the layer's
        ``scale`` (``None`` for what is not a volume).

        Raises
        ------
        ValueError
            As :meth:`~._stack_kind.StackKind.axes_and_spacing`.
        """
        axes, spacings = [], []
        for image_layer, _ in self.pairs():
            name, spacing = self._stack.axes_and_spacing(image_layer)
            axes.append(name + ("C" if image_layer.rgb else ""))
            spacings.append(spacing)
        return axes, spacings

    # -- internals ---------------------------------------------------------------------
    def _choices(self, _widget=None):
        return [
            (f"{image.name}  ←  {annotation.name}", (image, annotation))
            for image, annotation in self._pairs
        ]

    def _on_image_changed(self, *_) -> None:
        self.annotation_layer.reset_choices()
        self._stack.follow(self.image_layer.value)

    def _remove_selected(self, *_) -> None:
        selected = self.pair_list.value
        self._pairs = [pair for pair in self._pairs if pair not in selected]
        self.pair_list.reset_choices()

    def _on_layer_removed(self, event) -> None:
        self._pairs = [pair for pair in self._pairs if event.value not in pair]
        self.pair_list.reset_choices()
