"""Load model packages one by one, each in a forked child under memory and time limits.

Run by ``tests/test_hostile_packages.py`` as ``python hostile_runner.py WARMUP CASE...``.
The parent imports torch and napari-unet once and loads ``WARMUP`` (an honest package),
so every lazy import and one-off allocation is done before measuring. Each case then
runs in a child forked from that warm process:

- memory: ``RLIMIT_AS`` is set to the child's virtual size at the fork plus
  :data:`EXTRA_BYTES`. An absolute limit would measure torch (its import alone
  reserves gigabytes of address space it never touches), so the limit is "baseline +
  500 MB". Growth of the peak resident set (``VmHWM`` - ``VmRSS`` at the fork, from
  ``/proc/self/status``; the kernel starts a forked child's high-water mark at its
  resident size) is reported as well.
- time: a hard ``ITIMER_REAL`` of :data:`SECONDS` kills the child (SIGALRM's default
  action), so a runaway case cannot hang the suite; the load's own wall time is reported.

One JSON line per case on standard output: ``case``, ``outcome`` (``"ok"``, an
exception's class name, ``"killed by signal N"``), ``message`` (its first 300
characters), ``message_length``, ``seconds`` and ``rss_growth_mb``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time

#: Extra address space a case may take beyond the warm process (bytes).
EXTRA_BYTES = 500 * 2**20
#: Hard wall-clock limit of one case (seconds).
SECONDS = 5.0


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(path: str, write_end: int) -> None:
    from napari_unet.models.files import load_model

    resident = _status_kib("VmRSS")
    virtual = _status_kib("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (virtual + EXTRA_BYTES, virtual + EXTRA_BYTES))
    signal.setitimer(signal.ITIMER_REAL, SECONDS)  # SIGALRM's default action: terminate
    started = time.perf_counter()
    try:
        load_model(path)
        outcome, message = "ok", ""
    except BaseException as error:  # noqa: BLE001 - every outcome is reported to the test
        outcome, message = type(error).__name__, str(error)
    seconds = time.perf_counter() - started
    growth = (_status_kib("VmHWM") - resident) / 1024
    record = {
        "outcome": outcome,
        "message": message[:300],
        "message_length": len(message),
        "seconds": seconds,
        "rss_growth_mb": growth,
    }
    os.write(write_end, json.dumps(record).encode())


def _run_case(path: str) -> dict:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        os.close(read_end)
        try:
            _child(path, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks))
    return {
        "outcome": f"killed by signal {os.WTERMSIG(status)}"
        if os.WIFSIGNALED(status)
        else f"exit {os.WEXITSTATUS(status)}",
        "message": "",
        "message_length": 0,
        "seconds": None,
        "rss_growth_mb": None,
    }


def main(paths: list[str]) -> None:
    """Warm up on ``paths[0]``, then load every other path in a limited child."""
    import torch

    torch.set_num_threads(1)  # no thread pool to copy into the forked children
    from napari_unet.models.files import load_model

    load_model(paths[0])
    for path in paths:
        record = {"case": os.path.basename(path), **_run_case(path)}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
