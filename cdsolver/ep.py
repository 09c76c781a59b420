"""Equilibrium propagation (SPEC §3): EP gradient estimators from CD steady states, and the true gradient by
implicit differentiation (the linearised circuit) to check them.

In the circuit the nudge enters the co-content as ``w_L·(g(β) − g₀)·½‖decode(v_L) − y‖²`` (``decode``: ``v_L``,
or ``v+ − v−`` with paired outputs) with layer weights ``w_l = (C/A)^(l−1)``, ``g(β) = 1/(1/β + R_on)`` and
the free-phase leak ``g₀ = 1/R_off``. EP's strength is thus
``β' = w_L·(g(β) − g₀)`` and every estimator is ``[∂E/∂θ(s_a) − ∂E/∂θ(s_b)] / (β'_a − β'_b)`` with
``∂E/∂G_l = w_l·½(u − v)²`` and ``∂E/∂b_l = −w_l·v`` — SPEC's factor ``(C/A)^(l−L)`` is ``w_l / w_L``.
The loss is ``½‖decode(v_L) − y‖²`` at the free equilibrium, averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .network import Network
from .solver import Solution, solve

__all__ = ["Gradient", "ep_gradient", "implicit_gradient", "loss", "ESTIMATORS", "beta_eff", "beta_limit", "safe_beta"]

#: The negative phase may take at most this fraction of the output nodes' conductance (``beta_limit``).
BETA_MARGIN = 0.5

ESTIMATORS = ("positive", "negative", "centered")


@dataclass
class Gradient:
    """Gradient of the batch-mean loss: ``dG[l-1]`` (V²/S·… per S), shape of ``G[l-1]``; ``db[l-1]`` per A.
    ``used``: the samples it averages over (EP: those whose phases all converged; ``None`` = all)."""

    dG: list[np.ndarray]
    db: list[np.ndarray]
    used: np.ndarray | None = None

    def flat(self) -> np.ndarray:
        return np.concatenate([g.ravel() for g in self.dG] + [b.ravel() for b in self.db])


def _weights(net: Network) -> list[float]:
    return [(net.C / net.A) ** (l - 1) for l in range(1, net.depth + 1)]


def beta_eff(net: Network, beta: float) -> float:
    """EP's nudging strength in the co-content, ``w_L·(g(β) − g(0))`` (S)."""
    return _weights(net)[-1] * (net.g_nudge(beta) - net.g_nudge(0.0))


def beta_limit(net: Network, margin: float = BETA_MARGIN) -> float:
    """Largest β (S) whose negative phase keeps the co-content convex, with ``margin`` to spare, at every operating
    point: the nudging branch of ``−β`` is a negative conductance ``g(−β) = −β/(1 − β·R_on)``. Diodes only add
    curvature, so the worst case is the diode-free network; its co-content Hessian ``H`` (layer weights ``w_l``) is
    block-tridiagonal, and eliminating the layers from the input side leaves the outputs' Schur complement ``S``
    (the conductance matrix seen from the outputs, S). The nudged co-content stays convex while
    ``w_L·|g| < 1/λmax(D S⁻¹ Dᵀ)`` (``D``: ``decode``). With ``w_L·|g| = margin`` times that bound:
    ``β = h/(1 + h·R_on)``, ``h = margin/(w_L·λmax)``. Costs one dense solve per hidden layer."""
    w, A = _weights(net), net.A
    L = net.depth
    S = None
    for l in range(1, L + 1):
        diag = w[l - 1] * net.G[l - 1].sum(axis=0)
        if l < L:
            diag = diag + w[l] * A * A * net.G[l].sum(axis=1)
        else:
            diag = diag + w[-1] * net.g_nudge(0.0)
        Hll = np.diag(diag)
        if S is not None:  # eliminate layer l-1: H_ll − Bᵀ S⁻¹ B with B = −w_l·A·diag(signs)·G_l
            B = w[l - 1] * A * net.signs(l - 1)[:, None] * net.G[l - 1]
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


