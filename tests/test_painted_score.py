"""The painted-cell score: held-out cells, the fitted instance step, the never-worse rule."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import _painted, _sample
from scipy import ndimage as ndi

from napari_unet.inference.segment import InstanceSettings, segment
from napari_unet.metrics import seg_score
from napari_unet.models.files import load_model
from napari_unet.runtime.progress import run_to_completion
from napari_unet.training import TrainingConfig, train
from napari_unet.training.instance_fit import fit_instance_step
from napari_unet.training.painted_score import (
    HELD_OUT_SHARE,
    MAX_HELD_OUT,
    hold_out_cells,
    min_gain,
)
from napari_unet.training.selection import MIX_SHARES, mixed_state

THREE_CLASS = InstanceSettings(True, 0.5, 16, 0.5, 0)


def _probabilities(masks, foreground=1.0, interior=1.0):
    """Three-class probabilities (background, interior) of a network that puts
    ``foreground`` on every cell pixel and ``interior`` inside each cell's 2 px rim;
    ``1, 1``: what a perfect network would give."""
    inside = np.zeros(masks.shape, np.float32)
    for index, box in enumerate(ndi.find_objects(masks), start=1):
        if box is not None:
            inside[box][ndi.binary_erosion(masks[box] == index, iterations=2)] = interior
    background = np.where(masks > 0, 1.0 - foreground, 1.0).astype(np.float32)
    return np.stack([background, inside])


def _hold_out(image, annotation, rng, dense=False, **options):
    return hold_out_cells(
        [image],
        [annotation],
        dense=dense,
        object_size=20,
        percentiles=(1, 99.8),
        rng=rng,
        **options,
    )


def _crops(held, probabilities):
    return [probabilities[(slice(None), *crop.box)] for crop in held.crops]


def test_held_out_cells_leave_training_and_the_users_annotation_alone(
    sample_image, sample_annotation
):
    rng = np.random.default_rng(0)
    n_cells = len(np.unique(sample_annotation[sample_annotation >= 2]))
    kept, held, _ = _hold_out(sample_image, sample_annotation, rng)
    assert len(held) == min(MAX_HELD_OUT, round(HELD_OUT_SHARE * n_cells))
    (training,) = kept
    assert training.dtype == np.int32 and training is not sample_annotation
    remaining = np.unique(training[training >= 2])
    assert len(remaining) == n_cells - len(held)
    for crop in held.crops:
        cell_ids = np.unique(sample_annotation[crop.box][crop.truth])
        assert len(cell_ids) == 1 and cell_ids[0] >= 2  # one painted cell, whole
        assert cell_ids[0] not in remaining
        assert crop.truth.sum() == (sample_annotation == cell_ids[0]).sum()
        assert (training[crop.box][crop.truth | crop.background] == 0).all()
        assert (sample_annotation[crop.box][crop.background] == 1).all()
    assert any(crop.background.any() for crop in held.crops)
    # everything else is as painted
    changed = training != sample_annotation
    assert (sample_annotation[changed] > 0).all() and (training[changed] == 0).all()


def test_dense_annotations_and_too_few_cells(sample_image, sample_masks):
    rng = np.random.default_rng(1)
    kept, held, _ = _hold_out(sample_image, sample_masks, rng, dense=True)
    assert len(held) == MAX_HELD_OUT
    # converted to the partial convention: cells + 1, background 1, held-out parts 0
    shown = kept[0] > 0
    assert (
        kept[0][shown & (sample_masks > 0)] == sample_masks[shown & (sample_masks > 0)] + 1
    ).all()
    assert (kept[0][shown & (sample_masks == 0)] == 1).all()
    two = _painted(sample_masks, 2)
    assert _hold_out(sample_image, two, rng)[1] is None
    assert _hold_out(sample_image, sample_masks, rng, dense=True, share=0)[1] is None


def test_score_and_fitted_instance_step_on_ideal_probabilities(sample_image, sample_masks):
    annotation = _painted(sample_masks, 20)
    _, held, _ = _hold_out(sample_image, annotation, np.random.default_rng(2))
    ideal = _probabilities(sample_masks)
    perfect = held.score(_crops(held, ideal), THREE_CLASS)
    assert perfect.n_cells == 5 and perfect.seg > 0.9 and perfect.ap == 1.0
    # an unsure network: foreground 0.55 and interior 0.45 on the cells, so the stored
    # thresholds (0.7) find no cell; the fitted instance step finds them again
    unsure = _crops(held, _probabilities(sample_masks, foreground=0.55, interior=0.45))
    start = replace(THREE_CLASS, threshold=0.7, seed_threshold=0.7)
    missed = held.score(unsure, start)
    assert missed.seg == 0 and missed.ap == 0
    fitted, score = fit_instance_step(held, unsure, start, object_size=20)
    assert fitted.threshold < 0.55 and score.seg > 0.8 and score.ap > 0.8
    assert fit_instance_step(held, _crops(held, ideal), THREE_CLASS, 20)[0] == THREE_CLASS
    # a false cell on the painted background counts against AP@0.5, not against SEG
    noisy = _crops(held, ideal)
    deep = [ndi.binary_erosion(c.background, iterations=1) for c in held.crops]
    k = next(i for i, d in enumerate(deep) if d.any())
    ys, xs = np.nonzero(deep[k])
    window = (slice(ys[0] - 1, ys[0] + 2), slice(xs[0] - 1, xs[0] + 2))
    noisy[k][0][window], noisy[k][1][window] = 0.0, 1.0
    settings = replace(THREE_CLASS, min_size=8)
    with_false = held.score(noisy, settings)
    assert with_false.seg == held.score(_crops(held, ideal), settings).seg
    assert with_false.ap < 1.0


@pytest.fixture
def cells():
    """The shipped phase-contrast crop (Usiigaci, 31 cells) with 8 cells painted."""
    masks = _sample("cells_masks.tif")
    return np.array(_sample("cells.tif")), _painted(masks, 8), masks


def test_a_fine_tune_that_cannot_help_keeps_the_starting_model(cells, one_torch_thread):
    image, annotation, _ = cells
    start = load_model("default")
    # a learning rate that wrecks the network within a few steps
    config = TrainingConfig(
        max_seconds=None, n_iterations=6, learning_rate=0.05, validation_interval=3
    )
    result = run_to_completion(
        train([image], [annotation], model=start, config=config, seed=0, device="cpu")
    )
    report = result.painted
    assert report is not None and report.kept == "start" and result.best_iteration == 0
    assert report.trained.n_cells == 2 and report.trained.seg < report.start_fitted.seg
    assert "keeping the starting model" in report.message
    kept = result.model.state_dict()
    for name, value in start.state_dict().items():
        torch.testing.assert_close(kept[name], value)
    # the wrecked network (or its best mix with the start) is set aside, not lost
    wrecked = result.set_aside.state_dict()
    assert any(not torch.equal(wrecked[k], v) for k, v in start.state_dict().items())
    assert report.share in MIX_SHARES
    record = result.model.metadata["training"]["painted_cells"]
    assert record["kept"] == "start" and record["message"] == report.message
    # the instance step was fitted for the starting model, and it is what is stored
    post = result.model.metadata["postprocessing"]
    assert set(post) == {"threshold", "min_size", "seed_threshold", "smoothing", "fill_holes"}
    scores = [p.painted for p in result.history if p.painted is not None]
    assert [p.iteration for p in result.history if p.painted is not None] == [3, 6]
    assert all(s.start == report.start for s in scores)


def test_painting_phase_contrast_cells_beats_the_default_model(cells, one_torch_thread):
    image, annotation, masks = cells
    config = TrainingConfig(max_seconds=None, n_iterations=30, validation_interval=10)
    result = run_to_completion(
        train([image], [annotation], model="default", config=config, seed=0, device="cpu")
    )
    report = result.painted
    # the default model splits these large phase-contrast cells poorly; 30 steps on 6
    # painted cells fix that on the 2 held out, and the model is kept and says so
    assert report.kept == "trained" and result.set_aside is None
    assert report.trained.seg > report.start_fitted.seg + min_gain(report.trained.n_cells)
    assert report.message.startswith(f"painted-cell SEG: start {report.start.seg:.2f} →")
    assert report.share in MIX_SHARES
    assert ("of the way from the start" in report.message) == (report.share < 1)
    assert result.model.metadata["training"]["painted_cells"]["share"] == report.share
    # and on the cells nobody painted, the whole image segments better than before
    unpainted = np.where(np.isin(masks, np.unique(masks[annotation >= 2])), 0, masks)
    before = seg_score(unpainted, segment(image, "default", device="cpu"))
    after = seg_score(unpainted, segment(image, result.model, device="cpu"))
    assert after > before + 0.05


def test_from_scratch_reports_a_score_without_a_comparison(cells, one_torch_thread):
    image, annotation, _ = cells
    config = TrainingConfig(max_seconds=None, n_iterations=2, validation_interval=1)
    result = run_to_completion(train([image], [annotation], config=config, seed=0, device="cpu"))
    report = result.painted
    assert report.start is None and report.kept == "trained"
    assert report.message.startswith("painted-cell SEG ")
    assert all(p.painted.start is None for p in result.history)


def test_dense_ground_truth_stays_dense_for_validation_and_the_record(
    sample_image, sample_masks, one_torch_thread
):
    # cells are held out of a dense annotation; the validation pairs and the model's record
    # still read the user's convention (0 = background)
    image, masks = np.array(sample_image[:256, :352]), np.array(sample_masks[:256, :352])
    val = (np.array(sample_image[256:, 352:]), np.array(sample_masks[256:, 352:]))
    config = TrainingConfig(max_seconds=None, n_iterations=2, tile_shape=(188, 188))
    result = run_to_completion(
        train(
            [image],
            [masks],
            model="default",
            dense=True,
            config=config,
            seed=0,
            device="cpu",
            validation=[val],
        )
    )
    assert result.painted is not None and result.painted.trained.n_cells == MAX_HELD_OUT
    assert result.model.metadata["training"]["dense"] is True
    # the validation truth covers every nucleus: a dense pair read as partial would ignore
    # its background (0) and count its first nucleus (1) as background
    assert 0 < result.history[-1].validation_score <= 1


def test_mixed_weights_lie_between_the_start_and_the_fine_tune():
    start = load_model("default").state_dict()
    generator = torch.Generator().manual_seed(0)
    trained = {
        name: value + torch.randn(value.shape, generator=generator)
        if value.is_floating_point()
        else value + 7
        for name, value in start.items()
    }
    for share in (0.0, 0.25, 1.0):
        mixed = mixed_state(start, trained, share)
        for name, value in mixed.items():
            if value.is_floating_point():
                expected = start[name] * (1 - share) + trained[name] * share
                torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
            else:  # batch-norm counters are the fine-tune's
                assert torch.equal(value, trained[name])
    # the start itself is untouched, share 0 gives its weights back exactly, share 1 the
    # fine-tune's
    for share, end in ((0.0, start), (1.0, trained)):
        mixed = mixed_state(start, trained, share)
        assert all(torch.equal(mixed[k], v) for k, v in end.items() if v.is_floating_point())
    assert list(MIX_SHARES) == sorted(MIX_SHARES) and MIX_SHARES[-1] == 1.0
