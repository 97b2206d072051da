"""Touching cells: the three-class target, its weights, the seeded-watershed instance step,
the object size hint and the time budget (issue: touching cells come out merged)."""

import math
from functools import cache
from importlib.resources import as_file, files

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from napari_unet.method.annotation import BOUNDARY_WIDTH, annotation_to_target
from napari_unet.method.instances import boundary_watershed, min_size_for, probabilities_to_labels
from napari_unet.method.network import UNet, with_boundary_class
from napari_unet.method.object_size import check_object_size, estimate_object_size
from napari_unet.method.weight_map import separation_border_weight_map
from napari_unet.metrics import average_precision, seg_score
from napari_unet.runtime.progress import run_to_completion
from napari_unet.testing import weight_map_reference
from napari_unet.training.instance_fit import MIN_SIZE_FACTORS, SEED_THRESHOLDS, THRESHOLDS
from napari_unet.training.loop import TrainingConfig, cosine_learning_rate, train

EIGHT = np.ones((3, 3), bool)


@cache
def _cells(name):
    with as_file(files("napari_unet") / "data" / name) as path:
        array = tifffile.imread(path)
    array.flags.writeable = False
    return array


@pytest.fixture
def cells_image():
    """384x384 uint16 phase-contrast crop (Usiigaci), large touching cells."""
    return _cells("cells.tif")


@pytest.fixture
def cells_masks():
    """Its dense instance mask (0 = background, 1..31 cells)."""
    return _cells("cells_masks.tif")


def touching_pairs(masks):
    """Pairs (a, b), a < b, of cells that touch (8-connectivity)."""
    pairs = set()
    padded = np.pad(masks, 1)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = padded[1:-1, 1:-1]
        b = np.roll(np.roll(padded, -dy, 0), -dx, 1)[1:-1, 1:-1]
        both = (a > 0) & (b > 0) & (a != b)
        pairs |= {tuple(sorted(p)) for p in zip(a[both].tolist(), b[both].tolist(), strict=True)}
    return pairs


def one_hot_probabilities(masks, width=BOUNDARY_WIDTH):
    """Perfect three-class probabilities (background, interior) of a dense mask."""
    target = annotation_to_target(masks, dense=True, n_classes=3, boundary_width=width).classes
    return (target == 0).astype(np.float32), (target == 1).astype(np.float32)


# -- the three-class target ---------------------------------------------------------------


def test_three_class_target_rings_every_cell_and_splits_contacts():
    labels = np.ones((30, 40), np.int32)  # painted background
    labels[5:25, 5:20] = 2
    labels[5:25, 20:35] = 3  # touches cell 2 along column 19|20
    parts = annotation_to_target(labels, n_classes=3, boundary_width=2)
    assert parts.n_classes == 3 and parts.classes.dtype == np.uint8
    # a 2-px boundary on each side of the contact: 4 px of boundary between interiors
    row = parts.classes[15]
    assert list(row[5:7]) == [2, 2] and row[7] == 1  # outer rim of cell 2
    assert list(row[18:22]) == [2, 2, 2, 2] and row[17] == 1 and row[22] == 1
    # interiors are the instances and never touch each other
    assert set(np.unique(parts.instances)) == {0, 2, 3}
    assert ndi.label(parts.instances > 0, structure=EIGHT)[1] == 2
    # background stays background, cells are never lost
    assert np.all(parts.classes[labels == 1] == 0)
    assert np.all(parts.classes[labels >= 2] > 0)


def test_three_class_target_image_edge_is_not_a_boundary():
    labels = np.full((20, 20), 2, np.int32)
    labels[:, 15:] = 1
    parts = annotation_to_target(labels, n_classes=3, boundary_width=1)
    assert parts.classes[0, 5] == 1 and parts.classes[10, 0] == 1  # edges of the image
    assert parts.classes[10, 14] == 2  # next to painted background


def test_three_class_target_rejects_bad_width():
    with pytest.raises(ValueError, match="boundary_width"):
        annotation_to_target(np.ones((4, 4), int), n_classes=3, boundary_width=0)
    with pytest.raises(ValueError, match="n_classes"):
        annotation_to_target(np.ones((4, 4), int), n_classes=4)


