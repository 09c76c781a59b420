"""Gradients: the implicit (Schur-eliminated) gradient against a dense solve of the reference Jacobian and against
central finite differences; ngspice's hardware linearisation (`spice-linear`) against it to 1e-9; EP from
ngspice's phases (`spice-ep`) converging to it as O(β²); `drn gradient` and its bad-input exits."""

import itertools

import numpy as np
import pandas as pd
import pytest
from reference import full_kcl

from cdsolver import random_network, save_network, solve
from cdsolver.ep import cost_current, implicit_gradient, loss, response_gradient
from studies.cli import main
from studies.gradients import gradient, rel_error

ELEMENTS = {"linear": ("linear", None), "shockley": ("shockley", "both"), "pwl": ("pwl", None)}
AMPS = {"no-amp": None, "A4C1": (4.0, 1.0), "A4C0.25": (4.0, 0.25), "A4C1inv": (4.0, 1.0, "half")}


def problem(kind, amp, depth, outputs, rails=None, batch=4):
    net = random_network([6] + [5] * depth + [3], kind, rails=rails, seed=depth, amplifier=amp, input_gain=3.0,
                         g_mean=1.0, bias=0.1, outputs=outputs)
    rng = np.random.default_rng(0)
    v0, y = net.encode(rng.uniform(0, 1, (batch, 3))), rng.uniform(-1, 1, (batch, 3))
    return net, v0, y, solve(net, v0, targets=y, tol=1e-13, max_sweeps=5000).check()


def dense_implicit(net, v0, states, y):
    """``ds = −J⁻¹ r`` with the reference Jacobian of each sample, dense."""
    cuts = np.cumsum([0] + net.sizes[1:])
    r = cost_current(net, states, y)
    ds = np.zeros((len(v0), cuts[-1]))
    for b in range(len(v0)):
        _, J = full_kcl(net, v0[b], np.concatenate([s[b] for s in states]), 0.0, y[b])
        rhs = np.zeros(cuts[-1])
        rhs[cuts[-2]:] = r[b]
        ds[b] = -np.linalg.solve(J, rhs)
    return response_gradient(net, v0, states, [ds[:, cuts[l]:cuts[l + 1]] for l in range(net.depth)])


@pytest.mark.parametrize("el, amp, depth, outputs",
                         itertools.product(ELEMENTS, AMPS, [1, 2, 3, 4], ["single", "paired"]))
def test_implicit_equals_dense_reference(el, amp, depth, outputs):
    net, v0, y, free = problem(ELEMENTS[el][0], AMPS[amp], depth, outputs, ELEMENTS[el][1])
    g = implicit_gradient(net, v0, free.states, y)
    assert rel_error(g, dense_implicit(net, v0, free.states, y)) < 1e-11


@pytest.mark.parametrize("kind, rails, amp, depth, outputs", [
    ("ideal", "split", (4.0, 1.0), 3, "single"), ("pwl", None, None, 1, "paired"),
    ("linear", None, (4.0, 0.25), 2, "single"), ("shockley", "both", (4.0, 0.25), 3, "paired")])
