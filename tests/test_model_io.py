import os
import pickle

import numpy as np
import pytest
import torch

from napari_unet.method.network import UNet
from napari_unet.models.files import load_model, save_model


def test_round_trip_keeps_architecture_metadata_and_outputs(tmp_path):
    model = UNet(depth=3, base_channels=4, batch_norm=True).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics must survive too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model.metadata = {"normalization": {"percentiles": [2.0, 99.0]}, "note": "ünïcode"}
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.metadata == model.metadata
    x = torch.randn(1, 1, *model.valid_input_shape((64, 64)))
    with torch.inference_mode():
        np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    assert not loaded.training


def test_half_precision_file_is_half_the_size_and_loads_as_float32(tmp_path):
    model = UNet(depth=3, base_channels=8)
    full = save_model(model, tmp_path / "f32.safetensors")
    half = save_model(model, tmp_path / "f16.safetensors", dtype=torch.float16)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(full)
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_save_is_atomic_an_existing_file_survives_a_failed_write(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(UNet(depth=2, base_channels=2), path)
    before = path.read_bytes()
    bad = UNet(depth=2, base_channels=2)
    bad.metadata = {"not json": object()}
    with pytest.raises(TypeError):
        save_model(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp left


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_malicious_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Exploit()}, f)
    torch.save({"weights": _Exploit()}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(ValueError, match="refused because loading them can execute code"):
            load_model(p)
    assert not (tmp_path / "pwned").exists()


def test_foreign_safetensors_and_missing_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a napari-unet model"):
        load_model(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError):
        load_model("no-such-shipped-model")


# -- issue 10: what a model file can and cannot do ------------------------------------------


def _forge(path, state, config):
    import json

    from safetensors.torch import save_file

    header = {
        "format": "napari-unet",
        "format_version": "1",
        "config": json.dumps(config),
        "metadata": "{}",
    }
    save_file(state, path, metadata=header)
    return path


def test_a_tiny_file_claiming_a_huge_network_is_refused_before_building(tmp_path, monkeypatch):
    import napari_unet.models.files as model_io

    built = []
    monkeypatch.setattr(model_io, "UNet", lambda *a, **k: built.append(k) or UNet(*a, **k))
    config = {"in_channels": 1, "n_classes": 2, "depth": 5, "base_channels": 3000}
    path = _forge(tmp_path / "huge.safetensors", {"head.weight": torch.zeros(1)}, config)
    assert path.stat().st_size < 400
    with pytest.raises(ValueError, match="base_channels=3000, more than the limit"):
        load_model(path)
    # within the bounds, but not what the stored tensors hold
    small = UNet(depth=2, base_channels=4).state_dict()
    for key, value, message in [
        (
            "base_channels",
            64,
            "declares base_channels=64 but its stored weights have base_channels=4",
        ),
        ("depth", 3, "declares depth=3 but its stored weights have depth=2"),
        ("n_classes", 3, "declares n_classes=3 but its stored weights have n_classes=2"),
        ("in_channels", 3, "declares in_channels=3 but its stored weights have in_channels=1"),
    ]:
        declared = {"in_channels": 1, "n_classes": 2, "depth": 2, "base_channels": 4, key: value}
        with pytest.raises(ValueError, match=message):
            load_model(_forge(tmp_path / f"{key}.safetensors", small, declared))
    assert built == []  # no network was built for any of them


def test_a_tensor_of_the_wrong_shape_or_a_missing_tensor_is_named(tmp_path):
    config = {"in_channels": 1, "n_classes": 2, "depth": 2, "base_channels": 4}
    state = dict(UNet(depth=2, base_channels=4).state_dict())
    state["expansive_path.0.up_convolution.weight"] = torch.zeros(8, 4, 3, 3)
    with pytest.raises(
        ValueError, match=r"tensor expansive_path.0.up_convolution.weight has shape"
    ):
        load_model(_forge(tmp_path / "shape.safetensors", state, config))
    del state["head.bias"]
    with pytest.raises(ValueError, match=r"missing \['head.bias'\]"):
        load_model(_forge(tmp_path / "missing.safetensors", state, config))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_any_number_of_classes_that_matches_the_head_loads(tmp_path, n_classes):
    model = UNet(depth=2, base_channels=4, n_classes=n_classes)
    assert load_model(save_model(model, tmp_path / "m.safetensors")).config.n_classes == n_classes


@pytest.mark.parametrize(
    "key, value",
    [
        ("head.bias", float("nan")),
        ("contracting_path.0.0.weight", float("inf")),
        ("contracting_path.0.1.running_mean", float("nan")),
        ("contracting_path.0.1.running_var", float("-inf")),
    ],
)
def test_nan_or_inf_weights_and_statistics_are_refused(tmp_path, key, value):
    model = UNet(depth=2, base_channels=4, batch_norm=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[key].view(-1)[0] = value
    model.load_state_dict(state)
    path = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=f"{key}"):
        load_model(path)


def test_negative_batch_norm_variance_is_refused(tmp_path):
    model = UNet(depth=2, base_channels=4, batch_norm=True)
    with torch.no_grad():
        model.contracting_path[0][1].running_var[0] = -1.0
    with pytest.raises(ValueError, match="variance .* is negative"):
        load_model(save_model(model, tmp_path / "neg.safetensors"))


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_local_default_does_not_shadow_the_shipped_model(tmp_path, monkeypatch, kind):
    from napari_unet.models.files import (
        default_model_available,
        resolve_model_path,
        shipped_model_path,
    )

    if not default_model_available():
        pytest.skip("no shipped default model in this installation")
    monkeypatch.chdir(tmp_path)
    if kind == "file":
        save_model(UNet(depth=2, base_channels=4), tmp_path / "default")
    else:
        (tmp_path / "default").mkdir()
    # a bare name means the shipped model ...
    assert resolve_model_path("default") == shipped_model_path("default")
    assert load_model("default").config.base_channels != 4
    # ... and an explicit path means the file
    if kind == "file":
        assert load_model("./default").config.base_channels == 4
        from pathlib import Path

        assert load_model(Path("default")).config.base_channels == 4
    else:
        with pytest.raises(FileNotFoundError, match="is a folder"):
            load_model("./default")


def test_a_bare_name_without_a_shipped_model_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model(UNet(depth=2, base_channels=4), tmp_path / "mymodel")
    assert load_model("mymodel").config.base_channels == 4


def test_save_model_or_keep_writes_elsewhere_when_the_target_fails(tmp_path, monkeypatch):
    from napari_unet.models.files import save_model_or_keep

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    model = UNet(depth=2, base_channels=4)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    written, error = save_model_or_keep(model, blocked / "m.safetensors")
    assert isinstance(error, OSError)
    assert written.parent == tmp_path / "tmp" and written.name.startswith("m.unsaved-")
    assert load_model(written).config == model.config
    ok, none = save_model_or_keep(model, tmp_path / "ok.safetensors")
    assert none is None and ok == tmp_path / "ok.safetensors"
