"""``drn circuit`` on bad input: unwritable outputs, unsupported networks, stale decks, bad time limits and empty
decks exit 2 with one line, before any work; ``check`` leaves no temporary folder; every argument has help."""

import argparse
import tempfile

import numpy as np
import pytest

from cdsolver import random_network, save_network
from studies.cli import build_parser, main

DIVIDER = "divider\nV1 in 0 2\nR1 in m 1k\nR2 m 0 3k\n.op\n.end\n"


def error_line(capsys) -> str:
    """The one line ``main`` wrote to stderr (and nothing to stdout)."""
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, (out, err)
    return err


@pytest.fixture
def deck(tmp_path):
    path = tmp_path / "d.cir"
    path.write_text(DIVIDER)
    return path


@pytest.fixture
def problem(tmp_path):
    """Paths of a Shockley network and of a function writing ``n`` input rows."""
    save_network(random_network([4, 3, 2], "shockley", seed=0, input_gain=2.0), tmp_path / "net.npz")

    def inputs(n: int) -> str:
        np.save(tmp_path / f"x{n}.npy", np.random.default_rng(0).uniform(0, 1, (n, 2)))
        return str(tmp_path / f"x{n}.npy")
    return str(tmp_path / "net.npz"), inputs


@pytest.mark.parametrize("out, says", [("missing/s.npz", "missing is not an existing folder"),
                                       ("folder", "is a folder; give a file name"),
                                       ("file.npz/s.npz", "file.npz is not an existing folder")])
def test_solve_refuses_an_unwritable_out(deck, tmp_path, capsys, monkeypatch, out, says):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.npz").touch()
    monkeypatch.chdir(tmp_path)
    assert main(["circuit", "solve", str(deck), "--out", out]) == 2
    assert says in error_line(capsys)


def test_solve_refuses_a_folder_it_cannot_write_in(deck, tmp_path, capsys, monkeypatch):
    """(As root a read-only folder is writable: the refusal of the OS is simulated.)"""
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    assert main(["circuit", "solve", str(deck), "--out", str(tmp_path / "s.npz")]) == 2
    assert "cannot write in" in error_line(capsys)
    assert not (tmp_path / "s.npz").exists()


def test_check_and_from_network_refuse_a_file_as_out_folder(deck, problem, tmp_path, capsys):
    (tmp_path / "cd.npz").touch()
    assert main(["circuit", "check", str(deck), "--out", str(tmp_path / "cd.npz")]) == 2
    assert "is a file, not a folder" in error_line(capsys)
    net, inputs = problem
    assert main(["circuit", "from-network", net, inputs(2), "--out", str(tmp_path / "cd.npz")]) == 2
    assert "is a file, not a folder" in error_line(capsys)


@pytest.mark.parametrize("element, amplifier, has", [("shockley", (4, 1), "this network has amplifiers"),
                                                     ("ideal", None, "this network has ideal diodes"),
                                                     ("pwl", None, "this network has pwl elements")])
def test_from_network_refuses_unsupported_networks_before_writing(problem, tmp_path, capsys, element, amplifier,
                                                                  has):
    _, inputs = problem
    save_network(random_network([4, 3, 2], element, seed=0, amplifier=amplifier), tmp_path / "other.npz")
    out = tmp_path / "decks"
    assert main(["circuit", "from-network", str(tmp_path / "other.npz"), inputs(2), "--out", str(out)]) == 2
    err = error_line(capsys)
    assert "linear or shockley elements without amplifiers" in err and has in err
    assert not out.exists()


def test_from_network_never_mixes_decks_of_two_runs(problem, tmp_path, capsys):
    net, inputs = problem
    out = tmp_path / "decks"
    assert main(["circuit", "from-network", net, inputs(3), "--out", str(out)]) == 0
    first = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(first) == ["sample0.cir", "sample1.cir", "sample2.cir"]
    capsys.readouterr()
    assert main(["circuit", "from-network", net, inputs(2), "--out", str(out)]) == 2
    assert "would not replace (sample2.cir)" in error_line(capsys)
    assert {p.name: p.read_text() for p in out.iterdir()} == first  # untouched
    assert main(["circuit", "from-network", net, inputs(3), "--out", str(out)]) == 0  # the same decks: replaced
    assert main(["circuit", "from-network", net, inputs(0), "--out", str(tmp_path / "none")]) == 2
    assert "no samples" in capsys.readouterr().err and not (tmp_path / "none").exists()


@pytest.mark.parametrize("t", ["nan", "0", "-1", "1e10", "inf"])
def test_check_refuses_bad_timeouts(deck, capsys, t):
    assert main(["circuit", "check", str(deck), "--timeout", t]) == 2
    assert "--timeout: expected seconds in (0, 86400]" in error_line(capsys)


