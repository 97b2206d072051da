"""Connecting to a dask cluster, progress of cluster jobs, and the model on the cluster."""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: Retries of a task that raised (a worker that dies is handled by dask itself).
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class ClusterProgress:
    """Progress of a job on a cluster.

    Attributes
    ----------
    stage : str
        ``"segment"`` (blocks or files), ``"stitch"`` (relabelling blocks) or
        ``"pyramid"`` (coarser OME-Zarr levels).
    done, total : int
        Tasks of this stage finished, and in all.
    seconds : float
        Wall time since the job started.
    outcome : FileOutcome or None
        The file just finished (:func:`iter_segment_files`).
    """

    stage: str
    done: int
    total: int
    seconds: float
    outcome: object | None = None

    @property
    def fraction(self) -> float:
        """Share of this stage done, in [0, 1]."""
        return self.done / max(self.total, 1)


#: How to install what the scale-out needs.
EXTRA_HINT = "pip install 'napari-unet-cells[distributed]'"


def require_distributed(what: str = "running on a dask cluster") -> None:
    """Raise ``ImportError`` naming the extra to install if dask.distributed or zarr is missing."""
    try:
        import distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{what} needs dask.distributed and zarr: {EXTRA_HINT}") from error


def parse_scheduler(address: str) -> int | None:
    """Workers of a ``"local:N"`` address (N >= 1), or ``None`` for a scheduler address.

    Raises
    ------
    ValueError
        For ``"local:"`` without a positive worker count, or an empty address.
    """
    text = str(address).strip()
    if not text:
        raise ValueError("the dask scheduler address is empty (e.g. tcp://host:8786 or local:2)")
    if not text.lower().startswith("local"):
        return None
    count = text[len("local") :].lstrip(":")
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{address!r}: write local:N with N worker processes, e.g. local:2")
    return int(count)


@contextmanager
def connect(address: str) -> Iterator:
    """A :class:`distributed.Client` of a scheduler address, or of a new local cluster.

    Parameters
    ----------
    address : str
        ``"tcp://host:8786"`` (any address dask takes) for a running cluster, or
        ``"local:N"`` for a :class:`distributed.LocalCluster` of N worker processes of
        one thread each, closed on exit. Their PyTorch uses the machine's cores shared
        among them (``OMP_NUM_THREADS`` when it is set).

    Yields
    ------
    distributed.Client
    """
    from distributed import Client, LocalCluster

    n_workers = parse_scheduler(address)
    if n_workers is None:
        with Client(address) as client:
            yield client
        return
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // n_workers))
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": threads},
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _pickled(model) -> bytes:
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


def model_on_cluster(client, model):
    """A future of ``model`` on the cluster: one task, recomputed if its worker dies.

    The model travels pickled inside the task; each worker that needs it fetches it
    once from another worker.
    """
    key = f"unet-model-{uuid.uuid4().hex}"
    return client.submit(pickle.loads, _pickled(model), pure=False, key=key)
