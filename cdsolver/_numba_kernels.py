"""The numba code behind ``kernels.update`` (imported only through ``kernels``; see there), and the compiled
parts of the solver's sweep loop (the stopping test's current bounds, the Anderson step).

One driver, ``layer``, loops over samples (in parallel) and nodes, and calls the node function of the element
(codes in ``kernels``). Each node function mirrors its element's NumPy reference in ``elements``; the bounds and
the Anderson step mirror theirs in ``solver``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .elements import _EPS, _LNZ_CUTOFF
from .kernels import _IDEAL, _LINEAR, _PAIR, _PWL, _SHOCKLEY

# Newton from the previous voltage is trusted for steps below _WARM_STEP * Vd, where the bound on |f''| over the
# step (first order in step/Vd) is tight, and for steps below Vd at nodes whose diodes barely conduct
_WARM_STEP = 1e-3
# A Newton step is final when the error it leaves is below _ERR * (|v| + Vd/1000): a quarter of v's rounding
# (the NumPy reference stops at eps*(|v| + Vd), which exceeds v's rounding where |v| << Vd)
_ERR = 0.25 * _EPS
_NEGLIGIBLE = math.log(1e-3 * _EPS)  # ln of a diode current (in units of a*Vd) that cannot move v


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


# ln ω(t) for the closed form's start, for t beyond a node's cut-off (below it no diode conducts): cubic Hermite
# (values and slopes d ln ω/dt = 1/(1 + ω)) on a grid of step 1/16 over [_LNZ_CUTOFF, 64) and of step 1 over
# [64, _LNW_END), where d⁴ ln ω/dt⁴ ~ 6/t⁴ is small; above, the asymptotic series of ln ω to (ln t/t)³ (one
# logarithm). Within 2e-9 of ln ω everywhere (tests/test_kernels.py), so the node voltage starts within 2e-9·Vd and
# the Newton step that follows leaves ~2e-18·Vd: at most one transcendental before it. (The diode current at the
# solution is a·Vd·ω ≈ a·Vd·t: most hidden nodes of a trained Fashion-MNIST network sit at t = 40-600.)
_LNW_MID, _LNW_END = 64.0, 1088.0


@njit(cache=True, error_model="numpy")
def _ln_omega_grid(t0, h, n):
    """(n, 2): ln ω and h·d(ln ω)/dt at t0 + h·i, ω to rounding (start by region, then four FSC steps)."""
    out = np.empty((n, 2))
    for i in range(n):
        t = t0 + h * i
        w = _omega_start(t)
        for _ in range(4):
            w = _omega_step(t, w)
        out[i, 0] = math.log(w)
        out[i, 1] = h / (1.0 + w)
    return out


_LNW_NEAR = _ln_omega_grid(_LNZ_CUTOFF, 1.0 / 16.0, int((_LNW_MID - _LNZ_CUTOFF) * 16.0) + 1)
_LNW_FAR = _ln_omega_grid(_LNW_MID, 1.0, int(_LNW_END - _LNW_MID) + 1)


@njit(cache=True, error_model="numpy")
def _hermite(grid, u):
    """The cubic Hermite interpolant of ``grid`` ((n, 2): values and slopes times the step) at ``u`` steps from
    its first point, ``0 <= u < n - 1``."""
    i = int(u)
    s = u - i
    s1 = 1.0 - s
    return (s1 * s1 * ((1.0 + 2.0 * s) * grid[i, 0] + s * grid[i, 1])
            + s * s * ((3.0 - 2.0 * s) * grid[i + 1, 0] - s1 * grid[i + 1, 1]))


@njit(cache=True, error_model="numpy")
def _ln_omega(t):
    """ln ω(t) (ω + ln ω = t) to 2e-9 absolute, for ``t > _LNZ_CUTOFF`` (NaN for NaN and inf). The grid is chosen
    by the step count ``u`` itself, so ``u`` stays below ``n - 1`` where ``t`` rounds up at a grid's end."""
    u = (t - _LNZ_CUTOFF) * 16.0
    if u < _LNW_NEAR.shape[0] - 1:
        return _hermite(_LNW_NEAR, u)
    u = t - _LNW_MID
    if u < _LNW_FAR.shape[0] - 1:
        return _hermite(_LNW_FAR, max(u, 0.0))
    L = math.log(t)
    r = 1.0 / t
    return L - L * r * (1.0 + r * (0.5 * (L - 2.0) + r * (L * (2.0 * L - 9.0) + 6.0) / 6.0))


