"""The CD solver against independent references: full-system Newton (smooth elements), a QP with KKT checks
(ideal diodes), KCL residuals, co-content monotonicity, warm start, honest non-convergence, input errors."""

import copy
import itertools

import numpy as np
import pytest

from cdsolver import (NotConvergedError, energy, kcl, max_branch_current, random_network, solve)
from reference import box_qp, full_kcl, newton_reference

AMPS = {"no-amp": None, "A4C1": (4.0, 1.0), "A4C0.25": (4.0, 0.25), "A4C1inv": (4.0, 1.0, "half")}
SIZES = {1: [6, 5, 3], 2: [6, 5, 4, 3], 3: [6, 5, 4, 4, 3]}


def problem(kind, amp, depth, batch=8, seed=0, outputs="single"):
    rng = np.random.default_rng(seed + depth)
    net = random_network(SIZES[depth], kind, seed=depth + 1, amplifier=AMPS[amp], input_gain=3.0, g_mean=1.0,
                         bias=0.1, outputs=outputs)
    v0 = net.encode(rng.uniform(0, 1, (batch, 3)))
    y = rng.uniform(-1, 1, (batch, SIZES[depth][-1]))
    return net, v0, y


def rel_l1(a, b):
    a, b = np.concatenate(a, axis=1), np.concatenate(b, axis=1)
    return (np.abs(a - b).sum(axis=1) / np.abs(b).sum(axis=1)).max()


@pytest.mark.parametrize("kind, amp, depth, beta, outputs", [
    *[c for c in itertools.product(["linear", "shockley", "pwl"], AMPS, [1, 2, 3], [0.0, 0.5, -0.5], ["single"])
      if c[1:4] != ("A4C1inv", 3, -0.5)],  # beyond beta_limit there: several equilibria, Newton may find another
    *itertools.product(["linear", "shockley", "pwl"], ["A4C1inv"], [3], [-0.2], ["single"]),
    *itertools.product(["shockley"], AMPS, [1, 3], [0.0, 0.5, -0.2], ["paired"])])
def test_matches_newton_on_full_kcl(kind, amp, depth, beta, outputs):
    net, v0, y = problem(kind, amp, depth, outputs=outputs)
    sol = solve(net, v0, beta=beta, targets=y).check()
    # the stopping test holds against the exact largest branch current, on a full recomputation of KCL
    r = np.max([np.abs(x).max(axis=1) for x in kcl(net, v0, sol.states, beta=beta, targets=y)], axis=0)
    assert np.all(r <= 1e-12 * max_branch_current(net, v0, sol.states))
    ref = newton_reference(net, v0, beta, y)
    r_ref = [np.abs(full_kcl(net, v0[b], np.concatenate([s[b] for s in ref]), beta, y[b])[0]).max()
             for b in range(len(v0))]
    assert np.all(r_ref <= 1e-13 * max_branch_current(net, v0, ref))
    assert rel_l1(sol.states, ref) <= 3e-11  # KCL at 1e-12 of the branch currents, times the conditioning


def qp_reference(net, v0, y, beta):
    """Box-constrained QP of an ideal-diode network, solved independently: L-BFGS-B on the co-content, then
    the active set fixed and the remaining linear KCL solved exactly (dense)."""
    n = net.sizes
    cuts = np.cumsum([0] + n[1:])
    bounds = [(-np.inf, np.inf)] * cuts[-1]
    for l in range(1, net.depth):
        for j in range(n[l]):
            bounds[cuts[l - 1] + j] = (net.lo[l - 1][j], net.hi[l - 1][j])
    w = np.concatenate([np.full(n[l], (net.C / net.A) ** (l - 1)) for l in range(1, net.depth + 1)])
    lin = random_network(n, "linear", amplifier=net.amplifier, g_mean=1.0)  # same arrays, no diodes
    lin.G, lin.b = net.G, net.b
    lo = np.array([bd[0] for bd in bounds])
    hi = np.array([bd[1] for bd in bounds])
    out = [box_qp(lambda x: _energy_flat(lin, v0[b], x, beta, y[b]),
                  lambda x: w * full_kcl(lin, v0[b], x, beta, y[b])[0],
                  lambda x: full_kcl(lin, v0[b], x, beta, y[b]), lo, hi, np.zeros(cuts[-1])) for b in range(len(v0))]
    X = np.array(out)
    return [X[:, cuts[l]:cuts[l + 1]] for l in range(net.depth)]


