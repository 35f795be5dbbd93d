"""`tune_malloc` keeps freed tensor memory in the process for the next frame to reuse.

Each case runs in a fresh interpreter: malloc settings are per process and cannot be undone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Allocates and frees a 20 MB tensor, then prints the free bytes malloc keeps (mallinfo2).
PROGRAM = """
import ctypes, sys
from sam2.allocator import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else None
import torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
block = torch.ones(5 << 20)  # 20 MB of float32
del block
print(tuned, mallinfo2().fordblks)
"""


def _kept_after_free(mode: str) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    tuned, kept = result.stdout.split()
    return tuned, int(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc is Linux's")
def test_freed_tensor_memory_is_kept_for_reuse_only_when_tuned():
    tuned, kept = _kept_after_free("tuned")
    assert tuned == "True"
    assert kept >= 20 << 20, f"only {kept} free bytes kept after freeing a 20 MB tensor"
    _, kept_by_default = _kept_after_free("default")
    assert kept_by_default < 20 << 20, "glibc kept the block without tuning: the test shows nothing"


# Tuned, then 20 MB tensors interleaved with small ones that outlive them (a frame's results):
# freeing the large ones leaves holes the heap cannot trim from its top.
HOLES_PROGRAM = """
from sam2.allocator import release_freed_memory, tune_malloc
tune_malloc()
import torch

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

large, kept = [], []
for _ in range(16):
    large.append(torch.ones(5 << 20))  # 20 MB each, touched
    kept.append(torch.ones(1024))
del large
before = rss_mb()
released = release_freed_memory()
print(released, before, rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc is Linux's")
def test_release_gives_the_holes_back_to_the_kernel():
    result = subprocess.run([sys.executable, "-c", HOLES_PROGRAM], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=True)
    released, before, after = result.stdout.split()
    assert released == "True"
    assert float(before) - float(after) >= 200, f"RSS {before} MB before, {after} MB after"
