"""*Train* dock widget: train or fine-tune a U-Net on annotated images, in the background.

The widget gathers inputs and copies the layer data, then runs the core generator
:func:`napari_unet.training.loop.train` in a napari thread worker. Worker signals move the
session's training state machine (:class:`~._session.TrainingState`); the widget's
look follows from the state in one place, :meth:`TrainWidget._on_state_changed`.

It also holds the interactive loop: the live preview of the view while training
(:class:`~._preview.LivePreview`, fed with the network snapshots the worker yields),
and the corrections that feed the next round (:class:`~._accept.AcceptCells`). A run
after a run continues from the session's model with its optimiser state.

The GUI thread does as little as possible per iteration: the progress bar, the status
line and the loss curve are updated together, in one repaint, at most every
:data:`UI_INTERVAL_MS`. Every repaint of the window costs the GUI thread and the X server
tens of milliseconds under software OpenGL, time taken from training on a small CPU, and
a repaint that waits for the CPU freezes the window (docs/benchmarks.md). Training
reports to napari's activity dock with napari's busy indicator slowed down
(:data:`~._common.TRAINING_INDICATOR_SPEED`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import Container, ProgressBar, PushButton
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from napari_unet.live.preview import SNAPSHOT_INTERVAL_S
from napari_unet.live.threads import ThreadShare

from ._accept import AcceptCells
from ._collapsible import Collapsible
from ._common import TRAINING_INDICATOR_SPEED, ActivityReport, message_label, same_layer
from ._guidance import WhereNext
from ._lifetime import WidgetLifetime
from ._loss_fields import LossFields
from ._loss_plot import LossPlot
from ._model_output import ModelOutput
from ._preview import LivePreview
from ._session import TrainingState, session_for
from ._train_run import TrainingRun, load_and_train
from ._training_pairs import TrainingPairs
from ._training_settings import TrainingSettings

#: Shortest time (ms) between two updates of the progress bar and the status line.
UI_INTERVAL_MS = 1000
#: Resolution of the progress bar (it shows the fraction of the run done).
PROGRESS_STEPS = 1000


class TrainWidget(Container):
    """Train a U-Net on image/annotation pairs, with a live loss curve and Stop.

    The panel follows the order of the work. On top (:attr:`top`): *image*,
    *annotation* (:attr:`inputs`), *minutes*, *Start*/*Stop*, the progress and the
    painted-cell score, the loss curve. Then the live preview (:attr:`preview`), the
    *Where next?* row (:attr:`where_next`), taking predicted cells into the annotation
    (:attr:`accept`) and the model buttons. Everything else sits in the closed
    *Advanced* section (:attr:`advanced`): learning rate, batch size, tile, seed,
    device, the loss settings, the starting model and more image pairs.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        from napari.utils.theme import get_theme

        super().__init__(labels=False)  # the parts label their own fields
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
        self.start_button.tooltip = (
            "Train in the background for the minutes set; the same button stops the run "
            "(the best model so far is kept)"
        )
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS)
        self.progress.tooltip = "Share of the run done (of the minutes, or of the iteration cap)"
        self.status = message_label()
        #: The painted-cell score beside the loss curve: live, then the verdict.
        self.painted_score = message_label()
        from napari_unet.training.settings_help import help_text

        self.painted_score.tooltip = help_text("painted_score")
        theme = get_theme(napari_viewer.theme)
        self.loss_plot = LossPlot(theme.text.as_hex(), theme.canvas.as_hex())
        self._threads = ThreadShare()  # the CPU's threads, for training and the preview
        self.preview = LivePreview(napari_viewer, self._threads)
        #: Under the preview: where to paint next (uncertainty, "Where next"), issue 18.
        self.where_next = WhereNext(
            napari_viewer, lambda: self.data.pairs()[0], self.preview, self._session
        )
        self.accept = AcceptCells(
            napari_viewer, self._annotation_layer, self._lifetime, self._predicted_box
        )
        self.output = ModelOutput(self._session, self._lifetime, self._on_export_busy)
        self.save_button, self.export_button = self.output.save_button, self.output.export_button

        #: The fields on top: image, annotation, minutes (a stack's axes go after image).
        self.inputs = Container(
            widgets=[
                self.data.image_layer,
                self.data.stack_kind,
                self.data.annotation_layer,
                self.settings.minutes,
            ]
        )
        self.inputs.margins = (0, 0, 0, 0)
        self.top = Container(
            widgets=[
                self.inputs,
                self.start_button,
                self.progress,
                self.status,
                self.painted_score,
            ],
            labels=False,
        )
        self.top.margins = (0, 0, 0, 0)
        self.top.native.layout().addWidget(self.loss_plot.canvas)  # last: nothing appended
        self.advanced = Collapsible(
            "Advanced",
            [self.settings, self.loss, self.settings.starting, self.data],
            tooltip="Learning rate, batch size, tile, seed, device, the loss settings, the "
            "starting model and more image pairs; the defaults suit most images",
        )
        self.extend(
            [self.top, self.preview, self.where_next, self.accept, self.output, self.advanced]
        )
        self.native.layout().addStretch(1)  # the parts packed at the top of a tall dock
        self._ui_timer = QTimer(self.native)
        self._ui_timer.setSingleShot(True)
        self._ui_timer.setInterval(UI_INTERVAL_MS)
        self._ui_timer.timeout.connect(self._lifetime.guard(self._show_progress))

        guard = self._lifetime.guard
        self.start_button.changed.connect(guard(self._on_start_clicked))
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
            axes, spacings = self.data.axes_and_spacings()  # volumes: their painted planes
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
            axes=axes,
            spacing=spacings,
        )
        self.loss_plot.clear()
        self.loss_plot.draw()
        self.progress.value = 0
        self._latest = self._painted = None
        self.painted_score.value = ""
        self.preview.attach(self.data.pairs()[0][0], settings.device.value, axes[0], spacings[0])
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
            from napari_unet.training.painted_score import (
                MIN_CROSS_FITTED,
                MIN_PAINTED_TO_HOLD_OUT,
            )

            self.painted_score.value = (
                f"Paint {MIN_CROSS_FITTED} cells or more ({MIN_PAINTED_TO_HOLD_OUT} from "
                "scratch) to get a painted-cell score."
            )

    def stop(self):
        """Ask training to end after the current iteration (the best model is kept)."""
        if self._session.training_state is TrainingState.TRAINING and self._stop_event is not None:
            self._stop_event.set()
            self._session.set_training_state(TrainingState.STOPPING)

    def save_model(self, path) -> Path:
        """Write the session's model to ``path`` (safetensors), atomically."""
        return self.output.save_model(path)

    def export_bioimageio(self, path):
        """Export the session's model as a bioimage.io package in a worker (or ``None``)."""
        return self.output.export_bioimageio(path)

    # -- reactions -----------------------------------------------------------------------
    def _on_state_changed(self, state: TrainingState, old: TrainingState) -> None:
        """Make the widget follow the training state (the one place that does)."""
        running = state.running
        self.start_button.text = {
            TrainingState.TRAINING: "Stop",
            TrainingState.STOPPING: "Stopping…",
        }.get(state, "Start training")
        self.start_button.enabled = state is not TrainingState.STOPPING
        for part in (self.inputs, self.settings, self.settings.starting, self.data):
            part.enabled = not running
        self.output.update(running)
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
        self.loss_plot.draw()  # in the same repaint as the bar and the status line
        self.progress.value = round(progress.fraction * PROGRESS_STEPS)
        text = (
            f"iteration {progress.iteration} of ~{progress.n_iterations} · "
            f"loss {progress.loss:.4f} · {progress.seconds:.0f} s"
        )
        if self._session.training_state is TrainingState.TRAINING:
            self.status.value = text
            if self._painted is not None and self.painted_score.value != self._painted.message:
                self.painted_score.value = self._painted.message  # a repaint only if it changed
        if self._activity is not None:  # at most once per UI_INTERVAL_MS, like the bar
            self._activity.set_fraction(progress.fraction, f"U-Net training: {text}")

    def _on_start_clicked(self, *_):
        if self._session.training_state is TrainingState.TRAINING:
            self.stop()
        else:
            self.start()

    def _on_export_busy(self, busy: bool) -> None:
        self.start_button.enabled = not busy

    def _on_model_changed(self, model) -> None:
        self.settings.update_start_from_choices(session_has_model=model is not None)
        self.output.update(self._session.training_state.running)
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
