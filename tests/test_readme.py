"""The README is the front door: the commands it gives must be the ones CI and users run."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "python launch.py          #" in readme and "python launch.py --test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 launch.py --test" in ci


def test_every_flag_in_the_readme_exists():
    import re

    from modules.cmd_args import make_parser
    known = {s for a in make_parser()._actions for s in a.option_strings}
    readme = (ROOT / "README.md").read_text()
    flags = set(re.findall(r"`(--[a-z-]+)", readme))
    assert flags and flags <= known, flags - known
