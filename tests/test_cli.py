"""The drn command line: solve writes the documented states file; bad input exits 2 with one clear line."""

import re

import numpy as np
import pytest

from cdsolver import random_network, save_network, solve
from studies.cli import main


@pytest.fixture
def files(tmp_path, small_problem):
    return tmp_path, *small_problem(7)


def test_solve_writes_states(files, capsys):
    d, net, x = files
    assert main(["solve", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "s.npz")]) == 0
    assert "7 converged" in capsys.readouterr().out
    with np.load(d / "s.npz") as f:
        assert {"v1", "v2", "iterations", "residual", "converged"} <= set(f.files)
        assert f["v1"].shape == (7, 6) and f["v2"].shape == (7, 3) and f["converged"].all()
        ref = solve(net, net.encode(x))
        np.testing.assert_array_equal(f["v2"], ref.states[1])


def test_solve_nudged_and_encoded(files):
    d, net, x = files
    y = np.ones((7, 3))
    np.save(d / "y.npy", y)
    np.save(d / "v0.npy", net.encode(x))
    assert main(["solve", str(d / "net.npz"), str(d / "v0.npy"), "--encoded", "--beta", "0.5", "--targets",
                 str(d / "y.npy"), "--out", str(d / "s.npz")]) == 0
    with np.load(d / "s.npz") as f:
        np.testing.assert_array_equal(f["v2"], solve(net, net.encode(x), beta=0.5, targets=y).states[1])


def test_solve_paired_outputs_takes_one_target_per_pair(files, capsys):
    d, net, x = files
    paired = random_network([8, 6, 3], "shockley", seed=0, input_gain=20.0, outputs="paired")
    save_network(paired, d / "p.npz")
    np.save(d / "y.npy", np.ones((7, 3)))
    assert main(["solve", str(d / "p.npz"), str(d / "x.npy"), "--beta", "0.5", "--targets", str(d / "y.npy"),
                 "--out", str(d / "s.npz")]) == 0
    with np.load(d / "s.npz") as f:
        assert f["v2"].shape == (7, 6)
        np.testing.assert_array_equal(f["v2"], solve(paired, paired.encode(x), beta=0.5,
                                                     targets=np.ones((7, 3))).states[1])
    np.save(d / "y6.npy", np.ones((7, 6)))
    assert main(["solve", str(d / "p.npz"), str(d / "x.npy"), "--beta", "0.5", "--targets", str(d / "y6.npy"),
                 "--out", str(d / "s.npz")]) == 2
    assert r"targets: expected shape (7, 3)" in capsys.readouterr().err


def test_not_converged_exits_3_and_still_writes(files, capsys):
    d, net, x = files
    deep = random_network([8, 6, 6, 6, 3], "shockley", seed=0, input_gain=20.0, amplifier=(4, 1))
    save_network(deep, d / "deep.npz")
    assert main(["solve", str(d / "deep.npz"), str(d / "x.npy"), "--out", str(d / "s.npz"), "--max-iter", "1"]) == 3
    assert "hit --max-iter 1" in capsys.readouterr().err
    with np.load(d / "s.npz") as f:
        assert not f["converged"].any()


