"""Extensions: A1111-style plugin folders in `extensions-builtin/` and the data dir's `extensions/`.

`load_extensions(ctx)` is the start-up entry point (call it once the model manager exists and
before the first model loads): it discovers the folders, orders them (metadata.ini), runs install.py
where needed, imports the scripts of the enabled extensions - each under its own extension scope
(script_callbacks) with every error caught, logged with the extension's name and kept for the
Extensions tab - then sets:

- `ctx.extensions`: the ExtensionManager (list, enable/disable, install from URL, check for updates);
- `ctx.services.scripts`: the ScriptsService (runners, tabs, css/js) the front ends use;
- `ctx.services.callbacks`: the ProcessingCallbacks jobs call (CFG hooks, image saving).

Disabling: `--disable-all-extensions` / `--disable-extra-extensions`, the `disable_all_extensions`
setting ("none" / "extra" / "all"), and per extension the `disabled_extensions` list in config.json.
Changes take effect at the next start (scripts are imported once).
"""
from __future__ import annotations

import logging
import time

from modules.plugins import git as extensions_git
from modules.plugins import install as extensions_install
from modules.plugins.discovery import (  # noqa: F401  (re-exported)
    Extension,
    ExtensionMetadata,
    discover_dirs,
    import_script,
    order_extensions,
    read_metadata,
)
from modules.plugins.service import ScriptsService
from modules.script_callbacks import CallbackRegistry, Problem
from modules.scripts import ScriptClass

log = logging.getLogger("sdwebui.extensions")


class ExtensionAccessError(PermissionError):
    pass


