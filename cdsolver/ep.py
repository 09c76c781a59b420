"""Equilibrium propagation (docs/training.md#equilibrium-propagation-in-the-circuit): EP gradient estimators from CD
steady states, and the true gradient by implicit differentiation (the linearised circuit) to check them.

In the circuit the nudge enters the co-content as ``w_L·(g(β) − g₀)·½‖decode(v_L) − y‖²`` (``decode``: ``v_L``,
or ``v+ − v−`` with paired outputs) with layer weights ``w_l = (C/A)^(l−1)``, ``g(β) = 1/(1/β + R_on)`` and
the free-phase leak ``g₀ = 1/R_off``. EP's strength is thus
``β' = w_L·(g(β) − g₀)`` and every estimator is ``[∂E/∂θ(s_a) − ∂E/∂θ(s_b)] / (β'_a − β'_b)`` with
``∂E/∂G_l = w_l·½(u − v)²`` and ``∂E/∂b_l = −w_l·v`` — the EP gradient's layer factor ``(C/A)^(l−L)`` is ``w_l / w_L``.
The loss is ``½‖decode(v_L) − y‖²`` at the free equilibrium, averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .constants import ESTIMATORS
from .network import Network
from .solver import Solution, check_states, solve
from .topology import Layered
from .validation import ValidationError, check_array

__all__ = ["Gradient", "ep_gradient", "ep_estimate", "ep_phases", "implicit_gradient", "adjoint_solve",
           "response_gradient", "cost_current", "kcl_diagonal", "loss", "ESTIMATORS", "beta_eff", "beta_floor",
           "beta_limit", "over_samples", "safe_beta"]

#: EP's nudge must exceed the free phase's leak to the targets (``1/R_off``) this many times (``ep_phases``).
NUDGE_OVER_LEAK = 1e3
#: The negative phase may take at most this fraction of the convexity bound (``beta_limit``).
BETA_MARGIN = 0.5



@dataclass
class Gradient:
    """Gradient of the batch-mean loss: ``dG[l-1]`` (V²/S·… per S), shape of ``G[l-1]``; ``db[l-1]`` per A.
    ``used``: the samples it averages over (EP: those whose phases all converged; ``None`` = all)."""

    dG: list[np.ndarray]
    db: list[np.ndarray]
    used: np.ndarray | None = None

    def flat(self) -> np.ndarray:
        return np.concatenate([g.ravel() for g in self.dG] + [b.ravel() for b in self.db])


def beta_eff(net: Network, beta: float) -> float:
    """EP's nudging strength in the co-content, ``w_L·(g(β) − g(0))`` (S)."""
    return Layered(net).weights[-1] * (net.g_nudge(beta) - net.g_nudge(0.0))


def beta_limit(net: Network, margin: float = BETA_MARGIN) -> float:
    """Largest β (S) whose negative phase keeps the co-content convex, with ``margin`` to spare, at every operating
    point: the nudging branch of ``−β`` is a negative conductance ``g(−β) = −β/(1 − β·R_on)``. Diodes only add
    curvature, so the worst case is the diode-free network; its co-content Hessian ``H`` (layer weights ``w_l``) is
    block-tridiagonal, and eliminating the layers from the input side leaves the outputs' Schur complement ``S``
    (the conductance matrix seen from the outputs, S). The nudged co-content stays convex while
    ``w_L·|g| < 1/λmax(D S⁻¹ Dᵀ)`` (``D``: ``decode``). With ``w_L·|g| = margin`` times that bound:
    ``β = h/(1 + h·R_on)``, ``h = margin/(w_L·λmax)``. Costs one dense solve per hidden layer."""
    topo = Layered(net)
    w, L = topo.weights, net.depth
    S = None
    for l in range(1, L + 1):
        Hll = np.diag(w[l - 1] * (topo.conductance(l) + (net.g_nudge(0.0) if l == L else 0.0)))
        if S is not None:  # eliminate layer l-1: H_ll − Bᵀ S⁻¹ B with B = −w_l·forward(l)
            B = w[l - 1] * topo.forward(l)
            Hll = Hll - B.T @ np.linalg.solve(S, B)
        S = Hll
    D = net.decode(np.eye(S.shape[0])).T  # (classes, n_L): decode as a matrix
    R = D @ np.linalg.solve(S, D.T)
    h = margin / (w[-1] * float(np.linalg.eigvalsh(0.5 * (R + R.T))[-1]))
    return h / (1.0 + h * net.r_on)


