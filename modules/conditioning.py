"""Prompts -> conditioning tensors, the A1111 way: 75-token chunks, emphasis, embeddings, clip skip.

A prompt of any length is cut into chunks of 75 tokens; each gets BOS/EOS (77 tokens), is encoded by
the text encoder on its own, and the results are concatenated -> (77k, C). `BREAK` ends a chunk;
when a chunk fills up and its last comma is within `comma_padding_backtrack` tokens of the end, the
words after that comma move to the next chunk. A textual-inversion embedding's vectors replace the
token embeddings of its name and never straddle two chunks.

Emphasis (option `emphasis`): "Original" multiplies each token's output by its weight and rescales
the whole chunk batch so its mean is unchanged; "No norm" only multiplies; "Ignore" parses the
brackets but applies nothing; "None" does not parse them (brackets are text).

A `PromptEncoder` lives for one job: it caches tokenized lines and encoded (sub-)prompts, and records
the embeddings it used for the infotext ("TI hashes").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from modules import prompt_parser
from modules.cond_schedule import MultiCond, ScheduledCond
from modules.jobs import JobInterrupted
from modules.lora.tags import parse_extra_networks
from modules.models import family as model_family

EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
ENCODE_BATCH = 8  # texts per text-encoder call: bounds activation memory for long schedules


@dataclass
class PromptChunk:
    """One 77-token window: ids, per-token weights, and where embeddings go (offset after BOS)."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, object]] = field(default_factory=list)  # (offset, Embedding)


