"""Checkpoint catalog: scanning, A1111 titles, the sha256 cache, lookups; VAE catalog choices."""
import hashlib
import json
import os

from modules.models.catalog import CheckpointCatalog, HashCache, sha256_file
from modules.models.vae import VaeCatalog


class CountingHasher:
    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(path.name)
        return sha256_file(path)


def make_tree(root):
    sd = root / "models" / "Stable-diffusion"
    (sd / "sub").mkdir(parents=True)
    (sd / "a.safetensors").write_bytes(b"a" * 100)
    (sd / "sub" / "b.ckpt").write_bytes(b"b" * 100)
    (sd / "a.vae.safetensors").write_bytes(b"vae")  # a VAE, not a checkpoint
    (sd / "notes.txt").write_text("x")
    extra = root / "extra"
    extra.mkdir()
    (extra / "c.safetensors").write_bytes(b"c" * 100)
    return sd, extra


def test_scan_titles_and_names(tmp_path):
    sd, extra = make_tree(tmp_path)
    catalog = CheckpointCatalog([sd, extra], HashCache(tmp_path / "cache.json"))
    infos = catalog.refresh()
    sha_a = hashlib.sha256(b"a" * 100).hexdigest()
    assert [i.name for i in infos] == ["a.safetensors", "c.safetensors", "sub/b.ckpt"]
    a = infos[0]
    assert a.sha256 == sha_a and a.shorthash == sha_a[:10]
    assert a.title == f"a.safetensors [{sha_a[:10]}]"
    assert a.model_name == "a" and a.name_for_extra == "a"
    assert infos[2].model_name == "sub_b"
    assert len(a.hash) == 8


def test_rescan_does_not_rehash_until_file_changes(tmp_path):
    sd, extra = make_tree(tmp_path)
    hasher = CountingHasher()
    CheckpointCatalog([sd, extra], HashCache(tmp_path / "cache.json", hasher)).refresh()
    assert sorted(hasher.calls) == ["a.safetensors", "b.ckpt", "c.safetensors"]
    cached = json.loads((tmp_path / "cache.json").read_text())["hashes-sha256"]
    assert len(cached) == 3

    hasher2 = CountingHasher()  # a new process: the cache comes from disk
    catalog = CheckpointCatalog([sd, extra], HashCache(tmp_path / "cache.json", hasher2))
    catalog.refresh()
    assert hasher2.calls == []

    (sd / "a.safetensors").write_bytes(b"A" * 101)  # size and mtime change
    os.utime(sd / "a.safetensors", (1, 1))
    info = {i.name: i for i in catalog.refresh()}["a.safetensors"]
    assert hasher2.calls == ["a.safetensors"]
    assert info.sha256 == hashlib.sha256(b"A" * 101).hexdigest()


def test_cache_keeps_other_sections_and_survives_damage(tmp_path):
    cache_file = tmp_path / "cache.json"
    cache_file.write_text(json.dumps({"safetensors-metadata": {"x": 1}}))
    (tmp_path / "f.bin").write_bytes(b"1")
    HashCache(cache_file).sha256(tmp_path / "f.bin")
    assert json.loads(cache_file.read_text())["safetensors-metadata"] == {"x": 1}
    cache_file.write_text("{not json")
    assert HashCache(cache_file).sha256(tmp_path / "f.bin") == hashlib.sha256(b"1").hexdigest()
    # the damaged file was kept aside, not overwritten: another program's section may be in it
    assert (tmp_path / "cache.json.corrupt").read_text() == "{not json"
    assert "hashes-sha256" in json.loads(cache_file.read_text())


def test_lookup_like_a1111(tmp_path):
    sd, extra = make_tree(tmp_path)
    catalog = CheckpointCatalog([sd, extra], HashCache(None))
    a, c, b = catalog.refresh()
    assert catalog.get(a.title) is a
    assert catalog.get("a.safetensors") is a
    assert catalog.get("a") is a
    assert catalog.get(a.shorthash) is a
    assert catalog.get(a.sha256[:16]) is a
    assert catalog.get(a.hash) is a
    assert catalog.get("sub/b") is b
    assert catalog.get("b.ckpt [0000000000]") is b  # stale hash in an old infotext: matched by name
    assert catalog.get("nothing-like-it") is None
    assert catalog.get("") is None


def test_vae_choices(tmp_path):
    sd, extra = make_tree(tmp_path)
    vae_dir = tmp_path / "models" / "VAE"
    vae_dir.mkdir()
    (vae_dir / "vae-ft-mse.safetensors").write_bytes(b"v")
    (vae_dir / "c-special.pt").write_bytes(b"v")
    vaes = VaeCatalog(vae_dir, [sd, extra])
    vaes.refresh()
    assert vaes.names() == ["Automatic", "None", "c-special.pt", "vae-ft-mse.safetensors", "a.vae.safetensors"]
    assert vaes.resolve("None", sd / "a.safetensors") is None
    assert vaes.resolve("Automatic", sd / "a.safetensors").name == "a.vae.safetensors"  # beside it
    assert vaes.resolve("Automatic", extra / "c.safetensors").name == "c-special.pt"  # models/VAE by name
    assert vaes.resolve("Automatic", sd / "sub" / "b.ckpt") is None  # none: the checkpoint's own
    assert vaes.resolve("vae-ft-mse.safetensors", sd / "a.safetensors").filename == str(
        (vae_dir / "vae-ft-mse.safetensors").resolve())
