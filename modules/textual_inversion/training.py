"""Create and train a textual inversion embedding (A1111's options and file format).

create_embedding: `vectors` token vectors, initialised from the token embeddings of `init_text`
(cycled, as A1111), saved as `.pt` with `string_to_param` so every A1111-compatible loader reads it.

train_embedding: images of a folder, each with a caption (`<image>.txt` beside it, else the file name
without its extension and leading numbers), put into the lines of a prompt template (`[name]` = the
embedding, `[filewords]` = the caption); each step encodes a batch of prompts with the trainable
vectors in place of the embedding's tokens, adds noise to the images' latents at random timesteps and
minimises the diffusion loss over the vectors only (AdamW, A1111's learning-rate schedule
"0.005:100, 1e-3:1000, 1e-5", gradient accumulation).
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from modules.embeddings import Embedding, EmbeddingDatabase
from modules.training.diffusion_loss import diffusion_loss

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def save_embedding(emb: Embedding, path: Path, step: int, checkpoint_name: str = "", checkpoint_hash: str = "") -> None:
    """A1111's .pt layout, written atomically."""
    import os
    import tempfile

    data = {"string_to_token": {"*": 265}, "string_to_param": {"*": emb.vec.detach().float().cpu().clone()},
            "name": emb.name, "step": int(step), "sd_checkpoint": checkpoint_hash or None,
            "sd_checkpoint_name": checkpoint_name or None}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def create_embedding(clip, name: str, vectors: int, init_text: str, folder: Path, overwrite: bool = False) -> Path:
    """A new embedding file `<folder>/<name>.pt`; ValueError for a bad name or an existing file."""
    name = (name or "").strip()
    if not name or not re.fullmatch(r"[\w .\-+]+", name) or name.startswith("."):
        raise ValueError("the embedding needs a name of letters, digits, spaces, '.', '-', '+' or '_'")
    if not 1 <= int(vectors) <= 75:
        raise ValueError(f"vectors per token must be between 1 and 75, got {vectors}")
    path = Path(folder) / f"{name}.pt"
    if path.exists() and not overwrite:
        raise ValueError(f"embedding {name!r} already exists in {folder}: tick 'Overwrite Old Embedding' or "
                         "choose another name")
    with torch.no_grad():
        ids = clip.tokenizer.encode(init_text or "")
        vec = torch.zeros(int(vectors), clip.width)
        if ids:
            embedded = clip.embed_tokens(torch.tensor([ids]))[0].float().cpu()
            for i in range(int(vectors)):
                vec[i] = embedded[i * len(ids) // int(vectors)]
    save_embedding(Embedding(name, vec), path, step=0)
    return path


class LearnRateSchedule:
    """A1111's syntax: "rate" or "rate:until_step, rate:until_step, ..., rate" (the last without a step
    runs to the end)."""

    def __init__(self, text: str, max_steps: int):
        self.pairs: list[tuple[float, int]] = []
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            rate, _, until = part.partition(":")
            try:
                value, end = float(rate), int(until) if until.strip() else max_steps
            except ValueError:
                raise ValueError(f"learning rate {text!r}: write it as 0.005 or 0.005:100, 1e-3:1000, 1e-5") from None
            if not value > 0:
                raise ValueError(f"learning rates must be positive, got {value}")
            self.pairs.append((value, end))
        if not self.pairs:
            raise ValueError("a learning rate is needed, e.g. 0.005")

    def rate(self, step: int) -> float:
        for value, end in self.pairs:
            if step < end:
                return value
        return self.pairs[-1][0]


def caption_for(path: Path) -> str:
    txt = path.with_suffix(".txt")
    if txt.is_file():
        return txt.read_text(encoding="utf-8", errors="replace").strip()
    return re.sub(r"^[\d\-_ ()]+", "", path.stem).replace("_", " ").strip()


def read_template(path: Path) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"the prompt template {Path(path).name} has no lines")
    return lines


@dataclass
class TrainSettings:
    data_root: Path
    template: list[str]
    steps: int = 1000
    learn_rate: str = "0.005"
    batch_size: int = 1
    gradient_step: int = 1
    width: int = 512
    height: int = 512
    latent_sampling_method: str = "once"   # once / deterministic / random (A1111's)
    save_every: int = 500
    preview_every: int = 500
    preview_prompt: str = ""               # empty: the template's first line with the caption of image 0
    seed: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Sample:
    caption: str
    posterior: object
    latent: torch.Tensor


