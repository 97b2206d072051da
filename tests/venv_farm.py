"""Fresh virtual environments that see only chosen distributions of this one.

No network: the distributions installed in the running environment are linked into a
new venv's site-packages, one by one, so a test can check what a plain install of this
project gets (napari's plugin manager runs ``pip install <distribution>``, no extras).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def _installed() -> dict[str, metadata.Distribution]:
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def closure(requirements: list[str], exclude: set[str] = frozenset()) -> set[str]:
    """Canonical names of the installed distributions that ``requirements`` pull in.

    Extras are followed (``dask[array]``); markers are evaluated for this interpreter.

    Raises
    ------
    LookupError
        If a required distribution is not installed here.
    """
    installed = _installed()
    needed: set[str] = set()
    queue = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, frozenset]] = set()
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in exclude:
            continue
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if name not in installed:
            raise LookupError(f"{requirement} is required but not installed here")
        needed.add(name)
        for text in installed[name].requires or []:
            child = Requirement(text)
            for wanted in [""] + sorted(requirement.extras):
                if child.marker is None or child.marker.evaluate({"extra": wanted}):
                    queue.append((child, wanted))
                    break
    return needed


def _top_level_entries(dist: metadata.Distribution) -> set[Path]:
    """Files and folders directly in site-packages that belong to ``dist``."""
    root = Path(dist.locate_file(""))
    entries = set()
    for file in dist.files or []:
        parts = Path(file).parts
        if parts and parts[0] != ".." and not parts[0].endswith(".pth"):
            entries.add(root / parts[0])
    return entries


def make_venv(path: Path, distributions: set[str]) -> Path:
    """Create a venv at ``path`` whose site-packages links only ``distributions``.

    Returns
    -------
    pathlib.Path
        Its Python interpreter.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    installed = _installed()
    for name in sorted(distributions):
        for entry in _top_level_entries(installed[name]):
            link = site / entry.name
            if entry.exists() and not link.exists():
                link.symlink_to(entry, target_is_directory=entry.is_dir())
    return python
