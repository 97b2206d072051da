"""Sharing the CPU's PyTorch threads between training and a prediction running beside it.

PyTorch runs every operation on a team of OpenMP threads that meet at a barrier when
the operation ends. A team with more threads than free cores waits, at every barrier,
for a thread the operating system has taken off its core: a training step of the
default model took 0.33 s with one thread but 4 s with two while another process kept
one of the two cores busy (2-core CPU, docs/benchmarks.md). A live preview predicting
beside training is such a second busy thread.

So the two share the threads instead of both taking all of them: while a preview
predicts on :attr:`ThreadShare.preview_threads`, training steps run on the rest, and
on all of them again when it is done. Each side sets its own count, on its own thread
(the count is per thread in PyTorch's OpenMP backend), before each step.

Both also run below the GUI's CPU priority (:data:`BACKGROUND_NICE`, Linux): repainting
the window after a preview (napari's canvas under software OpenGL, the X server) needs
the CPU for some 50-80 ms, and at equal priority on a 2-core CPU it got a share of it
beside two busy training threads, freezing the window past 100 ms (docs/benchmarks.md,
issue 18). Training loses only the CPU time the GUI actually uses.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
R = TypeVar("R")

#: Unix nice value of the threads that train and predict the preview (0: the GUI's).
BACKGROUND_NICE = 10


def run_in_background() -> None:
    """Give the calling thread the CPU priority :data:`BACKGROUND_NICE` (Linux only).

    Linux keeps a nice value per thread, and threads this one starts afterwards (its
    OpenMP team) inherit it. Raising one's own nice needs no privilege; it cannot be
    lowered back without one, so a pooled worker thread stays in the background, which
    is where it works. Elsewhere, or if the system refuses, nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        thread = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, thread) < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICE)
    except OSError:
        pass


class ThreadShare:
    """Intra-op threads for one training run and one preview beside it.

    Parameters
    ----------
    total : int, optional
        Threads the two may use together; default ``torch.get_num_threads()`` of the
        calling thread (PyTorch's default: the physical cores).

    Attributes
    ----------
    total : int
    preview_threads : int
        Threads of a preview prediction: a quarter of ``total``, at least 1.
    """

    def __init__(self, total: int | None = None):
        import torch

        self.total = max(1, int(total or torch.get_num_threads()))
        self.preview_threads = max(1, self.total // 4)
        self._previews = 0
        self._lock = threading.Lock()

    @property
    def previewing(self) -> bool:
        """Whether a preview prediction runs now."""
        return self._previews > 0

    def training_threads(self) -> int:
        """Threads for the next training step: all, less the preview's while it runs."""
        if self.previewing:
            return max(1, self.total - self.preview_threads)
        return self.total

    def preview(self, generator: Generator[P, None, R]) -> Generator[P, None, R]:
        """Run a prediction generator as the preview: on its threads, announced."""
        with self._lock:
            self._previews += 1
        try:
            return (yield from with_threads(generator, lambda: self.preview_threads))
        finally:
            with self._lock:
                self._previews -= 1

    def training(self, generator: Generator[P, None, R]) -> Generator[P, None, R]:
        """Run a training generator on :meth:`training_threads`, checked every step."""
        return (yield from with_threads(generator, self.training_threads))


def with_threads(generator: Generator[P, None, R], threads: Callable[[], int]) -> Generator:
    """Run ``generator`` in the background, setting PyTorch's intra-op threads before each step.

    The count is set on the thread that runs the steps (a worker thread) and put back
    when the generator ends, so a thread pool reusing that thread is not affected; the
    thread runs below the GUI's priority (:func:`run_in_background`).

    Parameters
    ----------
    generator : Generator
        Progress records out, a result returned.
    threads : callable
        Returns the number of threads for the next step.

    Returns
    -------
    object
        The generator's return value.
    """
    import torch

    run_in_background()  # before the thread's first PyTorch operation: its team inherits it
    before = None
    current = None
    try:
        while True:
            wanted = max(1, int(threads()))
            if wanted != current:
                if before is None:
                    before = torch.get_num_threads()
                torch.set_num_threads(wanted)
                current = wanted
            try:
                record = next(generator)
            except StopIteration as done:
                return done.value
            yield record
    finally:
        generator.close()
        if before is not None:
            torch.set_num_threads(before)
