"""Host memory settings for training on a CPU.

A CPU training step allocates and frees activations and gradients of tens of MB. With glibc's
default settings, freed memory at the top of the heap is handed back to the kernel and large
blocks are mapped afresh, so every step faults all of it in again. Training a coarse Pnet (128
patches, width 16) on 2 cores, 40 % of the CPU time was the kernel's (12 million page faults in 12
steps). Keeping freed memory in the process removes that work and changes no number computed:
3.87 -> 2.18 s per step on the machine of that day, the same losses (benchmarks/training_allocator.py
prints both runs and checks the losses).

Blocks above glibc's largest mmap threshold (32 MB) are still mapped afresh and faulted in at every
step, and a fine Pnet's training activations are 100-130 MB each (128 patches of 16 x 32 x 32 voxels,
12-16 channels): distilling a fine Pnet here, 3.9 million page faults per 10 s and half the CPU time
in the kernel. So malloc is also told to map nothing itself (M_MMAP_MAX = 0): every block comes
from the heap, which it keeps. With both, on 2026-11-28: coarse 2.35 -> 0.97 s and fine 4.87 -> 1.78 s
per step against glibc's defaults (the benchmark's `--model coarse|fine`).
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
KEEP_BYTES = 2047 << 20              # freed heap memory kept, and heap growth asked for at once
MMAP_THRESHOLD_BYTES = 32 << 20      # glibc's largest: blocks below it come from the heap

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory instead of returning it to the kernel after every
    step. For the process, once; memory already freed stays in it (up to about 2 GB more resident
    memory at the peak of a step). Returns whether the settings are in force (False off Linux, without
    glibc, or with RPRLOC_KEEP_FREED_MEMORY=0, where nothing is done)."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("RPRLOC_KEEP_FREED_MEMORY", "1") != "0" and sys.platform.startswith("linux"):
            # the process's own symbols hold the C library's mallopt (no library search)
            mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
            if mallopt is None:
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _applied = all(mallopt(p, v) == 1 for p, v in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                                                            (M_TRIM_THRESHOLD, KEEP_BYTES),
                                                            (M_TOP_PAD, KEEP_BYTES),
                                                            (M_MMAP_MAX, 0)))
    return _applied
