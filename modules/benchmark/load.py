"""Checkpoint load benchmark: time and peak RSS to a ready model, cold and warm page cache.

    python -m modules.benchmark load [--family v1|sd3.5-medium|sd3-medium|sd3.5-large] [--dir DIR] [--keep]
                                     [--repeat N] [--fp32]

Writes an SD1.5-size fp16 safetensors with random weights (about 2.1 GB; built from v1-inference on
the meta device and written tensor by tensor in chunks, so the writer stays small), then measures,
each in a fresh subprocess:
- a plain sequential read of the file (the disk/page-cache speed it is compared with);
- `load_model(path)` (config detected, no yaml) into fp16 on the CPU (what a GPU load reads), then
  one read of every weight page, so the model is ready to run, not just mapped;
- with --fp32, the same into fp32 (the CPU policy; casting makes a copy, so RSS is ~3x the file).
Cold cache: `echo 1 > /proc/sys/vm/drop_caches` when permitted, else posix_fadvise(DONTNEED) on the file
(the guest's page cache; a VM host's own disk cache is out of reach, so an uncounted cold read
first puts every cold case on the same footing).
Peak RSS is the child's VmHWM (includes mapped file pages and the torch import, reported apart).
Targets: peak RSS <= 1.3x file size, warm load <= 1.5 s, cold load <= 2x the cold plain read.

`--family sd3.5-medium` (or another SD3 layout): the official diffusion-only file in bf16 (5.1 GB for
3.5 Medium) under `<dir>/models/Stable-diffusion/`, with clip_l.safetensors and clip_g.safetensors
(fp16, 1.6 GB) in `<dir>/models/text_encoder/`, where the loader finds them; the plain read reads all
three files, the load is `load_checkpoint` into bf16 (the file's dtype: MMDiT and VAE used in place,
the CLIPs cast). No T5 (9.8 GB would not fit beside it in this machine's page cache). Targets as for
v1 but warm <= 2 s.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}
CHUNK = 1 << 24  # elements generated at a time while writing


def write_random_checkpoint(path: Path, config: str = "v1-inference", dtype: torch.dtype = torch.float16) -> int:
    """Random weights (fp16), real schedules and position_ids, in the original key order; returns its size."""
    from modules.models.loader import build_model

    return write_tensors(path, build_model(config, device="meta", dtype=dtype).state_dict(), dtype)


def write_tensors(path: Path, tensors: dict, weight_dtype: torch.dtype) -> int:
    """A safetensors file of `tensors`: meta ones become N(0, 0.02) in weight_dtype, real ones are written
    as they are (schedules, position ids); generated in chunks, so the writer stays small."""
    entries, header, offset = [], {}, 0
    for key, t in tensors.items():
        dtype = weight_dtype if t.is_floating_point() and t.is_meta else t.dtype  # schedules stay fp32
        nbytes = t.numel() * torch.empty((), dtype=dtype).element_size()
        header[key] = {"dtype": DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        entries.append((t, dtype))
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    generator = torch.Generator().manual_seed(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for t, dtype in entries:
            if not t.is_floating_point():  # position_ids
                t = torch.arange(t.shape[-1], dtype=dtype).expand(tuple(t.shape))
            if not t.is_meta:  # schedules (computed at build time) and position_ids
                f.write(_bytes(t.to(dtype).contiguous()))
                continue
            for start in range(0, t.numel(), CHUNK):
                n = min(CHUNK, t.numel() - start)
                f.write(_bytes((torch.randn(n, generator=generator) * 0.02).to(dtype)))
    return path.stat().st_size


def _bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian bytes (numpy has no bfloat16: reinterpret 2-byte types as int16)."""
    return (t.view(torch.int16) if t.element_size() == 2 else t).numpy().tobytes()


def drop_cache(path: Path) -> str:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return "drop_caches"
    except OSError:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages would survive DONTNEED
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return "posix_fadvise(DONTNEED)"


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(task: str, path: Path) -> dict:
    """Runs in the subprocess: the timed part only (imports done before the clock starts)."""
    torch.set_num_threads(1)
    from modules.models.loader import load_checkpoint

    baseline = peak_rss()
    start = time.perf_counter()
    if task == "read":
        buf = bytearray(64 << 20)
        for name in str(path).split(os.pathsep):
            with open(name, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        config = None
    else:
        dtype = {"load-fp32": torch.float32, "load-bf16": torch.bfloat16}.get(task, torch.float16)
        config = _load_ready(load_checkpoint, path, dtype)
    seconds, peak = time.perf_counter() - start, peak_rss()
    again = None
    if task != "read":  # a switch back to it in a running app: imports and first-use costs are paid
        gc.collect()
        start = time.perf_counter()
        _load_ready(load_checkpoint, path, dtype)
        again = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss": peak, "baseline_rss": baseline, "config": config,
            "again_seconds": again, "peak_rss_after_again": peak_rss()}


