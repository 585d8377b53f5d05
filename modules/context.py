"""The application context: everything that was a global in A1111's `shared.py`, in one explicit
object that is created once at start-up and passed to whatever needs it.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from modules import cmd_args
from modules.jobs import JobQueue
from modules.options import Options
from modules.paths import Paths
from modules.upscalers import UpscalerTable

if TYPE_CHECKING:  # only for the annotations: the context must stay cheap to import
    from modules.embeddings import EmbeddingDatabase
    from modules.lora import LoraDatabase
    from modules.plugins.service import ScriptsService
    from modules.processing.objects import ProcessingCallbacks
    from modules.styles import StyleDatabase

log = logging.getLogger("sdwebui")


@dataclass
class Services:
    """The engine parts jobs and front ends use besides models and settings; start-up fills them
    (modules.startup.attach_services, the extension loader), tests may swap any of them."""

    conditioner: Callable | None = None  # (model, opts) -> PromptEncoder (modules.conditioning)
    styles: StyleDatabase | None = None
    embeddings: EmbeddingDatabase | None = None
    lora: LoraDatabase | None = None
    extra_networks: Callable | None = None  # (model, prompts) -> (prompts, context manager)
    upscalers: UpscalerTable = field(default_factory=UpscalerTable)  # image upscalers (Extras, hires fix)
    model_upscalers: Any = None  # modules.upscaler_models.ModelUpscalers: the files behind the model entries
    face_restorers: Any = None   # modules.face_restoration.service.FaceRestorers (GFPGAN, CodeFormer)
    depth: Any = None  # modules.side_models.SideModel: depth2img's model (the loaded one, else the catalog's)
    scripts: ScriptsService | None = None  # the extensions' script runners, tabs, css/js
    callbacks: ProcessingCallbacks | None = None  # script_callbacks a job calls


@dataclass
class AppContext:
    args: argparse.Namespace
    paths: Paths
    opts: Options
    jobs: JobQueue = field(default_factory=JobQueue)
    # Filled in by the engine parts at start-up (kept generic here so this module stays small):
    models: Any = None          # modules.models.manager.ModelManager
    extensions: Any = None      # modules.plugins.manager.ExtensionManager
    workers: Any = None         # modules.distributed.pool.WorkerPool when jobs run on Ray workers
    services: Services = field(default_factory=Services)

    @property
    def localhost_only(self) -> bool:
        return cmd_args.is_localhost_only(self.args)


def create_context(args: argparse.Namespace) -> AppContext:
    """Paths, options (warnings logged) and the job queue; raises PermissionError for an unwritable
    data dir. The model manager and extensions are attached by the server's start-up."""
    paths = Paths.from_args(args)
    paths.check_writable()
    opts = Options(paths.config_file).load()
    for warning in opts.warnings:
        log.warning(warning)
    return AppContext(args=args, paths=paths, opts=opts)