def test_three_class_weights_match_the_definition_and_peak_between_cells(cells_masks):
    fast = separation_border_weight_map(cells_masks, 10, 5, "balanced", dense=True, n_classes=3)
    slow = weight_map_reference(cells_masks, 10, 5, "balanced", dense=True, n_classes=3)
    np.testing.assert_allclose(fast, slow, atol=1e-5)
    parts = annotation_to_target(cells_masks, dense=True, n_classes=3)
    grown = ndi.grey_dilation(cells_masks, size=(3, 3))
    contact = (cells_masks > 0) & (grown != cells_masks) & (parts.classes == 2)
    lone_rim = (parts.classes == 2) & ~ndi.binary_dilation(contact, iterations=6)
    assert contact.any() and lone_rim.any()
    # boundary pixels where two cells touch carry the border term (w0 = 10) on top of w_c
    assert np.median(fast[contact]) - np.median(fast[lone_rim]) > 3
    # class balance keeps the mean w_c at 1 over the annotated pixels
    balanced_only = separation_border_weight_map(
        cells_masks, 1e-12, 5, "balanced", dense=True, n_classes=3
    )
    assert balanced_only.mean() == pytest.approx(1.0, rel=1e-4)


# -- the instance step ---------------------------------------------------------------------


def test_boundary_watershed_splits_every_touching_pair_of_a_real_image(cells_masks):
    """Real phase-contrast cells, 23 of 31 touching: the ideal network output gives
    every cell back, touching pairs as two cells."""
    background, interior = one_hot_probabilities(cells_masks)
    labels = boundary_watershed(background, interior, min_size=8)  # one cell is 12 px
    pairs = touching_pairs(cells_masks)
    assert len(pairs) >= 15
    assert seg_score(cells_masks, labels) > 0.95
    assert average_precision(cells_masks, labels) == 1.0

    def main_label(cell):
        return np.bincount(labels[cells_masks == cell]).argmax()

    for a, b in pairs:  # two touching cells come out as two
        assert main_label(a) != main_label(b)
    # the paper's two-class step on the same foreground merges touching cells
    merged = probabilities_to_labels(1 - background, 0.5, 16, grow=0)
    assert merged.max() < cells_masks.max() - 5


def test_boundary_watershed_noisy_probabilities_still_split(cells_masks):
    rng = np.random.default_rng(0)
    background, interior = one_hot_probabilities(cells_masks)
    background = ndi.gaussian_filter(background, 1.5) + rng.normal(0, 0.05, background.shape)
    interior = ndi.gaussian_filter(interior, 1.5) + rng.normal(0, 0.05, interior.shape)
    labels = boundary_watershed(np.clip(background, 0, 1), np.clip(interior, 0, 1), min_size=64)
    assert average_precision(cells_masks, labels) > 0.9


def test_boundary_watershed_keeps_seedless_regions_and_drops_small_ones():
    background = np.ones((40, 60), np.float32)
    interior = np.zeros((40, 60), np.float32)
    background[5:25, 5:25] = 0.1  # a cell whose interior was not found: still a cell
    background[30:33, 50:53] = 0.1  # 9 px: debris below min_size
    labels = boundary_watershed(background, interior, min_size=16)
    assert labels.dtype == np.int32 and labels.max() == 1
    assert (labels == 1).sum() == 400


def test_boundary_watershed_rejects_bad_input():
    with pytest.raises(ValueError, match="2D"):  # 4D: neither a plane nor a volume
        boundary_watershed(np.zeros((2, 2, 4, 4)), np.zeros((2, 2, 4, 4)))
    with pytest.raises(ValueError, match="of one shape"):
        boundary_watershed(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="threshold"):
        boundary_watershed(np.zeros((4, 4)), np.zeros((4, 4)), threshold=1.0)


# -- object size ---------------------------------------------------------------------------


def test_estimate_object_size_of_discs():
    yy, xx = np.mgrid[:200, :200]
    labels = np.ones((200, 200), np.int32)
    for n, (y, x) in enumerate(((50, 50), (50, 150), (150, 100)), start=2):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= 20**2] = n
    assert estimate_object_size([labels]) == pytest.approx(40, abs=1.5)
    assert estimate_object_size([np.ones((5, 5), int)]) is None


def test_estimate_object_size_of_the_real_samples(cells_masks, sample_masks):
    large = estimate_object_size([cells_masks], dense=True)
    nuclei = estimate_object_size([sample_masks], dense=True)
    assert 35 < large < 120 and 15 < nuclei < 35 and large > nuclei + 5


