"""Small helpers shared by the widgets: layer data, layer choices, disabled choices."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from magicgui.widgets import ComboBox, Label
from napari.layers import Image, Labels

from napari_unet._sample_data import ROLE_KEY  # noqa: F401 (the widgets import it from here)

DEVICE_LABELS = {
    "auto": "auto",
    "cpu": "CPU",
    "cuda": "CUDA (NVIDIA GPU)",
    "mps": "MPS (Apple GPU)",
}


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same layer.

    napari hands plugins its objects wrapped in a ``PublicOnlyProxy``, a new wrapper
    at every access, so ``is`` fails between two wrappers of one layer.
    """
    return a is not None and getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def is_lazy(layer) -> bool:
    """Whether a layer's data is read on demand: multiscale, or not a numpy array (dask, zarr)."""
    return bool(getattr(layer, "multiscale", False)) or not isinstance(layer.data, np.ndarray)


def full_resolution(layer):
    """A layer's data, or the full-resolution level of a multiscale layer (not copied)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_data(layer):
    """A layer's data for a worker (the full-resolution level of a multiscale layer).

    Work in a thread must never read a layer the user can still edit, so in-memory
    data is copied to numpy. Lazy data (dask or zarr arrays, multiscale pyramids) cannot
    be painted and may not fit in memory: its backing array is returned as it is, and
    the core reads it tile by tile.
    """
    data = full_resolution(layer)
    return data if is_lazy(layer) else np.array(data, copy=True)


def spatial_shape(image_layer: Image) -> tuple[int, ...]:
    """Shape of the label image that goes with ``image_layer`` (its shape without RGB)."""
    shape = tuple(int(s) for s in full_resolution(image_layer).shape)
    return shape[:-1] if image_layer.rgb else shape


def displayed_plane(viewer, layer) -> tuple[int, ...]:
    """Indices of ``layer``'s leading axes (before Y, X and RGB) at the viewer's position.

    ``()`` for a single plane; each index clipped to its axis.
    """
    shape = full_resolution(layer).shape
    n_leading = len(shape) - (3 if getattr(layer, "rgb", False) else 2)
    if n_leading <= 0:
        return ()
    point = layer.world_to_data(viewer.dims.point)
    return tuple(int(np.clip(round(float(point[i])), 0, shape[i] - 1)) for i in range(n_leading))


def placement(layer) -> dict:
    """``scale`` and ``translate`` of ``layer``, to align new layers with it."""
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}


def add_above(viewer, image, add: Callable):
    """Add a layer (``add()``) just above ``image``; the active layer stays active.

    The live loop's layers go there: over the image, under the annotation the user paints.
    """
    layers = viewer.layers
    active = layers.selection.active
    layer = add()
    layers.move(layers.index(layer), layers.index(image) + 1)
    if active is not None:
        layers.selection.active = active
    return layer


def layer_choices(viewer, kind: type, accept: Callable | None = None) -> Callable:
    """Make a magicgui ``choices`` callable listing the viewer's layers of type ``kind``."""

    def choices(_widget=None) -> list[tuple[str, object]]:
        return [
            (layer.name, layer)
            for layer in viewer.layers
            if isinstance(layer, kind) and (accept is None or accept(layer))
        ]

    return choices


def annotation_choices(viewer, session, image_combo: ComboBox) -> Callable:
    """Choices of annotation layers for the image selected in ``image_combo``.

    Only Labels layers with the image's shape are offered; the one paired with the
    image in the session comes first, then layers marked as annotations.
    """

    def choices(_widget=None) -> list[tuple[str, object]]:
        image = image_combo.value
        if image is None:
            return []
        shape = spatial_shape(image)
        candidates = [
            layer
            for layer in viewer.layers
            if isinstance(layer, Labels) and tuple(layer.data.shape) == shape
        ]
        paired = session.annotation_for(image)

        def rank(layer) -> int:
            if layer is paired:
                return 0
            return 1 if layer.metadata.get(ROLE_KEY) == "annotation" else 2

        return [(layer.name, layer) for layer in sorted(candidates, key=rank)]

    return choices


