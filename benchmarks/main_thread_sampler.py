"""What the GUI thread runs during its longest gaps: a sampler of the main thread's stack.

A daemon thread records the main thread's Python stack every ``interval`` seconds
(``sys._current_frames``). After the run, :meth:`MainThreadSampler.report` lists, for
each of the longest gaps between GUI-timer ticks, the stacks seen in it. Samples whose
innermost frame is the event loop itself (``loop.exec()``) mean the thread was in Qt's
C++ code (painting, the X server) or waiting for the GIL. Used by
``bench_gui_latency.py --profile``; it takes a little GIL time itself, so time the GUI
with it off.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path


def _frame_name(frame) -> str:
    path = Path(frame.f_code.co_filename)
    return f"{path.parent.name}/{path.name}:{frame.f_lineno} {frame.f_code.co_name}"


class MainThreadSampler:
    """Sample the main thread's Python stack in a daemon thread."""

    def __init__(self, interval: float = 0.002, depth: int = 40):
        self.interval = interval
        self.depth = depth
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MainThreadSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = sys._current_frames().get(self._main)
            stack = []
            while frame is not None and len(stack) < self.depth:
                stack.append(_frame_name(frame))
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(stack)))  # innermost first
            time.sleep(self.interval)

    def report(self, gaps: list[tuple[float, float]], n_frames: int = 7) -> str:
        """The stacks sampled in each gap ``(start, end)`` (perf_counter seconds)."""
        lines = []
        overall: Counter = Counter()
        for start, end in gaps:
            inside = [stack for t, stack in self.samples if start <= t <= end]
            lines.append(f"gap {1000 * (end - start):.0f} ms: {len(inside)} samples")
            tails = Counter(" <- ".join(stack[:n_frames]) for stack in inside)
            for tail, count in tails.most_common(4):
                lines.append(f"  {count:4d}  {tail}")
            for stack in inside:
                overall.update(set(stack))
        lines.append("frames on the stack in the most samples of these gaps:")
        for name, count in overall.most_common(40):
            lines.append(f"  {count:5d}  {name}")
        return "\n".join(lines)
