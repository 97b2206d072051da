"""Fuzz: random shapes, dtypes and values give a correct result or a ValueError (issue 10).

Seeded numpy random cases (no extra dependency): each case is reproducible from its
seed. Anything other than a correct result or a ``ValueError`` fails the test.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import tifffile

import napari_unet
from napari_unet._writer import write_labels
from napari_unet.method.images import image_layout
from napari_unet.method.network import UNet

DTYPES = [
    bool,
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
]
SIDES = [0, 1, 2, 3, 5, 17, 40]


def random_array(rng, ranks=(0, 1, 2, 2, 2, 3, 4), sides=SIDES):
    shape = tuple(int(rng.choice(sides)) for _ in range(int(rng.choice(ranks))))
    if len(shape) >= 3 and rng.random() < 0.3:
        shape = (*shape[:-1], int(rng.choice([3, 4])))  # RGB(A)
    dtype = np.dtype(rng.choice(DTYPES))
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        kind = rng.integers(3)
        if kind == 0:  # small ids
            low, high = max(info.min, -3), min(info.max, 12)
        elif kind == 1:  # anywhere in the range
            low, high = info.min, info.max
        else:  # near the top
            low, high = max(info.min, info.max - 10), info.max
        return rng.integers(low, high, shape, dtype=dtype, endpoint=True)
    scale = float(rng.choice([1.0, 255.0, 1e-30, 1e30, 1e300]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow to inf is one of the cases
        values = (rng.standard_normal(shape) * scale).astype(dtype)
        if values.size and rng.random() < 0.3:
            values.flat[int(rng.integers(values.size))] = rng.choice([np.nan, np.inf, -np.inf])
    return values


@pytest.fixture(scope="module")
def tiny():
    return UNet(depth=2, base_channels=2).eval()


@pytest.mark.parametrize("seed", range(40))
def test_segment_gives_labels_or_a_value_error(tiny, seed):
    rng = np.random.default_rng(seed)
    image = random_array(rng)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            labels = napari_unet.segment(image, tiny, precision="float32", min_size=1)
    except ValueError:
        return
    assert labels.shape == image_layout(image).labels_shape
    assert labels.dtype == np.int32 and (labels >= 0).all()


@pytest.mark.parametrize("seed", range(60))
def test_weight_map_gives_a_valid_map_or_a_value_error(seed):
    rng = np.random.default_rng(1000 + seed)
    labels = random_array(rng, ranks=(1, 2, 2, 2, 2, 3))
    w0 = rng.choice([10.0, 0.5, 1e5, 0.0, -1.0, np.nan, np.inf, 1e308])
    sigma = rng.choice([5.0, 0.1, 50.0, 0.0, -2.0, np.nan, 1e308])
    dense = bool(rng.random() < 0.3)
    class_weights = rng.choice([None, "balanced"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            weights = napari_unet.separation_border_weight_map(
                labels, float(w0), float(sigma), class_weights, dense=dense
            )
    except ValueError:
        return
    assert weights.shape == labels.shape and weights.dtype == np.float32
    assert np.isfinite(weights).all() and (weights >= 0).all()
    if not dense:
        assert (weights[np.asarray(labels) == 0] == 0).all()


@pytest.mark.parametrize("seed", range(60))
def test_writer_keeps_every_value_or_raises_a_value_error(tmp_path, seed):
    rng = np.random.default_rng(2000 + seed)
    labels = random_array(rng, ranks=(1, 2, 2, 3, 3, 4))
    scale = None
    if labels.ndim and rng.random() < 0.5:
        scale = tuple(
            float(rng.choice([1.0, 0.25, 1e-12, 0.0, -1.0, np.nan, 1e15]))
            for _ in range(labels.ndim)
        )
    units = str(rng.choice(["um", "µm", "pixel", "nm", "Å"]))
    path = tmp_path / "labels.tif"
    try:
        written = write_labels(str(path), labels, {"scale": scale, "units": units})
    except ValueError:
        assert os.listdir(tmp_path) == []  # nothing half-written is left
        return
    data = tifffile.imread(written[0])
    assert data.dtype.kind == "u" and data.shape == labels.shape
    np.testing.assert_array_equal(data, labels)  # every id exactly
