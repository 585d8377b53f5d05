"""A1111's `modules.sd_hijack` path, for extensions: `model_hijack` with the embeddings database
(`model_hijack.embedding_db`: word_embeddings, skipped_embeddings) and prompt token counts
(`model_hijack.get_prompt_lengths(text)` -> (tokens, limit); `model_hijack.clip` with
tokenize_line(text) -> ([], tokens) and get_target_prompt_token_count(n)). A1111's model hijacking
itself does not exist here. Nothing in the project imports this module."""
from __future__ import annotations

import math

from modules.script_callbacks import current_scope


class _Embeddings:
    def __init__(self, db):
        self._db = db

    @property
    def word_embeddings(self) -> dict:
        return dict(self._db.word_embeddings) if self._db is not None else {}

    @property
    def skipped_embeddings(self) -> dict:
        return dict(self._db.skipped) if self._db is not None else {}

    def __getattr__(self, name: str):
        return getattr(self._db, name)


class _Clip:
    def tokenize_line(self, line: str):
        """A1111 returns (chunks, token count); here the chunks are not A1111's objects: []."""
        return [], ModelHijack().get_prompt_lengths(line)[0]

    def get_target_prompt_token_count(self, token_count: int) -> int:
        return max(1, math.ceil(token_count / 75)) * 75


class ModelHijack:
    @property
    def embedding_db(self) -> _Embeddings:
        return _Embeddings(current_scope().ctx.services.embeddings)

    @property
    def clip(self) -> _Clip:
        return _Clip()

    def get_prompt_lengths(self, text: str) -> tuple[int, int]:
        from modules import startup
        return startup.count_tokens(current_scope().ctx, text or "")


model_hijack = ModelHijack()
