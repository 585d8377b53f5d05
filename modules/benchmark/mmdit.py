"""MMDiT forward benchmark: ours next to diffusers' SD3Transformer2DModel on the same random weights.

    python -m modules.benchmark mmdit [--family sd3.5-medium] [--size 512] [--dtypes bf16,fp32]
                                      [--repeat 2] [--dir DIR] [--depth N] [--weights FILE]

Writes the family's MMDiT with random weights once (bf16 safetensors, `<dir>/<family>-mmdit.safetensors`),
then, each in a fresh subprocess (so memory figures do not mix), loads it into ours (MMDiT, built on
meta, tensors assigned) or into diffusers' model (through diffusers' own single-file converter) in the
given dtype and times (wall and process CPU time: on a shared machine the CPU time is what others'
load distorts least) one forward of a CFG batch of 2 at `--size` pixels (latent size/8, 154 context
tokens as SAI's pipeline gives) after one warm-up forward; best of `--repeat`. Both run in the
environment the app sets up (modules.process_env) on one thread. The outputs of the two are compared
(max abs difference over the output's scale). `--depth N` keeps only the first N joint blocks (a quick
look; the README figures are full depth). `--weights FILE`: use an SD3 checkpoint already on disk
(e.g. the one `load --family sd3.5-medium --keep` wrote) instead. Target: ours <= 0.9x diffusers' time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from modules import process_env
from modules.benchmark.load import peak_rss, write_tensors

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
PREFIX = "model.diffusion_model."


def write_mmdit(path: Path, family: str, depth: int | None) -> None:
    from modules.models.loader import build_model

    model = build_model(family, device="meta", dtype=torch.bfloat16)
    tensors = {k: v for k, v in model.state_dict().items() if k.startswith(PREFIX)}
    if depth is not None:
        keep = tuple(f"{PREFIX}joint_blocks.{i}." for i in range(depth))
        tensors = {k: v for k, v in tensors.items() if ".joint_blocks." not in k or k.startswith(keep)}
        # the last kept block becomes the pre-only one: drop what it no longer has
        last = f"{PREFIX}joint_blocks.{depth - 1}.context_block."
        dim = tensors[PREFIX + "x_embedder.proj.weight"].shape[0]
        tensors = {k: v for k, v in tensors.items() if not (k.startswith(last) and (".mlp." in k or ".attn.proj." in k))}
        for name in ("weight", "bias"):
            key = f"{last}adaLN_modulation.1.{name}"
            tensors[key] = torch.empty((2 * dim, dim) if name == "weight" else (2 * dim,), device="meta")
    write_tensors(path, tensors, torch.bfloat16)


def inputs(size: int, dtype: torch.dtype, context_width: int, adm: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, size // 8, size // 8, generator=g)
    t = torch.tensor([700.0, 700.0])
    y = torch.randn(2, adm, generator=g)
    context = torch.randn(2, 154, context_width, generator=g)
    return x.to(dtype), t, y.to(dtype), context.to(dtype)


def _ours(sd: dict, dtype: torch.dtype):
    from modules.ldm.mmdit import MMDiT, MMDiTConfig

    cfg = MMDiTConfig.from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        model = MMDiT(cfg)
    model.load_state_dict({k[len(PREFIX):]: v.to(dtype) for k, v in sd.items()}, assign=True, strict=True)
    model.eval().requires_grad_(False)
    return (lambda x, t, y, c: model(x, t, y, c)), cfg


def diffusers_transformer(sd: dict, dtype: torch.dtype):
    """diffusers' SD3Transformer2DModel from our checkpoint's MMDiT keys (diffusers' own converter), and
    the config read from the shapes."""
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from modules.ldm.mmdit import MMDiTConfig

    cfg = MMDiTConfig.from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(sd))
    with torch.device("meta"):
        model = SD3Transformer2DModel(
            sample_size=128, patch_size=cfg.patch_size, in_channels=cfg.in_channels, num_layers=cfg.depth,
            attention_head_dim=cfg.head_dim, num_attention_heads=cfg.num_heads,
            joint_attention_dim=cfg.context_in_features, caption_projection_dim=cfg.hidden_size,
            pooled_projection_dim=cfg.adm_in_channels, out_channels=cfg.out_channels,
            pos_embed_max_size=cfg.pos_embed_max_size, qk_norm="rms_norm" if cfg.qk_norm else None,
            dual_attention_layers=tuple(cfg.x_block_self_attn_layers))
    model.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, assign=True, strict=True)
    return model.eval().requires_grad_(False), cfg


def _diffusers(sd: dict, dtype: torch.dtype):
    model, cfg = diffusers_transformer(sd, dtype)

    def forward(x, t, y, c):
        return model(hidden_states=x, timestep=t, encoder_hidden_states=c, pooled_projections=y).sample

    return forward, cfg


def child(impl: str, dtype_name: str, path: Path, size: int, repeat: int, out: Path) -> dict:
    torch.set_num_threads(1)
    from modules.models.state_dict import read_state_dict

    dtype = DTYPES[dtype_name]
    sd = {k: v for k, v in read_state_dict(path).items() if k.startswith(PREFIX)}
    forward, cfg = (_ours if impl == "ours" else _diffusers)(sd, dtype)
    x, t, y, c = inputs(size, dtype, cfg.context_in_features, cfg.adm_in_channels)
    walls, cpus = [], []
    with torch.no_grad():
        result = forward(x, t, y, c)  # warm-up
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            result = forward(x, t, y, c)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    torch.save(result.float(), out)
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "all": walls, "peak_rss_gib": peak_rss() / 2**30}


def run(args) -> int:
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    suffix = f"-depth{args.depth}" if args.depth else ""
    path = Path(args.weights) if args.weights else work / f"{args.family}-mmdit{suffix}.safetensors"
    if not path.exists():
        start = time.perf_counter()
        write_mmdit(path, args.family, args.depth)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process_env.apply(env)
    results = {}
    for dtype_name in args.dtypes.split(","):
        for impl in ("ours", "diffusers"):
            out = work / f"out-{impl}-{dtype_name}.pt"
            cmd = [sys.executable, "-m", "modules.benchmark.mmdit", "--child", impl, dtype_name, str(path),
                   str(args.size), str(args.repeat), str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            results[impl, dtype_name] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[impl, dtype_name]
            print(f"{impl:<9} {dtype_name}: forward {r['seconds']:7.2f} s wall, {r['cpu_seconds']:7.2f} s CPU "
                  f"(wall per run {', '.join(f'{s:.2f}' for s in r['all'])}), peak RSS {r['peak_rss_gib']:.2f} GiB", flush=True)
        ours, theirs = (torch.load(work / f"out-{i}-{dtype_name}.pt") for i in ("ours", "diffusers"))
        diff = ((ours - theirs).abs().max() / theirs.abs().max()).item()
        ratio = results["ours", dtype_name]["seconds"] / results["diffusers", dtype_name]["seconds"]
        cpu = results["ours", dtype_name]["cpu_seconds"] / results["diffusers", dtype_name]["cpu_seconds"]
        print(f"{dtype_name}: ours/diffusers wall {ratio:.2f}, CPU {cpu:.2f} (target <= 0.9: {'ok' if cpu <= 0.9 else 'MISSED'}); "
              f"outputs differ by {diff:.2e} of their scale", flush=True)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m modules.benchmark mmdit", description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sd3.5-medium", help="sd3-medium, sd3.5-medium, sd3.5-large")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (latent = size / 8)")
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--repeat", type=int, default=1, help="timed forwards after the warm-up; the best is shown")
    parser.add_argument("--dir", default="/tmp/sd3-bench", help="where the weights file is written (kept)")
    parser.add_argument("--depth", type=int, help="only the first N joint blocks (quick look)")
    parser.add_argument("--weights", help="an SD3 checkpoint to take the MMDiT from (instead of writing one)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        impl, dtype_name, path, size, repeat, out = args.child
        print(json.dumps(child(impl, dtype_name, Path(path), int(size), int(repeat), Path(out))))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