def safe_beta(net: Network, beta: float) -> float:
    """``beta``, or ``beta_limit(net)`` where that is smaller: the β of a negative or centered EP phase (S).
    ``train`` sets it once per epoch; the margin covers the conductances' drift within one."""
    return min(beta, beta_limit(net))


def loss(net: Network, states: Sequence[np.ndarray], y: np.ndarray) -> float:
    """Batch-mean cost ``½‖decode(v_L) − y‖²`` (V²; paired outputs: ``decode = v+ − v−``)."""
    return float(0.5 * np.mean(np.sum((net.decode(states[-1]) - y) ** 2, axis=1)))


def _energy_grad_diff(net: Network, v0: np.ndarray, sa: Sequence[np.ndarray], sb: Sequence[np.ndarray]) -> Gradient:
    """Batch mean of ``∂E/∂θ(s_a) − ∂E/∂θ(s_b)``, without forming either: ``½(u−v)²`` differences as
    ``½(Δu − Δv)(Σu − Σv)`` in matrix-product form (no cancellation for close phases)."""
    B = len(v0)
    topo = Layered(net)
    ua, ub = topo.drives(v0, sa), topo.drives(v0, sb)
    dG, db = [], []
    for l, w in enumerate(topo.weights, 1):
        dv, sv = sa[l - 1] - sb[l - 1], sa[l - 1] + sb[l - 1]
        if l == 1:  # both phases share the inputs: Δu = 0
            g = (dv * sv).sum(0)[None, :] - 2.0 * topo.input_outer(v0, dv)
        else:
            du, su = ua[l - 1] - ub[l - 1], ua[l - 1] + ub[l - 1]
            g = (du * su).sum(0)[:, None] + (dv * sv).sum(0)[None, :] - du.T @ sv - su.T @ dv
        dG.append(w * 0.5 * g / B)
        db.append(-w * dv.mean(0))
    return Gradient(dG, db)


def ep_gradient(net: Network, v0: np.ndarray, y: np.ndarray, *, beta: float, estimator: str = "centered",
                free: Solution | None = None, **solve_kw) -> tuple[Gradient, Solution]:
    """EP estimate of the loss gradient, and the free-phase solution (pass ``free`` to reuse one).

    Nudged phases start from the free state. ``solve_kw`` go to ``solve`` (``tol``, ``max_sweeps``, ...).
    A sample any of whose phases did not converge is left out of the mean (``Gradient.used``; all left out: zero).
    """
    phases = ep_phases(net, estimator, beta)
    if free is None:
        free = solve(net, v0, targets=y, **solve_kw)
    states, used = {0.0: free.states}, free.converged.copy()
    for b in phases:
        if b != 0.0:
            s = solve(net, v0, beta=b, targets=y, init=free.states, reuse=free, **solve_kw)
            states[b], used = s.states, used & s.converged
    a, b = phases
    return over_samples(net, used, lambda r: ep_estimate(net, v0[r], [s[r] for s in states[a]],
                                                         [s[r] for s in states[b]], a, b)), free


def over_samples(net: Network, used: np.ndarray, mean_gradient: Callable[[np.ndarray | slice], Gradient]) -> Gradient:
    """``mean_gradient(rows)`` — a batch-mean gradient over the sample rows given — over the samples ``used``
    (bool per sample), with ``Gradient.used`` set; zero when none is used. How a training step leaves out the
    samples whose phases did not converge."""
    if used.any():
        g = mean_gradient(slice(None) if used.all() else np.flatnonzero(used))
    else:
        g = Gradient([np.zeros_like(G) for G in net.G], [np.zeros_like(b) for b in net.b])
    g.used = used
    return g


def beta_floor(net: Network) -> float:
    """The smallest β (S) EP takes on ``net``: ``NUDGE_OVER_LEAK`` times the free phase's leak ``1/R_off``."""
    return NUDGE_OVER_LEAK * net.g_nudge(0.0)


