"""Common checks run on every node element (one test, many objects), against the circuit's formulas
(tests/reference.py)."""

import numpy as np
import pytest
from scipy.optimize import brentq

from cdsolver.elements import Ideal, Linear, Pwl, Shockley, element_from_meta
from reference import i_nl

EPS = np.finfo(float).eps


def random_cases(rng, n, kind):
    """Random a (S), c (A), rails (V), including extreme ones: |c/a| up to 100 V, a over 7 decades."""
    a = 10 ** rng.uniform(-4, 3, n)
    c = a * rng.choice([-1, 1], n) * 10 ** rng.uniform(-3, 2, n)
    r1, r2 = np.sort(rng.uniform(-2, 2, (2, n)), axis=0)
    which = rng.integers(0, 5, n)  # both rails, upper only, lower only, none, rails within ~Vd
    lo = np.where(np.isin(which, [0, 2, 4]), r1, -np.inf)
    hi = np.where(which == 0, r2, np.where(which == 1, r2, np.where(which == 4, r1 + rng.uniform(0, 0.02, n), np.inf)))
    return a, c, lo, hi


SHOCKLEYS = [Shockley(Is, Vd) for Is, Vd in [(1e-6, 0.05), (1e-15, 1e-3), (1e-3, 0.3), (1e-12, 0.025864917007157463)]]
PWLS = [Pwl([[-1, -0.5], [-0.5, -0.01], [0.5, 0.01], [1, 0.5]]), Pwl([[0, 0], [0.6, 0], [0.7, 1e-3], [0.8, 1e-1]])]


@pytest.mark.parametrize("backend", ["numba", "numpy"])  # the fused kernel and the NumPy reference
@pytest.mark.parametrize("el", SHOCKLEYS + PWLS + [Linear()], ids=repr)
def test_update_is_the_brentq_root(el, backend, monkeypatch):
    monkeypatch.setenv("DRN_KERNELS", backend)
    rng = np.random.default_rng(1)
    a, c, lo, hi = random_cases(rng, 2000, el.kind)
    v = el.solve(a, c, lo, hi)
    worst = 0.0
    for k in range(len(a)):
        def f(x, k=k):
            return a[k] * x - c[k] + i_nl(el, x, lo[k], hi[k])[0]
        left = right = c[k] / a[k]
        with np.errstate(over="ignore"):
            while f(left) > 0:
                left -= 2 * abs(left) + 1
            while f(right) < 0:
                right += 2 * abs(right) + 1
            root = brentq(f, left, right, xtol=1e-300, rtol=8.9e-16, maxiter=1000)
        cur, g = i_nl(el, root, lo[k], hi[k])
        # 1e-13 relative, plus the float64 rounding floor of the equation itself (|terms| * eps / slope)
        table = np.abs(el.ik).max() + np.abs(el.sk * el.vk[:-1]).max() if isinstance(el, Pwl) else 0.0
        floor = 8 * EPS * (abs(c[k]) + a[k] * abs(root) + abs(cur) + getattr(el, "Is", 0) + table) / (a[k] + g)
        worst = max(worst, abs(v[k] - root) / (1e-13 * abs(root) + floor))
    assert worst <= 1.0, worst


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_shockley_no_overflow_on_extreme_inputs(backend, monkeypatch):
    monkeypatch.setenv("DRN_KERNELS", backend)
    el = Shockley(1e-6, 1e-3)
    a = np.array([1e-4, 1e3, 1.0, 1.0])
    c = np.array([1e4, -1e5, 1e200, -1e200])  # |c/a| from 1e8 V to 1e200 V
    lo, hi = np.full(4, -0.8), np.full(4, 0.8)
    with np.errstate(over="raise", invalid="raise"):
        v = el.solve(a, c, lo, hi)
    assert np.all(np.isfinite(v))
    assert np.all((v > 0.8) == (c > 0)) and np.all((v < -0.8) == (c < 0))


def test_ideal_is_clip():
    rng = np.random.default_rng(2)
    a, c, lo, hi = random_cases(rng, 500, "ideal")
    v = Ideal().solve(a, c, lo, hi)
    np.testing.assert_array_equal(v, np.clip(c / a, lo, hi))
    assert np.all(Ideal().residual(v, a, c, lo, hi) == 0)


@pytest.mark.parametrize("el", SHOCKLEYS[:1] + PWLS + [Linear()], ids=repr)
def test_current_matches_spec_is_monotone_and_potential_integrates_it(el):
    v = np.linspace(-1.5, 1.5, 3000) + 1e-4  # off the pwl breakpoints (kinks)
    lo, hi = np.full_like(v, -0.8), np.full_like(v, 0.8)
    cur = el.current(v, lo, hi)
    np.testing.assert_allclose(cur, i_nl(el, v, lo, hi)[0], rtol=1e-13, atol=1e-20)
    assert np.all(np.diff(cur) >= 0)
    h = 1e-6
    dP = (el.potential(v + h, lo, hi) - el.potential(v - h, lo, hi)) / (2 * h)
    np.testing.assert_allclose(dP, cur, rtol=1e-6, atol=1e-9 * max(1, np.abs(cur).max()))
    dI = (el.current(v + h, lo, hi) - el.current(v - h, lo, hi)) / (2 * h)
    np.testing.assert_allclose(el.conductance(v, lo, hi), dI, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("el", SHOCKLEYS[:1] + PWLS + [Linear(), Ideal()], ids=repr)
def test_meta_round_trip(el):
    assert element_from_meta(el.to_meta()) == el


@pytest.mark.parametrize("meta, msg", [
    ({"kind": "zener"}, "meta.element.kind"),
    ({"kind": "shockley", "Is": -1, "Vd": 0.05}, "meta.element.Is"),
    ({"kind": "shockley", "Is": 1e-30, "Vd": 0.05}, "ngspice's epsmin"),  # (ngspice would simulate Is = 1e-28)
    ({"kind": "shockley", "Is": 1e-6}, "meta.element.Vd"),
    ({"kind": "pwl"}, "meta.element.table"),
    ({"kind": "pwl", "table": [[0, 1], [1, 0]]}, "non-decreasing"),
    ({"kind": "pwl", "table": [[1, 0], [0, 1]]}, "strictly increasing"),
    ("shockley", "must be an object"),
])
def test_bad_element_meta(meta, msg):
    with pytest.raises(ValueError, match=msg):
        element_from_meta(meta)
