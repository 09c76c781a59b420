"""Independent reference physics for the tests: the element currents written from the circuit's definition
(docs/solver.md#model), and the full KCL system of a DRN with its Jacobian, built from the network arrays without using
cdsolver.solver."""

import numpy as np
from scipy.linalg import solve as dense_solve
from scipy.optimize import minimize

from cdsolver.elements import Linear, Pwl, Shockley


def i_nl(el, v, lo, hi):
    """Current (A) leaving a node through element ``el`` and its derivative (S), from the circuit's definition."""
    v = np.asarray(v, dtype=float)
    if isinstance(el, Linear):
        return 0 * v, 0 * v
    if isinstance(el, Shockley):
        Is, Vd = el.Is, el.Vd
        fwd = np.where(np.isfinite(hi), Is * (np.exp((v - hi) / Vd) - 1), 0.0)
        rev = np.where(np.isfinite(lo), Is * (np.exp((lo - v) / Vd) - 1), 0.0)
        dfwd = np.where(np.isfinite(hi), Is / Vd * np.exp((v - hi) / Vd), 0.0)
        drev = np.where(np.isfinite(lo), Is / Vd * np.exp((lo - v) / Vd), 0.0)
        return fwd - rev, dfwd + drev
    if isinstance(el, Pwl):
        vk, ik = el.vk, el.ik
        s = np.diff(ik) / np.diff(vk)
        inside = np.interp(v, vk, ik)
        below = ik[0] + s[0] * (v - vk[0])
        above = ik[-1] + s[-1] * (v - vk[-1])
        cur = np.where(v < vk[0], below, np.where(v > vk[-1], above, inside))
        k = np.clip(np.searchsorted(vk, v, side="right") - 1, 0, len(vk) - 2)
        return cur, s[k]
    raise TypeError(el)


