"""The fused numba kernels (cdsolver.kernels) against the NumPy reference of each element, and the fallback."""

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from cdsolver import kernels, random_network, solve
from cdsolver.network import Amplifier
from cdsolver.elements import Ideal, Linear, LinearPair, Pwl, Shockley
from test_elements import PWLS, SHOCKLEYS, random_cases

EPS = np.finfo(float).eps
ELEMENTS = SHOCKLEYS + PWLS + [Linear(), Ideal()]


@pytest.fixture
def numba_backend(monkeypatch):
    monkeypatch.setenv("DRN_KERNELS", "numba")
    assert kernels.backend() == "numba", "numba is a dependency: the kernels must load"


def batch_cases(el, B=6, n=700, seed=3):
    """Per-node a, lo, hi (n,) and drives c (B, n) from the element tests' random cases (extremes included)."""
    rng = np.random.default_rng(seed)
    a, c0, lo, hi = random_cases(rng, n, el.kind)
    c = c0 * 10 ** rng.uniform(-1, 1, (B, n))
    return a, c, lo, hi


def exact(el, a, c, lo, hi, v):
    """The node's root to ~1e-19 relative: Newton in 80-bit extended precision (x86 long double) from ``v``."""
    if isinstance(el, (Linear, Ideal, Pwl)):  # closed forms: v is exact to rounding
        return v
    x, a, c, lo, hi = (np.asarray(q, dtype=np.longdouble) for q in (v, a, c, lo, hi))
    Is, Vd = np.longdouble(el.Is), np.longdouble(el.Vd)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(4):
            ef = np.where(np.isfinite(hi), np.exp((x - hi) / Vd), 0)
            er = np.where(np.isfinite(lo), np.exp((lo - x) / Vd), 0)
            f = a * x - c + Is * (ef - np.isfinite(hi)) - Is * (er - np.isfinite(lo))
            x = x - f / (a + Is / Vd * (ef + er))
    return x


def agree(el, v, a, c, lo, hi):
    """max |v − exact root| relative to the node equation's voltage scale: |v|, or the equation's terms over its
    slope, ``(|c| + a|v| + |I(v)| + Is)/(a + dI/dv)``, each diode term times ``1 + |(v - rail)/Vd|`` (the
    rounding floor of any float64 root)."""
    ref = el.solve_reference(a, c, lo, hi)
    if isinstance(el, (Linear, Ideal)):
        scale = np.abs(c) / a + np.abs(ref)
    elif isinstance(el, Pwl):
        scale = (np.abs(c) + a * np.abs(ref) + np.abs(el.current(ref, lo, hi))) / (a + el.conductance(ref, lo, hi))
    else:  # exp(x) carries x's rounding, eps*|x|, as a relative error
        xf, xr = (ref - hi) / el.Vd, (lo - ref) / el.Vd
        with np.errstate(invalid="ignore"):
            cur = el.Is * (np.nan_to_num(np.exp(xf) * (1 + np.abs(xf))) + np.nan_to_num(np.exp(xr) * (1 + np.abs(xr))))
        scale = (np.abs(c) + a * np.abs(ref) + cur + el.Is) / (a + el.conductance(ref, lo, hi))
    return float(np.max(np.abs(v - exact(el, a, c, lo, hi, ref)) / np.maximum(np.abs(ref), scale)))


@pytest.mark.parametrize("el", ELEMENTS, ids=repr)
def test_kernel_equals_the_numpy_reference(el, numba_backend):
    a, c, lo, hi = batch_cases(el)
    v, r = kernels.update(el, a, lo, hi, c.copy())
    assert agree(el, v, a, c, lo, hi) <= 1e-15
    assert np.all(r == 0)  # no previous voltages: no residual
    # the drive's parts are summed in the kernel, as (fixed + c) + c2
    fixed = np.random.default_rng(0).standard_normal(c.shape[1]) * a
    c1 = 0.3 * c
    c2 = c - c1 - fixed
    v2, _ = kernels.update(el, a, lo, hi, c1, c2, fixed)
    assert agree(el, v2, a, (fixed + c1) + c2, lo, hi) <= 1e-15


@pytest.mark.parametrize("el", ELEMENTS, ids=repr)
def test_kernel_residual_and_warm_start(el, numba_backend):
    """With the previous voltages ``old``, the kernel returns max|KCL(old)| per sample (as ``residual``), to the
    rounding of the KCL's terms (its exponentials are not NumPy's: they may differ in the last bit), and starting
    from them changes nothing: the exact solution stays exact, a perturbed one is corrected."""
    a, c, lo, hi = batch_cases(el)
    ref = el.solve_reference(a, c, lo, hi)
    rng = np.random.default_rng(5)
    for old in (ref, el.admissible(ref + 1e-3 * rng.standard_normal(ref.shape), lo, hi)):
        v, r = kernels.update(el, a, lo, hi, c.copy(), old=old)
        assert agree(el, v, a, c, lo, hi) <= 1e-15
        res = el.residual(old, a, c, lo, hi)
        want = np.abs(res).max(axis=1)
        terms = np.abs(c) + np.abs(a * old) + np.abs(res - a * old + c)  # |c|, a|v|, |I(v)|
        assert np.all(np.abs(r - want) <= np.maximum(1e-12 * want, 2 * EPS * terms.max(axis=1)))
        assert np.all(r > 0) or old is ref


