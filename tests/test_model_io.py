import os
import pickle

import numpy as np
import pytest
import torch

from napari_unet.model_io import load_model, save_model
from napari_unet.network import UNet


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