@pytest.mark.parametrize("bad", [0, -3, math.nan, math.inf, "big", True])
def test_bad_object_size_is_a_clear_error(bad, sample_image):
    with pytest.raises(ValueError, match="object size"):
        check_object_size(bad)
    with pytest.raises(ValueError, match="object size"):
        TrainingConfig(object_size=bad)
    from napari_unet.inference.segment import segment

    with pytest.raises(ValueError, match="object size"):
        segment(
            sample_image[:64, :64], UNet(depth=2, base_channels=2, n_classes=3), object_size=bad
        )


def test_min_size_follows_object_size():
    assert min_size_for(15) == 44 and min_size_for(100) == int(math.pi / 4 * 50**2)
    assert min_size_for(1) == 8


# -- the network and training -------------------------------------------------------------


def test_with_boundary_class_keeps_the_two_class_scores():
    torch.manual_seed(0)
    two = UNet(depth=2, base_channels=4, batch_norm=True).eval()
    three = with_boundary_class(two).eval()
    x = torch.randn(1, 1, 44, 44)
    with torch.no_grad():
        a, b = two(x), three(x)
    assert b.shape[1] == 3
    torch.testing.assert_close(b[:, :2], a)
    assert (b.softmax(1)[:, 2] < 0.2).all()
    with pytest.raises(ValueError, match="two-class"):
        with_boundary_class(three)


def test_cosine_schedule():
    assert cosine_learning_rate(1e-3, 0) == pytest.approx(1e-3)
    assert cosine_learning_rate(1e-3, 1) == pytest.approx(1e-4)
    assert cosine_learning_rate(1e-3, 0.5) == pytest.approx(5.5e-4)


def test_time_budget_ends_training_and_fits_the_schedule(sample_image, sample_annotation):
    model = UNet(depth=3, base_channels=4, batch_norm=True, n_classes=3)
    config = TrainingConfig(max_seconds=8.0, n_iterations=None, tile_shape=(92, 92))
    result = run_to_completion(
        train([sample_image], [sample_annotation], model=model, config=config, seed=0)
    )
    history = result.history
    assert len(history) > 6  # a tiny network: many steps fit in 8 s
    assert history[-1].fraction == pytest.approx(1.0, abs=0.1)
    steps = np.diff([p.seconds for p in history])
    assert history[-1].seconds < 8.0 + steps.max() + 0.5  # ends at the budget, not a step later
    # the plan converges on the number of steps actually done
    assert abs(history[-1].n_iterations - len(history)) <= max(3, len(history) // 10)
    fractions = [p.fraction for p in history]
    assert all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:], strict=False))
    assert result.model.metadata["training"]["iterations_done"] == len(history)


def test_iterations_and_budget_whichever_first(sample_image, sample_annotation):
    model = UNet(depth=2, base_channels=2, n_classes=3)
    config = TrainingConfig(max_seconds=600, n_iterations=4, tile_shape=(44, 44))
    result = run_to_completion(
        train([sample_image], [sample_annotation], model=model, config=config)
    )
    assert len(result.history) == 4 and result.history[-1].fraction == 1.0
    with pytest.raises(ValueError, match="needs an end"):
        TrainingConfig(max_seconds=None, n_iterations=None)
    with pytest.raises(ValueError, match="max_seconds"):
        TrainingConfig(max_seconds=0)


def test_one_cell_or_cells_on_the_border_still_train(sample_image):
    one_cell = np.zeros(sample_image.shape, np.int32)
    one_cell[100:140, 100:140] = 1
    one_cell[110:130, 110:130] = 2
    on_border = np.zeros(sample_image.shape, np.int32)
    on_border[:30, :] = 1
    on_border[:20, :40] = 2
    on_border[:20, 40:80] = 3
    for annotation in (one_cell, on_border):
        result = run_to_completion(
            train(
                [sample_image],
                [annotation],
                model=UNet(depth=2, base_channels=2, n_classes=3),
                config=TrainingConfig(n_iterations=3, tile_shape=(44, 44)),
            )
        )
        assert len(result.history) == 3 and np.isfinite(result.history[-1].loss)
        assert result.model.metadata["object_size"] > 1


