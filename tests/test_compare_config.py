"""drn compare: every config value is checked before the results folder exists, in one line naming the file and
the key; TrainConfig checks its own fields (ValidationError, not KeyError) for the library, drn train and drn
compare alike."""

import pytest

from cdsolver.train import TrainConfig
from cdsolver.validation import ValidationError
from studies.cli import main

ONE = """
[study]
name = "one"
samples = 2
runners = ["batch"]
[grid]
depth = [1]
width = [8]
element = ["pwl"]
"""


@pytest.mark.parametrize("edit, msg", [
    (("", "[train]\nepochs = 1\noptimizer = \"sgd\"\n"), "train.optimizer must be 'momentum' or 'adam', got 'sgd'"),
    (("", "[train]\ngradient = \"bogus\"\n"), "train.gradient must be one of ('ep', 'implicit'), got 'bogus'"),
    (("", "[train]\naverage = 2\n"), "train.momentum and average must be in [0, 1)"),
    (("", "[train]\naverage = -1\n"), "must be in [0, 1), got momentum 0.9, average -1.0"),
    (("", "[train]\nlr_decay = 5\n"), "train.lr_decay must be in (0, 1], got 5.0"),
    (("", "[train]\nepochs = 1\nlr = 0.0\n"), "train.lr must be finite and > 0 (one rate, or one per layer), got 0.0"),
    (("", "[train]\ntarget = inf\n"), "train.target must be finite (V), got inf"),
    (("samples = 2", "samples = 2\ncd_tol = 2.0"), "study.cd_tol must be a finite number > 0 and < 1, got 2"),
    (("samples = 2", "samples = 2\nseeds = [-1]"), "study.seeds must be a non-empty list of integers >= 0, got [-1]"),
    (("samples = 2", "samples = 2\ndata_seed = -1"), "study.data_seed must be >= 0, got -1"),
    (("element = [\"pwl\"]", "element = [\"pwl\"]\namplifier = [\"A1.2.3C1\"]"), "grid.amplifier: 'A1.2.3C1' is not"),
    (("element = [\"pwl\"]", "element = [\"pwl\"]\namplifier = [\"A0C1\"]"),
     "grid.amplifier 'A0C1': A must be a number in (0, 1e+06], got 0.0"),
    (("element = [\"pwl\"]", "element = [\"pwl\"]\namplifier = [4]"), "grid.amplifier: 4 is not"),
    (("element = [\"pwl\"]", "element = [[1]]"), "grid.element has invalid values [[1]]"),
])
def test_a_bad_value_is_one_line_naming_file_and_key_before_the_folder_exists(tmp_path, capsys, edit, msg):
    old, new = edit
    cfg, out = tmp_path / "bad.toml", tmp_path / "res"
    cfg.write_text(ONE.replace(old, new) if old else ONE + new)
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"drn compare: error: {cfg}: ") and msg in err, err
    assert not out.exists()


@pytest.mark.parametrize("kw, msg", [
    (dict(optimizer="sgd"), "optimizer must be 'momentum' or 'adam', got 'sgd'"),
    (dict(gradient="bogus"), "gradient must be one of"),
    (dict(estimator="both"), "estimator must be one of"),
    (dict(average=2.0), "momentum and average must be in [0, 1)"),
    (dict(momentum=-0.1), "momentum and average must be in [0, 1)"),
    (dict(lr_decay=0.0), "lr_decay must be in (0, 1]"),
    (dict(lr=[0.1, float("nan")]), "lr must be finite and > 0 (one rate, or one per layer), got [0.1, nan]"),
    (dict(seed=-1), "seed >= 0 is required"),
    (dict(epochs=-1), "epochs >= 0 is required"),
    (dict(batch_size=0), "batch_size >= 1 is required"),
    (dict(max_sweeps=0), "max_sweeps >= 1 is required"),
    (dict(g_min=1.0, g_max=0.5), "g_min and g_max must be 0 <= g_min < g_max"),
    (dict(tol=0.0), "tol must be a finite number > 0"),
    (dict(eval_tol=float("inf")), "eval_tol must be a finite number > 0"),
    (dict(tol=1.5), "tol must be a finite number > 0 and < 1, got 1.5"),
])
def test_train_config_checks_every_field_when_made(kw, msg):
    with pytest.raises(ValidationError) as e:
        TrainConfig(**kw)
    assert str(e.value).startswith(msg)
    TrainConfig(lr=[0.1, 0.2], average=None, batch_size=None)  # (the rules' None and one rate per layer: accepted)