def test_implicit_equals_central_differences(kind, rails, amp, depth, outputs):
    net, v0, y, free = problem(kind, amp, depth, outputs, rails)
    g = implicit_gradient(net, v0, free.states, y)
    if kind == "ideal":  # some nodes sit on a rail: clamped rows of the Jacobian
        assert any(np.any((s == lo) | (s == hi)) for s, lo, hi in zip(free.states, net.lo, net.hi))
    rng, h = np.random.default_rng(3), 1e-6

    def fd(arrays, idx):
        L = []
        for sign in (1, -1):
            n2 = net.copy()
            getattr(n2, arrays)[idx[0]][idx[1:]] += sign * h
            L.append(loss(n2, solve(n2, v0, targets=y, tol=1e-14, max_sweeps=5000).states, y))
        return (L[0] - L[1]) / (2 * h)

    for l in range(net.depth):
        i, j = rng.integers(net.G[l].shape[0]), rng.integers(net.G[l].shape[1])
        assert fd("G", (l, i, j)) == pytest.approx(g.dG[l][i, j], rel=1e-5, abs=1e-9)
        k = rng.integers(len(net.b[l]))
        assert fd("b", (l, k)) == pytest.approx(g.db[l][k], rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("el, amp, depth, outputs", itertools.product(ELEMENTS, AMPS, [1, 2, 3], ["single", "paired"]))
def test_spice_linear_equals_implicit(ngspice, el, amp, depth, outputs):
    net, v0, y, free = problem(ELEMENTS[el][0], AMPS[amp], depth, outputs, ELEMENTS[el][1])
    res = gradient(net, v0, y, "spice-linear", runner="batch")
    assert not res.failed.any(), res.reason
    assert rel_error(res.grad, implicit_gradient(net, v0, free.states, y)) <= 1e-9


def test_spice_ep_converges_to_implicit_as_beta_squared(ngspice):
    """Measured (docs/gradients.md): the error falls 4.000x per halving of β from β = 0.05 S down to ~1e-4 S;
    below, SPICE's state precision (~1e-15 V, divided by β) sets a floor of a few 1e-9."""
    net, v0, y, free = problem("shockley", (4.0, 0.25), 2, "paired")
    true = implicit_gradient(net, v0, free.states, y)
    err = []
    for beta in (0.0125, 0.00625, 0.003125):
        res = gradient(net, v0, y, "spice-ep", beta=beta, runner="batch")
        assert not res.failed.any(), res.reason
        err.append(rel_error(res.grad, true))
        cd = gradient(net, v0, y, "ep", beta=beta, tol=1e-14)
        assert rel_error(res.grad, cd.grad) < 1e-9  # SPICE's phases = CD's phases
    ratios = np.array(err[:-1]) / np.array(err[1:])
    assert np.all(np.abs(ratios - 4.0) < 0.05), (err, ratios)
    floor = rel_error(gradient(net, v0, y, "spice-ep", beta=2.5e-5, runner="batch").grad, true)
    assert floor < 1e-8


@pytest.fixture
def files(tmp_path):
    net = random_network([4, 5, 3], "shockley", seed=1, amplifier=(4.0, 0.25), input_gain=3.0, g_mean=1.0, bias=0.1,
                         outputs="paired")
    save_network(net, tmp_path / "net.npz")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.uniform(0, 1, (3, 2)))
    np.save(tmp_path / "y.npy", rng.uniform(-1, 1, (3, 3)))
    np.save(tmp_path / "ybad.npy", np.zeros((3, 2)))
    return tmp_path