def test_empty_decks_and_folders_are_bad_input_for_solve_and_check(tmp_path, capsys):
    (tmp_path / "empty.cir").touch()
    for action in (["solve", str(tmp_path / "empty.cir"), "--out", str(tmp_path / "s.npz")],
                   ["check", str(tmp_path / "empty.cir")]):
        assert main(["circuit", *action]) == 2
        assert "has no node but ground (0): nothing to solve" in error_line(capsys)
    assert not (tmp_path / "s.npz").exists()
    assert main(["circuit", "solve", str(tmp_path), "--out", str(tmp_path / "s.npz")]) == 2
    assert "is a folder, not a deck file" in error_line(capsys)


def test_check_without_out_leaves_no_temporary_folder(ngspice, deck, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["circuit", "check", str(deck)]) == 0
    assert "relative L1" in capsys.readouterr().out
    assert not list(tmp_path.glob("drn-circuit-*"))


def test_every_circuit_argument_has_help():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    circuit = next(a for a in sub.choices["circuit"]._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in circuit.choices.items():
        for action in parser._actions:
            assert action.help, f"drn circuit {name} {action.dest}: no help"
    assert "linear or shockley" in circuit.choices["from-network"].description


DIODE = "diode\nV1 a 0 2\nR1 a b 100\nD1 b 0 dw\n.model dw D(IS={is_})\n{options}.end\n"


def test_a_diode_is_below_ngspice_epsmin_is_refused_and_epsmin_is_read(ngspice, tmp_path, capsys):
    """ngspice raises a diode's IS below its epsmin (1e-28 A by default) to epsmin: CD, which takes IS as given,
    was 0.11 V off ngspice at IS=1e-30, and check exited 0. Such a deck is now refused in one line, and with
    ``.options epsmin=`` lowered both engines take IS as given (v(b) = 1.641 V at IS=1e-30, 1.529 V at 1e-28)."""
    low = tmp_path / "low.cir"
    low.write_text(DIODE.format(is_="1e-30", options=""))
    assert main(["circuit", "check", str(low)]) == 2
    assert "diode IS 1e-30 A is below epsmin 1e-28 A" in error_line(capsys)
    low.write_text(DIODE.format(is_="1e-30", options=".options epsmin=1e-40\n"))
    assert main(["circuit", "check", str(low)]) == 0
    assert "DISAGREE" not in capsys.readouterr().out
    assert main(["circuit", "solve", str(low), "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["v"][1] == pytest.approx(1.64107, abs=1e-5)  # (IS raised: 1.52899 V)


def test_check_exits_1_when_cd_and_ngspice_disagree(deck, monkeypatch, capsys):
    """``check`` compares the two engines: beyond ``--max-rel`` (default drn verify's 1e-9) it says so and exits 1
    (ngspice's answer shifted by 1e-6 here; the CSV row is still printed)."""
    import spice_bridge.runners as runners

    real = runners.op_deck

    def shifted(*args, **kw):
        vec, *rest = real(*args, **kw)
        return {k: v * (1 + 1e-6) for k, v in vec.items()}, *rest
    monkeypatch.setattr(runners, "op_deck", shifted)
    assert main(["circuit", "check", str(deck)]) == 1
    out = capsys.readouterr().out
    assert "CD and ngspice DISAGREE: relative L1 1.000e-06" in out and "rel_l1_solved" in out
    assert main(["circuit", "check", str(deck), "--max-rel", "1e-5"]) == 0
    assert main(["circuit", "check", str(deck), "--keep-options"]) == 0  # (no default limit there)
    capsys.readouterr()
    assert main(["circuit", "check", str(deck), "--max-rel", "0"]) == 2
    assert "--max-rel must be a positive number" in error_line(capsys)


def test_a_node_reached_only_through_a_capacitor_is_floating(tmp_path, capsys):
    """A capacitor is open at DC, but its nodes exist: one with no other connection has no DC solution (ngspice
    fails on it), and was silently left out of the results."""
    path = tmp_path / "c.cir"
    path.write_text("c\nV1 a 0 1\nR1 a 0 1k\nC1 a x 1u\n.end\n")
    assert main(["circuit", "solve", str(path), "--out", str(tmp_path / "s.npz")]) == 2
    assert "node x has no DC path to ground or a voltage source (floating)" in error_line(capsys)


@pytest.mark.parametrize("tol", ["1", "1e10", "0", "nan"])
def test_solve_refuses_a_tolerance_outside_0_1(deck, tmp_path, capsys, tol):
    assert main(["circuit", "solve", str(deck), "--out", str(tmp_path / "s.npz"), "--tol", tol]) == 2
    assert "tol must be a finite number > 0 and < 1" in error_line(capsys)


DROPPED = {
    "a continued analysis card": "t\nV1 a 0 1\nR1 a b 1k\nR2 b 0 1k\n.dc V1 0 1\n* a comment inside the card\n"
                                 "+ 0.1\n.control\nrun\n.endc\n+ 0.2\n.end\n",
    ".save of one node": "t\nV1 a 0 1\nR1 a b 1k\nR2 b c 1k\nR3 c 0 1k\n.save v(b)\n.print dc v(c)\n.op\n.end\n",
    ".end with a comment": "t\nV1 a 0 1\nR1 a b 1k\nR2 b 0 1k\n.end ; ngspice reads on\nR9 b 0 1k\n",
    "a $ line inside a dropped card": "t\nV1 a 0 1\nR1 a b 1k\n.save v(a)\n$ note\n+ v(b)\nR2 b 0 1k\n.end\n",
}


@pytest.mark.parametrize("text", DROPPED.values(), ids=DROPPED.keys())
def test_check_hands_ngspice_the_circuit_the_parser_read(ngspice, tmp_path, capsys, text):
    """``check`` drops analysis and output cards from ngspice's deck: it kept a dropped card's ``+`` lines (ngspice
    read ``R2 b 0 1k 0.1``: exit 1, DISAGREE), kept ``.save v(b)`` (no voltage for a and c: exit 2), and read
    on after ``.end ; comment`` — ngspice 39 reads past ``.end`` (its listing holds R9), and so do the parser and
    the check deck now, ours going last."""
    (tmp_path / "d.cir").write_text(text)
    assert main(["circuit", "check", str(tmp_path / "d.cir"), "--out", str(tmp_path)]) == 0
    assert "relative L1 0.000e+00" in capsys.readouterr().out
    kept = (tmp_path / "d.op.cir").read_text()
    assert not any(w in kept for w in ("0.1", "0.2", ".save", ".print", "; ngspice reads on"))


def test_ngspice_failing_under_checks_tight_options_exits_3_and_points_to_keep_options(ngspice, tmp_path, capsys):
    """A diode with RS = 25.4 µΩ: ngspice 39 finds no operating point at reltol=1e-12 (its own defaults do). That
    exited 2, as if the deck were bad input, without a word on ``--keep-options``."""
    (tmp_path / "d.cir").write_text("t\nV1 a 0 1\nR9 a d 1k\nD1 d 0 dm\n.model dm d(is=1e-14 rs=25.4u)\n.end\n")
    assert main(["circuit", "check", str(tmp_path / "d.cir"), "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "ngspice failed, nothing compared: ngspice found no operating point" in err and "--keep-options" in err
    assert main(["circuit", "check", str(tmp_path / "d.cir"), "--out", str(tmp_path / "k"), "--keep-options"]) == 0


def test_a_deck_ngspice_cannot_read_exits_2(ngspice, tmp_path, capsys):
    """ngspice refuses chains of more than 1,000 dependent parameters ("A level depth greater 1000 …"); its
    numparam messages were not known as deck errors, and check exited 3, "no operating point … --keep-options"."""
    n = 1100
    (tmp_path / "d.cir").write_text("t\n" + "".join(f".param p{i}={{p{i + 1}+1}}\n" for i in range(n))
                                    + f".param p{n}=0\nV1 a 0 {{p0}}\nR1 a b 1k\nR2 b 0 1k\n.end\n")
    assert main(["circuit", "check", str(tmp_path / "d.cir"), "--out", str(tmp_path / "o")]) == 2
    assert "ngspice could not read deck" in error_line(capsys)


def test_check_reads_an_include_as_the_parser_does(ngspice, tmp_path, capsys):
    """``.include 'm.lib' $ the models``: ngspice's deck got the path ``…/m.lib' $ the models`` (exit 2)."""
    (tmp_path / "m.lib").write_text("R2 b 0 1k\n")
    (tmp_path / "d.cir").write_text("t\nV1 a 0 1\nR1 a b 1k\n.include 'm.lib' $ the models\n.end\n")
    assert main(["circuit", "check", str(tmp_path / "d.cir"), "--out", str(tmp_path)]) == 0
    assert "relative L1 0.000e+00" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["solve", "check"])
@pytest.mark.parametrize("option, value, says", [("--max-iter", "0", "--max-iter must be >= 1, got 0"),
                                                 ("--anderson", "-1", "--anderson must be in [0, 100], got -1"),
                                                 ("--anderson", "101", "--anderson must be in [0, 100], got 101"),
                                                 ("--coarse-after", "-2", "--coarse-after must be >= -1"),
                                                 ("--tol", "0", "--tol must be a finite number > 0 and < 1")])
def test_solver_options_are_named_as_given_before_the_deck_is_read(tmp_path, capsys, action, option, value, says):
    """``--max-iter 0`` said ``max_sweeps must be >= 1, anderson in [0, 100] and coarse_after >= -1, got 0, 5,
    20``, and only after the deck was read (here: a deck that does not exist)."""
    out = ["--out", str(tmp_path / "s.npz")] if action == "solve" else []
    assert main(["circuit", action, str(tmp_path / "missing.cir"), *out, option, value]) == 2
    assert says in error_line(capsys)
