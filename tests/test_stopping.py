"""The stopping test: the default tolerance gives voltages within 1e-13 (relative L1) of the exact steady state on
an amplified network where the KCL test alone at the former default (1e-12) left errors above 1e-12."""

import numpy as np

from cdsolver import random_network, solve
from cdsolver.constants import STEP_PER_TOL, TOL
from cdsolver.network import Amplifier
from cdsolver.solver import _Layers, fixed_point
from studies.metrics import rel_l1


def amplified():
    """64-64-64-64-10 double Shockley, A = 4, C = 1, half of the amplifiers inverting (like trained networks)."""
    net = random_network([64, 64, 64, 64, 10], "shockley", seed=0, input_gain=80.0,
                         amplifier=Amplifier(4.0, 1.0, "half"))
    return net, net.encode(np.random.default_rng(0).uniform(0, 1, (20, 32)))


def test_default_reaches_1e13_where_kcl_alone_did_not():
    net, v0 = amplified()
    ref = solve(net, v0, tol=1e-16, max_sweeps=300)  # as far as float64 goes
    assert np.all(ref.residual <= 1e-15 * ref.i_ref)
    P = _Layers(net, v0, 0.0, None)
    kcl_only = fixed_point(P, P.start(v0, None), tol=1e-12, max_sweeps=1000, anderson=5)
    assert kcl_only[-1].all() and rel_l1(P.states, ref.states).max() > 1e-12
    sol = solve(net, v0).check()
    assert sol.tol == TOL
    assert rel_l1(sol.states, ref.states).max() <= 1e-13
    xmax = np.maximum(np.abs(sol.states[1]).max(axis=1), np.abs(sol.states[3]).max(axis=1))  # even layers
    assert np.all(sol.step <= STEP_PER_TOL * TOL * xmax) and np.all(sol.residual <= TOL * sol.i_ref)


def test_step_test_holds_back_a_sample_whose_residual_passes():
    net, v0 = amplified()
    P = _Layers(net, v0, 0.0, None)
    kcl_only = fixed_point(P, P.start(v0, None), tol=1e-12, max_sweeps=1000, anderson=5)
    both = fixed_point(P, P.start(v0, None), tol=1e-12, max_sweeps=1000, anderson=5, step_tol=1e-14)
    assert both[-1].all() and np.all(both[0] >= kcl_only[0])  # (iterations, residual, i_ref, step, converged)
    capped = fixed_point(P, P.start(v0, None), tol=1e-12, max_sweeps=int(kcl_only[0].max()), anderson=5,
                         step_tol=1e-14)
    late = both[0] > kcl_only[0].max()  # samples the step test held back beyond the KCL test's last sweep
    assert late.any() and not capped[-1][late].any() and np.all(capped[1][late] <= 1e-12 * capped[2][late])


class _Halving:
    """A toy for ``fixed_point``: each row's step to 1 halves per sweep (``x -> 1 + (x - 1)/2``, residual
    ``|x - 1|``, I_ref 1 A); records the rows whose upper bound is asked for and their steps."""

    def __init__(self):
        self.asked = []

    def sweep(self, x, rows):
        return 1.0 + (x - 1.0) / 2, np.abs(x - 1.0).max(axis=1), x

    def i_upper(self, rows, state, near):
        self.asked.append(np.abs(state[near] - 1.0).max(axis=1) / 2)  # the step from state: |T(x) - x|
        return np.ones(near.sum())

    def i_ref(self, rows, state, near):
        return np.ones(near.sum())

    def store(self, idx, state, done):
        pass

    def project(self, x):
        pass


def test_upper_bound_is_computed_only_where_the_step_test_passes():
    """The upper bound of I_ref costs a pass over every layer: it is asked only for rows whose step test passed
    (1e-6 × max|x| ≈ 1e-6), and the rows stop as soon as both tests pass."""
    P = _Halving()
    x = 1.0 + np.logspace(-1, -5, 8)[:, None] * np.ones((8, 3))
    its, res, iref, step, conv = fixed_point(P, x, tol=1e-7, max_sweeps=100, anderson=0, step_tol=1e-6)
    asked = np.concatenate(P.asked)
    assert conv.all() and len(asked) > 0 and np.all(asked <= 1e-6 * (1 + 1e-6))
    assert len(asked) < its.sum()  # the sweeps before the step test passed asked for nothing
    first = np.ceil(np.log2(np.logspace(-1, -5, 8) / 1e-7)).astype(int) + 1  # first sweep with |x - 1| <= 1e-7
    assert np.array_equal(its, first) and np.all(res <= 1e-7)