class PromptEncoder:
    """Per-job prompt encoder over `model.cond_stage_model`.

    Settings come from `opts` (emphasis, CLIP_stop_at_last_layers, comma_padding_backtrack,
    use_old_scheduling) unless given as keyword arguments. `embeddings` is an
    EmbeddingDatabase (or None for no textual inversion).
    """

    def __init__(self, model, opts=None, *, embeddings=None, emphasis: str | None = None,
                 clip_skip: int | None = None, comma_padding_backtrack: int | None = None,
                 use_old_scheduling: bool | None = None):
        def setting(value, key, default):
            return value if value is not None else getattr(opts, key, default) if opts is not None else default

        self.model = model
        self.clip = self.chunk_encoder(model)
        self.emphasis = setting(emphasis, "emphasis", "Original")
        if self.emphasis not in EMPHASIS_MODES:
            raise ValueError(f"emphasis {self.emphasis!r} is not one of {', '.join(EMPHASIS_MODES)}")
        self.clip_skip = int(setting(clip_skip, "CLIP_stop_at_last_layers", 1))
        self.comma_padding_backtrack = int(setting(comma_padding_backtrack, "comma_padding_backtrack", 20))
        self.use_old_scheduling = bool(setting(use_old_scheduling, "use_old_scheduling", False))
        self.chunk_length = self.clip.max_length - 2  # 75
        self.tokenizer = self.clip.tokenizer
        self.comma_token = self.tokenizer.encoder[",</w>"]
        self.embeddings = embeddings.load(self.clip.width, self.tokenizer) if embeddings is not None else None
        self.used_embeddings: dict[str, object] = {}
        self.emphasis_used = False
        self._lines: dict[str, tuple[list[PromptChunk], int]] = {}
        self._schedules: dict[tuple, ScheduledCond] = {}
        self.interrupt = None  # the job (anything with .interrupted): checked between chunks

    @staticmethod
    def chunk_encoder(model):
        """The CLIP text encoder whose tokenizer and length the prompt is chunked for."""
        return model.cond_stage_model

    # ---- tokens -> chunks -------------------------------------------------------------------

    def tokenize_line(self, line: str) -> tuple[list[PromptChunk], int]:
        """One text -> (chunks of exactly 77 tokens, token count as the UI shows it)."""
        if line not in self._lines:
            self._lines[line] = self._tokenize_line(line)
        return self._lines[line]

    def _tokenize_line(self, line: str) -> tuple[list[PromptChunk], int]:
        parsed = prompt_parser.parse_prompt_attention(line) if self.emphasis != "None" else [[line, 1.0]]
        builder = _ChunkBuilder(self)
        for text, weight in parsed:
            if text == "BREAK" and weight == -1:
                builder.next_chunk()
                continue
            builder.add_tokens(self.tokenizer.encode(text), weight)
        return builder.finish()

    def empty_chunk(self) -> PromptChunk:
        return _ChunkBuilder(self).finish()[0][0]

    def count_tokens(self, text: str, steps: int = 20, is_positive: bool = True) -> tuple[int, int]:
        """(tokens used, tokens available) for the UI's "used/75" counter, as A1111 counts them:
        extra-network tags removed, the worst AND sub-prompt and schedule step, limit 75 per chunk."""

        text, _ = parse_extra_networks(text)
        subprompts = [t for t, _ in prompt_parser.split_and(text)] if is_positive else [text]
        schedules = prompt_parser.get_learned_conditioning_prompt_schedules(subprompts, steps)
        used = max(self.tokenize_line(t)[1] for schedule in schedules for _, t in schedule)
        return used, math.ceil(max(used, 1) / self.chunk_length) * self.chunk_length

    # ---- chunks -> tensors ------------------------------------------------------------------

    def get_learned_conditioning(self, texts: list[str]) -> torch.Tensor:
        """Texts -> [B, 77k, C]; shorter texts get empty chunks so all have the longest's length."""
        batch_chunks = [self.tokenize_line(t)[0] for t in texts]
        count = max(len(chunks) for chunks in batch_chunks)
        zs = []
        for i in range(count):
            if self.interrupt is not None and self.interrupt.interrupted:
                raise JobInterrupted(f"interrupted while encoding the prompt (chunk {i + 1} of {count})")
            column = [chunks[i] if i < len(chunks) else self.empty_chunk() for chunks in batch_chunks]
            zs.append(self._encode_chunks(column))
        return torch.cat(zs, dim=1)

    def _encode_chunks(self, chunks: list[PromptChunk]) -> torch.Tensor:
        """The i-th chunk of every text -> [B, 77, C], emphasis applied across the batch."""
        z = torch.cat([self._encode_batch(chunks[i:i + ENCODE_BATCH])
                       for i in range(0, len(chunks), ENCODE_BATCH)])
        multipliers = torch.tensor([c.multipliers for c in chunks], dtype=z.dtype, device=z.device)
        if self.emphasis in ("Original", "No norm") and bool((multipliers != 1).any()):
            self.emphasis_used = True
            original_mean = z.mean()
            z = z * multipliers.unsqueeze(-1)
            if self.emphasis == "Original":
                new_mean = z.mean()
                if new_mean != 0:
                    z = z * (original_mean / new_mean)
        return z

    def _encode_batch(self, chunks: list[PromptChunk]) -> torch.Tensor:
        ids = torch.tensor([c.tokens for c in chunks], dtype=torch.long)
        if self.clip.id_pad != self.clip.id_end:  # v2: everything after the first EOS is padding
            for row in ids:
                first_end = int((row == self.clip.id_end).nonzero()[0])
                row[first_end + 1:] = self.clip.id_pad
        embeds = self.clip.embed_tokens(ids)
        for b, chunk in enumerate(chunks):
            for offset, emb in chunk.fixes:
                self.used_embeddings[emb.name] = emb
                n = min(self.chunk_length - offset, emb.vectors)
                embeds[b, offset + 1:offset + 1 + n] = emb.vec[:n].to(embeds)
        return self.clip.encode_embeddings(embeds, clip_skip=self.clip_skip)

    # ---- schedules and AND ------------------------------------------------------------------

    def _schedule_cond(self, prompt: str, steps: int, hires_steps: int | None) -> ScheduledCond:
        key = (prompt, steps, hires_steps)
        if key not in self._schedules:
            schedule = prompt_parser.get_learned_conditioning_prompt_schedules(
                [prompt], steps, hires_steps, self.use_old_scheduling)[0]
            conds = self.get_learned_conditioning([text for _, text in schedule])
            self._schedules[key] = ScheduledCond([(end, conds[i]) for i, (end, _) in enumerate(schedule)])
        return self._schedules[key]

    def scheduled(self, prompts: list[str], steps: int, hires_steps: int | None = None) -> list[ScheduledCond]:
        """One ScheduledCond per prompt (negative prompts: no AND)."""
        return [self._schedule_cond(p, steps, hires_steps) for p in prompts]

    def multicond(self, prompts: list[str], steps: int, hires_steps: int | None = None) -> MultiCond:
        """Positive prompts: per image, its AND sub-prompts' schedules with their weights."""
        return MultiCond([[(self._schedule_cond(text, steps, hires_steps), weight)
                           for text, weight in prompt_parser.split_and(p)] for p in prompts])

    # ---- infotext -----------------------------------------------------------------------------

    def extra_generation_params(self) -> dict[str, str]:
        """What this job's prompts add to the infotext: "TI hashes", and "Emphasis" when not Original."""
        params = {}
        hashes = [f"{name.replace(':', '').replace(',', '')}: {emb.shorthash}"
                  for name, emb in self.used_embeddings.items() if emb.shorthash]
        if hashes:
            params["TI hashes"] = ", ".join(hashes)
        if self.emphasis != "Original" and self.emphasis_used:
            params["Emphasis"] = self.emphasis
        return params