def disable_choices(combo: ComboBox, disabled: Mapping[object, str]) -> None:
    """Grey out some choices of a magicgui ComboBox, with a tooltip saying why.

    If the current value is disabled, the first enabled choice is selected.
    """
    native = combo.native
    model = native.model()
    first_enabled = None
    for index in range(native.count()):
        value = native.itemData(index)
        item = model.item(index)
        enabled = value not in disabled
        item.setEnabled(enabled)
        item.setToolTip(disabled.get(value, ""))
        if enabled and first_enabled is None:
            first_enabled = value
    if combo.value in disabled and first_enabled is not None:
        combo.value = first_enabled


def message_label() -> Label:
    """Make a Label for status messages: it wraps and takes the full width."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def device_combo(label: str = "device") -> ComboBox:
    """Device choice (auto / CPU / CUDA / MPS); devices absent on this machine are disabled."""
    from napari_unet.runtime.devices import DEVICE_CHOICES, available_devices

    combo = ComboBox(
        label=label,
        choices=[(DEVICE_LABELS.get(d, d), d) for d in DEVICE_CHOICES],
        value="auto",
        tooltip="auto: CUDA if present, then Apple MPS, then CPU",
    )
    available = set(available_devices()) | {"auto"}
    disable_choices(
        combo,
        {d: f"{d} is not available on this machine" for d in DEVICE_CHOICES if d not in available},
    )
    return combo


#: Speed (percent of normal) of napari's busy indicator while training runs. The indicator
#: is an animated GIF in the status bar; each of its frames repaints the window, which
#: under software OpenGL (Xvfb, remote desktops, VMs) halved training throughput on a
#: 2-core CPU, and at 10 % costs a few percent (docs/benchmarks.md).
TRAINING_INDICATOR_SPEED = 10


def _busy_indicators(window) -> list:
    """The animations (``QMovie``) of labels in ``window``: napari's busy indicator."""
    from qtpy.QtWidgets import QLabel

    if window is None:
        return []
    return [label.movie() for label in window.findChildren(QLabel) if label.movie() is not None]


class ActivityReport:
    """One line in napari's activity dock (``napari.utils.progress``) for a long job.

    Parameters
    ----------
    description : str
        What runs, e.g. ``"U-Net training"``.
    window : QWidget, optional
        The napari window (``widget.native.window()``), to slow down its busy indicator.
    indicator_speed : int
        Speed of that indicator while this line is open, percent (100: napari's own).
    """

    #: Resolution of the bar.
    STEPS = 1000

    def __init__(self, description: str, window=None, indicator_speed: int = 100):
        from napari.utils import progress

        self.bar = progress(total=self.STEPS, desc=description)
        self._slowed = _busy_indicators(window) if indicator_speed != 100 else []
        for movie in self._slowed:
            movie.setSpeed(indicator_speed)

    def set_fraction(self, fraction: float, description: str | None = None) -> None:
        """Move the bar to ``fraction`` (0..1) of the job; optionally re-describe it."""
        n = round(min(max(float(fraction), 0.0), 1.0) * self.STEPS)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)
        if description is not None:
            self.bar.set_description(description)

    def close(self) -> None:
        """Take the line off the activity dock (and give the indicator its speed back)."""
        self.bar.close()
        for movie in self._slowed:
            try:
                movie.setSpeed(100)
            except RuntimeError:  # deleted with its window
                pass
        self._slowed = []


def scheduler_field(what: str):
    """A text field for a dask scheduler address (empty: run here)."""
    from magicgui.widgets import LineEdit

    field = LineEdit(label="dask scheduler", value="")
    field.tooltip = (
        f"Empty: {what} here. A dask scheduler address (tcp://host:8786) or local:N: {what} "
        "on that cluster (e.g. a worker with a GPU; device auto takes it); needs "
        "napari-unet-cells[distributed]"
    )
    return field


def scheduler_address(field, what: str) -> str | None:
    """The address in a :func:`scheduler_field` (``None`` when empty).

    Raises
    ------
    ValueError
        For a malformed ``local:N``.
    ImportError
        If the ``[distributed]`` extra is not installed.
    """
    address = str(field.value).strip()
    if not address:
        return None
    from napari_unet.distributed.cluster import parse_scheduler, require_distributed

    parse_scheduler(address)
    require_distributed(what)
    return address
