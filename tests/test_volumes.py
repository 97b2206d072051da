"""Volumes: axes and spacing, 3D instances (one id per nucleus across planes), the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile

from napari_unet import segment
from napari_unet.inference.settings import SegmentSettings
from napari_unet.inference.volumes import _predict_planes
from napari_unet.method.axes import (
    AXES_CHOICES,
    check_axes,
    check_spacing,
    spacing_from_scale,
)
from napari_unet.method.instances import boundary_watershed, count_cells, min_volume_for
from napari_unet.metrics import average_precision, match, seg_score
from napari_unet.models.files import load_model
from napari_unet.testing import synthetic_nuclei_volume

SHAPE = (16, 96, 96)


@pytest.fixture(scope="module")
def model():
    return load_model("default")


def _pairs(truth, labels):
    """For each true nucleus, the predicted ids covering more than half of it."""
    m = match(truth, labels)
    return {
        int(g): int(p)
        for g, p, o in zip(m.gt_ids, m.pred_ids, m.overlap_of_gt, strict=True)
        if o > 0.5
    }


def _planes_of(labels, label_id):
    return set(np.flatnonzero((labels == label_id).any(axis=(1, 2))).tolist())


def test_two_touching_nuclei_are_two_objects_each_with_one_id_across_planes(model):
    spacing = (2.0, 1.0, 1.0)  # z planes twice as far apart as pixels
    image, truth = synthetic_nuclei_volume(
        SHAPE, centers=[(8, 48, 37), (8, 48, 59)], radius=12, spacing=spacing, seed=3
    )
    assert np.any(  # they touch: the two ids are face neighbours somewhere
        (truth[:, :, :-1] == 1) & (truth[:, :, 1:] == 2)
    )
    labels = segment(image, model, axes="ZYX", spacing=spacing)
    pairs = _pairs(truth, labels)
    assert sorted(pairs) == [1, 2] and len(set(pairs.values())) == 2  # two, not merged
    assert count_cells(labels, "ZYX") == 2
    for true_id, label_id in pairs.items():
        true_planes = _planes_of(truth, true_id)
        assert len(true_planes) >= 5  # spans several planes
        # one id across its planes: that id is in (nearly) every plane of the nucleus,
        # and no other id covers a large part of the nucleus in any plane
        assert len(_planes_of(labels, label_id) & true_planes) >= len(true_planes) - 2
        inside = labels[truth == true_id]
        ids, counts = np.unique(inside[inside > 0], return_counts=True)
        assert counts[ids == label_id][0] / counts.sum() > 0.95
    assert seg_score(truth, labels) > 0.7
    # today's plane-by-plane result, for contrast: per-plane ids
    stacked = segment(image, model)
    assert count_cells(stacked) > 2 * 5


def test_one_nucleus_is_not_split_between_planes(model):
    spacing = (1.5, 1.0, 1.0)
    image, truth = synthetic_nuclei_volume(
        SHAPE, centers=[(8, 40, 52)], radius=13, spacing=spacing, seed=5
    )
    labels = segment(image, model, axes="ZYX", spacing=spacing)
    assert len(np.unique(labels[labels > 0])) == 1
    assert seg_score(truth, labels) > 0.7


@pytest.mark.parametrize(
    ("spacing", "n_nuclei", "touching", "seed"),
    [((1.0, 1.0, 1.0), 5, 0.0, 1), ((2.0, 1.0, 1.0), 8, 0.15, 2), ((3.0, 1.0, 1.0), 10, 0.2, 4)],
)
def test_volumes_at_several_densities_and_anisotropies(model, spacing, n_nuclei, touching, seed):
    image, truth = synthetic_nuclei_volume(
        SHAPE, n_nuclei=n_nuclei, spacing=spacing, touching=touching, seed=seed
    )
    labels = segment(image, model, axes="ZYX", spacing=spacing)
    assert average_precision(truth, labels) >= 0.8
    assert seg_score(truth, labels) >= 0.7


def test_three_views_also_give_3d_instances(model):
    spacing = (2.0, 1.0, 1.0)
    image, truth = synthetic_nuclei_volume(
        (12, 64, 64), centers=[(6, 32, 22), (6, 32, 43)], radius=11, spacing=spacing, seed=3
    )
    labels = segment(image, model, axes="ZYX", spacing=spacing, volume_method="orthogonal")
    assert sorted(_pairs(truth, labels)) == [1, 2]
    assert average_precision(truth, labels) == 1.0


def test_the_mosaic_of_mirrored_planes_predicts_each_plane_as_alone():
    from napari_unet.method.network import UNet
    from napari_unet.method.tiling import predict_tiled
    from napari_unet.runtime.progress import run_to_completion

    net = UNet(depth=2, base_channels=4).eval()
    planes = np.random.default_rng(0).random((5, 9, 30)).astype(np.float32)
    options = {"device": "cpu", "precision": "float32", "output_classes": (0, 1)}
    mosaic = run_to_completion(_predict_planes(planes, net, net.halo, options, 0, 5, 0.0))
    for index, plane in enumerate(planes):
        alone = predict_tiled(plane, net, **options)
        np.testing.assert_allclose(mosaic[:, index], alone, atol=1e-5)


@pytest.mark.parametrize("n_planes", [1, 2])
def test_thin_volumes_and_nuclei_cut_by_the_top_and_bottom_plane(model, n_planes):
    spacing = (2.0, 1.0, 1.0)
    # centred on plane 0 and on the last plane: cut by the volume's faces
    image, truth = synthetic_nuclei_volume(
        (n_planes, 80, 80), centers=[(0, 25, 25), (n_planes - 1, 52, 52)], radius=11,
        spacing=spacing, seed=7,
    )  # fmt: skip
    labels = segment(image, model, axes="ZYX", spacing=spacing)
    assert labels.shape == truth.shape and labels.dtype == np.int32
    pairs = _pairs(truth, labels)
    assert sorted(pairs) == [1, 2] and len(set(pairs.values())) == 2
    for true_id, label_id in pairs.items():  # each nucleus one id in all its planes
        assert _planes_of(labels, label_id) == _planes_of(truth, true_id)


def test_nuclei_touching_the_top_and_bottom_planes_keep_one_id(model):
    spacing = (2.0, 1.0, 1.0)
    image, truth = synthetic_nuclei_volume(
        SHAPE, centers=[(1, 30, 30), (14, 62, 62)], radius=12, spacing=spacing, seed=8
    )
    assert truth[0].any() and truth[-1].any()
    labels = segment(image, model, axes="ZYX", spacing=spacing)
    pairs = _pairs(truth, labels)
    assert sorted(pairs) == [1, 2] and len(set(pairs.values())) == 2
    assert labels[0][truth[0] == 1].max() == pairs[1]
    assert labels[-1][truth[-1] == 2].max() == pairs[2]


def test_time_series_of_volumes_are_segmented_one_time_point_at_a_time(model):
    spacing = (2.0, 1.0, 1.0)
    first, _ = synthetic_nuclei_volume((8, 64, 64), centers=[(4, 32, 32)], radius=11,
                                       spacing=spacing, seed=1)  # fmt: skip
    second, _ = synthetic_nuclei_volume((8, 64, 64), centers=[(4, 20, 20), (4, 44, 44)],
                                        radius=10, spacing=spacing, seed=2)  # fmt: skip
    series = np.stack([first, second])
    labels = segment(series, model, axes="TZYX", spacing=spacing)
    assert labels.shape == series.shape
    assert [len(np.unique(v[v > 0])) for v in labels] == [1, 2]
    assert count_cells(labels, "TZYX") == 3
    alone = segment(second, model, axes="ZYX", spacing=spacing)
    np.testing.assert_array_equal(labels[1], alone)  # time points do not mix


def test_time_and_channel_axes_are_planes_one_by_one(model):
    image, _ = synthetic_nuclei_volume((2, 64, 64), centers=[(0, 32, 32)], radius=11, seed=1)
    for axes in ("TYX", "CYX"):
        labels = segment(image, model, axes=axes)
        np.testing.assert_array_equal(labels, segment(image, model))
    with pytest.raises(ValueError, match="spacing"):
        segment(image, model, axes="TYX", spacing=(2.0, 1.0, 1.0))  # no Z: (dy, dx)


@pytest.mark.parametrize(
    ("spacing", "problem"),
    [
        ((0.0, 1.0, 1.0), "zero"),
        ((-2.0, 1.0, 1.0), "negative"),
        ((float("nan"), 1.0, 1.0), "NaN"),
        ((1.0, float("inf"), 1.0), "infinite"),
        ((1.0, 1.0), "has 2 values"),
        ((1.0, 1.0, 1.0, 1.0), "has 4 values"),
        (("a", 1, 1), "numbers"),
    ],
)
def test_bad_spacing_is_a_clear_value_error(spacing, problem):
    with pytest.raises(ValueError, match=problem):
        segment(np.zeros((3, 16, 16), np.float32), axes="ZYX", spacing=spacing)


@pytest.mark.parametrize(
    ("axes", "shape", "problem"),
    [
        ("YX", (3, 16, 16), "name 2 axes but the image has 3"),
        ("ZYX", (16, 16), "name 3 axes but the image has 2"),
        ("TZYX", (3, 16, 16), "name 4 axes"),
        ("XYZ", (3, 16, 16), "is not one of"),
        ("ZYXC", (3, 16, 16, 5), "has not 3 or 4 colours"),
        (3, (3, 16, 16), "must be a string"),
    ],
)
def test_axes_that_do_not_match_the_image_are_a_clear_value_error(axes, shape, problem):
    with pytest.raises(ValueError, match=problem):
        segment(np.zeros(shape, np.float32), axes=axes)


def test_axes_and_spacing_checks():
    assert check_axes("zyx", (4, 8, 8)) == "ZYX"
    assert check_axes("ZYXC", (4, 8, 8, 3)) == "ZYX"
    assert check_axes(None, (4, 8, 8)) is None
    with pytest.raises(ValueError, match="disagree"):
        check_axes("ZYXC", (4, 8, 8, 3), rgb=False)
    assert set(AXES_CHOICES) == {"YX", "ZYX", "TYX", "TZYX", "CYX"}
    assert check_spacing((2, 0.5, 0.5)) == (2.0, 0.5, 0.5)
    assert check_spacing(None) is None
    assert check_spacing((0.5, 0.5), "TYX") == (0.5, 0.5)
    assert spacing_from_scale((1.0, 2.0, 0.3, 0.3), "TZYX") == (2.0, 0.3, 0.3)
    with pytest.raises(ValueError, match="one value per axis"):
        spacing_from_scale((2.0, 0.3, 0.3), "TZYX")


def test_only_spacing_ratios_matter(model):
    image, _ = synthetic_nuclei_volume((8, 64, 64), centers=[(4, 20, 20), (4, 44, 44)],
                                       radius=10, spacing=(2, 1, 1), seed=2)  # fmt: skip
    a = segment(image, model, axes="ZYX", spacing=(2.0, 1.0, 1.0))
    b = segment(image, model, axes="ZYX", spacing=(0.5, 0.25, 0.25))  # micrometres
    np.testing.assert_array_equal(a, b)


def test_smallest_cell_of_a_volume():
    # a ball of the plane's smallest disc, two thirds of its diameter deep
    d = math.sqrt(4 * 32 / math.pi)
    assert min_volume_for(32) == round(32 * 2 / 3 * d)
    assert min_volume_for(32, (2.0, 1.0, 1.0)) == round(32 * 2 / 3 * d / 2)
    assert min_volume_for(32, (1.0, 1.0, 1.0), n_planes=1) == 32  # one plane: a disc
    assert min_volume_for(32, (10.0, 1.0, 1.0)) == 32  # at least one plane


def test_3d_watershed_splits_touching_balls_and_keeps_one_id_across_planes():
    z, y, x = np.mgrid[:12, :40, :60]
    interior = np.zeros((12, 40, 60), np.float32)
    for cx in (20, 38):
        interior = np.maximum(
            interior,
            np.clip(1 - (((z - 6) / 5) ** 2 + ((y - 20) / 9) ** 2 + ((x - cx) / 9) ** 2), 0, 1),
        )
    cells = (
        ((z - 6) / 6) ** 2 + ((y - 20) / 11) ** 2 + (np.minimum(abs(x - 20), abs(x - 38)) / 11) ** 2
    ) < 1
    background = np.where(cells, 0.0, 1.0).astype(np.float32)
    labels = boundary_watershed(background, interior, spacing=(1.0, 1.0, 1.0), min_size=16)
    assert count_cells(labels, "ZYX") == 2
    assert labels[6, 20, 20] != labels[6, 20, 38]
    assert set(np.unique(labels[:, 20, 20])) - {0} == {labels[6, 20, 20]}
    with pytest.raises(ValueError, match="spacing"):
        boundary_watershed(background, interior, spacing=(1.0, 1.0))


def test_3d_scores_count_one_object_per_id_across_planes():
    truth = np.zeros((4, 8, 8), np.int32)
    truth[:, 2:6, 2:6] = 1
    per_plane = truth * np.arange(1, 5)[:, None, None]  # one nucleus as four objects
    assert seg_score(truth, truth) == 1.0 and average_precision(truth, truth) == 1.0
    assert average_precision(truth, per_plane) == 0.0
    assert seg_score(truth, per_plane) == 0.0


def test_route_segments_a_volume_in_memory_and_block_by_block_when_too_large(model, monkeypatch):
    from napari_unet.route.segment import choose_route, iter_segment_routed
    from napari_unet.runtime.progress import run_to_completion

    image, truth = synthetic_nuclei_volume((8, 64, 64), centers=[(4, 20, 20), (4, 44, 44)],
                                           radius=10, spacing=(2, 1, 1), seed=2)  # fmt: skip
    settings = SegmentSettings(axes="ZYX", spacing=(2.0, 1.0, 1.0))
    messages = []
    result = run_to_completion(
        iter_segment_routed(image, model, settings), lambda p: messages.append(p.message)
    )
    assert result.route == "memory" and result.n_cells == 2
    assert messages[-1].startswith("volume 1/1 · plane")
    assert choose_route(image, settings, scheduler="local:1") == "cluster"
    assert choose_route("volume.zarr", settings) == "zarr"
    stack = np.stack([image, image])  # two time points
    with pytest.raises(ValueError, match="one grayscale plane .YX. or one volume .ZYX."):
        choose_route(stack, SegmentSettings(axes="TZYX"), scheduler="local:1")
    monkeypatch.setattr("napari_unet.runtime.devices.available_memory", lambda device: 10**6)
    assert choose_route(image, settings) == "zarr"  # block by block (tests/test_volume_blocks)
    with pytest.raises(ValueError, match="one time point at a time"):
        choose_route(stack, SegmentSettings(axes="TZYX"))
    with pytest.raises(ValueError, match="axes"):
        choose_route(image[0], settings)  # a plane said to be a volume


def test_cli_reads_the_spacing_of_an_imagej_tiff_and_writes_it(tmp_path):
    from napari_unet.cli.commands import main

    image, truth = synthetic_nuclei_volume((8, 64, 64), centers=[(4, 20, 20), (4, 44, 44)],
                                           radius=10, spacing=(2, 1, 1), seed=2)  # fmt: skip
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"spacing": 0.5, "unit": "um", "axes": "ZYX"})  # fmt: skip
    assert main(["segment", str(path), "-o", str(tmp_path / "out"), "--axes", "ZYX"]) == 0
    out = tmp_path / "out" / "stack_masks.tif"
    with tifffile.TiffFile(out) as tif:
        labels = tif.asarray()
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.5)
        x_resolution = tif.pages.first.tags["XResolution"].value
    assert x_resolution[1] / x_resolution[0] == pytest.approx(0.25)
    assert count_cells(labels, "ZYX") == 2 and average_precision(truth, labels) == 1.0
    # the spacing read from the file is the one given by hand (0.5 / 0.25 = 2)
    by_hand = segment(image, axes="ZYX", spacing=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(labels, by_hand)
    # a bad --spacing is one line on standard error, exit status 2
    assert main(["segment", str(path), "-o", str(tmp_path / "o2"), "--axes", "ZYX",
                 "--spacing", "0,1,1"]) == 2  # fmt: skip


def test_voxel_size_read_from_imagej_tiffs_and_ome_zarr_metadata(tmp_path):
    from napari_unet.io.spacing import ome_axes_and_spacing, read_tiff_spacing, stored_spacing

    volume = np.zeros((3, 8, 8), np.uint8)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, volume, imagej=True, resolution=(1 / 0.2, 1 / 0.25),
                     metadata={"spacing": 1.5, "unit": "micron"})  # fmt: skip
    assert read_tiff_spacing(path) == (pytest.approx((1.5, 0.25, 0.2)), "micron")
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, volume, photometric="minisblack")
    assert read_tiff_spacing(plain)[1] is None  # no ImageJ unit: not used (often a dpi)
    assert stored_spacing(path) == read_tiff_spacing(path)
    dpi = tmp_path / "dpi.tif"
    tifffile.imwrite(dpi, volume, photometric="minisblack", resolution=(300, 300))
    assert read_tiff_spacing(dpi)[0] is not None and stored_spacing(dpi) == (None, None)
    assert stored_spacing(tmp_path / "v.png") == (None, None)  # not a TIFF: not read
    axes = [{"name": "t", "type": "time"}, {"name": "z"}, {"name": "y"}, {"name": "x"}]
    transforms = [{"type": "scale", "scale": [1.0, 2.0, 0.5, 0.5]}]
    assert ome_axes_and_spacing(axes, transforms) == ("TZYX", (2.0, 0.5, 0.5))
    assert ome_axes_and_spacing(axes, [{"type": "scale", "scale": [1, 0, 1, 1]}])[1] is None
