"""CI regression against ngspice: the golden decks in netlists/ are regenerated (text must match) and re-run
by real ngspice (states must match the stored CD states to 1e-12 relative L1)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdsolver import load_network, load_states
from spice_bridge.netlist import deck, node
from spice_bridge.runners import parse_raw

GOLDEN = Path(__file__).parent.parent / "netlists"
sys.path.insert(0, str(GOLDEN))
from make_golden import CASES  # noqa: E402


@pytest.mark.parametrize("name", CASES)
def test_deck_text_is_reproduced(name):
    net = load_network(GOLDEN / f"{name}.net.npz")
    v0, y = np.load(GOLDEN / f"{name}.v0.npy"), np.load(GOLDEN / f"{name}.targets.npy")
    beta = CASES[name][4]
    assert deck(net, v0, beta=beta, targets=y, title=f"golden deck {name}") == (GOLDEN / f"{name}.cir").read_text()


@pytest.mark.parametrize("name", CASES)
def test_ngspice_on_golden_deck_matches_cd(ngspice, name, tmp_path):
    raw = tmp_path / "out.raw"
    p = subprocess.run(["ngspice", "-b", "-r", str(raw), str(GOLDEN / f"{name}.cir")], capture_output=True,
                       text=True, timeout=120)
    assert raw.exists(), p.stdout + p.stderr
    vec = parse_raw(raw)
    cd = load_states(GOLDEN / f"{name}.states.npz")
    sp = [np.stack([vec[f"v({node(l, j)})"][: len(cd[0])] for j in range(s.shape[1])], axis=1)
          for l, s in enumerate(cd, 1)]
    a, b = np.concatenate(sp, axis=1), np.concatenate(cd, axis=1)
    assert (np.abs(a - b).sum(axis=1) / np.abs(b).sum(axis=1)).max() <= 1e-12
