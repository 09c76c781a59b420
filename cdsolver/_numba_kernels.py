"""The numba code behind ``kernels.update`` (imported only through ``kernels``; see there), and the compiled
parts of the solver's sweep loop (the stopping test's current bounds, its step sizes, the Anderson step).

The drivers, ``layer_parallel`` and ``layer_serial``, split the samples into chunks (one per thread) and loop,
per sample, over the nodes of the element (codes in ``kernels``; ``_rows``); Shockley nodes go through
vectorised passes over blocks of about 1,024 nodes (``_shockley_rows``, ``_shockley_block``). Each node function
mirrors its element's NumPy reference in ``elements``; the bounds and the Anderson step mirror theirs in
``solver``.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, prange, types
from numba.extending import intrinsic

from .elements import _EPS, _LNZ_CUTOFF
from .kernels import _IDEAL, _LINEAR, _PAIR, _PWL, _SHOCKLEY

# Newton from the previous voltage is trusted for steps below _WARM_STEP * Vd, where the bound on |f''| over the
# step (first order in step/Vd) is tight, and for steps below Vd at nodes whose diodes barely conduct
_WARM_STEP = 1e-3
# A Newton step is final when the error it leaves is below _ERR * (|v| + Vd/1000): a quarter of v's rounding
# (the NumPy reference stops at eps*(|v| + Vd), which exceeds v's rounding where |v| << Vd)
_ERR = 0.25 * _EPS
_NEGLIGIBLE = math.log(1e-3 * _EPS)  # ln of a diode current (in units of a*Vd) that cannot move v
_FLOAT_MIN = sys.float_info.min  # the smallest normal float64


@njit(cache=True, error_model="numpy")
def _omega_start(t):
    """Start of Wright ω(t) (w + ln w = t), real ``t``, by region (few % error)."""
    if t < -2.0:
        return math.exp(t)
    if t < 1.0:
        return math.exp(2.0 * (t - 1.0) / 3.0)
    lt = math.log(t)
    return t - lt + lt / t


@njit(cache=True, error_model="numpy")
def _omega_step(t, w):
    """One iteration of Fritsch, Shafer & Crowley (fourth order) towards ω(t), for the ``ln ω`` grids (``t`` up to
    ``_LNW_END``; four from ``_omega_start`` reach ω to rounding)."""
    r = t - w - math.log(w)
    wp1 = w + 1.0
    q = 2.0 * wp1 * (wp1 + 2.0 / 3.0 * r)
    return w + w * r * (q - r) / (wp1 * (q - 2.0 * r))


# ln ω(t) for the closed form's start, for t beyond a node's cut-off (below it no diode conducts): read from a
# grid of step 1/16 over [_LNZ_CUTOFF, 64] and of step 1 over [64, _LNW_END], where d⁴ ln ω/dt⁴ ~ 6/t⁴ is small;
# above, the asymptotic series of ln ω to (ln t/t)³ (one logarithm). The grids hold ln ω only; a node reads the
# nearest grid point's value (one gather in the vectorised pass) and steps from it by the Taylor polynomial of
# degree 3, whose derivatives follow from the value: ω = t₀ − ln ω, d ln ω/dt = 1/(1 + ω), then −ω/(1 + ω)³ and
# ω(2ω − 1)/(1 + ω)⁵ (the cubic Hermite interpolant it replaced read two points, and a second gather costs
# 0.5-0.8 ns per node on Zen 4: the read took 1.2-1.35x as long). Within 2e-9 of ln ω everywhere (1.870e-9 at
# most, at a near-grid midpoint, t = -0.53125; the Hermite's 1.869e-9: tests/test_kernels.py), so the node voltage
# starts within 2e-9·Vd and the Newton step that follows leaves ~2e-18·Vd: at most one transcendental before it.
# (The diode current at the solution is a·Vd·ω ≈ a·Vd·t: most hidden nodes of a trained Fashion-MNIST network sit
# at t = 40-600.)
_LNW_MID, _LNW_END = 64.0, 1088.0
_LNW_H = 1.0 / 16.0  # the near grid's step


@njit(cache=True, error_model="numpy")
def _ln_omega_grid(t0, h, n):
    """ln ω at t0 + h·i, i < n, ω to rounding (start by region, then four FSC steps)."""
    out = np.empty(n)
    for i in range(n):
        t = t0 + h * i
        w = _omega_start(t)
        for _ in range(4):
            w = _omega_step(t, w)
        out[i] = math.log(w)
    return out


# The two grids as one table, for a branch-free read: the near grid's points, then the far grid's
_LNW_N = int((_LNW_MID - _LNZ_CUTOFF) / _LNW_H) + 1
_LNW_FAR_N = int(_LNW_END - _LNW_MID) + 1
_LNW_VAL = np.concatenate((_ln_omega_grid(_LNZ_CUTOFF, _LNW_H, _LNW_N), _ln_omega_grid(_LNW_MID, 1.0, _LNW_FAR_N)))


@njit(cache=True, error_model="numpy", inline="always")
def _ln_omega_read(t):
    """ln ω(t) from the grids, for ``_LNZ_CUTOFF < t < _LNW_END`` (elsewhere a value of no meaning, inf or NaN
    at t = ±inf, ±1e308 or NaN: never used there), without
    branches (so a loop over nodes is vectorised): the Taylor polynomial of degree 3 about the nearest point of the
    near grid (steps of 1/16) where its step count is below its last point, else of the far grid (steps of 1),
    the derivatives from the point's value through one division."""
    u = (t - _LNZ_CUTOFF) * (1.0 / _LNW_H) + 0.5  # (the nearest point: u rounded down)
    near = u < _LNW_N - 0.5
    u = u if near else min(t - _LNW_MID + 0.5, _LNW_FAR_N - 0.5)
    u = u if u > 0.0 else 0.0  # (and NaN: 0)
    k = np.int32(u)
    i = k if near else k + _LNW_N
    t0 = _LNZ_CUTOFF + _LNW_H * k if near else _LNW_MID + 1.0 * k  # the grid point (exact, as in _ln_omega_grid)
    y0 = _LNW_VAL[i]
    w = t0 - y0  # ω at the point
    p = 1.0 / (1.0 + w)
    p3 = p * p * p
    d = t - t0
    return y0 + d * (p + d * (-0.5 * w * p3 + d * ((w * (2.0 * w - 1.0) * (1.0 / 6.0)) * p3 * (p * p))))


