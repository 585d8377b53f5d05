"""Start-up of the engine parts that hang off the application context (models, extensions...).

Kept apart from context.py so that creating a context for tests stays cheap.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from modules import devices, model_defaults
from modules.conditioning import make_conditioner
from modules.context import AppContext
from modules.depth_service import depth_models
from modules.embeddings import EmbeddingDatabase
from modules.face_restoration.service import FaceRestorers
from modules.ldm.clip_text import shared_tokenizer
from modules.ldm.config import load_config
from modules.ldsr.service import LDSRUpscaler
from modules.lora import LoraDatabase, LoraExtraNetworks
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import LoadedCheckpoint, ModelManager
from modules.models.vae import VaeCatalog
from modules.plugins.manager import load_extensions as load_extension_system
from modules.prompt_parser import parse_prompt_attention
from modules.styles import StyleDatabase
from modules.upscaler_models import ModelUpscalers
from modules.x4_service import X4Upscaler

log = logging.getLogger("sdwebui")



class NoCheckpoint(ValueError):
    pass


def create_model_manager(ctx: AppContext, ckpt_dirs=None) -> ModelManager:
    """The manager over ckpt_dirs (default: the context's folders, the shipped demo's included)."""
    ckpt_dirs = ctx.paths.ckpt_dirs if ckpt_dirs is None else ckpt_dirs
    policy = devices.policy_from_args(ctx.args)
    log.info("%s", devices.describe(policy))
    catalog = CheckpointCatalog(ckpt_dirs, HashCache(ctx.paths.cache_file))
    vaes = VaeCatalog(ctx.paths.vae_dir, ckpt_dirs)
    manager = ModelManager(catalog, device=policy.device, dtype_unet=policy.dtype_unet,
                           dtype_vae=policy.dtype_vae, max_loaded=ctx.opts.sd_checkpoints_limit,
                           vae_catalog=vaes, vae_choice=ctx.opts.sd_vae, offload=policy.offload)
    manager.refresh()
    return manager


def default_checkpoint(ctx: AppContext):
    """--ckpt, else the sd_model_checkpoint setting, else the first real checkpoint, else the demo."""
    catalog = ctx.models.catalog
    for wanted in (ctx.args.ckpt, ctx.opts.sd_model_checkpoint):
        if wanted:
            info = catalog.get(str(wanted))
            if info is not None:
                return info
            log.warning("checkpoint %r not found; using another one", str(wanted))
    found = catalog.list()
    real = [c for c in found if not is_demo(c)]
    demos = sorted((c for c in found if is_demo(c)), key=lambda c: Path(c.filename).resolve() != DEMO_FILE)
    return (real or demos or [None])[0]  # the txt2img demo before its inpainting variant


DEMO_FILE = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "demo" / "demo.safetensors"
# the shipped demos: the v1 demo (+ its inpainting variant), the SD3 demo, depth2img and the x4 upscaler
DEMO_DIRS = tuple(DEMO_FILE.parents[1] / name for name in ("demo", "demo-sd3", "demo-depth", "demo-x4"))


def is_demo(info) -> bool:
    """A demo model that ships with the project (in one of DEMO_DIRS), not a user's file that happens
    to be named demo."""
    return info is not None and Path(info.filename).resolve().parent in DEMO_DIRS


def native_size(ctx: AppContext) -> int:
    """The image size the default checkpoint was trained at: the file's `modelspec.resolution` (SD3
    files, the SD3 demo), else its yaml's image_size x VAE factor (512 for SD 1.x, 768 for 2.x-v, 32 for
    the v1 demo). 512 when it cannot be told without loading."""
    current = ctx.models.current if ctx.models else None
    info = current.info if current is not None else (default_checkpoint(ctx) if ctx.models else None)
    if info is None:
        return 512
    declared = model_defaults.file_resolution(info.filename)
    if declared is not None:
        return declared[0]
    yaml = Path(info.filename).with_suffix(".yaml")
    try:
        params = load_config(yaml)["model"]["params"]
        ch_mult = params["first_stage_config"]["params"]["ddconfig"]["ch_mult"]
        return int(params["image_size"]) * 2 ** (len(ch_mult) - 1)
    except (ValueError, KeyError, TypeError):
        return 512


def generation_defaults(ctx: AppContext) -> model_defaults.ModelDefaults:
    """What the generation tabs start with for the loaded (or default) checkpoint: its family's
    size, steps, CFG, sampler, and the samplers / schedule types it can use."""
    current = ctx.models.current if ctx.models else None
    info = current.info if current is not None else (default_checkpoint(ctx) if ctx.models else None)
    return model_defaults.for_checkpoint(current.model if current is not None else None,
                                         info.filename if info is not None else None, native_size(ctx))


def current_model(ctx: AppContext) -> LoadedCheckpoint:
    """The loaded checkpoint, loading the default one on first use; a clear error when there is none."""
    manager: ModelManager = ctx.models
    loaded = manager.current
    if loaded is not None:
        return loaded
    info = default_checkpoint(ctx)
    if info is None:
        raise NoCheckpoint(
            "No checkpoint found: put a .safetensors or .ckpt file (SD v1/v2) into "
            f"{ctx.paths.ckpt_dirs[0]} and press the refresh button next to the checkpoint list")
    return manager.load(info)


def count_tokens(ctx: AppContext, text: str) -> tuple[int, int]:
    """The UI's "used/75" counter, with the loaded model's tokenizer and embeddings."""
    loaded = ctx.models.current if ctx.models else None
    if loaded is None or loaded.model is None:  # still loading, or on workers: count plain tokens
        words = " ".join(t for t, w in parse_prompt_attention(text) if w != -1)
        used = len(shared_tokenizer().encode(words))
        return used, max(1, -(-used // 75)) * 75
    encoder = ctx.services.conditioner(loaded.model, ctx.opts)
    return encoder.count_tokens(text)


def attach_services(ctx: AppContext) -> None:
    """The prompt-side services, the upscaler table, depth2img's model and the job callbacks (ProcessingEnv
    reads them)."""
    embeddings = EmbeddingDatabase([ctx.paths.embeddings_dir])
    loras = LoraDatabase([ctx.paths.lora_dir])
    services = ctx.services
    services.embeddings = embeddings
    services.conditioner = make_conditioner(embeddings)
    services.styles = StyleDatabase(ctx.paths.styles_file)
    services.lora = loras
    services.extra_networks = LoraExtraNetworks(loras)
    services.upscalers.register(X4Upscaler(ctx).entry())
    services.model_upscalers = ModelUpscalers(ctx)
    services.model_upscalers.refresh()
    services.face_restorers = FaceRestorers(ctx)
    services.upscalers.register(LDSRUpscaler(ctx).entry())
    services.depth = depth_models(ctx)


def attach_engine(ctx: AppContext, preload: bool = True, load_extensions: bool = True,
                  extension_ui_environment=None) -> None:
    """Create the model manager (scanning the checkpoint folders) and the prompt services, and load
    the default model in the background, so the page is served at once (A1111 makes the user wait).
    extension_ui_environment: the front end's context for extensions' UI code (plugins.manager)."""
    ctx.models = create_model_manager(ctx)
    attach_services(ctx)
    if load_extensions:
        load_extension_system(ctx, ui_environment=extension_ui_environment)  # before the preload: on_model_loaded sees it
    if preload:
        def _load():
            try:
                current_model(ctx)
            except Exception as e:  # shown again, clearly, when the user generates
                log.warning("no model loaded at start: %s", e)
        threading.Thread(target=_load, name="preload-model", daemon=True).start()