def ep_phases(net: Network, estimator: str, beta: float) -> tuple[float, float]:
    """The two phases ``(β_a, β_b)`` (S) an estimator compares (0 = the free phase) on ``net``. ``β`` must be at
    least ``NUDGE_OVER_LEAK`` times the free phase's leak ``g(0) = 1/R_off``: at ``β ≈ 1/R_off`` the two
    phases are one circuit, and the estimate is noise (``β = 1e-12`` S gave 4e7 times the true gradient, smaller
    ones 0 or a division by zero)."""
    if estimator not in ESTIMATORS:
        raise ValidationError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not beta > 0:
        raise ValidationError(f"beta must be > 0 (the estimator chooses the signs), got {beta}")
    if not beta >= beta_floor(net):
        raise ValidationError(f"beta = {beta:g} S barely nudges: the free phase's outputs leak {net.g_nudge(0.0):g} S "
                              f"to their targets (1/R_off), and EP needs beta >= {beta_floor(net):g} S "
                              f"({NUDGE_OVER_LEAK:g}x that)")
    return {"positive": (beta, 0.0), "negative": (0.0, -beta), "centered": (beta, -beta)}[estimator]


def ep_estimate(net: Network, v0: np.ndarray, states_a: Sequence[np.ndarray], states_b: Sequence[np.ndarray],
                beta_a: float, beta_b: float) -> Gradient:
    """EP estimate from the steady states of two phases with nudging ``β_a ≠ β_b`` (S), whichever engine solved
    them: ``[∂E/∂θ(s_a) − ∂E/∂θ(s_b)] / (β'_a − β'_b)``, batch mean."""
    diff = _energy_grad_diff(net, v0, states_a, states_b)
    scale = 1.0 / (beta_eff(net, beta_a) - beta_eff(net, beta_b))
    return Gradient([g * scale for g in diff.dG], [x * scale for x in diff.db])


