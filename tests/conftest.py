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