def full_kcl(net, v0, x, beta=0.0, y=None):
    """KCL vector (A) of all hidden+output nodes for one sample, and its Jacobian (S). ``x`` = stacked v1..vL."""
    L, A, C = net.depth, net.A, net.C
    n = net.sizes
    inv = net.amplifier is not None and net.amplifier.invert == "half"  # the second half's amplifiers invert
    sg = [np.where(np.arange(m) < (m + 1) // 2, 1.0, -1.0) if inv else np.ones(m) for m in n]
    cuts = np.cumsum([0] + n[1:])
    v = [v0] + [x[cuts[l]:cuts[l + 1]] for l in range(L)]
    gn = net.g_nudge(beta)
    # nudging branches: output node k to its target (single), or v+ = node k to v- = node K+k plus target (paired)
    M = np.eye(n[-1]) if net.outputs == "single" else np.hstack([np.eye(n[-1] // 2), -np.eye(n[-1] // 2)])
    y = np.zeros(len(M)) if y is None else y
    F = np.zeros(cuts[-1])
    J = np.zeros((cuts[-1], cuts[-1]))
    for l in range(1, L + 1):
        G = net.G[l - 1]
        sl = slice(cuts[l - 1], cuts[l])
        u = v[0] if l == 1 else A * sg[l - 1] * v[l - 1]
        f = G.sum(0) * v[l] - u @ G - net.b[l - 1]
        J[sl, sl] += np.diag(G.sum(0))
        if l > 1:
            J[sl, cuts[l - 2]:cuts[l - 1]] -= A * G.T * sg[l - 1]
        if l < L:
            G2 = net.G[l]
            # the CCCS pulls C·s times the current its VCVS (gain s·A) delivers into crossbar l+1
            f += C * sg[l] * (G2 * (sg[l] * A * v[l])[:, None] - G2 * v[l + 1][None, :]).sum(1)
            J[sl, sl] += np.diag(C * A * G2.sum(1))
            J[sl, cuts[l]:cuts[l + 1]] -= C * sg[l][:, None] * G2
            cur, dcur = i_nl(net.element, v[l], net.lo[l - 1], net.hi[l - 1])
            f += cur
            J[sl, sl] += np.diag(dcur)
        else:
            f += gn * M.T @ (M @ v[l] - y)
            J[sl, sl] += gn * M.T @ M
        F[sl] = f
    return F, J


def newton_reference(net, v0, beta=0.0, y=None, x0=None, iters=200):
    """Damped Newton on the full KCL system of each sample (scipy dense solves); returns states v1..vL."""
    n = net.sizes
    X = []
    for b in range(len(v0)):
        yb = None if y is None else y[b]
        x = np.zeros(sum(n[1:])) if x0 is None else x0[b].copy()
        F, J = full_kcl(net, v0[b], x, beta, yb)
        for _ in range(iters):
            dx = dense_solve(J, F)
            t = 1.0
            while True:  # backtracking on |F|
                F2, J2 = full_kcl(net, v0[b], x - t * dx, beta, yb)
                if np.linalg.norm(F2) <= (1 - 1e-4 * t) * np.linalg.norm(F) or t < 1e-10:
                    break
                t /= 2
            x, F, J = x - t * dx, F2, J2
            if np.abs(t * dx).max() <= 1e-16 * max(1.0, np.abs(x).max()):
                break
        X.append(x)
    X = np.array(X)
    cuts = np.cumsum([0] + n[1:])
    return [X[:, cuts[l]:cuts[l + 1]] for l in range(net.depth)]


def box_qp(fun, jac, system, lo, hi, x0):
    """Minimiser of a convex quadratic co-content on the box ``[lo, hi]`` (ideal diodes), independent of CD:
    L-BFGS-B from ``x0``, then the active set fixed and the free part of the linear KCL ``system(x) -> (F, J)``
    solved exactly (dense). Returns ``x`` (V)."""
    res = minimize(fun, x0, jac=jac, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
    x = res.x
    at_lo, at_hi = x <= lo + 1e-7, x >= hi - 1e-7
    x = np.where(at_lo, lo, np.where(at_hi, hi, x))
    F, J = system(x)
    free = ~(at_lo | at_hi)
    x[free] -= dense_solve(J[np.ix_(free, free)], F[free])
    return x


def constrained_min(fun, jac, hess, A, b, x0):
    """Minimiser of a smooth strictly convex ``fun`` subject to ``A x <= b`` (ideal diodes between any nodes),
    independent of CD: SLSQP from the feasible ``x0``, then the constraints within 1e-6 of equality held as
    equalities and the KKT system Newton-solved to rounding (least squares: dependent rows, e.g. a loop of diodes,
    allowed). Asserts its own KKT conditions: feasibility to 1e-12, and non-negative multipliers (scipy's ``nnls``)
    that leave the stationarity residual below 1e-10 of the Hessian's largest entry (× 1 unit of x). Returns ``x``."""
    from scipy.optimize import nnls

    res = minimize(fun, x0, jac=jac, method="SLSQP", options={"ftol": 1e-16, "maxiter": 5000},
                   constraints=[{"type": "ineq", "fun": lambda x: b - A @ x, "jac": lambda x: -A}])
    x = res.x
    act = A @ x - b >= -1e-6
    Aa, ba = A[act], b[act]
    n, m = x.size, int(act.sum())
    lam = np.zeros(m)
    for _ in range(100):
        K = np.block([[hess(x), Aa.T], [Aa, np.zeros((m, m))]])
        step = np.linalg.lstsq(K, -np.concatenate([jac(x) + Aa.T @ lam, Aa @ x - ba]), rcond=None)[0]
        x, lam = x + step[:n], lam + step[n:]
        if np.abs(step[:n]).max(initial=0.0) <= 1e-16 * max(1.0, np.abs(x).max()):
            break
    assert np.all(A @ x - b <= 1e-12), "reference: infeasible"
    g = jac(x)
    mu, resid = nnls(Aa.T, -g) if m else (None, np.linalg.norm(g))
    assert resid <= 1e-10 * np.abs(hess(x)).max(), f"reference: KKT residual {resid}"
    return x
