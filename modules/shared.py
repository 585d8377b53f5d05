"""A1111's `modules.shared`, as a thin read-mostly facade for extensions. Nothing in the project uses it.

Every attribute is looked up, at the moment it is read, in the application of the extension scope
that is current (modules/script_callbacks.py): there is no global state here.

Supported: `opts` (settings: read `opts.key`, `opts.data`, `opts.add_option(key, OptionInfo(...))`,
assign `opts.key = value`), `OptionInfo` (A1111's signature), `state` (the running job: interrupted,
skipped, job_count, job_no, sampling_step, sampling_steps, textinfo, interrupt(), skip()),
`cmd_opts` (the parsed flags), `sd_model` (the loaded model or None), `models` (the ModelManager:
`models.catalog.titles()`, `models.load(title)`), `device`, `data_path`, `models_path`.
Anything else of A1111's shared.py is not available (AttributeError naming it).
"""
from __future__ import annotations

from typing import Any

from modules.options import OptionInfo as _EngineOptionInfo
from modules.script_callbacks import current_scope


class OptionInfo:
    """A1111's OptionInfo(default, label, component, component_args, onchange, section, ...)."""

    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None,
                 section=None, refresh=None, comment_before="", comment_after="", infotext=None,
                 restrict_api=False, category_id=None):
        self.default, self.label, self.component = default, label, component
        self.component_args = component_args
        self.section = section
        self.comment = comment_after or comment_before

    def info(self, text: str) -> "OptionInfo":
        self.comment = text
        return self

    def needs_reload_ui(self) -> "OptionInfo":
        return self

    def needs_restart(self) -> "OptionInfo":
        return self

    def html(self, text: str) -> "OptionInfo":
        return self

    def link(self, label: str, url: str) -> "OptionInfo":
        return self

    def to_engine(self, fallback_section: str) -> _EngineOptionInfo:
        """-> modules.options.OptionInfo: choices and ranges from the component's arguments."""
        args = self.component_args() if callable(self.component_args) else dict(self.component_args or {})
        section = self.section[0] if isinstance(self.section, (tuple, list)) and self.section else fallback_section
        choices = args.get("choices")
        kind = "choice" if choices else "auto"
        return _EngineOptionInfo(self.default, str(self.label), str(section), kind=kind,
                                 choices=tuple(choices) if choices else None, minimum=args.get("minimum"),
                                 maximum=args.get("maximum"), step=args.get("step"), comment=self.comment)


class _Opts:
    """shared.opts: the application's Options, read and written by key."""

    def _opts(self):
        return current_scope().ctx.opts

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return getattr(self._opts(), key)

    def __setattr__(self, key: str, value: Any) -> None:
        self._opts().set(key, value)

    @property
    def data(self) -> dict:
        return self._opts().as_dict()

    def add_option(self, key: str, info) -> None:
        scope = current_scope()
        if isinstance(info, OptionInfo):
            info = info.to_engine(f"extension:{scope.extension}")
        scope.ctx.opts.add_option(key, info)

    def get(self, key: str, default=None) -> Any:
        try:
            return self._opts().get(key)
        except ValueError:
            return default

    def save(self, filename: str | None = None) -> None:
        self._opts().save()


class _State:
    """shared.state: the job running now (A1111's names); neutral values when idle."""

    def _job(self):
        return current_scope().ctx.jobs.current

    def __getattr__(self, key: str) -> Any:
        job = self._job()
        defaults = {"interrupted": False, "skipped": False, "job_count": 0, "job_no": 0, "sampling_step": 0,
                    "sampling_steps": 0, "textinfo": None, "job": "", "job_timestamp": "0", "current_image": None}
        if key not in defaults:
            raise AttributeError(f"shared.state.{key} is not available in this web UI")
        if job is None:
            return defaults[key]
        return job.name if key == "job" else getattr(job, key)

    def interrupt(self) -> None:
        current_scope().ctx.jobs.interrupt()

    def skip(self) -> None:
        current_scope().ctx.jobs.skip()


opts = _Opts()
state = _State()


def __getattr__(name: str) -> Any:
    ctx = current_scope().ctx
    if name == "cmd_opts":
        return ctx.args
    if name == "models":
        return ctx.models
    if name == "sd_model":
        current = ctx.models.current if ctx.models is not None else None
        return current.model if current is not None else None
    if name == "sd_upscalers":  # A1111's list of upscalers (name, data_path, scaler.upscale)
        from modules.upscaler_data import sd_upscalers

        return sd_upscalers(ctx.services.upscalers)
    if name == "device":
        return ctx.models.device if ctx.models is not None else None
    if name == "data_path":
        return str(ctx.paths.data_dir)
    if name == "models_path":
        return str(ctx.paths.models_dir)
    raise AttributeError(f"modules.shared.{name} is not available in this web UI (see modules/shared.py "
                         "for what is supported)")
