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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
R = TypeVar("R")


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
    """Run ``generator``, setting PyTorch's intra-op threads before each step.

    The count is set on the thread that runs the steps (a worker thread) and put back
    when the generator ends, so a thread pool reusing that thread is not affected.

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