@pytest.mark.parametrize("el", SHOCKLEYS, ids=repr)
def test_kernel_keeps_small_diode_currents_where_v_is_far_below_vd(el, numba_backend):
    """Weak drives (|v| << Vd): a diode current below 1e-3*eps*a*Vd is still a large part of a*|v|, so the kernel
    may leave it out of its Newton step only where |v| >= Vd (it was left out everywhere: up to 7x relative error,
    Is=1e-12). Kernel and reference both stop Newton within ~eps*Vd/4000 V absolute (elements: eps*Vd), so at
    |v| ~ 1e-17 V they agree to ~1e-10 relative, not to rounding."""
    a, c, lo, hi = batch_cases(el, seed=8)
    c = c * 10 ** np.random.default_rng(9).uniform(-20, -4, c.shape)
    ref = el.solve_reference(a, c, lo, hi)
    for old in (None, ref):  # the closed form and the warm Newton step
        v, _ = kernels.update(el, a, lo, hi, c.copy(), old=old)
        assert np.max(np.abs(v - ref) / np.abs(ref)) <= 1e-9


def test_a_warm_step_much_larger_than_v_is_a_quotient(numba_backend):
    """A warm start the weak-diode rule accepts can step 1,500 times farther than the solution lies from 0; the
    step is then ``f/slope``: as ``f·(1/slope)`` (the closed form's step) its extra rounding left 3.3e-13 relative
    error in ``v`` (review helper-34); as a quotient 1.2e-15, as the reference's."""
    el = Shockley(1e-6, 0.05)
    a, lo, hi = np.array([150596.2760232436]), np.array([-np.inf]), np.array([7.215753100313339])
    c = np.array([[5.38353590968072e-07]])
    exact = float((Fraction(c[0, 0]) + Fraction(el.Is)) / Fraction(a[0]))  # (the diode's current is ~1e-69 A)
    v, _ = kernels.update(el, a, lo, hi, c.copy(), old=np.array([[-1.5254723298244937e-08]]))
    assert abs(v[0, 0] - exact) <= 1e-14 * abs(exact)


def test_warm_start_rejected_where_the_slope_overflows(numba_backend):
    """A previous voltage 696-709 Vd beyond a rail with Is/Vd > 1: exp is finite but the slope Is/Vd*exp
    overflows, so the Newton step is f/inf = 0 and looked exact (it returned ``old``, 692 Vd off the root)."""
    el = Shockley(1e-6, 1e-12)
    a, lo, hi = np.array([0.0021978233309323395]), np.array([-0.9370524455678053]), np.array([-0.8679458109956051])
    c = np.array([[-1.3494475394349944e-05]])
    ref = el.solve_reference(a, c, lo, hi)
    for k in (696.0, 700.0, 705.0, 709.0):
        v, r = kernels.update(el, a, lo, hi, c.copy(), old=hi[None] + k * el.Vd)
        assert abs(v[0, 0] - ref[0, 0]) <= 4 * EPS * abs(ref[0, 0]) and r[0] > 0


def test_closed_form_step_where_the_scaled_slope_overflows(numba_backend):
    """The closed form's step takes f and the slope times the larger side's exponential ``big``: where ``big²``
    overflows (Is/(a·Vd) ~ 1e-157, so the root lies ~370 Vd beyond its rail) or underflows, it reports NaN with an
    infinite error, so the node is redone alone, and the update still equals the reference; where ``big`` is 0 (no
    diode conducts) the step is the linear node's."""
    from cdsolver import _numba_kernels as nk
    nan_step = nk._closed_form_step(1.0, 1.0, 2.0, 1e-200, 0.025, 1e160, 0.0, True)
    assert np.isnan(nan_step[0]) and nan_step[1] == np.inf
    v, err = nk._closed_form_step(1.0, 4.0, 4.0 + 1e-15, 1e-6, 0.05, 0.0, 0.0, True)
    assert v == 1.0 + 1e-15 / 4.0 and err == 0.0
    el = Shockley(1e-28, 0.025)
    a, lo, hi = np.full(3, 1e130), np.full(3, -0.5), np.full(3, 0.5)
    c = np.array([[20.0, -20.0, 0.1]]) * a
    v, _ = kernels.update(el, a, lo, hi, c.copy())
    beyond = (np.abs(v[0, :2]) - 0.5) / el.Vd  # (exp(355)² overflows)
    assert np.all(beyond > 355) and agree(el, v, a, c, lo, hi) <= 1e-15
    # big² below the normal floats (Is/(a·Vd) ~ 1e201: the root lies ~460 Vd inside the rail, big ~ 1e-200): the
    # diode term was lost, and the node kept c'/a = 35 V, final, where the root is 7.14 V (review helper-55)
    el = Shockley(1e100, 0.05)
    a, lo, hi, c = np.array([1e-100]), np.array([-1000.0]), np.array([30.0]), np.array([[35e-100, 100e-100]]).T
    v, _ = kernels.update(el, a, lo, hi, c.copy())
    assert abs(v[0, 0] - 7.1405077572032) < 1e-13 and agree(el, v, a, c, lo, hi) <= 1e-15


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (the reference's overflows are handled, not reported)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_both_diodes_conducting_far_from_the_drive(backend, monkeypatch):
    """Rails within a Vd, Is >> a*Vd and c/a tens of volts beyond them: the safeguarded Newton started ~1000 Vd
    above the root and crept down by ~Vd per step, so the update raised after 200 steps (both backends); it now
    bisects when a Newton step does not halve."""
    monkeypatch.setenv("DRN_KERNELS", backend)
    cases = [(Shockley(100.0, 0.05), 0.10761890816653087, 5.262962251618775, -0.3570825262958164, -0.341580162714563),
             (Shockley(1e-6, 0.05), 1.8768968197134297e-18, 1.6362465341816306e-16, -0.6698089259547966,
              -0.6508339254699141)]
    for el, *q in cases:
        a, c, lo, hi = (np.array([x]) for x in q)
        v = el.solve(a, c, lo, hi)
        assert agree(el, v, a, c, lo, hi) <= 1e-15


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_reference_polish_where_the_slope_overflows():
    """The NumPy reference's safeguarded Newton took f/inf = 0 as an exact step where Is/Vd*exp overflowed (exp
    finite): rails 1e-15 V apart at Vd = 1e-12 gave a voltage 4e5 times the root (540 of 20000 random nodes)."""
    el = Shockley(1e-6, 1e-12)
    a, c = np.array([0.9699078831305223]), np.array([2.7319934966623714e-09])
    lo, hi = np.zeros(1), np.array([8.589261201239484e-16])
    with np.errstate(over="ignore", invalid="ignore"):
        v = el.solve_reference(a, c, lo, hi)
    assert agree(el, v, a, c, lo, hi) <= 1e-15


def test_warm_start_is_taken_near_the_solution(numba_backend):
    """Where the previous voltage is within rounding, the warm Newton step is accepted: same result, and the
    update is cheaper (tested by the result only: the closed form and the warm step agree to rounding)."""
    el = Shockley(1e-6, 0.05)
    a, c, lo, hi = batch_cases(el, B=4, n=2000)
    ref = el.solve_reference(a, c, lo, hi)
    v, _ = kernels.update(el, a, lo, hi, c.copy(), old=ref * (1 + 1e-14))
    assert agree(el, v, a, c, lo, hi) <= 1e-15


def test_closed_form_starts_within_2e_9_of_ln_omega(numba_backend):
    """The cold Shockley update starts conducting nodes from ln ω(t): a Taylor step from the nearest point of two
    grids below t = 1088,
    an asymptotic series above; within 2e-9 absolute of ``log(wrightomega(t))`` everywhere (the node voltage starts
    within 2e-9·Vd and its one Newton step is final)."""
    from scipy.special import wrightomega
    from cdsolver import _numba_kernels as nk
    mid = np.concatenate([-12.0 + (np.arange(1216) + 0.5) / 16.0, 64.0 + np.arange(1024) + 0.5])  # (the read's
    # worst: halfway from its nearest point, 1.870e-9 at t = -0.53125)
    t = np.concatenate([np.linspace(-12.0, 2e3, 400_003)[1:], -12.0 + np.arange(1, 1217) / 16.0,
                        64.0 + np.arange(1025.0), np.geomspace(2e3, 1e300, 2000), mid, np.nextafter(mid, -np.inf),
                        np.nextafter(mid, np.inf)])
    got = np.array([nk._ln_omega(x) for x in t])
    want = np.log(wrightomega(t).real)
    assert np.abs(got - want).max() <= 2e-9
    assert np.isnan([nk._ln_omega(x) for x in (np.nan, np.inf)]).all()


def test_ln_omega_grids_are_read_within_bounds_at_their_ends(tmp_path):
    """t just below a grid's end rounds up to the end in the grid's step count: the read stays inside the grid
    (numba's bounds check on: an out-of-range index raises; a fresh cache, so the check is compiled in)."""
    code = ("import numpy as np\n"
            "from cdsolver import _numba_kernels as nk\n"
            "for t in (64.0, 1088.0, -12.0):\n"
            "    for x in (np.nextafter(t, -np.inf), t, np.nextafter(t, np.inf)):\n"
            "        if x > -12.0:\n"
            "            print(nk._ln_omega(x))\n"
            "for x in (np.nan, np.inf, -np.inf, -12.0, -1e308, 1e308, 0.0, 2000.0):\n"
            "    nk._ln_omega_read(x)  # (the vectorised pass reads the grids at every t)\n")
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout.split()) == 7