def _energy_flat(net, v0, x, beta, y):
    n = net.sizes
    cuts = np.cumsum([0] + n[1:])
    return energy(net, v0[None], [x[None, cuts[l]:cuts[l + 1]] for l in range(net.depth)], beta=beta,
                  targets=y[None])[0]


@pytest.mark.parametrize("amp, depth, beta", [c for c in itertools.product(AMPS, [1, 2, 3], [0.0, 0.5, -0.5])
                                               if c != ("A4C1inv", 3, -0.5)] + [("A4C1inv", 3, -0.2)])
def test_ideal_diodes_match_qp_and_satisfy_kkt(amp, depth, beta):
    net, v0, y = problem("ideal", amp, depth, batch=5)
    sol = solve(net, v0, beta=beta, targets=y).check()
    assert rel_l1(sol.states, qp_reference(net, v0, y, beta)) <= 1e-10
    # KKT at the CD solution: linear KCL residual r = current leaving through the resistors minus bias;
    # interior nodes r = 0, nodes on the upper rail r <= 0 (the diode sinks -r >= 0), lower rail r >= 0
    lin = random_network(net.sizes, "linear", amplifier=net.amplifier, g_mean=1.0)
    lin.G, lin.b = net.G, net.b
    scale = 1e-12 * max_branch_current(net, v0, sol.states)[:, None]
    r = kcl(lin, v0, sol.states, beta=beta, targets=y)
    for l in range(1, net.depth):
        v, lo, hi = sol.states[l - 1], net.lo[l - 1], net.hi[l - 1]
        assert np.all((v >= lo) & (v <= hi))
        at_hi, at_lo = v == hi, v == lo
        inner = ~(at_hi | at_lo)
        assert np.all(np.abs(r[l - 1][inner]) <= np.broadcast_to(scale, v.shape)[inner])
        assert np.all(r[l - 1][at_hi] <= np.broadcast_to(scale, v.shape)[at_hi])
        assert np.all(r[l - 1][at_lo] >= -np.broadcast_to(scale, v.shape)[at_lo])
        assert at_hi.any() or at_lo.any()  # the diodes are really in play
    assert np.all(np.abs(r[-1]) <= scale)


@pytest.mark.parametrize("kind, amp", itertools.product(["ideal", "shockley", "pwl", "linear"], AMPS))
def test_co_content_never_increases_under_plain_cd(kind, amp):
    net, v0, y = problem(kind, amp, 3)
    E = [energy(net, v0, solve(net, v0, beta=0.5, targets=y, anderson=0, max_sweeps=k).states, beta=0.5,
                targets=y) for k in range(1, 40)]
    E = np.array(E)
    assert np.all(np.diff(E, axis=0) <= 1e-13 * np.abs(E[:-1]))
    assert np.all(E[-1] < E[0])


def test_anderson_and_plain_cd_reach_the_same_state_and_anderson_is_faster():
    net, v0, y = problem("shockley", "A4C1", 3, batch=20)
    acc = solve(net, v0).check()
    plain = solve(net, v0, anderson=0, max_sweeps=20000).check()
    assert rel_l1(acc.states, plain.states) <= 1e-10
    assert acc.iterations.mean() * 3 < plain.iterations.mean()


def test_warm_start_from_the_solution_takes_one_sweep():
    net, v0, y = problem("shockley", "A4C0.25", 2)
    sol = solve(net, v0)
    again = solve(net, v0, init=sol.states)
    assert np.all(again.iterations == 1) and again.converged.all()
    assert rel_l1(again.states, sol.states) <= 1e-12


