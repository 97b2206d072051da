"""Training in the Train widget, with and without the live preview, against the API.

A napari viewer (shown, under Xvfb when there is no display) holds the sample field and
its partial annotation, with the *Train* dock widget. The default model is fine-tuned
for ``--seconds`` in each phase, in this order:

1. ``api``: :func:`napari_unet.training.loop.train` on the main thread (no Qt event loop);
2. ``off``: the Train widget, live preview off;
3. ``on``: the Train widget, live preview on (the view: the whole sample);
   ``on-uncertainty`` (not in the default): the same, with its uncertainty layer shown;
4. ``api`` again (background load drifts: the two API runs bracket the widget runs).

The default ``--phases`` is ``api,off,on,api``; docs/benchmarks.md used
``api,off,on,api,off,on``.

Measured: training throughput (iterations per second, from the worker's own clock,
first iteration excluded), how long the Start click holds the GUI thread, then a 10 ms
``QTimer`` on the GUI thread until Stop (how late it fires: the longest gap is the
longest freeze), the time from Start to the first preview, preview refreshes per
minute, and the time from Stop to the returned model.

    python benchmarks/bench_gui_latency.py [--seconds 30] [--phases api,off,on,api]
                                           [--hidden] [--model default] [--profile]

``--profile`` prints what the GUI thread ran in its longest gaps
(``main_thread_sampler.py``); it slows everything down, so time without it.

Needs a display; without one it starts a virtual X server (Xvfb) itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_name  # noqa: E402


def _throughput(history) -> float:
    """Iterations per second between the first and the last record (first excluded)."""
    if len(history) < 3:
        return float("nan")
    return (len(history) - 1) / (history[-1].seconds - history[0].seconds)


def run_api(image, annotation, model_name: str, seconds: float, device: str = "cpu") -> dict:
    """Fine-tune through the API on this thread for ``seconds``."""
    from napari_unet.models.files import load_model
    from napari_unet.runtime.progress import run_to_completion
    from napari_unet.training.loop import TrainingConfig, train

    config = TrainingConfig(max_seconds=seconds)
    result = run_to_completion(
        train(
            [image],
            [annotation],
            model=load_model(model_name),
            config=config,
            seed=1,
            device=device,
        )
    )
    return {"iterations": len(result.history), "it_per_s": _throughput(result.history)}


def run_core(
    image, annotation, model_name: str, seconds: float, preview: bool, device: str = "cpu"
) -> dict:
    """The widget's loop without Qt: training, and a preview thread fed by its snapshots.

    As the Train widget does: training yields a snapshot every ``SNAPSHOT_INTERVAL_S``
    seconds; when none is being predicted, a thread segments the view (here the whole
    image) with it, and the two share the CPU threads (:class:`ThreadShare`).
    """
    import threading

    from napari_unet.live.preview import SNAPSHOT_INTERVAL_S, ViewRegion, iter_preview
    from napari_unet.live.threads import ThreadShare
    from napari_unet.models.files import load_model
    from napari_unet.runtime.progress import run_to_completion
    from napari_unet.training.loop import TrainingConfig, train

    share = ThreadShare()
    region = ViewRegion((), 0, 0, *image.shape)
    done: list[float] = []
    busy = threading.Event()

    def predict(snapshot):
        run_to_completion(share.preview(iter_preview(image, region, snapshot, device=device)))
        done.append(time.perf_counter())
        busy.clear()

    started = time.perf_counter()
    history = []
    training = train(
        [image],
        [annotation],
        model=load_model(model_name),
        config=TrainingConfig(max_seconds=seconds),
        seed=1,
        device=device,
        snapshot_interval=SNAPSHOT_INTERVAL_S if preview else None,
    )
    for progress in share.training(training):
        history.append(progress)
        if progress.snapshot is not None and not busy.is_set():
            busy.set()
            threading.Thread(target=predict, args=(progress.snapshot,), daemon=True).start()
    stopped = time.perf_counter()
    while busy.is_set():
        time.sleep(0.01)
    result = {"iterations": len(history), "it_per_s": _throughput(history)}
    if preview:
        result["start_to_first_preview_s"] = done[0] - started if done else None
        result["refreshes_per_minute"] = sum(t <= stopped for t in done) / (seconds / 60)
        result["preview_region"] = region.box
    return result


class _NoActivity:
    """Stands in for the widget's ActivityReport: nothing in napari's activity dock."""

    def __init__(self, description: str, *args):
        pass

    def set_fraction(self, fraction: float, description: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def run_widget(
    widget, seconds: float, preview: bool, profile: bool = False, uncertainty: bool = False
) -> dict:
    """Train in the widget for ``seconds`` (then Stop), ticking a 10 ms GUI timer.

    With ``profile``, print what the GUI thread ran in its longest gaps
    (:class:`main_thread_sampler.MainThreadSampler`). ``uncertainty``: the preview also
    shows its ``"<image> uncertainty"`` layer.
    """
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    sampler = None
    if profile:
        from main_thread_sampler import MainThreadSampler

        sampler = MainThreadSampler().start()

    widget.preview.on.value = preview
    widget.preview.uncertainty.value = uncertainty
    widget.settings.minutes.value = 2 * seconds / 60 + 1  # Stop ends it, not the budget
    ticks: list[float] = []
    history: list = []
    state: dict = {"first_preview": None}
    refreshes_before = widget.preview.n_refreshes

    def tick():
        now = time.perf_counter()
        ticks.append(now)
        if state["first_preview"] is None and widget.preview.n_refreshes > refreshes_before:
            state["first_preview"] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()

    def start():
        state["started"] = time.perf_counter()
        worker = widget.start()
        worker.yielded.connect(history.append)
        worker.returned.connect(lambda _: state.__setitem__("returned", time.perf_counter()))
        state["start_returned"] = time.perf_counter()
        worker.finished.connect(lambda: QTimer.singleShot(500, loop.quit))
        QTimer.singleShot(int(seconds * 1000), stop)

    def stop():
        state["stopped"] = time.perf_counter()
        state["ticks_at_stop"] = len(ticks)
        state["refreshes"] = widget.preview.n_refreshes - refreshes_before
        widget.stop()

    QTimer.singleShot(0, start)
    loop.exec_() if hasattr(loop, "exec_") else loop.exec()
    timer.stop()
    # the GUI thread's freezes while training runs: from the end of the Start click
    during = np.array([t for t in ticks[: state["ticks_at_stop"]] if t >= state["start_returned"]])
    gaps = np.diff(during) * 1000
    worst = np.argsort(gaps)[-3:][::-1]
    if sampler is not None:
        sampler.stop()
        longest = np.argsort(gaps)[-12:][::-1]
        print(sampler.report([(during[i], during[i + 1]) for i in longest]), flush=True)
    result = {
        "start_click_ms": (state["start_returned"] - state["started"]) * 1000,
        # when the three longest freezes began, seconds after the Start click
        "longest_gaps_at_s": [round(float(during[i] - state["started"]), 2) for i in worst],
        "iterations": len(history),
        "it_per_s": _throughput(history),
        "longest_gap_ms": float(gaps.max()),
        # the same, from one second after the Start click: while training runs steadily
        "longest_gap_after_1s_ms": float(gaps[during[:-1] >= state["started"] + 1.0].max()),
        "gap_p99_ms": float(np.percentile(gaps, 99)),
        "stop_to_model_ms": (state["returned"] - state["stopped"]) * 1000,
    }
    if preview:
        minutes = (state["stopped"] - state["started"]) / 60
        result["start_to_first_preview_s"] = (
            state["first_preview"] - state["started"] if state["first_preview"] else None
        )
        result["refreshes_per_minute"] = state["refreshes"] / minutes
        result["preview_region"] = widget.preview.region.box if widget.preview.region else None
    return result


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=30.0, help="training time of each phase")
    p.add_argument(
        "--phases",
        default="api,off,on,api",
        help="comma-separated: api, off, on, on-uncertainty (the preview with its uncertainty "
        "layer), off-noactivity (the widget), core-off, core-on (its loop without Qt)",
    )
    p.add_argument("--device", default="cpu", help="device of the api and core phases")
    p.add_argument("--model", default="default", help="model to fine-tune ('default' or a file)")
    p.add_argument("--hidden", action="store_true", help="do not show the napari window")
    p.add_argument("--threads", type=int, help="PyTorch threads (default: PyTorch's)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument(
        "--profile",
        action="store_true",
        help="print the GUI thread's stacks in its longest gaps (not for timing)",
    )
    args = p.parse_args()

    phases = args.phases.split(",")
    if all(phase == "api" or phase.startswith("core") for phase in phases):
        return run_headless(args, phases)
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(backend="xvfb", size=(1600, 1000)).start()

    import napari
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_unet._sample_data import nuclei_annotated

    viewer = napari.Viewer(show=not args.hidden)
    viewer.window.resize(1400, 900)
    for data, kwargs, kind in nuclei_annotated():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    image = np.array(viewer.layers[0].data)
    annotation = np.array(viewer.layers[1].data)
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet-cells", "Train")
    widget.settings.start_from.value = "file" if args.model != "default" else "default"
    if args.model != "default":
        widget.settings.model_file.value = args.model
    widget.settings.n_iterations.value = 0
    widget.settings.seed.value = 1
    widget.settings.device.value = "cpu"
    viewer.reset_view()

    results = []
    for phase in args.phases.split(","):
        if phase == "api":
            results.append(("api", run_api(image, annotation, args.model, args.seconds)))
        else:
            if widget.settings.start_from.value == "session":  # each run from the same model
                widget.settings.start_from.value = "file" if args.model != "default" else "default"
            if phase == "off-noactivity":  # the same, without the line in the activity dock
                from unittest import mock

                with mock.patch("napari_unet._widgets._train.ActivityReport", _NoActivity):
                    results.append((phase, run_widget(widget, args.seconds, preview=False)))
            else:
                preview, unsure = phase in ("on", "on-uncertainty"), phase == "on-uncertainty"
                results.append(
                    (phase, run_widget(widget, args.seconds, preview, args.profile, unsure))
                )
        print(phase, json.dumps(results[-1][1]), flush=True)

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; window {'hidden' if args.hidden else 'shown'}"
    )
    api = [r["it_per_s"] for name, r in results if name == "api"]
    api_mean = float(np.mean(api)) if api else float("nan")
    by_phase = dict(results)  # the last run of each phase
    for name in ("off", "on", "on-uncertainty", "off-noactivity"):
        if name in by_phase:
            r = by_phase[name]
            print(
                f"widget, preview {name}: {r['it_per_s']:.2f} it/s = "
                f"{r['it_per_s'] / api_mean:.2f}x the API ({api_mean:.2f} it/s); Start click "
                f"{r['start_click_ms']:.0f} ms; then longest GUI gap {r['longest_gap_ms']:.0f} ms, "
                f"{r['longest_gap_after_1s_ms']:.0f} ms from 1 s after Start (99th percentile "
                f"{r['gap_p99_ms']:.0f} ms); Stop -> model {r['stop_to_model_ms']:.0f} ms"
            )
    if "on" in by_phase:
        r = by_phase["on"]
        print(
            f"preview: Start -> first preview {r['start_to_first_preview_s']:.1f} s, "
            f"{r['refreshes_per_minute']:.0f} refreshes/min of region {r['preview_region']}"
        )
        if "off" in by_phase:
            print(
                f"throughput with the preview / without: "
                f"{r['it_per_s'] / by_phase['off']['it_per_s']:.2f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "cpu": cpu_name()}, f, indent=1)
    viewer.close()
    if display is not None:
        display.stop()


def run_headless(args, phases) -> None:
    """The api and core phases alone: no napari, no Qt (e.g. on a GPU machine)."""
    import torch

    from napari_unet._sample_data import nuclei_annotated

    if args.threads:
        torch.set_num_threads(args.threads)
    (image, _, _), (annotation, _, _) = nuclei_annotated()
    results = {}
    for phase in phases:
        if phase == "api":
            r = run_api(image, annotation, args.model, args.seconds, args.device)
        else:
            r = run_core(
                image, annotation, args.model, args.seconds, phase == "core-on", args.device
            )
        results[phase] = r
        print(phase, json.dumps(r), flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    print(f"machine: {device} ({args.device}), {os.cpu_count()} cores, torch {torch.__version__}")
    if "core-on" in results:
        r = results["core-on"]
        print(
            f"preview (no Qt): Start -> first preview {r['start_to_first_preview_s']:.1f} s, "
            f"{r['refreshes_per_minute']:.0f} refreshes/min of the whole {image.shape} field"
        )
        if "core-off" in results:
            print(
                "throughput with the preview / without: "
                f"{r['it_per_s'] / results['core-off']['it_per_s']:.2f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "device": device}, f, indent=1)


if __name__ == "__main__":
    main()
