"""Tie what a widget connects and runs to the life of its Qt widget.

Long work (training, tiled prediction, weight maps) is a generator of the Qt-free core
run by ``napari.qt.threading.create_worker``. A :class:`WidgetLifetime` owns the running
worker of one widget and ends it cleanly - ``stop`` event set, ``quit()`` requested,
then a bounded wait for the thread - when

- the widget's Qt object is destroyed,
- the widget, or a widget holding it, is taken out of the viewer (napari reparents
  it to ``None``), or
- a window holding it is closed (``viewer.close()`` or the window's close button).

A programmatic close stops the worker at once; a close by the user (a *spontaneous*
event, which napari may still cancel with a confirmation dialog) is checked again on
the next turn of the event loop and stops the worker only if the window really closed.

It also guards the widget's slots: connections to longer-lived objects (layers, the
session, a finishing worker) hold the widget only weakly and do nothing once the
widget is gone, so they never reach deleted Qt objects nor keep a viewer alive.
"""

from __future__ import annotations

import inspect
import threading
import warnings
import weakref
from collections.abc import Callable, Generator

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QWidget

#: Longest wait (seconds) for a worker's current step when its widget goes away.
STOP_TIMEOUT_S = 30.0


class WorkerError(Exception):
    """A ``RuntimeError`` raised by the core inside a thread worker.

    superqt's ``GeneratorWorker`` (under ``napari.qt.threading``) takes any
    ``RuntimeError`` from the generator for "the worker object was deleted": it emits
    neither ``errored`` nor ``finished`` and only warns. PyTorch reports most failures
    (out of memory, unsupported operations) as ``RuntimeError``, so they are re-raised
    as this type, message and cause kept, and reach ``errored`` like any other error.
    """


def report_runtime_errors(generator_function: Callable, *args, **kwargs) -> Generator:
    """Run ``generator_function(*args, **kwargs)``, re-raising RuntimeError as WorkerError.

    A generator function itself, so ``create_worker`` makes a ``GeneratorWorker`` of
    it: ``create_worker(report_runtime_errors, train, images, annotations, ...)``.
    """
    try:
        return (yield from generator_function(*args, **kwargs))
    except RuntimeError as error:
        raise WorkerError(str(error)) from error


class _Job:
    """A started worker, with thread-safe flags set from the worker thread itself."""

    def __init__(self, worker, stop_event: threading.Event | None):
        self.worker = worker
        self.stop_event = stop_event
        self.started = threading.Event()
        self.finished = threading.Event()
        direct = Qt.ConnectionType.DirectConnection
        worker.started.connect(self.started.set, direct)
        worker.finished.connect(self.finished.set, direct)

    def stop(self, timeout_s: float) -> bool:
        """Ask the worker to end and wait for its thread; return whether it ended."""
        if self.stop_event is not None:
            self.stop_event.set()
        self.worker.quit()
        if not self.started.is_set():
            # Not picked up by the thread pool yet: it aborts as soon as it starts.
            return True
        return self.finished.wait(timeout_s)


class _CloseFilter(QObject):
    """Event filter on a widget and its ancestors that reports removal and closing."""

    def __init__(self, lifetime: WidgetLifetime, widget: QWidget):
        super().__init__(widget)
        self._lifetime = weakref.ref(lifetime)
        self._widget = weakref.ref(widget)

    def eventFilter(self, obj, event):  # noqa: D102, N802 (Qt override)
        lifetime = self._lifetime()
        if lifetime is None or lifetime.job is None:
            return False
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if obj.parentWidget() is None:
                # taken out of the viewer: the widget, or a widget holding it (a tab
                # of a one-dock widget)
                lifetime.stop(wait=True)
        elif obj is not self._widget() and kind == QEvent.Type.Close:
            if event.spontaneous():
                window = weakref.ref(obj)
                QTimer.singleShot(0, lambda: lifetime._stop_if_closed(window))
            else:
                lifetime.stop(wait=True)
        return False


