from pathlib import Path

from modules import requirements as reqs

ROOT = Path(__file__).resolve().parents[1]


def test_pins_are_exact_and_installed_here():
    for name in ("requirements.txt", "requirements-torch.txt", "requirements-test.txt", "requirements-ray.txt"):
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


def test_the_lock_holds_everything_the_app_packages_require():
    """Installed with --no-deps, a dependency missing from the lock only shows on a fresh machine
    (fastapi 0.165 imports opentelemetry-api, for one): check the closure here instead."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock_requirements.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    needed = lock.closure(lock.APP_ROOTS, skip=lock.UNUSED)
    locked = {reqs.normalize(p.name) for f in ("requirements.txt", "requirements-torch.txt")
              for p in reqs.read_pins(ROOT / f)}
    assert needed - locked == set()
    assert "opentelemetry-api" in locked and "wandb" not in locked


def test_the_ray_lock_holds_what_ray_adds_to_the_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock_requirements.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    locked = {reqs.normalize(p.name) for f in ("requirements.txt", "requirements-torch.txt", "requirements-ray.txt")
              for p in reqs.read_pins(ROOT / f)}
    assert lock.closure(lock.RAY_ROOTS) - locked == set()
