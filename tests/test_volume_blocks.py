"""Large volumes block by block: 3D blocks with halos, seams in Z, Y and X, on a cluster too."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from napari_unet import segment  # noqa: E402
from napari_unet.inference import volume_blocks  # noqa: E402
from napari_unet.inference.to_zarr import iter_segment_to_zarr  # noqa: E402
from napari_unet.inference.volume_blocks import open_block_image, plan_volume_blocks  # noqa: E402
from napari_unet.metrics import match, seg_score  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.testing import synthetic_nuclei_volume  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning"),
]

SPACING = (2.0, 1.0, 1.0)
#: A (48, 128, 128) volume cut into 2 x 2 x 2 blocks: seams at z = 24, y = 64, x = 64.
SHAPE, BLOCK, OVERLAP = (48, 128, 128), (24, 64, 64), (12, 32, 32)
#: Nuclei on the seams: all three (a corner), Z only, Y only, X only, Y and X; and inside.
ON_SEAMS = [(24, 64, 64), (24, 28, 30), (10, 64, 28), (38, 30, 64), (12, 64, 100)]
INSIDE = [(10, 28, 100), (38, 100, 28), (36, 100, 100), (10, 100, 64 - 30)]


@pytest.fixture(scope="module")
def model():
    return load_model("default")


@pytest.fixture(scope="module")
def volume():
    return synthetic_nuclei_volume(
        SHAPE, centers=ON_SEAMS + INSIDE, radius=9, spacing=SPACING, seed=4
    )


def test_3d_plan_cores_partition_the_volume_with_halos_per_axis(model):
    plan = plan_volume_blocks((40, 300, 200), model, spacing=(2.0, 1.0, 1.0))
    assert plan.block_shape == (40, 304, 208)  # the volume's sides, Y and X on the grid
    plan = plan_volume_blocks((40, 300, 200), model, (2.0, 1.0, 1.0), 1.0, (16, 100, 100))
    assert plan.grid_shape == (3, 3, 2) and plan.block_shape == (16, 112, 112)
    # 3 diameters of 24.85 px: 75 px across (80 on the pooling grid), 38 planes of 2 px
    assert plan.overlaps == (38, 80, 80) and plan.contexts == (16, 32, 32)
    covered = np.zeros((40, 300, 200), np.int32)
    for block in plan.blocks:
        z0, z1, y0, y1, x0, x1 = block.core
        covered[z0:z1, y0:y1, x0:x1] += 1
        r = plan.read_box(block)
        assert r[0] == max(block.extent[0] - 16, 0) and r[5] == min(block.extent[5] + 32, 200)
    assert (covered == 1).all()
    # every pair of face, edge or corner neighbours once: 2 x 2 x 2 blocks are all neighbours
    small = plan_volume_blocks((20, 64, 64), model, None, 1.0, (10, 32, 32), overlap=4)
    assert len(small.seams()) == 28 and all(s.first < s.second for s in small.seams())
    for bad in ((0, 64, 64), (10, 64)):
        with pytest.raises(ValueError, match="three positive integers"):
            plan_volume_blocks((20, 64, 64), model, block_shape=bad)
    with pytest.raises(ValueError, match="overlap"):
        plan_volume_blocks((20, 64, 64), model, overlap=(4, 0, 4))


def test_volume_block_by_block_matches_in_memory_and_seams_give_one_id(
    volume, model, tmp_path, monkeypatch
):
    import dask.array as da

    image, truth = volume
    reference = segment(image, model, axes="ZYX", spacing=SPACING, precision="float32")
    # half the default context (16 px): each block reads less than the volume, a stricter test
    monkeypatch.setattr(volume_blocks, "VOLUME_CONTEXT", 16)
    plan = plan_volume_blocks(SHAPE, model, SPACING, 1.0, BLOCK, OVERLAP)
    assert all(
        plan.read_box(b)[1] - plan.read_box(b)[0] < SHAPE[0]
        and plan.read_box(b)[3] - plan.read_box(b)[2] < SHAPE[1]
        for b in plan.blocks
    )
    progress = []
    result = run_to_completion(
        iter_segment_to_zarr(
            da.from_array(image, chunks=BLOCK), tmp_path / "labels.zarr", model, axes="ZYX",
            spacing=SPACING, block_shape=BLOCK, overlap=OVERLAP, precision="float32",
        ),
        progress.append,
    )  # fmt: skip
    assert [p.tile_index for p in progress] == list(range(1, 17))  # 8 blocks, two passes
    assert result.n_levels == 1 and result.labels.chunksize == BLOCK
    labels = result.labels.compute()
    assert labels.dtype == np.int32 and labels.shape == SHAPE
    assert result.n_cells == labels.max() == len(np.unique(labels)) - 1
    # object for object as in memory
    m = match(reference, labels)
    assert abs(m.n_pred - m.n_gt) <= 1 and (m.iou > 0.5).sum() >= m.n_gt - 1
    assert seg_score(reference, labels) >= 0.9
    # every nucleus on a seam is one object with one id on both sides of its seams
    for k, center in enumerate(ON_SEAMS, start=1):
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]
        main = ids[np.argmax(counts)]
        assert counts.max() >= 0.8 * (truth == k).sum()
        zs, ys, xs = np.nonzero(labels == main)
        for axis, (coords, seam) in enumerate(zip((zs, ys, xs), (24, 64, 64), strict=True)):
            if abs(center[axis] - seam) < 2:
                assert coords.min() < seam <= coords.max()


def test_ome_zarr_volume_axes_and_spacing_from_metadata_cli_and_cluster(volume, model, tmp_path):
    from conftest import local_cluster
    from ome_zarr.writer import write_image

    from napari_unet.cli.commands import main
    from napari_unet.distributed import segment_zarr

    distributed = pytest.importorskip("distributed")
    image = volume[0][:, :96, :96]
    store = tmp_path / "nuclei.ome.zarr"
    write_image(
        image[None], zarr.open_group(str(store), mode="w"), axes="czyx", scale_factors=(),
        storage_options={"chunks": (1, 16, 48, 48)},
        scale={"z": SPACING[0], "y": SPACING[1], "x": SPACING[2]},
    )  # fmt: skip
    plane, ome, spacing = open_block_image(str(store))
    assert plane.shape == image.shape and ome is not None and spacing == SPACING
    with pytest.raises(ValueError, match="one plane .YX. or one volume .ZYX."):
        open_block_image(str(store), axes="CZYX")
    # in this process, from the command line (axes and spacing from the metadata)
    argv = ["segment", str(store), "-o", str(tmp_path / "out"), "--block-size", "16x48x48",
            "--volume-method", "planes", "--precision", "float32"]  # fmt: skip
    assert main(argv) == 0
    out = str(tmp_path / "out" / "nuclei.ome_masks.zarr")
    from_cli = zarr.open_array(store=out, path="0", mode="r")[:]
    assert from_cli.shape == image.shape
    api = run_to_completion(
        iter_segment_to_zarr(
            image, tmp_path / "api.zarr", model, axes="ZYX", spacing=SPACING,
            block_shape=(16, 48, 48), volume_method="planes", precision="float32",
        )
    )  # fmt: skip
    np.testing.assert_array_equal(from_cli, api.labels.compute())
    # on a dask cluster: OME-Zarr labels beside the image, the same cells
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        result = segment_zarr(
            client, store, model=model, block_shape=(16, 48, 48), volume_method="planes",
            precision="float32",
        )  # fmt: skip
    assert result.path == "labels/cells/0" and result.n_cells == api.n_cells
    on_cluster = zarr.open_array(store=result.store, path=result.path, mode="r")[:]
    np.testing.assert_array_equal(on_cluster[0], from_cli)
