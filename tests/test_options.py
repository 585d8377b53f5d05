import json
import threading

import pytest

from modules.atomic import atomic_write_text
from modules.options import OptionError, OptionInfo, Options


def test_defaults_and_attribute_access():
    opts = Options()
    assert opts.CLIP_stop_at_last_layers == 1
    assert opts.get("emphasis") == "Original"
    assert opts.samples_format == "png"
    with pytest.raises(AttributeError):
        _ = opts.no_such_setting


@pytest.mark.parametrize("key, value, fragment", [
    ("CLIP_stop_at_last_layers", 0, "between 1 and 12"),
    ("CLIP_stop_at_last_layers", "two", "must be a whole number"),
    ("emphasis", "Loud", "must be one of"),
    ("samples_save", "yes", "must be true or false"),
    ("no_such_key", 1, "unknown setting"),
])
def test_invalid_values_are_rejected_with_a_message(key, value, fragment):
    opts = Options()
    with pytest.raises(OptionError, match=fragment):
        opts.set(key, value)


def test_update_is_all_or_nothing():
    opts = Options()
    with pytest.raises(OptionError):
        opts.update({"CLIP_stop_at_last_layers": 2, "emphasis": "Loud"})
    assert opts.CLIP_stop_at_last_layers == 1


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "config.json"
    opts = Options(path)
    opts.set("CLIP_stop_at_last_layers", 2)
    opts.set("disabled_extensions", ["a"])
    opts.save()
    again = Options(path).load()
    assert again.CLIP_stop_at_last_layers == 2 and again.disabled_extensions == ["a"]
    assert not again.warnings


def test_unknown_keys_from_extensions_survive_a_save(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"my_extension_setting": 5, "emphasis": "No norm"}))
    opts = Options(path).load()
    opts.set("CLIP_stop_at_last_layers", 3)
    opts.save()
    saved = json.loads(path.read_text())
    assert saved["my_extension_setting"] == 5 and saved["emphasis"] == "No norm"


def test_corrupt_config_is_backed_up_not_overwritten(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"emphasis": "No norm", ')  # truncated
    opts = Options(path).load()
    assert opts.emphasis == "Original"
    assert "could not be read" in opts.warnings[0]
    backup = tmp_path / "config.json.corrupt"
    assert backup.read_text() == '{"emphasis": "No norm", '
    opts.save()
    assert json.loads(path.read_text()) == {}
    # a second corruption keeps the first backup too
    path.write_text("[")
    Options(path).load()
    assert backup.exists() and (tmp_path / "config.json.corrupt.1").exists()


def test_invalid_value_in_file_warns_and_uses_default(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"CLIP_stop_at_last_layers": 99}))
    opts = Options(path).load()
    assert opts.CLIP_stop_at_last_layers == 1
    assert "between 1 and 12" in opts.warnings[0]


def test_a_non_finite_number_in_the_file_resets_that_key_with_a_warning(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"rho": NaN, "s_noise": Infinity, "jpeg_quality": 55}')  # Python's json writes these
    opts = Options(path).load()
    assert opts.rho == 0.0 and opts.s_noise == 1.0 and opts.jpeg_quality == 55
    assert sum("finite number" in w for w in opts.warnings) == 2
    with pytest.raises(OptionError, match="finite"):
        opts.set("rho", float("nan"))


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    atomic_write_text(path, "old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left behind


def test_override_restores_afterwards():
    opts = Options()
    opts.set("emphasis", "No norm")
    with opts.override({"emphasis": "Ignore", "CLIP_stop_at_last_layers": 2}):
        assert opts.emphasis == "Ignore" and opts.CLIP_stop_at_last_layers == 2
    assert opts.emphasis == "No norm" and opts.CLIP_stop_at_last_layers == 1
    with opts.override({"emphasis": "Ignore"}, restore=False):
        pass
    assert opts.emphasis == "Ignore"


def test_extensions_add_options_per_instance():
    a, b = Options(), Options()
    a.add_option("ext_strength", OptionInfo(0.5, "Strength", "ext", minimum=0.0, maximum=1.0))
    a.set("ext_strength", 0.7)
    assert a.ext_strength == 0.7
    with pytest.raises(OptionError):
        b.set("ext_strength", 0.7)


def test_concurrent_sets_and_saves_never_corrupt_the_file(tmp_path):
    path = tmp_path / "config.json"
    opts = Options(path)

    def worker(i):
        for n in range(20):
            opts.set("jpeg_quality", 1 + (i * 20 + n) % 100)
            opts.save()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= json.loads(path.read_text())["jpeg_quality"] <= 100
