"""A new, untrained textual inversion embedding, as A1111's "Create embedding" (and its API route):
`num_vectors_per_token` vectors taken from the text encoder's own token vectors of `init_text`
(vector i is the init text's token i * tokens // n; zeros when the init text is empty).

Written as `<embeddings dir>/<name>.safetensors` with A1111's key `emb_params` (A1111 and this app
read it); the file is a starting point for training elsewhere.
"""
from __future__ import annotations

import re
from pathlib import Path

import safetensors.torch
import torch

_UNSAFE = re.compile(r"[^\w\-. ]")


def init_vectors(clip, init_text: str, num_vectors: int) -> torch.Tensor:
    """[num_vectors, C] from the token embedding table of the text encoder `clip`."""
    table = clip.token_embedding_layer().weight.detach().float().cpu()
    ids = clip.tokenizer.encode(init_text) if init_text else []
    vec = torch.zeros(num_vectors, table.shape[1])
    if ids:
        embedded = table[torch.tensor(ids)]
        for i in range(num_vectors):
            vec[i] = embedded[i * len(ids) // num_vectors]
    return vec


def create_embedding(model, embeddings_dir: str | Path, name: str, num_vectors_per_token: int = 1,
                     overwrite_old: bool = False, init_text: str = "*") -> Path:
    """Raises ValueError naming the problem (bad name, bad count, an existing file)."""
    name = str(name or "").strip()
    if not name or _UNSAFE.search(name) or name.startswith("."):
        raise ValueError(f"name {name!r}: use letters, digits, spaces, '-', '_' or '.' (it becomes the file name "
                         "and the word to write in prompts)")
    count = int(num_vectors_per_token)
    if not 1 <= count <= 75:
        raise ValueError(f"num_vectors_per_token must be between 1 and 75, got {count}")
    path = Path(embeddings_dir) / f"{name}.safetensors"
    if path.exists() and not overwrite_old:
        raise ValueError(f"{path.name} already exists in {path.parent}: set overwrite_old to replace it")
    vec = init_vectors(model.cond_stage_model, str(init_text or ""), count)
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({"emb_params": vec.contiguous()}, str(path))
    return path