class WidgetLifetime:
    """Connections and the running worker of one widget, undone when the widget goes.

    Parameters
    ----------
    widget : QWidget
        The widget's Qt object (``container.native`` for a magicgui widget).
    timeout_s : float
        Longest wait (seconds) for the worker's current step when stopping on close.
    """

    def __init__(self, widget: QWidget, timeout_s: float = STOP_TIMEOUT_S):
        self.job: _Job | None = None
        self.alive = True
        self.timeout_s = timeout_s
        self._connections: list[tuple[object, Callable]] = []
        self._watched: list[QWidget] = []  # strongly, only while a worker runs
        self._widget = weakref.ref(widget)
        self._filter = _CloseFilter(self, widget)
        widget.installEventFilter(self._filter)
        # A lambda (not a bound method): PyQt keeps it, hence this object, alive
        # until the widget is destroyed.
        widget.destroyed.connect(lambda *_: self.close())

    # -- slots -------------------------------------------------------------------------
    def guard(self, slot: Callable) -> Callable:
        """Wrap ``slot`` so that it is not called once the widget is gone.

        A bound method's object is held weakly, so the connection never keeps the
        widget alive.
        """
        if inspect.ismethod(slot):
            method = weakref.WeakMethod(slot)
        else:

            def method():
                return slot

        def guarded(*args):
            target = method()
            if self.alive and target is not None:
                return target(*args)
            return None

        return guarded

    def connect(self, emitter, slot: Callable) -> Callable:
        """Connect a guarded ``slot`` to a napari/psygnal/Qt signal ``emitter``.

        Returns the connected callable (pass it to :meth:`disconnect`). Everything
        connected this way is disconnected when the widget goes.
        """
        guarded = self.guard(slot)
        emitter.connect(guarded)
        self._connections.append((emitter, guarded))
        return guarded

    def disconnect(self, emitter, guarded: Callable) -> None:
        """Undo one :meth:`connect`."""
        try:
            self._connections.remove((emitter, guarded))
        except ValueError:
            return
        try:
            emitter.disconnect(guarded)
        except (TypeError, ValueError, RuntimeError):  # already gone with its owner
            pass

    # -- the worker --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a worker is running (or about to start)."""
        return self.job is not None

    def start(
        self,
        worker,
        stop_event: threading.Event | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """Start ``worker`` (created with ``_start_thread=False``) and take charge of it.

        Parameters
        ----------
        worker : GeneratorWorker
            Not started yet.
        stop_event : threading.Event, optional
            Set (besides ``worker.quit()``) when the worker must stop.
        on_finished : callable, optional
            Called when the worker has finished, after :attr:`running` became
            ``False`` (wrap it with :meth:`guard` if it touches the widget).

        Raises
        ------
        RuntimeError
            If a worker of this widget is still running.
        """
        if self.job is not None:
            raise RuntimeError("a worker of this widget is still running")
        job = _Job(worker, stop_event)
        self.job = job
        # Connected before the worker starts, in this order: Qt delivers the queued
        # ``finished`` to slots in connection order.
        worker.finished.connect(lambda: self._forget(job))
        if on_finished is not None:
            worker.finished.connect(on_finished)
        self._watch_ancestors()
        worker.start()

    def run(
        self,
        generator_function: Callable,
        *args,
        yielded: Callable | None = None,
        returned: Callable | None = None,
        errored: Callable | None = None,
        finished: Callable | None = None,
        stop_event: threading.Event | None = None,
        **kwargs,
    ):
        """Run a core generator in a thread worker owned by this lifetime; return it.

        The one place that creates the plugin's workers: ``create_worker`` with
        :func:`report_runtime_errors` (so PyTorch's ``RuntimeError`` reaches
        ``errored``), a ``GeneratorWorker`` (errors reported once, by ``errored``), the
        connections, then :meth:`start`.

        Parameters
        ----------
        generator_function : callable
            Called in the worker thread as ``generator_function(*args, **kwargs)``.
        *args, **kwargs
            Its arguments (copies of layer data, never the layers themselves).
        yielded, returned, errored, finished : callable, optional
            Slots of the worker's signals. Bound methods (the widget's) are guarded: not
            called once the widget is gone. Plain functions (e.g. lambdas that settle
            session state) are always called. ``finished`` runs after :attr:`running`
            became ``False``.
        stop_event : threading.Event, optional
            Set (besides ``worker.quit()``) when the worker must stop.

        Raises
        ------
        RuntimeError
            If a worker of this widget is still running.
        """
        from napari.qt.threading import create_worker
        from superqt.utils import GeneratorWorker

        def slot(function):
            return self.guard(function) if inspect.ismethod(function) else function

        signals = {"yielded": yielded, "returned": returned, "errored": errored}
        worker = create_worker(
            report_runtime_errors,
            generator_function,
            *args,
            _worker_class=GeneratorWorker,
            _start_thread=False,
            _connect={name: slot(f) for name, f in signals.items() if f is not None},
            **kwargs,
        )
        self.start(worker, stop_event, on_finished=slot(finished) if finished else None)
        return worker

    def stop(self, wait: bool = True) -> None:
        """End the running worker, if any: set its stop event, ``quit()``, wait."""
        job = self.job
        if job is None:
            return
        ended = job.stop(self.timeout_s if wait else 0.0)
        if not wait:
            return
        if not ended:
            warnings.warn(
                f"a napari-unet worker did not stop within {self.timeout_s:.0f} s",
                RuntimeWarning,
                stacklevel=2,
            )
        self._forget(job)

    def close(self) -> None:
        """Stop the worker, disconnect, and ignore later signals: the widget is gone."""
        if not self.alive:
            return
        self.alive = False
        self.stop(wait=True)
        for emitter, guarded in list(self._connections):
            self.disconnect(emitter, guarded)

    # -- internals ---------------------------------------------------------------------
    def _forget(self, job: _Job) -> None:
        if self.job is job:
            self.job = None
            self._unwatch_ancestors()

    def _watch_ancestors(self) -> None:
        widget = self._widget()
        parent = widget.parentWidget() if widget is not None else None
        while parent is not None:
            parent.installEventFilter(self._filter)
            self._watched.append(parent)
            parent = parent.parentWidget()

    def _unwatch_ancestors(self) -> None:
        for ancestor in self._watched:
            try:
                ancestor.removeEventFilter(self._filter)
            except RuntimeError:  # a C++ object is already deleted
                pass
        self._watched.clear()

    def _stop_if_closed(self, window_ref: weakref.ref) -> None:
        window = window_ref()
        try:
            closed = window is None or not window.isVisible()
        except RuntimeError:  # deleted while closing
            closed = True
        if closed:
            self.stop(wait=True)


class LayerWatch:
    """Call ``callback`` on every edit (paint stroke or new data) of one layer at a time.

    Parameters
    ----------
    lifetime : WidgetLifetime
        Lifetime of the watching widget: the connections end with it.
    callback : callable
        Slot of the layer's events (guarded).
    events : tuple of str
        The layer's events that count as edits: ``paint`` and ``data`` for a Labels
        layer; ``("data",)`` for an Image layer, which is not painted.
    """

    def __init__(
        self,
        lifetime: WidgetLifetime,
        callback: Callable,
        events: tuple[str, ...] = ("paint", "data"),
    ):
        self._lifetime = lifetime
        self._callback = callback
        self._events = events
        self._slots: list[tuple[object, Callable]] = []
        self.layer = None

    def watch(self, layer) -> bool:
        """Watch ``layer`` (``None``: nothing) instead; return whether the layer changed."""
        if layer is self.layer:
            return False
        for emitter, slot in self._slots:
            self._lifetime.disconnect(emitter, slot)
        self._slots = []
        self.layer = layer
        if layer is not None:
            self._slots = [
                (emitter, self._lifetime.connect(emitter, self._callback))
                for emitter in (getattr(layer.events, name) for name in self._events)
            ]
        return True
