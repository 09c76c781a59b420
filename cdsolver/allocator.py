"""The C allocator's settings for a solve's large temporary arrays, and why they matter.

A sweep of a wide network makes and drops arrays of megabytes (crossbar products, node voltages, the stopping
test's differences). glibc's ``malloc`` serves allocations above its mmap threshold from fresh pages and trims the
top of its heap back to the system once more than its trim threshold is free; either way the next array of that
size is fresh memory again, and every 4 KiB page of it costs a page fault on first write. On this project's
machine (a virtual machine) that was ~2,100 faults and ~10 ms of a 100 ms sweep of 128-1024³-10 at batch 360
(docs/performance.md#allocator). ``configure`` raises both thresholds so that the freed memory is kept and reused:
arrays up to ``MMAP_MAX`` come from the heap, and up to ``KEEP`` of free heap stays with the process.

Only with glibc (``mallopt``); nothing is changed where the environment sets ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` (glibc reads them at start-up: the user's choice wins).
"""

from __future__ import annotations

import ctypes
import os
import sys

#: Largest allocation served from the heap (bytes): glibc's own ceiling for its mmap threshold.
MMAP_MAX = 32 << 20
#: Free heap the process keeps instead of trimming it back to the system (bytes).
KEEP = 512 << 20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_state = "not configured"


def configure() -> None:
    """Apply ``MMAP_MAX`` and ``KEEP`` through glibc's ``mallopt`` (once per process; see the module docstring)."""
    global _state
    if _state != "not configured":
        return
    if any(name in os.environ for name in _ENV):
        _state = "left to the environment (" + ", ".join(f"{n}={os.environ[n]}" for n in _ENV if n in os.environ) + ")"
        return
    mallopt = _mallopt()
    if mallopt is None:
        _state = "unchanged (not glibc)"
        return
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_MAX) == 1 and mallopt(_M_TRIM_THRESHOLD, KEEP) == 1
    _state = (f"heap up to {MMAP_MAX >> 20} MiB per array, {KEEP >> 20} MiB of free heap kept" if ok
              else "unchanged (mallopt refused the settings)")


def _mallopt():
    """glibc's ``mallopt(int, int) -> int``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
        if not hasattr(libc, "gnu_get_libc_version"):  # musl has mallopt, but not these parameters
            return None
        f = libc.mallopt
    except (OSError, AttributeError):
        return None
    f.argtypes, f.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return f


def report() -> str:
    """One line on the allocator settings (``drn doctor``)."""
    return f"allocator: {_state}"
