"""Reading checkpoint files: safetensors mmap, safe pickles, refused pickles, corrupt files."""
import os
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.models.state_dict import CheckpointRefused, read_state_dict


class RunsCode:
    """A pickle payload that would create a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_safetensors_round_trip_is_memory_mapped(tmp_path):
    tensors = {"a.weight": torch.randn(4, 3, dtype=torch.float16), "b": torch.arange(5)}
    save_file(tensors, tmp_path / "m.safetensors")
    sd = read_state_dict(tmp_path / "m.safetensors")
    assert set(sd) == set(tensors)
    assert torch.equal(sd["a.weight"], tensors["a.weight"]) and sd["a.weight"].dtype == torch.float16
    assert torch.equal(sd["b"], tensors["b"])


def test_ckpt_with_state_dict_wrapper_ema_and_extras(tmp_path):
    weights = {"w": torch.randn(3, dtype=torch.bfloat16)}
    torch.save({"state_dict": {**weights, "model_ema.decay": torch.tensor(0.99), "model_ema.w": torch.zeros(3)},
                "global_step": 7}, tmp_path / "m.ckpt")
    sd = read_state_dict(tmp_path / "m.ckpt")
    assert list(sd) == ["w"] and torch.equal(sd["w"], weights["w"])


def test_ckpt_with_numpy_step_and_lightning_callback_key_loads(tmp_path, monkeypatch):
    # Old SD .ckpt files hold a numpy global_step and pytorch_lightning's ModelCheckpoint class as
    # a dict key. Make such a file with a stand-in module, then load it without that module.
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    cls = type("ModelCheckpoint", (), {"__module__": mod.__name__})
    mod.ModelCheckpoint = cls
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        monkeypatch.setitem(sys.modules, name, mod if name == mod.__name__ else types.ModuleType(name))
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": np.int64(470000),
                "callbacks": {cls: {"best_model_score": None}}}, tmp_path / "old.ckpt")
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        monkeypatch.delitem(sys.modules, name)
    assert list(read_state_dict(tmp_path / "old.ckpt")) == ["w"]
    assert "pytorch_lightning" not in sys.modules


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_did_not_run(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": RunsCode(marker)}, tmp_path / "evil.ckpt",
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointRefused, match="refused to load evil.ckpt.*run code"):
        read_state_dict(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_truncated_files_give_a_clear_error(tmp_path):
    save_file({"w": torch.randn(1000)}, tmp_path / "full.safetensors")
    torch.save({"w": torch.randn(1000)}, tmp_path / "full.ckpt")
    for name in ("full.safetensors", "full.ckpt"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / name.replace("full", "cut")
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=f"cannot read {cut.name}: the file is truncated"):
            read_state_dict(cut)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated"):
        read_state_dict(tmp_path / "empty.safetensors")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="unknown checkpoint format '.gguf'"):
        read_state_dict(tmp_path / "m.gguf")
