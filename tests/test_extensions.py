"""Extension discovery, ordering, enabling, install.py, broken extensions, install from URL."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from modules.plugins.manager import load_extensions
from tests.api_support import make_context
from tests.extensions_support import BROKEN, CALLBACKS, PROMPT_SUFFIX, write_extension


def _ctx(tmp_path, *flags):
    return make_context(tmp_path, *flags)


def test_metadata_orders_and_requires(tmp_path):
    write_extension(tmp_path, "a-first", {"metadata.ini": "[Extension]\nName = alpha\nRequires = beta\n"})
    write_extension(tmp_path, "b-second", {"metadata.ini": "[Extension]\nName = beta\n"})
    write_extension(tmp_path, "c-third", {"metadata.ini": "[Extension]\nBefore = beta\n"})
    write_extension(tmp_path, "d-needs-missing", {"metadata.ini": "[Extension]\nRequires = nowhere\n"})
    ctx = _ctx(tmp_path)
    manager = load_extensions(ctx, run_installers=False)
    user = [e.name for e in manager.loaded if not e.is_builtin]
    assert user == ["c-third", "b-second", "a-first"]
    missing = manager.get("d-needs-missing")
    assert "requires nowhere" in missing.status
    assert any("nowhere" in p.message for p in manager.problems_of("d-needs-missing"))


def test_disable_one_all_and_extra(tmp_path):
    write_extension(tmp_path, "suffix", PROMPT_SUFFIX)
    ctx = _ctx(tmp_path)
    manager = load_extensions(ctx, run_installers=False)
    assert "Prompt suffix" in [s.title() for s in ctx.services.scripts.runner(False).scripts]
    message = manager.set_enabled("suffix", False)
    assert "next start" in message
    import json
    assert json.loads(ctx.paths.config_file.read_text())["disabled_extensions"] == ["suffix"]
    ctx2 = _ctx(tmp_path)  # the next start reads config.json
    manager2 = load_extensions(ctx2, run_installers=False)
    assert manager2.get("suffix").status == "disabled"
    assert "Prompt suffix" not in [s.title() for s in ctx2.services.scripts.runner(False).scripts]
    ctx3 = _ctx(tmp_path, "--disable-all-extensions")
    manager3 = load_extensions(ctx3, run_installers=False)
    assert manager3.loaded == [] and ctx3.services.scripts.runner(False).scripts == []
    assert manager3.get("xyz-grid").status == "disabled"
    ctx3.opts.set("disabled_extensions", [])
    ctx4 = _ctx(tmp_path, "--disable-extra-extensions")
    manager4 = load_extensions(ctx4, run_installers=False)
    assert {e.name for e in manager4.loaded} == {e.name for e in manager4.extensions if e.is_builtin}


def test_broken_extension_is_reported_and_others_load(tmp_path):
    write_extension(tmp_path, "broken", BROKEN)
    write_extension(tmp_path, "suffix", PROMPT_SUFFIX)
    write_extension(tmp_path, "exits", {"scripts/bye.py": "import sys\nsys.exit(3)\n"})
    ctx = _ctx(tmp_path)
    manager = load_extensions(ctx, run_installers=False)
    problems = manager.problems_of("broken")
    assert any(p.where == "scripts/syntax.py" and "SyntaxError" in p.message for p in problems)
    assert manager.get("broken").status == "loaded with errors"
    assert any("SystemExit" in p.message for p in manager.problems_of("exits"))
    titles = [s.title() for s in ctx.services.scripts.runner(False).scripts]
    assert "Prompt suffix" in titles and "Raising" in titles and "X/Y/Z plot" in titles


def test_install_py_runs_once_again_on_change_and_hanging_one_times_out(tmp_path):
    ext = write_extension(tmp_path, "inst", {
        "install.py": "from pathlib import Path\np = Path('runs.txt')\n"
                      "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n",
        "scripts/s.py": "X = 1\n"})
    (ext / ".gitignore").write_text("")
    write_extension(tmp_path, "hangs", {"install.py": "import time\ntime.sleep(60)\n",
                                        "scripts/ok.py": "from modules import script_callbacks\n"})
    ctx = _ctx(tmp_path)
    manager = load_extensions(ctx, install_timeout=3)
    assert (ext / "runs.txt").read_text() == "x"
    hang = manager.get("hangs")
    assert not hang.install.ok and "did not finish within 3 s" in hang.install.message
    assert any(p.where == "install.py" for p in manager.problems_of("hangs"))
    assert manager.get("hangs").status == "loaded with errors"
    load_extensions(_ctx(tmp_path), install_timeout=3)   # unchanged: not run again
    assert (ext / "runs.txt").read_text() == "x"
    (ext / "scripts" / "s.py").write_text("X = 2\n")     # changed: runs again
    load_extensions(_ctx(tmp_path), install_timeout=3)
    assert (ext / "runs.txt").read_text() == "xx"


def test_javascript_css_settings_and_unsupported_callbacks(tmp_path):
    write_extension(tmp_path, "hooks", CALLBACKS)
    ctx = _ctx(tmp_path)
    manager = load_extensions(ctx, run_installers=False)
    service = ctx.services.scripts
    assert "window.hooksExtensionLoaded = true;" in service.javascript()
    assert service.javascript().startswith("<script")
    assert "#hooks_box" in service.css()
    assert ctx.opts.hooks_tag == "abc" and ctx.opts.registry["hooks_tag"].section == "hooks"
    assert manager.notes_of("hooks") == ["registers on_list_optimizers, which this web UI does not call"]


def test_script_callbacks_outside_an_extension_say_so():
    from modules import script_callbacks
    ctx_var = script_callbacks._scope
    token = ctx_var.set(None)
    try:
        with pytest.raises(RuntimeError, match="no extension is being loaded"):
            script_callbacks.on_ui_tabs(lambda: [])
    finally:
        ctx_var.reset(token)


def _git_repo(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "install.py").write_text("open('installed.txt', 'w').write('yes')\n")
    (path / "scripts").mkdir(exist_ok=True)
    (path / "scripts" / "remote.py").write_text(textwrap.dedent(PROMPT_SUFFIX["scripts/suffix.py"]))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin", "HOME": str(path)}
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *cmd], cwd=path, check=True, env=env)
    return env


@pytest.mark.skipif(subprocess.run(["which", "git"], capture_output=True).returncode != 0, reason="no git")
def test_install_from_local_git_url_then_check_updates(tmp_path):
    repo = tmp_path / "src" / "sd-webui-remote.git"
    env = _git_repo(repo)
    data = tmp_path / "data"
    ctx = _ctx(data)
    manager = load_extensions(ctx, run_installers=False)
    ext = manager.install_from_url(str(repo))
    assert ext.name == "sd-webui-remote" and (data / "extensions" / "sd-webui-remote" / "scripts" / "remote.py").is_file()
    assert ext.install.ok and (ext.path / "installed.txt").read_text() == "yes"
    assert ext.commit_hash and ext.remote == str(repo)
    assert manager.check_for_updates()["sd-webui-remote"] == "latest"
    (repo / "README").write_text("new")
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "second"], cwd=repo, check=True, env=env)
    assert manager.check_for_updates()["sd-webui-remote"] == "behind"
    manager.update("sd-webui-remote")
    assert manager.check_for_updates()["sd-webui-remote"] == "latest"
    # the next start loads it
    ctx2 = _ctx(data)
    load_extensions(ctx2, run_installers=False)
    assert "Prompt suffix" in [s.title() for s in ctx2.services.scripts.runner(False).scripts]
    for bad in ("../escape", "..", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="not allowed|outside"):
            manager.install_from_url(str(repo), name=bad)
    with pytest.raises(ValueError, match="already installed"):
        manager.install_from_url(str(repo))


def test_install_refused_when_listening_unless_allowed(tmp_path):
    ctx = _ctx(tmp_path, "--listen")
    manager = load_extensions(ctx, run_installers=False)
    with pytest.raises(PermissionError, match="--enable-insecure-extension-access"):
        manager.install_from_url("https://example.invalid/x.git")
    with pytest.raises(PermissionError):
        manager.check_for_updates()
    assert not (tmp_path / "extensions" / "x").exists()
    ctx2 = _ctx(tmp_path, "--listen", "--enable-insecure-extension-access")
    manager2 = load_extensions(ctx2, run_installers=False)
    manager2.check_access()  # allowed


def test_preload_flags_use_the_same_discovery(tmp_path):
    from modules import cmd_args
    from modules.plugins import preload as extension_preload
    write_extension(tmp_path, "flags", {"preload.py": "def preload(parser):\n"
                                                      "    parser.add_argument('--my-ext-flag', default='x')\n"})
    parser = cmd_args.make_parser()
    failed = extension_preload.add_flags(parser, ["--data-dir", str(tmp_path)])
    assert failed == []
    assert parser.parse_args(["--my-ext-flag", "y"]).my_ext_flag == "y"
    assert sys.modules.get("preload_flags") is None
