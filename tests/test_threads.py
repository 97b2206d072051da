"""Sharing PyTorch's CPU threads between training and a preview beside it."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

from napari_unet.live.threads import ThreadShare, with_threads
from napari_unet.runtime.progress import run_to_completion


def counting(n_steps: int, seen: list):
    """A generator that records the thread count each step runs with."""
    for step in range(n_steps):
        seen.append(torch.get_num_threads())
        yield step
    return "done"


def in_a_thread(function):
    """Run ``function`` in a fresh thread (thread counts are per thread); return its result."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", function()))
    thread.start()
    thread.join()
    return out["value"]


def test_with_threads_sets_the_count_per_step_and_puts_it_back():
    counts = iter([2, 2, 1, 1])  # asked before every step, and once more at the end
    seen: list = []

    def run():
        before = torch.get_num_threads()
        result = run_to_completion(with_threads(counting(3, seen), lambda: next(counts)))
        return result, before, torch.get_num_threads()

    result, before, after = in_a_thread(run)
    assert result == "done"
    assert seen == [2, 2, 1]
    assert after == before


def test_closing_the_wrapper_closes_the_generator():
    closed = []

    def steps():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    def run():
        wrapper = with_threads(steps(), lambda: 1)
        next(wrapper)
        wrapper.close()

    in_a_thread(run)
    assert closed == [True]


@pytest.mark.parametrize(
    ("total", "preview", "training_while"), [(2, 1, 1), (16, 4, 12), (1, 1, 1)]
)
def test_training_yields_the_preview_its_threads_while_it_predicts(total, preview, training_while):
    share = ThreadShare(total)
    assert share.preview_threads == preview
    assert share.training_threads() == total and not share.previewing
    seen: list = []
    prediction = share.preview(counting(2, seen))
    next(prediction)  # the preview runs now
    assert share.previewing and share.training_threads() == training_while
    run_to_completion(prediction)
    assert not share.previewing and share.training_threads() == total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice: Linux")
def test_training_and_the_preview_run_below_the_gui_priority():
    from napari_unet.live.threads import BACKGROUND_NICE

    def nice_of_this_thread():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def steps(seen: list):
        for step in range(2):
            seen.append(nice_of_this_thread())
            yield step

    gui = nice_of_this_thread()
    share = ThreadShare(total=2)
    for run in (share.training, share.preview):
        seen: list = []
        in_a_thread(lambda run=run, seen=seen: run_to_completion(run(steps(seen))))
        assert seen == [max(gui, BACKGROUND_NICE)] * 2
    assert nice_of_this_thread() == gui  # the calling (GUI) thread keeps its priority
