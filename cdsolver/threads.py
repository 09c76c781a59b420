"""The two thread pools of a solve, and why their idle threads must sleep.

A sweep alternates OpenBLAS's crossbar products and numba's node kernels (a GNU OpenMP pool), layer after layer.
By default each library's idle threads keep spinning after their work — OpenBLAS's for 2^28 cycles (~0.1 s), GNU
OpenMP's for ~300,000 spins — on the very cores the other pool is about to use. On 2 cores that made a sweep of
128-1024-10 or 128-1024³-10 cost 2.2–2.9× its single-thread CPU time, and two cores slower than one
(docs/performance.md#thread-pools).

``SPIN_FREE`` are the settings under which idle threads sleep at once; ``configure`` applies each one the
environment does not set already (the user's value wins). Both libraries read them when they load, so ``cdsolver``
calls ``configure`` when it is imported, before numpy and numba; a program that imported numpy first keeps
OpenBLAS's spinning unless its environment sets the variable (``drn`` imports cdsolver first).
"""

from __future__ import annotations

import os
import sys

#: Environment settings that make idle pool threads sleep: OpenBLAS's spin of 2^4 cycles (its minimum), and the
#: OpenMP standard's passive wait.
SPIN_FREE = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}

_spinning = False  # numpy (and so OpenBLAS) was loaded before configure, with no OPENBLAS_THREAD_TIMEOUT set


def configure() -> None:
    """Set each ``SPIN_FREE`` variable the environment leaves unset. They stay in ``os.environ``: child processes
    and OpenMP libraries loaded later in the process get them too (set a variable first to keep your own)."""
    global _spinning
    _spinning = "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ
    for name, value in SPIN_FREE.items():
        os.environ.setdefault(name, value)


def report() -> str:
    """One line on the settings in effect (``drn doctor``, or a program that imports cdsolver)."""
    items = ", ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in SPIN_FREE)
    late = " (numpy was loaded before cdsolver: OpenBLAS's threads still spin)" if _spinning else ""
    return f"idle threads: {items}{late}"
