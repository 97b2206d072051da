"""The npe2 manifest: valid, found through the installed distribution, every name imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

ROOT = Path(__file__).resolve().parents[1]
#: The distribution (PyPI) name; "napari-unet" is taken on PyPI by an unrelated plugin.
DISTRIBUTION = "napari-unet-cells"


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution(DISTRIBUTION)


def test_npe2_validate_passes():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", DISTRIBUTION, "--imports"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_name_is_the_distribution_name(manifest):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    assert project["name"] == DISTRIBUTION
    assert manifest.name == DISTRIBUTION
    assert manifest.package_metadata.name == DISTRIBUTION
    assert all(c.id.startswith(f"{DISTRIBUTION}.") for c in manifest.contributions.commands)
    assert project["scripts"] == {"napari-unet": "napari_unet.cli:main"}  # the command stays


def test_license_is_an_spdx_string():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as file:
        data = tomllib.load(file)
    assert data["project"]["license"] == "BSD-3-Clause"  # not the deprecated table
    assert "setuptools>=77" in data["build-system"]["requires"]


def test_package_manifest_is_the_top_level_file():
    packaged = Path(str(resources.files("napari_unet") / "napari.yaml"))
    assert packaged.resolve() == (ROOT / "napari.yaml").resolve()


def test_every_python_name_imports(manifest):
    commands = manifest.contributions.commands
    assert commands
    for command in commands:
        module_name, _, attribute = command.python_name.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), command.python_name


def test_contributions(manifest):
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} == {
        "U-Net (all steps)",
        "Annotate",
        "Weight map",
        "Train",
        "Segment",
    }
    (writer,) = contributions.writers
    assert [str(t) for t in writer.layer_types] == ["labels"]
    assert set(writer.filename_extensions) == {".tif", ".tiff"}
    assert {s.key for s in contributions.sample_data} >= {"nuclei", "nuclei_annotated"}
    ids = {c.id for c in contributions.commands}
    referenced = (
        [w.command for w in contributions.widgets]
        + [w.command for w in contributions.writers]
        + [s.command for s in contributions.sample_data]
    )
    assert set(referenced) <= ids


def test_importing_the_core_does_not_import_qt():
    code = (
        "import sys, napari_unet, napari_unet._writer, napari_unet._sample_data;"
        "bad = [m for m in ('qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'napari', 'magicgui') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
