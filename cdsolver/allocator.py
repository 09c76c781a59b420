"""The C allocator's settings for a solve's large temporary arrays, and why they matter.

A sweep of a wide network makes and drops arrays of megabytes (crossbar products, node voltages, the stopping
test's differences). glibc's ``malloc`` maps allocations above its mmap threshold afresh, and hands the free
memory at the top of its heap back to the system once more than its trim threshold is free; either way the next
array of that size is new memory, and writing it first costs page faults: 1,364–4,835 per sweep of 128-1024²-10
and 128-1024³-10 at batch 360 on this project's machine, up to 44 % of the sweep's time
(docs/performance.md#the-allocator-keeps-large-temporaries-2026-11-30). ``configure`` raises both
thresholds: allocations below ``MMAP_MAX`` come from the heap, and up to ``KEEP`` of free heap stays with the
process, so the next array reuses it. Larger arrays are still mapped afresh.

glibc only (``mallopt``). Nothing is changed where the environment chooses either threshold itself
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or ``GLIBC_TUNABLES`` naming ``malloc.mmap_threshold``
or ``malloc.trim_threshold``; glibc reads them at start-up): the user's choice wins, and setting one of them is
the way to opt out.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: Allocations below this many bytes come from the heap: glibc's ceiling for its mmap threshold.
MMAP_MAX = 32 << 20
#: Free heap the process keeps instead of trimming it back to the system (bytes, per malloc arena).
KEEP = 512 << 20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")

_state = "not configured"


def configure() -> None:
    """Apply ``MMAP_MAX`` and ``KEEP`` through glibc's ``mallopt`` (once per process; see the module docstring)."""
    global _state
    if _state != "not configured":
        return
    chosen = [f"{n}={os.environ[n]}" for n in _ENV if n in os.environ]
    chosen += [f"GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']}"] if any(
        t in os.environ.get("GLIBC_TUNABLES", "") for t in _TUNABLES) else []
    if chosen:
        _state = "left to the environment (" + ", ".join(chosen) + ")"
        return
    mallopt = _mallopt()
    if mallopt is None:
        _state = "unchanged (not glibc)"
        return
    done = [what for code, value, what in ((_M_MMAP_THRESHOLD, MMAP_MAX, f"heap below {MMAP_MAX >> 20} MiB per array"),
                                           (_M_TRIM_THRESHOLD, KEEP, f"{KEEP >> 20} MiB of free heap kept"))
            if mallopt(code, value) == 1]
    _state = ", ".join(done) if len(done) == 2 else f"only: {', '.join(done) or 'nothing'} (mallopt refused the rest)"


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
