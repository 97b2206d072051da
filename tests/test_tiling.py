"""Overlap-tile prediction (paper Fig. 2) and precision selection; CPU only, no display."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_unet.method.network import UNet
from napari_unet.method.tiling import (
    TileProgress,
    iter_predict_tiled,
    mirror_index,
    plan_tiles,
    predict_tiled,
)
from napari_unet.runtime import devices
from napari_unet.runtime.devices import MAX_AUTO_TILE_OUTPUT, auto_tile_shape, resolve_precision
from napari_unet.testing import predict_whole

TOLERANCE = 1e-4  # tiled float32 vs. one forward pass over the whole image


def make_model(depth=4, base_channels=4, in_channels=1, n_classes=2, seed=0) -> UNet:
    torch.manual_seed(seed)
    return UNet(in_channels, n_classes, depth=depth, base_channels=base_channels)


@pytest.fixture(scope="module")
def model() -> UNet:
    return make_model()


def random_image(shape, seed=1, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(dtype)


def tiled(image, model, **options):
    options.setdefault("device", "cpu")
    options.setdefault("precision", "float32")
    return predict_tiled(image, model, **options)


# -- mirroring ---------------------------------------------------------------------------


def test_mirror_index_reflects_without_repeating_the_edge():
    index = np.arange(-4, 9)
    assert mirror_index(index, 5).tolist() == [4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert mirror_index(np.arange(-3, 5), 2).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert mirror_index(np.arange(-3, 4), 1).tolist() == [0] * 7


def test_mirror_index_matches_numpy_reflect_and_does_not_depend_on_pad_width():
    row = np.arange(7)
    for pad in (1, 3, 6):
        index = np.arange(-pad, 7 + pad)
        np.testing.assert_array_equal(row[mirror_index(index, 7)], np.pad(row, pad, "reflect"))
    wide = mirror_index(np.arange(-50, 57), 7)
    np.testing.assert_array_equal(wide[50 - 6 : 50 + 13], mirror_index(np.arange(-6, 13), 7))


def test_mirror_index_rejects_empty_axis():
    with pytest.raises(ValueError, match="at least 1"):
        mirror_index(np.arange(3), 0)


# -- tile placement ----------------------------------------------------------------------


def test_plan_tiles_keeps_the_pooling_grid_and_covers_the_image(model):
    plan = plan_tiles((130, 97), model, (116, 116))
    p = model.pooling_factor
    assert plan.n_tiles == 30
    assert all(s % p == 0 for s in plan.step)
    assert all(oy % p == 0 and ox % p == 0 for oy, ox in plan.origins)
    assert model.valid_output_shape(plan.tile_shape) >= plan.step  # tuples, both axes
    covered = np.zeros((130, 97), bool)
    for oy, ox in plan.origins:
        covered[oy : oy + plan.step[0], ox : ox + plan.step[1]] = True
    assert covered.all()


def test_plan_tiles_rounds_up_and_shrinks_to_the_image(model):
    small = plan_tiles((3, 5), model, (1000, 1000))
    assert small.n_tiles == 1
    assert small.tile_shape == model.input_shape_for_output((3, 5))
    rounded = plan_tiles((500, 500), model, (1, 1))  # smallest tile with a whole step
    assert model.valid_output_shape(rounded.tile_shape)[0] >= model.pooling_factor
    with pytest.raises(ValueError, match="two positive integers"):
        plan_tiles((10, 10), model, (0, 10))


def test_auto_tile_shape_is_valid_and_capped(model):
    paper = UNet()  # depth 5, 64 channels: only its shape methods are used
    for network in (model, paper):
        shape = auto_tile_shape(network, torch.device("cpu"), torch.float32)
        p = network.pooling_factor
        out = network.valid_output_shape(shape)[0]
        assert shape[0] == shape[1] == network.input_shape_for_output((out // p * p,))[0]
        assert p <= out // p * p <= MAX_AUTO_TILE_OUTPUT["cpu"]


# -- tiled == whole ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "tile_shape"),
    [
        ((1, 1), None),
        ((3, 5), None),
        ((37, 61), None),  # one tile, odd sizes
        ((37, 61), (60, 60)),  # many tiles, each smaller than the image
        ((130, 97), (116, 116)),
        ((61, 150), (108, 132)),  # non-square tiles
    ],
)
def test_tiled_equals_whole_image_prediction(model, shape, tile_shape):
    image = random_image(shape)
    expected = predict_whole(image, model)
    result = tiled(image, model, tile_shape=tile_shape, batch_size=16)
    assert result.shape == (2, *shape) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(result.sum(axis=0), 1, atol=1e-5)


def test_tiled_equals_whole_for_the_papers_depth():
    model = make_model(depth=5, base_channels=2)  # pooling factor 16, halo 92
    image = random_image((203, 77), seed=2)
    result = tiled(image, model, tile_shape=(200, 200))
    np.testing.assert_allclose(result, predict_whole(image, model), rtol=0, atol=TOLERANCE)


def test_multichannel_input():
    model = make_model(depth=3, in_channels=3, n_classes=3)
    image = random_image((3, 45, 70), seed=3)
    result = tiled(image, model, tile_shape=(60, 60))
    assert result.shape == (3, 45, 70)
    np.testing.assert_allclose(result, predict_whole(image, model), rtol=0, atol=TOLERANCE)


def test_normalization_of_integer_image(model):
    image = (random_image((50, 40)) * 4000 + 100).astype(np.uint16)
    low, high = 100.0, 4100.0
    result = tiled(image, model, normalization=(low, high), tile_shape=(60, 60))
    expected = predict_whole((image.astype(np.float32) - low) / (high - low), model)
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)


def test_output_classes_selects_channels(model):
    image = random_image((40, 50))
    full = tiled(image, model, tile_shape=(60, 60))
    foreground = tiled(image, model, tile_shape=(60, 60), output_classes=(1,))
    assert foreground.shape == (1, 40, 50)
    np.testing.assert_array_equal(foreground[0], full[1])
    swapped = tiled(image, model, output_classes=[1, 0])
    np.testing.assert_allclose(swapped, full[::-1], atol=TOLERANCE)


# -- lazy array inputs -------------------------------------------------------------------


class RecordingArray:
    """A sliceable array-like that records every region read."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, key):
        region = self.array[key]
        self.reads.append(region.shape)
        return region