class ExtensionManager:
    def __init__(self, ctx, registry: CallbackRegistry, install_timeout: float = extensions_install.DEFAULT_TIMEOUT):
        self.ctx = ctx
        self.registry = registry
        self.install_timeout = install_timeout
        self.install_state = extensions_install.InstallState(ctx.paths.data_dir)
        self.extensions: list[Extension] = []   # every folder found, in default order
        self.loaded: list[Extension] = []       # the enabled ones, in load order
        self.script_classes: list[ScriptClass] = []

    # -- what is disabled --------------------------------------------------------------------------
    def disable_mode(self) -> str:
        args, opts = self.ctx.args, self.ctx.opts
        if getattr(args, "disable_all_extensions", False) or opts.disable_all_extensions == "all":
            return "all"
        if getattr(args, "disable_extra_extensions", False) or opts.disable_all_extensions == "extra":
            return "extra"
        return "none"

    def _enabled(self, ext: Extension, mode: str) -> bool:
        if mode == "all" or (mode == "extra" and not ext.is_builtin):
            return False
        return ext.name not in set(self.ctx.opts.disabled_extensions or [])

    # -- loading -----------------------------------------------------------------------------------
    def discover(self) -> list[Extension]:
        mode = self.disable_mode()
        found = []
        for path, builtin in discover_dirs(self.ctx.paths.extensions_builtin_dir, self.ctx.paths.extensions_dir):
            meta, problem = read_metadata(path)
            ext = Extension(path.name, path, builtin, metadata=meta)
            if problem:
                self.registry.report(ext.name, "metadata.ini", problem)
            ext.enabled = self._enabled(ext, mode)
            ext.status = "loaded" if ext.enabled else "disabled"
            ext.read_git_info()
            found.append(ext)
        self.extensions = found
        return found

    def load(self, run_installers: bool = True) -> None:
        t_all = time.perf_counter()
        ordered, dropped = order_extensions([e for e in self.discover() if e.enabled])
        for ext, why in dropped:
            ext.status = f"not loaded: {why}"
            self.registry.report(ext.name, "metadata.ini Requires", why)
        for ext in ordered:
            self._load_one(ext, run_installers)
        self.loaded = ordered
        log.info("extensions: %d loaded (%d scripts) in %.2f s", len(ordered), len(self.script_classes),
                 time.perf_counter() - t_all)

    def _load_one(self, ext: Extension, run_installers: bool) -> None:
        t0 = time.perf_counter()
        if run_installers:
            ext.install = extensions_install.run_install(ext.name, ext.path, self.install_state, self.install_timeout)
            if not ext.install.ok:
                self.registry.report(ext.name, "install.py", ext.install.message, ext.install.output)
        scope = self.registry.scope(ext.name, ext.path)
        scripts_dir = ext.path / "scripts"
        files = sorted(scripts_dir.glob("*.py")) if scripts_dir.is_dir() else []
        for path in files:
            ext.script_files.append(path.name)
            try:
                self.script_classes += import_script(path, scope)
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # SyntaxError, ImportError, even sys.exit() at import
                self.registry.report(ext.name, f"scripts/{path.name}", e)
        ext.load_seconds = time.perf_counter() - t0
        if self.problems_of(ext.name):
            ext.status = "loaded with errors"
        log.info("extension %s: %d script file(s) imported in %.3f s", ext.name, len(files), ext.load_seconds)

    # -- what the Extensions tab shows -------------------------------------------------------------
    def get(self, name: str) -> Extension | None:
        return next((e for e in self.extensions if e.name == name), None)

    def problems_of(self, name: str) -> list[Problem]:
        return self.registry.problems_of(name)

    def notes_of(self, name: str) -> list[str]:
        return list(self.registry.notes.get(name, []))

    def set_enabled(self, name: str, enabled: bool) -> str:
        """Save the choice in config.json (disabled_extensions); it applies at the next start."""
        if self.get(name) is None:
            raise ValueError(f"no extension named {name!r} is installed")
        disabled = [n for n in (self.ctx.opts.disabled_extensions or []) if n != name]
        if not enabled:
            disabled.append(name)
        self.ctx.opts.set("disabled_extensions", sorted(disabled))
        self.ctx.opts.save()
        return f"{name} will be {'enabled' if enabled else 'disabled'} at the next start of the web UI"

    def set_enabled_many(self, enabled_names: list[str]) -> str:
        """The tab's checkboxes: every installed extension not in enabled_names is disabled."""
        wanted = set(enabled_names)
        disabled = sorted(e.name for e in self.extensions if e.name not in wanted)
        self.ctx.opts.set("disabled_extensions", disabled)
        self.ctx.opts.save()
        return ("Saved: disabled " + (", ".join(disabled) if disabled else "none") +
                ". Restart the web UI to apply.")

    # -- installing and updating -------------------------------------------------------------------
    def check_access(self) -> None:
        """Installing runs code from the internet: only from localhost unless explicitly allowed."""
        if not self.ctx.localhost_only and not getattr(self.ctx.args, "enable_insecure_extension_access", False):
            raise ExtensionAccessError(
                "installing or updating extensions is disabled because the server listens beyond localhost "
                "(--listen / --server-name); start it with --enable-insecure-extension-access to allow it")

    def install_from_url(self, url: str, name: str | None = None, branch: str | None = None) -> Extension:
        """git clone into extensions/<name>, then install.py; the scripts load at the next start."""
        self.check_access()
        name = name or extensions_git.name_from_url(url or "")
        target = extensions_git.safe_target(self.ctx.paths.extensions_dir, name)
        extensions_git.clone(url, target, branch or None)
        ext = Extension(target.name, target, False, metadata=read_metadata(target)[0],
                        status="installed: restart the web UI to load it")
        ext.read_git_info()
        ext.install = extensions_install.run_install(ext.name, target, self.install_state, self.install_timeout)
        if not ext.install.ok:
            self.registry.report(ext.name, "install.py", ext.install.message, ext.install.output)
        self.extensions.append(ext)
        log.info("extension %s installed from %s", ext.name, url)
        return ext

    def check_for_updates(self) -> dict[str, str]:
        """git fetch each git extension: name -> 'behind' / 'latest' / 'unknown' / an error message."""
        self.check_access()
        out = {}
        for ext in self.extensions:
            if not (ext.path / ".git").exists():
                continue
            try:
                out[ext.name] = extensions_git.fetch_status(ext.path)
            except extensions_git.GitError as e:
                out[ext.name] = f"error: {e}"
        return out

    def update(self, name: str) -> str:
        self.check_access()
        ext = self.get(name)
        if ext is None:
            raise ValueError(f"no extension named {name!r} is installed")
        extensions_git.fast_forward(ext.path)
        ext.read_git_info()
        return f"{name} updated to {ext.version}; restart the web UI to load the new version"


def load_extensions(ctx, run_installers: bool = True,
                    install_timeout: float = extensions_install.DEFAULT_TIMEOUT,
                    ui_environment=None) -> ExtensionManager:
    """Load everything and attach it to ctx (see the module docstring). ui_environment: the front
    end's context for extension code that imports or builds UI (CallbackRegistry.ui_environment;
    the web UI's is webui/ui/gradio3_compat.environment)."""
    registry = CallbackRegistry(ctx)
    registry.ui_environment = ui_environment
    from modules.plugins.compat import builtin_lora
    builtin_lora.register()  # A1111's `import lora` (its built-in Lora extension's module)
    manager = ExtensionManager(ctx, registry, install_timeout)
    manager.load(run_installers)
    service = ScriptsService(registry, manager.script_classes, manager.loaded)
    ctx.extensions = manager
    ctx.services.scripts = service
    ctx.services.callbacks = registry.processing
    models = ctx.models
    if models is not None:
        models.callbacks.append(lambda loaded: service.model_loaded(loaded.model))
        if models.current is not None:  # a model loaded before the extensions
            service.model_loaded(models.current.model)
    registry.call("ui_settings")
    # code of extensions that runs outside a call from the web UI (Gradio handlers it made) finds
    # this application through the start-up thread's context
    registry.activate(registry.scope("(app)", None))
    return manager
