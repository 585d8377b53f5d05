"""txt2img benchmark: our pipeline next to diffusers' StableDiffusionPipeline on the same weights.

    python -m modules.benchmark.generate [--sizes 256,512] [--steps 20] [--device cpu|cuda] [--dir DIR]

Writes an SD1.5-size checkpoint with random weights (modules.benchmark.load), then, each in a fresh
subprocess so memory figures do not mix: ours = process_images (Euler a, CFG 7, batch 1) on the
checkpoint loaded by load_model; diffusers = StableDiffusionPipeline built from the same file through
diffusers' LDM converters (EulerAncestralDiscreteScheduler; prompt embeddings precomputed, as no
tokenizer files can be fetched here). Reported per size: UNet s/step (both CFG halves), VAE decode
time, total, and peak RSS during generation (VmHWM reset after loading), or peak VRAM on CUDA.
The figure that matters is the ratio ours/diffusers (target <= 0.9 of diffusers' time).

Implementations (--impls): `ours` = the app's default precision (modules.devices: fp16 on CUDA,
fp32 on the CPU), `ours-bf16` (--bf16: UNet and text encoder bf16; the VAE fp32 on the CPU),
`diffusers` (its default: fp16 on CUDA, fp32 on the CPU) and `diffusers-bf16` (UNet and text encoder
bf16, VAE fp32), so that the same-precision ratios and what --bf16 buys are all printed.
`ours-fast` / `ours-bf16-fast` add A1111's speed settings (token merging ratio 0.5, Negative Guidance
minimum sigma 1.0); their line gives the time ratio to the same run without them (target <= 0.7)
and the mean pixel change of the picture (same seed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modules import process_env

PROMPT = "a photograph of an astronaut riding a horse"


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_memory(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _now() -> tuple[float, float]:
    """(wall, process CPU) seconds: CPU time (all threads) is what a shared machine's load distorts least."""
    return time.perf_counter(), time.process_time()


def _per_step(times: list[tuple[float, float]]) -> tuple[float, float]:
    n = max(len(times) - 1, 1)
    return (times[-1][0] - times[0][0]) / n, (times[-1][1] - times[0][1]) / n


def _result(times, total, decode, device) -> dict:
    step_wall, step_cpu = _per_step(times)
    return {"unet_s_per_step": step_wall, "unet_cpu_s_per_step": step_cpu, "vae_decode_s": decode[0],
            "vae_decode_cpu_s": decode[1], "total_s": total[0], "total_cpu_s": total[1],
            "peak_mb": _peak_memory(device)}


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _now()
    return wall - start[0], cpu - start[1]


def run_ours(path: str, size: int, steps: int, device: str, bf16: bool = False, fast: bool = False) -> dict:
    """fast: A1111's speed settings, token merging ratio 0.5 and Negative Guidance minimum sigma 1.0."""
    from modules.devices import dtype_policy
    from modules.jobs import Job
    from modules.models.loader import load_model
    from modules.options import Options
    from modules.processing import ProcessingEnv, StableDiffusionProcessingTxt2Img, process_images, vae

    policy = dtype_policy(device, bf16=bf16)
    model = load_model(path, device=device, dtype=policy.dtype_unet, dtype_vae=policy.dtype_vae)
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    times: list[tuple[float, float]] = []
    job = Job("bench")
    job.set_step = lambda step, preview=None: (_sync(device), times.append(_now()))
    p = StableDiffusionProcessingTxt2Img(sd_model=model, env=ProcessingEnv(opts=opts, job=job), prompt=PROMPT,
                                         seed=1, steps=steps, width=size, height=size, sampler_name="Euler a",
                                         cfg_scale=7.0)
    if fast:
        p.token_merging_ratio, p.s_min_uncond = FAST_TOME, FAST_NGMS
    last = {}  # the final denoised latent: random weights often decode to a saturated picture
    p.env.callbacks.cfg.on_cfg_after_cfg.append(lambda params: last.update(latent=params.x))
    reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = _now()
    processed = process_images(p)
    _sync(device)
    total = _since(start)
    image = np.asarray(processed.images[0].convert("RGB"), dtype=np.uint8)
    latent = torch.randn(1, 4, size // 8, size // 8, device=device)
    t0 = _now()
    vae.decode(model, latent)
    _sync(device)
    return {**_result(times, total, _since(t0), device), "image": image.tolist(),
            "latent": last["latent"].float().cpu().numpy().tolist()}


def build_diffusers(path: str, device: str, bf16: bool = False):
    import diffusers
    import transformers
    from diffusers.loaders import single_file_utils as sfu
    from safetensors.torch import load_file

    from modules.ldm.config import load_config

    dtype = torch.float16 if device == "cuda" else torch.float32
    sd = {k: v.float() for k, v in load_file(path).items()}
    cfg = load_config("v1-inference")
    ucfg = sfu.create_unet_diffusers_config_from_ldm(cfg, sd, image_size=512)
    unet = diffusers.UNet2DConditionModel(**ucfg)
    unet.load_state_dict(sfu.convert_ldm_unet_checkpoint(sd, ucfg), strict=True)
    vcfg = sfu.create_vae_diffusers_config_from_ldm(cfg, sd, image_size=512)
    vae = diffusers.AutoencoderKL(**vcfg)
    vae.load_state_dict(sfu.convert_ldm_vae_checkpoint(sd, vcfg), strict=True)
    tcfg = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                       num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                       hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = transformers.CLIPTextModel(tcfg)
    prefix = "cond_stage_model.transformer." + ("text_model." if getattr(text, "text_model", text) is text else "")
    text.load_state_dict({k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}, strict=False)
    del sd
    scheduler = diffusers.EulerAncestralDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085,
                                                          beta_end=0.012, beta_schedule="scaled_linear")
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=None, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe = pipe.to(device=device, dtype=dtype)
    if bf16:  # ours' CPU precision: bf16 UNet and text encoder, fp32 VAE fed fp32 latents
        pipe.unet.to(torch.bfloat16)
        pipe.text_encoder.to(torch.bfloat16)
        decode = pipe.vae.decode
        pipe.vae.decode = lambda z, *args, **kwargs: decode(z.float(), *args, **kwargs)
    return pipe


