"""drn verify and drn plot on bad input: one line and exit 2 before any work (a report or figure path that cannot be
written, a missing, empty, truncated or foreign file); CD states that are NaN fail their comparisons by name and
exit 3 instead of crashing."""

import json
import tempfile

import numpy as np
import pandas as pd
import pytest

import cdsolver.solver
from cdsolver import solve
from studies.cli import main
from studies.verify import compare_states



def one_line(capsys, command: str) -> str:
    """The single stderr line of a ``drn COMMAND`` error (nothing on stdout: no work was done)."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"drn {command}: error: "), err
    return lines[0]


@pytest.fixture
def problem(tmp_path, small_problem):
    """A 8-6-3 network, 2 samples, CD's exact states, and the same network with Is = 1e300 A (CD's states NaN)."""
    net, x = small_problem(2)
    solve(net, net.encode(x)).save(tmp_path / "exact.npz")
    f = dict(np.load(tmp_path / "net.npz"))
    meta = json.loads(str(f["meta"]))
    meta["element"]["Is"] = 1e300
    np.savez(tmp_path / "nan.npz", **(f | {"meta": np.array(json.dumps(meta))}))
    return tmp_path


def verify_args(d, net="net.npz", *more):
    return ["verify", str(d / net), str(d / "x.npy"), "--states", str(d / "exact.npz"), *map(str, more)]


# ---------------------------------------------------------------- drn verify
def test_verify_report_path_is_checked_before_the_run(problem, capsys):
    d = problem
    assert main(verify_args(d, "net.npz", "--report", d / "no" / "v.xml")) == 2
    assert one_line(capsys, "verify").endswith(f"--report {d / 'no' / 'v.xml'}: {d / 'no'} is not an existing folder")
    (d / "dir.json").mkdir()
    assert main(verify_args(d, "net.npz", "--report", d / "dir.json")) == 2
    assert one_line(capsys, "verify").endswith(f"--report {d / 'dir.json'} is a folder; give a file name")
    assert main(verify_args(d, "net.npz", "--report", d / "x.npy" / "v.json")) == 2
    assert "is not an existing folder" in one_line(capsys, "verify")


def refuse_writes(monkeypatch):
    """What the OS says in a read-only folder (as root, a read-only folder is writable: simulated)."""
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)


def test_verify_report_in_a_folder_it_cannot_write_in(problem, capsys, monkeypatch):
    refuse_writes(monkeypatch)
    assert main(verify_args(problem, "net.npz", "--report", problem / "v.xml")) == 2
    assert f"--report {problem / 'v.xml'}: cannot write in" in one_line(capsys, "verify")


def test_verify_nan_cd_states_fail_by_name_and_exit_3(problem, ngspice, capsys):
    d = problem
    assert main(verify_args(d, "nan.npz", "--report", d / "r.json")) == 3
    out, err = capsys.readouterr()
    assert "FAIL cd vs ngspice: no sample compared" in out and "FAIL theirs vs cd: no sample compared" in out
    assert "sample -1" not in out + err and "v-1" not in out + err
    assert "error: CD's states are NaN or inf on 2 samples, first: sample 0" in err
    for name in ("cd vs ngspice", "theirs vs cd"):
        assert f"FAILED {name}: NaN/inf states from cd on 2 samples (first: sample 0), not compared" in err
    rep = json.loads((d / "r.json").read_text())
    assert rep["exit_code"] == 3 and rep["cd"]["not_finite"] == [0, 1]
    cd = rep["comparisons"][0]
    assert cd["samples"] == 0 and cd["worst_node"] is None and cd["not_finite"] == {"cd": [0, 1]}


def test_verify_nan_on_one_sample_compares_the_others(problem, ngspice, monkeypatch, capsys):
    real = cdsolver.solver.solve

    def nan_on_sample_1(*a, **k):
        sol = real(*a, **k)
        sol.states[1][1] = np.nan
        return sol

    monkeypatch.setattr(cdsolver.solver, "solve", nan_on_sample_1)
    assert main(verify_args(problem)) == 3
    out, err = capsys.readouterr()
    assert "PASS theirs vs ngspice: 2 samples" in out and "FAIL cd vs ngspice: 1 samples" in out
    assert "FAILED cd vs ngspice: NaN/inf states from cd on 1 samples (first: sample 1), not compared" in err


def test_compare_states_leaves_out_and_names_nan_samples():
    rng = np.random.default_rng(1)
    b = [rng.normal(size=(4, 3)), rng.normal(size=(4, 2))]
    a = [v.copy() for v in b]
    a[1][2, 0] = np.nan
    a[0][3] += 1e-3
    c = compare_states("mine vs ref", a, b).check(1.0, None)
    assert c.samples == 3 and c.not_finite == {"mine": [2]} and np.isfinite(c.max_abs_V)
    assert c.worst_node[0] == 3 and c.failure == "NaN/inf states from mine on 1 samples (first: sample 2), not compared"
    assert compare_states("mine vs ref", b, b).check(1e-9, None).passed


# ---------------------------------------------------------------- drn plot
SUMMARY = ("depth,width,element,amplifier,seed,runner,samples,spice_failed,rel_l1_p50,rel_l1_p90,rel_l1_p99,"
           "rel_l1_max,max_abs_V,cd_sweeps_mean,cd_not_converged,spice_iterations_median,cd_s,spice_s_median,"
           "spice_s_mean,speedup_median\n")
ROW = "1,{w},shockley-double,none,0,{r},5,0,1e-15,2e-15,3e-15,4e-15,1e-14,6.0,0,10,1e-4,{t},{t},{s}\n"
HISTORY = "epoch,train_error,train_loss,val_error,val_loss,seconds\n1,0.5,0.2,0.6,0.3,1.0\n2,0.3,0.1,0.4,0.2,1.0\n"


def summary_text() -> str:
    return "# study: tiny\n" + SUMMARY + "".join(ROW.format(w=w, r=r, t=t * w / 32, s=t * w / 32 / 1e-4)
                                                 for w in (32, 128) for r, t in (("batch", 0.01), ("op", 0.1)))


@pytest.mark.parametrize("case, content, message", [
    ("missing", None, "results folder not found: {d}/res"),
    ("a file", "x", "{d}/res is not a folder: drn plot takes drn compare results folders"),
    ("empty folder", {}, "{d}/res: neither summary.csv nor cells/*.csv"),
    ("empty summary", {"summary.csv": ""}, "{d}/res/summary.csv: empty, not a drn compare summary"),
    ("other columns", {"summary.csv": "a,b\n1,2\n"}, "not a drn compare summary (missing columns ['depth', 'width'"),
    ("header only", {"summary.csv": "# study: tiny\n" + SUMMARY}, "summary.csv: no rows"),
    ("cut row", {"summary.csv": summary_text()[:-40]}, "summary.csv: row 4 has 12 fields, the header 20"),
    ("cut number", {"summary.csv": summary_text()[:-3]}, "summary.csv: the last row does not end with a line break"),
    ("unknown element", {"summary.csv": summary_text().replace("shockley-double", "memristor")},
     "column element has 'memristor', drn plot knows shockley-double"),
    ("text width", {"summary.csv": summary_text().replace(",128,", ",wide,")}, "column width holds something other"),
    ("bad samples", {"summary.csv": summary_text(), "samples.csv": "depth\n1\n"}, "samples.csv: not a drn compare"),
    ("bad cell", {"cells/a.csv": "depth,width\n1,2\n"}, "cells/a.csv: not a drn compare cell file"),
])
def test_plot_bad_results_folder_exits_2(tmp_path, capsys, case, content, message):
    res = tmp_path / "res"
    if isinstance(content, str):
        res.write_text(content)
    elif content is not None:
        res.mkdir()
        for name, text in content.items():
            (res / name).parent.mkdir(exist_ok=True)
            (res / name).write_text(text)
    assert main(["plot", str(res)]) == 2
    assert message.format(d=tmp_path) in one_line(capsys, "plot")
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.md"))


@pytest.mark.parametrize("content, message", [
    ("", "h.history.csv: empty, not a drn train history"),
    ("epoch,train_error,train_loss,val_error,v", "h.history.csv: no rows (a truncated drn train history?)"),
    (HISTORY[:-12], "h.history.csv: row 2 has 4 fields, the header 6"),
    ("epoch,val_error\n1,0.5\n", "not a drn train history (missing columns ['train_error'])"),
    (HISTORY.replace("0.3,0.1", "x,0.1"), "column train_error holds something other than numbers"),
])
def test_plot_bad_history_exits_2(tmp_path, capsys, content, message):
    (tmp_path / "h.history.csv").write_text(content)
    assert main(["plot", str(tmp_path / "h.history.csv")]) == 2
    assert message in one_line(capsys, "plot")
    assert not list(tmp_path.glob("*.png"))


def test_plot_outputs_are_checked_before_drawing(tmp_path, capsys):
    h = tmp_path / "h.history.csv"
    h.write_text(HISTORY)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "summary.csv").write_text(summary_text())
    (tmp_path / "figs").mkdir()
    cases = [([str(h), "--out", str(tmp_path / "no" / "c.png")], f"{tmp_path / 'no'} is not an existing folder"),
             ([str(h), "--out", str(tmp_path / "c.txt")], "a learning-curve figure is FIG.png or FIG.pdf"),
             ([str(h), "--out", str(tmp_path / "figs")], f"--out {tmp_path / 'figs'} is a folder"),
             ([str(tmp_path / "res"), "--out", str(tmp_path / "f.png")], "go into a folder (--out DIR)"),
             ([str(tmp_path / "res"), "--out", str(h / "sub")], f"{h} is not a folder")]
    for argv, message in cases:
        assert main(["plot", *argv]) == 2
        assert message in one_line(capsys, "plot")
    assert not list(tmp_path.rglob("*.png"))
    assert main(["plot", str(h), "--out", str(tmp_path / "c.pdf")]) == 0  # a PDF name: both files, as documented
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c.pdf").is_file()


def test_plot_results_folder_it_cannot_write_in_exits_2(tmp_path, capsys, monkeypatch):
    res = tmp_path / "res"
    res.mkdir()
    (res / "summary.csv").write_text(summary_text())
    refuse_writes(monkeypatch)
    assert main(["plot", str(res)]) == 2
    assert one_line(capsys, "plot").startswith(f"drn plot: error: results folder {res}: cannot write in")


def test_the_tiny_summary_plots(tmp_path):
    """The inputs above are wrong only where each case breaks them."""
    (tmp_path / "summary.csv").write_text(summary_text())
    assert main(["plot", str(tmp_path)]) == 0
    assert len(pd.read_csv(tmp_path / "summary.csv", comment="#")) == 4 and (tmp_path / "error_vs_width.png").is_file()