def load_dataset(model, settings: TrainSettings) -> list[Sample]:
    """Every image of the folder, resized to the training size, encoded once."""
    root = Path(settings.data_root)
    if not root.is_dir():
        raise ValueError(f"dataset directory {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    samples = []
    param = next(model.first_stage_model.parameters())
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB").resize((int(settings.width), int(settings.height)), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
            posterior = model.encode_first_stage(x.to(param.device, param.dtype))
            latent = model.get_first_stage_encoding(posterior.mode() if settings.latent_sampling_method
                                                    == "deterministic" else posterior.sample())
            samples.append(Sample(caption_for(path), posterior, latent))
    return samples


class _OneEmbedding(EmbeddingDatabase):
    """The embedding being trained, as the only one a PromptEncoder finds."""

    def __init__(self, embedding: Embedding):
        super().__init__([])
        self.embedding = embedding

    def load(self, width, tokenizer, force=False):
        if not self._ids_lookup:
            ids = tokenizer.encode(self.embedding.name)
            self.word_embeddings = {self.embedding.name: self.embedding}
            self._ids_lookup = {ids[0]: [(ids, self.embedding)]}
        return self


@dataclass
class Progress:
    step: int
    steps: int
    loss: float
    learn_rate: float
    seconds: float
    preview: Image.Image | None = None
    saved: Path | None = None


def train_embedding(model, embedding: Embedding, settings: TrainSettings, encoder_factory: Callable,
                    on_step: Callable[[Progress], None] | None = None, interrupted: Callable[[], bool] | None = None,
                    save: Callable[[Embedding, int], Path | None] | None = None,
                    preview: Callable[[str], Image.Image] | None = None) -> Embedding:
    """Train embedding.vec in place; returns the embedding (steps trained in .step).

    encoder_factory(embeddings) -> a PromptEncoder over the model; save(embedding, step) writes a copy
    (every save_every steps and at the end); preview(prompt) draws an image (every preview_every)."""
    samples = load_dataset(model, settings)
    if settings.steps < 1 or settings.batch_size < 1 or settings.gradient_step < 1:
        raise ValueError("steps, batch size and gradient accumulation steps must be at least 1")
    schedule = LearnRateSchedule(settings.learn_rate, settings.steps)
    rng = random.Random(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    vec = embedding.vec.detach().clone().float().requires_grad_(True)
    embedding.vec = vec
    encoder = encoder_factory(_OneEmbedding(embedding))
    optimizer = torch.optim.AdamW([vec], lr=schedule.rate(0), weight_decay=0.0)
    model.requires_grad_(False)
    start = time.time()
    step = embedding.step or 0
    first_line = settings.template[0]
    for step in range(embedding.step or 0, settings.steps):
        if interrupted is not None and interrupted():
            break
        for group in optimizer.param_groups:
            group["lr"] = schedule.rate(step)
        total = 0.0
        for _ in range(settings.gradient_step):
            batch = [rng.choice(samples) for _ in range(settings.batch_size)]
            prompts = [rng.choice(settings.template).replace("[name]", embedding.name).replace("[filewords]", s.caption)
                       for s in batch]
            z = torch.cat([s.latent if settings.latent_sampling_method != "random"
                           else model.get_first_stage_encoding(s.posterior.sample()) for s in batch])
            cond = encoder.get_learned_conditioning(prompts)
            loss = diffusion_loss(model, z, cond, generator=generator) / settings.gradient_step
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        embedding.step = step + 1
        report = Progress(step + 1, settings.steps, total, schedule.rate(step), time.time() - start)
        if save is not None and settings.save_every and (step + 1) % settings.save_every == 0:
            report.saved = save(embedding, step + 1)
        if preview is not None and settings.preview_every and (step + 1) % settings.preview_every == 0:
            prompt = settings.preview_prompt or first_line.replace("[name]", embedding.name).replace(
                "[filewords]", samples[0].caption)
            report.preview = preview(prompt)
        if on_step is not None:
            on_step(report)
    embedding.vec = vec.detach()
    return embedding
