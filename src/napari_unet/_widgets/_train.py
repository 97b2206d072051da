"""*Train* dock widget: train or fine-tune a U-Net on annotated images, in the background.

The widget gathers inputs and copies the layer data, then runs the core generator
:func:`napari_unet.training.loop.train` in a napari thread worker. Worker signals move the
session's training state machine (:class:`~._session.TrainingState`); the widget's
look follows from the state in one place, :meth:`TrainWidget._on_state_changed`.

It also holds the interactive loop: the live preview of the view while training
(:class:`~._preview.LivePreview`, fed with the network snapshots the worker yields),
and the corrections that feed the next round (:class:`~._accept.AcceptCells`). A run
after a run continues from the session's model with its optimiser state.

The GUI thread does as little as possible per iteration: the progress bar and the
status line are updated at most every :data:`UI_INTERVAL_MS`, the loss curve redrawn
at most every two seconds. Work on the GUI thread, and the X server's work for every
repaint, take CPU time and the GIL from the training thread (docs/benchmarks.md).
For the same reason training does not report to napari's activity dock: while any
``napari.utils.progress`` is open, napari animates a busy indicator in the status
bar, which cost a third of the training throughput on a 2-core CPU (measured).
"""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import Container, ProgressBar, PushButton
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_unet.live.preview import SNAPSHOT_INTERVAL_S
from napari_unet.live.threads import ThreadShare

from ._accept import AcceptCells
from ._common import TRAINING_INDICATOR_SPEED, ActivityReport, message_label, same_layer
from ._guidance import WhereNext
from ._lifetime import WidgetLifetime
from ._loss_fields import LossFields
from ._loss_plot import LossPlot
from ._preview import LivePreview
from ._session import TrainingState, session_for
from ._train_run import TrainingRun, export_bioimageio_job, load_and_train
from ._training_pairs import TrainingPairs
from ._training_settings import TrainingSettings

#: Shortest time (ms) between two updates of the progress bar and the status line.
UI_INTERVAL_MS = 1000
#: Resolution of the progress bar (it shows the fraction of the run done).
PROGRESS_STEPS = 1000


