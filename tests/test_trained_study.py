"""A study with trained cells reports what each network learned: test error, epochs and training seconds per
cell, in summary.csv and summary.md, from the network the cell saved."""

import pandas as pd
import pytest

from cdsolver import load_network
from cdsolver.datasets import load_digits
from cdsolver.train import TrainConfig, evaluate
from studies.cli import main

TRAINED = """
[study]
name = "trained"
samples = 3
runners = ["batch"]
[grid]
depth = [2]
width = [6]
element = ["shockley-double"]
amplifier = ["A4C1-inv"]
[train]
epochs = 1
"""


def test_trained_cells_report_their_test_error(ngspice, tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TRAINED)
    out = tmp_path / "res"
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    summ = pd.read_csv(out / "summary.csv", comment="#")
    assert len(summ) == 1 and summ.train_epochs[0] == 1 and summ.train_s[0] > 0
    net = load_network(next((out / "networks").glob("*.npz")))
    assert net.amplifier.invert == "half" and net.sizes == [128, 6, 6, 10]
    err = evaluate(net, load_digits(seed=0)["test"], TrainConfig())[0]
    assert summ.test_error[0] == pytest.approx(err) and net.meta()["training"]["test_error"] == pytest.approx(err)
    assert main(["plot", str(out)]) == 0
    assert "test_error" in (out / "summary.md").read_text()