def _drives(net: Network, v0: np.ndarray, states: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [v0] + [net.A * net.signs(l) * s for l, s in enumerate(states[:-1], 1)]


def _energy_grad_diff(net: Network, v0: np.ndarray, sa: Sequence[np.ndarray], sb: Sequence[np.ndarray]) -> Gradient:
    """Batch mean of ``∂E/∂θ(s_a) − ∂E/∂θ(s_b)``, without forming either: ``½(u−v)²`` differences as
    ``½(Δu − Δv)(Σu − Σv)`` in matrix-product form (no cancellation for close phases)."""
    B = len(v0)
    ua, ub = _drives(net, v0, sa), _drives(net, v0, sb)
    dG, db = [], []
    for l, w in enumerate(_weights(net), 1):
        dv, sv = sa[l - 1] - sb[l - 1], sa[l - 1] + sb[l - 1]
        if l == 1:  # both phases share the inputs: Δu = 0
            g = (dv * sv).sum(0)[None, :] - 2.0 * (v0.T @ dv)
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
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (the estimator chooses the signs), got {beta}")
    if free is None:
        free = solve(net, v0, targets=y, **solve_kw)
    phases = {"positive": (beta, 0.0), "negative": (0.0, -beta), "centered": (beta, -beta)}[estimator]
    states, used = {0.0: free.states}, free.converged.copy()
    for b in phases:
        if b != 0.0:
            s = solve(net, v0, beta=b, targets=y, init=free.states, **solve_kw)
            states[b], used = s.states, used & s.converged
    a, b = phases
    if not used.any():
        return Gradient([np.zeros_like(g) for g in net.G], [np.zeros_like(x) for x in net.b], used), free
    rows = slice(None) if used.all() else np.flatnonzero(used)
    diff = _energy_grad_diff(net, v0[rows], [s[rows] for s in states[a]], [s[rows] for s in states[b]])
    scale = 1.0 / (beta_eff(net, a) - beta_eff(net, b))
    return Gradient([g * scale for g in diff.dG], [x * scale for x in diff.db], used), free


def kcl_jacobian(net: Network, states_b: Sequence[np.ndarray]) -> np.ndarray:
    """Dense Jacobian (S) of the free-phase KCL of one sample w.r.t. all hidden+output voltages. Nodes of
    ideal diodes on a rail are voltage-clamped: their rows become identity (their voltage cannot move)."""
    n, L, A, C = net.sizes, net.depth, net.A, net.C
    cuts = np.cumsum([0] + n[1:])
    J = np.zeros((cuts[-1], cuts[-1]))
    for l in range(1, L + 1):
        sl = slice(cuts[l - 1], cuts[l])
        G = net.G[l - 1]
        diag = G.sum(0) + (C * A * net.G[l].sum(1) if l < L else net.g_nudge(0.0))
        if l < L:
            diag = diag + net.element.conductance(states_b[l - 1], net.lo[l - 1], net.hi[l - 1])
        J[sl, sl] = np.diag(diag)
        if l == L and net.outputs == "paired":  # the free-phase leak couples v+ and v−
            K = net.n_classes
            J[sl, sl][np.arange(K), K + np.arange(K)] = J[sl, sl][K + np.arange(K), np.arange(K)] = -net.g_nudge(0.0)
        if l > 1:
            J[sl, cuts[l - 2]:cuts[l - 1]] = -A * G.T * net.signs(l - 1)
        if l < L:
            J[sl, cuts[l]:cuts[l + 1]] = -C * net.signs(l)[:, None] * net.G[l]
    clamped = ~np.isfinite(np.diag(J))
    J[clamped] = 0.0
    J[clamped, clamped] = 1.0
    return J


def implicit_gradient(net: Network, v0: np.ndarray, free_states: Sequence[np.ndarray], y: np.ndarray) -> Gradient:
    """True gradient of the loss at the free equilibrium by implicit differentiation: ``ds = −J⁻¹ r`` with
    ``r = decodeᵀ(decode(v_L) − y)/w_L`` on the outputs (the linearised circuit driven by the cost), then the
    derivative of ``∂E/∂θ`` along ``ds``. Dense (O(N³) per sample): for checks on small networks."""
    n, w = net.sizes, _weights(net)
    cuts = np.cumsum([0] + n[1:])
    ds = np.zeros((len(v0), cuts[-1]))
    for b in range(len(v0)):
        rhs = np.zeros(cuts[-1])
        vL = free_states[-1][b:b + 1]
        rhs[cuts[-2]:] = net.decode_T(net.decode(vL) - y[b:b + 1])[0] / w[-1]
        ds[b] = -np.linalg.solve(kcl_jacobian(net, [s[b] for s in free_states]), rhs)
    d = [ds[:, cuts[l]:cuts[l + 1]] for l in range(net.depth)]
    u, du = _drives(net, v0, free_states), _drives(net, np.zeros_like(v0), d)
    dG, db = [], []
    for l in range(1, net.depth + 1):
        # d/ds of w·½(u_i − v_j)² = w·(u_i − v_j)(du_i − dv_j), batch mean, in product form
        ui, vi, dui, dvi = u[l - 1], free_states[l - 1], du[l - 1], d[l - 1]
        g = (ui * dui).sum(0)[:, None] - ui.T @ dvi - dui.T @ vi + (vi * dvi).sum(0)[None, :]
        dG.append(w[l - 1] * g / len(v0))
        db.append(-w[l - 1] * dvi.mean(0))
    return Gradient(dG, db)
