"""Model manager: switching frees the old model, keeps at most N, VAE override and undo, callbacks."""
import gc
import shutil
import threading
import weakref

import pytest
import torch
from safetensors.torch import save_file

from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.loader import load_checkpoint
from modules.models.manager import ModelManager
from modules.models.vae import VaeCatalog
from tests.tiny import make_tiny_model, tiny_config_path


def write_checkpoint(model, path, yaml):
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, path)
    shutil.copy(tiny_config_path(yaml), path.with_suffix(".yaml"))


@pytest.fixture
def tree(tmp_path):
    ckpt_dir = tmp_path / "Stable-diffusion"
    ckpt_dir.mkdir()
    write_checkpoint(make_tiny_model("tiny-v1", seed=1), ckpt_dir / "one.safetensors", "tiny-v1")
    write_checkpoint(make_tiny_model("tiny-v2", seed=2), ckpt_dir / "two.safetensors", "tiny-v2")
    (tmp_path / "VAE").mkdir()
    return tmp_path


class CountingLoader:
    def __init__(self):
        self.paths = []

    def __call__(self, path, device, dtype, dtype_vae):
        self.paths.append(path)
        result = load_checkpoint(path, device=device, dtype=dtype, dtype_vae=dtype_vae)
        return result.model, result.config


def manager_for(tree, **kwargs):
    catalog = CheckpointCatalog([tree / "Stable-diffusion"], HashCache(tree / "cache.json"))
    vaes = VaeCatalog(tree / "VAE", [tree / "Stable-diffusion"])
    manager = ModelManager(catalog, "cpu", torch.float32, torch.float32, vae_catalog=vaes, **kwargs)
    manager.refresh()
    return manager


def test_switching_five_times_frees_each_old_model(tree):
    manager = manager_for(tree)
    refs = []
    for i in range(5):
        loaded = manager.load("one" if i % 2 == 0 else "two")
        refs.append(weakref.ref(loaded.model))
        del loaded
        gc.collect()
        assert [r() is not None for r in refs] == [False] * (len(refs) - 1) + [True]
        assert len(manager.loaded()) == 1
    assert manager.sd_model_name == "one" and manager.sd_model.parameterization == "eps"
    manager.unload()
    gc.collect()
    assert refs[-1]() is None and manager.current is None


def test_keeps_up_to_max_loaded_without_rereading(tree):
    loader = CountingLoader()
    manager = manager_for(tree, max_loaded=2, loader=loader)
    first = manager.load("one").model
    manager.load("two")
    assert manager.load("one").model is first
    assert [p.rsplit("/", 1)[-1] for p in loader.paths] == ["one.safetensors", "two.safetensors"]
    assert manager.sd_model_name == "one"


def test_infotext_names_and_hashes(tree):
    manager = manager_for(tree)
    info = manager.catalog.require("two.safetensors")
    loaded = manager.load(info.title)
    assert manager.sd_model_name == "two" and manager.sd_model_hash == info.sha256[:10]
    assert loaded.config.endswith("two.yaml")
    with pytest.raises(ValueError, match="no checkpoint matches 'three'"):
        manager.load("three")
    assert manager.sd_model_name == "two"  # a failed switch keeps the current model


def test_vae_override_automatic_none_and_undo(tree):
    ckpt_dir = tree / "Stable-diffusion"
    other_vae = make_tiny_model("tiny-v1", seed=9).first_stage_model.state_dict()
    save_file({k: v.contiguous() for k, v in other_vae.items()}, ckpt_dir / "one.vae.safetensors")
    manager = manager_for(tree)
    loaded = manager.load("one")
    conv = lambda: manager.sd_model.first_stage_model.decoder.conv_out.weight  # noqa: E731
    assert loaded.vae.name == "one.vae.safetensors" and manager.sd_vae_name == "one.vae.safetensors"
    assert torch.equal(conv(), other_vae["decoder.conv_out.weight"])
    assert len(manager.sd_vae_hash) == 10
    own = make_tiny_model("tiny-v1", seed=1).first_stage_model.decoder.conv_out.weight
    manager.set_vae("None")
    assert torch.equal(conv(), own) and manager.sd_vae_name is None
    manager.set_vae("one.vae.safetensors")
    assert torch.equal(conv(), other_vae["decoder.conv_out.weight"])
    with pytest.raises(ValueError, match="VAE 'missing.pt' not found"):
        manager.set_vae("missing.pt")
    assert manager.vae_choice == "one.vae.safetensors"
    # a VAE that does not fit (tiny-v2's VAE has the same layout, so use a truncated one)
    save_file({"decoder.conv_out.weight": torch.zeros(3, 1, 3, 3)}, tree / "VAE" / "bad.safetensors")
    manager.refresh()
    with pytest.raises(ValueError, match="does not fit this model's VAE"):
        manager.set_vae("bad.safetensors")
    assert torch.equal(manager.sd_model.first_stage_model.decoder.conv_out.weight, own)


def test_callbacks_run_and_a_failing_one_is_isolated(tree):
    seen = []

    def broken(loaded):
        raise RuntimeError("extension bug")

    manager = manager_for(tree, callbacks=[broken, lambda loaded: seen.append(loaded.info.name)])
    manager.load("one")
    manager.load("two")
    assert seen == ["one.safetensors", "two.safetensors"]


def test_concurrent_loads_are_serialised(tree):
    loader = CountingLoader()
    manager = manager_for(tree, loader=loader)
    threads = [threading.Thread(target=manager.load, args=("one",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loader.paths) == 1 and len(manager.loaded()) == 1


def test_failed_switch_brings_back_the_previous_model(tree):
    data = (tree / "Stable-diffusion" / "two.safetensors").read_bytes()
    (tree / "Stable-diffusion" / "broken.safetensors").write_bytes(data[: len(data) // 3])
    manager = manager_for(tree)
    manager.load("one")
    with pytest.raises(ValueError, match="cannot read broken.safetensors: the file is truncated"):
        manager.load("broken")
    assert manager.sd_model_name == "one" and len(manager.loaded()) == 1


def test_from_paths_wiring(tree):
    import argparse

    from modules import devices
    from modules.paths import Paths

    paths = Paths.from_args(argparse.Namespace(data_dir=tree, ckpt_dir=tree / "Stable-diffusion", vae_dir=tree / "VAE",
                                               lora_dir=None, embeddings_dir=None, styles_file=None))
    manager = ModelManager.from_paths(paths, devices.dtype_policy("cpu"))
    names = [t.split(" [")[0] for t in manager.catalog.titles()]
    assert {"one.safetensors", "two.safetensors"} <= set(names)  # (+ the shipped demo model, if any)
    assert manager.catalog.require("two").config == str(tree / "Stable-diffusion" / "two.yaml")
    assert (tree / "cache.json").is_file()
