"""Training on a dask worker (e.g. one with a GPU) while the session stays local.

:func:`iter_train_remote` runs :func:`napari_unet.training.loop.train` as one task on a
worker and is itself a generator of the same progress records: they stream back
through a :class:`distributed.Queue` (a few records per put), a
:class:`distributed.Event` carries Stop to the worker (checked between iterations),
and the task's return value, the best model, comes back to the session. Snapshots
the worker sends (``snapshot_interval``) are kept here, so when the worker dies the
error (:class:`RemoteTrainingError`) still holds the last one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Generator, Sequence
from dataclasses import replace

from napari_unet.runtime.progress import run_to_completion

#: Seconds between two progress messages of the worker (records are batched in between).
SEND_INTERVAL = 0.25
#: Seconds the session waits for a message before it checks on the worker again.
POLL_INTERVAL = 0.25
#: Seconds between two checks that the worker is still there.
ALIVE_CHECK_INTERVAL = 1.0
#: Default seconds between snapshots the worker sends back (a few MB each).
DEFAULT_SNAPSHOT_INTERVAL = 30.0


class RemoteTrainingError(RuntimeError):
    """The worker running a remote training died or the run was lost.

    Attributes
    ----------
    snapshot : UNet or None
        The last snapshot of the network the worker sent (CPU, eval mode, with its
        metadata), or ``None`` if none arrived.
    history : list of TrainingProgress
        The progress records received.
    """

    def __init__(self, message: str, snapshot=None, history=None):
        super().__init__(message)
        self.snapshot = snapshot
        self.history = list(history or [])


def _train_task(data, options: dict, run: str, snapshot_interval: float | None):
    """Worker side: run ``train`` and send its progress; return the result."""
    from distributed import Event, Queue, get_worker

    from napari_unet.training.loop import train

    messages, stop_requested = Queue(f"{run}-progress"), Event(f"{run}-stop")
    messages.put(("started", get_worker().address))
    images, annotations, validation = data
    stop = threading.Event()
    if stop_requested.is_set():  # the session gave up on this run (e.g. a rerun)
        stop.set()
    generator = train(
        images,
        annotations,
        stop=stop,
        validation=validation,
        snapshot_interval=snapshot_interval,
        **options,
    )
    pending, last_sent = [], time.monotonic()
    while True:
        try:
            progress = next(generator)
        except StopIteration as done:
            result = done.value
            break
        pending.append(progress)
        if progress.snapshot is not None or time.monotonic() - last_sent >= SEND_INTERVAL:
            messages.put(("progress", pending))
            pending, last_sent = [], time.monotonic()
            if stop_requested.is_set():
                stop.set()
    if pending:
        messages.put(("progress", pending))
    # the snapshots already went to the session: do not send them all back again
    result.history = [replace(p, snapshot=None) for p in result.history]
    return result


def iter_train_remote(
    client,
    images: Sequence,
    annotations: Sequence,
    *,
    stop: threading.Event | None = None,
    validation: Sequence | None = None,
    worker: str | None = None,
    resources: dict | None = None,
    snapshot_interval: float | None = DEFAULT_SNAPSHOT_INTERVAL,
    **options,
):
    """Train on a dask worker; a generator of :class:`~napari_unet.training.loop.TrainingProgress`.

    Same records and result as :func:`napari_unet.training.loop.train` run here: the
    progress of every iteration arrives live (batched every :data:`SEND_INTERVAL`
    seconds), setting ``stop`` ends the run after the worker's current iteration with
    the best model so far, and the :class:`~napari_unet.training.loop.TrainingResult`
    comes back (its ``history`` without snapshots).

    Parameters
    ----------
    client : distributed.Client
        The cluster.
    images, annotations : sequence of array-like
        As :func:`~napari_unet.training.loop.train`; sent to the worker once.
    stop : threading.Event, optional
        Set it (from any thread) to stop the run between two iterations.
    validation : sequence of (image, annotation), optional
        As :func:`~napari_unet.training.loop.train`.
    worker : str, optional
        Address of the worker to run on (e.g. the one with a GPU); any worker if
        ``None``.
    resources : dict, optional
        dask worker resources the task needs, e.g. ``{"GPU": 1}``.
    snapshot_interval : float or None
        Seconds between snapshots of the network the worker sends; the last one is
        kept in the session for when the worker dies. ``None``: none.
    **options
        ``model``, ``config``, ``device`` (resolved on the worker: ``"auto"`` takes
        its GPU), ``dense``, ``seed``, ``model_config``, ``optimizer_state`` of
        :func:`~napari_unet.training.loop.train`.

    Yields
    ------
    TrainingProgress

    Returns
    -------
    TrainingResult

    Raises
    ------
    RemoteTrainingError
        If the worker dies during the run; it holds the last snapshot received.
    ValueError, FloatingPointError
        As :func:`~napari_unet.training.loop.train`, raised on the worker.
    """
    from distributed import Event, KilledWorker, Queue

    run = f"napari-unet-train-{uuid.uuid4().hex}"
    messages, stop_event = Queue(f"{run}-progress", client=client), Event(f"{run}-stop", client)
    payload = (list(images), list(annotations), list(validation) if validation else None)
    [data] = client.scatter([payload], workers=[worker] if worker else None, hash=False)
    future = client.submit(
        _train_task,
        data,
        options,
        run,
        snapshot_interval,
        key=run,
        workers=[worker] if worker else None,
        allow_other_workers=False,
        resources=resources,
        retries=0,
        pure=False,
    )
    history, snapshot, address = [], None, None

    def died(why: str) -> RemoteTrainingError:
        at = (
            f" after iteration {history[-1].iteration}"
            if history
            else " before the first iteration"
        )
        kept = (
            "the last snapshot it sent is kept (error.snapshot)"
            if snapshot is not None
            else "no snapshot had arrived"
        )
        return RemoteTrainingError(f"remote training {why}{at}; {kept}", snapshot, history)

    finished, checked = False, time.monotonic()
    try:
        while True:
            if stop is not None and stop.is_set() and not stop_event.is_set():
                stop_event.set()
            done = future.done()  # before reading: what it sent first is then all queued
            for kind, body in _received(messages, wait=not done):
                if kind == "started":
                    if address is not None:  # dask reran the task elsewhere
                        raise died(f"stopped: its worker {address} died and dask reran it")
                    address = body
                else:
                    for progress in body:
                        history.append(progress)
                        if progress.snapshot is not None:
                            snapshot = progress.snapshot
                        yield progress
            if done:
                break
            if address is not None and time.monotonic() - checked >= ALIVE_CHECK_INTERVAL:
                checked = time.monotonic()
                if address not in _worker_addresses(client):
                    raise died(f"stopped: its worker {address} died")
        if future.cancelled():  # the scheduler forgot it: its worker (and data) died
            raise died(f"stopped: its worker {address} died and dask lost the task")
        try:
            result = future.result()  # or the worker's error, raised here
        except KilledWorker as error:  # dask gave up after workers died running it
            raise died(f"stopped: the workers running it died ({error})") from error
        finished = True
        return result
    finally:
        if not finished:
            stop_event.set()  # a rerun dask may have started ends at once
        client.cancel([future, data])


def _worker_addresses(client) -> set:
    """Addresses of the cluster's workers, all of them."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before 2025: every worker, and no such argument
        info = client.scheduler_info()
    return set(info["workers"])


def _received(messages, wait: bool) -> list:
    """Every message in the queue; with none, waits :data:`POLL_INTERVAL` when ``wait``.

    (A ``get`` with a timeout would log the scheduler's timeout as an error each time.)
    """
    items = messages.get(batch=True)
    if not items and wait:
        time.sleep(POLL_INTERVAL)
    return items


def train_remote(client, images, annotations, **options):
    """Train on a dask worker and return the result; see :func:`iter_train_remote`.

    Returns
    -------
    TrainingResult
    """
    return run_to_completion(iter_train_remote(client, images, annotations, **options))


def train_on_scheduler(address: str, images, annotations, **options) -> Generator:
    """:func:`iter_train_remote` on a scheduler address or ``"local:N"`` (connected here)."""
    from napari_unet.distributed.cluster import connect

    with connect(address) as client:
        return (yield from iter_train_remote(client, images, annotations, **options))
