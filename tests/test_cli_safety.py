"""The command line never loses a result or overwrites an input (issue 10)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_unet.cli.commands import main
from napari_unet.io.files import written_by_this_package
from napari_unet.method.network import UNet
from napari_unet.models.files import load_model, save_model


@pytest.fixture
def tiny_model(tmp_path):
    return str(save_model(UNet(depth=2, base_channels=2), tmp_path / "tiny.safetensors"))


def image(seed=0, shape=(40, 48)):
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


def annotation(shape=(40, 48)):
    labels = np.ones(shape, np.uint16)
    labels[5:15, 5:15] = 2
    labels[20:30, 20:30] = 3
    return labels


def segment(*args):
    return main(["segment", *map(str, args), "--precision", "float32", "--tile-size", "64"])


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- 2. unique output names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [("x/cells.tif", "y/cells.tif"), ("cells.tif", "cells.png"), ("x/Cells.tif", "y/cells.tif")],
)
def test_inputs_with_the_same_name_are_refused_before_any_work(tmp_path, tiny_model, capsys, names):
    from skimage.io import imsave

    paths = [tmp_path / name for name in names]
    for n, path in enumerate(paths):
        path.parent.mkdir(exist_ok=True)
        if path.suffix == ".png":
            imsave(path, image(n))
        else:
            tifffile.imwrite(path, image(n))
    assert segment(*paths, "-o", tmp_path / "out", "-m", tiny_model) == 2
    assert "two results would be written to" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- 3. outputs that are inputs ------------------------------------------------------------


def test_weight_map_refuses_to_overwrite_its_annotation(tmp_path, capsys):
    ann = tmp_path / "ann.tif"
    tifffile.imwrite(ann, annotation())
    before = ann.read_bytes()
    for target in (ann, tmp_path / "." / "ann.tif", tmp_path / "sub" / ".." / "ann.tif"):
        assert main(["weight-map", str(ann), "-o", str(target)]) == 2
        assert "is also an input" in capsys.readouterr().err
    os.symlink(ann, tmp_path / "link.tif")
    assert main(["weight-map", str(ann), "-o", str(tmp_path / "link.tif")]) == 2
    assert ann.read_bytes() == before


def test_train_refuses_to_overwrite_an_annotation_or_image(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "img.tif", image())
    tifffile.imwrite(tmp_path / "ann.tif", annotation())
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for target in ("ann.tif", "img.tif"):
        code = main(
            [
                "train",
                "--images",
                str(tmp_path / "img.tif"),
                "--annotations",
                str(tmp_path / "ann.tif"),
                "-o",
                str(tmp_path / target),
                "--from",
                "scratch",
                "--iterations",
                "1",
            ]
        )
        assert code == 2
        assert "is also an input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_segment_into_the_input_folder_never_resegments_its_own_results(tmp_path, tiny_model):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image())
    assert segment(folder, "-o", folder, "-m", tiny_model, "--probabilities") == 0
    assert tree(folder) == ["a.tif", "a_masks.tif", "a_probabilities.tif"]
    assert written_by_this_package(folder / "a_masks.tif")
    # the next run segments a.tif again, not a_masks.tif or a_probabilities.tif
    assert segment(folder, "-o", folder, "-m", tiny_model, "--probabilities") == 0
    assert tree(folder) == ["a.tif", "a_masks.tif", "a_probabilities.tif"]


def test_segment_refuses_an_output_that_is_an_input_or_not_its_own(tmp_path, tiny_model, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image())
    tifffile.imwrite(folder / "a_masks.tif", image(1))  # the user's image, not ours
    before = (folder / "a_masks.tif").read_bytes()
    assert segment(folder, "-o", folder, "-m", tiny_model) == 2
    assert "is also an input" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    tifffile.imwrite(out / "a_masks.tif", image(2))  # someone else's file in the output
    assert segment(folder / "a.tif", "-o", out, "-m", tiny_model) == 2
    assert "was not written by napari-unet" in capsys.readouterr().err
    assert (folder / "a_masks.tif").read_bytes() == before


# -- 4. training results are never lost ----------------------------------------------------


def _train_args(tmp_path, output, *extra):
    tifffile.imwrite(tmp_path / "img.tif", image())
    tifffile.imwrite(tmp_path / "ann.tif", annotation())
    return [
        "train",
        "--images",
        str(tmp_path / "img.tif"),
        "--annotations",
        str(tmp_path / "ann.tif"),
        "-o",
        str(output),
        "--from",
        "scratch",
        "--iterations",
        "2",
        "--batch-size",
        "1",
        "--seed",
        "0",
        *extra,
    ]


def test_train_checks_the_output_location_before_the_first_iteration(tmp_path, capsys, monkeypatch):
    from napari_unet.training.samples import BatchSource

    iterations = []
    real = BatchSource.next
    monkeypatch.setattr(BatchSource, "next", lambda self: iterations.append(1) or real(self))
    (tmp_path / "file").write_text("not a folder")
    assert main(_train_args(tmp_path, tmp_path / "file" / "m.safetensors")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "adir.safetensors").mkdir()
    assert main(_train_args(tmp_path, tmp_path / "adir.safetensors")) == 2
    assert "is a folder" in capsys.readouterr().err
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 1000})())
    assert main(_train_args(tmp_path, tmp_path / "m.safetensors")) == 2
    assert "MiB needed" in capsys.readouterr().err
    assert iterations == []


def test_train_keeps_the_model_when_saving_fails_after_training(tmp_path, capsys, monkeypatch):
    import napari_unet.models.files as model_io

    target = tmp_path / "out" / "m.safetensors"
    real = model_io.save_model

    def fail_at_target(model, path, **kw):
        if os.path.dirname(path) == str(target.parent):
            raise OSError(28, "No space left on device", str(path))
        return real(model, path, **kw)

    monkeypatch.setattr(model_io, "save_model", fail_at_target)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(_train_args(tmp_path, target)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the model was saved to" in err
    kept = next(tmp_path.glob("m.unsaved-*.safetensors"))
    assert str(kept) in err
    assert load_model(kept).metadata["training"]["iterations_done"] == 2


# -- 9. pairing by name --------------------------------------------------------------------


def test_train_pairs_images_and_annotations_by_name(tmp_path, capsys):
    images, anns = tmp_path / "img", tmp_path / "ann"
    images.mkdir()
    anns.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.tif", image())
    tifffile.imwrite(anns / "a_masks.tif", annotation())
    tifffile.imwrite(anns / "c_masks.tif", annotation())
    args = [
        "train",
        "--images",
        str(images),
        "--annotations",
        str(anns),
        "-o",
        str(tmp_path / "m.safetensors"),
        "--from",
        "scratch",
        "--iterations",
        "1",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no image for annotation c_masks.tif" in err and "no annotation for image b.tif" in err
    os.rename(anns / "c_masks.tif", anns / "b_masks.tif")
    assert main(args + ["--batch-size", "1"]) == 0


def test_pair_by_name_matches_regardless_of_order():
    from pathlib import Path

    from napari_unet.io.checks import pair_by_name

    images = [Path("x/b.tif"), Path("x/a.png")]
    anns = [Path("y/a.tif"), Path("y/B_labels.tif")]
    assert pair_by_name(images, anns) == [(images[0], anns[1]), (images[1], anns[0])]
    assert pair_by_name([Path("img.tif")], [Path("ann.tif")]) == [
        (Path("img.tif"), Path("ann.tif"))
    ]
    with pytest.raises(ValueError, match="same name"):
        pair_by_name([Path("x/a.tif"), Path("y/a.tif")], anns)


# -- clear errors: one line per file, the batch goes on, the exit status says so -----------


def test_a_corrupt_file_in_a_batch_is_reported_and_the_rest_segmented(tmp_path, tiny_model, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image())
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    tifffile.imwrite(
        folder / "c.tif", np.zeros((2, 2, 3, 20, 24), np.uint8), photometric="minisblack"
    )
    tifffile.imwrite(folder / "d.tif", image(3) > 100)  # bool
    assert segment(folder, "-o", tmp_path / "out", "-m", tiny_model) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 2 and "Traceback" not in err
    assert "b.png: cannot read" in lines[0]
    assert "c.tif: labels must be 2D" in lines[1]
    assert "2 of 4 files failed" in err
    assert tree(tmp_path / "out") == ["a_masks.tif", "d_masks.tif"]


def test_os_errors_are_one_line_not_a_traceback(tmp_path, tiny_model, capsys, monkeypatch):
    import napari_unet.io.files as io

    tifffile.imwrite(tmp_path / "a.tif", image())

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "write_labels_tiff", full)
    assert segment(tmp_path / "a.tif", "-o", tmp_path / "out", "-m", tiny_model) == 1
    err = capsys.readouterr().err
    assert "a.tif: [Errno 28] No space left on device" in err and "Traceback" not in err

    def overflow(*args, **kwargs):
        raise OverflowError("too big")

    monkeypatch.setattr("napari_unet.io.files.read_image", overflow)
    assert segment(tmp_path / "a.tif", "-o", tmp_path / "out", "-m", tiny_model) == 1
    assert "a.tif: too big" in capsys.readouterr().err


def test_a_shipped_name_and_a_local_file_named_default(tmp_path, tiny_model, monkeypatch):
    from napari_unet.models.files import default_model_available

    if not default_model_available():
        pytest.skip("no shipped default model in this installation")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder named like the shipped model
    tifffile.imwrite(tmp_path / "a.tif", image())
    assert segment(tmp_path / "a.tif", "-o", tmp_path / "out") == 0  # -m default: shipped
    os.rmdir(tmp_path / "default")
    os.rename(tiny_model, tmp_path / "default")
    assert segment(tmp_path / "a.tif", "-o", tmp_path / "out2", "-m", "./default") == 0


def test_a_run_stopping_error_is_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    import napari_unet.training.loop as training

    def diverge(*args, **kwargs):
        raise FloatingPointError("training diverged at iteration 1 (loss nan)")
        yield  # a generator, like train()

    monkeypatch.setattr(training, "train", diverge)
    assert main(_train_args(tmp_path, tmp_path / "m.safetensors")) == 2
    err = capsys.readouterr().err  # the progress bar, then one line
    assert err.splitlines()[-1] == (
        "napari-unet train: error: training diverged at iteration 1 (loss nan)"
    )
    assert "Traceback" not in err
    assert not (tmp_path / "m.safetensors").exists()
    (tmp_path / "out.tif").mkdir()
    assert main(["weight-map", str(tmp_path / "ann.tif"), "-o", str(tmp_path / "out.tif")]) == 2
    assert "is a folder" in capsys.readouterr().err
