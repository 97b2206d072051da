"""Training on volumes: painted planes, the 3D eq. 2 weight map, train() with axes."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from synthetic import ellipsoid_volume

from napari_unet.method.annotation import BACKGROUND
from napari_unet.method.weight_map import training_weight_map
from napari_unet.method.weight_map_3d import iter_volume_weight_map, volume_training_weights
from napari_unet.runtime.progress import run_to_completion
from napari_unet.training.config import TrainingConfig
from napari_unet.training.samples import prepare_samples
from napari_unet.training.volume_views import prepared_volume, side_views

SPACING = (2.0, 1.0, 1.0)  # dz, dy, dx: planes twice as far apart as pixels


def painted(labels, planes):
    """A partial annotation: the given planes painted (background 1, cells id + 1)."""
    annotation = np.zeros(labels.shape, np.int32)
    for z in planes:
        annotation[z] = np.where(labels[z] > 0, labels[z] + 1, BACKGROUND)
    return annotation


def reference_volume_map(annotation, config, spacing):
    """Eq. 2 in 3D, directly: one full-volume anisotropic distance map per cell."""
    sampling = np.asarray(spacing) / spacing[-1]
    parts = {z: training_weight_map(annotation[z], config)[0] for z in range(len(annotation))}
    painted_planes = [z for z in parts if annotation[z].any()]
    instances = np.zeros(annotation.shape, np.int32)
    classes = np.zeros(annotation.shape, np.uint8)
    mask = np.zeros(annotation.shape, bool)
    for z in painted_planes:
        instances[z], classes[z], mask[z] = parts[z].instances, parts[z].classes, parts[z].mask
    distances = [
        ndi.distance_transform_edt(instances != i, sampling=sampling)
        for i in np.unique(instances[instances > 0])
    ]
    d = np.sort(np.stack(distances), axis=0)
    counts = np.bincount(classes[mask], minlength=3)
    present = np.count_nonzero(counts)
    w_c = [mask.sum() / (present * n) if n else 1.0 for n in counts]
    weights = np.zeros(annotation.shape)
    for k in range(3):
        weights[mask & (classes == k)] = w_c[k]
    between = mask & (classes != 1)
    term = config.w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * config.sigma**2))
    weights[between] += term[between]
    return weights


def test_volume_weight_map_is_eq2_with_anisotropic_3d_distances():
    _, labels = ellipsoid_volume((10, 48, 48), n_cells=7, radius=9.0, spacing=SPACING, seed=3)
    annotation = painted(labels, [3, 4, 7])
    config = TrainingConfig()
    result = volume_training_weights(annotation, config, spacing=SPACING)
    reference = reference_volume_map(annotation, config, SPACING)
    assert sorted(result.targets) == [3, 4, 7]
    assert result.weights.shape == annotation.shape and result.weights.dtype == np.float32
    assert np.abs(result.weights - reference).max() < 1e-3
    assert not result.weights[[0, 1, 2, 5, 6, 8, 9]].any()  # planes never painted: weight 0
    # a cell painted in the plane above is a near neighbour: the 3D border term is
    # larger than the plane's own 2D one somewhere in plane 3, and less so when the
    # planes lie farther apart
    flat = training_weight_map(annotation[3], config)[1]
    assert (result.weights[3] > flat + 0.1).any()
    far = volume_training_weights(annotation, config, spacing=(8.0, 1.0, 1.0))
    assert far.weights[3].sum() < result.weights[3].sum()


def test_one_painted_plane_gives_the_plane_map():
    _, labels = ellipsoid_volume((6, 40, 40), n_cells=5, radius=8.0, seed=1)
    annotation = painted(labels, [2])
    config = TrainingConfig()
    volume = volume_training_weights(annotation, config, spacing=(3.0, 1.0, 1.0)).weights
    np.testing.assert_allclose(volume[2], training_weight_map(annotation[2], config)[1], atol=1e-5)


def test_time_series_of_volumes_and_bad_spacing():
    _, labels = ellipsoid_volume((4, 32, 32), n_cells=3, seed=2)
    annotation = np.stack([painted(labels, [1]), np.zeros_like(labels)])  # T = 2
    weights = run_to_completion(iter_volume_weight_map(annotation, TrainingConfig(), SPACING))
    assert weights.shape == annotation.shape
    assert weights[0, 1].any() and not weights[1].any()
    for spacing in [(0, 1, 1), (1, -1, 1), (np.nan, 1, 1), (1, 1)]:
        with pytest.raises(ValueError, match="spacing"):
            volume_training_weights(annotation[0], TrainingConfig(), spacing=spacing)


def test_samples_come_from_the_painted_planes_only():
    image, labels = ellipsoid_volume((10, 48, 48), n_cells=6, spacing=SPACING, seed=4)
    annotation = painted(labels, [2, 6])
    config = TrainingConfig()
    samples = prepare_samples([image], [annotation], config, False, 3, volumes=[SPACING])
    targets = volume_training_weights(annotation, config, SPACING)
    seen = prepared_volume(image, SPACING, config.percentiles)
    views = side_views(seen, targets, SPACING)
    assert len(samples) == 2 + len(views)  # the XY planes, then their XZ and YZ views
    # the planes are what prediction gives the network: normalised and denoised as a volume
    np.testing.assert_array_equal(samples[1].image[0], seen[6])
    np.testing.assert_array_equal(samples[1].weights, targets.weights[6])
    np.testing.assert_array_equal(samples[0].annotated, np.flatnonzero(targets.weights[2] > 0))


def test_side_views_hold_the_painted_planes_as_rows():
    image, labels = ellipsoid_volume((10, 48, 48), n_cells=6, spacing=SPACING, seed=4)
    targets = volume_training_weights(painted(labels, [2, 6]), TrainingConfig(), SPACING)
    views = side_views(
        prepared_volume(image, SPACING, TrainingConfig().percentiles), targets, SPACING
    )
    assert len(views) == 2 * 24  # 48 rows and columns, every second one (MAX_VIEWS = 32)
    view, classes, weights = views[0]  # the XZ view at y = 1, Z resampled to 20 rows
    assert view.shape == (1, 20, 48) and view.dtype == np.float32
    painted_rows = np.unique(np.nonzero(weights)[0])
    assert set(painted_rows) <= {4, 12}  # planes 2 and 6 of 10, in 20 rows
    np.testing.assert_array_equal(weights[4], targets.weights[2][1])
    np.testing.assert_array_equal(classes[12], targets.targets[6].classes[1])
    yz = views[24][2]  # the first YZ view, at x = 1
    np.testing.assert_array_equal(yz[12], targets.weights[6][:, 1])
    assert (
        side_views(prepared_volume(image[:1], (1.0, 1.0, 1.0), (1, 99)), targets, (1.0, 1.0, 1.0))
        == []
    )  # one row: no views


def test_a_volume_with_nothing_painted_is_refused():
    image, labels = ellipsoid_volume((5, 32, 32), n_cells=3, seed=5)
    with pytest.raises(ValueError, match="volume 0 .*nothing painted"):
        prepare_samples([image], [np.zeros_like(labels)], TrainingConfig(), False, 3, [SPACING])


def tiny_config(**kwargs):
    from napari_unet.method.network import UNetConfig

    return UNetConfig(in_channels=1, n_classes=3, depth=2, base_channels=4), TrainingConfig(
        n_iterations=3, batch_size=1, tile_shape=(60, 60), hold_out=0.0, **kwargs
    )


def test_train_on_a_volume_painted_in_a_few_planes():
    from napari_unet.training.loop import train

    image, labels = ellipsoid_volume((8, 48, 48), n_cells=5, spacing=SPACING, seed=6)
    annotation = painted(labels, [2, 5])
    model_config, config = tiny_config()
    result = run_to_completion(
        train(
            [image],
            [annotation],
            config=config,
            model_config=model_config,
            device="cpu",
            seed=0,
            axes="ZYX",
            spacing=SPACING,
        )
    )
    training = result.model.metadata["training"]
    targets = volume_training_weights(annotation, config, SPACING)
    views = side_views(prepared_volume(image, SPACING, config.percentiles), targets, SPACING)
    assert training["n_planes"] == 2 + len(views) and training["axes"] == "ZYX"
    assert len(result.history) == 3


@pytest.mark.parametrize(
    ("axes", "spacing", "message"),
    [
        ("YX", None, "axes"),
        ("CYX", None, "channel"),
        ("ZYX", (1.0, 0.0, 1.0), "spacing"),
        ("ZYX", (1.0, 1.0), "spacing"),
        (None, SPACING, "spacing needs axes"),
    ],
)
def test_train_refuses_bad_axes_and_spacing(axes, spacing, message):
    from napari_unet.training.loop import train

    image, labels = ellipsoid_volume((4, 32, 32), n_cells=3, seed=7)
    model_config, config = tiny_config()
    with pytest.raises(ValueError, match=message):
        next(
            train(
                [image],
                [painted(labels, [1])],
                config=config,
                model_config=model_config,
                axes=axes,
                spacing=spacing,
            )
        )


def test_accepting_a_3d_cell_takes_all_its_planes_with_one_id():
    from napari_unet.live.corrections import accept_cells

    _, labels = ellipsoid_volume((8, 40, 40), n_cells=4, radius=8.0, seed=9)
    spans = {int(c): set(np.nonzero(labels == c)[0]) for c in np.unique(labels[labels > 0])}
    # a plane to paint: one nucleus crosses it, another (over 2 planes) does not
    plane, cell, other = next(
        (z, c, o)
        for z in range(8)
        for c in spans
        for o in spans
        if z not in spans[c] and len(spans[c]) > 2 and z in spans[o]
    )
    annotation = painted(labels, [plane])
    accepted = accept_cells(annotation, labels, [cell, other])
    assert accepted.ids == [int(annotation.max()) + 1] and accepted.skipped == 1
    written = np.zeros(labels.shape, bool)
    written[accepted.indices] = True
    # every voxel of the cell not painted yet, in all its planes; the painted plane wins
    expected = (labels == cell) & (annotation == 0)
    assert np.array_equal(written, expected) and len(np.unique(np.nonzero(written)[0])) > 2


def test_cli_trains_on_a_volume_painted_in_a_few_planes(tmp_path):
    import tifffile

    from napari_unet.cli.commands import main
    from napari_unet.cli.train_volumes import training_spacings
    from napari_unet.models.files import load_model

    image, labels = ellipsoid_volume((8, 48, 48), n_cells=5, spacing=SPACING, seed=10)
    metadata = {"spacing": SPACING[0], "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(
        tmp_path / "vol.tif", image, imagej=True, resolution=(1.0, 1.0), metadata=metadata
    )
    tifffile.imwrite(tmp_path / "vol_masks.tif", painted(labels, [2, 5]).astype(np.uint16))
    assert training_spacings([tmp_path / "vol.tif"], "ZYX", None) == [SPACING]  # from the file
    out = tmp_path / "volume.safetensors"
    arguments = ["train", "--images", str(tmp_path / "vol.tif"), "--annotations"]
    arguments += [str(tmp_path / "vol_masks.tif"), "-o", str(out), "--from", "scratch"]
    arguments += ["--iterations", "2", "--batch-size", "1", "--seed", "0", "--axes", "ZYX"]
    assert main(arguments) == 0
    training = load_model(out).metadata["training"]
    assert training["axes"] == ["ZYX"] and training["n_planes"] > 2  # with XZ and YZ views
    with pytest.raises(ValueError, match="spacing"):
        training_spacings([tmp_path / "vol.tif"], "ZYX", (1.0, 0.0, 1.0))
