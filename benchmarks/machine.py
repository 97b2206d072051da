"""What the benchmarks report about the machine they ran on (shared by every benchmark)."""

from __future__ import annotations

import json
import platform
import resource
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB.

    Linux: ``VmHWM`` of /proc/self/status, because ``ru_maxrss`` is carried over from
    the parent across fork + exec (the child would start at the parent's peak).
    Elsewhere ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def report(result: dict, json_path=None) -> None:
    """Print a benchmark's result as one JSON line; append it to ``json_path`` if given."""
    line = json.dumps(result)
    print(line, flush=True)
    if json_path:
        with open(json_path, "a") as f:
            f.write(line + "\n")
