from pathlib import Path

from modules import requirements as reqs

ROOT = Path(__file__).resolve().parents[1]


def test_pins_are_exact_and_installed_here():
    for name in ("requirements.txt", "requirements-torch.txt", "requirements-test.txt"):
        pins = reqs.read_pins(ROOT / name)
        assert pins and all(p.version for p in pins), name
        assert reqs.missing(pins) == [], f"{name}: the venv differs from the lock"


def test_lock_keeps_the_documented_constraints():
    pins = {p.name: p.version for p in reqs.read_pins(ROOT / "requirements.txt")}
    assert pins["numpy"].startswith("1.")
    assert int(pins["setuptools"].split(".")[0]) < 81
    assert "wandb" not in pins and "accelerate" not in pins
    torch = {p.name: p.version for p in reqs.read_pins(ROOT / "requirements-torch.txt")}
    assert torch["torch"] == "2.14.1" and torch["torchvision"] == "0.29.1"


def test_missing_detects_absent_and_wrong_versions(tmp_path):
    f = tmp_path / "r.txt"
    f.write_text("# comment\n-r other.txt\nnumpy==0.0.1\nno-such-package-xyz==1.0\npytest\n")
    missing = reqs.missing(reqs.read_pins(f))
    assert [p.name for p in missing] == ["numpy", "no-such-package-xyz"]