def test_reads_only_the_region_of_each_tile(model):
    image = random_image((70, 97))
    recording = RecordingArray(image)
    result = tiled(recording, model, tile_shape=(116, 116), batch_size=8)
    plan = plan_tiles(image.shape, model, (116, 116))
    assert len(recording.reads) == plan.n_tiles
    assert all(h <= plan.tile_shape[0] and w <= plan.tile_shape[1] for h, w in recording.reads)
    np.testing.assert_allclose(result, predict_whole(image, model), atol=TOLERANCE)


def test_dask_array_input(model):
    da = pytest.importorskip("dask.array")
    image = random_image((90, 75), seed=4)
    result = tiled(da.from_array(image, chunks=(32, 32)), model, tile_shape=(60, 60))
    np.testing.assert_allclose(result, predict_whole(image, model), rtol=0, atol=TOLERANCE)


def test_zarr_array_input(model):
    zarr = pytest.importorskip("zarr")
    image = (random_image((90, 75), seed=5) * 1000).astype(np.uint16)
    if hasattr(zarr, "create_array"):  # zarr 3
        stored = zarr.create_array(
            store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(32, 32), dtype="uint16"
        )
    else:  # zarr 2
        stored = zarr.zeros(image.shape, chunks=(32, 32), dtype="uint16")
    stored[:] = image
    result = tiled(stored, model, normalization=(0, 1000), tile_shape=(60, 60))
    expected = predict_whole(image, model, normalization=(0, 1000))
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)


# -- progress, cancellation, model untouched ---------------------------------------------


def test_progress_records_and_return_value(model):
    image = random_image((70, 97))
    n_tiles = plan_tiles(image.shape, model, (116, 116)).n_tiles
    generator = iter_predict_tiled(
        image, model, tile_shape=(116, 116), batch_size=3, device="cpu", precision="float32"
    )
    records = []
    while True:
        try:
            records.append(next(generator))
            assert not torch.is_inference_mode_enabled()  # not leaked while suspended
        except StopIteration as done:
            result = done.value
            break
    assert all(isinstance(r, TileProgress) for r in records)
    assert len(records) == math.ceil(n_tiles / 3)
    expected = [min(3 * k, n_tiles) for k in range(1, len(records) + 1)]
    assert [r.tile_index for r in records] == expected
    assert {r.n_tiles for r in records} == {n_tiles}
    assert {(r.device, r.precision) for r in records} == {("cpu", "float32")}
    assert all(a.seconds <= b.seconds for a, b in zip(records[:-1], records[1:], strict=True))
    np.testing.assert_allclose(result, predict_whole(image, model), atol=TOLERANCE)


