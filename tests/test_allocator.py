"""The C allocator keeps the memory of large temporaries (``cdsolver.allocator``): after importing cdsolver, an
array of megabytes made and dropped again and again is served from memory the process already has (no page
faults), a setting in the environment is left alone, and ``drn doctor`` says what is in effect."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdsolver.allocator import _ENV, _mallopt

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(_mallopt() is None or "LD_PRELOAD" in os.environ,
                                reason="glibc's malloc only (mallopt)")

# Pages faulted in per array while two 3 MiB arrays are made, written and dropped 20 times, after one warm-up round
FAULTS = """
import resource, sys
{imports}
import numpy as np
def rounds(n):
    for _ in range(n):
        a = np.ones(3 << 17); b = np.ones(3 << 17)  # 3 MiB each
        del a, b
rounds(1)
f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f) / 40 / ((3 << 20) / 4096))
"""


def _fresh(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in _ENV and k != "GLIBC_TUNABLES"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**base, **env}).stdout.strip()


def test_large_temporaries_reuse_memory():
    """Page faults per page of each array: none with cdsolver's settings (0.98 without them); with the allocator
    told to map every array afresh (the user's environment, which cdsolver leaves alone), about one (a third where
    transparent huge pages are always on)."""
    kept = float(_fresh(FAULTS.format(imports="import cdsolver")))
    assert kept < 0.01
    fresh = float(_fresh(FAULTS.format(imports="import cdsolver"), MALLOC_MMAP_THRESHOLD_="131072"))
    assert fresh > 0.1


def test_report():
    show = "import cdsolver.allocator as a; print(a.report())"
    assert _fresh(show) == "allocator: heap below 32 MiB per array, 512 MiB of free heap kept"
    assert _fresh(show, MALLOC_TRIM_THRESHOLD_="1000000") == (
        "allocator: left to the environment (MALLOC_TRIM_THRESHOLD_=1000000)")
    tunables = "glibc.malloc.trim_threshold=1000000"
    assert _fresh(show, GLIBC_TUNABLES=tunables) == f"allocator: left to the environment (GLIBC_TUNABLES={tunables})"
    assert _fresh(show, GLIBC_TUNABLES="glibc.malloc.arena_max=2") == (  # other tunables: configured
        "allocator: heap below 32 MiB per array, 512 MiB of free heap kept")


def test_doctor_prints_it(ngspice):
    out = _fresh("from studies.cli import main\nmain(['doctor'])").splitlines()
    assert "allocator: heap below 32 MiB per array, 512 MiB of free heap kept" in out