def test_hitting_the_sweep_cap_is_reported_not_hidden():
    net, v0, y = problem("shockley", "A4C1", 3)
    sol = solve(net, v0, max_sweeps=2, anderson=0)
    assert not sol.converged.any() and sol.result == "max_sweeps_reached"
    assert np.all(sol.iterations == 2) and np.all(sol.residual > 1e-12 * sol.i_ref)
    with pytest.raises(NotConvergedError, match="did not converge"):
        sol.check()


def test_i_ref_is_a_lower_bound_of_the_largest_branch_current():
    net, v0, y = problem("shockley", "A4C1", 3, batch=30)
    sol = solve(net, v0)
    exact = max_branch_current(net, v0, sol.states)
    assert np.all(sol.i_ref <= exact) and np.all(sol.i_ref >= 0.5 * exact)


def test_single_crossbar_is_one_exact_sweep():
    net = random_network([6, 3], "linear", bias=0.1)
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (4, 3)))
    sol = solve(net, v0)
    G = net.G[0]
    np.testing.assert_allclose(sol.states[0], (v0 @ G + net.b[0]) / (G.sum(0) + 1e-12), rtol=1e-14)
    assert np.all(sol.iterations == 1)


def test_bad_inputs_give_clear_errors():
    net, v0, y = problem("shockley", "no-amp", 2)
    with pytest.raises(ValueError, match=r"v0 \(input voltages\): expected shape \(batch, 6\), got \(8, 5\)"):
        solve(net, v0[:, :5])
    bad = v0.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"entry \[1, 2\] is nan"):
        solve(net, bad)
    with pytest.raises(ValueError, match=r"targets: expected shape \(8, 3\)"):
        solve(net, v0, beta=0.5, targets=y[:, :2])
    for tol in (0, 1, 1e10, np.nan):  # (tol >= 1 would report a residual as large as I_ref converged)
        with pytest.raises(ValueError, match="tol must be a finite number > 0 and < 1"):
            solve(net, v0, tol=tol)
    with pytest.raises(ValueError, match="init: expected 3 state arrays"):
        solve(net, v0, init=[np.zeros((8, 5))])
    with pytest.raises(ValueError, match=r"layer 3 node \d: total conductance .* <= 0"):
        solve(net, v0, beta=-0.9)  # g_nudge = 1/(1/β + R_on) = -9 S: more than the output's conductances
    paired, v0, y = problem("shockley", "no-amp", 2, outputs="paired")
    assert paired.sizes[-1] == 6
    with pytest.raises(ValueError, match=r"targets: expected shape \(8, 3\)"):  # one target per pair
        solve(paired, v0, beta=0.5, targets=np.hstack([y, y]))
    with pytest.raises(ValueError, match=r"output pair \d: beta=-0.7 .* non-convex"):
        solve(paired, v0, beta=-0.7)  # -2.3 S between the pair: each node keeps a > 0, but a+ a- <= g^2


def test_reuse_of_the_set_up_is_exact_and_refused_after_a_change():
    """``solve(reuse=free)`` (the nudged phases of EP) gives bit-identical states; once the network or the
    inputs changed, the earlier set-up is not used."""
    net = random_network([12, 16, 16, 6], "shockley", seed=4, input_gain=6.0, amplifier=(4.0, 1.0))
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (9, 6)))
    y = np.full((9, 6), 0.2)
    free = solve(net, v0, targets=y)
    fresh = solve(copy.deepcopy(net), v0, beta=0.01, targets=y, init=free.states)  # (a copy: nothing to take)
    reused = solve(net, v0, beta=0.01, targets=y, init=free.states, reuse=free)
    assert reused.setup.Gf is free.setup.Gf and reused.setup.fixed0 is free.setup.fixed0  # shared, not recomputed
    for a, b in zip(fresh.states, reused.states):
        assert np.array_equal(a, b)
    net.G[1][3, 4] *= 3.0  # in place, as a training step does
    v0[2, 0] += 0.5
    changed = solve(net, v0, beta=0.01, targets=y, init=free.states, reuse=free)
    assert changed.setup.Gf is not free.setup.Gf
    for a, b in zip(solve(copy.deepcopy(net), v0, beta=0.01, targets=y, init=free.states).states, changed.states):
        assert np.array_equal(a, b)


