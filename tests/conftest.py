"""Shared fixtures: the sample field shipped in ``napari_unet/data`` as numpy arrays."""

from functools import cache
from importlib.resources import as_file, files

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi


def local_cluster(n_workers: int):
    """A dask ``LocalCluster`` of worker processes on loopback, one thread each."""
    import distributed

    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env={"OMP_NUM_THREADS": "1"},
    )


@cache
def _sample(name: str) -> np.ndarray:
    with as_file(files("napari_unet") / "data" / name) as path:
        array = tifffile.imread(path)
    array.flags.writeable = False  # shared between tests: copy before changing
    return array


def _painted(masks, n, seed=0, ring=8):
    """``n`` cells of a dense mask painted, with a background stroke around each."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.unique(masks[masks > 0]), n, replace=False)
    cells = np.isin(masks, ids)
    annotation = np.zeros(masks.shape, np.int32)
    annotation[ndi.binary_dilation(cells, iterations=ring) & (masks == 0)] = 1
    annotation[cells] = masks[cells].astype(np.int32) + 1
    return annotation


@pytest.fixture
def sample_image() -> np.ndarray:
    """520x696 uint16 BBBC039 nuclei field (YX), read-only."""
    return _sample("nuclei.tif")


@pytest.fixture
def sample_masks() -> np.ndarray:
    """Dense instance mask of ``sample_image`` (0 = background, 1..156 nuclei), read-only."""
    return _sample("nuclei_masks.tif")


@pytest.fixture
def sample_annotation() -> np.ndarray:
    """Partial annotation of ``sample_image`` (0 = not annotated, 1 = background,
    2..32 = cells), read-only."""
    return _sample("nuclei_annotation.tif")


# -- GUI tests (napari, Qt under Xvfb) -------------------------------------------------
import os  # noqa: E402
import tempfile  # noqa: E402

# napari reads its settings path once, on first import: keep the tests' settings out of
# the user's configuration.
os.environ.setdefault(
    "NAPARI_CONFIG", os.path.join(tempfile.mkdtemp(prefix="napari-unet-tests-"), "settings.yaml")
)


@pytest.fixture(autouse=True)
def _no_worker_left_running(request):
    """Fail a GUI test that leaves a napari thread worker running.

    Autouse fixtures are set up first and torn down last, so this runs after
    ``make_napari_viewer`` has closed the test's viewers (which must stop the workers).
    """
    yield
    if not {"qtbot", "make_napari_viewer"} & set(request.fixturenames):
        return
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    all_done = pool.waitForDone(500)
    assert all_done and pool.activeThreadCount() == 0, (
        f"{pool.activeThreadCount()} napari worker thread(s) still running after the test"
    )


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a busy 2-core runner, OpenMP threads competing with
    other processes make a tiny training iteration 50x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
