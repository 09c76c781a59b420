"""Outputs and bad options of the command line: nothing overwritten or mixed, files readable as the umask says,
and one line with exit 2 (not a traceback) for each option a tester broke."""

import os
import stat
import tempfile

import numpy as np
import pytest

from cdsolver import random_network, save_network, solve
from cdsolver.files import atomic_write, check_out
from cdsolver.validation import ValidationError, check_timeout
from studies.cli import main


@pytest.fixture
def problem(tmp_path, monkeypatch):
    """net.npz (128-8-10 double Shockley), x.npy (3 samples) and y.npy in tmp_path, the working folder."""
    monkeypatch.chdir(tmp_path)
    net = random_network([128, 8, 10], "shockley", seed=0, input_gain=40.0)
    x = np.random.default_rng(0).uniform(0, 1, (3, 64))
    save_network(net, "net.npz")
    np.save("x.npy", x)
    np.save("y.npy", solve(net, net.encode(x)).states[-1] + 0.1)
    return tmp_path


ONE_CELL = """
[study]
name = "one"
samples = 2
[grid]
depth = [1]
width = [8]
element = ["pwl"]
"""


def one_line_error(capsys, text: str) -> None:
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args", [["solve", "net.npz", "x.npy", "--out", "net.npz"],
                                  ["solve", "net.npz", "x.npy", "--out", "x.npy"],
                                  ["solve", "net.npz", "x.npy", "--beta", "0.1", "--targets", "y.npy", "--out",
                                   "./y.npy"],
                                  ["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--out", "y.npy"]])
def test_out_may_not_be_an_input(problem, capsys, args):
    before = {p: (problem / p).read_bytes() for p in ("net.npz", "x.npy", "y.npy")}
    assert main(args) == 2
    one_line_error(capsys, "is also an input of this command")
    assert {p: (problem / p).read_bytes() for p in before} == before


def test_written_files_are_readable_as_the_umask_says_and_keep_a_replaced_files_mode(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        os.umask(0o077)
        with atomic_write(tmp_path / "private.txt", "w") as f:
            f.write("x")
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
        (tmp_path / "new.txt").chmod(0o640)
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("y")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_a_folder_that_cannot_be_written_is_refused_before_the_work(problem, capsys, monkeypatch):
    """(As root a read-only folder is writable: the refusal of the OS is simulated.)"""
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    for args in (["solve", "net.npz", "x.npy", "--out", "s.npz"], ["netlist", "net.npz", "x.npy", "--out", "D"]):
        assert main(args) == 2
        one_line_error(capsys, "cannot write in")
    assert not (problem / "s.npz").exists() and not (problem / "D").exists()
    with pytest.raises(ValidationError, match="cannot write in"):
        check_out(problem / "D", folder=True)


def test_netlist_refuses_a_folder_with_decks_it_would_not_replace(problem, capsys):
    assert main(["netlist", "net.npz", "x.npy", "--out", "D"]) == 0
    np.save("x2.npy", np.load("x.npy")[:2])
    before = sorted(p.name for p in (problem / "D").iterdir())
    assert main(["netlist", "net.npz", "x2.npy", "--out", "D"]) == 2
    one_line_error(capsys, "holds 1 deck(s) of an earlier run that this one would not replace (sample2.cir)")
    assert sorted(p.name for p in (problem / "D").iterdir()) == before
    assert main(["netlist", "net.npz", "x.npy", "--out", "D"]) == 0  # the same samples again: replaced


@pytest.mark.parametrize("args, text", [
    (["solve", "net.npz", "x.npy", "--anderson", "101", "--out", "s.npz"], "must be in [0, 100]"),
    (["solve", "net.npz", "x.npy", "--beta", "-1", "--targets", "y.npy", "--out", "s.npz"], "|beta| < 1/R_on = 1 S"),
    (["solve", "net.npz", "x.npy", "--beta", "nan", "--targets", "y.npy", "--out", "s.npz"],
     "a nudge needs a finite beta"),
    (["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--method", "ep", "--beta", "1", "--out", "g.npz"],
     "keeps this network convex only for beta <"),
    (["spice", "net.npz", "x.npy", "--timeout", "1e7", "--out", "s.npz"], "expected seconds in (0, 86400]"),
    (["train", "--seed", "-1", "--out", "t.npz"], "--seed must be in [0, 2^32)"),
])
def test_bad_options_are_one_line(problem, capsys, args, text):
    assert main(args) == 2
    one_line_error(capsys, text)
    assert not any(problem.glob("[sgt].npz"))


def test_check_timeout():
    assert check_timeout(None) is None and check_timeout(5) == 5.0 and check_timeout("86400") == 86400.0
    for t in (0, -1, float("nan"), float("inf"), 86401, "x"):
        with pytest.raises(ValidationError, match="timeout"):
            check_timeout(t)


def test_compare_refuses_a_bad_config_file_and_dask_address_before_making_the_folder(problem, capsys):
    (problem / "bin.toml").write_bytes(b"\x93NUMPY\x00\xff")
    assert main(["compare", "bin.toml", "--out", "S"]) == 2
    one_line_error(capsys, "not valid TOML")
    (problem / "one.toml").write_text(ONE_CELL)
    assert main(["compare", "one.toml", "--out", "S", "--dask", "garbage"]) == 2
    one_line_error(capsys, "is not a scheduler address")
    assert not (problem / "S").exists()
    assert main(["train", "--config", "bin.toml", "--out", "t.npz"]) == 2
    one_line_error(capsys, "not valid TOML")


def test_train_keeps_an_earlier_run_and_says_what_it_wrote(problem, capsys):
    common = ["train", "--hidden", "4", "--batch-size", "256"]
    assert main(common + ["--epochs", "0", "--out", "a.npz"]) == 0
    assert "wrote a.npz (no epoch run: no history or checkpoint)" in capsys.readouterr().out
    assert main(common + ["--epochs", "1", "--out", "a.npz"]) == 0
    capsys.readouterr()
    history = (problem / "a.history.csv").read_bytes()
    assert main(common + ["--epochs", "1", "--out", "a.npz"]) == 2
    one_line_error(capsys, "a.ckpt.npz and a.history.csv of an earlier run exist")
    assert (problem / "a.history.csv").read_bytes() == history


def test_train_where_every_sample_is_left_out_says_so_and_exits_3(problem, capsys):
    assert main(["train", "--hidden", "4", "--batch-size", "256", "--epochs", "1", "--max-sweeps", "1",
                 "--out", "b.npz"]) == 3
    out, err = capsys.readouterr()
    assert "1077 of 1077 samples left out (a phase hit --max-sweeps 1)" in out
    assert "the network did not learn; raise --max-sweeps" in err


@pytest.mark.parametrize("content", [None, b"", b"a,b\n1,2\n", b"\x80\x02random bytes"])
def test_a_file_that_is_no_npz_archive_is_not_a_network(problem, capsys, content):
    if content is None:
        np.save("notnet.npy", np.zeros((3, 64)))
        path = "notnet.npy"
    else:
        (problem / "notnet.npz").write_bytes(content)
        path = "notnet.npz"
    assert main(["solve", path, "x.npy", "--out", "s.npz"]) == 2
    one_line_error(capsys, f"{path}: not a network file (a drn/1 network is a NumPy .npz archive)")


def test_version_and_max_iter(problem, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("drn-cd ")
    assert main(["solve", "net.npz", "x.npy", "--max-iter", "0", "--out", "s.npz"]) == 2
    one_line_error(capsys, "--max-iter must be >= 1, got 0")