def test_warm_step_from_far_is_as_exact_as_cold(numba_backend):
    """A weak-diode node whose previous voltage is far from a root near 0 V: the warm Newton step carries f's
    rounding (~eps·|old|), so it is not accepted; the result is the cold one to rounding."""
    el = Shockley(1e-6, 0.05)
    cases = [(1.0, -np.inf, np.inf, 1e-18, 1e-3), (1e-3, -0.8, 0.8, 5e-8, 0.05), (1e-3, -0.8, 0.8, -1e-12, 0.04)]
    for a, lo, hi, c, old in cases:
        args = (el, np.array([a]), np.array([lo]), np.array([hi]), np.array([[c]]))
        warm, cold = kernels.update(*args, old=np.array([[old]]))[0], kernels.update(*args)[0]
        assert abs(warm - cold) <= 2 * EPS * abs(cold), (a, lo, hi, c, old, warm, cold)


@pytest.mark.parametrize("el", SHOCKLEYS, ids=repr)
def test_warm_start_taken_at_some_nodes_and_not_at_others(el, numba_backend):
    """Half the nodes start at their solution (kept by the warm Newton step), half far from it: those are packed
    and done from the closed form; every node exact."""
    a, c, lo, hi = batch_cases(el)
    ref = el.solve_reference(a, c, lo, hi)
    old = ref.copy()
    old[:, 1::2] = el.admissible(ref[:, 1::2] + 0.1, lo[1::2], hi[1::2])
    v, r = kernels.update(el, a, lo, hi, c.copy(), old=old)
    assert agree(el, v, a, c, lo, hi) <= 1e-15
    assert np.all(r > 0)


@pytest.mark.parametrize("el", SHOCKLEYS, ids=repr)
def test_rows_where_no_diode_conducts_or_one_side_never_does(el, numba_backend):
    """A row whose nodes all sit well inside the rails skips the ln W tables, and beyond |v| >= Vd its negligible
    diode sides; a row where only upper diodes conduct leaves out the lower side: every node still exact, with
    the residual of a warm start."""
    rng = np.random.default_rng(6)
    n, vd = 300, el.Vd
    a = 10 ** rng.uniform(-3, 0, n)
    lo, hi = np.full(n, -1000 * vd), np.full(n, 1000 * vd)
    inside = rng.choice([-1, 1], n) * rng.uniform(2 * vd, 500 * vd, n)  # |v| >= Vd, far from both rails
    beyond = hi + rng.uniform(5, 300, n) * vd  # past the upper rail: only its diode conducts
    for v_target in (inside, beyond):
        c = np.stack([a * v_target, 1.01 * a * v_target])
        ref = el.solve_reference(a, c, lo, hi)
        for old in (None, ref, ref * (1 + 1e-6)):
            v, r = kernels.update(el, a, lo, hi, c.copy(), old=old)
            assert agree(el, v, a, c, lo, hi) <= 1e-15


