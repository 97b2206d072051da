"""The Segment widget on a lazy (dask) whole-slide layer: no copy, labels on disk (issue 12)."""

import tracemalloc

import numpy as np
import pytest
from napari_helpers import dock

pytestmark = pytest.mark.gui
zarr = pytest.importorskip("zarr")


def test_segment_a_dask_layer_in_bounded_memory(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import dask.array as da
    from conftest import _sample

    from napari_unet._widgets._common import layer_data
    from napari_unet.inference import blocks
    from napari_unet.inference import to_zarr as large_images
    from napari_unet.method.network import UNet
    from napari_unet.models.files import save_model
    from napari_unet.runtime.progress import run_to_completion

    # a 3072 x 3072 slide made lazily of the 384 px sample; labels "too large for memory"
    cells = np.array(_sample("cells.tif"))
    slide = da.block([[da.from_array(cells, chunks=192)] * 8] * 8)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the widget's labels folder
    monkeypatch.setattr(large_images, "IN_MEMORY_SHARE", 1e-9)
    monkeypatch.setattr(blocks, "DEFAULT_BLOCK_SIDE", 512)  # 36 blocks
    monkeypatch.setattr(
        "napari_unet.io.zarr_files.PYRAMID_MIN_SIDE", 1024
    )  # levels of 1536, 768 px
    model = save_model(UNet(depth=2, base_channels=4), tmp_path / "tiny.safetensors")
    # what the first run imports is not the image's memory: import it before measuring
    warm_up = large_images.iter_segment_to_zarr(slide[:64, :64], tmp_path / "w.zarr", model)
    run_to_completion(warm_up)

    viewer = make_napari_viewer()
    layer = viewer.add_image(slide, name="slide", scale=(0.5, 0.5))
    assert layer_data(layer) is slide  # read tile by tile, never copied
    segment = dock(viewer, "Segment")
    segment.image_layer.value = layer
    segment.model.value = "file"
    segment.model_file.value = model
    segment.device.value = "cpu"
    segment.add_probabilities.value = True  # none for an image this large: not an error

    full_labels_bytes = slide.size * 4  # int32 labels of the whole slide: 36 MiB
    tracemalloc.start()
    try:
        segment.run_button.native.click()
        qtbot.waitUntil(lambda: not segment.running, timeout=120000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    labels = segment.last_labels
    assert labels is not None, segment.info.value
    # the blocks, a 4-megapixel sample for the percentiles and the display, not the slide
    assert peak < full_labels_bytes, f"peak {peak / 2**20:.1f} MiB"
    assert labels.multiscale and [d.shape for d in labels.data] == [
        (3072, 3072),
        (1536, 1536),
        (768, 768),
    ]
    assert all(isinstance(d, da.Array) for d in labels.data)  # lazy, from zarr on disk
    store = labels.metadata["store"]
    assert str(store).startswith(str(tmp_path))
    assert zarr.open_array(store=store, path="0", mode="r").chunks == (512, 512)
    assert "labels on disk" in segment.info.value and tuple(labels.scale) == (0.5, 0.5)
    assert len(viewer.layers) == 2  # no probability layer
