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


def test_written_files_are_readable_as_the_umask_says_and_keep_a_replaced_files_mode(tmp_path, monkeypatch):
    from cdsolver import files

    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        monkeypatch.setattr(files, "_UMASK", umask)  # (the process's umask, read once at import)
        with atomic_write(tmp_path / f"new{umask}.txt", "w") as f:
            f.write("x")
        assert stat.S_IMODE((tmp_path / f"new{umask}.txt").stat().st_mode) == mode
    (tmp_path / "new18.txt").chmod(0o640)
    with atomic_write(tmp_path / "new18.txt", "w") as f:
        f.write("y")
    assert stat.S_IMODE((tmp_path / "new18.txt").stat().st_mode) == 0o640
    old = os.umask(0o027)
    try:
        assert files._read_umask() == 0o027 and os.umask(old) == 0o027
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


def test_an_output_that_is_no_regular_file_is_refused_and_a_symlink_is_written_through(problem, capsys):
    os.mkfifo("fifo.npz")
    os.symlink("fifo.npz", "to-fifo.npz")
    os.symlink("loop2.npz", "loop1.npz")
    os.symlink("loop1.npz", "loop2.npz")
    for out, text in (("fifo.npz", "--out fifo.npz is not a regular file (a device, FIFO or socket)"),
                      ("to-fifo.npz", "--out to-fifo.npz is not a regular file"),
                      ("loop1.npz", "--out loop1.npz: Too many levels of symbolic links")):
        assert main(["solve", "net.npz", "x.npy", "--out", out]) == 2
        one_line_error(capsys, text)
    assert stat.S_ISFIFO(os.lstat("fifo.npz").st_mode) and os.path.islink("to-fifo.npz")
    with pytest.raises(FileExistsError, match="not a regular file"), atomic_write("to-fifo.npz") as f:
        f.write(b"x")  # (the library's writes refuse it too, before writing: the caller can save elsewhere)
    assert stat.S_ISFIFO(os.lstat("fifo.npz").st_mode) and not list(problem.glob(".*.tmp"))
    (problem / "sub").mkdir()
    (problem / "sub" / "old.npz").write_bytes(b"old")
    os.symlink("sub/old.npz", "link.npz")
    os.symlink("sub/new.npz", "dangling.npz")
    for out in ("link.npz", "dangling.npz"):
        assert main(["solve", "net.npz", "x.npy", "--out", out]) == 0
        assert os.path.islink(out) and np.load(out)["v1"].shape == (3, 8)
    assert sorted(p.name for p in (problem / "sub").iterdir()) == ["new.npz", "old.npz"]


def test_files_written_beside_or_inside_out_are_checked_before_any_work(problem, capsys):
    """A FIFO among the files a command writes besides --out (a figure's .pdf, ngspice's deck in check's DIR,
    training's checkpoint and history, decks in a netlist folder) was written into (a hang) or replaced, or
    raised a traceback: now one line before any work, the FIFO kept."""
    fifos = ["fig.pdf", "C/d.op.cir", "t.ckpt.npz", "h.history.csv", "N/sample1.cir", "F/sample0.cir"]
    for d in ("C", "N", "F"):
        (problem / d).mkdir()
    for f in fifos:
        os.mkfifo(f)
    (problem / "d.cir").write_text("d\nV1 a 0 1\nR1 a b 1k\nR2 b 0 1k\n.end\n")
    (problem / "h.ckpt.npz").unlink(missing_ok=True)
    save_network(random_network([16, 8, 4], "shockley", seed=0, input_gain=2.0), "small.npz")
    train = ["train", "--hidden", "4", "--epochs", "1", "--out"]
    for args, text in (([*train, "t.npz"], "t.ckpt.npz is not a regular"),
                       ([*train, "h.npz"], "h.history.csv is not a regular"),
                       (["netlist", "net.npz", "x.npy", "--out", "N"], "N/sample1.cir is not a regular file"),
                       (["circuit", "from-network", "small.npz", "x8.npy", "--out", "F"], "F/sample0.cir is not a "),
                       (["circuit", "check", "d.cir", "--out", "C"], "C/d.op.cir is not a regular file")):
        np.save("x8.npy", np.random.default_rng(0).uniform(0, 1, (2, 8)))
        assert main(args) == 2, args
        one_line_error(capsys, text)
    assert main(["train", "--hidden", "4", "--epochs", "1", "--out", "ok.npz"]) == 0
    capsys.readouterr()
    assert main(["plot", "ok.history.csv", "--out", "fig.png"]) == 2
    one_line_error(capsys, "fig.pdf is not a regular file")
    assert all(stat.S_ISFIFO(os.lstat(f).st_mode) for f in fifos) and not (problem / "fig.png").exists()


