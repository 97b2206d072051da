"""Install the package the way napari's plugin manager does, then open every widget (issue 10).

The plugin manager runs ``pip install <distribution>`` (no extras) into an environment
that already has napari and a Qt binding. Here, without network: a fresh venv gets
napari (with PyQt6) and the dependencies this project declares (base only, no extras),
linked from the test environment; the project's wheel is installed into it with
``pip --no-index``, which checks that the declared dependencies are all present; then
every widget of the manifest is opened in a napari viewer.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")
from venv_farm import closure, make_venv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

OPEN_EVERY_WIDGET = """
import sys
import napari, npe2
import napari_unet
assert "site-packages" in napari_unet.__file__, napari_unet.__file__
name = sys.argv[1]
viewer = napari.Viewer(show=False)  # discovers the installed plugins
manifest = npe2.PluginManager.instance().get_manifest(name)
opened = []
for widget in manifest.contributions.widgets:
    viewer.window.add_plugin_dock_widget(name, widget.display_name)
    opened.append(widget.display_name)
viewer.close()
print("opened:", ", ".join(opened))
"""


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]


def _build_wheel(out: Path) -> Path:
    source = out / "source"
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md", "napari.yaml"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out / "wheel"),
            str(source),
        ],
        check=True,
    )
    (wheel,) = (out / "wheel").glob("*.whl")
    return wheel


@pytest.mark.gui
def test_a_plain_install_beside_napari_opens_every_widget(tmp_path):
    project = _project()
    qt = (
        "PyQt6"
        if "pyqt6" in {d.metadata["Name"].lower() for d in metadata.distributions()}
        else "PyQt5"
    )
    # napari as a user has it (with a Qt binding), plus what this project declares
    wanted = closure(
        ["napari", qt, *project["dependencies"]], exclude={"napari-unet", "napari-unet-cells"}
    )
    python = make_venv(tmp_path / "venv", wanted)
    wheel = _build_wheel(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-index",
            "--no-build-isolation",
            str(wheel),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    result = subprocess.run(
        [str(python), "-c", OPEN_EVERY_WIDGET, project["name"]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "opened: U-Net (all steps), Annotate, Weight map, Train, Segment" in result.stdout


def test_the_napari_closure_alone_lacks_what_the_widgets_need():
    # what the base dependencies add: without them, the Train widget's import fails
    napari_only = closure(["napari", "PyQt6"])
    assert "matplotlib" not in napari_only
    assert "matplotlib" in {d.split(">")[0].split("=")[0] for d in _project()["dependencies"]}
