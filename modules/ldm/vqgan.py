"""The VQ-GAN first stage (Esser et al. 2021, "Taming Transformers"; `ldm.models.autoencoder.VQModel`).

Same encoder and decoder as the KL autoencoder (autoencoder.py; `double_z: false`, so the encoder
gives z_channels), with a vector quantizer between them instead of a Gaussian posterior:

    encoder -> quant_conv (z -> embed_dim) -> quantize (nearest of n_embed codebook vectors)
            -> post_quant_conv (embed_dim -> z) -> decoder

`VQModel.encode` quantizes; `VQModelInterface` (what latent diffusion models hold, e.g. the LDSR
upscaler's first stage) returns the unquantized quant_conv output from `encode` and quantizes inside
`decode(h, force_not_quantize=False)`, so the diffusion model works in a continuous space and its
samples are snapped to the codebook when decoded. Keys: encoder.*, decoder.*, quant_conv.*,
post_quant_conv.*, quantize.embedding.weight; the zoo files' training-loss keys (`loss.*`) are not
part of the model (`drop_training_keys`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from .autoencoder import AutoencoderConfig, Decoder, Encoder, _cpu_layout

# rows of the distance matrix per chunk: the LDSR decode tile (128x128 latents) against 8192 codes
# would be a 0.5 GB matrix at once; chunks give the same argmin with a bounded buffer
DISTANCE_CHUNK = 4096


@dataclass
class VQConfig(AutoencoderConfig):
    n_embed: int = 8192  # codebook size
    beta: float = 0.25  # commitment weight (training only)
    legacy: bool = True  # taming's VectorQuantizer2 default: beta on the codebook term (training only)

    @classmethod
    def from_params(cls, params: dict) -> "VQConfig":
        """Build from a yaml `first_stage_config.params` (embed_dim, n_embed, ddconfig, ...)."""
        if params.get("remap") is not None:
            raise ValueError("VQ first stage with `remap` (a used-codes index file) is not supported; "
                             "no released latent-diffusion model uses it")
        base = AutoencoderConfig.from_params(params)
        if base.double_z:
            raise ValueError("VQ first stage: ddconfig.double_z must be false (the encoder gives z, not moments)")
        return cls(**vars(base), n_embed=int(params.get("n_embed", 8192)))


class VectorQuantizer(nn.Module):
    """taming's VectorQuantizer2: each latent vector -> its nearest codebook vector (L2)."""

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25, legacy: bool = True):
        super().__init__()
        self.n_e, self.e_dim, self.beta, self.legacy = n_e, e_dim, beta, legacy
        self.embedding = nn.Embedding(n_e, e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_e, 1.0 / n_e)  # the original init (training)

    @torch.no_grad()  # argmin has no gradient; no graph through the distances
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, e_dim, h, w] -> codebook indices [B*h*w] (b, h, w order), argmin of
        |z|^2 + |e|^2 - 2 z.e as the original (ties: the lowest index)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.e_dim)
        weight = self.embedding.weight.to(flat.dtype)
        e_sq = (weight ** 2).sum(1)
        out = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
        for start in range(0, flat.shape[0], DISTANCE_CHUNK):
            rows = flat[start:start + DISTANCE_CHUNK]
            d = (rows ** 2).sum(1, keepdim=True) + e_sq - 2 * rows @ weight.t()
            out[start:start + DISTANCE_CHUNK] = d.argmin(1)
        return out

    def lookup(self, indices: torch.Tensor, shape: tuple) -> torch.Tensor:
        """indices [B*h*w] -> z_q [B, e_dim, h, w] for shape (B, h, w)."""
        b, h, w = shape
        return self.embedding(indices).view(b, h, w, self.e_dim).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple:
        """z -> (z_q with straight-through gradient, codebook + commitment loss,
        (perplexity, None, indices)) like the original's return value (min_encodings not built)."""
        idx = self.indices(z)
        z_q = self.lookup(idx, (z.shape[0], z.shape[2], z.shape[3])).to(z.dtype)
        codebook = torch.mean((z_q - z.detach()) ** 2)  # moves the codes towards the encoder outputs
        commitment = torch.mean((z_q.detach() - z) ** 2)  # keeps the encoder near its codes
        if self.legacy:  # taming's legacy=True: beta lands on the codebook term (their comment: "wrong")
            loss = commitment + self.beta * codebook
        else:
            loss = self.beta * commitment + codebook
        z_q = z + (z_q - z).detach()  # straight-through estimator (van den Oord et al. 2017)
        counts = torch.bincount(idx, minlength=self.n_e).to(z.dtype)
        p = counts / idx.numel()
        perplexity = torch.exp(-torch.sum(p * torch.log(p + 1e-10)))
        return z_q, loss, (perplexity, None, idx)


class VQModel(nn.Module):
    """The zoo's VQ-f4/f8/f16 autoencoders. encode() quantizes (as the original VQModel)."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = cfg = config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, cfg.beta, cfg.legacy)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def downsampling_factor(self) -> int:
        return self.config.downsampling_factor

    def encode_to_prequant(self, x: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1] -> continuous latent h [B, embed_dim, H/f, W/f]."""
        return self.quant_conv(self.encoder(_cpu_layout(x))).contiguous()

    def encode(self, x: torch.Tensor) -> tuple:
        """-> (quantized latent, quantizer loss, (perplexity, None, indices))."""
        return self.quantize(self.encode_to_prequant(x))

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        """(quantized) latent [B, embed_dim, h, w] -> image [B, 3, h*f, w*f], about [-1, 1]."""
        return self.decoder(self.post_quant_conv(_cpu_layout(quant))).contiguous()

    def decode_code(self, indices: torch.Tensor, shape: tuple) -> torch.Tensor:
        """codebook indices [B*h*w] with shape (B, h, w) -> image."""
        return self.decode(self.quantize.lookup(indices, shape))

    def forward(self, x: torch.Tensor) -> tuple:
        """-> (reconstruction, quantizer loss, indices): what VQ-GAN training needs."""
        quant, loss, (_, _, idx) = self.quantize(self.encode_to_prequant(x))
        return VQModel.decode(self, quant), loss, idx


class VQModelInterface(VQModel):
    """The first stage inside an LDM: encode without quantizing, quantize at decode."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.encode_to_prequant(x)

    def decode(self, h: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:  # type: ignore[override]
        quant = h if force_not_quantize else self.quantize(h)[0]
        return super().decode(quant)


def drop_training_keys(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A zoo first-stage file minus its training loss (`loss.*`: LPIPS, discriminator, logvar)."""
    return {k: v for k, v in state_dict.items() if not k.startswith("loss.")}
