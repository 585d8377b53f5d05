"""Textual inversion for the app: embeddings in ctx.paths.embeddings_dir, templates in
textual_inversion_templates/, training as one job of the queue (holding the model lock), copies and
previews in <data dir>/textual_inversion/<date>/<name>/ (A1111's log directory layout).

The UI and the API call `create` and `train`; `train_updates` yields progress for the UI."""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from modules import startup
from modules.paths import ROOT
from modules.textual_inversion import training

TEMPLATES_DIR = ROOT / "textual_inversion_templates"


def embedding_names(ctx) -> list[str]:
    folder = ctx.paths.embeddings_dir
    return sorted(p.stem for p in folder.rglob("*") if p.suffix.lower() in (".pt", ".bin", ".safetensors")) \
        if folder.is_dir() else []


def template_names() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.txt"))


def _template(name: str) -> list[str]:
    path = Path(name)
    if not path.is_absolute():
        path = TEMPLATES_DIR / name
    if not path.is_file() or path.resolve().parent != TEMPLATES_DIR.resolve():
        raise ValueError(f"prompt template {name!r} not found: use one of {', '.join(template_names())}")
    return training.read_template(path)


def create(ctx, name: str, vectors: int = 1, init_text: str = "*", overwrite: bool = False) -> Path:
    def work(job):
        with ctx.models.lock:
            clip = startup.current_model(ctx).model.cond_stage_model
            return training.create_embedding(clip, name, vectors, init_text, ctx.paths.embeddings_dir, overwrite)
    return ctx.jobs.run(ctx.jobs.new_job("create embedding"), work)


def _settings(ctx, fields: dict) -> training.TrainSettings:
    def number(key, default, low=0):
        value = fields.get(key, default)
        try:
            value = int(value if value is not None else default)
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a whole number, got {value!r}") from None
        if value < low:
            raise ValueError(f"{key} must be at least {low}, got {value}")
        return value
    method = fields.get("latent_sampling_method") or "once"
    if method not in ("once", "deterministic", "random"):
        raise ValueError(f"latent_sampling_method must be once, deterministic or random, got {method!r}")
    if not fields.get("data_root"):
        raise ValueError("a dataset directory (data_root) is needed")
    return training.TrainSettings(
        data_root=Path(fields["data_root"]), template=_template(fields.get("template_filename") or "subject.txt"),
        steps=number("steps", 1000, 1), learn_rate=str(fields.get("learn_rate") or "0.005"),
        batch_size=number("batch_size", 1, 1), gradient_step=number("gradient_step", 1, 1),
        width=number("training_width", 512, 8), height=number("training_height", 512, 8),
        latent_sampling_method=method, save_every=number("save_embedding_every", 500),
        preview_every=number("create_image_every", 500), preview_prompt=fields.get("preview_prompt") or "",
        seed=number("seed", 0))


def train(ctx, fields: dict, on_progress=None) -> Path:
    """Train the embedding named `embedding_name` (A1111's /train/embedding fields); returns its file."""
    name = fields.get("embedding_name")
    if not name:
        raise ValueError("choose the embedding to train (create one first)")
    path = next((p for p in ctx.paths.embeddings_dir.rglob(f"{name}.*") if p.suffix in (".pt", ".safetensors")), None)
    if path is None:
        raise ValueError(f"embedding {name!r} not found in {ctx.paths.embeddings_dir}: create it first")
    settings = _settings(ctx, fields)
    log_dir = ctx.paths.data_dir / "textual_inversion" / time.strftime("%Y-%m-%d") / name

    def work(job):
        from modules.embeddings import load_embedding
        from modules.generation import GenerationRequest, execute, prepare

        with ctx.models.lock:
            loaded = startup.current_model(ctx)
            embedding = load_embedding(path)
            job.job_count, job.sampling_steps = 1, settings.steps
            job.sampling_step = embedding.step or 0

            def save(emb, step):
                copy = log_dir / "embeddings" / f"{name}-{step}.pt"
                training.save_embedding(emb, copy, step, loaded.info.model_name, loaded.info.shorthash)
                training.save_embedding(emb, path.with_suffix(".pt"), step, loaded.info.model_name,
                                        loaded.info.shorthash)
                return copy

            def preview(prompt):
                result = execute(ctx, prepare(ctx, GenerationRequest("txt2img", {
                    "prompt": prompt, "steps": 20, "width": settings.width, "height": settings.height, "seed": 1,
                    "do_not_save_samples": True})))
                image = result.images[0]
                (log_dir / "images").mkdir(parents=True, exist_ok=True)
                image.save(log_dir / "images" / f"{name}-{embedding.step}.png")
                return image

            def on_step(report):
                job.sampling_step = report.step
                job.textinfo = (f"Training {name}: step {report.step}/{report.steps}, loss {report.loss:.4f}, "
                                f"lr {report.learn_rate:g}")
                if report.preview is not None:
                    job.current_image = report.preview
                if on_progress is not None:
                    on_progress(report)

            emb = training.train_embedding(
                loaded.model, embedding, settings, lambda db: _encoder(ctx, loaded.model, db), on_step=on_step, interrupted=lambda: job.interrupted,
                save=save, preview=preview)
            training.save_embedding(emb, path.with_suffix(".pt"), emb.step or 0, loaded.info.model_name,
                                    loaded.info.shorthash)
            if path.suffix != ".pt":
                path.unlink()  # the trained vectors replace the file they started from
            return path.with_suffix(".pt")
    return ctx.jobs.run(ctx.jobs.new_job("train embedding"), work)


def _encoder(ctx, model, embeddings):
    from modules.conditioning import PromptEncoder
    return PromptEncoder(model, ctx.opts, embeddings=embeddings)


def train_updates(ctx, fields: dict):
    """train() in a thread; yields ("progress", {text, image}) while it runs, then ("done", {...})."""
    updates: queue.Queue = queue.Queue()
    outcome: dict = {}

    def report(progress):
        eta = progress.seconds / max(progress.step, 1) * (progress.steps - progress.step)
        updates.put({"text": f"step {progress.step}/{progress.steps}, loss {progress.loss:.4f}, "
                             f"ETA {eta:.0f} s", "image": progress.preview})

    def run():
        try:
            outcome["path"] = train(ctx, fields, on_progress=report)
        except Exception as e:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = e
    thread = threading.Thread(target=run, name="train-embedding", daemon=True)
    thread.start()
    while thread.is_alive() or not updates.empty():
        try:
            yield "progress", updates.get(timeout=0.5)
        except queue.Empty:
            continue
    if "error" in outcome:
        raise outcome["error"]
    yield "done", {"text": f"Training finished: {outcome['path']}"}