def run_diffusers(path: str, size: int, steps: int, device: str, bf16: bool = False) -> dict:
    from open_clip.tokenizer import SimpleTokenizer  # CLIP's BPE (offline); the pipeline gets embeddings

    pipe = build_diffusers(path, device, bf16)
    tok = SimpleTokenizer()

    def ids(text):
        t = tok.encode(text)[:75]
        return torch.tensor([[49406, *t, 49407] + [49407] * (75 - len(t))], device=device)

    with torch.no_grad():
        cond = pipe.text_encoder(ids(PROMPT))[0]
        uncond = pipe.text_encoder(ids(""))[0]
    times: list[tuple[float, float]] = []

    def on_step(pipeline, i, t, kwargs):
        _sync(device)
        times.append(_now())
        return kwargs

    reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = _now()
    with torch.no_grad():
        pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=size, width=size, num_inference_steps=steps,
             guidance_scale=7.0, generator=torch.Generator().manual_seed(1), callback_on_step_end=on_step)
    _sync(device)
    total = _since(start)
    latent = torch.randn(1, 4, size // 8, size // 8, device=device, dtype=pipe.vae.dtype)
    t0 = _now()
    with torch.no_grad():
        pipe.vae.decode(latent / pipe.vae.config.scaling_factor)
    _sync(device)
    return _result(times, total, _since(t0), device)


IMPLS = {
    "ours": run_ours,
    "ours-bf16": lambda *a: run_ours(*a, bf16=True),
    "ours-fast": lambda *a: run_ours(*a, fast=True),
    "ours-bf16-fast": lambda *a: run_ours(*a, bf16=True, fast=True),
    "diffusers": run_diffusers,
    "diffusers-bf16": lambda *a: run_diffusers(*a, bf16=True),
}
# (numerator, denominator, what the ratio compares)
RATIOS = [("ours", "diffusers", "defaults: both fp32 on the CPU, fp16 on CUDA"),
          ("ours-bf16", "diffusers-bf16", "both bf16"), ("ours-bf16", "diffusers", "ours --bf16 vs diffusers' default")]
FAST_TOME, FAST_NGMS = 0.5, 1.0
# (fast, plain): A1111's speed settings against the same precision without them
SPEED_RATIOS = [("ours-fast", "ours"), ("ours-bf16-fast", "ours-bf16")]


def child(argv: list[str]) -> int:
    which, path, size, steps, device = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    run = IMPLS[which]
    with torch.no_grad():
        result = run(path, size, steps, device)
    image, latent = result.pop("image", None), result.pop("latent", None)
    if image is not None and len(argv) > 5:  # where the parent wants the picture, to compare runs
        np.save(argv[5], np.asarray(image, dtype=np.uint8))
        np.save(argv[5].replace(".npy", "-latent.npy"), np.asarray(latent, dtype=np.float32))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _run_child(which: str, path: Path, size: int, steps: int, device: str) -> dict:
    """Ours runs in the environment the app sets up (modules.process_env), diffusers in the caller's.
    Ours also leaves its picture beside the checkpoint (`image_path` in the result)."""
    image_path = path.parent / f"image-{which}-{size}.npy"
    cmd = [sys.executable, "-m", "modules.benchmark.generate", "--child", which, str(path), str(size), str(steps),
           device, str(image_path)]
    env = dict(os.environ)
    if which.startswith("ours"):
        process_env.apply(env)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "image_path": str(image_path) if image_path.exists() else None}
    raise RuntimeError(f"{which} at {size}px failed:\n{out.stderr[-3000:]}")


