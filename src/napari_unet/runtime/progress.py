"""Helpers for the generator protocol used by long-running work (training, prediction)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
Q = TypeVar("Q")
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


def map_progress(
    generator: Generator[P, None, R], convert: Callable[[P], Q]
) -> Generator[Q, None, R]:
    """Pass a progress generator through, converting every record; return its result.

    For a generator built on another: ``result = yield from map_progress(inner, f)``.

    Parameters
    ----------
    generator : Generator
        Yields progress records, returns the result.
    convert : callable
        Makes the outer record from an inner one.

    Returns
    -------
    object
        ``generator``'s return value.
    """
    while True:
        try:
            progress = next(generator)
        except StopIteration as done:
            return done.value
        yield convert(progress)
