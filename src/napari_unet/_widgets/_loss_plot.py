"""Live training-loss curve, painted with ``QPainter``: a few milliseconds per repaint.

The curve was a matplotlib canvas; one redraw (ticks, text, constrained layout) held the
GUI thread 70 ms on the 2-core CPU with the machine idle, and longer beside training: the
longest freeze of the window while training (docs/benchmarks.md, issue 18). This widget
paints the same curves (the loss of every iteration, its smoothed value, the validation
score on a second axis) with a handful of ``QPainter`` calls, at most
:data:`MAX_POINTS` points per curve.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Most points drawn per curve; longer runs are thinned to this many (evenly spaced).
MAX_POINTS = 600
LOSS_COLOUR = "#7f9fbf"
SMOOTH_COLOUR = "#ffa500"
SCORE_COLOUR = "#6fcf97"


def nice_ticks(low: float, high: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(n, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    if value == round(value) and abs(value) < 1e7:
        return str(int(round(value)))
    return f"{value:.3g}"


class _Canvas(QWidget):
    """The painted area; :class:`LossPlot` holds the data."""

    def __init__(self, plot: LossPlot):
        super().__init__()
        self._plot = plot
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(360, 180)

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt's name)
        self._plot.paint(self)


class LossPlot:
    """Training loss (and validation score, when there is one) against iteration.

    Points are appended as progress arrives; :meth:`draw` schedules one repaint
    (Qt merges it with the other repaints of the same pass of the event loop).

    Parameters
    ----------
    foreground, background : str
        Colours of text/axes and of the plot (from the napari theme).

    Attributes
    ----------
    canvas : QWidget
        The widget to put in a layout.
    iterations, losses, smoothed : list
        The points so far (smoothed with :data:`~napari_unet.training.config.LOSS_SMOOTHING`).
    scores : list of (int, float)
        ``(iteration, validation score)`` pairs.
    score_label : str
        Name of the score on the right axis.
    """

    def __init__(self, foreground: str = "#f0f1f2", background: str = "#262930"):
        self.foreground, self.background = QColor(foreground), QColor(background)
        self.canvas = _Canvas(self)
        self.canvas.setToolTip(
            "Training loss (weighted cross-entropy, eq. 1) of every iteration (blue) and "
            "smoothed (orange); green points: the painted-cell score (0 to 1, right axis)"
        )
        self.score_label = "validation IoU"
        self.iterations: list[int] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.scores: list[tuple[int, float]] = []

    def clear(self) -> None:
        """Forget all points (repainted with the next :meth:`draw`)."""
        self.iterations.clear()
        self.losses.clear()
        self.smoothed.clear()
        self.scores.clear()

    def add(self, iteration: int, loss: float, validation_score: float | None = None) -> None:
        """Append one iteration (drawn at the next :meth:`draw`)."""
        from napari_unet.training.config import LOSS_SMOOTHING  # the smoothing training uses

        if not math.isfinite(loss):
            return
        previous = self.smoothed[-1] if self.smoothed else loss
        self.iterations.append(int(iteration))
        self.losses.append(float(loss))
        self.smoothed.append(previous + LOSS_SMOOTHING * (float(loss) - previous))
        if validation_score is not None:
            self.scores.append((int(iteration), float(validation_score)))

    def draw(self) -> None:
        """Schedule a repaint of the curve."""
        self.canvas.update()

    # -- painting --------------------------------------------------------------------------
    def paint(self, widget: QWidget) -> None:
        """Paint the axes and the curves on ``widget`` (its ``paintEvent``)."""
        painter = QPainter(widget)
        try:
            self._paint(painter, widget.width(), widget.height())
        finally:
            painter.end()

    def _paint(self, painter: QPainter, width: int, height: int) -> None:
        painter.fillRect(0, 0, width, height, self.background)
        font = QFont(painter.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.8, 6.0))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        text_h = metrics.height()
        right = 40 if self.scores else 10
        area = QRectF(48, 6, max(width - 48 - right, 10), max(height - 6 - 2 * text_h - 6, 10))
        painter.setPen(QPen(self.foreground, 1))
        painter.drawRect(area)
        painter.drawText(
            QRectF(area.left(), height - text_h - 2, area.width(), text_h),
            Qt.AlignmentFlag.AlignHCenter,
            "iteration",
        )
        if not self.iterations:
            return
        x = np.asarray(self.iterations, float)
        x0, x1 = float(x[0]), float(max(x[-1], x[0] + 1))
        loss = np.asarray(self.losses)
        y0, y1 = float(loss.min()), float(loss.max())
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        pad = 0.05 * (y1 - y0)
        y0, y1 = y0 - pad, y1 + pad

        def to_x(v):
            return area.left() + (np.asarray(v, float) - x0) / (x1 - x0) * area.width()

        def to_y(v, low, high):
            return area.bottom() - (np.asarray(v, float) - low) / (high - low) * area.height()

        for tick in nice_ticks(x0, x1):
            px = float(to_x(tick))
            painter.drawLine(QPointF(px, area.bottom()), QPointF(px, area.bottom() + 3))
            box = QRectF(px - 30, area.bottom() + 3, 60, text_h)
            painter.drawText(box, Qt.AlignmentFlag.AlignHCenter, _label(tick))
        for tick in nice_ticks(y0, y1):
            py = float(to_y(tick, y0, y1))
            painter.drawLine(QPointF(area.left() - 3, py), QPointF(area.left(), py))
            box = QRectF(0, py - text_h / 2, area.left() - 5, text_h)
            painter.drawText(box, Qt.AlignmentFlag.AlignRight, _label(tick))
        keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_POINTS)).astype(int))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setClipRect(area)
        for values, colour, line_width in (
            (loss, LOSS_COLOUR, 0.8),
            (np.asarray(self.smoothed), SMOOTH_COLOUR, 1.6),
        ):
            painter.setPen(QPen(QColor(colour), line_width))
            xs, ys = to_x(x[keep]), to_y(values[keep], y0, y1)
            painter.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(xs, ys, strict=True)]))
        if self.scores:
            self._paint_scores(painter, area, to_x, to_y, text_h)
        painter.setClipping(False)
        left = area.left() + 4
        for text, colour in (("loss", LOSS_COLOUR), ("smoothed", SMOOTH_COLOUR)) + (
            ((self.score_label, SCORE_COLOUR),) if self.scores else ()
        ):
            painter.setPen(QPen(QColor(colour), 1))
            painter.drawText(QPointF(left, area.top() + text_h), text)
            left += metrics.horizontalAdvance(text) + 10

    def _paint_scores(self, painter, area, to_x, to_y, text_h) -> None:
        it, score = zip(*self.scores, strict=True)
        xs, ys = to_x(it), to_y(score, 0.0, 1.0)
        pen = QPen(QColor(SCORE_COLOUR), 1.2)
        painter.setPen(pen)
        points = [QPointF(a, b) for a, b in zip(xs, ys, strict=True)]
        painter.drawPolyline(QPolygonF(points))
        painter.setBrush(QColor(SCORE_COLOUR))
        for point in points:
            painter.drawEllipse(point, 2.5, 2.5)
        painter.setClipping(False)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(self.foreground, 1))
        for tick in (0.0, 0.5, 1.0):
            py = float(to_y(tick, 0.0, 1.0))
            box = QRectF(area.right() + 4, py - text_h / 2, 36, text_h)
            painter.drawText(box, Qt.AlignmentFlag.AlignLeft, _label(tick))