def test_fine_tuning_a_two_class_model_gains_the_boundary_class(sample_image, sample_annotation):
    two = UNet(depth=2, base_channels=2)
    result = run_to_completion(
        train(
            [sample_image],
            [sample_annotation],
            model=two,
            config=TrainingConfig(n_iterations=2, n_classes=3, tile_shape=(44, 44)),
        )
    )
    assert result.model.config.n_classes == 3 and two.config.n_classes == 2
    meta = result.model.metadata
    assert meta["n_classes"] == 3 and meta["boundary_width"] == BOUNDARY_WIDTH
    # the instance step is fitted to the held-out painted cells, from the defaults and
    # a smallest cell that follows the object size
    post, default_min = meta["postprocessing"], min_size_for(meta["object_size"])
    assert post["min_size"] in {max(8, int(f * default_min)) for f in (*MIN_SIZE_FACTORS, 1)}
    assert post["seed_threshold"] in (0.5, *SEED_THRESHOLDS)
    with pytest.raises(ValueError, match="3-class model for a 2-class"):
        run_to_completion(
            train(
                [sample_image],
                [sample_annotation],
                model=result.model,
                config=TrainingConfig(n_iterations=1, n_classes=2),
            )
        )


def test_snapshots_and_optimizer_state_continue_a_run(sample_image, sample_annotation):
    model = UNet(depth=2, base_channels=2, n_classes=3)
    config = TrainingConfig(n_iterations=4, tile_shape=(44, 44))
    first = run_to_completion(
        train(
            [sample_image], [sample_annotation], model=model, config=config, snapshot_interval=0.0
        )
    )
    snapshots = [p.snapshot for p in first.history]
    assert all(s is not None for s in snapshots) and not snapshots[0].training
    assert snapshots[0].metadata["n_classes"] == 3
    # each snapshot is a copy: it differs from the next one and from the training model
    w0 = snapshots[0].head.weight
    assert not torch.equal(w0, snapshots[-1].head.weight)
    state = first.optimizer_state
    assert state["state"] and all(
        t.device.type == "cpu"
        for s in state["state"].values()
        for t in s.values()
        if torch.is_tensor(t)
    )
    second = run_to_completion(
        train(
            [sample_image],
            [sample_annotation],
            model=first.model,
            config=config,
            optimizer_state=state,
        )
    )
    assert len(second.history) == 4
    with pytest.raises(ValueError, match="optimizer_state"):
        run_to_completion(
            train(
                [sample_image],
                [sample_annotation],
                model=UNet(depth=3, base_channels=2, n_classes=3),
                config=config,
                optimizer_state=state,
            )
        )


def test_batches_from_worker_processes_are_valid_and_reproducible(sample_image, sample_annotation):
    from napari_unet.method.augmentation import AugmentationConfig
    from napari_unet.training.samples import BatchSource, prepare_samples

    samples = prepare_samples([sample_image], [sample_annotation], TrainingConfig(), False, 3)
    made = []
    for workers in (0, 2, 2):
        source = BatchSource(
            samples, 8, (60, 60), 2, AugmentationConfig(), np.random.default_rng(5), workers
        )
        try:
            made.append([source.next() for _ in range(4)])
        finally:
            source.close()
    for batches in made:
        for x, t, w in batches:
            assert x.shape == (2, 1, 60, 60) and x.dtype == np.float32
            assert t.shape == w.shape == (2, 44, 44) and set(np.unique(t)) <= {0, 1, 2}
            assert (w > 0).any()
    for a, b in zip(made[1], made[2], strict=True):  # same seed and workers: same batches
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(made[1][0][0], made[1][1][0])  # the two workers differ


def test_a_fine_tuned_model_does_not_claim_the_default_models_data_or_scores(
    sample_image, sample_annotation
):
    from napari_unet.models.files import load_model

    base = load_model("default")
    assert {"description", "validation", "data"} <= set(base.metadata)
    result = run_to_completion(
        train(
            [sample_image],
            [sample_annotation],
            model=base,
            config=TrainingConfig(n_iterations=1, tile_shape=(188, 188)),
        )
    )
    meta = result.model.metadata
    assert not {"name", "description", "validation", "data", "script"} & set(meta)
    assert meta["training"]["fine_tuned_from"] == "default"
    assert meta["n_classes"] == 3 and meta["postprocessing"]["threshold"] in (0.7, *THRESHOLDS)
