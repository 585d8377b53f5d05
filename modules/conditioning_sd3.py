"""Prompts -> SD3 conditioning: {"crossattn": context (T, 4096), "vector": pooled (2048,)} per prompt.

The same prompt syntax as v1/v2 (modules/conditioning.py: emphasis, BREAK, 75-token chunks with
comma backtracking, prompt editing and AND through the schedules), encoded the SD3 way
(modules/ldm/sd3_text.py):
- CLIP-L and CLIP-G read the prompt in 77-token chunks (both use the CLIP BPE tokenizer; CLIP-L pads
  with EOS, CLIP-G with 0 after the first EOS); each chunk's penultimate states [77, 768 + 1280] get
  A1111's emphasis (token weights, "Original" restores the chunk's mean), are zero-padded to 4096
  channels, and the chunks are concatenated: [77k, 4096];
- the pooled vector is CLIP-L's and CLIP-G's pooled output of the first chunk (as A1111 does for SDXL);
- T5 reads the whole prompt at once, without the weights (emphasis is a CLIP convention), padded to at
  least 77 tokens and cut at T5_LIMIT (512, T5's training length; a warning says so); without T5 its
  part is 77 zero tokens. Its tokens follow the CLIP chunks: context = [77k CLIP | T T5].
Each text is encoded on its own (T5 has no attention mask, so padding a text to its batch-mates'
length would change it): an image's conditioning never depends on the other prompts of its batch.
Textual inversion embeddings are not applied (an SD3 embedding needs vectors for both CLIPs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modules import prompt_parser
from modules.cond_schedule import ScheduledCond, pad_to_same_length, stack
from modules.conditioning import PromptChunk, PromptEncoder
from modules.jobs import JobInterrupted
from modules.ldm.clip_text import ID_END
from modules.ldm.t5_tokenizer import MAX_LENGTH as T5_LIMIT


class SD3PromptEncoder(PromptEncoder):
    """Per-job prompt encoder for SD3 / SD3.5 models (model.cond_stage_model is SD3TextEncoders)."""

    def __init__(self, model, opts=None, *, embeddings=None, **kwargs):
        super().__init__(model, opts, embeddings=None, **kwargs)
        self.encoders = model.cond_stage_model
        missing = self.encoders.missing()
        if missing:
            raise ValueError(f"this SD3 model has no {' and '.join(missing)} text encoder: put "
                             f"{' and '.join(m + '.safetensors' for m in missing)} into models/text_encoder")
        self.messages: list[str] = []
        self._texts: dict[str, dict] = {}

    @staticmethod
    def chunk_encoder(model):
        return model.cond_stage_model.clip_l

    # ---- one text -> {"crossattn", "vector"} ------------------------------------------------------
    def encode_text(self, text: str) -> dict:
        if text not in self._texts:
            chunks, _ = self.tokenize_line(text)
            context, pooled = self._encode_clip(chunks)
            t5 = self._encode_t5(text, context)
            self._texts[text] = {"crossattn": torch.cat([context, t5]), "vector": pooled}
        return self._texts[text]

    def _encode_clip(self, chunks: list[PromptChunk]) -> tuple[torch.Tensor, torch.Tensor]:
        parts, pooled = [], None
        for i, chunk in enumerate(chunks):
            if self.interrupt is not None and self.interrupt.interrupted:
                raise JobInterrupted(f"interrupted while encoding the prompt (chunk {i + 1} of {len(chunks)})")
            ids = torch.tensor([chunk.tokens], dtype=torch.long)
            g_ids = ids.clone()
            first_end = int((g_ids[0] == ID_END).nonzero()[0])
            g_ids[0, first_end + 1:] = self.encoders.clip_g.id_pad
            l_hidden, l_pooled = self.encoders.clip_l.hidden_and_pooled(ids)
            g_hidden, g_pooled = self.encoders.clip_g.hidden_and_pooled(g_ids)
            z = self._emphasis(torch.cat([l_hidden, g_hidden.to(l_hidden)], dim=-1), chunk.multipliers)
            parts.append(F.pad(z[0], (0, self.encoders.context_width - z.shape[-1])))
            if pooled is None:
                pooled = torch.cat([l_pooled, g_pooled.to(l_pooled)], dim=-1)[0]
        return torch.cat(parts), pooled

    def _emphasis(self, z: torch.Tensor, multipliers: list[float]) -> torch.Tensor:
        weights = torch.tensor(multipliers, dtype=z.dtype, device=z.device)
        if self.emphasis not in ("Original", "No norm") or not bool((weights != 1).any()):
            return z
        self.emphasis_used = True
        original_mean = z.mean()
        z = z * weights[None, :, None]
        if self.emphasis == "Original":
            new_mean = z.mean()
            if new_mean != 0:
                z = z * (original_mean / new_mean)
        return z

    def _encode_t5(self, text: str, like: torch.Tensor) -> torch.Tensor:
        """The T5 part [T, 4096] of a prompt: its words without the attention syntax."""
        plain = text
        if self.emphasis != "None":
            plain = "".join(t for t, w in prompt_parser.parse_prompt_attention(text) if not (t == "BREAK" and w == -1))
        tokenizer = getattr(getattr(self.encoders, "t5xxl", None), "tokenizer", None)
        if tokenizer is not None and len(tokenizer.encode(plain)) + 1 > T5_LIMIT:
            message = (f"the prompt has more than {T5_LIMIT} T5 tokens: T5 reads only the first {T5_LIMIT} "
                       "(the CLIP encoders read all of it)")
            if message not in self.messages:
                self.messages.append(message)
        return self.encoders.t5_context([plain], like.device, like.dtype)[0]

    # ---- the PromptEncoder interface ------------------------------------------------------------
    def get_learned_conditioning(self, texts: list[str]) -> dict:
        """Texts -> {"crossattn": [B, L, 4096], "vector": [B, 2048]} (shorter contexts padded by
        repeating their last token, as the CFG batch does)."""
        return stack(pad_to_same_length([self.encode_text(t) for t in texts]))

    def _schedule_cond(self, prompt: str, steps: int, hires_steps: int | None) -> ScheduledCond:
        key = (prompt, steps, hires_steps)
        if key not in self._schedules:
            schedule = prompt_parser.get_learned_conditioning_prompt_schedules(
                [prompt], steps, hires_steps, self.use_old_scheduling)[0]
            self._schedules[key] = ScheduledCond([(end, self.encode_text(text)) for end, text in schedule])
        return self._schedules[key]
