import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import os
import shutil

import pytest


@pytest.fixture
def ngspice():
    """Tests that need ngspice: skipped on a developer machine without it, a failure in CI
    (.ci/run sets DRN_REQUIRE_NGSPICE=1)."""
    if shutil.which("ngspice") is None:
        msg = "ngspice is not installed (apt-get install ngspice libngspice0 libngspice0-dev, or make install)"
        if os.environ.get("DRN_REQUIRE_NGSPICE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def fake_ngspice(tmp_path, monkeypatch):
    """Put a fake `ngspice` first on PATH; its behaviour is given as a shell script body. The runners call
    `ngspice -b -r RAW DECK` (so $3 is the raw file, $4 the deck), in the deck's folder."""
    import stat

    def make(body):
        exe = tmp_path / "bin" / "ngspice"
        exe.parent.mkdir(exist_ok=True)
        exe.write_text("#!/bin/sh\n" + body + "\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{exe.parent}:{os.environ['PATH']}")
    return make


@pytest.fixture
def small_problem(tmp_path):
    """``make(batch)`` writes a 8-6-3 Shockley network (``net.npz``, input gain 20 V) and ``batch`` random feature
    rows in [0, 1] (``x.npy``) into ``tmp_path``, and returns (network, features): the CLI tests' problem."""
    import numpy as np

    from cdsolver import random_network, save_network

    def make(batch: int):
        net = random_network([8, 6, 3], "shockley", seed=0, input_gain=20.0)
        save_network(net, tmp_path / "net.npz")
        x = np.random.default_rng(0).uniform(0, 1, (batch, 4))
        np.save(tmp_path / "x.npy", x)
        return net, x
    return make
