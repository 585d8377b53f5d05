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
    section = readme.split("## Flags", 1)[1].split("\n## ", 1)[0]  # pip's and the benchmarks' flags live elsewhere
    flags = set(re.findall(r"`(--[a-z0-9-]+)", section))
    assert flags and flags <= known, flags - known


def test_readme_python_api_example_runs_on_a_tiny_model():
    """The README's process_images example, as written, on a tiny model."""
    from modules.options import Options
    from modules.processing import process_images
    from modules.processing.objects import ProcessingEnv, StableDiffusionProcessingTxt2Img
    from tests.tiny import make_tiny_model

    model = make_tiny_model("tiny-v1")
    p = StableDiffusionProcessingTxt2Img(prompt="a (red:1.2) circle", negative_prompt="blurry", steps=3,
                                         sampler_name="Euler a", width=64, height=64, seed=1,
                                         do_not_save_samples=True)
    p.sd_model, p.env = model, ProcessingEnv(opts=Options())
    processed = process_images(p)
    assert processed.images[0].size == (64, 64) and processed.seed == 1
    assert "Sampler: Euler a" in processed.infotexts[0]