@njit(cache=True, error_model="numpy")
def _ln_omega(t):
    """ln ω(t) (ω + ln ω = t) to 2e-9 absolute, for ``t > _LNZ_CUTOFF`` (NaN for NaN and inf): the grids below
    ``_LNW_END``, above it the asymptotic series of ln ω to (ln t/t)³ (one logarithm)."""
    if t < _LNW_END:
        return _ln_omega_read(t)
    L = math.log(t)
    r = 1.0 / t
    return L - L * r * (1.0 + r * (0.5 * (L - 2.0) + r * (L * (2.0 * L - 9.0) + 6.0) / 6.0))


@intrinsic
def _bits(typingctx, x):
    """The bits of a float64 as an int64."""
    return types.int64(types.float64), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(64))


@intrinsic
def _float(typingctx, n):
    """The float64 whose bits are the int64 ``n``."""
    return types.float64(types.int64), lambda context, builder, sig, args: builder.bitcast(args[0], ir.DoubleType())


@intrinsic
def _fma(typingctx, x, y, z):
    """``x*y + z`` rounded once (``llvm.fma``: without fastmath, numba does not contract ``x*y + z``)."""
    sig = types.float64(types.float64, types.float64, types.float64)
    return sig, lambda context, builder, sig, args: builder.fma(*args)


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 = HI + LO, HI·k exact for |k| < 2^21
_INV_LN2 = 1.0 / math.log(2.0)
_ROUND = 6755399441055744.0  # 1.5·2^52: x + _ROUND - _ROUND is x rounded to an integer, held in x + _ROUND's low bits
_EXP_MAX = 709.782712893384  # ln of the largest float64
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (1.0 / math.factorial(i) for i in range(2, 14))


@njit(cache=True, error_model="numpy", inline="always")
def _exp(x):
    """exp(x) without branches or calls (so a loop over nodes is vectorised; libm's exp is a call): x = k ln 2 + r,
    |r| <= ln2/2, exp(r) = 1 + (r + r²q(r)) with q by Estrin's scheme in fused multiply-adds (Taylor, degree 13;
    ``r + r²q`` fused too raised the worst error found from 0.7251 to 0.747 eps), 2^k through the exponent bits.
    Below 0.75 eps of exp(x) (relative; the worst found 0.7251, where r is near -ln2/2 and its own rounding
    largest; libm: 0.5); 0 for x < -707 (e^-707 = 9e-308: libm's result there is at most 1e-307), inf above
    ln(max float), NaN for NaN."""
    xc = min(max(x, -707.0), _EXP_MAX)
    t = xc * _INV_LN2 + _ROUND
    k = t - _ROUND
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    q = _fma(r4, _fma(r4, _fma(r2, _fma(_E13, r, _E12), _fma(_E11, r, _E10)),
                      _fma(r2, _fma(_E9, r, _E8), _fma(_E7, r, _E6))),
             _fma(r2, _fma(_E5, r, _E4), _fma(_E3, r, _E2)))
    y = (1.0 + (r + r2 * q)) * _float((_bits(t) + 1022) << 52) * 2.0  # 2^(k-1)·2: k = 1024 below _EXP_MAX
    y = math.inf if x > _EXP_MAX else y
    y = 0.0 if x < -707.0 else y
    return x if x != x else y


@njit(cache=True, error_model="numpy", inline="always")
def _unless_negligible(x, lnk, small):
    """The exponent ``x``, or ``-inf`` (its exponential 0) where ``small`` is False and ``ln k + x < _NEGLIGIBLE``
    (or NaN): the rule of ``_newton_exponents``."""
    return x if small or lnk + x > _NEGLIGIBLE else -math.inf


@njit(cache=True, error_model="numpy", inline="always")
def _final(err, v, Vd):
    """Whether a Newton step that leaves ``err`` (V) at ``v`` (V) is final: ``err <= _ERR*(|v| + Vd/1000)``
    (False for NaN)."""
    return err <= _ERR * (abs(v) + 1e-3 * Vd)


@njit(cache=True, error_model="numpy", inline="always")
def _newton_exponents(v, lnk, lo, hi, Vd):
    """The exponents ``(v - hi)/Vd`` and ``(lo - v)/Vd`` of a Newton step at ``v`` (divisions: ``f`` is the KCL
    residual, evaluated as the reference does). Where ``|v| >= Vd``, a side with ``ln k + exponent <
    _NEGLIGIBLE`` (or NaN) gets ``-inf`` (its exponential 0): its current is below ``1e-3*eps*a*Vd`` and moves
    ``v`` by less than ``1e-3*eps*Vd <= 1e-3*eps*|v|`` (where ``|v| < Vd`` such a current can still be a large part
    of ``a*|v|``)."""
    xf, xr = (v - hi) / Vd, (lo - v) / Vd
    small = abs(v) < Vd
    return _unless_negligible(xf, lnk, small), _unless_negligible(xr, lnk, small)


@njit(cache=True, error_model="numpy", inline="always")
def _larger_exponent(v, lnk, lo, hi, Vd, quotient):
    """``_newton_exponents`` as (the larger, the smaller). The larger is rounded as there where ``quotient``
    (the warm step, whose ``f`` is the reported residual: dividing by ``Vd > 0`` keeps the order), else it is
    ``·(1/Vd)`` (the closed form's step: a vectorised division costs ~0.3 ns per node on one thread here, a
    product 0.1 ns, a whole ``numpy.exp`` pass 0.8 ns; the product is within an ulp of the quotient, which moves
    the diode current by ``|x|`` ulps and so ``v`` by about an ulp of ``v`` minus the rail, within 1e-15 of the
    reference: ``tests/test_kernels.py``). The smaller is only told apart from ``-inf`` (its exponential comes
    from the larger's: ``_newton_pass``), so it is ``·(1/Vd)``: at the threshold, either side of it is
    negligible."""
    dvf, dvr = v - hi, lo - v
    big = max(dvf, dvr)
    x, nx = big / Vd if quotient else big * (1.0 / Vd), min(dvf, dvr) * (1.0 / Vd)
    small = abs(v) < Vd
    return _unless_negligible(x, lnk, small), _unless_negligible(nx, lnk, small)


