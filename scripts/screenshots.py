"""Regenerate the user-guide screenshots (docs/images/*.png) in a real napari window.

Runs the whole workflow on the shipped sample: open sample → annotate → weight map →
train with the live preview → accept predicted cells, train again → segment → the
one-dock widget → export. Needs a display; without one it starts a virtual X server
(Xvfb, through pyvirtualdisplay). Usage::

    python scripts/screenshots.py [--iterations 300] [--threads 1] [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-unet-cells"


def wait_until(condition, timeout_s: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the workflow step did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() > end)


def show_only(docks: dict, name: str) -> None:
    for key, dock in docks.items():
        dock.setVisible(key == name)
    settle()


def shoot(viewer, out: Path, name: str) -> None:
    settle(0.8)
    path = out / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    on_a_display(run, args)


def on_a_display(run, args) -> None:
    """``run(args)`` on the display there is, or on a virtual one (Xvfb) of 1600×1000."""
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        run(args)
    finally:
        if display is not None:
            display.stop()


def run(args) -> None:
    import napari
    import numpy as np
    import torch
    from qtpy.QtCore import Qt
    from scipy import ndimage as ndi

    from napari_unet._sample_data import nuclei_ground_truth
    from napari_unet._widgets import TrainingState, session_for

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out
    viewer = napari.Viewer(show=True, title="napari-unet")
    viewer.window.resize(1440, 900)

    # 1. File > Open Sample > U-Net > Nuclei + partial annotation
    viewer.open_sample(PLUGIN, "nuclei_annotated")
    image = viewer.layers["nuclei"]
    annotation = viewer.layers["nuclei annotation"]
    docks, widgets = {}, {}
    for name in ("Annotate", "Weight map", "Train", "Segment"):
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    qt_window = viewer.window._qt_window  # a script, not the plugin: private access is fine
    qt_window.resizeDocks(list(docks.values()), [400] * len(docks), Qt.Orientation.Horizontal)
    show_only(docks, "Annotate")
    viewer.reset_view()
    shoot(viewer, out, "01-sample")

    # 2. Annotate: one more nucleus with "New cell", and a background stroke, painted
    #    where the sample's ground truth says they are (as a user would, by eye)
    annotate = widgets["Annotate"]
    masks = nuclei_ground_truth()[1][0]
    outside = masks.copy()
    outside[:260, :348] = 0  # the sample annotation covers the upper-left quarter
    ids, counts = np.unique(outside[200:330, 348:460], return_counts=True)
    nucleus = int(ids[1:][np.argmax(counts[1:])])
    annotate.cell_button.native.click()
    annotation.data_setitem(np.nonzero(masks == nucleus), annotation.selected_label)
    free = ndi.distance_transform_edt(masks == 0) > 3
    band = np.zeros_like(free)
    band[300:306, 360:560] = True
    annotate.background_button.native.click()
    annotation.data_setitem(np.nonzero(band & free), 1)
    viewer.scene.camera.center = (220, 330)
    viewer.scene.camera.zoom = 2.2
    shoot(viewer, out, "02-annotate")

    # 3. Weight map of the annotation (eq. 2), live
    weight_map = widgets["Weight map"]
    show_only(docks, "Weight map")
    weight_map.show_button.native.click()
    wait_until(lambda: weight_map.layer is not None and not weight_map.busy)
    viewer.layers.selection.active = weight_map.layer
    annotation.visible = False
    # centre on the highest weight: the separation border between two touching nuclei
    inner = weight_map.layer.data[60:240, 60:300]
    y, x = np.unravel_index(np.argmax(inner), inner.shape)
    viewer.scene.camera.center = (float(y + 60), float(x + 60))
    viewer.scene.camera.zoom = 4.0
    shoot(viewer, out, "03-weight-map")
    weight_map.layer.visible = False
    annotation.visible = True
    viewer.scene.camera.center = (220, 330)
    viewer.scene.camera.zoom = 2.2

    # 4. Train: from the default model when installed, else from scratch; the live
    #    preview segments the view while the network trains
    train = widgets["Train"]
    show_only(docks, "Train")
    train.settings.n_iterations.value = args.iterations
    train.settings.minutes.value = 30.0  # the iteration cap ends the run
    train.settings.seed.value = 1
    if train.settings.start_from.value != "default":
        train.settings.start_from.value = "scratch"
        train.settings.learning_rate.value = 3e-3
    train.start_button.native.click()
    wait_until(lambda: len(train.loss_plot.iterations) >= args.iterations // 3)
    shoot(viewer, out, "04-train-running")
    # pan and zoom onto nuclei nobody annotated: the preview follows the view
    viewer.scene.camera.center = (400, 560)
    viewer.scene.camera.zoom = 3.0
    refreshes = train.preview.n_refreshes
    wait_until(lambda: train.preview.n_refreshes >= refreshes + 2 or not train.state.running)
    shoot(viewer, out, "08-live-preview")
    wait_until(lambda: not train.state.running)
    if train.state is not TrainingState.DONE:
        raise RuntimeError(f"training ended in {train.state}: {train.status.value}")
    wait_until(lambda: not train.preview.busy)  # the preview shows the trained model
    shoot(viewer, out, "05-train-done")

    # 4a. Where to paint next: the uncertainty layer, then "Where next?" jumps to the
    #     first cell of its ranking (live.guidance.DEFAULT_RANKING) nobody annotated
    refreshes = train.preview.n_refreshes
    train.preview.uncertainty.value = True
    viewer.reset_view()
    wait_until(lambda: train.preview.n_refreshes > refreshes and not train.preview.busy)
    shoot(viewer, out, "11-uncertainty")
    train.where_next.button.native.click()
    wait_until(lambda: train.where_next.tour.n_shown >= 1)
    wait_until(lambda: not train.preview.busy and train.preview.region is not None)
    settle(1.0)
    wait_until(lambda: not train.preview.busy)
    shoot(viewer, out, "12-where-next")
    train.preview.uncertainty.value = False
    viewer.scene.camera.center = (400, 560)
    viewer.scene.camera.zoom = 3.0
    wait_until(lambda: not train.preview.busy)

    # 4b. Corrections feed the next round: the predicted nuclei of the view become
    #     annotated cells (one undo step), then a short second round continues
    viewer.layers.selection.active = annotation
    accepted = train.accept.accept_in_view()
    print(f"accepted {accepted} predicted cells into the annotation")
    train.preview.layer.visible = False
    shoot(viewer, out, "09-accept-cells")
    train.preview.layer.visible = True
    assert train.settings.start_from.value == "session"
    train.settings.n_iterations.value = max(args.iterations // 3, 1)
    train.start_button.native.click()
    wait_until(lambda: not train.state.running)
    if train.state is not TrainingState.DONE:
        raise RuntimeError(f"round 2 ended in {train.state}: {train.status.value}")
    wait_until(lambda: not train.preview.busy)

    # 5. Segment with the model just trained
    segment = widgets["Segment"]
    show_only(docks, "Segment")
    assert segment.model.value == "session", session_for(viewer).model_description
    segment.add_probabilities.value = True
    segment.run_button.native.click()
    wait_until(lambda: not segment.running)
    if segment.last_labels is None:
        raise RuntimeError(f"segmentation failed: {segment.info.value}")
    annotation.visible = False
    viewer.reset_view()
    shoot(viewer, out, "06-segment")
    viewer.scene.camera.center = (260, 348)
    viewer.scene.camera.zoom = 2.0
    segment.last_labels.contour = 2
    shoot(viewer, out, "07-segment-zoom")

    # 6. The whole loop in one dock: tabs for the four steps, Segment whole image below
    for dock in docks.values():
        dock.setVisible(False)
    loop_dock, loop = viewer.window.add_plugin_dock_widget(PLUGIN, "U-Net (all steps)")
    qt_window.resizeDocks([loop_dock], [420], Qt.Orientation.Horizontal)
    loop.show_tab("Train")
    segment.last_labels.visible = False
    shoot(viewer, out, "10-one-dock")

    # 7. Export the masks with the plugin's TIFF writer (File > Save Selected Layers works too)
    with tempfile.TemporaryDirectory() as folder:
        (path,) = segment.export_masks(Path(folder) / "masks.tif")
        print(f"exported {Path(path).name} ({Path(path).stat().st_size} bytes)")
    del image
    viewer.close()


if __name__ == "__main__":
    main()
