"""SD3 txt2img benchmark: our pipeline next to diffusers' StableDiffusion3Pipeline on the same weights.

    python -m modules.benchmark generate --family sd3.5-medium [--sizes 512] [--steps 20]
                                         [--dtypes bf16,fp32] [--dir DIR] [--keep]

Writes the family's official layout with random weights (modules.benchmark.load.write_files: the
diffusion-only file in bf16 under `<dir>/models/Stable-diffusion/`, clip_l / clip_g fp16 files in
`<dir>/models/text_encoder/`; 6.7 GB for SD3.5 Medium; deleted afterwards unless --keep), then, each in
a fresh subprocess so memory figures do not mix:
- ours: load_model (the encoders found in models/text_encoder) and process_images, Euler, the Normal
  schedule (= diffusers' FlowMatchEulerDiscreteScheduler, shift 3), CFG 5, batch 1, prompt encoding
  included;
- diffusers 0.42: StableDiffusion3Pipeline with the transformer and VAE converted by diffusers' own
  single-file converters, CLIP-L / CLIP-G as transformers' CLIPTextModelWithProjection from the same
  files, FlowMatchEulerDiscreteScheduler(shift=3.0); the prompt embeddings are computed before the clock
  starts (no tokenizer files can be fetched here), with our context length (77 CLIP + 77 zero T5 tokens).
No T5: T5-XXL is 9.8 GB in fp16 (19 GB in fp32) and would not fit beside the MMDiT in this machine's
24 GB; both sides run without it. `bf16`: MMDiT and text encoders in bf16, the VAE in fp32 (ours' --bf16
on the CPU); `fp32`: everything fp32. Reported: MMDiT s/step (both CFG halves), VAE decode of one
latent, total, peak RSS during generation (VmHWM reset after loading), wall and process CPU time.
Target: ours <= 0.9x diffusers' time in both dtypes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from modules import process_env
from modules.benchmark.generate import PROMPT, _now, _result, _since, reset_peak_rss

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
CFG = 5.0


def run_ours(path: str, size: int, steps: int, dtype_name: str) -> dict:
    from modules.jobs import Job
    from modules.models.loader import load_model
    from modules.options import Options
    from modules.processing import ProcessingEnv, StableDiffusionProcessingTxt2Img, process_images, vae

    model = load_model(path, dtype=DTYPES[dtype_name], dtype_vae=torch.float32)
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    times: list[tuple[float, float]] = []
    job = Job("bench")
    job.set_step = lambda step, preview=None: times.append(_now())
    p = StableDiffusionProcessingTxt2Img(sd_model=model, env=ProcessingEnv(opts=opts, job=job), prompt=PROMPT,
                                         seed=1, steps=steps, width=size, height=size, sampler_name="Euler",
                                         scheduler="Normal", cfg_scale=CFG)
    reset_peak_rss()
    start = _now()
    process_images(p)
    total = _since(start)
    latent = torch.randn(1, 16, size // 8, size // 8)
    t0 = _now()
    vae.decode(model, latent)
    return _result(times, total, _since(t0), "cpu")


def _clip(path: Path, width: int, layers: int, act: str, projection: bool, dtype):
    import transformers
    from safetensors.torch import load_file

    config = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width,
                                         num_hidden_layers=layers, num_attention_heads=width // 64,
                                         max_position_embeddings=77, hidden_act=act, projection_dim=width,
                                         eos_token_id=49407)
    model = transformers.CLIPTextModelWithProjection(config)
    sd = load_file(str(path))
    if not projection or "text_projection.weight" not in sd:
        sd["text_projection.weight"] = torch.eye(width)
    model.load_state_dict({k: v.float() for k, v in sd.items() if not k.endswith("position_ids")}, strict=False)
    return model.to(dtype).eval().requires_grad_(False)


def _embeddings(clip_l, clip_g, context_width: int = 4096):
    """Context [1, 154, 4096] and pooled [1, 2048] of the prompt and of "" (as ours builds them)."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()

    def ids(text, pad):
        t = tok.encode(text)[:75]
        return torch.tensor([[49406, *t, 49407] + [pad] * (75 - len(t))])

    out = []
    for text in (PROMPT, ""):
        lo = clip_l(ids(text, 49407), output_hidden_states=True)
        go = clip_g(ids(text, 0), output_hidden_states=True)
        context = torch.cat([lo.hidden_states[-2], go.hidden_states[-2]], dim=-1)
        context = torch.nn.functional.pad(context, (0, context_width - context.shape[-1]))
        context = torch.cat([context, torch.zeros_like(context)], dim=1)
        out += [context, torch.cat([lo.text_embeds, go.text_embeds], dim=-1)]
    return out