def kcl_diagonal(net: Network, free_states: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Diagonal of the free-phase KCL Jacobian (S) per layer, ``(batch, n_l)``: crossbar conductances, ``C·A`` times
    the next crossbar's, the element's small-signal conductance (``inf`` for an ideal diode on a rail: the node
    is voltage-clamped) and, at the outputs, the free-phase leak ``g(0)``."""
    topo, L = Layered(net), net.depth
    out = []
    for l in range(1, L + 1):
        d = topo.conductance(l) + (net.element.conductance(free_states[l - 1], net.lo[l - 1], net.hi[l - 1])
                                   if l < L else net.g_nudge(0.0))
        out.append(np.broadcast_to(d, free_states[l - 1].shape))
    return out


def adjoint_solve(net: Network, free_states: Sequence[np.ndarray], r_out: np.ndarray,
                  chunk_floats: int = 2**24) -> list[np.ndarray]:
    """``x = J⁻¹ r`` per sample (V), ``r`` (A) nonzero on the outputs only (``r_out``, ``(batch, n_L)``): the
    response of the circuit linearised at ``free_states`` to currents ``r_out`` injected into the outputs.

    ``J`` is block-tridiagonal over the layers with diagonal hidden blocks, and ``H = W·J`` (rows weighted by
    ``w_l``) is symmetric. The hidden layers of the parity other than ``L``'s are eliminated exactly: the Schur
    complement ``H_KK − M·Mᵀ`` with ``M = H_KE·(W_E·D_E)^(−1/2)`` over the kept layers ``K``, one batched matrix
    product per chunk of samples, then a batched LU solve. ``O(n³)`` per sample; voltage-clamped nodes (ideal
    diode on a rail) do not move. ``chunk_floats`` bounds the memory of one chunk (float64 elements)."""
    topo = Layered(net)
    L, n, w = net.depth, net.sizes, topo.weights
    diag = kcl_diagonal(net, free_states)
    keep = [l for l in range(1, L + 1) if l % 2 == L % 2]
    elim = [l for l in range(1, L) if l % 2 != L % 2]
    off = dict(zip(keep, np.cumsum([0] + [n[l] for l in keep])))
    N, NE = off[keep[-1]] + n[L], sum(n[e] for e in elim)
    # J's rows of the eliminated layers over the kept nodes (P), and H's columns of them (Q = H_KE)
    P, Q = np.zeros((NE, N)), np.zeros((N, NE))
    e0 = 0
    for e in elim:
        cols = slice(e0, e0 + n[e])
        # J[l, l−1] = −forward(l)ᵀ, J[l, l+1] = −backward(l); H's blocks are these times w_l (symmetric)
        if e > 1:
            below = slice(off[e - 1], off[e - 1] + n[e - 1])
            P[cols, below], Q[below, cols] = -topo.forward(e).T, -w[e - 2] * topo.backward(e - 1)
        above = slice(off[e + 1], off[e + 1] + n[e + 1])
        P[cols, above], Q[above, cols] = -topo.backward(e), -w[e] * topo.forward(e + 1).T
        e0 += n[e]
    wk = np.concatenate([np.full(n[l], w[l - 1]) for l in keep])
    we = np.concatenate([np.full(n[e], w[e - 1]) for e in elim]) if elim else np.zeros(0)
    B = len(r_out)
    x = [np.zeros((B, k)) for k in n[1:]]
    step = max(1, chunk_floats // (N * max(N, NE)))
    idx = np.arange(N)
    for s in range(0, B, step):
        rows = slice(s, min(B, s + step))
        dk = np.concatenate([diag[l - 1][rows] for l in keep], axis=1)  # (b, N)
        de = np.concatenate([diag[e - 1][rows] for e in elim], axis=1) if elim else np.zeros((len(dk), 0))
        M = Q * (1.0 / np.sqrt(we * de))[:, None, :]  # clamped: 1/inf = 0, the node does not move
        H = -(M @ M.transpose(0, 2, 1))
        H[:, idx, idx] += wk * dk
        if net.outputs == "paired":  # the free-phase leak couples v+ and v−
            K, o = net.n_classes, off[L]
            H[:, o + np.arange(K), o + K + np.arange(K)] -= w[-1] * net.g_nudge(0.0)
            H[:, o + K + np.arange(K), o + np.arange(K)] -= w[-1] * net.g_nudge(0.0)
        clamped = ~np.isfinite(dk)
        if clamped.any():
            H[clamped[:, :, None] | clamped[:, None, :]] = 0.0
            H[:, idx, idx] += clamped
        rhs = np.zeros_like(dk)
        rhs[:, off[L]:] = w[-1] * r_out[rows]
        xk = np.linalg.solve(H, rhs[:, :, None])[:, :, 0]
        xe = -(xk @ P.T) / de
        for l in keep:
            x[l - 1][rows] = xk[:, off[l]:off[l] + n[l]]
        e0 = 0
        for e in elim:
            x[e - 1][rows] = xe[:, e0:e0 + n[e]]
            e0 += n[e]
    return x


def response_gradient(net: Network, v0: np.ndarray, states: Sequence[np.ndarray],
                      ds: Sequence[np.ndarray]) -> Gradient:
    """Batch mean of the derivative of ``∂E/∂θ`` at ``states`` along the state change ``ds`` (V per layer):
    ``w_l·(u_i − v_j)(du_i − dv_j)`` per conductance and ``−w_l·dv_j`` per bias (branch voltages times response
    differences). With ``ds = −J⁻¹ r`` this is the loss gradient."""
    topo = Layered(net)
    w = topo.weights
    u, du = topo.drives(v0, states), topo.drives(np.zeros_like(v0), ds)
    dG, db = [], []
    for l in range(1, net.depth + 1):
        ui, vi, dui, dvi = u[l - 1], states[l - 1], du[l - 1], ds[l - 1]
        g = (ui * dui).sum(0)[:, None] - ui.T @ dvi - dui.T @ vi + (vi * dvi).sum(0)[None, :]
        dG.append(w[l - 1] * g / len(v0))
        db.append(-w[l - 1] * dvi.mean(0))
    return Gradient(dG, db)


def cost_current(net: Network, free_states: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """``r = decodeᵀ(decode(v_L) − y)/w_L`` (A per V² of cost, ``(batch, n_L)``): the currents that drive the
    linearised circuit at the outputs so that its response is the adjoint."""
    return net.decode_T(net.decode(free_states[-1]) - y) / Layered(net).weights[-1]


def implicit_gradient(net: Network, v0: np.ndarray, free_states: Sequence[np.ndarray], y: np.ndarray) -> Gradient:
    """True gradient of the loss at the free equilibrium by implicit differentiation: ``ds = −J⁻¹ r`` (``r``:
    ``cost_current``, the linearised circuit driven by the cost; ``adjoint_solve``), then ``response_gradient``
    along ``ds``. Exact to rounding; 0.3-0.7 s per sample at 3 × 1024 hidden nodes (docs/gradients.md)."""
    v0 = check_array(v0, "v0 (input voltages)", (None, net.sizes[0]))
    free_states = check_states(net, free_states, len(v0), "free_states")
    y = check_array(y, "y (targets)", (len(v0), net.n_classes))  # (a (n_classes,) y broadcast silently)
    x = adjoint_solve(net, free_states, cost_current(net, free_states, y))
    return response_gradient(net, v0, free_states, [-s for s in x])
