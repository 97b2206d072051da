"""Ctrl-C on ``napari-unet train`` keeps the work; every CLI error is one line (issue 20).

The training runs are real ``napari-unet train`` processes (a scratch network on a
260x348 crop of the sample, about half a second per iteration on a CPU) sent SIGINT
once they print their first progress.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

from napari_unet.cli.commands import main
from napari_unet.cli.outcomes import EXIT_INTERRUPTED
from napari_unet.inference.segment import segment
from napari_unet.method.network import UNet
from napari_unet.models.files import load_model, save_model

CROP = (slice(0, 260), slice(0, 348))
posix_signals = pytest.mark.skipif(os.name != "posix", reason="SIGINT to a process is POSIX")


@pytest.fixture
def pair(tmp_path, sample_image, sample_annotation):
    """An image and its partial annotation as TIFF files."""
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "cells.tif", sample_image[CROP])
    tifffile.imwrite(folder / "cells_masks.tif", sample_annotation[CROP])
    return folder / "cells.tif", folder / "cells_masks.tif"


class Run:
    """A ``napari-unet train`` process whose standard error is collected as it comes."""

    def __init__(self, image, annotation, output):
        command = [sys.executable, "-m", "napari_unet.cli", "train", "--images", str(image),
                   "--annotations", str(annotation), "-o", str(output), "--from", "scratch",
                   "--iterations", "2000", "--minutes", "10", "--device", "cpu", "--seed", "0"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.err, self._changed = "", threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while chunk := os.read(self.process.stderr.fileno(), 4096):
            with self._changed:
                self.err += chunk.decode(errors="replace")
                self._changed.notify_all()

    def wait_for(self, text: str, seconds: float = 120) -> None:
        """Wait until the pattern ``text`` appears on standard error (fail after ``seconds``)."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while (
                not re.search(text, self.err)
                and time.monotonic() < deadline
                and self._reader.is_alive()
            ):
                self._changed.wait(0.5)
        assert re.search(text, self.err), f"no {text!r} in:\n{self.err[-2000:]}"

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self, seconds: float = 120) -> int:
        status = self.process.wait(seconds)
        self._reader.join(10)
        return status


def _no_temporary_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@posix_signals
def test_one_ctrl_c_stops_training_and_saves_the_best_model_so_far(tmp_path, pair):
    image, annotation = pair
    output = tmp_path / "out" / "model.safetensors"
    output.parent.mkdir()
    run = Run(image, annotation, output)
    # tqdm skips redraws when iterations are fast: any iteration from the second on
    run.wait_for(r"iteration ([2-9]|\d\d+),")
    run.interrupt()
    status = run.finish()

    assert status == EXIT_INTERRUPTED, run.err[-2000:]
    assert "Traceback" not in run.err
    assert "finishing the current iteration and saving the best model so far" in run.err
    assert "the best model so far (iteration" in run.err and f"written to {output}" in run.err
    model = load_model(output)
    assert model.metadata["training"]["stopped"] is True
    assert 2 <= model.metadata["training"]["iterations_done"] < 2000
    labels = segment(tifffile.imread(image), model, device="cpu")
    assert labels.shape == (260, 348) and labels.dtype.kind in "iu"
    assert _no_temporary_files(output.parent)


@posix_signals
def test_two_ctrl_c_abort_and_leave_the_old_model_file_untouched(tmp_path, pair):
    image, annotation = pair
    output = tmp_path / "out" / "model.safetensors"
    output.parent.mkdir()
    save_model(UNet(depth=2, base_channels=2), output)
    before = output.read_bytes()
    run = Run(image, annotation, output)
    run.wait_for(r"iteration \d+,")
    run.interrupt()
    run.wait_for("Ctrl-C again to abort")  # the first was handled: the second is not merged
    run.interrupt()
    status = run.finish()

    assert status == EXIT_INTERRUPTED, run.err[-2000:]
    assert "interrupted: the model file was not written" in run.err
    assert "Traceback" not in run.err
    assert output.read_bytes() == before
    assert _no_temporary_files(output.parent)


def _corrupt_zip(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, sample_image):
    tifffile.imwrite(tmp_path / "cells.tif", sample_image[CROP])
    model = _corrupt_zip(tmp_path)
    arguments = ["segment", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"), "-m"]

    assert main([*arguments, str(model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("napari-unet segment: error: ") and "is not a valid zip file" in err

    with pytest.raises(ValueError, match="is not a valid zip file"):
        main([*arguments, str(model), "--debug"])
    with pytest.raises(ValueError, match="is not a valid zip file"):
        main(["--debug", *arguments, str(model)])


def test_an_unexpected_error_is_one_line_too(tmp_path, capsys, monkeypatch, sample_image):
    """A bug (here: an error no check expects) is still one line, with how to see more."""
    tifffile.imwrite(tmp_path / "cells.tif", sample_image[CROP])
    save_model(UNet(depth=2, base_channels=2), tmp_path / "m.safetensors")

    def broken(*args, **kwargs):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr("napari_unet.method.tiling.iter_predict_tiled", broken)
    arguments = ["segment", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out")]
    assert main([*arguments, "-m", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err  # the progress bar's line, then the error's
    assert "Traceback" not in err and err.splitlines()[-1].startswith("napari-unet segment: ")
    assert "internal error: RuntimeError: something unexpected" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="something"):
        main([*arguments, "-m", str(tmp_path / "m.safetensors"), "--debug"])


def test_ctrl_c_during_segment_says_what_was_written(tmp_path, capsys, monkeypatch, sample_image):
    for name in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / f"{name}.tif", sample_image[CROP])
    save_model(UNet(depth=2, base_channels=2), tmp_path / "m.safetensors")
    import napari_unet.cli.commands as cli

    segment_file, calls = cli._segment_file, []

    def interrupted_at_the_second(path, *args):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return segment_file(path, *args)

    monkeypatch.setattr(cli, "_segment_file", interrupted_at_the_second)
    out = tmp_path / "out"
    inputs = [str(tmp_path / f"{n}.tif") for n in ("a", "b", "c")]
    status = main(["segment", *inputs, "-o", str(out), "-m", str(tmp_path / "m.safetensors")])

    assert status == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted: 1 of 3 images segmented" in err and "b.tif" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_masks.tif"]
    assert np.asarray(tifffile.imread(out / "a_masks.tif")).shape == (260, 348)


def test_every_subcommand_says_what_ctrl_c_leaves():
    import argparse

    from napari_unet.cli.commands import build_parser
    from napari_unet.cli.outcomes import INTERRUPTED

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(INTERRUPTED) == set(sub.choices)
