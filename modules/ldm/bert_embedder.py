"""The text encoder of CompVis's txt2img-f8-large LDM (`ldm.modules.encoders.modules.BERTEmbedder`).

Not BERT's network: a pre-norm transformer encoder trained from scratch with the LDM (the
`x_transformer.TransformerWrapper` of latent-diffusion, after lucidrains' x-transformers), fed with
bert-base-uncased's WordPiece token ids (vocabulary 30522, 77 tokens, padded, no attention mask):

    tokens -> token_emb + pos_emb -> n_layer x [x + Attention(LayerNorm(x)), x + FF(LayerNorm(x))]
           -> norm -> context [B, 77, n_embed]

Attention: 8 heads of 64 channels (inner width 512 whatever n_embed is), q/k/v without bias;
feed-forward Linear(n, 4n), GELU, Linear(4n, n). Keys `transformer.attn_layers.layers.{2i,2i+1}.{0,1}.*`
(0: the LayerNorm, 1: the block; the residual, index 2, has no weights) and `transformer.to_logits.*`
(the token-prediction head: in the checkpoint, unused for conditioning).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

HEADS, DIM_HEAD = 8, 64  # x_transformer's defaults; the config does not set them


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = HEADS, dim_head: int = DIM_HEAD):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (self.to_q(x), self.to_k(x), self.to_v(x)))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(dim_head)) v, no mask
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU()), nn.Dropout(0.0),
                                 nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """`layers`: per depth an attention and a feed-forward entry, each [LayerNorm, block]."""

    def __init__(self, dim: int, depth: int):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), Attention(dim)]))
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), FeedForward(dim)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, block in self.layers:
            x = x + block(norm(x))  # pre-norm residual
        return x


class AbsolutePositionalEmbedding(nn.Module):
    def __init__(self, dim: int, max_seq_len: int):
        super().__init__()
        self.emb = nn.Embedding(max_seq_len, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(torch.arange(x.shape[1], device=x.device))[None]


class TransformerWrapper(nn.Module):
    def __init__(self, num_tokens: int, max_seq_len: int, dim: int, depth: int):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.token_emb = nn.Embedding(num_tokens, dim)
        self.pos_emb = AbsolutePositionalEmbedding(dim, max_seq_len)
        self.attn_layers = Encoder(dim, depth)
        self.norm = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, num_tokens)

    def forward(self, tokens: torch.Tensor, return_embeddings: bool = True) -> torch.Tensor:
        x = self.token_emb(tokens)
        x = x + self.pos_emb(x)
        x = self.norm(self.attn_layers(x))
        return x if return_embeddings else self.to_logits(x)


class BERTEmbedder(nn.Module):
    """text -> context [B, 77, n_embed]. The tokenizer is bert-base-uncased's WordPiece: its
    vocab.txt is not bundled (the model is not downloadable here either); give `vocab_file`, or pass
    token ids [B, 77] to `encode`."""

    def __init__(self, n_embed: int, n_layer: int, vocab_size: int = 30522, max_seq_len: int = 77,
                 vocab_file: Optional[Union[str, Path]] = None):
        super().__init__()
        self.vocab_file = vocab_file
        self.transformer = TransformerWrapper(vocab_size, max_seq_len, n_embed, n_layer)

    def tokenize(self, text: Sequence[str]) -> torch.Tensor:
        if self.vocab_file is None or not Path(self.vocab_file).is_file():
            raise ValueError("the txt2img-f8-large BERT text encoder needs bert-base-uncased's vocab.txt "
                             "(WordPiece, 30522 tokens), which is not bundled: give its path as vocab_file "
                             "in cond_stage_config.params")
        from transformers import BertTokenizerFast

        tokenizer = BertTokenizerFast(vocab_file=str(self.vocab_file), do_lower_case=True)
        return tokenizer(list(text), truncation=True, max_length=self.transformer.max_seq_len,
                         padding="max_length", return_tensors="pt")["input_ids"]

    def encode(self, text: Union[Sequence[str], torch.Tensor]) -> torch.Tensor:
        tokens = text if isinstance(text, torch.Tensor) else self.tokenize(text)
        return self.transformer(tokens.to(self.transformer.token_emb.weight.device), return_embeddings=True)

    def forward(self, text) -> torch.Tensor:
        return self.encode(text)


def build_bert_embedder(params: Optional[dict]) -> BERTEmbedder:
    p = params or {}
    return BERTEmbedder(int(p.get("n_embed", 1280)), int(p.get("n_layer", 32)), int(p.get("vocab_size", 30522)),
                        int(p.get("max_seq_len", 77)), p.get("vocab_file"))
