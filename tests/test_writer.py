"""The npe2 TIFF writer for Labels layers: dtype policy, resolution, atomic write."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_unet._writer import write_labels


def read(path):
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        x = page.tags["XResolution"].value
        y = page.tags["YResolution"].value
        return tif.asarray(), (y[1] / y[0], x[1] / x[0]), tif.is_imagej, tif.imagej_metadata


def labels_2d(dtype=np.uint16, top=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, top, (64, 80)).astype(dtype)


def test_uint16_round_trip_is_identical(tmp_path):
    labels = labels_2d()
    (path,) = write_labels(str(tmp_path / "a.tif"), labels, {"scale": (0.5, 0.25)})
    data, pixel_size, imagej, _ = read(path)
    assert imagej and data.dtype == np.uint16
    np.testing.assert_array_equal(data, labels)
    assert pixel_size == pytest.approx((0.5, 0.25), rel=1e-6)


def test_int32_labels_become_uint16_with_the_same_values(tmp_path):
    labels = labels_2d(np.int32, top=60_000)
    (path,) = write_labels(str(tmp_path / "b.tiff"), labels, {})
    data, _, imagej, _ = read(path)
    assert imagej and data.dtype == np.uint16
    np.testing.assert_array_equal(data, labels)


def test_many_labels_stay_exact_in_a_plain_tiff(tmp_path):
    labels = labels_2d(np.int64, top=10)
    labels[0, 0] = 70_000
    (path,) = write_labels(str(tmp_path / "c.tif"), labels, {"scale": (1.0, 1.0)})
    data, _, imagej, _ = read(path)
    assert not imagej and data.dtype == np.uint32
    np.testing.assert_array_equal(data, labels)


def test_stack_spacing_and_unit(tmp_path):
    import pint

    um = pint.get_application_registry().micrometer
    labels = np.stack([labels_2d(), labels_2d()])
    (path,) = write_labels(
        str(tmp_path / "d.tif"), labels, {"scale": (2.0, 0.5, 0.5), "units": (um, um, um)}
    )
    data, pixel_size, imagej, metadata = read(path)
    assert imagej and data.shape == labels.shape
    np.testing.assert_array_equal(data, labels)
    assert pixel_size == pytest.approx((0.5, 0.5))
    assert metadata["spacing"] == pytest.approx(2.0)
    assert metadata["unit"] == "um"


def test_refuses_bad_input_and_leaves_no_temporary_file(tmp_path):
    with pytest.raises(ValueError, match="integer"):
        write_labels(str(tmp_path / "e.tif"), np.zeros((4, 4), np.float32), {})
    with pytest.raises(ValueError, match="negative"):
        write_labels(str(tmp_path / "f.tif"), -np.ones((4, 4), np.int32), {})
    with pytest.raises(ValueError, match=".tif"):
        write_labels(str(tmp_path / "g.png"), np.zeros((4, 4), np.uint16), {})
    assert os.listdir(tmp_path) == []


def test_overwrites_atomically(tmp_path):
    path = tmp_path / "h.tif"
    write_labels(str(path), labels_2d(), {})
    new = labels_2d(top=3)
    write_labels(str(path), new, {})
    np.testing.assert_array_equal(tifffile.imread(path), new)
    assert os.listdir(tmp_path) == ["h.tif"]


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_ids_of_2_to_the_32_and_more_are_kept_exactly(tmp_path, dtype):
    labels = labels_2d(dtype, top=10)
    labels[0, :3] = [2**32, 2**32 + 5, 2**63 - 1 if dtype == np.int64 else 2**64 - 1]
    labels[1, 0] = 5
    (path,) = write_labels(str(tmp_path / "big.tif"), labels, {})
    data, _, imagej, _ = read(path)
    assert not imagej and data.dtype == np.uint64
    np.testing.assert_array_equal(data, labels)  # id 2**32 is not 0, 2**32+5 is not 5
    assert len(np.unique(data)) == len(np.unique(labels))


def test_stack_of_ids_beyond_32_bits(tmp_path):
    labels = np.zeros((2, 8, 8), np.int64)
    labels[1, 2:4, 2:4] = 2**40
    (path,) = write_labels(str(tmp_path / "big3.tif"), labels, {"scale": (2.0, 1.0, 1.0)})
    np.testing.assert_array_equal(tifffile.imread(path), labels)


@pytest.mark.parametrize(
    "scale", [(-1.0, 1.0), (0.0, 1.0), (float("nan"), 1.0), (1.0, float("inf")), (1e12, 1.0)]
)
def test_a_bad_scale_is_a_value_error(tmp_path, scale):
    with pytest.raises(ValueError, match="scale .* must be positive finite numbers"):
        write_labels(str(tmp_path / "s.tif"), labels_2d(), {"scale": scale})
    assert os.listdir(tmp_path) == []


def test_micrometre_sign_is_written_as_um_and_other_non_ascii_units_refused(tmp_path):
    for unit in ("µm", "\u03bcm"):
        (path,) = write_labels(str(tmp_path / "u.tif"), labels_2d(), {"units": unit})
        assert read(path)[3]["unit"] == "um"
    with pytest.raises(ValueError, match="unit 'Å' cannot be stored"):
        write_labels(str(tmp_path / "v.tif"), labels_2d(), {"units": "Å"})


def test_bool_labels_and_rank_errors(tmp_path):
    mask = labels_2d(top=2).astype(bool)
    (path,) = write_labels(str(tmp_path / "b.tif"), mask, {})
    np.testing.assert_array_equal(tifffile.imread(path), mask)
    with pytest.raises(ValueError, match=r"2D \(Y, X\) or 3D"):
        write_labels(str(tmp_path / "5d.tif"), np.zeros((2, 2, 2, 4, 4), np.uint16), {})
