"""Helpers of the GUI tests: the plugin's docks on the shipped sample, a tiny network."""

from __future__ import annotations

from dataclasses import dataclass

PLUGIN = "napari-unet-cells"
SCALE = (0.65, 0.65)  # µm per pixel
TRANSLATE = (12.0, -7.5)


def dock(viewer, name):
    """Open the plugin's dock widget ``name`` in ``viewer``; return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def open_sample(viewer, key="nuclei_annotated"):
    """Open a sample of the plugin with a non-trivial scale and translation."""
    viewer.open_sample(PLUGIN, key)
    for layer in viewer.layers:
        layer.scale, layer.translate = SCALE, TRANSLATE
    return viewer.layers["nuclei"]


def world(pixel) -> tuple[float, ...]:
    """World coordinates of a data pixel ``(y, x)`` of the sample layers."""
    return tuple(float(p) * s + t for p, s, t in zip(pixel, SCALE, TRANSLATE, strict=True))


def tiny_training(train, n_iterations: int = 5) -> None:
    """A network small enough to train a few iterations on two CPU cores."""
    train.settings.start_from.value = "scratch"
    train.settings.depth.value = 3
    train.settings.base_channels.value = 8
    train.settings.tile_size.value = 92
    train.settings.batch_size.value = 2
    train.settings.learning_rate.value = 1e-2
    train.settings.seed.value = 1
    train.settings.device.value = "cpu"
    train.settings.n_iterations.value = n_iterations


@dataclass
class MouseEvent:
    """What napari's mouse callbacks read of a vispy mouse event (as in napari's tests)."""

    type: str
    position: tuple[float, ...]
    button: int = 1
    modifiers: tuple = ()
    is_dragging: bool = False
    dims_displayed: tuple[int, ...] = (0, 1)
    dims_point: list[float] | None = None
    view_direction: list[float] | None = None
    pos: tuple[int, int] = (0, 0)
    handled: bool = False


def click(target, position) -> None:
    """Press and release the left button at ``position`` (world) on a viewer or layer."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    mouse_press_callbacks(target, ReadOnlyWrapper(MouseEvent("mouse_press", position)))
    mouse_release_callbacks(target, ReadOnlyWrapper(MouseEvent("mouse_release", position)))
