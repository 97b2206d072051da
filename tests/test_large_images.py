"""Images whose labels do not fit in memory: block by block into zarr in this process."""

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from napari_unet import segment  # noqa: E402
from napari_unet.inference.to_zarr import iter_segment_to_zarr, labels_fit_in_memory  # noqa: E402
from napari_unet.metrics import match, partition_agreement  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_zarr_labels_block_by_block_equal_segment(tmp_path, monkeypatch):
    import dask.array as da
    from conftest import _sample

    from napari_unet.io import zarr_files as zarr_io

    monkeypatch.setattr(zarr_io, "PYRAMID_MIN_SIDE", 300)  # levels of 348 and 174 px

    image = np.array(_sample("nuclei.tif"))
    model = load_model("default")
    reference = segment(image, model, precision="float32")
    progress = []
    generator = iter_segment_to_zarr(
        da.from_array(image, chunks=100),
        tmp_path / "labels.zarr",
        model,
        block_shape=192,
        precision="float32",
    )
    result = run_to_completion(generator, progress.append)
    # 12 blocks, two passes, two coarser levels
    assert [p.tile_index for p in progress] == list(range(1, 27))
    assert progress[-1].fraction == pytest.approx(1.0) and progress[-1].device == "cpu"
    labels = result.labels
    assert labels.dtype == np.int32 and labels.chunksize == (192, 192)
    labels = labels.compute()
    assert result.n_cells == reference.max() == labels.max()
    m = match(reference, labels)
    assert (m.iou > 0.5).sum() == m.n_gt == m.n_pred  # one cell each, none split or merged
    assert partition_agreement(reference, labels) >= 0.999
    assert result.probabilities is None
    pyramid = result.pyramid
    assert [level.shape for level in pyramid] == [(520, 696), (260, 348), (130, 174)]
    np.testing.assert_array_equal(pyramid[2].compute(), labels[::4, ::4])


def test_memory_estimate():
    assert labels_fit_in_memory((1000, 1000))
    assert not labels_fit_in_memory((10**6, 10**6))