class _ChunkBuilder:
    """Fills 75-token chunks left to right (A1111's tokenize_line state machine)."""

    def __init__(self, encoder: PromptEncoder):
        self.enc = encoder
        self.chunks: list[PromptChunk] = []
        self.chunk = PromptChunk()
        self.token_count = 0
        self.last_comma = -1

    def next_chunk(self, is_last: bool = False) -> None:
        enc, chunk = self.enc, self.chunk
        self.token_count += len(chunk.tokens) if is_last else enc.chunk_length
        pad = enc.chunk_length - len(chunk.tokens)
        chunk.tokens = [enc.clip.id_start] + chunk.tokens + [enc.clip.id_end] * (pad + 1)
        chunk.multipliers = [1.0] + chunk.multipliers + [1.0] * (pad + 1)
        self.chunks.append(chunk)
        self.chunk = PromptChunk()
        self.last_comma = -1

    def _full(self) -> bool:
        return len(self.chunk.tokens) == self.enc.chunk_length

    def _move_after_last_comma(self) -> None:
        """Pad to comma: the tokens after the last comma start the next chunk."""
        chunk, cut = self.chunk, self.last_comma + 1
        moved = chunk.tokens[cut:], chunk.multipliers[cut:]
        chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
        self.next_chunk()
        self.chunk.tokens, self.chunk.multipliers = list(moved[0]), list(moved[1])

    def add_tokens(self, tokens: list[int], weight: float) -> None:
        enc, db = self.enc, self.enc.embeddings
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == enc.comma_token:
                self.last_comma = len(self.chunk.tokens)
            elif (enc.comma_padding_backtrack and self._full() and self.last_comma != -1
                  and len(self.chunk.tokens) - self.last_comma <= enc.comma_padding_backtrack):
                self._move_after_last_comma()
            if self._full():
                self.next_chunk()
            emb, span = db.find_embedding_at_position(tokens, position) if db is not None else (None, 0)
            if emb is None:
                self.chunk.tokens.append(token)
                self.chunk.multipliers.append(weight)
                position += 1
                continue
            n = min(emb.vectors, enc.chunk_length)
            if len(self.chunk.tokens) + n > enc.chunk_length:
                self.next_chunk()
            self.chunk.fixes.append((len(self.chunk.tokens), emb))
            self.chunk.tokens += [0] * n
            self.chunk.multipliers += [weight] * n
            position += span

    def finish(self) -> tuple[list[PromptChunk], int]:
        if self.chunk.tokens or not self.chunks:
            self.next_chunk(is_last=True)
        return self.chunks, self.token_count


def make_conditioner(embeddings=None):
    """The `conditioner` service for processing: `(model, opts) -> PromptEncoder` for one job, the
    encoder for the model family's conditioning (v1/v2: a tensor; SD3: context + pooled vector)."""
    from modules.conditioning_sd3 import SD3PromptEncoder  # it builds on this module

    encoders = {"crossattn": PromptEncoder, "crossattn+vector": SD3PromptEncoder}

    def conditioner(model, opts=None) -> PromptEncoder:
        return encoders[model_family.of_model(model).conditioning](model, opts, embeddings=embeddings)
    return conditioner


def get_learned_conditioning(model, prompts: list[str], opts=None, embeddings=None) -> torch.Tensor:
    """Convenience: prompts (no schedules, no AND) -> [B, 77k, C] with emphasis and chunking."""
    with torch.no_grad():
        return PromptEncoder(model, opts, embeddings=embeddings).get_learned_conditioning(list(prompts))
