"""One training run of the *Train* widget: the worker's job, and how it ends.

:func:`load_and_train` is the generator the worker runs; :class:`TrainingRun` settles its
outcome into the session (model, description, state) whether or not the widget is still
there.
"""

from __future__ import annotations

from napari.utils.notifications import show_error

from ._session import TrainingState, UNetSession


def load_and_train(model, images, annotations, scheduler: str | None = None, **options):
    """:func:`napari_unet.training.loop.train`, loading ``model`` first if it is a file or name.

    A generator run by the worker: the model file is read there, not on the GUI thread
    (and here, not on a remote worker that may not see the file). With ``scheduler``,
    training runs on a worker of that dask cluster and its progress streams back
    (:func:`napari_unet.distributed.train_on_scheduler`).
    """
    from napari_unet.method.network import UNet
    from napari_unet.models.files import load_model
    from napari_unet.training import loop as training

    if model is not None and not isinstance(model, UNet):
        model = load_model(model)
    if scheduler:
        from napari_unet.distributed import train_on_scheduler

        job = train_on_scheduler(scheduler, images, annotations, model=model, **options)
    else:
        job = training.train(images, annotations, model=model, **options)
    return (yield from job)


def export_bioimageio_job(model, path):
    """:func:`napari_unet.models.bioimageio.export_bioimageio` as a generator for a worker.

    The export (TorchScript, test tensors, validation) takes a few seconds: off the GUI
    thread. Nothing to report on the way.
    """
    from napari_unet.models.bioimageio import export_bioimageio

    yield
    return export_bioimageio(model, path)


# -- worker signals -> session state. No widget involved: these also run when the widget
#    is gone, so the state machine always ends in a finished state. -------------------
class TrainingRun:
    """Outcome of one training worker, settled into the session when it finishes."""

    def __init__(self, session: UNetSession, source: str):
        self.session = session
        self.source = source
        self.result = None
        self.error: Exception | None = None

    def returned(self, result) -> None:
        self.result = result
        how = "stopped at" if result.stopped else "finished after"
        kept = (
            "the starting model kept"  # the never-worse rule (result.painted says why)
            if result.set_aside is not None
            else f"weights of iteration {result.best_iteration}"
        )
        self.session.set_model(
            result.model,
            f"trained in this session from {self.source}, {how} iteration "
            f"{len(result.history)} ({kept})",
            optimizer_state=result.optimizer_state,
        )

    def errored(self, error: Exception) -> None:
        self.error = error
        snapshot = getattr(error.__cause__, "snapshot", None)  # a remote worker died
        if snapshot is not None:
            iteration = error.__cause__.history[-1].iteration if error.__cause__.history else 0
            self.session.set_model(
                snapshot,
                f"the last snapshot (iteration {iteration}) of a remote run from "
                f"{self.source}, whose worker died",
            )
        show_error(f"Training failed: {error}")

    def finished(self) -> None:
        if self.error is not None:
            state = TrainingState.FAILED
        elif self.result is not None and not self.result.stopped:
            state = TrainingState.DONE
        else:  # stopped by the user, or aborted because the widget or viewer closed
            state = TrainingState.STOPPED
        self.session.set_training_state(state)
