"""bioimage.io packages: export, the official model test, loading back, CLI, widget (issue 11).

The packages are tested with ``bioimageio.core.test_model``, the check that
``bioimageio test <package>`` runs, with every IPv4/IPv6 connection refused: exporting,
validating and testing must not touch the network.
"""

from __future__ import annotations

import os
import socket
import tempfile
import zipfile

import numpy as np
import pytest
import yaml

# bioimageio reads its settings once, on import: keep its cache out of the user's.
os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", tempfile.mkdtemp(prefix="napari-unet-bioimageio-"))

import napari_unet  # noqa: E402
from napari_unet.cli.commands import main  # noqa: E402
from napari_unet.inference.segment import iter_segment  # noqa: E402
from napari_unet.method.network import UNet  # noqa: E402
from napari_unet.models import bioimageio  # noqa: E402
from napari_unet.models.files import load_model, save_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training.loop import TrainingConfig, train  # noqa: E402

pytest.importorskip("bioimageio.core")
# bioimageio.core runs the torchscript weights with torch.jit.load (deprecated in torch 2.13)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


REACHED = []  # every attempt to reach the network, refused or not


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse (and record) every name lookup and internet connection; local sockets
    (the X server's) pass."""
    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def refuse_connection(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            REACHED.append(address)
            raise OSError(f"test tried to reach the network: {address}")
        return connect(sock, address)

    def refuse_lookup(host, *args, **kwargs):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            REACHED.append(host)
            raise OSError(f"test tried to look up {host}")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse_connection)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    yield
    reached = REACHED[:]
    REACHED.clear()
    assert not reached, f"the network was reached: {reached}"


@pytest.fixture(scope="module")
def fine_tuned() -> UNet:
    """The shipped model fine-tuned for two iterations on a corner of the sample."""
    from conftest import _sample

    image, annotation = _sample("nuclei.tif"), _sample("nuclei_annotation.tif")
    config = TrainingConfig(n_iterations=2, max_seconds=60, batch_size=1)
    result = run_to_completion(
        train(
            [image[:260, :348]],
            [annotation[:260, :348]],
            model="default",
            config=config,
            device="cpu",
            seed=0,
        )
    )
    return result.model


@pytest.fixture(scope="module")
def packages(tmp_path_factory, fine_tuned) -> dict:
    """The shipped model and the fine-tuned one, exported (the models and their zips)."""
    folder = tmp_path_factory.mktemp("packages")
    shipped = load_model("default")
    return {
        "default": (shipped, bioimageio.export_bioimageio("default", folder / "default.zip")),
        "fine-tuned": (
            fine_tuned,
            napari_unet.export_bioimageio(
                fine_tuned, folder / "fine_tuned.zip", authors=["A. Tester"]
            ),
        ),
    }


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    """A tiny network as a model file and as a package (fast to export and load)."""
    folder = tmp_path_factory.mktemp("tiny")
    model = UNet(depth=2, base_channels=4, n_classes=3, batch_norm=True)
    model.metadata = {"normalization": {"method": "percentile", "percentiles": [2.0, 99.0]}}
    path = save_model(model, folder / "tiny.safetensors")
    return load_model(path), path, bioimageio.export_bioimageio(model, folder / "tiny.zip")


def _description(package) -> dict:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def _rewrite(package, out, change) -> None:
    """Copy a package to ``out`` with its description changed by ``change(dict)``."""
    description = _description(package)
    change(description)
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "rdf.yaml":
                data = yaml.safe_dump(description).encode()
            dst.writestr(item, data)


def _failures(summary) -> str:
    lines = [f"status {summary.status}"]
    for detail in summary.details:
        if detail.status != "passed" or detail.errors:
            lines.append(f"{detail.status}: {detail.name}")
            lines += [f"  {'.'.join(map(str, e.loc))}: {e.msg}" for e in detail.errors]
    return "\n".join(lines)


@pytest.mark.parametrize("which", ["default", "fine-tuned"])
def test_package_passes_the_bioimageio_model_test(packages, which):
    from bioimageio.core import test_model

    _, package = packages[which]
    summary = test_model(package)
    assert summary.status == "passed", _failures(summary)
    names = [d.name for d in summary.details]
    for weights in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({weights})" in names
        assert any(f"Run {weights} inference" in n and "size parameter n: 2" in n for n in names)


@pytest.mark.parametrize("which", ["default", "fine-tuned"])
def test_reloaded_package_segments_like_the_original(packages, which, sample_image):
    model, package = packages[which]
    reloaded = load_model(package)
    assert reloaded.config == model.config
    assert reloaded.metadata == model.metadata
    options = {"device": "cpu", "precision": "float32"}
    original = run_to_completion(iter_segment(sample_image, model, **options))
    again = run_to_completion(iter_segment(sample_image, reloaded, **options))
    np.testing.assert_allclose(again.probabilities, original.probabilities, atol=1e-4)
    np.testing.assert_array_equal(again.labels, original.labels)
    assert original.labels.max() > 10


def test_description_follows_the_network(packages):
    model, package = packages["default"]
    description = _description(package)
    (image,) = description["inputs"]
    (output,) = description["outputs"]
    assert [a["type"] for a in image["axes"]] == ["batch", "channel", "space", "space"]
    smallest, step = model.valid_input_shape((1,))[0], model.pooling_factor
    for axis in image["axes"][2:]:
        assert axis["size"] == {"min": smallest, "step": step}
    for n in range(4):  # every size of the rule is valid, with the output the rule says
        size = smallest + n * step
        assert model.valid_output_shape((size,)) == (size - 2 * model.halo,)
    for axis in output["axes"][2:]:
        assert axis["size"]["offset"] == -2 * model.halo == -184
        assert axis["size"]["tensor_id"] == image["id"] and "halo" not in axis
    scale_range = next(p for p in image["preprocessing"] if p["id"] == "scale_range")
    low, high = model.metadata["normalization"]["percentiles"]
    assert (scale_range["kwargs"]["min_percentile"], scale_range["kwargs"]["max_percentile"]) == (
        low,
        high,
    )
    assert [p["id"] for p in output["postprocessing"] if p["id"] != "ensure_dtype"] == ["softmax"]
    assert output["axes"][1]["channel_names"] == ["background", "cell_interior", "cell_boundary"]
    assert image["sample_tensor"]["source"].endswith(".tif")
    assert image["test_tensor"]["source"].endswith(".npy")
    test_input = np.load(zipfile.ZipFile(package).open(image["test_tensor"]["source"]))
    assert test_input.shape == (1, 1, *bioimageio.crop_shape(model))
    assert description["weights"]["pytorch_state_dict"]["architecture"]["kwargs"] == (
        model.config.to_dict()
    )
    assert set(description["weights"]) == {"pytorch_state_dict", "torchscript"}


def test_metadata_credits_and_lineage(packages):
    shipped = _description(packages["default"][1])
    tuned = _description(packages["fine-tuned"][1])
    for description in (shipped, tuned):
        dois = {c.get("doi") for c in description["cite"]}
        assert "10.1007/978-3-319-24574-4_28" in dois  # Ronneberger et al. 2015
        assert all("url" not in c for c in description["cite"])
        assert all("github_user" not in a for a in description["authors"])
        assert "http" not in yaml.safe_dump(
            {k: v for k, v in description.items() if k != "config"}
        ), "a URL in the description would be fetched when it is validated"
        assert description["covers"] and description["documentation"]["source"] == "README.md"
        assert description["training_data"]["description"]
    with zipfile.ZipFile(packages["default"][1]) as archive:
        card = archive.read("README.md").decode()
    for section in ("## Model Details", "## Training Details", "## Validation", "## Citation"):
        assert section in card
    assert "BBBC039" in shipped["training_data"]["description"]
    assert shipped["id"] == bioimageio.SHIPPED_MODEL_ID and "parent" not in shipped
    assert tuned["parent"]["id"] == bioimageio.SHIPPED_MODEL_ID
    assert tuned["authors"] == [{"name": "A. Tester"}]
    assert "user's own" in tuned["training_data"]["description"]


def test_cli_exports_a_file_or_the_shipped_model(tmp_path, tiny_package, capsys):
    model, path, _ = tiny_package
    out = tmp_path / "out" / "tiny.zip"
    assert main(["export-bioimageio", str(path), "-o", str(out), "--author", "Me"]) == 0
    assert "bioimageio test" in capsys.readouterr().out
    again = load_model(out)
    for key, value in model.state_dict().items():
        assert torch_equal(again.state_dict()[key], value)
    assert _description(out)["authors"] == [{"name": "Me"}]
    # the model itself is never the output
    assert main(["export-bioimageio", str(out), "-o", str(out)]) == 2
    assert "also an input" in capsys.readouterr().err


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_cli_help(capsys):
    from napari_unet.cli.commands import build_parser

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["export-bioimageio", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "bioimage.io" in out and "usage: napari-unet" in out
    assert bioimageio.DEFAULT_LICENSE in out


def test_foreign_packages_are_refused_with_what_is_supported(tmp_path, tiny_package):
    _, _, package = tiny_package

    def foreign(description):
        del description["config"]["napari_unet"]
        description["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "StarDist"

    _rewrite(package, tmp_path / "foreign.zip", foreign)
    with pytest.raises(ValueError, match="not one exported by napari-unet") as error:
        load_model(tmp_path / "foreign.zip")
    assert ".safetensors" in str(error.value) and "bioimageio.core" in str(error.value)

    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="not a bioimage.io package"):
        load_model(tmp_path / "plain.zip")


def test_edited_packages_are_refused(tmp_path, tiny_package):
    _, _, package = tiny_package

    def wider(description):
        description["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["base_channels"] = 8

    _rewrite(package, tmp_path / "wider.zip", wider)
    with pytest.raises(ValueError, match="differ"):
        load_model(tmp_path / "wider.zip")

    def other_weights(description):
        description["weights"]["pytorch_state_dict"]["sha256"] = "0" * 64

    _rewrite(package, tmp_path / "sha.zip", other_weights)
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(tmp_path / "sha.zip")


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch, capsys, tiny_package):
    _, path, _ = tiny_package
    monkeypatch.setitem(__import__("sys").modules, "bioimageio.spec", None)
    with pytest.raises(ImportError, match=r'pip install "napari-unet-cells\[bioimageio\]"'):
        napari_unet.export_bioimageio(UNet(depth=2, base_channels=2), tmp_path / "m.zip")
    assert main(["export-bioimageio", str(path), "-o", str(tmp_path / "m.zip")]) == 2
    assert 'pip install "napari-unet-cells[bioimageio]"' in capsys.readouterr().err
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.gui
def test_train_widget_exports_the_session_model(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, tiny_package
):
    from napari_helpers import dock
    from qtpy.QtWidgets import QFileDialog

    from napari_unet._widgets import _model_output, session_for

    model, _, _ = tiny_package
    viewer = make_napari_viewer()
    train = dock(viewer, "Train")
    assert not train.export_button.enabled
    session_for(viewer).set_model(model, "a tiny test model")
    assert train.export_button.enabled
    out = tmp_path / "session.zip"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    infos = []
    monkeypatch.setattr(_model_output, "show_info", infos.append)
    train.export_button.native.click()
    qtbot.waitUntil(lambda: bool(infos), timeout=60000)
    qtbot.waitUntil(lambda: train.export_button.enabled, timeout=5000)
    assert str(out) in infos[0]
    assert load_model(out).config == model.config


def test_own_test_image(tmp_path, tiny_package, sample_image):
    model, _, _ = tiny_package
    shape = bioimageio.crop_shape(model)
    image = sample_image[100 : 100 + shape[0] + 3, 200 : 200 + shape[1]]
    package = bioimageio.export_bioimageio(model, tmp_path / "own.zip", test_image=image)
    with zipfile.ZipFile(package) as archive:
        test_input = np.load(archive.open("test_input.npy"))
    np.testing.assert_array_equal(test_input[0, 0], image[1 : 1 + shape[0]])
    with pytest.raises(ValueError, match="smaller than the test input"):
        bioimageio.export_bioimageio(model, tmp_path / "small.zip", test_image=image[:-4])
    with pytest.raises(ValueError, match="C = 1"):
        bioimageio.export_bioimageio(model, tmp_path / "rgb.zip", test_image=np.stack([image] * 3))
    assert not (tmp_path / "small.zip").exists() and not (tmp_path / "rgb.zip").exists()


def test_user_guide_quotes_the_defaults():
    from pathlib import Path

    from napari_unet.inference.segment import model_percentiles

    guide = (Path(__file__).parents[1] / "docs" / "user-guide.md").read_text(encoding="utf-8")
    section = guide[guide.index("## 8. Sharing models (bioimage.io)") :]
    model = load_model("default")
    smallest, step = bioimageio.input_size_rule(model)
    assert f"{smallest} + *n* · {step} pixels" in section
    assert f"{2 * model.halo} pixels for depth {model.config.depth}" in section
    low, high = model_percentiles(model)
    assert f"{low:g} and {high:g} %" in section
    assert f"{bioimageio.DEFAULT_LICENSE} unless" in section
