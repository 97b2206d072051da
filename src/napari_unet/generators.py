"""Helpers for the generator protocol used by long-running work (training, prediction)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
R = TypeVar("R")


def run_to_completion(
    generator: Generator[P, None, R], on_progress: Callable[[P], None] | None = None
) -> R:
    """Exhaust a progress generator and return its return value.

    Parameters
    ----------
    generator : Generator
        Yields progress records, returns the result.
    on_progress : callable, optional
        Called with every yielded record (e.g. to update a tqdm bar).

    Returns
    -------
    object
        The generator's return value.
    """
    while True:
        try:
            progress = next(generator)
        except StopIteration as done:
            return done.value
        if on_progress is not None:
            on_progress(progress)