@njit(cache=True, error_model="numpy", inline="always")
def _newton_step(v, a, c1, Is, Vd, ef, er):
    """One Newton step on ``f(v) = a*v - c1 + Is*(ef - er)`` (``ef``, ``er``: the exponentials): (new v, f(v),
    the error left after the step (V) by Newton's quadratic term ``|f''| step² / (2 f')``, the same with
    ``|f''|`` bounded over the whole step — for steps below ``_WARM_STEP*Vd``, or below ``Vd`` and ``|v - step| +
    Vd/1000`` where the diodes' conductance is under ``1e-3*a``; ``inf`` otherwise — and the step). Where the
    slope overflows (``Is/Vd*exp``; exp itself may not have), ``f/slope = 0`` is no step: NaN, with ``inf``
    errors. Without branches. The step is the quotient ``f/slope``: a warm step can be much larger than ``v``,
    where the weak-diode rule accepts it, and there ``f·(1/slope)`` moved ``v`` by up to 3e-13 relative (the
    closed form's step, a small correction, is ``_closed_form_step``)."""
    d, e2 = ef - er, ef + er
    slope = a + e2 * (Is / Vd)
    f = a * v - c1 + Is * d
    inv = 1.0 / slope
    step = f / slope
    q = (Is / (2.0 * Vd * Vd)) * step * step * inv
    s = abs(step)
    # |ef - er| grows by at most (ef + er)*|step|/Vd over a short step (first order); for a weak diode, f' >= a
    # puts the root within 1.001|step|, where |f''| grows by at most e^1.001 < 3. (The step carries f's rounding,
    # ~eps*|v|: kept below ~2 eps*(|v - step| + Vd/1000) by the step's cap.)
    weak = s <= min(Vd, abs(v - step) + 1e-3 * Vd) and e2 * (Is / Vd) <= 1e-3 * a
    bound = (abs(d) + e2 * s * (1.0 / Vd)) * q * 1.01 if s <= _WARM_STEP * Vd else (3.0 * e2 * q if weak else math.inf)
    finite = slope < math.inf
    return (v - step if finite else math.nan, f, abs(d) * q if finite else math.inf,
            bound if finite else math.inf, step if finite else math.nan)


@njit(cache=True, error_model="numpy", inline="always")
def _closed_form_step(v, a, c1, Is, Vd, big, kq, up):
    """The closed form's Newton step, ``_newton_step``'s (new v, the error it leaves) for a small correction of a
    start within 2e-9·Vd, from the larger side's exponential ``big`` (the upper side's where ``up``) and ``kq``,
    the two sides' product (``kp``; 0 where the smaller side is negligible), with one division where the warm
    step takes three (``_newton_pass``'s smaller side ``kp/big``; ``_newton_step``'s ``1/slope`` and
    ``f/slope``): ``f`` and the slope are taken times ``s = big`` (1 where ``big`` is 0), so that
    ``s·small = kq``, and the step is a product (its extra rounding, an ulp of a step within ~1e-9 of ``v``, is
    far below an ulp of ``v``). Where ``big²`` is not a normal float (``big`` above 1e154, ``ln(Is/(a·Vd))``
    below about -348, or below 1.5e-154 but not 0, ``ln(Is/(a·Vd))`` above about 342: the diode term would be
    lost), NaN with ``inf`` error: the node is redone alone."""
    pos = big > 0.0
    s = big if pos else 1.0
    sb, ss = big * big, kq if pos else 0.0  # s·big, s·small
    sd = sb - ss
    R = 1.0 / (s * a + (sb + ss) * (Is / Vd))  # 1/(s·slope)
    step = (s * (a * v - c1) + Is * (sd if up else -sd)) * R  # s·f/(s·slope)
    err = abs(sd) * R * (Is / (2.0 * Vd * Vd)) * step * step  # |f''| step²/(2 f'): |d|·s/(s·slope)·...
    finite = sb < math.inf and (sb >= _FLOAT_MIN or not pos) and R > 0.0
    return (v - step if finite else math.nan), (err if finite else math.inf)


@njit(cache=True, error_model="numpy")
def _shockley_newton(v, a, c1, lo, hi, Is, Vd, lnk):
    """``_newton_step`` at ``v``, one node."""
    xf, xr = _newton_exponents(v, lnk, lo, hi, Vd)
    return _newton_step(v, a, c1, Is, Vd, _exp(xf), _exp(xr))


@njit(cache=True, error_model="numpy")
def _shockley_polish(v, a, c1, lo, hi, Is, Vd, lnk):
    """Newton with bisection fallback inside [rail midpoint, c1/a]: (v, converged). A Newton step that leaves the
    bracket or is not below half the previous step is replaced by bisection (Newton from far beyond a rail moves
    by ~Vd per step)."""
    mid, x = 0.5 * (lo + hi), c1 / a
    left, right = min(mid, x), max(mid, x)
    dx = right - left
    for _ in range(200):
        new, f, err, _b, step = _shockley_newton(v, a, c1, lo, hi, Is, Vd, lnk)
        if f < 0:
            left = max(left, v)
        elif f > 0:
            right = min(right, v)
        inside = new >= left and new <= right
        if inside and not err > _ERR * (abs(new) + 1e-3 * Vd):
            return new, True
        nv = new if inside and not abs(step) > 0.5 * dx else 0.5 * (left + right)
        dx, v = abs(nv - v), nv
    return v, False


# The Shockley block's functions allocate nothing, and are compiled without numba's reference counting
# (``_nrt=False``): with it, a function that passes arrays on increfs and decrefs them, atomic operations that
# cost ~0.1 µs per call, a fifth of a 20-node row's update (the arrays live in the caller, ``_shockley_rows``).
@njit(cache=True, error_model="numpy", _nrt=False)
def _exponents_pass(m, v, lnk, lo, hi, Vd, ef, er):
    """``_larger_exponent`` at the first ``m`` nodes of a row, into ``ef`` and ``er`` (vectorised)."""
    for j in range(m):
        ef[j], er[j] = _larger_exponent(v[j], lnk[j], lo[j], hi[j], Vd, True)


