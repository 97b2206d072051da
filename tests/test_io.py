"""Writing files: normal permissions, stale temporary files, corrupt inputs (issue 10)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.io.files import (
    atomic_path,
    image_files,
    read_image,
    remove_stale_temporary_files,
    write_labels_tiff,
    write_tiff,
    written_by_this_package,
)
from napari_unet.method.network import UNet
from napari_unet.models.files import save_model

posix = pytest.mark.skipif(os.name != "posix", reason="file modes and signals are POSIX")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@posix
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_new_files_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        labels = write_labels_tiff(tmp_path / "l.tif", np.ones((4, 4), np.uint16))
        weights = write_tiff(tmp_path / "w.tif", np.ones((4, 4), np.float32))
        model = save_model(UNet(depth=2, base_channels=2), tmp_path / "m.safetensors")
        with open(tmp_path / "plain", "w"):  # what any normal file write gives
            pass
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert mode(tmp_path / "plain") == expected
    for path in (labels, weights, model):
        assert mode(path) == expected, path


@posix
def test_overwriting_keeps_the_existing_files_mode(tmp_path):
    path = tmp_path / "l.tif"
    write_labels_tiff(path, np.ones((4, 4), np.uint16))
    os.chmod(path, 0o640)
    write_labels_tiff(path, np.zeros((4, 4), np.uint16))
    assert mode(path) == 0o640
    model = save_model(UNet(depth=2, base_channels=2), tmp_path / "m.safetensors")
    os.chmod(model, 0o444)
    save_model(UNet(depth=2, base_channels=2), model)
    assert mode(model) == 0o444


def test_a_folder_is_not_overwritten(tmp_path):
    (tmp_path / "x.tif").mkdir()
    with pytest.raises(IsADirectoryError):
        write_tiff(tmp_path / "x.tif", np.zeros((2, 2)))
    assert (tmp_path / "x.tif").is_dir()


_KILLED_WRITER = """
import sys, time
from napari_unet.io.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    open(tmp, "wb").write(b"half a file")
    print(tmp, flush=True)
    time.sleep(60)
"""


@posix
def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "masks.tif"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    tmp = writer.stdout.readline().strip()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert os.path.exists(tmp) and not target.exists()  # what SIGKILL leaves behind
    # a live writer's temporary file (this process's, another live process's) is kept
    live = tmp_path / f".other.tif.napari-unet-{os.getppid()}.abcdefgh.tmp"
    live.write_bytes(b"in progress")
    unrelated = tmp_path / ".notes.txt.123.tmp"
    unrelated.write_bytes(b"not ours")
    write_labels_tiff(tmp_path / "next.tif", np.ones((3, 3), np.uint8))
    assert not os.path.exists(tmp)
    assert live.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, unrelated.name, "next.tif"]
    )


@posix
def test_stale_cleanup_names_what_it_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m.safetensors.napari-unet-{dead.pid}.x1y2z3_a.tmp"
    stale.write_bytes(b"")
    assert remove_stale_temporary_files(tmp_path) == [stale]


def test_atomic_path_removes_its_temporary_file_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        open(tmp, "wb").write(b"x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, content",
    [
        ("bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
        ("bad.tif", b"II*\0garbage"),
        ("empty.tif", b""),
        ("bad.jpg", b"not a jpeg"),
    ],
)
def test_a_corrupt_image_is_a_value_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"cannot read .*{name}"):
        read_image(path)


def test_folders_skip_files_this_package_wrote_but_not_named_files(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
    write_labels_tiff(tmp_path / "a_masks.tif", np.zeros((4, 4), np.uint16))
    write_tiff(tmp_path / "a_probabilities.tif", np.zeros((4, 4), np.float32))
    assert written_by_this_package(tmp_path / "a_masks.tif")
    assert not written_by_this_package(tmp_path / "a.tif")
    assert image_files([tmp_path], skip_written=True) == [tmp_path / "a.tif"]
    assert len(image_files([tmp_path])) == 3
    assert image_files([tmp_path / "a_masks.tif"], skip_written=True) == [tmp_path / "a_masks.tif"]