def test_exp_is_within_0_75_eps_of_exp(numba_backend):
    """The kernels' exponential (``_nk._exp``: branch-free, so loops over nodes are vectorised) against exp in
    80-bit precision — uniform samples and, for every exponent k, samples with r = x - k ln 2 near -ln2/2, where
    its error is largest (0.725 eps found) — and at its edges: 0 below -707, inf above ln(max float), NaN for
    NaN."""
    from numba import njit
    from cdsolver import _numba_kernels as nk

    @njit
    def exp(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = nk._exp(x[i])
        return out

    rng = np.random.default_rng(11)
    k = np.arange(-1020, 1024)
    near = (k[:, None] * np.log(2) + rng.uniform(-0.3466, -0.335, (k.size, 500))).ravel()
    x = np.concatenate([rng.uniform(-707, 709.78, 10**6), rng.uniform(-2, 2, 10**6), np.arange(-707.0, 710.0),
                        near[(near >= -707) & (near <= 709.78)], [709.782712893384, -707.0, 0.0, 1e-300, -1e-300]])
    want = np.exp(x.astype(np.longdouble))
    assert np.max(np.abs((exp(x) - want) / want)) <= 0.75 * EPS
    edges = np.array([709.7827128933841, 1e308, np.inf, -707.0000000000001, -745.2, -1e308, -np.inf, np.nan])
    got = exp(edges)
    assert np.array_equal(got[:3], [np.inf] * 3) and np.array_equal(got[3:7], [0.0] * 4) and np.isnan(got[7])
    assert exp(np.array([0.0]))[0] == 1.0


def test_node_passes_compile_contiguous_and_vectorised(tmp_path):
    """The Shockley update's passes, and the loops over samples, are compiled for contiguous arrays only (a
    strided signature is not vectorised, which made the kernel 2x slower), LLVM vectorises their loops and the
    block's functions hold no reference counting (a fresh cache, so the code is compiled). The loops are counted in each
    function's own definition: a signature's LLVM module also holds the functions it calls, numba's among them."""
    code = r"""if True:
        import re
        import numpy as np
        from cdsolver import kernels, _numba_kernels as nk
        from cdsolver.elements import Shockley
        el, n = Shockley(1e-6, 0.05), 64
        a, lo, hi = np.full(n, 1e-3), np.full(n, -0.5), np.full(n, 0.5)
        c = np.random.default_rng(0).standard_normal((4, n)) * 1e-3
        v = kernels.update(el, a, lo, hi, c.copy())[0]
        kernels.update(el, a, lo, hi, c.copy(), old=v * (1 + 1e-3 * (np.arange(n) % 2)))
        for f in (nk._exponents_pass, nk._newton_pass, nk._closed_form_pass, nk._shockley_block, nk._shockley_rows,
                  nk._rows):
            arrays = {str(t) for sig in f.signatures for t in sig if "array" in str(t)}
            own = f"_numba_kernels{len(f.__name__)}{f.__name__}B"  # (its mangled name)
            loops, refs = [], 0
            for sig in f.signatures:  # (its definitions: the function and numba's wrappers of it)
                defs = [d for d in re.split(r"^define ", f.inspect_llvm(sig), flags=re.M)[1:]
                        if own in re.search(r"@([^\s(]+)", d).group(1)]
                loops.append(sum(len(re.findall(r"^vector\.body\d*:", d, re.M)) for d in defs))
                refs += sum(len(re.findall(r"call void @NRT_(?:incref|decref)", d)) for d in defs)
            contiguous = all(re.fullmatch(r"array\(float64, [12]d, C\)", t) for t in arrays)
            print(f.__name__, contiguous, min(loops), len(loops), refs)
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), DRN_KERNELS="numba")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    # one signature each, each loop vectorised: _exponents_pass's one, _newton_pass's two (the exponential, the
    # step), _closed_form_pass's three (start with its table read and exponents, the exponential, the step),
    # _shockley_block's one (each sample's residual maximum), _shockley_rows's six (the drive's sum and shift, the
    # warm start's copy, the node constants repeated), _rows's three (the drive's sum); reference counts only in
    # the last two (which allocate the scratch)
    words = out.stdout.split()
    names = ["_exponents_pass", "_newton_pass", "_closed_form_pass", "_shockley_block", "_shockley_rows", "_rows"]
    assert words[0::5] == names and words[1::5] == ["True"] * 6, out.stdout
    assert words[3::5] == ["1"] * 6 and words[4::5][:4] == ["0"] * 4, out.stdout
    assert [int(w) >= least for w, least in zip(words[2::5], (1, 2, 3, 1, 6, 3))] == [True] * 6, out.stdout


@pytest.mark.parametrize("el", [SHOCKLEYS[0], Pwl([[-1.0, -0.3], [0.0, 0.0], [1.0, 0.3]]), LinearPair(0.02)],
                         ids=repr)
def test_layer_in_chunks_of_samples_equals_the_serial_layer(el, numba_backend):
    """The parallel driver splits the samples into chunks (one per thread, each with its own scratch): for any
    count of chunks asked for (more than the samples: one per sample; none: one), every sample's voltages,
    residual and failure count are the serial driver's, bit for bit, with every part of the drive."""
    nk = kernels.compiled()
    a, c, lo, hi = batch_cases(el, B=40, n=64)  # (Shockley: blocks of 16 samples, some cut by a chunk's end)
    if isinstance(el, LinearPair):
        a = a + 0.02
    k = kernels.LayerKernel(el, a, lo, hi, c.shape[1])
    rng = np.random.default_rng(8)
    old = k.update(c)[0] * (1 + 1e-6 * rng.standard_normal(c.shape))
    empty = np.zeros((0, 0))
    for c2, fixed, o in ((empty, empty, empty), (0.5 * c, 0.1 * c[:1], old), (-0.5 * c, 0.2 * c, old)):
        args = (k.code, c, np.ascontiguousarray(c2), np.ascontiguousarray(fixed), k.a, k.ia, k.lnk, k.kp, k.shift,
                k.lo, k.hi, k.prm, k.table, o)
        v, r = np.full(c.shape, np.nan), np.full(c.shape[0], np.nan)
        bad = nk.layer_serial(*args, v, r)
        for chunks in (1, 2, 3, 7, 45, 0):  # (more chunks than samples are taken as one per sample, 0 as 1)
            vc, rc = np.full(c.shape, np.nan), np.full(c.shape[0], np.nan)
            assert nk.layer_parallel(*args, vc, rc, chunks) == bad
            assert np.array_equal(vc.view(np.int64), v.view(np.int64)) and np.array_equal(rc, r)
        assert np.isfinite(v).all() and np.isfinite(r).all()


@pytest.mark.parametrize("el", SHOCKLEYS, ids=repr)
def test_short_rows_in_blocks_equal_one_sample_at_a_time(el, numba_backend):
    """Samples of a few nodes are updated many to a block (about 1,024 nodes; the last block partly filled):
    each sample's voltages and residual maximum are those of the sample updated alone, bit for bit, cold and
    warm (some samples at their solution, some off it, one with a NaN drive), and exact."""
    a, c, lo, hi = batch_cases(el, B=300, n=7)
    c[5, 3] = np.nan
    ref = el.solve_reference(a, c, lo, hi)
    old = ref.copy()
    old[1::3] = el.admissible(ref[1::3] * (1 + 1e-3), lo, hi)
    for start in (None, old):
        v, r = kernels.update(el, a, lo, hi, c, old=start)
        for b in range(300):
            vb, rb = kernels.update(el, a, lo, hi, c[b:b + 1], old=None if start is None else start[b:b + 1])
            assert np.array_equal(vb.view(np.int64), v[b:b + 1].view(np.int64)) and np.array_equal(rb, r[b:b + 1],
                                                                                               equal_nan=True)
        ok = np.arange(300) != 5
        assert agree(el, v[ok], a, c[ok], lo, hi) <= 1e-15 and np.isnan(v[5, 3])
        assert (np.isnan(r[5]) and np.all(r[1::3] > 0)) if start is not None else np.all(r == 0)


def test_pair_kernel(numba_backend):
    rng = np.random.default_rng(4)
    K, g = 10, 0.02
    a = rng.uniform(0.05, 1, 2 * K) + g
    c = rng.standard_normal((5, 2 * K))
    el = LinearPair(g)
    inf = np.full(2 * K, np.inf)
    ref = el.solve_reference(a, c, -inf, inf)
    old = ref + 0.01
    v, r = kernels.update(el, a, -inf, inf, c.copy(), old=old)
    assert np.max(np.abs(v - ref) / (np.abs(ref) + np.abs(c) / a)) <= 1e-15
    np.testing.assert_allclose(r, np.abs(el.residual(old, a, c, -inf, inf)).max(axis=1), rtol=1e-12)


def test_empty_and_odd_shapes(numba_backend):
    """No nodes gives no voltages (it raised in reshape); an odd number of paired nodes is refused (the last node
    was left uninitialised)."""
    el = Shockley(1e-6, 0.05)
    assert el.solve(np.ones(0), np.zeros(0), np.ones(0), np.ones(0)).shape == (0,)
    assert el.solve(np.ones(0), np.zeros((3, 0)), np.ones(0), np.ones(0)).shape == (3, 0)
    assert el.solve(np.ones(2), np.zeros((0, 2)), -np.ones(2), np.ones(2)).shape == (0, 2)
    inf = np.full(3, np.inf)
    with pytest.raises(ValueError, match="pairs"):
        kernels.update(LinearPair(0.1), np.ones(3), -inf, inf, np.ones((2, 3)))


def test_nan_drive_is_nan_not_a_number(numba_backend):
    el = Shockley(1e-6, 0.05)
    a, lo, hi = np.ones(3) * 1e-3, np.full(3, -0.8), np.full(3, 0.8)
    c = np.array([[1e-3, np.nan, -1e-3]])
    v, r = kernels.update(el, a, lo, hi, c, old=np.zeros((1, 3)))
    assert np.isnan(v[0, 1]) and np.isfinite(v[0, [0, 2]]).all() and np.isnan(r[0])


def test_fallback_without_numba(monkeypatch):
    """DRN_KERNELS=numpy, or numba missing, gives the NumPy reference (same voltages)."""
    el = SHOCKLEYS[0]
    a, c, lo, hi = batch_cases(el)
    ref = el.solve_reference(a, c, lo, hi)
    monkeypatch.setenv("DRN_KERNELS", "numpy")
    assert kernels.backend() == "numpy"
    assert np.array_equal(el.solve(a, c, lo, hi), ref)
    monkeypatch.setenv("DRN_KERNELS", "numba")
    monkeypatch.setattr(kernels, "_compiled", False)  # as if `import numba` had failed
    assert kernels.backend() == "numpy"
    v, r = kernels.update(el, a, lo, hi, c, old=ref)
    assert np.array_equal(v, ref) and np.all(r <= 1e-12 * np.abs(c).max())
    monkeypatch.setenv("DRN_KERNELS", "gpu")
    with pytest.raises(ValueError, match="DRN_KERNELS"):
        kernels.backend()


@pytest.fixture
def kernels_fail_to_load(monkeypatch):
    """numba importable, the compiled kernels not: their module blocked (in practice e.g. a cache written for a
    renamed copy of the package), the backend not yet chosen."""
    import sys

    import cdsolver

    monkeypatch.setenv("DRN_KERNELS", "numba")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(kernels, "_compiled", None)
    monkeypatch.setitem(sys.modules, "cdsolver._numba_kernels", None)  # its import raises ImportError
    monkeypatch.delattr(cdsolver, "_numba_kernels", raising=False)  # (else `from . import` takes the attribute)


def test_kernels_that_do_not_load_are_an_error_not_a_silent_fallback(kernels_fail_to_load, monkeypatch):
    """numba missing: the NumPy reference. numba present but the kernels failing to load (a cache written for a
    renamed copy of the package made every solve 3x slower through the silent fallback): an error naming the
    cause, the cache and the way out."""
    import sys
    import types

    with pytest.raises(RuntimeError, match=r"kernels did not load \(ModuleNotFoundError: .*_numba_kernels\.\* files "
                                           r"in .*__pycache__.*DRN_KERNELS"):
        kernels.backend()
    monkeypatch.setattr(kernels, "_compiled", None)
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere")
    with pytest.raises(RuntimeError, match="under NUMBA_CACHE_DIR=/somewhere"):
        kernels.backend()
    monkeypatch.setenv("DRN_KERNELS", "numpy")  # the way out
    assert kernels.backend() == "numpy"
    monkeypatch.setenv("DRN_KERNELS", "numba")
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    assert kernels.backend() == "numpy"
    monkeypatch.setattr(kernels, "_compiled", None)
    monkeypatch.setitem(sys.modules, "numba", types.ModuleType("numba"))  # an empty `numba` directory
    assert kernels.backend() == "numpy"


def test_bad_backend_name_is_a_one_line_cli_error(ngspice, monkeypatch, capsys):
    """A wrong DRN_KERNELS is bad user input: one line on stderr and exit 2 (it was a traceback)."""
    from studies.cli import main

    monkeypatch.setenv("DRN_KERNELS", "gpu")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "DRN_KERNELS" in err and len(err.strip().splitlines()) == 1


def test_numba_settings_it_refuses_are_a_one_line_cli_error(tmp_path):
    """NUMBA_NUM_THREADS=0 makes numba raise ValueError while it loads: ``drn doctor`` printed numba's traceback
    (hostile test, helper-53); it is bad user input, one line and exit 2."""
    env = dict(os.environ, NUMBA_NUM_THREADS="0", DRN_KERNELS="numba")
    out = subprocess.run([sys.executable, "-m", "studies.cli", "doctor"], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "drn doctor: error: numba did not load: Number of threads specified must be > 0. (environment: "
        "NUMBA_NUM_THREADS=0)"]


NETWORKS = {
    "shockley-3-inv": dict(sizes=[20, 30, 30, 30, 4], element="shockley", amplifier=Amplifier(4.0, 1.0, "half")),
    "shockley-1": dict(sizes=[20, 60, 4], element="shockley"),
    "ideal-2": dict(sizes=[20, 30, 30, 4], element="ideal"),
    "pwl-2-A4C1": dict(sizes=[20, 30, 30, 4], element="pwl", amplifier=(4.0, 1.0)),
    "shockley-2-paired": dict(sizes=[20, 30, 30, 4], element="shockley", outputs="paired"),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_solver_same_states_with_both_backends(name, monkeypatch):
    kw = dict(NETWORKS[name])
    net = random_network(kw.pop("sizes"), kw.pop("element"), seed=1, input_gain=8.0, **kw)
    v0 = net.encode(np.random.default_rng(2).uniform(0, 1, (40, net.n_features)))
    sols = {}
    for b in ("numpy", "numba"):
        monkeypatch.setenv("DRN_KERNELS", b)
        assert kernels.backend() == b
        sols[b] = solve(net, v0, beta=0.05, targets=np.full((40, net.n_classes), 0.3)).check()
    for s_np, s_nb in zip(sols["numpy"].states, sols["numba"].states):
        assert np.abs(s_np - s_nb).sum() <= 1e-13 * np.abs(s_np).sum()
    for s in sols.values():  # both at the KCL floor of the stopping test
        assert np.all(s.residual <= s.tol * s.i_ref)


@pytest.mark.parametrize("B, N", [(40, 50), (64, 620), (12, 0)])  # serial, parallel, rows without columns
def test_compiled_step_sizes_and_best_state_equal_numpy(B, N, monkeypatch):
    """The sweep loop's ``max|T(x) - x|`` and ``max|x|`` per row and its update of the best residual and CD step,
    compiled and in NumPy: the same bits, through rows with NaN, inf, -0.0, a NaN residual, and ties."""
    from cdsolver.solver import _step_and_best
    rng = np.random.default_rng(11)
    x, gx = rng.standard_normal((B, N)), rng.standard_normal((B, N))
    if N:
        x[1, 3], gx[2, 0], gx[3, -1], x[4] = np.nan, np.inf, -np.inf, -0.0
        x[5, :2], gx[5, :2] = np.inf, np.inf  # inf - inf: NaN
    r, r_best = rng.random(B), rng.random(B)
    r[6], r[7], r_best[8], r[9] = np.nan, r_best[7], np.inf, 0.0
    out = {}
    for b in ("numpy", "numba"):
        monkeypatch.setenv("DRN_KERNELS", b)
        rb, gb = r_best.copy(), np.full_like(x, 7.0)
        with np.errstate(invalid="ignore"):
            dx, xmax = _step_and_best(x, gx, r, rb, gb)
        out[b] = (dx, xmax, rb, gb)
    for a, c in zip(out["numpy"], out["numba"]):
        assert np.array_equal(a, c, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(c))
    dx, xmax, rb, gb = out["numba"]
    if N:
        assert np.isnan(dx[[1, 5]]).all() and np.isnan(xmax[1]) and dx[2] == np.inf and xmax[4] == 0.0
        better = r < r_best
        assert np.array_equal(gb[better], gx[better]) and np.all(gb[~better] == 7.0) and not better[[6, 7]].any()
    else:
        assert np.all(dx == 0.0) and np.all(xmax == 0.0)


@pytest.mark.parametrize("B, N", [(40, 50), (64, 620)])  # serial, and parallel (B·N >= 32,768 throughout)
def test_compiled_anderson_step_equals_numpy(B, N, monkeypatch):
    """The Anderson mixing of the sweep loop, compiled and in NumPy, through the same sequence of steps (the ring
    buffer wrapping, samples leaving, restarts, NaN and inf iterates, repeated ones): the same steps to rounding
    (the mixing solves differ in the order of their sums), NaN in the same places."""
    from cdsolver.solver import _Anderson
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((B, N)) * 0.1 ** k + 1.0 for k in range(9)]
    gs = [x + 0.5 ** k * rng.standard_normal((B, N)) for k, x in enumerate(xs)]
    gs[3][1] = gs[2][1] - xs[2][1] + xs[3][1]  # sample 1: the same residual twice (a zero difference)
    gs[4][2, :5] = np.nan
    gs[5][3, 0] = np.inf
    outs = {}
    for b in ("numpy", "numba"):
        monkeypatch.setenv("DRN_KERNELS", b)
        acc, rows, got = _Anderson(3), np.arange(B), []
        for k, (x, g) in enumerate(zip(xs, gs)):
            with np.errstate(invalid="ignore", over="ignore"):  # as in the sweep loop
                got.append(acc(x[rows], g[rows]))
            if k == 5:
                keep = np.ones(len(rows), bool)
                keep[::7] = False
                rows = rows[keep]
                acc.keep(keep)
            if k == 6:
                acc.restart(np.arange(len(rows)) % 5 == 0)
        outs[b] = got
    for k, (a, c) in enumerate(zip(outs["numpy"], outs["numba"])):
        assert np.array_equal(np.isnan(a), np.isnan(c)), k
        np.testing.assert_allclose(c, a, rtol=1e-9, atol=1e-12, err_msg=f"step {k}")
    assert np.isnan(outs["numba"][5]).any() and np.isfinite(outs["numba"][8]).mean() > 0.9


def test_anderson_keeps_its_backend_for_the_whole_solve(monkeypatch):
    """The compiled step keeps the Gram matrix between steps and the NumPy step does not: a backend change in the
    middle of a solve must not mix them (the compiled step would read a stale Gram matrix)."""
    from cdsolver.solver import _Anderson
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((4, 50)) * 0.5 ** k for k in range(6)]
    gs = [x + 0.3 ** k * rng.standard_normal(x.shape) for k, x in enumerate(xs)]
    outs = []
    for switch in (False, True):
        monkeypatch.setenv("DRN_KERNELS", "numpy")
        acc = _Anderson(3)
        got = []
        for k, (x, g) in enumerate(zip(xs, gs)):
            if switch and k == 3:
                monkeypatch.setenv("DRN_KERNELS", "numba")
            got.append(acc(x, g))
        outs.append(got)
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", NETWORKS)
def test_compiled_bounds_are_the_numpy_bounds_bit_for_bit(name, numba_backend):
    """The stopping test's current bounds, compiled (``solver._i_ref``, ``_i_upper``) = NumPy (``_i_ref_numpy``,
    ``_i_upper_numpy``) exactly, on every sample and on a subset of rows, with states off the solution; a NaN
    voltage gives NaN in both, an infinite one the same number."""
    from cdsolver import solver

    kw = dict(NETWORKS[name])
    net = random_network(kw.pop("sizes"), kw.pop("element"), seed=4, input_gain=8.0, **kw)
    rng = np.random.default_rng(5)
    for G in net.G:  # sparse crossbars and heavy-tailed voltages: each kind of branch is the largest somewhere
        G *= rng.random(G.shape) < 0.3
        G[0] += 1e-3  # no node without conductance
    P = solve(net, net.encode(rng.uniform(0, 1, (12, net.n_features))), max_sweeps=2).setup
    pairs = [(solver._i_ref, solver._i_ref_numpy), (solver._i_upper, solver._i_upper_numpy)]
    tied = {l: rng.integers(-2, 3, (12, n)).astype(float) for l, n in enumerate(net.sizes[1:], 1)}  # argmax ties
    for v in (tied, {l: rng.standard_cauchy((12, n)) for l, n in enumerate(net.sizes[1:], 1)}):
        for rows in (np.arange(12), np.array([1, 5, 11])):
            part = {l: x[rows] for l, x in v.items()}
            for fused, ref in pairs:  # the same bits
                assert np.array_equal(fused(P, rows, part).view(np.int64), ref(P, rows, part).view(np.int64))
    with pytest.raises(ValueError, match="layer 1: states of shape"):
        solver._i_ref(P, np.arange(3), v)
    v[2][4, 1], v[1][7, 0] = np.nan, np.inf
    for fused, ref in pairs:
        bound = fused(P, np.arange(12), v)
        with np.errstate(invalid="ignore"):  # 0 S × inf V
            assert np.isnan(bound[4]) and np.array_equal(bound, ref(P, np.arange(12), v), equal_nan=True)


