"""The environment launch.py sets before torch loads: huge pages for CPU tensors, freed blocks kept."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modules import process_env

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

FAULTS = """
import resource, torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    torch.ones(64, 1024, 1024)  # 256 MB, allocated afresh each time like a UNet activation
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_apply_sets_the_defaults_and_keeps_the_users_choice():
    env = {}
    process_env.apply(env)
    assert env["THP_MEM_ALLOC_ENABLE"] == "1"
    env = {"THP_MEM_ALLOC_ENABLE": "0"}
    process_env.apply(env)
    assert env["THP_MEM_ALLOC_ENABLE"] == "0"


def page_faults(value: str) -> int:
    env = {"PATH": "/usr/bin:/bin", "THP_MEM_ALLOC_ENABLE": value, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.split()[-1])


MALLINFO = """
import ctypes, sys
from modules import process_env
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[-1] == "tuned":
    assert process_env.tune_malloc()
import torch
before = libc.mallinfo2().hblkhd
x = torch.empty(4, 1024, 1024)  # 16 MB, the size of many UNet activations
mapped = libc.mallinfo2().hblkhd - before
del x
print(mapped >> 20, libc.mallinfo2().fordblks >> 20)
"""


def mallinfo(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", MALLINFO, mode], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env={"PATH": "/usr/bin:/bin"})
    mapped, free_kept = out.stdout.split()[-2:]
    return int(mapped), int(free_kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_keeps_freed_activations_for_the_next_step():
    """glibc's default maps a 16 MB block on its own and unmaps it on free (the next step faults it in
    again, page by page); tuned, it comes from the heap and stays there, free, after the step."""
    assert mallinfo("plain") == (16, 0)
    mapped, free_kept = mallinfo("tuned")
    assert mapped == 0 and free_kept >= 16


@pytest.mark.skipif(not THP.is_file() or "[never]" in THP.read_text(), reason="no transparent huge pages here")
def test_torch_honours_the_huge_page_switch():
    """4 KB pages fault 512 times per 2 MB that a step touches anew; huge pages once."""
    plain, huge = page_faults("0"), page_faults("1")
    print(f"page faults for 8 x 256 MB: {plain} with 4 KB pages, {huge} with huge pages")
    assert huge * 5 < plain
