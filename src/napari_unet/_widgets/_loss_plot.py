"""Live training-loss curve: a matplotlib Qt canvas redrawn at most every two seconds."""

from __future__ import annotations

import math

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy

#: Shortest time (ms) between two redraws of the curve. A redraw costs 30-45 ms of the
#: GUI thread (matplotlib, holding the GIL) on a 2-core CPU; redrawn after every
#: iteration it slowed training in the widget down (docs/benchmarks.md).
REDRAW_INTERVAL_MS = 2000


class LossPlot:
    """Training loss (and validation score, when there is one) against iteration.

    Points are appended as progress arrives; the canvas is redrawn by a single-shot
    timer, so a burst of fast iterations costs one redraw per
    :data:`REDRAW_INTERVAL_MS`, and the last point is always drawn.

    Parameters
    ----------
    foreground, background : str
        Colours of text/lines and of the figure (from the napari theme).
    """

    def __init__(self, foreground: str = "#f0f1f2", background: str = "#262930"):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 2.2), layout="constrained", facecolor=background)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.axes = self.figure.add_subplot()
        self.axes.set_facecolor(background)
        for spine in self.axes.spines.values():
            spine.set_color(foreground)
        self.axes.tick_params(colors=foreground, labelsize=8)
        self.axes.set_xlabel("iteration", color=foreground, fontsize=8)
        self.axes.set_ylabel("loss", color=foreground, fontsize=8)
        (self._loss_line,) = self.axes.plot(
            [], [], color="#7f9fbf", lw=0.8, alpha=0.7, label="loss"
        )
        (self._smooth_line,) = self.axes.plot([], [], color="#ffa500", lw=1.6, label="smoothed")
        self._score_axes = None
        self._score_line = None
        self._foreground = foreground
        self.iterations: list[int] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.scores: list[tuple[int, float]] = []
        self._timer = QTimer(self.canvas)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self.draw)

    def clear(self) -> None:
        """Forget all points; the axes are redrawn with the next points."""
        self.iterations.clear()
        self.losses.clear()
        self.smoothed.clear()
        self.scores.clear()
        if not self._timer.isActive():
            self._timer.start()

    def add(self, iteration: int, loss: float, validation_score: float | None = None) -> None:
        """Append one iteration; schedule a redraw."""
        from napari_unet.training.loop import LOSS_SMOOTHING  # the smoothing training uses

        if not math.isfinite(loss):
            return
        previous = self.smoothed[-1] if self.smoothed else loss
        self.iterations.append(int(iteration))
        self.losses.append(float(loss))
        self.smoothed.append(previous + LOSS_SMOOTHING * (float(loss) - previous))
        if validation_score is not None:
            self.scores.append((int(iteration), float(validation_score)))
        if not self._timer.isActive():
            self._timer.start()

    def draw(self) -> None:
        """Redraw now (the timer calls this; call it to flush at the end)."""
        self._timer.stop()
        self._loss_line.set_data(self.iterations, self.losses)
        self._smooth_line.set_data(self.iterations, self.smoothed)
        if self.scores:
            if self._score_axes is None:
                self._score_axes = self.axes.twinx()
                self._score_axes.tick_params(colors=self._foreground, labelsize=8)
                self._score_axes.set_ylabel("validation IoU", color=self._foreground, fontsize=8)
                self._score_axes.set_ylim(0, 1)
                (self._score_line,) = self._score_axes.plot([], [], "o-", color="#6fcf97", ms=3)
            self._score_line.set_data(*zip(*self.scores, strict=True))
        self.axes.relim()
        self.axes.autoscale_view()
        self.canvas.draw_idle()