@pytest.mark.parametrize("args, msg", [
    (["missing.npz", "x.npy"], "network file not found"),
    (["net.npz", "nope.npy"], "inputs file not found"),
    (["net.npz", "bad.npy"], r"inputs: expected shape \(batch, 4\), got \(7, 5\)"),
    (["junk.npz", "x.npy"], "not a network file"),
    (["net.npz", "x.npy", "--targets", "bad.npy"], r"targets: expected shape \(7, 3\)"),
    (["net.npz", "x.npy", "--tol", "1e10"], r"--tol must be a finite number > 0 and < 1, got 1e\+?10"),
    (["net.npz", "x.npy", "--tol", "1"], r"--tol must be a finite number > 0 and < 1"),
])
def test_bad_input_exits_2(files, capsys, monkeypatch, args, msg):
    d, net, x = files
    monkeypatch.chdir(d)
    np.save(d / "bad.npy", np.zeros((7, 5)))
    (d / "junk.npz").write_text("not a zip")
    assert main(["solve", *args, "--out", "s.npz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn solve: error:")
    assert re.search(msg, err)


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    out = capsys.readouterr().out
    assert "--beta" in out and "--encoded" in out and "KCL" in out


@pytest.mark.parametrize("args, msg", [
    (["--tol", "1"], "--tol must be a finite number > 0 and < 1, got 1"),
    (["--tol", "1e10"], "--tol must be a finite number > 0 and < 1"),
    (["--input-gain", "1e300"], "--input-gain must be a finite number > 0 and <= 1e+06 V"),
])
def test_train_refuses_a_tolerance_or_gain_that_cannot_be_checked(tmp_path, capsys, args, msg):
    assert main(["train", *args, "--out", str(tmp_path / "n.npz")]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_beta_and_targets_each_alone_get_a_note(files, capsys):
    d, net, x = files
    np.save(d / "y.npy", np.ones((7, 3)))
    base = ["solve", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "s.npz")]
    assert main([*base, "--targets", str(d / "y.npy")]) == 0
    assert capsys.readouterr().err == "note: --targets without --beta: the free phase (beta 0) does not use them\n"
    assert main([*base, "--beta", "0.5"]) == 0
    assert capsys.readouterr().err == "note: --beta without --targets nudges the outputs towards 0 V\n"
    assert main([*base, "--beta", "0.5", "--targets", str(d / "y.npy")]) == 0
    assert capsys.readouterr().err == ""


def test_train_refuses_data_dir_with_digits(tmp_path, capsys):
    assert main(["train", "--data-dir", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "n.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn train: error: --data-dir: --dataset digits") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_train_does_not_replace_an_existing_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_network(random_network([8, 6, 3], "shockley", seed=0, input_gain=20.0), "net.npz")
    (tmp_path / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for out in ("net.npz", "notes.txt"):
        assert main(["train", "--hidden", "8", "--epochs", "0", "--out", out]) == 2
        err = capsys.readouterr().err
        assert err == f"drn train: error: --out {out} exists and a fresh run replaces no file (but the network of " \
                      "a run of 0 epochs): give another name or move it away\n"
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert main(["train", "--hidden", "8", "--epochs", "1", "--batch-size", "64", "--out", "r.npz"]) == 0
    assert main(["train", "--hidden", "8", "--epochs", "2", "--batch-size", "64", "--out", "r.npz", "--resume"]) == 0
    capsys.readouterr()
    (tmp_path / "r.npz").write_text("overwritten by hand")
    assert main(["train", "--hidden", "8", "--epochs", "3", "--batch-size", "64", "--out", "r.npz", "--resume"]) == 2
    assert "--out r.npz exists and is not a network written by drn train" in capsys.readouterr().err
    assert (tmp_path / "r.npz").read_text() == "overwritten by hand"


def test_resume_compares_resolved_options_and_names_the_first_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--hidden", "8", "--out", "r.npz"]
    assert main([*base, "--epochs", "1"]) == 0  # batch 8 and lr 0.01 by the default rule
    assert main([*base, "--lr", "0.01", "--batch-size", "8", "--epochs", "2", "--resume"]) == 0  # the same values
    capsys.readouterr()
    save_network(random_network([128, 8, 10], "shockley", seed=0, input_gain=20.0), "i2.npz")
    assert main([*base, "--init", "i2.npz", "--epochs", "3", "--resume"]) == 2
    assert capsys.readouterr().err == ("drn train: error: --init i2.npz conflicts with --resume, which continues the "
                                       "checkpoint's network (the run started from a random network): leave --init "
                                       "out\n")
    assert main(["train", "--out", "r.npz", "--epochs", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--hidden was [8], now [256]; give the same options as the first run (--hidden 8)" in err
    started = [*base[:-1], "s.npz", "--init", "i2.npz"]  # a run from --init resumes with or without it
    assert main([*started, "--epochs", "1"]) == 0
    assert main([*started[:-2], "--epochs", "2", "--resume"]) == 0
    assert main([*started, "--epochs", "3", "--resume"]) == 0
    assert main([*base, "--lr", "0.02", "--epochs", "3", "--resume"]) == 2
    assert "--lr was the default [0.01], now [0.02]; give the same options as the first run (--hidden 8)" in \
        capsys.readouterr().err


def test_train_gradient_and_compare_help_explain_each_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "scikit-learn's 8x8 digits" in out and "passes over the training data" in out
    assert "centered: +beta and -beta" in out and "seed of the initial network" in out
    assert "one lr for all layers" not in out and "one --lr is every layer's, unscaled" in out
    with pytest.raises(SystemExit):
        main(["gradient", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "implicit: CD's free phase and implicit differentiation" in out and "spice-linear: ngspice's" in out
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "examples in studies/configs/" in " ".join(capsys.readouterr().out.split())


def test_usage_and_config_errors_name_the_command(files, capsys, tmp_path):
    d, net, x = files
    with pytest.raises(SystemExit) as e:
        main(["solve", str(d / "net.npz"), str(d / "x.npy"), "--out", str(d / "s.npz"), "--foo"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "drn solve: error: unrecognized arguments: --foo (see drn solve --help)\n"
    assert main(["train", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "n.npz")]) == 2
    assert capsys.readouterr().err.startswith("drn train: error: --config")