@njit(cache=True, error_model="numpy")
def _shockley_newton(v, a, c1, lo, hi, Is, Vd, lnk):
    """One Newton step on ``f(v) = a*v - c1 + Is*(ef - er)``: (new v, f(v), the error left after the step (V) by
    Newton's quadratic term ``|f''| step² / (2 f')``, the same with ``|f''|`` bounded over the whole step — for
    steps below ``_WARM_STEP*Vd``, or below ``Vd`` and ``|v - step| + Vd/1000`` where the diodes' conductance is
    under ``1e-3*a``; ``inf`` otherwise — and the step).
    Where ``|v| >= Vd``, a side with ``ln k + (v - rail)/Vd < _NEGLIGIBLE`` is skipped (no exponential): its
    current is below ``1e-3*eps*a*Vd`` and moves ``v`` by less than ``1e-3*eps*Vd <= 1e-3*eps*|v|`` (where
    ``|v| < Vd`` such a current can still be a large part of ``a*|v|``)."""
    xf, xr = (v - hi) / Vd, (lo - v) / Vd  # (divisions: f is the KCL residual, evaluated as the reference does)
    small = abs(v) < Vd
    ef = math.exp(xf) if small or lnk + xf > _NEGLIGIBLE else 0.0
    er = math.exp(xr) if small or lnk + xr > _NEGLIGIBLE else 0.0
    d = ef - er
    slope = a + (ef + er) * (Is / Vd)
    f = a * v - c1 + Is * d
    if not slope < math.inf:  # Is/Vd*exp overflowed (exp itself may not have): f/slope = 0 is no Newton step
        return math.nan, f, math.inf, math.inf, math.nan
    step = f / slope
    q = (Is / (2.0 * Vd * Vd)) * step * step / slope
    if abs(step) <= _WARM_STEP * Vd:  # |ef - er| grows by at most (ef + er)*|step|/Vd over the step (first order)
        bound = (abs(d) + (ef + er) * abs(step) / Vd) * q * 1.01
    elif abs(step) <= min(Vd, abs(v - step) + 1e-3 * Vd) and (ef + er) * (Is / Vd) <= 1e-3 * a:
        # a weak diode: f' >= a puts the root within 1.001|step|, where |f''| grows by at most e^1.001 < 3. (The
        # step carries f's rounding, ~eps*|v|: kept below ~2 eps*(|v - step| + Vd/1000) by the step's cap.)
        bound = 3.0 * (ef + er) * q
    else:
        bound = math.inf
    return v - step, f, abs(d) * q, bound, step


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


@njit(cache=True, error_model="numpy")
def _shockley_row(c, a, lnk, shift, lo, hi, Is, Vd, old, warm, v):
    """Shockley nodes of one sample (``elements.Shockley``): ``v`` from drives ``c`` (A, overwritten with ``c'``).
    Returns (max |KCL| at ``old``, nodes whose safeguarded Newton failed). Done in passes over the row, each
    over independent nodes, so the exponentials of many nodes are in flight at once."""
    n, ivd = c.size, 1.0 / Vd
    rmax = 0.0
    todo = np.empty(n, np.int64)  # nodes the warm start did not settle
    m = 0
    for j in range(n):
        c[j] -= shift[j]  # c' : the -1 terms moved to the drive
        if warm:  # Newton from the previous voltage: accepted where provably exact
            new, f, _e, bound, step = _shockley_newton(old[j], a[j], c[j], lo[j], hi[j], Is, Vd, lnk[j])
            if abs(f) > rmax or f != f:  # NaN sticks, as in NumPy's max
                rmax = abs(f)
            if bound <= _ERR * (abs(new) + 1e-3 * Vd):  # (False for NaN)
                v[j] = new
                continue
        todo[m] = j
        m += 1
    t = np.empty(m)
    on = np.empty(m, np.int64)  # nodes where a diode conducts (ln z > _LNZ_CUTOFF)
    fwd = np.empty(m, np.bool_)  # ... the forward one
    k = 0
    for i in range(m):
        j = todo[i]
        x = c[j] / a[j]
        v[j] = x
        tf, tr = lnk[j] + (x - hi[j]) * ivd, lnk[j] + (lo[j] - x) * ivd
        if max(tf, tr) > _LNZ_CUTOFF:
            fwd[k] = tf >= tr
            t[k] = max(tf, tr)
            on[k] = j
            k += 1
    for i in range(k):  # v = rail ± Vd*(ln W - ln k): no cancellation for any |c/a|
        j = on[i]
        lnw = _ln_omega(t[i])
        v[j] = hi[j] + Vd * (lnw - lnk[j]) if fwd[i] else lo[j] - Vd * (lnw - lnk[j])
    bad = 0
    for i in range(m):
        j = todo[i]
        new, _f, err, _b, _s = _shockley_newton(v[j], a[j], c[j], lo[j], hi[j], Is, Vd, lnk[j])
        if err > _ERR * (abs(new) + 1e-3 * Vd):  # e.g. both diodes conduct: safeguarded Newton
            new, ok = _shockley_polish(new, a[j], c[j], lo[j], hi[j], Is, Vd, lnk[j])
            bad += not ok
        v[j] = new
    return rmax, bad


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