class TrainWidget(Container):
    """Train a U-Net on image/annotation pairs, with a live loss curve and Stop.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        from napari.utils.theme import get_theme

        super().__init__(labels=False)  # the two parts label their own fields
        self._viewer = napari_viewer
        self._session = session_for(napari_viewer)
        self._lifetime = WidgetLifetime(self.native)
        self._stop_event: threading.Event | None = None
        self._latest = None  # the last progress record, shown by the UI timer
        self._activity: ActivityReport | None = None  # the line in napari's activity dock

        self.data = TrainingPairs(napari_viewer, self._session, self._lifetime)
        self.settings = TrainingSettings(self._lifetime)
        self.loss = LossFields(self._session, self._lifetime)
        self.start_button = PushButton(text="Start training")
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS)
        self.status = message_label()
        #: The painted-cell score beside the loss curve: live, then the verdict.
        self.painted_score = message_label()
        self.painted_score.tooltip = (
            "A quarter of your painted cells (at most 10) are held out of training. They "
            "score the starting model and the model being trained (SEG: mean overlap of "
            "each held-out cell with its predicted cell, 0 to 1); the better one is kept, "
            "and the instance step is fitted to them. Paint 3 cells or more."
        )
        self._threads = ThreadShare()  # the CPU's threads, for training and the preview
        self.preview = LivePreview(napari_viewer, self._threads)
        self.where_next = WhereNext(
            napari_viewer, lambda: self.data.pairs()[0], self.preview, self._session
        )
        self.accept = AcceptCells(
            napari_viewer, self._annotation_layer, self._lifetime, self._predicted_box
        )
        self.save_button = PushButton(text="Save model…")
        self.export_button = PushButton(text="Export to bioimage.io…")
        self._model_buttons = Container(
            widgets=[self.save_button, self.export_button], layout="horizontal", labels=False
        )
        self._model_buttons.margins = (0, 0, 0, 0)
        self.extend(
            [
                self.data,
                self.settings,
                self.loss,
                self.start_button,
                self.progress,
                self.status,
                self.preview,
                self.where_next,
                self.accept,
                self._model_buttons,
            ]
        )
        self._ui_timer = QTimer(self.native)
        self._ui_timer.setSingleShot(True)
        self._ui_timer.setInterval(UI_INTERVAL_MS)
        self._ui_timer.timeout.connect(self._lifetime.guard(self._show_progress))
        theme = get_theme(napari_viewer.theme)
        self.loss_plot = LossPlot(theme.text.as_hex(), theme.canvas.as_hex())
        layout = self.native.layout()
        below = layout.indexOf(self._model_buttons.native)
        layout.insertWidget(below, self.loss_plot.canvas)
        layout.insertWidget(below, self.painted_score.native)

        guard = self._lifetime.guard
        self.start_button.changed.connect(guard(self._on_start_clicked))
        self.save_button.changed.connect(guard(self._on_save_clicked))
        self.export_button.changed.connect(guard(self._on_export_clicked))
        self._lifetime.connect(self._session.training_state_changed, self._on_state_changed)
        self._lifetime.connect(self._session.model_changed, self._on_model_changed)
        self.reset_choices()
        self._on_model_changed(self._session.model)
        self._on_state_changed(self._session.training_state, self._session.training_state)

    # -- public actions ----------------------------------------------------------------
    @property
    def state(self) -> TrainingState:
        """The session's training state."""
        return self._session.training_state

    @property
    def worker(self):
        """The running worker, or ``None``."""
        return self._lifetime.job.worker if self._lifetime.job is not None else None

    def start(self):
        """Copy the training data and start training in a thread worker.

        A run from the session's model continues its optimiser state. With the live
        preview on, the worker yields a snapshot of the network every
        :data:`~napari_unet.live.preview.SNAPSHOT_INTERVAL_S` seconds for the preview.

        Returns the worker (already started), or ``None`` if the inputs are not valid
        (the reason is shown as a notification).
        """
        if self._session.training_state.running or self._lifetime.running:
            return None
        settings, session = self.settings, self._session
        dense = session.dense
        try:
            images, annotations = self.data.copy_data(dense=dense)
            model, model_config, source = settings.starting_model(session)
            config = settings.config(session)
            scheduler = settings.scheduler_address()
        except (ValueError, FileNotFoundError, ImportError) as error:
            show_error(f"Cannot start training: {error}")
            return None
        from_session = settings.start_from.value == "session"
        optimizer_state = session.optimizer_state if from_session else None
        self._stop_event = threading.Event()
        if scheduler:
            source = f"{source}, on the dask cluster {scheduler}"
        run = TrainingRun(session, source)
        training = load_and_train(
            model,
            images,
            annotations,
            scheduler=scheduler,
            config=config,
            device=settings.device.value,
            dense=dense,
            stop=self._stop_event,
            seed=int(settings.seed.value) or None,
            model_config=model_config,
            snapshot_interval=SNAPSHOT_INTERVAL_S if self.preview.on.value else None,
            optimizer_state=optimizer_state,
        )
        self.loss_plot.clear()
        self.progress.value = 0
        self._latest = self._painted = None
        self.painted_score.value = ""
        self.preview.attach(self.data.pairs()[0][0], settings.device.value)
        session.set_training_state(TrainingState.TRAINING)
        verdict = self._lifetime.guard(self._show_verdict)
        return self._lifetime.run(
            self._threads.training,  # on the CPU threads the preview leaves free
            training,
            yielded=self._on_progress,
            # lambdas, not bound methods: they settle the session's state even when the
            # widget is gone, and they keep ``run`` alive (PyQt holds bound methods'
            # objects only weakly).
            returned=lambda result: (run.returned(result), verdict(result)),
            errored=lambda error: run.errored(error),
            finished=lambda: run.finished(),
            stop_event=self._stop_event,
        )

    def _show_verdict(self, result) -> None:
        """The never-worse rule's verdict, or why there is none."""
        if result.painted is not None:
            from napari_unet.inference.segment import InstanceSettings

            step = InstanceSettings.for_model(result.model).describe()
            self.painted_score.value = f"{result.painted.message}\ninstance step fitted: {step}"
        elif not result.history or result.history[-1].validation_score is None:
            self.painted_score.value = "Paint 3 cells or more to get a painted-cell score."

    def stop(self):
        """Ask training to end after the current iteration (the best model is kept)."""
        if self._session.training_state is TrainingState.TRAINING and self._stop_event is not None:
            self._stop_event.set()
            self._session.set_training_state(TrainingState.STOPPING)

    def save_model(self, path) -> Path:
        """Write the session's model to ``path`` (safetensors), atomically."""
        from napari_unet.models.files import save_model

        if self._session.model is None:
            raise ValueError("no model has been trained in this session yet")
        return save_model(self._session.model, path)

    # -- reactions -----------------------------------------------------------------------
    def _on_state_changed(self, state: TrainingState, old: TrainingState) -> None:
        """Make the widget follow the training state (the one place that does)."""
        running = state.running
        self.start_button.text = {
            TrainingState.TRAINING: "Stop",
            TrainingState.STOPPING: "Stopping…",
        }.get(state, "Start training")
        self.start_button.enabled = state is not TrainingState.STOPPING
        self.data.enabled = self.settings.enabled = not running
        self.save_button.enabled = not running and self._session.model is not None
        self.export_button.enabled = self.save_button.enabled
        if state is TrainingState.DONE:
            self.status.value = f"Done: {self._session.model_description}."
        elif state is TrainingState.STOPPED:
            self.status.value = (
                f"Stopped: {self._session.model_description}."
                if old is TrainingState.STOPPING
                else "Stopped (the widget or the viewer was closed)."
            )
        elif state is TrainingState.FAILED:
            self.status.value = "Failed (see the notification)."
        elif state is TrainingState.STOPPING:
            self.status.value = "Stopping after this iteration…"
        elif state is TrainingState.TRAINING:
            self.status.value = "Preparing the training data…"
            if self._activity is None:
                self._activity = ActivityReport(
                    "U-Net training", self.native.window(), TRAINING_INDICATOR_SPEED
                )
        if not running:
            self._ui_timer.stop()
            self._show_progress()  # the last record
            self.loss_plot.draw()
            if self._activity is not None:
                self._activity.close()
                self._activity = None

    def _on_progress(self, progress) -> None:
        """Per iteration: keep the record, hand a snapshot to the preview. Cheap."""
        self._latest = progress
        if progress.painted is not None:
            self._painted = progress.painted
            self.loss_plot.score_label = "painted-cell SEG"
        self.loss_plot.add(progress.iteration, progress.loss, progress.validation_score)
        if progress.snapshot is not None:
            self.preview.show_model(progress.snapshot, f"iteration {progress.iteration}")
        if not self._ui_timer.isActive():
            self._ui_timer.start()

    def _show_progress(self) -> None:
        progress = self._latest
        if progress is None:
            return
        self.progress.value = round(progress.fraction * PROGRESS_STEPS)
        text = (
            f"iteration {progress.iteration} of ~{progress.n_iterations} · "
            f"loss {progress.loss:.4f} · {progress.seconds:.0f} s"
        )
        if self._session.training_state is TrainingState.TRAINING:
            self.status.value = text
            if self._painted is not None:
                self.painted_score.value = self._painted.message
        if self._activity is not None:  # at most once per UI_INTERVAL_MS, like the bar
            self._activity.set_fraction(progress.fraction, f"U-Net training: {text}")

    def _on_start_clicked(self, *_):
        if self._session.training_state is TrainingState.TRAINING:
            self.stop()
        else:
            self.start()

    def _on_save_clicked(self, *_):
        from qtpy.QtWidgets import QFileDialog

        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Save model", "unet.safetensors", "napari-unet model (*.safetensors)"
        )
        if not path:
            return
        try:
            written = self.save_model(path)
        except (OSError, ValueError, TypeError) as error:
            show_error(f"Could not save the model: {error}")
            return
        show_info(f"Model saved to {written}")

    def export_bioimageio(self, path):
        """Export the session's model as a bioimage.io package in a worker.

        Returns the worker (already started), or ``None`` when there is no model or a
        worker of this widget runs. Success and failure are shown as notifications.
        """
        if self._session.model is None or self._lifetime.running:
            return None
        self.export_button.enabled = self.start_button.enabled = False
        return self._lifetime.run(
            export_bioimageio_job,
            self._session.model,
            path,
            returned=lambda written: show_info(f"bioimage.io package written to {written}"),
            errored=lambda error: show_error(f"Could not export the model: {error}"),
            finished=self._on_export_finished,
        )

    def _on_export_clicked(self, *_):
        from qtpy.QtWidgets import QFileDialog

        try:
            from napari_unet.models.bioimageio import require_bioimageio

            require_bioimageio()
        except ImportError as error:
            show_error(str(error))
            return
        path, _filter = QFileDialog.getSaveFileName(
            self.native, "Export to bioimage.io", "unet.bioimageio.zip", "bioimage.io model (*.zip)"
        )
        if path:
            self.export_bioimageio(path)

    def _on_export_finished(self) -> None:
        self.start_button.enabled = True
        self.export_button.enabled = self.save_button.enabled

    def _on_model_changed(self, model) -> None:
        self.settings.update_start_from_choices(session_has_model=model is not None)
        self.save_button.enabled = not self._session.training_state.running and model is not None
        self.export_button.enabled = self.save_button.enabled
        if model is not None:
            # the next round continues from this model (and its optimiser state) ...
            self.settings.start_from.value = "session"
            # ... and the preview shows what it makes of the view
            if self.preview.image is not None:
                self.preview.show_model(model, "trained model")

    def _annotation_layer(self):
        """The annotation of the (first) training pair: where accepted cells go."""
        return self.data.pairs()[0][1]

    def _predicted_box(self, source, plane):
        """The part of ``source`` holding a prediction (the preview's region)."""
        region = self.preview.region
        if same_layer(source, self.preview.layer) and region is not None:
            return region.box if region.plane == plane else (0, 0, 0, 0)
        return None
