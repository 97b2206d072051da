"""The one route choice (issue 17): memory, block-wise zarr or cluster, one result type."""

import numpy as np
import pytest

from napari_unet.inference import to_zarr
from napari_unet.inference.settings import SegmentSettings
from napari_unet.route.segment import ROUTES, Segmentation, choose_route, iter_segment_routed
from napari_unet.runtime.progress import run_to_completion

da = pytest.importorskip("dask.array")


def test_the_route_follows_the_input_and_the_settings(monkeypatch, tmp_path):
    gray, stack = np.zeros((64, 64), np.uint8), np.zeros((2, 64, 64), np.uint8)
    settings = SegmentSettings()
    assert choose_route(gray, settings) == "memory"
    assert choose_route(da.from_array(gray), settings) == "memory"  # fits in memory
    monkeypatch.setattr(to_zarr, "IN_MEMORY_SHARE", 1e-12)  # now nothing fits
    assert choose_route(gray, settings) == "memory"  # numpy is in memory already
    assert choose_route(da.from_array(gray), settings) == "zarr"
    assert choose_route(da.from_array(stack), settings) == "memory"  # stacks: plane by plane
    rgb = da.zeros((64, 64, 3), np.uint8)
    assert choose_route(rgb, SegmentSettings(rgb=True)) == "memory"
    assert choose_route(tmp_path / "image.zarr", settings) == "zarr"
    assert choose_route(gray, settings, scheduler="local:1") == "cluster"
    with pytest.raises(ValueError, match="one grayscale plane"):
        choose_route(stack, settings, scheduler="local:1")
    assert set(ROUTES) == {"memory", "zarr", "cluster"}


def test_settings_name_the_shared_keyword_arguments_once():
    shared = SegmentSettings(tile_shape=(64, 64), threshold=0.4).shared()
    assert list(shared) == [
        "tile_shape", "batch_size", "device", "precision",
        "threshold", "min_size", "object_size", "normalization",
    ]  # fmt: skip
    assert list(SegmentSettings().blocks()) == [*shared, "axes", "spacing", "volume_method"]
    assert set(SegmentSettings().in_memory()) == set(shared) | {
        "rgb", "invert_bright_background", "axes", "spacing", "volume_method",
    }  # fmt: skip


def test_memory_and_zarr_routes_return_one_result_type(monkeypatch, tmp_path):
    pytest.importorskip("zarr")
    from napari_unet.method.network import UNet

    model = UNet(depth=2, base_channels=4)
    image = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    settings = SegmentSettings(device="cpu", precision="float32", tile_shape=(64, 64))
    progress = []
    in_memory = run_to_completion(iter_segment_routed(image, model, settings), progress.append)
    assert isinstance(in_memory, Segmentation) and in_memory.route == "memory"
    assert in_memory.store is None and in_memory.probabilities.shape == image.shape
    assert progress[-1].fraction == pytest.approx(1.0) and "tile" in progress[-1].message
    monkeypatch.setattr(to_zarr, "IN_MEMORY_SHARE", 1e-12)
    on_disk = run_to_completion(
        iter_segment_routed(da.from_array(image), model, settings, output=tmp_path / "l.zarr")
    )
    assert isinstance(on_disk, Segmentation) and on_disk.route == "zarr"
    assert on_disk.store == str(tmp_path / "l.zarr") and on_disk.probabilities is None
    assert on_disk.labels.shape == image.shape and on_disk.device == in_memory.device