def test_compiled_bounds_break_ties_as_numpy(numba_backend):
    """Where several nodes or drives share the highest or lowest voltage, the compiled bounds take the first, as
    NumPy's argmax does: small sparse networks (where the branch from the extreme node is often the largest) with
    voltages in {-2, ..., 2}, 1,500 samples."""
    from cdsolver import solver

    rng = np.random.default_rng(7)
    for seed in range(30):
        net = random_network([8, 6, 6, 6, 3], "shockley", seed=seed, amplifier=Amplifier(4.0, 1.0, "half"))
        for G in net.G:
            G *= rng.random(G.shape) < 0.5
            G[0] += 1e-3  # no node without conductance
        P = solve(net, net.encode(rng.uniform(0, 1, (50, net.n_features))), max_sweeps=1).setup
        v = {l: rng.integers(-2, 3, (50, n)).astype(float) for l, n in enumerate(net.sizes[1:], 1)}
        rows = np.arange(50)
        assert np.array_equal(solver._i_ref(P, rows, v), solver._i_ref_numpy(P, rows, v))


def test_compiled_i_ref_in_parallel_is_numpys(numba_backend):
    """Batches large enough for the samples-in-parallel ``I_ref`` (64 samples x 610 nodes >= the kernels' serial
    limit) give NumPy's bound bit for bit, as the serial pass does on a few of their rows."""
    from cdsolver import solver

    rng = np.random.default_rng(9)
    net = random_network([20, 300, 300, 10], "shockley", seed=3, amplifier=Amplifier(4.0, 1.0, "half"))
    for G in net.G:
        G *= rng.random(G.shape) < 0.3
        G[0] += 1e-3  # no node without conductance
    B = 64
    assert kernels.parallel(B * sum(net.sizes[1:])) and not kernels.parallel(3 * sum(net.sizes[1:]))
    P = solve(net, net.encode(rng.uniform(0, 1, (B, net.n_features))), max_sweeps=2).setup
    for v in ({l: rng.integers(-2, 3, (B, n)).astype(float) for l, n in enumerate(net.sizes[1:], 1)},
              {l: rng.standard_cauchy((B, n)) for l, n in enumerate(net.sizes[1:], 1)}):
        for rows in (np.arange(B), np.array([2, 30, 63])):
            part = {l: x[rows] for l, x in v.items()}
            assert np.array_equal(solver._i_ref(P, rows, part).view(np.int64),
                                  solver._i_ref_numpy(P, rows, part).view(np.int64))