def test_stopping_early_cancels(model):
    generator = iter_predict_tiled(
        random_image((70, 97)), model, tile_shape=(116, 116), batch_size=1, device="cpu"
    )
    first = next(generator)
    assert first.tile_index == 1 and first.n_tiles > 1
    generator.close()
    with pytest.raises(StopIteration):
        next(generator)


def test_caller_model_is_not_modified():
    model = make_model(depth=3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tiled(random_image((30, 30)), model, precision="auto")
    assert model.training
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32 and value.device.type == "cpu"
        assert value.is_contiguous()
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "options", "message"),
    [
        (np.zeros((2, 10, 10), np.float32), {}, "channels"),
        (np.zeros((10,), np.float32), {}, "shape"),
        (np.zeros((0, 10), np.float32), {}, "empty"),
        (np.zeros((10, 10), np.complex64), {}, "dtype"),
        (np.zeros((10, 10), np.float32), {"normalization": (1, 1)}, "differ"),
        (np.zeros((10, 10), np.float32), {"output_classes": (2,)}, "output_classes"),
        (np.zeros((10, 10), np.float32), {"batch_size": 0}, "batch_size"),
        (np.zeros((10, 10), np.float32), {"precision": "float64"}, "unknown precision"),
        (np.zeros((10, 10), np.float32), {"device": "tpu"}, "unknown device"),
    ],
)
def test_invalid_arguments_raise(model, image, options, message):
    with pytest.raises(ValueError, match=message):
        predict_tiled(image, model, **options)


# -- precision ---------------------------------------------------------------------------


def test_resolve_precision_names():
    assert resolve_precision("float32", "cpu") is torch.float32
    assert resolve_precision("FLOAT32", "cpu") is torch.float32
    expected = torch.bfloat16 if devices.cpu_prefers_bf16() else torch.float32
    assert resolve_precision("auto", "cpu") is expected
    for name in ("float64", "half", ""):
        with pytest.raises(ValueError, match="unknown precision"):
            resolve_precision(name, "cpu")


def test_resolve_precision_rejects_what_the_cpu_cannot_do(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_fp16", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_amx", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16"):
        resolve_precision("bfloat16", "cpu")
    with pytest.raises(ValueError, match="AVX512-FP16"):
        resolve_precision("float16", "cpu")
    assert resolve_precision("auto", "cpu") is torch.float32


@pytest.mark.parametrize(
    ("vendor", "flags", "amx", "expected"),
    [
        ("AuthenticAMD", {"avx2", "avx512f", "avx512_bf16"}, False, torch.bfloat16),  # Zen 4
        ("AuthenticAMD", {"avx2"}, False, torch.float32),  # Zen 2/3
        ("GenuineIntel", {"avx512f", "avx512_bf16"}, False, torch.float32),  # no AMX
        ("GenuineIntel", {"avx512f", "avx512_bf16", "amx_bf16"}, True, torch.bfloat16),
    ],
)
def test_auto_precision_on_a_cpu_is_bfloat16_only_where_it_is_faster(
    monkeypatch, vendor, flags, amx, expected
):
    monkeypatch.setattr(devices, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(devices, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: amx or "avx512_bf16" in flags)
    assert resolve_precision("auto", "cpu") is expected


def test_cpu_vendor_and_flags_read_proc_cpuinfo():
    from pathlib import Path

    info = Path("/proc/cpuinfo")
    if not info.exists():
        assert devices.cpu_vendor() == "" and devices.cpu_flags() == frozenset()
        return
    text = info.read_text(errors="replace")
    vendor = next(
        (
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("vendor_id")
        ),
        "",
    )
    assert devices.cpu_vendor() == vendor
    assert devices.cpu_flags() and all(flag in text for flag in devices.cpu_flags())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_precision_rejects_missing_device():
    with pytest.raises(ValueError, match="not available"):
        resolve_precision("float16", "cuda")


@pytest.mark.skipif(
    not devices.cpu_has_bf16(), reason="CPU lacks bfloat16 instructions (AVX512-BF16 / AMX)"
)
def test_bfloat16_close_to_float32(model):
    image = random_image((96, 90), seed=6)
    reference = tiled(image, model, tile_shape=(116, 116), batch_size=8)
    result = tiled(image, model, tile_shape=(116, 116), precision="bfloat16", batch_size=8)
    assert result.dtype == np.float32
    assert np.abs(result - reference).max() < 0.05
    assert (result.argmax(axis=0) == reference.argmax(axis=0)).mean() > 0.99
    record = next(iter_predict_tiled(image, model, device="cpu", precision="bfloat16"))
    assert record.precision == "bfloat16"
