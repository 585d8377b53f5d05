"""Which weight a LoRA key patches: a table from kohya's names to our LDM parameters.

kohya's files name layers the diffusers / transformers way with dots turned into underscores, e.g.
`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q` or
`lora_te_text_model_encoder_layers_0_self_attn_q_proj`. Our modules carry the original (LDM)
checkpoint names, so the table is built by walking the loaded model: its UNet block layout (levels,
res blocks per level, which blocks have attention) gives the diffusers block names, whatever the
config. LDM-style names (`lora_unet_input_blocks_1_1_proj_in`, `lora_te_<path>`) are accepted too.
For v2's OpenCLIP text encoder, q/k/v are thirds of `attn.in_proj_weight`.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

PATCHABLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class Target:
    path: str                  # module path from the LatentDiffusion root
    param: str = "weight"      # parameter name on that module
    part: int | None = None    # v2 q/k/v: which third of in_proj_weight (0, 1, 2)
    kind: str = "unet"         # "unet" or "te": which multiplier applies


_RESBLOCK_PARTS = {"in_layers.2": "conv1", "out_layers.3": "conv2", "emb_layers.1": "time_emb_proj",
                   "skip_connection": "conv_shortcut"}
_TOP_PARTS = {"time_embed.0": "time_embedding_linear_1", "time_embed.2": "time_embedding_linear_2",
              "input_blocks.0.0": "conv_in", "out.2": "conv_out"}


def _kind_of(layer: nn.Module) -> str:
    names = {name for name, _ in layer.named_children()}
    if "in_layers" in names:
        return "resnets"
    if "transformer_blocks" in names:
        return "attentions"
    if "op" in names:
        return "downsamplers"
    return "upsamplers"


def _unet_block_names(unet: nn.Module) -> dict[str, str]:
    """LDM block path (e.g. "input_blocks.1.1") -> diffusers block name ("down_blocks_0_attentions_0")."""
    names: dict[str, str] = {}
    level, j, res_per_level = 0, 0, []
    for i, block in enumerate(unet.input_blocks):
        if i == 0:
            continue
        for k, layer in enumerate(block):
            kind = _kind_of(layer)
            if kind == "downsamplers":
                names[f"input_blocks.{i}.{k}"] = f"down_blocks_{level}_downsamplers_0"
            else:
                names[f"input_blocks.{i}.{k}"] = f"down_blocks_{level}_{kind}_{j}"
        if _kind_of(block[0]) == "downsamplers":
            res_per_level.append(j)
            level, j = level + 1, 0
        else:
            j += 1
    res_per_level.append(j)
    up, j = 0, 0
    for i, block in enumerate(unet.output_blocks):
        for k, layer in enumerate(block):
            kind = _kind_of(layer)
            suffix = "upsamplers_0" if kind == "upsamplers" else f"{kind}_{j}"
            names[f"output_blocks.{i}.{k}"] = f"up_blocks_{up}_{suffix}"
        j += 1
        if up < len(res_per_level) and j == res_per_level[len(res_per_level) - 1 - up] + 1:
            up, j = up + 1, 0
    for k, layer in enumerate(unet.middle_block):
        kind = _kind_of(layer)
        names[f"middle_block.{k}"] = f"mid_block_{kind}_{k // 2 if kind == 'resnets' else 0}"
    return names


def _diffusers_unet_name(path: str, blocks: dict[str, str]) -> str | None:
    if path in _TOP_PARTS:
        return _TOP_PARTS[path]
    parts = path.split(".")
    depth = 2 if parts[0] == "middle_block" else 3
    block, rest = ".".join(parts[:depth]), ".".join(parts[depth:])
    if block not in blocks:
        return None
    name = blocks[block]
    if "_resnets_" in name:
        return f"{name}_{_RESBLOCK_PARTS[rest]}" if rest in _RESBLOCK_PARTS else None
    if name.endswith(("downsamplers_0", "upsamplers_0")):
        return f"{name}_conv" if rest in ("op", "conv") else None
    return f"{name}_{rest.replace('.', '_')}"


def build_key_table(model: nn.Module) -> dict[str, Target]:
    """kohya key prefix (without `.lora_down.weight`) -> Target, for every patchable weight."""
    table: dict[str, Target] = {}
    unet = model.model.diffusion_model
    blocks = _unet_block_names(unet)
    for path, module in unet.named_modules():
        if not isinstance(module, PATCHABLE):
            continue
        target = Target(f"model.diffusion_model.{path}", kind="unet")
        table["lora_unet_" + path.replace(".", "_")] = target
        diffusers = _diffusers_unet_name(path, blocks)
        if diffusers is not None:
            table["lora_unet_" + diffusers] = target
    _add_text_encoder(table, model.cond_stage_model)
    return table


def _add_text_encoder(table: dict[str, Target], clip: nn.Module) -> None:
    for path, module in clip.named_modules():
        full = f"cond_stage_model.{path}"
        if isinstance(module, PATCHABLE):
            table["lora_te_" + path.replace(".", "_")] = Target(full, kind="te")
            if path.startswith("transformer.text_model."):  # v1: transformers' names are ours
                table["lora_te_" + path[len("transformer."):].replace(".", "_")] = Target(full, kind="te")
        if path.startswith("model.transformer.resblocks.") and path.count(".") == 3:  # v2 block i
            i = path.split(".")[3]
            hf = f"lora_te_text_model_encoder_layers_{i}_"
            for part, letter in enumerate("qkv"):
                table[f"{hf}self_attn_{letter}_proj"] = Target(f"{full}.attn", "in_proj_weight", part, "te")
            table[f"{hf}self_attn_out_proj"] = Target(f"{full}.attn.out_proj", kind="te")
            table[f"{hf}mlp_fc1"] = Target(f"{full}.mlp.c_fc", kind="te")
            table[f"{hf}mlp_fc2"] = Target(f"{full}.mlp.c_proj", kind="te")