def test_compiled_extremes_are_numpys_argmax_and_argmin(numba_backend):
    """``_extremes`` (a vectorised maximum on order-preserving integer keys, then the first equal entry) gives
    NumPy's argmax and argmin: ties to the first index, -0 tying with +0, infinities, one entry."""
    from cdsolver import _numba_kernels as nk

    rng = np.random.default_rng(8)
    rows = [np.array([-0.0, 0.0, -0.0]), np.array([0.0, -0.0]), np.array([-1.0, -0.0, -1.0, 0.0]),
            np.array([np.inf, 1.0, np.inf, -np.inf, -np.inf]), np.array([3.0]), -np.abs(rng.standard_normal(7))]
    rows += [rng.integers(-2, 3, n).astype(float) * rng.choice([-1.0, 1.0]) for n in rng.integers(1, 40, 300)]
    for x in rows:
        assert nk._extremes(x) == (np.argmax(x), np.argmin(x)), x


def test_compiled_i_ref_takes_the_branches_from_the_extreme_nodes(numba_backend):
    """A circuit where the largest branch current of crossbar 2 runs from the highest (sample 0) or lowest
    (sample 1) node of layer 2 through neither its largest conductance nor an extreme drive: 0.5 S × 10 V."""
    from cdsolver import solver

    net = random_network([8, 4, 3, 2], "shockley", seed=0)
    net.G[0][:] = net.G[2][:] = 1e-3
    net.G[1][:] = 1e-3
    net.G[1][:, 2] = [1.0, 0.5, 0.0, 0.0]
    P = solve(net, np.zeros((2, 8)), max_sweeps=1).setup
    v = {1: np.array([[10.0, 0, 5, -5], [-10, 0, 5, -5]]), 2: np.array([[0.0, 0, 10], [0, 0, -10]]),
         3: np.zeros((2, 2))}
    rows = np.arange(2)
    assert np.array_equal(solver._i_ref(P, rows, v), [5.0, 5.0])
    assert np.array_equal(solver._i_ref_numpy(P, rows, v), [5.0, 5.0])


