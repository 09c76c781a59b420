"""drn verify: exact states pass, a 1e-6 disagreement fails naming its layer, bad states files exit 2, ngspice
failures over the allowance exit 3; the JUnit and JSON reports hold the numbers."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from cdsolver import random_network, save_network, solve
from studies.cli import main
from studies.metrics import rel_l1
from studies.verify import compare_states, report_json, verify, write_report


@pytest.fixture
def files(tmp_path):
    net = random_network([8, 6, 5, 3], "shockley", seed=0, input_gain=20.0)
    save_network(net, tmp_path / "net.npz")
    x = np.random.default_rng(0).uniform(0, 1, (6, 4))
    np.save(tmp_path / "x.npy", x)
    sol = solve(net, net.encode(x))
    sol.save(tmp_path / "exact.npz")
    return tmp_path, net, x, sol.states


def args(d, states=None, *more):
    return ["verify", str(d / "net.npz"), str(d / "x.npy"), *(["--states", str(d / states)] if states else []),
            *map(str, more)]


def junit(path):
    suite = ET.parse(path).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    return {k: int(suite.get(k)) for k in ("tests", "failures", "errors")}, cases


def test_exact_states_pass(files, ngspice, capsys):
    d, *_ = files
    assert main(args(d, "exact.npz", "--report", d / "r.xml", "--beta", "-0")) == 0  # (-0: the free phase)
    out = capsys.readouterr().out
    assert out.count("PASS ") == 3 and "FAIL" not in out and "beta 0\n" in out
    counts, cases = junit(d / "r.xml")
    assert counts == {"tests": 4, "failures": 0, "errors": 0}
    assert set(cases) == {"cd vs ngspice", "theirs vs ngspice", "theirs vs cd", "ngspice reference"}
    assert "rel L1 P50 0 P90 0 max 0" in cases["theirs vs cd"].find("system-out").text


def test_perturbed_states_fail_naming_worst_layer(files, ngspice, capsys):
    d, net, x, states = files
    np.savez(d / "pert.npz", v1=states[0], v2=states[1] * (1 + 1e-6), v3=states[2])
    assert main(args(d, "pert.npz", "--report", d / "r.xml")) == 1
    err = capsys.readouterr().err
    assert "FAILED theirs vs ngspice: P90 rel L1" in err and "worst layer v2" in err
    assert "FAILED theirs vs cd" in err and "FAILED cd vs ngspice" not in err
    counts, cases = junit(d / "r.xml")
    assert counts == {"tests": 4, "failures": 2, "errors": 0}
    fail = cases["theirs vs cd"].find("failure")
    assert "worst layer v2" in fail.get("message") and "v2: rel L1 P50 1e-06" in fail.text
    assert cases["cd vs ngspice"].find("failure") is None
    # the same states pass a looser threshold; --max catches one bad sample that the P90 threshold lets through
    assert main(args(d, "pert.npz", "--p90", "1e-5")) == 0
    one = [s.copy() for s in states]
    one[2][4] *= 1 + 1e-6
    np.savez(d / "one.npz", **{f"v{l}": v for l, v in enumerate(one, 1)})
    assert main(args(d, "one.npz", "--p90", "1e-6")) == 0
    assert main(args(d, "one.npz", "--p90", "1e-6", "--max", "1e-9")) == 1
    assert "max rel L1" in capsys.readouterr().err


def test_comparison_numbers_and_worst_node(files):
    d, net, x, states = files
    b = [s.copy() for s in states]
    a = [s.copy() for s in states]
    a[1][3, 2] += 1e-4
    a[0] *= 1 + 1e-9
    c = compare_states("a vs b", a, b)
    assert c.worst_node == (3, 2, 2) and c.worst_sample == 3 and c.max_abs_V == pytest.approx(1e-4, rel=1e-9)
    np.testing.assert_allclose(c.rel_l1["max"], rel_l1(a, b)[3], rtol=1e-15)
    assert c.layers[0]["p50"] == pytest.approx(1e-9, rel=1e-6) and c.worst_layer("max") == 2
    assert compare_states("rows", a, b, rows=[0, 1]).samples == 2
    assert c.check(1e-9, None).failure.startswith("P90 rel L1") and c.check(1.0, None).passed


@pytest.mark.parametrize("case, message", [
    ("sizes", "v2 has 4 nodes, layer 2 of the network has 5"),
    ("missing", "has layers v1..v1, the network has 3 layers"),
    ("nan", "NaN/inf not allowed"),
    ("other", "has layers v1..v4, the network has 3 layers"),
    ("batch", "v1 has 5 samples, INPUTS has 6"),
    ("converged length", "converged is bool (5,), needs bool (6,): one flag per sample of INPUTS"),  # (was ignored)
    ("converged type", "converged is float64 (6,), needs bool (6,)"),
])
def test_bad_states_exit_2(files, case, message, capsys):
    d, net, x, s = files
    bad = {"sizes": dict(v1=s[0], v2=s[1][:, :4], v3=s[2]), "missing": dict(v1=s[0], v3=s[2]),
           "nan": dict(v1=s[0], v2=np.where(np.eye(6, 5) > 0, np.nan, s[1]), v3=s[2]),
           "other": dict(v1=s[0], v2=s[1], v3=s[2], v4=s[2]),
           "batch": dict(v1=s[0][:5], v2=s[1][:5], v3=s[2][:5]),
           "converged length": dict(v1=s[0], v2=s[1], v3=s[2], converged=np.zeros(5, dtype=bool)),
           "converged type": dict(v1=s[0], v2=s[1], v3=s[2], converged=np.full(6, np.nan))}[case]
    np.savez(d / "bad.npz", **bad)
    assert main(args(d, "bad.npz")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("drn verify: error:") and message in err[0]


@pytest.mark.parametrize("kind, message", [
    ("npy", "is not an .npz archive: --states must be an .npz with arrays v1..vL (numpy.savez)"),
    ("folder", "is a folder, not a file"),
])
def test_a_states_file_that_is_no_npz_archive_is_one_line(files, kind, message, capsys):
    d, *_ = files
    if kind == "npy":
        np.save(d / "theirs.npy", np.zeros((6, 6)))
    else:
        (d / "theirs.npy").mkdir()
    assert main(args(d, "theirs.npy")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"drn verify: error: states file {d / 'theirs.npy'} {message}"]


def test_bad_options_exit_2(files, capsys):
    d, *_ = files
    assert main(args(d, None, "--report", d / "r.txt")) == 2
    assert "must end in .json or .xml" in capsys.readouterr().err
    for name in (".json", ".XML"):  # (pathlib: a hidden file's name, no suffix: it said "must end in .json")
        assert main(args(d, None, "--report", d / name)) == 2
        assert capsys.readouterr().err.endswith(f"--report {d / name}: needs a name before {name}\n")
    assert main(args(d, "missing.npz")) == 2
    assert "states file not found" in capsys.readouterr().err
    from spice_bridge.runners import MAX_JOBS

    for jobs in (0, MAX_JOBS + 1):  # the bound of drn spice --jobs, one check shared with it
        assert main(args(d, None, "--jobs", jobs)) == 2
        err = capsys.readouterr().err
        assert err == f"drn verify: error: --jobs must be 1..{MAX_JOBS} (4 per core), got {jobs}\n", err


def test_module_entry_point_reports_bad_input_in_one_line(files):
    """``python -m studies.cli``: errors raised by command modules (a CliError from the shared loader) exit 2."""
    d, *_ = files
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "studies.cli", *args(d, None)[:1], str(d / "nonet.npz"),
                        str(d / "x.npy")], capture_output=True, text=True, cwd=root, env={**os.environ,
                        "PYTHONPATH": str(root)})
    assert p.returncode == 2 and p.stderr.strip() == f"drn verify: error: network file not found: {d / 'nonet.npz'}"


@pytest.fixture
def flaky_ngspice(tmp_path, monkeypatch, ngspice):
    """An ``ngspice`` on PATH that fails every .dc sweep and sample 1's .op, and runs the real one otherwise."""
    real = shutil.which("ngspice")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ngspice"
    fake.write_text(f'#!/bin/sh\nfor deck; do :; done\n'  # the deck is the last argument
                    f'case "$deck" in batch*|sample1.cir) echo "doAnalyses: no convergence"; exit 1;; '
                    f'esac\nexec {real} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_spice_failures_over_allowance_exit_3(files, flaky_ngspice, capsys):
    d, *_ = files
    assert main(args(d, "exact.npz", "--report", d / "r.xml")) == 3
    assert "ngspice failed on 1 samples (allowed 0), first: sample 1: doAnalyses: no convergence" \
        in capsys.readouterr().err
    counts, cases = junit(d / "r.xml")
    assert counts == {"tests": 4, "failures": 0, "errors": 1}
    assert cases["ngspice reference"].find("error").text.startswith("sample 1: doAnalyses: no convergence")
    assert main(args(d, "exact.npz", "--allow-spice-failures", "1", "--report", d / "r.json")) == 0
    rep = json.loads((d / "r.json").read_text())
    assert rep["ngspice"]["failed"] == 1 and rep["exit_code"] == 0
    assert [c["samples"] for c in rep["comparisons"]] == [5, 5, 6]  # sample 1 left out against ngspice only


def test_report_suffixes_are_read_in_any_case(files, ngspice):
    """``--report R.XML`` was refused (and ``R.JSON`` would have been written as XML)."""
    d, *_ = files
    assert main(args(d, "exact.npz", "--report", d / "R.XML")) == 0
    assert junit(d / "R.XML")[0] == {"tests": 4, "failures": 0, "errors": 0}
    assert main(args(d, "exact.npz", "--report", d / "R.Json")) == 0
    assert json.loads((d / "R.Json").read_text())["exit_code"] == 0


def test_ngspice_failing_on_every_allowed_sample_exits_3(files, tmp_path, monkeypatch, capsys):
    """With ``--allow-spice-failures 6`` and ngspice failing on all 6 samples nothing was compared with it: that
    exited 1 ("disagreement"); it is a solver failure, exit 3, said in one line."""
    fake = tmp_path / "bin" / "ngspice"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "doAnalyses: no convergence"\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    d, *_ = files
    assert main(args(d, "exact.npz", "--allow-spice-failures", "6", "--report", d / "r.xml")) == 3
    assert "error: ngspice failed on all 6 samples (allowed 6): nothing compared with it, first: sample 0" \
        in capsys.readouterr().err
    counts, cases = junit(d / "r.xml")
    assert counts["errors"] == 1
    assert "failed on all 6 samples" in cases["ngspice reference"].find("error").get("message")


def test_json_report_round_trips(files, ngspice):
    d, net, x, states = files
    theirs = [states[0], states[1] * (1 + 1e-6), states[2]]
    v = verify(net, net.encode(x), theirs=theirs)
    write_report(v, d / "r.json")
    back = json.loads((d / "r.json").read_text())
    assert back == report_json(v)
    c = back["comparisons"][2]
    assert c["name"] == "theirs vs cd" and not c["passed"] and "worst layer v2" in c["failure"]
    assert c["rel_l1"]["p90"] == v.comparisons[2].rel_l1["p90"] and c["layers"][1]["layer"] == 2
    assert c["worst_node"]["layer"] == 2 and back["exit_code"] == 1 and back["theirs"] is None
    assert not list(d.glob("*.tmp"))
