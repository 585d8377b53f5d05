"""Environment variables the engine wants set before torch is imported (stdlib only).

The UNet's activations are allocated afresh at every step and freed right after; with glibc's
defaults and 4 KB pages one SD1.5 UNet call (batch 2, one thread) faulted in ~468,000 pages at
256x256 and ~740,000 at 512x512: memory handed back to the system and touched anew each time.
A1111 fights the same cost by preloading tcmalloc; we keep glibc and set:
- THP_MEM_ALLOC_ENABLE=1: PyTorch's own switch (c10/core/alloc_cpu.cpp) putting CPU allocations
  of 2 MB and more on transparent huge pages (512x fewer faults for those);
- MALLOC_MMAP_THRESHOLD_=32 MiB (glibc's largest) and MALLOC_TRIM_THRESHOLD_=1 GiB: blocks up to
  32 MiB come from the heap and up to 1 GiB of freed heap stays with the process for the next step.
Measured (bare UNet call, one thread): 256x256 2.93-3.03 s -> 2.60 s (faults 468k -> 17k); 512x512
10.55-10.70 s -> 10.08-10.10 s (740k -> 8-24k). A value the user set wins (THP_MEM_ALLOC_ENABLE=0
turns huge pages off). torch reads its variable at its first allocation: apply() must run before
`import torch`; glibc reads its variables only when a process starts, so tune_malloc() sets the
same values in the running process (child processes get them from the environment).
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import MutableMapping

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's malloc.h

DEFAULTS = {
    "THP_MEM_ALLOC_ENABLE": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
}


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    for key, value in DEFAULTS.items():
        environ.setdefault(key, value)


def tune_malloc(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Apply the MALLOC_* values to this process through mallopt (glibc on Linux; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    done = True
    for param, key in ((M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"), (M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_")):
        try:
            value = int(environ.get(key, DEFAULTS[key]))
        except ValueError:
            value = int(DEFAULTS[key])
        done = bool(mallopt(param, value)) and done
    return done