def _load_ready(load_checkpoint, path: Path, dtype: torch.dtype) -> str:
    """Load, then read one value per 4 KiB page of every weight: ready to run, not just mapped."""
    result = load_checkpoint(path, dtype=dtype)
    touched = 0.0
    for t in result.model.state_dict().values():
        touched += float(t.reshape(-1)[:: max(1, 4096 // t.element_size())].float().sum())
    return result.config


def measure(task: str, path: Path, cold: bool) -> dict:
    how = drop_cache(path) if cold else "warm"
    out = subprocess.run([sys.executable, "-m", "modules.benchmark.load", "--child", task, str(path)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["cache"] = how
    return figures


def _row(name: str, r: dict, size: int) -> str:
    again = (f"; again in the same process {r['again_seconds']:.2f} s, peak then "
             f"{r['peak_rss_after_again'] / 2**30:.2f} GiB" if r.get("again_seconds") is not None else "")
    return (f"{name:<16} {r['seconds']:6.2f} s  peak RSS {r['peak_rss'] / 2**30:5.2f} GiB "
            f"({r['peak_rss'] / size:4.2f}x file; torch+imports {r['baseline_rss'] / 2**30:4.2f} GiB)"
            f"  [{r['cache']}]{again}")


def write_files(family: str, work: Path) -> list[Path]:
    """The checkpoint (first) and the other files a load of `family` reads; written when missing."""
    if family == "v1":
        files = {work / "v1-5-random-fp16.safetensors": lambda p: write_random_checkpoint(p)}
    else:
        from modules.models.loader import build_model

        def encoder(prefix: str):
            clips = build_model("sd3-medium-incl-clips", device="meta", dtype=torch.float16).state_dict()
            return lambda p: write_tensors(p, {k[len(prefix):]: v for k, v in clips.items() if k.startswith(prefix)},
                                           torch.float16)

        models = work / "models"
        files = {models / "Stable-diffusion" / f"{family}-random.safetensors":
                 lambda p: write_random_checkpoint(p, family, torch.bfloat16),
                 models / "text_encoder" / "clip_l.safetensors": encoder("text_encoders.clip_l.transformer."),
                 models / "text_encoder" / "clip_g.safetensors": encoder("text_encoders.clip_g.transformer.")}
    for path, write in files.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            write(path)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.1f} s", flush=True)
    return list(files)


def run(args) -> int:
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sd-load-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    files = write_files(args.family, work)
    path, everything = files[0], Path(os.pathsep.join(map(str, files)))
    load = "load-fp16" if args.family == "v1" else "load-bf16"
    warm_target = 1.5 if args.family == "v1" else 2.0
    try:
        size = sum(f.stat().st_size for f in files)
        tasks = ["read", load] + (["load-fp32"] if args.fp32 else [])
        # On a VM the host may cache the disk too: the first "cold" read after writing pays the real
        # disk, later ones only the guest side. One uncounted read puts every cold case on equal footing.
        measure("read", everything, cold=True)
        results = {}
        for _ in range(args.repeat):
            for task in tasks:
                for cold in (True, False):
                    r = measure(task, everything if task == "read" else path, cold)
                    key = f"{task} {'cold' if cold else 'warm'}"
                    if key not in results or r["seconds"] < results[key]["seconds"]:
                        results[key] = r
        print(f"{len(files)} file(s), {size / 1e9:.2f} GB; best of {args.repeat}; "
              f"config detected: {results[load + ' warm']['config']}")
        for key, r in results.items():
            print(_row(key, r, size))
        cold, warm, read = results[load + " cold"], results[load + " warm"], results["read cold"]
        print("targets: peak RSS <= 1.3x file: {:.2f}x {}; warm load <= {} s: {:.2f} s {}; "
              "cold load <= 2x plain read: {:.2f}x {}".format(
                  cold["peak_rss"] / size, "ok" if cold["peak_rss"] <= 1.3 * size else "MISSED", warm_target,
                  warm["seconds"], "ok" if warm["seconds"] <= warm_target else "MISSED",
                  cold["seconds"] / read["seconds"], "ok" if cold["seconds"] <= 2 * read["seconds"] else "MISSED"))
    finally:
        if not args.keep:
            if args.dir:
                for f in files:
                    f.unlink(missing_ok=True)
            else:
                shutil.rmtree(work)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m modules.benchmark load", description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="v1", help="v1 (SD1.5 size) or an SD3 layout: sd3.5-medium, sd3-medium, ...")
    parser.add_argument("--dir", help="where to write the files (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the file for the next run")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per case; the best is shown")
    parser.add_argument("--fp32", action="store_true", help="also load into fp32 (the CPU policy; needs ~7 GB RAM)")
    parser.add_argument("--child", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