def test_batches_of_one_network_share_its_set_up_and_nothing_stale():
    """Solving a network batch after batch computes its network part once: the next batch (other inputs) takes
    it from the last solve, and gives the states of a network never solved before (a copy), bit for bit. After
    an in-place change of a crossbar nothing is taken; the inputs' part is never kept (nor the caller's input
    array, which may change); a network that is gone leaves nothing behind."""
    import gc

    from cdsolver import solver

    net = random_network([12, 16, 16, 6], "shockley", seed=4, input_gain=6.0, amplifier=(4.0, 1.0))
    rng = np.random.default_rng(0)
    batches = [net.encode(rng.uniform(0, 1, (9, 6))) for _ in range(2)]
    first = solve(net, batches[0])
    second = solve(net, batches[1])
    assert second.setup.Gf is first.setup.Gf and second.setup.fixed0 is not first.setup.fixed0
    for a, b in zip(solve(copy.deepcopy(net), batches[1]).states, second.states):
        assert np.array_equal(a, b)
    net.G[2][3, 4] *= 3.0  # in place, as a training step does
    third = solve(net, batches[1])
    assert third.setup.Gf is not second.setup.Gf
    for a, b in zip(solve(copy.deepcopy(net), batches[1]).states, third.states):
        assert np.array_equal(a, b)
    same = batches[1].copy()  # the values of the last inputs in another array, the last one then changed
    batches[1][:] = batches[0]
    fourth = solve(net, same)
    assert fourth.setup.v0 is same and fourth.setup.fixed0 is not third.setup.fixed0  # (inputs: not kept)
    for a, b in zip(solve(copy.deepcopy(net), same).states, fourth.states):
        assert np.array_equal(a, b)
    key = id(net)
    assert solver._recent(net) is not None
    del net, first, second, third, fourth
    gc.collect()
    assert key not in solver._RECENT


@pytest.mark.parametrize("change", ["amplifier", "invert"])
def test_reuse_is_refused_after_the_amplifier_changed(change):
    """The shared set-up folds the amplifier's gains and signs into the crossbars: replacing ``net.amplifier``
    (same G, b and inputs) must not reuse it (it did: states off by ~0.7 V)."""
    from cdsolver.network import Amplifier

    net = random_network([6, 8, 8, 3], "shockley", seed=1, amplifier=Amplifier(4.0, 1.0))
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (5, 3)))
    free = solve(net, v0)
    net.amplifier = Amplifier(2.0, 0.5) if change == "amplifier" else Amplifier(4.0, 1.0, "half")
    fresh = solve(copy.deepcopy(net), v0)  # (a copy: nothing to take)
    for taken in (solve(net, v0, reuse=free), solve(net, v0)):  # explicitly, and from the last solve
        for a, b in zip(fresh.states, taken.states):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("change", ["rails", "element"])
def test_reuse_reads_rails_and_element_afresh(change):
    """The shared set-up holds nothing of the rails or the element: changed in place after the free phase, they
    are what a phase that reuses the set-up solves with (a set-up that kept the hidden layers' kernels solved the
    old circuit: states off by 0.28-0.36 V, converged)."""
    from cdsolver.elements import Ideal

    net = random_network([12, 16, 16, 6], "shockley", seed=4, input_gain=6.0)
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (9, 6)))
    y = np.full((9, 6), 0.2)
    free = solve(net, v0, targets=y)
    if change == "rails":
        net.lo[0][:], net.hi[0][:] = -0.05, 0.05
    else:
        net.element = Ideal()
    fresh = solve(copy.deepcopy(net), v0, beta=0.01, targets=y, init=free.states)  # (a copy: nothing to take)
    reused = solve(net, v0, beta=0.01, targets=y, init=free.states, reuse=free)
    assert reused.setup.Gf is free.setup.Gf  # the network part is shared
    for a, b in zip(fresh.states, reused.states):
        assert np.array_equal(a, b)
