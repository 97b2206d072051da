"""dask.distributed scale-out (issue 12), on a real scheduler and worker processes on loopback.

One LocalCluster of two worker processes (one thread each) serves the module; the CLI
test starts its own ``local:2`` cluster, and the CLI training test connects to this
one by address.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from napari_unet import segment  # noqa: E402
from napari_unet.distributed import (  # noqa: E402
    RemoteTrainingError,
    iter_segment_files,
    iter_segment_zarr,
    iter_train_remote,
    outputs_complete,
    parse_scheduler,
    segment_files,
    segment_zarr,
    train_remote,
)
from napari_unet.inference.blocks import (  # noqa: E402
    iter_block_reads,
    network_context,
    plan_blocks,
    with_context,
)
from napari_unet.inference.stitching import BlockCells, global_ids, match_cells  # noqa: E402
from napari_unet.method.tiling import predict_tiled  # noqa: E402
from napari_unet.metrics import match, partition_agreement  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.training.loop import TrainingConfig  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning"),
]

#: Block side of the tests: the 384 px cells sample becomes 3 x 3 blocks.
BLOCK = 128


@pytest.fixture(scope="module")
def model():
    return load_model("default")


@pytest.fixture(scope="module")
def cells():
    from conftest import _sample

    return np.array(_sample("cells.tif"))


@pytest.fixture(scope="module")
def cluster():
    from conftest import local_cluster

    with local_cluster(2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def reference(cells, model):
    return segment(cells, model, precision="float32")


def _write_zarr(path, image, chunks=(BLOCK, BLOCK)):
    array = zarr.create_array(store=str(path), shape=image.shape, chunks=chunks, dtype=image.dtype)
    array[:] = image
    return str(path)


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


# -- blocks and stitching, no cluster ------------------------------------------------------


def test_block_probabilities_equal_the_whole_image_bit_for_bit(cells, model):
    """Context read from the neighbours (mirrored only at the image border) on the
    pooling grid: a block predicts exactly what a whole-image pass predicts."""
    whole = predict_tiled(cells, model, normalization=(100.0, 3000.0), precision="float32")
    plan = plan_blocks(cells.shape, model, BLOCK)
    assert plan.context == network_context(model) == 112  # halo 92 + one pooling cell, on grid
    for block, pixels in iter_block_reads(cells, plan):
        if block.index not in (0, 4, 8):  # a corner, the centre, the far corner
            continue
        padded = with_context(pixels, plan, block)
        probabilities = predict_tiled(
            padded, model, normalization=(100.0, 3000.0), precision="float32"
        )
        c = plan.context
        y0, y1, x0, x1 = block.extent
        np.testing.assert_array_equal(probabilities[:, c:-c, c:-c], whole[:, y0:y1, x0:x1])


def test_plan_cores_partition_the_image_and_seams_lie_between_neighbours(model):
    plan = plan_blocks((300, 520), model, 128, overlap=40)
    assert plan.block_shape == (128, 128) and plan.overlap == 48  # rounded up to the grid
    covered = np.zeros((300, 520), int)
    for block in plan.blocks:
        y0, y1, x0, x1 = block.core
        covered[y0:y1, x0:x1] += 1
        ey0, ey1, ex0, ex1 = block.extent
        assert ey0 == max(y0 - 48, 0) and ex1 == min(x1 + 48, 520)
    assert (covered == 1).all()
    seams = plan.seams()
    assert plan.grid_shape == (3, 5)
    assert len(seams) == 3 * 4 + 2 * 5 + 2 * (2 * 4)  # along rows, columns, both diagonals
    for seam in seams:
        a, b = plan.block(seam.first).core, plan.block(seam.second).core
        y0, y1, x0, x1 = seam.box
        assert y0 < y1 and x0 < x1 and max(a[0], b[0]) - 24 <= y0


def test_match_cells_is_one_to_one_and_global_ids_follow_the_matches():
    first = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 2, 2]])
    second = np.array([[3, 3, 0, 4, 5], [3, 3, 0, 4, 5]])  # 2 is split into 4 and 5
    np.testing.assert_array_equal(match_cells(first, second), [[1, 3]])
    with pytest.raises(ValueError, match="one-to-one"):
        match_cells(first, second, min_iou=0.3)
    # block 0: core cells 1, 2 (+ 3 in the overlap); block 1: core cells 1, 2
    cells = [BlockCells(2, 3), BlockCells(2, 2)]
    tables, n = global_ids(cells, {(0, 1): np.array([[2, 1], [3, 2]])})
    assert n == 3
    np.testing.assert_array_equal(tables[0], [0, 1, 2])
    np.testing.assert_array_equal(tables[1], [0, 2, 3])  # 1 is block 0's 2; 2 is new


def test_scheduler_addresses():
    assert parse_scheduler("local:3") == 3 and parse_scheduler("tcp://10.0.0.1:8786") is None
    for bad in ("local:0", "local:x", ""):
        with pytest.raises(ValueError):
            parse_scheduler(bad)


# -- one huge image --------------------------------------------------------------------------


def _assert_same_cells(reference, labels):
    """Every cell of the reference is exactly one cell here (no split, no merge)."""
    m = match(reference, labels)
    assert m.n_gt == m.n_pred
    strong = m.iou > 0.5
    assert strong.sum() == m.n_gt  # one-to-one
    assert partition_agreement(reference, labels) >= 0.999


def _cells_crossing_cores(reference, plan) -> int:
    """Cells whose bounding box spans more than one block core."""
    from scipy import ndimage as ndi

    (by, bx), crossing = plan.block_shape, 0
    for box in ndi.find_objects(reference):
        if box is not None:
            ys, xs = box
            crossing += (
                ys.start // by != (ys.stop - 1) // by or xs.start // bx != (xs.stop - 1) // bx
            )
    return crossing


def test_zarr_image_on_the_cluster_equals_single_machine_segment(
    client, cells, model, reference, tmp_path
):
    image = _write_zarr(tmp_path / "cells.zarr", cells)
    progress = []
    generator = iter_segment_zarr(
        client,
        image,
        tmp_path / "labels.zarr",
        model=model,
        block_shape=BLOCK,
        precision="float32",
    )
    while True:
        try:
            progress.append(next(generator))
        except StopIteration as done:
            result = done.value
            break
    assert [(p.stage, p.done) for p in progress] == [("segment", i) for i in range(10)] + [
        ("stitch", i) for i in range(1, 10)
    ]
    labels = zarr.open_array(store=result.store, mode="r")
    assert labels.dtype == np.int32 and labels.shape == cells.shape
    assert labels.chunks == (BLOCK, BLOCK)
    assert dict(labels.attrs)["napari_unet"] == {"complete": True, "n_cells": result.n_cells}
    assert _cells_crossing_cores(reference, result.plan) >= 10  # 13 of 21: seams exercised
    labels = labels[:]
    assert result.n_cells == int(reference.max()) == len(np.unique(labels)) - 1
    _assert_same_cells(reference, labels)
    assert sorted(os.listdir(tmp_path)) == ["cells.zarr", "labels.zarr"]  # no leftovers


def _executing(client) -> int:
    """Tasks running on the workers, cancelled ones included (they run to their end)."""
    return sum(client.run(lambda dask_worker: len(dask_worker.state.executing)).values())


def _wait_until(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_interrupted_zarr_job_leaves_no_partial_store(client, cells, model, tmp_path):
    """Ctrl-C in the middle of a zarr job (issue 20): blocks still running on the workers
    when the job ends find their provisional array gone and remove what they wrote."""
    image = _write_zarr(tmp_path / "cells.zarr", cells)
    output = tmp_path / "cells_masks.zarr"
    generator = iter_segment_zarr(
        client, image, output, model=model, block_shape=BLOCK, precision="float32"
    )
    next(generator)
    next(generator)  # one block done
    _wait_until(lambda: _executing(client) > 0)  # blocks are being segmented
    assert (tmp_path / ".cells_masks.zarr.napari-unet-partial").is_dir()
    with pytest.raises(KeyboardInterrupt):
        generator.throw(KeyboardInterrupt)  # Ctrl-C while the job waits for its blocks
    _wait_until(lambda: _executing(client) == 0)  # the blocks dask could not stop ended
    assert sorted(os.listdir(tmp_path)) == ["cells.zarr", "cells_masks.zarr"]
    status = dict(zarr.open_array(store=str(output), mode="r").attrs)["napari_unet"]
    assert status["complete"] is False  # what is left says it is not a result


def test_ome_zarr_image_gets_ome_labels_with_a_pyramid(
    client, cells, model, reference, tmp_path, monkeypatch
):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    from napari_unet.io import zarr_files as zarr_io

    monkeypatch.setattr(zarr_io, "PYRAMID_MIN_SIDE", 100)  # levels 1 (192 px) and 2 (96 px)
    group = zarr.open_group(str(tmp_path / "cells.ome.zarr"), mode="w")
    write_image(
        cells[None, None],
        group,
        axes="czyx",
        scale_factors=(),
        storage_options={"chunks": (1, 1, BLOCK, BLOCK)},
    )
    result = segment_zarr(
        client, tmp_path / "cells.ome.zarr", model=model, block_shape=BLOCK, precision="float32"
    )
    assert result.path == "labels/cells/0"
    _assert_same_cells(reference, zarr.open_array(store=result.store, path=result.path)[0, 0])
    nodes = {
        node.zarr.path.rstrip("/").split("/")[-1]: node
        for node in Reader(parse_url(str(tmp_path / "cells.ome.zarr")))()
    }
    labels_node = nodes["cells"]
    assert [d.shape for d in labels_node.data] == [
        (1, 1, 384, 384),
        (1, 1, 192, 192),
        (1, 1, 96, 96),
    ]
    np.testing.assert_array_equal(
        np.asarray(labels_node.data[1])[0, 0], np.asarray(labels_node.data[0])[0, 0, ::2, ::2]
    )
    assert "image-label" in labels_node.metadata or labels_node.load  # a label node
    assert not [k for k in zarr.open_group(result.store)["labels"].keys() if k.startswith(".")]


def test_dask_array_input_and_a_worker_killed_mid_job(client, cells, model, reference, tmp_path):
    """A worker dies while blocks run: dask reruns its tasks (the model too, if it was
    only there) and the labels are still complete and right."""
    import dask.array as da

    image = da.from_array(cells, chunks=(100, 100))
    generator = iter_segment_zarr(
        client, image, tmp_path / "labels.zarr", model=model, block_shape=BLOCK, precision="float32"
    )
    next(generator)  # the job is submitted
    first = next(generator)
    assert first.stage == "segment" and first.done == 1
    busy = [w for w, keys in client.processing().items() if keys]
    victim = busy[0] if busy else next(iter(client.scheduler_info()["workers"]))
    _kill(_worker_pids(client)[victim])
    result = list(_drain(generator))[-1]
    _assert_same_cells(reference, zarr.open_array(store=result.store, mode="r")[:])
    assert victim not in client.scheduler_info()["workers"]  # it really died
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def _drain(generator):
    while True:
        try:
            yield next(generator)
        except StopIteration as done:
            yield done.value
            return


def test_output_that_napari_unet_did_not_write_is_refused(client, cells, model, tmp_path):
    other = _write_zarr(tmp_path / "mine.zarr", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="not written by napari-unet"):
        segment_zarr(client, cells, other, model=model)
    image = _write_zarr(tmp_path / "cells.zarr", cells)
    with pytest.raises(ValueError, match="overwrite the input"):
        segment_zarr(client, image, image, model=model)
    with pytest.raises(ValueError, match="not one 2D plane"):
        segment_zarr(client, np.zeros((2, 64, 64)), tmp_path / "x.zarr", model=model)


# -- many files ------------------------------------------------------------------------------


def _crops(cells):
    return {
        f"field{i}": cells[y : y + 160, x : x + 176]
        for i, (y, x) in enumerate([(0, 0), (0, 200), (200, 0), (200, 200), (100, 100), (224, 96)])
    }


def test_batch_interrupted_then_resumed(client, cells, model, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    crops = _crops(cells)
    for name, crop in crops.items():
        tifffile.imwrite(inputs / f"{name}.tif", crop)
    (inputs / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    options = {"model": model, "precision": "float32"}
    generator = iter_segment_files(client, [inputs], out, **options)
    for progress in generator:
        if progress.outcome is not None and progress.outcome.error is None:
            break
    generator.close()  # Ctrl-C after the first result: the rest is cancelled
    time.sleep(1.0)  # tasks already running when cancelled may still finish
    written = {p.name for p in out.glob("*_masks.tif")}
    assert 1 <= len(written) < len(crops)  # interrupted part way
    assert not list(out.glob(".*.tmp"))  # atomic: no half-written file is left visible
    # a result napari-unet wrote whose shape no longer fits its image is not "complete"
    from napari_unet.io.files import write_labels_tiff

    stale = sorted(written)[0]
    write_labels_tiff(out / stale, np.zeros((10, 10), np.uint16))
    result = segment_files(client, [inputs], out, **options)
    outcomes = {o.image.stem: o for o in result.outcomes}
    assert outcomes["broken"].error and "broken.tif" in str(outcomes["broken"].image)
    skipped = {o.image.stem for o in result.skipped}
    assert skipped == {n.removesuffix("_masks.tif") for n in written} - {
        stale.removesuffix("_masks.tif")
    }
    for name, crop in crops.items():
        masks = tifffile.imread(out / f"{name}_masks.tif")
        assert outputs_complete(inputs / f"{name}.tif", [out / f"{name}_masks.tif"])
        _assert_same_cells(segment(crop, model, precision="float32"), masks)
    # a third run has nothing to do
    again = segment_files(client, [inputs], out, **options)
    assert len(again.skipped) == len(crops) and len(again.failed) == 1


# -- command line ----------------------------------------------------------------------------


def test_cli_segment_on_a_local_cluster(cells, tmp_path, capsys):
    from napari_unet.cli.commands import main

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", cells[:128, :160])
    tifffile.imwrite(folder / "b.tif", cells[200:, 100:])
    store = _write_zarr(tmp_path / "slide.zarr", cells)
    argv = [
        "segment",
        str(folder),
        store,
        "-o",
        str(tmp_path / "out"),
        "--precision",
        "float32",
        "--dask-scheduler",
        "local:2",
        "--block-size",
        "192",
    ]
    assert main(argv) == 0
    reference = segment(cells, precision="float32")
    _assert_same_cells(reference, zarr.open_array(str(tmp_path / "out" / "slide_masks.zarr"))[:])
    for name in ("a", "b"):
        assert (tmp_path / "out" / f"{name}_masks.tif").is_file()
    assert main(argv[:2] + argv[3:]) == 0  # again, the folder only: nothing left to do
    assert capsys.readouterr().out.count("complete from an earlier run") == 2


def test_cli_train_on_a_scheduler_address(cluster, tmp_path):
    from conftest import _sample

    from napari_unet.cli.commands import main

    tifffile.imwrite(tmp_path / "img.tif", _sample("nuclei.tif")[:256, :352])
    tifffile.imwrite(tmp_path / "img_masks.tif", _sample("nuclei_annotation.tif")[:256, :352])
    out = tmp_path / "model.safetensors"
    argv = [
        "train",
        "--images",
        str(tmp_path / "img.tif"),
        "--annotations",
        str(tmp_path / "img_masks.tif"),
        "-o",
        str(out),
        "--iterations",
        "3",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--dask-scheduler",
        cluster.scheduler_address,
    ]
    assert main(argv) == 0
    assert load_model(out).metadata["training"]["iterations_done"] == 3


# -- training on a worker --------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_pair():
    from conftest import _sample

    return np.array(_sample("nuclei.tif")[:256, :352]), np.array(
        _sample("nuclei_annotation.tif")[:256, :352]
    )


def test_remote_training_streams_progress_stops_and_returns_a_model(client, training_pair, model):
    image, annotation = training_pair
    stop = threading.Event()
    config = TrainingConfig(n_iterations=10_000, batch_size=1, tile_shape=(188, 188))
    generator = iter_train_remote(
        client,
        [image],
        [annotation],
        model=model,
        config=config,
        device="cpu",
        seed=0,
        stop=stop,
        snapshot_interval=None,
    )
    received = []
    for progress in _drain(generator):
        if not hasattr(progress, "iteration"):
            result = progress
            break
        received.append(progress)
        if progress.iteration >= 5:
            stop.set()  # live: asked while the worker is still training
    assert [p.iteration for p in received] == list(range(1, len(received) + 1))
    assert all(np.isfinite(p.loss) for p in received)
    assert result.stopped and 5 <= len(result.history) < 60
    assert result.model.metadata["training"]["stopped"]
    labels = segment(image, result.model)
    assert labels.shape == image.shape and labels.max() > 10


def test_remote_training_worker_death_is_a_clear_error_with_the_last_snapshot(
    client, training_pair, model
):
    image, annotation = training_pair
    config = TrainingConfig(n_iterations=10_000, batch_size=1, tile_shape=(188, 188))
    generator = iter_train_remote(
        client,
        [image],
        [annotation],
        model=model,
        config=config,
        device="cpu",
        seed=0,
        snapshot_interval=0.5,
    )
    snapshots = 0
    with pytest.raises(RemoteTrainingError, match="died") as failure:
        for progress in generator:
            snapshots += progress.snapshot is not None
            if snapshots == 2:
                running = [
                    w
                    for w, keys in client.processing().items()
                    if any("napari-unet-train" in str(k) for k in keys)
                ]
                _kill(_worker_pids(client)[running[0]])
                snapshots += 1
    error = failure.value
    assert error.snapshot is not None and len(error.history) >= 2
    assert segment(image[:128, :128], error.snapshot).shape == (128, 128)
    client.wait_for_workers(2, timeout=60)


def test_train_remote_reports_a_training_error(client):
    with pytest.raises(ValueError):
        train_remote(
            client,
            [np.zeros((64, 64))],
            [np.zeros((64, 64), np.uint16)],
            device="cpu",
            config=TrainingConfig(n_iterations=2),
        )
