"""Clone-and-patch: extensions change the model for one job without monkey-patching anything.

    patcher = ModelPatcher(p.sd_model)                  # nothing changes yet
    patcher.add_attention_patch(my_attention, "output_blocks.*.attn1")
    patcher.add_block_output_patch("middle_block", lambda h: h * 1.1)
    patcher.add_weight_patch("model.diffusion_model.out.2.bias", delta)   # W += strength * delta
    patcher.add_forward_hooks("*.transformer_blocks.*.attn1", pre=fn, post=fn2)  # torch hooks
    model_patcher.apply_for_job(p, patcher)           # in a script's process(); removed after the job

Named points (`patch_points()` lists them): attention layers by their module path under the UNet
(`input_blocks.1.1.transformer_blocks.0.attn1`), UNet blocks (`input_blocks.N`, `middle_block`,
`output_blocks.N`, `out`) and every state-dict key of the model.

How each kind is applied, and removed exactly:
- attention: the UNet's CrossAttention layers take an injectable attention function (ldm/attention.py);
  a patch `fn(q, k, v, heads, attention)` wraps the layer's current one, which is restored after.
- block output: a torch forward hook on the block (`register_forward_hook`), removed by its handle.
- forward hooks: torch forward pre-hooks / hooks on any UNet module by path ("" is the UNet itself),
  removed by their handles (token merging, modules/models/tome.py, is built from these).
- weights: the original tensor is copied aside once, the sum of the deltas is added in float32, and
  the original is copied back afterwards: bit-identical weights.
`clone()` copies the list of patches, never the weights (ComfyUI's ModelPatcher idea).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

import torch

from modules.ldm.attention import CrossAttention

BLOCK_PATTERNS = ("input_blocks.*", "middle_block", "output_blocks.*", "out")


@dataclass
class _WeightPatch:
    key: str
    patch: Any          # tensor delta, or fn(weight float32) -> new weight
    strength: float


class ModelPatcher:
    def __init__(self, model, unet: torch.nn.Module | None = None):
        self.model = model
        self._unet = unet
        self._weights: dict[str, torch.Tensor] | None = None  # the model's parameters and buffers by key
        self.attention_patches: list[tuple[str, Callable]] = []
        self.block_patches: list[tuple[str, Callable]] = []
        self.forward_hooks: list[tuple[str, Callable | None, Callable | None]] = []
        self.weight_patches: list[_WeightPatch] = []
        self._saved_attention: dict[str, Any] = {}
        self._hooks: list = []
        self._saved_weights: dict[str, torch.Tensor] = {}
        self.applied = False

    @property
    def unet(self) -> torch.nn.Module:
        """The denoising network the attention and block patches address (LatentDiffusion's UNet)."""
        return self._unet if self._unet is not None else self.model.model.diffusion_model

    def weights(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by state-dict key (built once: a LoRA adds hundreds of patches)."""
        if self._weights is None:
            self._weights = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        return self._weights

    def clone(self) -> "ModelPatcher":
        other = ModelPatcher(self.model, self._unet)
        other.attention_patches = list(self.attention_patches)
        other.block_patches = list(self.block_patches)
        other.forward_hooks = list(self.forward_hooks)
        other.weight_patches = list(self.weight_patches)
        return other

    # -- naming ----------------------------------------------------------------------------------
    def attention_layers(self) -> dict[str, CrossAttention]:
        return {name: m for name, m in self.unet.named_modules() if isinstance(m, CrossAttention)}

    def blocks(self) -> dict[str, torch.nn.Module]:
        return {name: m for name, m in self.unet.named_modules()
                if any(fnmatch.fnmatchcase(name, pat) for pat in BLOCK_PATTERNS) and name.count(".") <= 1}

    def patch_points(self) -> dict[str, list[str]]:
        return {"attention": list(self.attention_layers()), "block_output": list(self.blocks()),
                "weight": list(self.model.state_dict().keys())}

    def _matching(self, table: dict, pattern: str, what: str) -> list[str]:
        names = [n for n in table if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            shown = ", ".join(list(table)[:6])
            raise ValueError(f"no {what} matches {pattern!r}; names look like: {shown} ...")
        return names

    # -- adding patches --------------------------------------------------------------------------
    def add_attention_patch(self, fn: Callable, where: str = "*") -> "ModelPatcher":
        """fn(q, k, v, heads, attention) -> out, for the attention layers matching the glob `where`;
        `attention(q, k, v, heads)` is the layer's own implementation (call it to wrap it)."""
        self._matching(self.attention_layers(), where, "attention layer")
        self.attention_patches.append((where, fn))
        return self

    def add_block_output_patch(self, block: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ModelPatcher":
        """fn(h) -> h for the output of the UNet blocks matching `block` (e.g. "output_blocks.3")."""
        self._matching(self.blocks(), block, "UNet block")
        self.block_patches.append((block, fn))
        return self

    def add_forward_hooks(self, where: str, pre: Callable | None = None,
                          post: Callable | None = None) -> "ModelPatcher":
        """torch hooks on the UNet modules whose path matches the glob `where` ("" = the UNet):
        pre(module, args) -> new args or None; post(module, args, output) -> new output or None."""
        self._matching(self.modules(), where, "UNet module")
        self.forward_hooks.append((where, pre, post))
        return self

    def modules(self) -> dict[str, torch.nn.Module]:
        return dict(self.unet.named_modules())

    def add_weight_patch(self, key: str, patch, strength: float = 1.0) -> "ModelPatcher":
        """W += strength * patch (a tensor of W's shape), or W = patch(W) when patch is callable."""
        params = self.weights()
        if key not in params:
            raise ValueError(f"the model has no weight {key!r} (see patch_points()['weight'])")
        if torch.is_tensor(patch) and patch.shape != params[key].shape:
            raise ValueError(f"weight patch for {key}: shape {tuple(patch.shape)} does not match "
                             f"the weight's {tuple(params[key].shape)}")
        self.weight_patches.append(_WeightPatch(key, patch, float(strength)))
        return self

    # -- applying --------------------------------------------------------------------------------
    def apply(self) -> "ModelPatcher":
        if self.applied:
            return self
        try:
            self._apply_attention()
            self._apply_blocks()
            self._apply_forward_hooks()
            self._apply_weights()
        except Exception:
            self.remove()
            raise
        self.applied = True
        return self

    def _apply_attention(self) -> None:
        layers = self.attention_layers()
        for where, fn in self.attention_patches:
            for name in self._matching(layers, where, "attention layer"):
                layer = layers[name]
                self._saved_attention.setdefault(name, layer.attention)
                layer.attention = _wrap_attention(fn, layer.attention)

    def _apply_blocks(self) -> None:
        blocks = self.blocks()
        for where, fn in self.block_patches:
            for name in self._matching(blocks, where, "UNet block"):
                hook = blocks[name].register_forward_hook(lambda _m, _inp, out, fn=fn: fn(out))
                self._hooks.append(hook)

    def _apply_forward_hooks(self) -> None:
        modules = self.modules()
        for where, pre, post in self.forward_hooks:
            for name in self._matching(modules, where, "UNet module"):
                if pre is not None:
                    self._hooks.append(modules[name].register_forward_pre_hook(pre))
                if post is not None:
                    self._hooks.append(modules[name].register_forward_hook(post))

    @torch.no_grad()
    def _apply_weights(self) -> None:
        params = self.weights()
        for wp in self.weight_patches:
            weight = params[wp.key]
            if wp.key not in self._saved_weights:
                self._saved_weights[wp.key] = weight.detach().clone()
            current = weight.detach().float()
            if callable(wp.patch):
                new = wp.patch(current.clone())
                new = current + (new.float() - current) * wp.strength
            else:
                new = current + wp.patch.to(current.device, torch.float32) * wp.strength
            weight.copy_(new.to(weight.dtype))

    @torch.no_grad()
    def remove(self) -> None:
        """Undo everything apply() did; safe to call twice."""
        if self._saved_attention:
            layers = self.attention_layers()
            for name, original in self._saved_attention.items():
                layers[name].attention = original
            self._saved_attention.clear()
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        params = self.weights()
        for key, original in self._saved_weights.items():
            params[key].copy_(original)
        self._saved_weights.clear()
        self.applied = False

    def __enter__(self) -> "ModelPatcher":
        return self.apply()

    def __exit__(self, *exc) -> None:
        self.remove()


def _wrap_attention(fn: Callable, inner: Callable) -> Callable:
    def attention(q, k, v, heads):
        return fn(q, k, v, heads, inner)
    return attention


# -- patches for one job (the script runner takes them off after the job) -------------------------
def apply_for_job(p, patcher: ModelPatcher) -> ModelPatcher:
    """Apply `patcher` now; the script runner removes it after the job's postprocess (or when the
    job ends in an error, at the latest before the next job starts)."""
    patcher.apply()
    p.__dict__.setdefault("model_patches", []).append(patcher)
    runner = getattr(p, "scripts", None)
    if runner is not None:
        runner.__dict__.setdefault("_active_patches", []).append(patcher)
    return patcher


def remove_for_job(p, runner=None) -> None:
    # reverse order: patches stacked on the same layer come off in the opposite order
    for patcher in reversed(p.__dict__.get("model_patches", [])):
        patcher.remove()
    p.__dict__.get("model_patches", []).clear()
    if runner is not None:
        active = runner.__dict__.get("_active_patches", [])
        active[:] = [x for x in active if x.applied]


def remove_stale(runner) -> None:
    """Patches left on by a job that failed before its postprocess: removed before the next job."""
    for patcher in reversed(runner.__dict__.get("_active_patches", [])):
        patcher.remove()
    runner.__dict__.get("_active_patches", []).clear()