@njit(cache=True, error_model="numpy", _nrt=False)
def _newton_pass(m, v, c1, a, kp, lo, hi, Is, Vd, ef, er, f, bound):
    """The warm step: ``_shockley_newton`` at the first ``m`` nodes of a row, from their exponents in ``ef``,
    ``er`` (``_exponents_pass``; ``ef`` is then scratch), in loops without branches or calls (vectorised): ``v``
    (V) becomes the step's result, ``f`` (A) and ``bound`` (V) as there. Returns (the largest ``|f|`` (A), how
    many nodes the step leaves above ``_ERR*(|v| + Vd/1000)`` by ``bound``; NaN counts).
    Short loops, so that the exponentials of many nodes are in flight at once; one per node, where the scalar
    step takes two: the two exponents sum to ``(lo - hi)/Vd``, so the smaller side's exponential is
    ``kp/exp(larger)`` (``kp = exp((lo - hi)/Vd)``;
    where that underflows, rails more than 708 Vd apart, the smaller side, below ``sqrt(kp)`` < 1e-153, comes out
    inexact or 0)."""
    for j in range(m):
        ef[j] = _exp(ef[j])
    rbits = left = 0
    for j in range(m):
        big = ef[j]
        small = 0.0 if er[j] == -math.inf or big == 0.0 else kp[j] / big
        up = v[j] - hi[j] >= lo[j] - v[j]
        vj, fj, _e, b, _s = _newton_step(v[j], a[j], c1[j], Is, Vd, big if up else small, small if up else big)
        v[j], f[j], bound[j] = vj, fj, b
        rbits = max(rbits, _bits(abs(fj)))  # (the maximum taken on the bits, as in _step_and_best_row)
        left += not _final(b, vj, Vd)  # (True for NaN)
    return _float(rbits), left


@njit(cache=True, error_model="numpy", inline="always")
def _beyond_rails(x, lnk, lo, hi, ivd):
    """(tf, tr): ``ln k`` plus how far ``x`` (V) lies beyond the upper and the lower rail, in units of Vd
    (``ivd = 1/Vd``). A diode conducts where the larger exceeds ``_LNZ_CUTOFF``; it is the ``t`` of ln ω(t)."""
    return lnk + (x - hi) * ivd, lnk + (lo - x) * ivd


@njit(cache=True, error_model="numpy", inline="always")
def _closed_form(x, tf, tr, lnw, lnk, lo, hi, Vd):
    """The closed form's start (V): ``rail ± Vd·(ln ω(t) − ln k)`` beyond the rail whose diode conducts (``lnw``:
    ln ω of the larger of ``tf``, ``tr``), ``x = c'/a`` where none does (no cancellation for any ``|c'/a|``)."""
    lw = lnw - lnk
    return x if not max(tf, tr) > _LNZ_CUTOFF else (hi + Vd * lw if tf >= tr else lo - Vd * lw)


@njit(cache=True, error_model="numpy")
def _shockley_node(c1, a, lnk, lo, hi, Is, Vd):
    """One Shockley node from scratch, one scalar at a time: the closed form (below), one Newton step and, where
    that is not final, the safeguarded Newton. Returns (v, converged)."""
    x = c1 / a
    tf, tr = _beyond_rails(x, lnk, lo, hi, 1.0 / Vd)
    t = max(tf, tr)
    v = _closed_form(x, tf, tr, _ln_omega(t) if t > _LNZ_CUTOFF else 0.0, lnk, lo, hi, Vd)
    new, _f, err, _b, _s = _shockley_newton(v, a, c1, lo, hi, Is, Vd, lnk)
    if err > _ERR * (abs(new) + 1e-3 * Vd):  # e.g. both diodes conduct: safeguarded Newton
        return _shockley_polish(new, a, c1, lo, hi, Is, Vd, lnk)
    return new, True


@njit(cache=True, error_model="numpy", _nrt=False)
def _closed_form_pass(m, c1, a, ia, lnk, kp, lo, hi, Is, Vd, v, ef, er, err):
    """The first ``m`` nodes of a row from scratch, vectorised: ``v`` (V) from ``_closed_form`` (``c'/a`` as
    ``c'·ia``, ``ia = 1/a``: a product, within an ulp; the step corrects it), ln ω read from the grids, then one
    Newton step (``_closed_form_step``), whose error goes to ``err`` (V); ``ef``, ``er``: scratch. Where ``t``
    (``_beyond_rails``) is beyond the grids, ``v`` is NaN, so the node is not final. Returns how many nodes the
    step leaves above ``_ERR*(|v| + Vd/1000)`` (NaN counts). Three loops, each vectorised: the start (its table
    read, one gather) and the step's exponents, the exponential (in a loop of its own, many in flight at once: 4 %
    faster than in the start's loop), the step."""
    ivd = 1.0 / Vd
    for i in range(m):
        x = c1[i] * ia[i]
        tf, tr = _beyond_rails(x, lnk[i], lo[i], hi[i], ivd)
        vi = _closed_form(x, tf, tr, _ln_omega_read(max(tf, tr)), lnk[i], lo[i], hi[i], Vd)
        vi = vi if max(tf, tr) < _LNW_END else math.nan
        xb, xs = _larger_exponent(vi, lnk[i], lo[i], hi[i], Vd, False)
        v[i], ef[i], er[i] = vi, xb, 0.0 if xs == -math.inf else kp[i]  # (er: the step's kq)
    for i in range(m):
        ef[i] = _exp(ef[i])
    left = 0
    for i in range(m):
        vi, e = _closed_form_step(v[i], a[i], c1[i], Is, Vd, ef[i], er[i], v[i] - hi[i] >= lo[i] - v[i])
        v[i], err[i] = vi, e
        left += not _final(e, vi, Vd)  # (True for NaN)
    return left


