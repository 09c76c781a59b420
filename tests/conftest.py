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