def test_gradient_command_writes_every_method(files, ngspice, capsys):
    out = {}
    for m in ("implicit", "ep", "spice-ep", "spice-linear"):
        assert main(["gradient", str(files / "net.npz"), str(files / "x.npy"), "--targets", str(files / "y.npy"),
                     "--method", m, "--beta", "0.01", "--out", str(files / f"{m}.npz")]) == 0
        with np.load(files / f"{m}.npz") as f:
            assert {"G1", "G2", "b1", "b2", "failed"} <= set(f.files) and not f["failed"].any()
            out[m] = np.concatenate([f[k].ravel() for k in ("G1", "G2", "b1", "b2")])
    rel = {m: np.abs(out[m] - out["implicit"]).sum() / np.abs(out["implicit"]).sum() for m in out}
    assert rel["spice-linear"] < 1e-9 and 1e-8 < rel["ep"] < 1e-3 and abs(rel["spice-ep"] - rel["ep"]) < 1e-9
    assert "method spice-linear: 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("extra, msg", [
    (["--targets", "ybad.npy"], "targets: expected shape (3, 3), got (3, 2)"),
    (["--targets", "y.npy", "--method", "ep", "--beta", "0"], "--beta must be > 0 for --method ep"),
    (["--targets", "y.npy", "--method", "spice-ep", "--beta", "-0.1"], "--beta must be > 0 for --method spice-ep"),
    # (β near the free phase's leak 1/R_off: 4e7 times the true gradient, 0, or a ZeroDivisionError traceback)
    (["--targets", "y.npy", "--method", "ep", "--beta", "1e-12", "--estimator", "positive"], "EP needs beta >= 1e-09"),
    (["--targets", "y.npy", "--method", "spice-ep", "--beta", "1e-30"], "beta = 1e-30 S barely nudges"),
    (["--targets", "y.npy", "--method", "spice-linear", "NOPATH"], "ngspice not found on PATH"),
    (["--targets", "y.npy", "--method", "spice-ep", "--jobs", "0"], "--jobs must be 1.."),
    (["--targets", "y.npy", "--method", "spice-linear", "--jobs", "-3"], "--jobs must be 1.."),
    (["--targets", "y.npy", "--method", "spice-linear", "--jobs", "1000"], "--jobs must be 1.."),
])
def test_gradient_bad_input_exits_2(files, capsys, monkeypatch, extra, msg):
    monkeypatch.chdir(files)
    if extra[-1] == "NOPATH":
        extra = extra[:-1]
        monkeypatch.setenv("PATH", str(files))
    assert main(["gradient", "net.npz", "x.npy", *extra, "--out", "g.npz"]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("method", ["implicit", "ep"])
def test_gradient_notes_spice_options_a_cd_method_does_not_use(files, capsys, monkeypatch, method):
    monkeypatch.chdir(files)
    assert main(["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--method", method, "--jobs", "3",
                 "--runner", "op", "--out", "g.npz"]) == 0
    assert capsys.readouterr().err == f"note: --method {method} runs no ngspice: --runner, --jobs not used\n"
    assert main(["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--method", method, "--out", "g.npz"]) == 0
    assert capsys.readouterr().err == ""


def test_study_gradients_adds_percentiles_and_a_figure(ngspice, tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text('[study]\nname = "g"\nsamples = 4\ngradients = true\n'
                   '[grid]\ndepth = [2]\nwidth = [6]\nelement = ["shockley-double"]\namplifier = ["A4C0.25"]\n')
    out = tmp_path / "res"
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    df = pd.read_csv(out / "samples.csv", comment="#")
    summ = pd.read_csv(out / "summary.csv", comment="#").iloc[0]
    assert summ.grad_ep_p90 == pytest.approx(np.percentile(df.grad_ep, 90), rel=1e-12)
    assert 1e-6 < summ.grad_ep_p50 < 1e-2 and summ.grad_spice_ep_p50 == pytest.approx(summ.grad_ep_p50, rel=1e-6)
    assert summ.grad_spice_linear_p90 < 1e-9 and summ.grad_spice_ep_vs_ep_p90 < 1e-8
    assert main(["plot", str(out)]) == 0
    assert "grad_spice_linear_p50" in (out / "summary.md").read_text()
    assert (out / "gradient_error_cdf.png").stat().st_size > 1000


def test_the_adjoint_runs_temporary_folder_is_removed_when_ngspice_fails(ngspice, fake_ngspice, tmp_path,
                                                                          monkeypatch):
    """``run_linear`` kept its temporary folder (decks, raw files) whenever a sample failed, and after an
    exception: /tmp filled with drn-adjoint-* folders. Now it is removed whatever happens, as ``runners.run``'s,
    and the reasons name the decks by their names in it, not by paths that no longer exist. (ngspice fails here
    by a fake that finds no operating point: a 1e-4 s time limit, used before, let a run on a busy machine finish
    its operating points, and the failure came from the .ac stage instead.)"""
    import tempfile

    from spice_bridge.linear import run_linear

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fake_ngspice('echo "Error: no convergence in DC operating point"')
    net = random_network([8, 4, 2], "shockley", seed=0, input_gain=2.0)
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (2, 4)))
    res = run_linear(net, v0, np.zeros((2, 2)))
    assert not res.ok.any() and not list(tmp_path.glob("drn-adjoint-*"))
    assert all("op/sample" in r and str(tmp_path) not in r for r in res.reason), res.reason


def test_gradient_notes_ep_options_a_method_without_ep_does_not_use(files, capsys, monkeypatch):
    """``--beta`` and ``--estimator`` are EP's: ``--method implicit`` used to take them silently."""
    monkeypatch.chdir(files)
    assert main(["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--beta", "0.5", "--estimator", "positive",
                 "--out", "g.npz"]) == 0
    assert capsys.readouterr().err == "note: --method implicit nudges nothing (no EP): --beta, --estimator not used\n"
    assert main(["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--beta", "-2", "--out", "g.npz"]) == 0
    assert capsys.readouterr().err == "note: --method implicit nudges nothing (no EP): --beta not used\n"  # (not
    # refused as a nudge beyond the network's limit)
    assert main(["gradient", "net.npz", "x.npy", "--targets", "y.npy", "--method", "ep", "--beta", "1e-4",
                 "--out", "g.npz"]) == 0
    assert capsys.readouterr().err == ""