@njit(cache=True, error_model="numpy")
def _row(b, code, c, c2, fixed, a, lnk, shift, lo, hi, prm, table, old, v, r):
    """Update the nodes of sample ``b`` in ``v[b]``; ``r[b]`` = max |KCL| of ``old[b]`` (if given). Returns the
    number of Shockley nodes whose safeguarded Newton did not converge."""
    n = c.shape[1]
    warm = old.shape[0] > 0
    cb = c[b].copy()  # the drive, summed as (fixed + c) + c2
    if fixed.shape[0] > 0:
        cb += fixed[b if fixed.shape[0] > 1 else 0]
    if c2.shape[0] > 0:
        cb += c2[b]
    ob = old[b] if warm else cb
    if code == _SHOCKLEY:
        r[b], bad = _shockley_row(cb, a, lnk, shift, lo, hi, prm[0], prm[1], ob, warm, v[b])
        return bad
    g = prm[2]
    rmax = 0.0
    m = n // 2 if code == _PAIR else n
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


@njit(cache=True, parallel=True, error_model="numpy")
def layer_parallel(code, c, c2, fixed, a, lnk, shift, lo, hi, prm, table, old, v, r):
    """Every sample's ``_row``, samples in parallel; returns the failed node count."""
    bad = np.zeros(c.shape[0], np.int64)
    for b in prange(c.shape[0]):
        bad[b] = _row(np.int64(b), code, c, c2, fixed, a, lnk, shift, lo, hi, prm, table, old, v, r)
    return bad.sum()


@njit(cache=True, error_model="numpy")
def layer_serial(code, c, c2, fixed, a, lnk, shift, lo, hi, prm, table, old, v, r):
    """``layer_parallel`` in one thread (small layers: starting threads would cost more than the work)."""
    bad = 0
    for b in range(c.shape[0]):
        bad += _row(b, code, c, c2, fixed, a, lnk, shift, lo, hi, prm, table, old, v, r)
    return bad


@njit(cache=True, error_model="numpy")
def _branches(vb, u, G, GT, colmax, gtop, imax, imin, nodes, r):
    """The largest of ``r`` and the branch currents ``G[i, j]·|v_j − u_i|`` (A; G in S, node voltages ``vb`` and
    drives ``u`` in V) of one sample, over the branches ``solver._i_ref_numpy`` takes: through each node's
    largest conductance (``colmax``, ``gtop``), from the highest and lowest drive (``u[imax]``, ``u[imin]``) and,
    with ``nodes``, from the highest and lowest node (``GT``: ``G`` transposed, contiguous). Ties go to the first
    index, as NumPy's argmax; NaN if a branch is NaN."""
    n, m = vb.size, u.size
    nan = False
    jmax = jmin = 0
    for j in range(n):
        vj = vb[j]
        if vj > vb[jmax]:
            jmax = j
        if vj < vb[jmin]:
            jmin = j
        for x in (gtop[j] * abs(vj - u[colmax[j]]), G[imax, j] * abs(vj - u[imax]), G[imin, j] * abs(vj - u[imin])):
            nan |= x != x
            if x > r:
                r = x
    if nodes:
        for i in range(m):
            for x in (GT[jmax, i] * abs(vb[jmax] - u[i]), GT[jmin, i] * abs(vb[jmin] - u[i])):
                nan |= x != x
                if x > r:
                    r = x
    return math.nan if nan else r


@njit(cache=True, error_model="numpy")
def i_ref_inputs(v, rows, v0, G1, colmax, gtop, ext, best):
    """``best[k]`` = max(``best[k]``, crossbar 1's branch currents (A) of sample ``rows[k]``): through each node's
    largest conductance, and from the sample's highest and lowest input (``v``: layer 1 of those samples, ``v0``: the
    inputs of every sample, ``ext``: the index of each sample's highest and lowest input, ``(2, B)``)."""
    e2 = np.zeros((0, 0))
    for k in range(v.shape[0]):
        b = rows[k]
        best[k] = _branches(v[k], v0[b], G1, e2, colmax, gtop, ext[0, b], ext[1, b], False, best[k])


