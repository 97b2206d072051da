"""Cross-fitting the never-worse rule when only a few cells are painted."""

import numpy as np
import pytest
import torch
from conftest import _painted, _sample

from napari_unet.method.network import UNet
from napari_unet.models.files import load_model
from napari_unet.runtime.progress import run_to_completion
from napari_unet.training import TrainingConfig, train
from napari_unet.training.cross_fit import cross_fit_folds
from napari_unet.training.painted_score import MAX_CROSS_FITTED, MIN_CROSS_FITTED
from napari_unet.training.selection import MIX_SHARES, mixed_state, soup


def _folds(image, annotation, seed=0):
    return cross_fit_folds(
        [image],
        [annotation],
        dense=False,
        object_size=20,
        percentiles=(1, 99.8),
        rng=np.random.default_rng(seed),
    )


def _ids(annotation) -> set:
    return set(np.unique(annotation[annotation >= 2]).tolist())


def test_folds_split_the_painted_cells_and_leave_the_annotation_alone(sample_image, sample_masks):
    annotation = _painted(sample_masks, MAX_CROSS_FITTED)
    painted = annotation.copy()
    folds = _folds(sample_image, annotation)
    assert [len(fold.cells) for fold in folds] == [3, 2]
    fold_ids = []
    for fold in folds:
        ids = set()
        for crop in fold.cells.crops:
            cell = np.unique(annotation[crop.box][crop.truth])
            assert len(cell) == 1 and crop.truth.sum() == (annotation == cell[0]).sum()
            ids.add(int(cell[0]))
        fold_ids.append(ids)
    assert fold_ids[0].isdisjoint(fold_ids[1]) and fold_ids[0] | fold_ids[1] == _ids(annotation)
    for fold, others in zip(folds, fold_ids[::-1], strict=True):
        (trained_on,) = fold.trained_on
        # each training sees the other fold's cells, as painted, and none of its own
        assert _ids(trained_on) == others and (trained_on == 1).any()
        for crop in fold.cells.crops:
            assert (trained_on[crop.box][crop.truth | crop.background] == 0).all()
        changed = trained_on != annotation
        assert (trained_on[changed] == 0).all()
    np.testing.assert_array_equal(annotation, painted)  # the user's painting is untouched


def test_more_or_fewer_cells_or_no_background_are_not_cross_fitted(sample_image, sample_masks):
    assert _folds(sample_image, _painted(sample_masks, MAX_CROSS_FITTED + 1)) is None
    assert _folds(sample_image, _painted(sample_masks, 1)) is None
    two = _folds(sample_image, _painted(sample_masks, MIN_CROSS_FITTED))
    assert [len(fold.cells) for fold in two] == [1, 1]
    # cells painted without any background: a fold's training would have nothing to learn
    # the background from
    cells_only = np.where(_painted(sample_masks, 4) >= 2, _painted(sample_masks, 4), 0)
    assert _folds(sample_image, cells_only) is None


@pytest.mark.parametrize(("n_painted", "folds"), [(5, [3, 2]), (2, [1, 1])])
def test_few_painted_cells_that_training_cannot_help_keep_the_start(
    n_painted, folds, one_torch_thread
):
    masks = _sample("cells_masks.tif")
    image, annotation = np.array(_sample("cells.tif")), _painted(masks, n_painted)
    start = load_model("default")
    # a learning rate that wrecks the network within a few steps
    config = TrainingConfig(
        max_seconds=None, n_iterations=6, learning_rate=0.05, validation_interval=3
    )
    result = run_to_completion(
        train(
            [image],
            [annotation],
            model=start,
            config=config,
            seed=0,
            device="cpu",
            snapshot_interval=0,
        )
    )
    report = result.painted
    # every painted cell scored a network that never saw it, and the start won
    assert report.cross_fitted and report.kept == "start" and result.best_iteration == 0
    assert report.trained.n_cells == n_painted
    assert report.trained.seg < report.start_fitted.seg
    assert f"{n_painted} painted cells, each unseen" in report.message
    assert "keeping the starting model" in report.message
    for name, value in start.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], value)
    # one run of 6 iterations in two phases of 3, each scored on its own fold's cells
    record = result.model.metadata["training"]
    assert record["cross_fit"] == {"cells": folds, "iterations": [3, 3]}
    assert record["iterations_done"] == 6 and record["config"]["n_iterations"] == 6
    assert record["painted_cells"]["cross_fitted"] is True
    assert [p.iteration for p in result.history] == [1, 2, 3, 4, 5, 6]
    fractions = [p.fraction for p in result.history]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    seconds = [p.seconds for p in result.history]
    assert seconds == sorted(seconds)
    scored = [(p.iteration, p.painted.current.n_cells) for p in result.history if p.painted]
    assert scored == [(3, folds[0]), (6, folds[1])]
    # the set-aside fine-tune is the average of the two networks (the last preview showed
    # it), mixed with the start at the share that scored best
    assert report.share in MIX_SHARES
    averaged = result.history[-1].snapshot.state_dict()
    expected = mixed_state(start.state_dict(), averaged, report.share)
    for name, value in result.set_aside.state_dict().items():
        torch.testing.assert_close(value, expected[name])
    assert any(
        not torch.equal(averaged[k], v) for k, v in result.history[2].snapshot.state_dict().items()
    )


def test_an_iteration_cap_is_shared_among_the_folds(sample_image, sample_masks):
    annotation = _painted(sample_masks, 2)
    for cap, phases in ((3, [2, 1]), (1, [1])):
        config = TrainingConfig(max_seconds=None, n_iterations=cap, tile_shape=(44, 44))
        net = UNet(depth=2, base_channels=2, n_classes=3)
        result = run_to_completion(
            train([sample_image], [annotation], model=net, config=config, seed=0, device="cpu")
        )
        assert [p.iteration for p in result.history] == list(range(1, cap + 1))
        assert all(p.n_iterations == cap for p in result.history)
        assert result.model.metadata["training"]["cross_fit"]["iterations"] == phases
        # a cap of 1 trains one fold: only that fold's cell scores it
        assert result.painted.trained.n_cells == len(phases)


def test_a_soup_is_the_mean_of_the_weights():
    start = load_model("default").state_dict()
    generator = torch.Generator().manual_seed(0)
    first = {
        k: v + torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
        for k, v in start.items()
    }
    second = {k: v + 1 if not v.is_floating_point() else v for k, v in start.items()}
    averaged = soup([first, second])
    for name, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[name] + second[name]) / 2)
        else:  # batch-norm counters are the last network's
            assert torch.equal(value, second[name])
    assert soup([first]) is first
