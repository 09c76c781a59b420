"""Idle pool threads sleep (``cdsolver.threads``): importing cdsolver sets OpenBLAS's and OpenMP's wait settings
before numpy and numba load, keeps a value the user set, and ``drn doctor`` says what is in effect."""

import os
import subprocess
import sys
from pathlib import Path

from cdsolver.threads import SPIN_FREE

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str, **env: str) -> list[str]:
    """stdout lines of ``code`` in a fresh interpreter whose environment lacks the SPIN_FREE names (plus ``env``)."""
    base = {k: v for k, v in os.environ.items() if k not in SPIN_FREE}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**base, **env}).stdout.splitlines()


SHOW = "import os, sys; print('numpy' in sys.modules); print([os.environ.get(k) for k in sorted(SPIN_FREE)])"


def test_cdsolver_import_sets_both_before_numpy():
    numpy_loaded, values = _fresh("from cdsolver.threads import SPIN_FREE\n" + SHOW)
    assert numpy_loaded == "False"
    assert values == str([SPIN_FREE[k] for k in sorted(SPIN_FREE)])


def test_drn_entry_point_sets_them_before_numpy():
    """``drn`` imports studies.cli first: the settings are in the environment before any command loads numpy."""
    numpy_loaded, values = _fresh("import studies.cli\nfrom cdsolver.threads import SPIN_FREE\n" + SHOW)
    assert numpy_loaded == "False"
    assert values == str([SPIN_FREE[k] for k in sorted(SPIN_FREE)])


def test_the_users_value_wins():
    _, values = _fresh("import cdsolver\nfrom cdsolver.threads import SPIN_FREE\n" + SHOW, OMP_WAIT_POLICY="ACTIVE",
                       OPENBLAS_THREAD_TIMEOUT="28")
    assert values == str(["ACTIVE", "28"])  # sorted names: OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT


def test_report_names_the_settings_and_a_late_import():
    early = _fresh("from cdsolver import threads; print(threads.report())")[0]
    assert early == "idle threads: OPENBLAS_THREAD_TIMEOUT=4, OMP_WAIT_POLICY=PASSIVE"
    late = _fresh("import numpy\nfrom cdsolver import threads; print(threads.report())")[0]
    assert late.startswith(early) and "numpy was loaded before cdsolver" in late
    # numpy first, but the shell set the variable: OpenBLAS read it, no warning
    assert _fresh("import numpy\nfrom cdsolver import threads; print(threads.report())",
                  OPENBLAS_THREAD_TIMEOUT="4")[0] == early


def test_doctor_prints_the_settings(ngspice):
    out = _fresh("from studies.cli import main\nmain(['doctor'])")
    assert "idle threads: OPENBLAS_THREAD_TIMEOUT=4, OMP_WAIT_POLICY=PASSIVE" in out
