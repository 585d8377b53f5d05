"""The T5 tokenizer: SentencePiece pieces + `</s>`, padded with `<pad>`; read from the files
google/t5-v1_1-xxl publishes (Apache-2.0): `spiece.model` (read with the `sentencepiece` library) or
a converted `tokenizer.json` (read with `tokenizers`), whichever the user has.

Where the file comes from (models/text_encoder, a one-time download) is modules/sd3_checkpoint.py's job.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

MIN_LENGTH = 77  # SAI's and ComfyUI's SD3 code pad T5 to at least 77 tokens (no attention mask)
MAX_LENGTH = 512  # T5's training length; longer prompts are cut here (long-prompt chunking: generation's job)


class T5Tokenizer:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix == ".json":
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(self.path))
            self.eos_id = self._tok.token_to_id("</s>")
            self.pad_id = self._tok.token_to_id("<pad>")
            self._encode = lambda text: self._tok.encode(text, add_special_tokens=False).ids
        else:
            import sentencepiece

            self._tok = sentencepiece.SentencePieceProcessor(model_file=str(self.path))
            self.eos_id, self.pad_id = self._tok.eos_id(), self._tok.pad_id()
            self._encode = self._tok.encode
        if self.eos_id is None or self.eos_id < 0 or self.pad_id is None or self.pad_id < 0:
            raise ValueError(f"{self.path.name} is not a T5 tokenizer: it has no </s> or <pad> token")

    def encode(self, text: str) -> list[int]:
        """Piece ids of one text, without `</s>`."""
        return list(self._encode(text))

    def tokenize(self, texts: Sequence[str], min_length: int = MIN_LENGTH, max_length: int = MAX_LENGTH) -> torch.Tensor:
        """texts -> ids [B, L]: pieces, `</s>`, `<pad>` up to L = max(min_length, the longest), at most max_length."""
        rows = [self.encode(text)[: max_length - 1] + [self.eos_id] for text in texts]
        length = max([min_length, *map(len, rows)])
        return torch.tensor([row + [self.pad_id] * (length - len(row)) for row in rows], dtype=torch.long)