@njit(cache=True, error_model="numpy", _nrt=False)
def _shockley_block(c, a, ia, lnk, kp, lo, hi, Is, Vd, warm, v, s, width, rmax):
    """Shockley nodes of a block of samples, ``width`` nodes each, one after the other (``elements.Shockley``):
    ``v`` (V) from drives ``c`` (A: ``c'``, the -1 terms of ``I`` moved to the drive); with ``warm``, ``v``
    holds the previous voltages on entry, and ``rmax[q]`` becomes sample ``q``'s max |KCL| (A) at them (``width``
    divides ``n = c.size``; ``rmax`` holds ``n // width`` at least). ``s``: scratch, (13, n) at least. Returns the
    number of nodes whose safeguarded Newton failed.

    In vectorised passes over the block: with ``warm``, one Newton step from the previous voltages, kept where
    provably exact; the other nodes (packed) from the closed form and one Newton step (``_closed_form_pass``).
    Where that step is not final (e.g. both diodes conduct) or ``t`` is beyond the grids, the node is done
    again, alone, by ``_shockley_node``. The residual's maximum and the counts of nodes left come out of the
    passes; the branchy loops that pack or redo nodes run only where a count says there are some (the loop that
    did both for every node cost 16 % of the kernel at 2 x 1024)."""
    n = c.size
    # scratch rows, taken by index: rows unpacked from a 2-D array (``a, b = x``) are typed strided, and loops
    # over them were not vectorised
    ef, er, f, err, bound, vp, cp, ap, iap, lnkp, lop, hip, kpp = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
                                                                   s[8], s[9], s[10], s[11], s[12])
    m = n
    if warm:  # Newton from the previous voltage: accepted where provably exact
        _exponents_pass(n, v, lnk, lo, hi, Vd, ef, er)
        rmax[0], m = _newton_pass(n, v, c, a, kp, lo, hi, Is, Vd, ef, er, f, bound)
        if n > width:  # each sample's maximum, from the residuals f at v (on the bits, as _newton_pass)
            for q in range(n // width):
                most = 0
                for j in range(q * width, (q + 1) * width):
                    most = max(most, _bits(abs(f[j])))
                rmax[q] = _float(most)
    bad = 0
    if m == n:  # every node from the closed form, straight into v
        if _closed_form_pass(n, c, a, ia, lnk, kp, lo, hi, Is, Vd, v, ef, er, err):
            for j in range(n):
                if not _final(err[j], v[j], Vd):
                    v[j], ok = _shockley_node(c[j], a[j], lnk[j], lo[j], hi[j], Is, Vd)
                    bad += not ok
    elif m:  # the nodes the warm step left, packed (a node is left where its bound is not final)
        i = 0
        for j in range(n):
            if not _final(bound[j], v[j], Vd):
                cp[i], ap[i], iap[i], lnkp[i], lop[i], hip[i], kpp[i] = c[j], a[j], ia[j], lnk[j], lo[j], hi[j], kp[j]
                i += 1
        _closed_form_pass(m, cp, ap, iap, lnkp, kpp, lop, hip, Is, Vd, vp, ef, er, err)  # (m = i: the same test)
        i = 0
        for j in range(n):
            if not _final(bound[j], v[j], Vd):  # (v[j] is still the warm step's here, as when packing)
                if _final(err[i], vp[i], Vd):
                    v[j] = vp[i]
                else:
                    v[j], ok = _shockley_node(c[j], a[j], lnk[j], lo[j], hi[j], Is, Vd)
                    bad += not ok
                i += 1
    return bad


@njit(cache=True, error_model="numpy")
def _last_at_most(table, a, b, x):
    """Largest ``k`` in ``[0, K-2]`` with ``a*v_k + b*i_k <= x`` (0 if none; the key rises with k): binary
    search on the pwl table."""
    lo_k, hi_k = 0, table.shape[0] - 2
    while lo_k < hi_k:
        m = (lo_k + hi_k + 1) // 2
        if a * table[m, 0] + b * table[m, 1] <= x:
            lo_k = m
        else:
            hi_k = m - 1
    return lo_k


@njit(cache=True, error_model="numpy")
def _pwl(c, a, table, old, warm):
    """(v, |KCL| at old) of one pwl node: the segment with a*v_k + i_k <= c."""
    k = _last_at_most(table, a, 1.0, c)
    s = table[k, 2]
    v = (c - table[k, 1] + s * table[k, 0]) / (a + s)
    res = 0.0
    if warm:
        k = _last_at_most(table, 1.0, 0.0, old)  # the segment of old: v_k <= old
        res = abs(a * old - c + table[k, 1] + table[k, 2] * (old - table[k, 0]))
    return v, res


_BLOCK = 1024  # nodes per pass of the Shockley update: short rows share one (its calls and loops' entries)


@njit(cache=True, error_model="numpy", inline="always")
def _drive(b, c, c2, fixed, shift, shifted, out, o):
    """Sample ``b``'s drive (A), ``(c + fixed) + c2``, less ``shift`` where ``shifted``, into ``out[o:o + n]``."""
    n = c.shape[1]
    if fixed.shape[0] > 0:
        fb = fixed[b if fixed.shape[0] > 1 else 0]
        for j in range(n):
            out[o + j] = c[b, j] + fb[j]
    else:
        for j in range(n):
            out[o + j] = c[b, j]
    if c2.shape[0] > 0:
        for j in range(n):
            out[o + j] += c2[b, j]
    if shifted:
        for j in range(n):
            out[o + j] -= shift[j]


@njit(cache=True, error_model="numpy")
def _shockley_rows(b0, b1, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, Is, Vd, old, v, r):
    """``_rows`` for Shockley nodes: the samples in blocks of about ``_BLOCK`` nodes (``_shockley_block``; a
    block's voltages are its rows of ``v``, contiguous), the node constants repeated once per block's sample,
    the scratch allocated once."""
    n = c.shape[1]
    per = max(1, min(_BLOCK // max(n, 1), b1 - b0))  # samples per block (no more than there are)
    M = per * n
    s = np.empty((20, M))
    cb = s[13]  # (0-12: _shockley_block's)
    A, IA, LNK, KP, LO, HI = a, ia, lnk, kp, lo, hi
    if per > 1:  # the node constants, once for each sample of a block
        A, IA, LNK, KP, LO, HI = s[14], s[15], s[16], s[17], s[18], s[19]
        for q in range(per):
            for j in range(n):
                i = q * n + j
                A[i], IA[i], LNK[i], KP[i], LO[i], HI[i] = a[j], ia[j], lnk[j], kp[j], lo[j], hi[j]
    warm = old.shape[0] > 0
    rmax = np.zeros(per)
    bad = 0
    for b in range(b0, b1, per):
        k = min(per, b1 - b)
        m = k * n
        out = v[b:b + k].reshape(m)
        for q in range(k):
            _drive(b + q, c, c2, fixed, shift, True, cb, q * n)
        if warm:
            prev = old[b:b + k].reshape(m)
            for i in range(m):
                out[i] = prev[i]
        bad += _shockley_block(cb[:m], A[:m], IA[:m], LNK[:m], KP[:m], LO[:m], HI[:m], Is, Vd, warm, out, s, n, rmax)
        for q in range(k):
            r[b + q] = rmax[q] if warm else 0.0
    return bad


@njit(cache=True, error_model="numpy")
def _rows(b0, b1, code, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, prm, table, old, v, r):
    """Update the nodes of samples ``b0`` to ``b1 - 1`` in ``v``; ``r[b]`` = max |KCL| of ``old[b]`` (if given).
    Returns the number of Shockley nodes whose safeguarded Newton did not converge. Scratch is allocated once for
    all these samples (per sample, the scratch and a copy of the drive cost ~50 ns, a tenth of a 20-node row's
    update)."""
    if code == _SHOCKLEY:
        return _shockley_rows(b0, b1, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, prm[0], prm[1], old, v, r)
    n = c.shape[1]
    warm = old.shape[0] > 0
    g = prm[2]
    m = n // 2 if code == _PAIR else n
    cb = np.empty(n)
    for b in range(b0, b1):
        _drive(b, c, c2, fixed, shift, False, cb, 0)
        ob = old[b] if warm else cb
        rmax = 0.0
        for j in range(m):
            cj, oj = cb[j], ob[j]
            if code == _LINEAR:
                vj = cj / a[j]
                res = abs(a[j] * oj - cj)
            elif code == _IDEAL:
                vj = min(max(cj / a[j], lo[j]), hi[j])
                res = abs(a[j] * (oj - vj))
            elif code == _PWL:
                vj, res = _pwl(cj, a[j], table, oj, warm)
            else:  # _PAIR: nodes j (v+) and k = j + m (v-) joined by conductance g
                k = j + m
                det = a[j] * a[k] - g * g
                vj = (cj * a[k] + g * cb[k]) / det
                v[b, k] = (cb[k] * a[j] + g * cj) / det
                res = max(abs(a[j] * oj - cj - g * ob[k]), abs(a[k] * ob[k] - cb[k] - g * oj))
            v[b, j] = vj
            if res > rmax or res != res:  # NaN sticks, as in NumPy's max
                rmax = res
        r[b] = rmax if warm else 0.0
    return 0


threads = get_num_threads  # numba's thread count: layer_parallel's chunks (kernels.LayerKernel.update)


@njit(cache=True, parallel=True, error_model="numpy")
def layer_parallel(code, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, prm, table, old, v, r, chunks):
    """``_rows`` over ``chunks`` equal parts of the samples, in parallel (one per thread: numba's own split of
    a loop over samples; at least one, at most one per sample); returns the failed node count."""
    B = c.shape[0]
    chunks = max(1, min(chunks, B))
    bad = np.zeros(chunks, np.int64)
    for k in prange(chunks):
        bad[k] = _rows(k * B // chunks, (k + 1) * B // chunks, code, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, prm,
                       table, old, v, r)
    return bad.sum()


@njit(cache=True, error_model="numpy")
def layer_serial(code, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, prm, table, old, v, r):
    """``_rows`` over every sample in one thread (small layers: starting threads would cost more than the
    work); returns the failed node count."""
    return _rows(np.int64(0), c.shape[0], code, c, c2, fixed, a, ia, lnk, kp, shift, lo, hi, prm, table, old, v, r)


_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)  # the bits below a float64's sign


@njit(cache=True, error_model="numpy", inline="always")
def _key(x):
    """An int64 that orders as the float64 ``x`` does (-0 just below +0; for ``x`` not NaN): integer maxima are
    vectorised, float ones are not (NaN)."""
    b = _bits(x)
    return b if b >= 0 else b ^ _FLIP


@njit(cache=True, error_model="numpy")
def _extremes(x):
    """(index of the first largest, of the first smallest entry of ``x``), as NumPy's argmax and argmin (-0 and
    +0 tie) where no entry is NaN (else some valid index): the extremes in a vectorised pass, then the first entry
    equal to each."""
    hi = lo = _key(x[0])
    for j in range(x.size):
        k = _key(x[j])
        hi, lo = max(hi, k), min(lo, k)
    xh, xl = _float(hi if hi >= 0 else hi ^ _FLIP), _float(lo if lo >= 0 else lo ^ _FLIP)
    jh = jl = -1
    for j in range(x.size):
        jh = j if jh < 0 and x[j] == xh else jh
        jl = j if jl < 0 and x[j] == xl else jl
        if jh >= 0 and jl >= 0:
            break
    return max(jh, 0), max(jl, 0)


@njit(cache=True, error_model="numpy")
def _branches(vb, u, G, GT, colmax, gtop, imax, imin, nodes, r):
    """The largest of ``r`` and the branch currents ``G[i, j]·|v_j − u_i|`` (A; G in S, node voltages ``vb`` and
    drives ``u`` in V) of one sample, over the branches ``solver._i_ref_numpy`` takes: through each node's
    largest conductance (``colmax``, ``gtop``), from the highest and lowest drive (``u[imax]``, ``u[imin]``) and,
    with ``nodes``, from the highest and lowest node (``GT``: ``G`` transposed, contiguous; ties go to the first
    index, as NumPy's argmax). NaN if a branch or ``r`` is NaN. In vectorised passes: the maximum is taken on the
    bits (a current ``>= 0`` orders as its bits; a negative one, ignored as by ``x > r``, has negative bits)."""
    rb, nan = _bits(r), r != r
    uh, ul = u[imax], u[imin]
    for j in range(vb.size):
        vj = vb[j]
        x1, x2, x3 = gtop[j] * abs(vj - u[colmax[j]]), G[imax, j] * abs(vj - uh), G[imin, j] * abs(vj - ul)
        rb = max(rb, max(_bits(x1), max(_bits(x2), _bits(x3))))
        nan |= (x1 != x1) | (x2 != x2) | (x3 != x3)
    if nodes:
        jmax, jmin = _extremes(vb)
        vh, vl = vb[jmax], vb[jmin]
        for i in range(u.size):
            x1, x2 = GT[jmax, i] * abs(vh - u[i]), GT[jmin, i] * abs(vl - u[i])
            rb = max(rb, max(_bits(x1), _bits(x2)))
            nan |= (x1 != x1) | (x2 != x2)
    return math.nan if nan else _float(rb)


@njit(cache=True, error_model="numpy")
def _i_ref_row(k, v, below, gain, rows, ext, G, GT, colmax, gtop, best):
    """``best[k]`` = max(``best[k]``, one crossbar's branch currents (A) of sample ``k``) as ``solver._i_ref_numpy``
    takes them: through each node's largest conductance and from the extreme drives (V) and, past crossbar 1, from
    the extreme nodes (``GT``: ``G`` transposed, contiguous). ``v``: the crossbar's output layer. Crossbar 1 where
    ``ext`` has columns: the drives are the inputs ``below[rows[k]]`` (``below``: the inputs of every sample),
    their extremes ``ext[:, rows[k]]`` (``(2, B)``); else the drives are ``gain·below[k]`` (``below``: layer
    ``l − 1``; a NaN drive is a NaN node of that layer, whose own bound is NaN)."""
    if ext.shape[1] > 0:
        b = rows[k]
        best[k] = _branches(v[k], below[b], G, GT, colmax, gtop, ext[0, b], ext[1, b], False, best[k])
    else:
        u = np.empty(below.shape[1])
        for i in range(u.size):
            u[i] = gain[i] * below[k, i]
        imax, imin = _extremes(u)
        best[k] = _branches(v[k], u, G, GT, colmax, gtop, imax, imin, True, best[k])


@njit(cache=True, parallel=True, error_model="numpy")
def i_ref_parallel(v, below, gain, rows, ext, G, GT, colmax, gtop, best):
    """Every sample's ``_i_ref_row``, samples in parallel (each reads rows of its crossbar: memory-bound, and
    the gain depends on the machine: docs/performance.md)."""
    for k in prange(v.shape[0]):
        _i_ref_row(np.int64(k), v, below, gain, rows, ext, G, GT, colmax, gtop, best)


@njit(cache=True, error_model="numpy")
def i_ref_serial(v, below, gain, rows, ext, G, GT, colmax, gtop, best):
    """``i_ref_parallel`` in one thread (small batches)."""
    for k in range(v.shape[0]):
        _i_ref_row(k, v, below, gain, rows, ext, G, GT, colmax, gtop, best)


@njit(cache=True, error_model="numpy")
def i_upper_layer(v, below, gain, umax, umin, gmax, best):
    """``best[k]`` = max(``best[k]``, ``gmax`` times the span of sample ``k``'s drives and nodes), as
    ``solver._i_upper_numpy`` (A; ``gmax`` in S): the drives (V) are ``gain·below`` or, if ``below`` has no
    columns (crossbar 1), range from ``umin[k]`` to ``umax[k]``. NaN sticks."""
    for k in range(v.shape[0]):
        hi, lo = (umax[k], umin[k]) if below.shape[1] == 0 else (-math.inf, math.inf)
        nan = hi != hi or lo != lo
        for i in range(below.shape[1]):
            u = gain[i] * below[k, i]
            nan |= u != u
            hi, lo = max(hi, u), min(lo, u)
        for j in range(v.shape[1]):
            nan |= v[k, j] != v[k, j]
            hi, lo = max(hi, v[k, j]), min(lo, v[k, j])
        x = gmax * (hi - lo)
        if nan or x != x:
            best[k] = math.nan
        elif x > best[k]:
            best[k] = x


_BIG = np.finfo(np.float64).max


@njit(cache=True, error_model="numpy", inline="always")
def _finite(d):
    """``numpy.nan_to_num(d, nan=0.0)`` of one value: NaN to 0, ±inf to ±the largest float (no branches)."""
    return 0.0 if d != d else min(max(d, -_BIG), _BIG)


@njit(cache=True, error_model="numpy", inline="always")
def _dots(a, u, w):
    """(a·u, a·w) of three rows of equal length, each as four partial sums over every fourth entry, added in a
    fixed order at the end: the four lanes of a vector register (NumPy's dot sums in another order)."""
    n = a.size
    n4 = n - n % 4
    u0 = u1 = u2 = u3 = w0 = w1 = w2 = w3 = 0.0
    for j in range(0, n4, 4):
        u0 += a[j] * u[j]
        u1 += a[j + 1] * u[j + 1]
        u2 += a[j + 2] * u[j + 2]
        u3 += a[j + 3] * u[j + 3]
        w0 += a[j] * w[j]
        w1 += a[j + 1] * w[j + 1]
        w2 += a[j + 2] * w[j + 2]
        w3 += a[j + 3] * w[j + 3]
    for j in range(n4, n):
        u0 += a[j] * u[j]
        w0 += a[j] * w[j]
    return (u0 + u1) + (u2 + u3), (w0 + w1) + (w2 + w3)


@njit(cache=True, error_model="numpy")
def _anderson_row(b, x, g, f, g_prev, dF, dG, gram, slot, k, reg):
    """``solver._Anderson``'s step for sample ``b``, in place: ``f`` (the previous step's ``f``) becomes ``g - x``;
    ring slot ``slot`` of ``dF``/``dG`` (``(B, m, N)``) takes the finite part of ``f - f_prev`` and ``g - g_prev``,
    and its row and column of the Gram matrix ``gram`` (``(B, m, m)``, ``dF·dFᵀ``: the other entries are kept
    from the steps that wrote their slots); then the mixing coefficients γ of the first ``k >= 1`` slots, and ``x``
    becomes the next iterate ``g - Σ γ_i dG_i``. (In place: the results overwrite rows just read, in cache, where
    fresh arrays cost a read of each line before its write; 8-25 % of the step at 360 x 1024.) γ solves the
    column-scaled Gram system plus ``reg·I``: symmetric positive definite (unit or zero diagonal, plus ``reg``), so
    Gaussian elimination needs no pivoting."""
    N = x.shape[1]
    for n in range(N):
        fn = g[b, n] - x[b, n]
        dF[b, slot, n] = _finite(fn - f[b, n])
        dG[b, slot, n] = _finite(g[b, n] - g_prev[b, n])
        f[b, n] = fn
    M = np.zeros((k, k + 1))  # the new Gram row in column 0, the right-hand side DF·f in column k
    for i in range(k):
        M[i, 0], M[i, k] = _dots(dF[b, i], dF[b, slot], f[b])
    for i in range(k):
        gram[b, slot, i] = gram[b, i, slot] = M[i, 0]
    for i in range(k):
        for j in range(k):
            M[i, j] = gram[b, i, j]
    s = np.empty(k)
    for i in range(k):
        s[i] = math.sqrt(M[i, i]) if M[i, i] != 0.0 else 1.0
    for i in range(k):
        for j in range(i + 1):
            M[i, j] = M[j, i] = M[i, j] / (s[i] * s[j])
        M[i, i] += reg
        M[i, k] /= s[i]
    for c in range(k):  # elimination
        for i in range(c + 1, k):
            q = M[i, c] / M[c, c]
            for j in range(c, k + 1):
                M[i, j] -= q * M[c, j]
    gamma = np.empty(k)
    for i in range(k - 1, -1, -1):
        y = M[i, k]
        for j in range(i + 1, k):
            y -= M[i, j] * gamma[j]
        gamma[i] = y / M[i, i]
    for i in range(k):
        gamma[i] /= s[i]
    for n in range(N):
        x[b, n] = g[b, n]
    for i in range(k):  # (loops over n inside: vectorised; each x[b, n] is summed in the same order)
        for n in range(N):
            x[b, n] -= gamma[i] * dG[b, i, n]


@njit(cache=True, parallel=True, error_model="numpy")
def anderson_parallel(x, g, f, g_prev, dF, dG, gram, slot, k, reg):
    """Every sample's ``_anderson_row``, samples in parallel."""
    for b in prange(x.shape[0]):
        _anderson_row(np.int64(b), x, g, f, g_prev, dF, dG, gram, slot, k, reg)


@njit(cache=True, error_model="numpy")
def anderson_serial(x, g, f, g_prev, dF, dG, gram, slot, k, reg):
    """``anderson_parallel`` in one thread (small batches)."""
    for b in range(x.shape[0]):
        _anderson_row(b, x, g, f, g_prev, dF, dG, gram, slot, k, reg)


@njit(cache=True, error_model="numpy")
def _step_and_best_row(b, x, gx, r, r_best, g_best, dx, xmax):
    """``solver._step_and_best`` for row ``b``. The maxima of ``|gx - x|`` and ``|x|`` are taken on their bits
    (int64 maxima are vectorised, float ones with NaN are not): a non-negative float's bits order as its value,
    and a NaN's (its sign cleared by ``abs``) exceed inf's, so a NaN gives NaN, as NumPy's max."""
    md = mx = 0
    for j in range(x.shape[1]):
        md = max(md, _bits(abs(gx[b, j] - x[b, j])))
        mx = max(mx, _bits(abs(x[b, j])))
    dx[b], xmax[b] = _float(md), _float(mx)
    if r[b] < r_best[b]:
        r_best[b] = r[b]
        g_best[b] = gx[b]


@njit(cache=True, parallel=True, error_model="numpy")
def step_and_best_parallel(x, gx, r, r_best, g_best, dx, xmax):
    """Every row's ``_step_and_best_row``, rows in parallel."""
    for b in prange(x.shape[0]):
        _step_and_best_row(np.int64(b), x, gx, r, r_best, g_best, dx, xmax)


@njit(cache=True, error_model="numpy")
def step_and_best_serial(x, gx, r, r_best, g_best, dx, xmax):
    """``step_and_best_parallel`` in one thread (small batches)."""
    for b in range(x.shape[0]):
        _step_and_best_row(b, x, gx, r, r_best, g_best, dx, xmax)


def warm_up() -> None:
    """Load (or compile) the kernels for the array types ``kernels.update``, the solver's bounds and its Anderson
    step pass."""
    e2, z1, one = np.zeros((0, 0)), np.zeros(1), np.ones((1, 1))
    args = (_LINEAR, one, e2, e2, z1 + 1, z1 + 1, z1, z1, z1, z1 - 1, z1 + 1, np.array([0.0, 1.0, 0.0]),
            np.zeros((0, 3)), e2, np.empty((1, 1)), np.zeros(1))
    layer_serial(*args)
    layer_parallel(*args, 1)
    i0 = np.zeros(1, np.int64)
    for i_ref in (i_ref_serial, i_ref_parallel):
        for ext, GT in ((np.zeros((2, 1), np.int64), e2), (np.zeros((2, 0), np.int64), one)):  # crossbar 1, l >= 2
            i_ref(one, one, z1 + 1, i0, ext, one, GT, i0, z1, np.zeros(1))
    for below in (e2, one):
        i_upper_layer(one, below, z1 + 1, z1, z1, 1.0, np.zeros(1))
    d3 = np.zeros((1, 1, 1))
    for step in (anderson_serial, anderson_parallel):
        step(one.copy(), one, one.copy(), one, d3, d3.copy(), d3.copy(), 0, 1, 1e-10)
    for stats in (step_and_best_serial, step_and_best_parallel):
        stats(one, one, z1, z1 + 1, np.empty((1, 1)), np.empty(1), np.empty(1))