def test_a_file_that_is_no_npy_array_is_named_so(problem, capsys):
    (problem / "a.cir").write_text("t\nR1 a 0 1\n")
    assert main(["solve", "net.npz", "a.cir", "--out", "s.npz"]) == 2
    one_line_error(capsys, "inputs file a.cir is not a .npy array file (numpy.save writes one)")


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
    (["train", "--seed", "-1", "--out", "t.npz"], "--seed >= 0 is required"),
    (["train", "--amplifier", "1e300", "1", "--out", "t.npz"], "--amplifier A C: A must be a number in (0, 1e+06]"),
    (["train", "--input-gain", "inf", "--out", "t.npz"], "--input-gain must be a finite number > 0"),
    (["solve", "net.npz", "x.npy", "--anderson", "-1", "--out", "s.npz"], "--anderson must be in [0, 100]"),
    (["spice", "net.npz", "x.npy", "--beta", "-1", "--targets", "y.npy", "--out", "s.npz"], "|beta| < 1/R_on"),
    (["netlist", "net.npz", "x.npy", "--beta", "nan", "--targets", "y.npy", "--out", "D"], "needs a finite beta"),
    (["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--method", "spice-linear", "--timeout", "0",
      "--out", "g.npz"], "--timeout: expected seconds in (0, 86400]"),
])
def test_bad_options_are_one_line(problem, capsys, args, text):
    assert main(args) == 2
    one_line_error(capsys, text)
    assert not any(problem.glob("[sgt].npz")) and not (problem / "D").exists()


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
    one_line_error(capsys, "a.npz and a.ckpt.npz and a.history.csv of an earlier run exist")  # (all, at once)
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


def test_circuit_solve_keeps_its_deck_and_an_unreadable_network_is_one_line(problem, capsys, monkeypatch):
    assert main(["circuit", "from-network", "net.npz", "x.npy", "--out", "G"]) == 0
    deck = (problem / "G" / "sample0.cir").read_text()
    assert main(["circuit", "solve", "G/sample0.cir", "--out", "G/sample0.cir"]) == 2
    one_line_error(capsys, "is also an input of this command")
    assert (problem / "G" / "sample0.cir").read_text() == deck
    assert main(["circuit", "solve", "G/sample0.cir", "--anderson", "101", "--out", "s.npz"]) == 2
    one_line_error(capsys, "--anderson must be in [0, 100]")
    real_open = open

    def refuse(path, *a, **k):
        if str(path).endswith("net.npz"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", refuse)
    assert main(["solve", "net.npz", "x.npy", "--out", "s.npz"]) == 2
    one_line_error(capsys, "net.npz: cannot read (Permission denied)")


def test_a_study_timeout_beyond_the_limit_is_refused_before_the_folder(problem, capsys):
    (problem / "t.toml").write_text(ONE_CELL.replace("samples = 2", "samples = 2\ntimeout = 1e7"))
    assert main(["compare", "t.toml", "--out", "S"]) == 2
    one_line_error(capsys, "t.toml: study.timeout: expected seconds in (0, 86400]")
    assert not (problem / "S").exists()


def test_a_negative_value_with_an_exponent_is_a_value_not_an_option(problem):
    assert main(["solve", "net.npz", "x.npy", "--beta", "-1e-3", "--targets", "y.npy", "--out", "s.npz"]) == 0
    assert main(["solve", "net.npz", "x.npy", "--out", "free.npz"]) == 0
    with np.load(problem / "s.npz") as nudged, np.load(problem / "free.npz") as free:
        assert not np.array_equal(nudged["v2"], free["v2"])


def test_inputs_outside_0_1_get_a_note(problem, capsys):
    np.save("big.npy", np.load("x.npy") * 3)
    assert main(["solve", "net.npz", "big.npy", "--out", "s.npz"]) == 0
    assert "note: the inputs span [" in capsys.readouterr().err
    assert main(["solve", "net.npz", "x.npy", "--out", "s.npz"]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--lr", "1e300"], ["--target", "1e300"]])
def test_training_that_diverges_says_so_in_one_line(problem, capsys, option):
    assert main(["train", "--hidden", "4", "--epochs", "1", "--out", "d.npz", *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn train: error: training diverged in epoch 1, batch ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("args, text", [([], "drn: error: the following arguments are required: COMMAND"),
                                        (["solve"], "drn solve: error: the following arguments are required"),
                                        (["solve", "net.npz", "x.npy", "--out", "s.npz", "--tol", "abc"],
                                         "drn solve: error: argument --tol: invalid float value: 'abc'")])
def test_usage_errors_are_one_line(problem, capsys, args, text):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(text) and "--help)" in err and len(err.splitlines()) == 1, err


def test_shared_runner_says_its_timeout_does_not_bind_one_job(ngspice, problem, capsys):
    """``--runner shared --jobs 1 --timeout 0.001`` solved every sample without a word: in one process joblib
    cannot time ngspice out. A note says so (docs/spice.md)."""
    assert main(["spice", "net.npz", "x.npy", "--out", "s.npz", "--runner", "shared", "--timeout", "0.001"]) in (0, 3)
    assert "note: --timeout does not bind --runner shared with --jobs 1" in capsys.readouterr().err