def build_diffusers(path: str, dtype_name: str):
    import diffusers
    from diffusers.loaders import single_file_utils as sfu

    from modules.benchmark.mmdit import PREFIX, diffusers_transformer
    from modules.models.state_dict import read_state_dict

    dtype = DTYPES[dtype_name]
    sd = read_state_dict(path)
    transformer, _ = diffusers_transformer({k: v for k, v in sd.items() if k.startswith(PREFIX)}, dtype)
    vcfg = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5305,
                shift_factor=0.0609, sample_size=1024)
    vae = diffusers.AutoencoderKL(**vcfg)
    vae_sd = {k: v.float() for k, v in sd.items() if k.startswith("first_stage_model.")}
    vae.load_state_dict(sfu.convert_ldm_vae_checkpoint(vae_sd, vae.config), strict=True)
    encoders = Path(path).parents[1] / "text_encoder"
    clip_l = _clip(encoders / "clip_l.safetensors", 768, 12, "quick_gelu", False, dtype)
    clip_g = _clip(encoders / "clip_g.safetensors", 1280, 32, "gelu", True, dtype)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = diffusers.StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae.eval(),
                                              text_encoder=clip_l, tokenizer=None, text_encoder_2=clip_g,
                                              tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    return pipe, clip_l, clip_g


def run_diffusers(path: str, size: int, steps: int, dtype_name: str) -> dict:
    pipe, clip_l, clip_g = build_diffusers(path, dtype_name)
    dtype = DTYPES[dtype_name]
    with torch.no_grad():
        cond, pooled, uncond, pooled_uncond = (t.to(dtype) for t in _embeddings(clip_l, clip_g))
    times: list[tuple[float, float]] = []

    def on_step(pipeline, i, t, kwargs):
        times.append(_now())
        return kwargs

    if dtype != torch.float32:  # the VAE stays fp32 (as ours on the CPU): it gets fp32 latents
        decode = pipe.vae.decode
        pipe.vae.decode = lambda z, *args, **kwargs: decode(z.float(), *args, **kwargs)
    reset_peak_rss()
    start = _now()
    with torch.no_grad():
        pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, pooled_prompt_embeds=pooled,
             negative_pooled_prompt_embeds=pooled_uncond, height=size, width=size, num_inference_steps=steps,
             guidance_scale=CFG, generator=torch.Generator().manual_seed(1), callback_on_step_end=on_step)
    total = _since(start)
    latent = torch.randn(1, 16, size // 8, size // 8)
    t0 = _now()
    with torch.no_grad():
        pipe.vae.decode(latent / 1.5305 + 0.0609)
    return _result(times, total, _since(t0), "cpu")


IMPLS = {"ours": run_ours, "diffusers": run_diffusers}


def child(argv: list[str]) -> int:
    which, path, size, steps, dtype_name = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with torch.no_grad():
        print("RESULT " + json.dumps(IMPLS[which](path, size, steps, dtype_name)), flush=True)
    return 0


def _run_child(which: str, path: Path, size: int, steps: int, dtype_name: str) -> dict:
    """Ours runs in the environment the app sets up (modules.process_env), diffusers in the caller's."""
    cmd = [sys.executable, "-m", "modules.benchmark.generate_sd3", "--child", which, str(path), str(size),
           str(steps), dtype_name]
    env = dict(os.environ)
    if which == "ours":
        process_env.apply(env)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{which} {dtype_name} at {size}px failed:\n{out.stderr[-3000:]}")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        return child(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m modules.benchmark generate --family FAMILY")
    ap.add_argument("--family", default="sd3.5-medium", help="sd3.5-medium, sd3-medium or sd3.5-large")
    ap.add_argument("--sizes", default="512")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--impls", default="ours,diffusers")
    ap.add_argument("--dir", default=None, help="where the random weights are written (default: a temp dir in /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the weights for another run")
    args = ap.parse_args(argv)
    from modules.benchmark.load import write_files

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sd3-generate-bench-"))
    try:
        path = write_files(args.family, work)[0]
        print(f"txt2img {args.family} (random weights, no T5), Euler, Normal schedule (shift 3), {args.steps} steps, "
              f"CFG {CFG:g}, batch 1, CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}")
        print("wall seconds, with process CPU seconds (all threads) in brackets")
        print(f"{'size':>5} {'dtype':>5} {'impl':>10} {'MMDiT s/step':>16} {'VAE decode s':>16} {'total s':>16} "
              f"{'peak RSS MB':>12}")
        for size in (int(s) for s in args.sizes.split(",")):
            for dtype_name in args.dtypes.split(","):
                results = {}
                for which in args.impls.split(","):
                    r = results[which] = _run_child(which, path, size, args.steps, dtype_name)
                    step = f"{r['unet_s_per_step']:.2f} ({r['unet_cpu_s_per_step']:.2f})"
                    decode = f"{r['vae_decode_s']:.2f} ({r['vae_decode_cpu_s']:.2f})"
                    total = f"{r['total_s']:.1f} ({r['total_cpu_s']:.1f})"
                    print(f"{size:>5} {dtype_name:>5} {which:>10} {step:>16} {decode:>16} {total:>16} "
                          f"{r['peak_mb']:>12.0f}", flush=True)
                if len(results) == 2:
                    a, b = results["ours"], results["diffusers"]
                    print(f"{size:>5} {dtype_name:>5} ratio ours/diffusers total: wall {a['total_s'] / b['total_s']:.2f}, "
                          f"CPU {a['total_cpu_s'] / b['total_cpu_s']:.2f} (target <= 0.9)", flush=True)
        with open("/proc/loadavg") as f:
            print(f"load average at the end: {f.read().split()[:3]}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