def _speed_line(size: int, fast: str, plain: str, a: dict, b: dict) -> str:
    """Time ratio of the speed settings, and how much they changed the picture (mean |difference|
    over all pixels and channels, in 0-255 levels) and the final latent (random weights can decode
    to a saturated picture, where the pixels cannot show a change)."""
    change = "n/a"
    if a.get("image_path") and b.get("image_path"):
        x, y = (np.load(a["image_path"]).astype(np.int16), np.load(b["image_path"]).astype(np.int16))
        la, lb = (np.load(r["image_path"].replace(".npy", "-latent.npy")) for r in (a, b))
        change = (f"{np.abs(x - y).mean():.2f} levels (final latent: mean |change| "
                  f"{np.abs(la - lb).mean() / np.abs(lb).mean():.1%} of its mean |value|)")
    return (f"{size:>5} ratio {fast}/{plain} total (token merging {FAST_TOME} + NGMS {FAST_NGMS}): "
            f"wall {a['total_s'] / b['total_s']:.2f}, CPU {a['total_cpu_s'] / b['total_cpu_s']:.2f} "
            f"(target <= 0.7); UNet s/step {a['unet_s_per_step'] / b['unet_s_per_step']:.2f}; "
            f"mean pixel change {change}")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        return child(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m modules.benchmark generate")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dir", default=None, help="where to write the random checkpoint (default: a temp dir)")
    ap.add_argument("--checkpoint", default=None, help="use this SD1.5-layout file instead of writing one")
    ap.add_argument("--impls", default=None,
                    help=f"comma-separated, from {','.join(IMPLS)} (default: all on the CPU, ours,diffusers on CUDA)")
    args = ap.parse_args(argv)
    from modules.benchmark.load import write_random_checkpoint

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(args.checkpoint) if args.checkpoint else Path(tmp) / "random-sd15.safetensors"
        if not args.checkpoint:
            write_random_checkpoint(path)
        memory = "peak VRAM MB" if args.device == "cuda" else "peak RSS MB (generation)"
        print(f"txt2img, Euler a, {args.steps} steps, CFG 7, batch 1, device {args.device}, "
              f"torch threads {torch.get_num_threads()}")
        app_env = " ".join(f"{k}={v}" for k, v in sorted(process_env.DEFAULTS.items()))
        print("wall seconds, with process CPU seconds (all threads) in brackets; ours runs with the app's "
              f"environment ({app_env}, unless set), diffusers with the caller's")
        print(f"{'size':>5} {'impl':>14} {'UNet s/step':>16} {'VAE decode s':>16} {'total s':>16} {memory:>25}")
        impls = (args.impls or ("ours,diffusers" if args.device == "cuda" else ",".join(IMPLS))).split(",")
        unknown = [i for i in impls if i not in IMPLS]
        if unknown:
            ap.error(f"unknown --impls {unknown}: choose from {','.join(IMPLS)}")
        for size in (int(s) for s in args.sizes.split(",")):
            results = {}
            for which in impls:
                r = results[which] = _run_child(which, path, size, args.steps, args.device)
                step = f"{r['unet_s_per_step']:.2f} ({r['unet_cpu_s_per_step']:.2f})"
                decode = f"{r['vae_decode_s']:.2f} ({r['vae_decode_cpu_s']:.2f})"
                total = f"{r['total_s']:.1f} ({r['total_cpu_s']:.1f})"
                print(f"{size:>5} {which:>14} {step:>16} {decode:>16} {total:>16} {r['peak_mb']:>25.0f}", flush=True)
            for num, den, what in RATIOS:
                if num in results and den in results:
                    a, b = results[num], results[den]
                    print(f"{size:>5} ratio {num}/{den} total ({what}): wall {a['total_s'] / b['total_s']:.2f}, "
                          f"CPU {a['total_cpu_s'] / b['total_cpu_s']:.2f} (target <= 0.9)", flush=True)
            for fast, plain in SPEED_RATIOS:
                if fast in results and plain in results:
                    print(_speed_line(size, fast, plain, results[fast], results[plain]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
