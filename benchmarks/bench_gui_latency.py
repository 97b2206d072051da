"""GUI responsiveness while training runs in napari's thread worker.

A napari viewer shows the sample field and its annotation; the Train widget's code path
(``napari.qt.threading.create_worker`` around :func:`napari_unet.training.train`) runs on
the sample annotation. A 10 ms ``QTimer`` on the GUI thread records how late each tick
fires. Then Stop is pressed (the ``stop`` event is set) and the time until the worker
returns the best model is measured.

    python benchmarks/bench_gui_latency.py [--seconds 30]

Needs a display; without one it starts a virtual X server (Xvfb) itself.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import numpy as np


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=30.0, help="training time measured before Stop")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before training starts")
    p.add_argument("--model", default="default", help="model to fine-tune ('default' or a file)")
    args = p.parse_args()

    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(backend="xvfb", size=(1600, 1000)).start()

    import napari
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QTimer

    from napari_unet._sample_data import nuclei_annotated
    from napari_unet.model_io import load_model
    from napari_unet.training import TrainingConfig, train

    viewer = napari.Viewer()
    for data, kwargs, kind in nuclei_annotated():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    image = np.array(viewer.layers[0].data)
    annotation = np.array(viewer.layers[1].data)
    app = napari.qt.get_qapp()

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    stop = threading.Event()
    state = {"iterations": 0, "returned": None}
    worker = create_worker(
        train,
        [image],
        [annotation],
        model=load_model(args.model),
        config=TrainingConfig(n_iterations=100_000),
        stop=stop,
        _start_thread=False,
    )
    worker.yielded.connect(lambda progress: state.__setitem__("iterations", progress.iteration))
    worker.returned.connect(lambda result: state.__setitem__("returned", time.perf_counter()))
    worker.finished.connect(lambda: QTimer.singleShot(0, app.quit))

    def press_stop():
        state["stop_pressed"] = time.perf_counter()
        state["ticks_before_stop"] = len(ticks)
        stop.set()

    def start_training():
        state["started"] = time.perf_counter()
        state["ticks_before_start"] = len(ticks)
        worker.start()
        QTimer.singleShot(int(args.seconds * 1000), press_stop)

    # The viewer's first draws happen before training starts; they are measured apart.
    timer.start()
    QTimer.singleShot(int(args.warmup * 1000), start_training)
    app.exec_() if hasattr(app, "exec_") else app.exec()
    timer.stop()

    times = np.array(ticks[state["ticks_before_start"] : state["ticks_before_stop"]])
    gaps = np.diff(times) * 1000
    idle_gaps = np.diff(np.array(ticks[: state["ticks_before_start"]])) * 1000
    worst = np.argsort(gaps)[-3:][::-1]
    stop_latency = state["returned"] - state["stop_pressed"]
    print(f"machine: {_cpu_name()}, {os.cpu_count()} cores")
    print(f"training iterations in {args.seconds:.0f} s: {state['iterations']} (worker thread)")
    print(
        f"10 ms GUI timer: {len(gaps)} ticks, longest gap {gaps.max():.1f} ms, "
        f"99th percentile {np.percentile(gaps, 99):.1f} ms, median {np.median(gaps):.1f} ms"
    )
    print(
        "longest gaps at "
        + ", ".join(f"{times[i] - state['started']:.2f} s ({gaps[i]:.0f} ms)" for i in worst)
        + " after training started"
    )
    print(f"before training (viewer idle, first draws): longest gap {idle_gaps.max():.1f} ms")
    print(f"Stop -> best model returned: {stop_latency * 1000:.0f} ms")
    if display is not None:
        display.stop()


if __name__ == "__main__":
    main()