def test_doctor_names_the_kernel_backend(ngspice, capsys, monkeypatch):
    from studies.cli import main

    monkeypatch.setenv("DRN_KERNELS", "numba")
    assert main(["doctor"]) == 0
    assert "node kernels: numba" in capsys.readouterr().out
    monkeypatch.setenv("DRN_KERNELS", "numpy")
    main(["doctor"])
    assert "node kernels: the NumPy reference" in capsys.readouterr().out


def test_doctor_reports_kernels_that_do_not_load(ngspice, kernels_fail_to_load, capsys):
    """The kernels failing to load with numba present: doctor counts a problem, says what to do, and goes on to
    check ngspice (the error would have been its traceback)."""
    from studies.cli import main

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "node kernels: NOT LOADED" in out and "DRN_KERNELS=numpy" in out
    assert "ngspice" in out.split("NOT LOADED")[1] and out.rstrip().endswith("1 problem(s)")


def test_rails_far_apart_need_no_underflow(numba_backend):
    """The product of the two sides' exponentials, ``exp((lo - hi)/Vd)``, underflows for rails more than 708 Vd
    apart (to 0 beyond 745; here 800): quietly (a program running with ``numpy.errstate(under="raise")`` solved
    such layers before), and the nodes stay exact."""
    el = Shockley(1e-6, 0.05)
    n = 50
    a, lo, hi = np.full(n, 0.5), np.full(n, -20.0), np.full(n, 20.0)
    c = np.random.default_rng(2).uniform(-15, 15, (3, n))
    with np.errstate(under="raise"):
        k = kernels.LayerKernel(el, a, lo, hi, n)
        v = k.update(c.copy())[0]
    assert np.all(k.kp == 0.0) and agree(el, v, a, c, lo, hi) <= 1e-15