@njit(cache=True, error_model="numpy")
def i_ref_layer(v, below, gain, G, GT, colmax, gtop, best):
    """``best[k]`` = max(``best[k]``, crossbar ``l``'s branch currents (A) of sample ``k``), ``l ≥ 2``: drives (V)
    ``gain·below`` (``below``: layer ``l − 1``), branches through each node's largest conductance, from the extreme
    drives and from the extreme nodes (``GT``: ``G`` transposed, contiguous)."""
    u = np.empty(below.shape[1])
    for k in range(v.shape[0]):
        imax = imin = 0
        for i in range(u.size):  # (a NaN drive is a NaN node of the layer below, whose own bound is NaN)
            u[i] = gain[i] * below[k, i]
            if u[i] > u[imax]:
                imax = i
            if u[i] < u[imin]:
                imin = i
        best[k] = _branches(v[k], u, G, GT, colmax, gtop, imax, imin, True, best[k])


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


@njit(cache=True, error_model="numpy")
def _finite(d):
    """``numpy.nan_to_num(d, nan=0.0)`` of one value: NaN to 0, ±inf to ±the largest float."""
    if d != d:
        return 0.0
    return min(max(d, -_BIG), _BIG)


@njit(cache=True, error_model="numpy")
def _anderson_row(b, x, g, f_prev, g_prev, dF, dG, slot, k, reg, f, out):
    """``solver._Anderson``'s step for sample ``b``: ``f = g - x``; ring slot ``slot`` of ``dF``/``dG``
    (``(B, m, N)``) takes the finite part of ``f - f_prev`` and ``g - g_prev``; then the mixing coefficients γ of
    the first ``k >= 1`` slots and ``out = g - Σ γ_i dG_i``. γ solves the column-scaled Gram system plus
    ``reg·I``: symmetric positive definite (unit or zero diagonal, plus ``reg``), so Gaussian elimination needs
    no pivoting."""
    N = x.shape[1]
    for n in range(N):
        fn = g[b, n] - x[b, n]
        dF[b, slot, n] = _finite(fn - f_prev[b, n])
        dG[b, slot, n] = _finite(g[b, n] - g_prev[b, n])
        f[b, n] = fn
    M = np.zeros((k, k + 1))  # the Gram matrix, then the right-hand side DF·f in column k
    for n in range(N):
        for i in range(k):
            di = dF[b, i, n]
            for j in range(i + 1):
                M[i, j] += di * dF[b, j, n]
            M[i, k] += di * f[b, n]
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
        y = g[b, n]
        for i in range(k):
            y -= gamma[i] * dG[b, i, n]
        out[b, n] = y


@njit(cache=True, parallel=True, error_model="numpy")
def anderson_parallel(x, g, f_prev, g_prev, dF, dG, slot, k, reg, f, out):
    """Every sample's ``_anderson_row``, samples in parallel."""
    for b in prange(x.shape[0]):
        _anderson_row(np.int64(b), x, g, f_prev, g_prev, dF, dG, slot, k, reg, f, out)


@njit(cache=True, error_model="numpy")
def anderson_serial(x, g, f_prev, g_prev, dF, dG, slot, k, reg, f, out):
    """``anderson_parallel`` in one thread (small batches)."""
    for b in range(x.shape[0]):
        _anderson_row(b, x, g, f_prev, g_prev, dF, dG, slot, k, reg, f, out)


def warm_up() -> None:
    """Load (or compile) the kernels for the array types ``kernels.update``, the solver's bounds and its Anderson
    step pass."""
    e2, z1, one = np.zeros((0, 0)), np.zeros(1), np.ones((1, 1))
    for layer in (layer_serial, layer_parallel):
        layer(_LINEAR, one, e2, e2, z1 + 1, z1, z1, z1 - 1, z1 + 1, np.array([0.0, 1.0, 0.0]),
              np.zeros((0, 3)), e2, np.empty((1, 1)), np.zeros(1))
    i0 = np.zeros(1, np.int64)
    i_ref_inputs(one, i0, one, one, i0, z1, np.zeros((2, 1), np.int64), np.zeros(1))
    i_ref_layer(one, one, z1 + 1, one, one, i0, z1, np.zeros(1))
    for below in (e2, one):
        i_upper_layer(one, below, z1 + 1, z1, z1, 1.0, np.zeros(1))
    d3 = np.zeros((1, 1, 1))
    for step in (anderson_serial, anderson_parallel):
        step(one, one, one, one, d3, d3.copy(), 0, 1, 1e-10, np.empty((1, 1)), np.empty((1, 1)))
