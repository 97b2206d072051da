"""Regenerate the user guide's volume screenshots (docs/images/1x-volume-*.png).

Opens a real napari window on a nuclei volume of ``shared/data/volumes`` (the mouse-embryo
nuclei of BBBC050, ``train`` split, with its voxel size), then: Segment → 3D view of the 3D
cells; two planes painted from the ground truth (as a user would) → Weight map as one
3D layer; a predicted 3D cell accepted into the annotation. Needs a display; without one
it starts a virtual X server (Xvfb, through pyvirtualdisplay). Usage::

    python scripts/screenshots_volumes.py [--volume embryo_8cell] [--out docs/images]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from screenshots import PLUGIN, ROOT, on_a_display, settle, shoot, show_only, wait_until

DATA = ROOT.parent / "shared" / "data" / "volumes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--volume", default="embryo_8cell")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    on_a_display(run, args)


def run(args) -> None:
    import napari
    import numpy as np
    import tifffile
    from qtpy.QtCore import Qt

    from napari_unet._sample_data import ROLE_KEY

    with open(args.data / "index.tsv") as index:
        row = next(r for r in csv.DictReader(index, delimiter="\t") if r["name"] == args.volume)
    scale = tuple(float(v) for v in row["voxel_zyx_um"].split(","))
    volume = tifffile.imread(args.data / "images" / f"{args.volume}.tif")
    truth = tifffile.imread(args.data / "masks" / f"{args.volume}.tif")

    viewer = napari.Viewer(show=True, title="napari-unet")
    viewer.window.resize(1440, 900)
    image = viewer.add_image(volume, name=args.volume, scale=scale, colormap="gray")
    docks, widgets = {}, {}
    for name in ("Weight map", "Train", "Segment"):
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    qt_window = viewer.window._qt_window  # a script, not the plugin: private access is fine
    qt_window.resizeDocks(list(docks.values()), [400] * len(docks), Qt.Orientation.Horizontal)

    # 1. Segment: napari's axis labels say nothing, "stack is a: volume" (the default)
    segment = widgets["Segment"]
    show_only(docks, "Segment")
    segment.image_layer.value = image
    segment.model.value = "default"
    segment.device.value = "cpu"
    segment.run_button.native.click()
    wait_until(lambda: not segment.running)
    labels = segment.last_labels
    if labels is None:
        raise RuntimeError(f"segmentation failed: {segment.info.value}")
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.scene.camera.angles = (-15.0, 35.0, 80.0)  # tilted: the planes stand apart
    viewer.scene.camera.zoom *= 1.2
    image.visible = True
    shoot(viewer, args.out, "11-volume-segment-3d")

    # 2. Two planes painted (background 1, one id per nucleus, from the ground truth), and
    #    the weight map of eq. 2 as one 3D layer (3D distances, the voxel size)
    painted = np.zeros(truth.shape, np.uint16)
    planes = (truth.shape[0] // 3, truth.shape[0] // 2)
    for z in planes:
        painted[z] = np.where(truth[z] > 0, truth[z] + 1, 1)
    annotation = viewer.add_labels(
        painted, name=f"{args.volume} annotation", scale=scale, metadata={ROLE_KEY: "annotation"}
    )
    weight_map = widgets["Weight map"]
    show_only(docks, "Weight map")
    weight_map.annotation_layer.value = annotation
    weight_map.show_button.native.click()
    wait_until(lambda: weight_map.layer is not None and not weight_map.busy)
    labels.visible = image.visible = False
    weight_map.layer.blending = "translucent_no_depth"
    weight_map.layer.rendering = "mip"
    shoot(viewer, args.out, "12-volume-weight-map-3d")

    # 3. A predicted nucleus taken whole (all its planes, one id) into the annotation
    train = widgets["Train"]
    show_only(docks, "Train")
    train.data.image_layer.value = image
    train.data.annotation_layer.value = annotation
    train.accept.source.value = labels
    predicted = np.asarray(labels.data)
    sizes = np.bincount(predicted.ravel())
    sizes[0] = 0
    for c in np.unique(predicted[predicted > 0]):  # nuclei already painted are skipped
        if painted[predicted == c].max() >= 2:
            sizes[c] = 0
    cell = int(np.argmax(sizes))
    position = np.argwhere(predicted == cell).mean(axis=0).round().astype(int)
    if predicted[tuple(position)] != cell:
        position = np.argwhere(predicted == cell)[0]
    train.accept.accept_at(tuple(np.multiply(position, scale)))
    print(train.accept.status.value)
    weight_map.layer.visible = False
    annotation.visible = image.visible = True
    viewer.layers.selection.active = annotation
    settle()
    shoot(viewer, args.out, "13-volume-accept-3d")
    viewer.close()


if __name__ == "__main__":
    main()
