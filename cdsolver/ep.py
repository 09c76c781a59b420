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
from .validation import ValidationError

__all__ = ["Gradient", "ep_gradient", "implicit_gradient", "loss", "ESTIMATORS", "beta_eff"]

ESTIMATORS = ("positive", "negative", "centered")


@dataclass
class Gradient:
    """Gradient of the batch-mean loss: ``dG[l-1]`` (V²/S·… per S), shape of ``G[l-1]``; ``db[l-1]`` per A."""

    dG: list[np.ndarray]
    db: list[np.ndarray]

    def flat(self) -> np.ndarray:
        return np.concatenate([g.ravel() for g in self.dG] + [b.ravel() for b in self.db])


def _weights(net: Network) -> list[float]:
    return [(net.C / net.A) ** (l - 1) for l in range(1, net.depth + 1)]


def beta_eff(net: Network, beta: float) -> float:
    """EP's nudging strength in the co-content, ``w_L·(g(β) − g(0))`` (S)."""
    return _weights(net)[-1] * (net.g_nudge(beta) - net.g_nudge(0.0))


def loss(net: Network, states: Sequence[np.ndarray], y: np.ndarray) -> float:
    """Batch-mean cost ``½‖decode(v_L) − y‖²`` (V²; paired outputs: ``decode = v+ − v−``)."""
    return float(0.5 * np.mean(np.sum((net.decode(states[-1]) - y) ** 2, axis=1)))


def _drives(net: Network, v0: np.ndarray, states: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [v0] + [net.A * s for s in states[:-1]]


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
    """
    if estimator not in ESTIMATORS:
        raise ValidationError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not beta > 0:
        raise ValidationError(f"beta must be > 0 (the estimator chooses the signs), got {beta}")
    if free is None:
        free = solve(net, v0, targets=y, **solve_kw)
    phases = {"positive": (beta, 0.0), "negative": (0.0, -beta), "centered": (beta, -beta)}[estimator]
    states = {0.0: free.states}
    for b in phases:
        if b != 0.0:
            states[b] = solve(net, v0, beta=b, targets=y, init=free.states, **solve_kw).states
    a, b = phases
    diff = _energy_grad_diff(net, v0, states[a], states[b])
    scale = 1.0 / (beta_eff(net, a) - beta_eff(net, b))
    return Gradient([g * scale for g in diff.dG], [x * scale for x in diff.db]), free


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
            J[sl, cuts[l - 2]:cuts[l - 1]] = -A * G.T
        if l < L:
            J[sl, cuts[l]:cuts[l + 1]] = -C * net.G[l]
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
    u, du = _drives(net, v0, free_states), [np.zeros_like(v0)] + [net.A * x for x in d[:-1]]
    dG, db = [], []
    for l in range(1, net.depth + 1):
        # d/ds of w·½(u_i − v_j)² = w·(u_i − v_j)(du_i − dv_j), batch mean, in product form
        ui, vi, dui, dvi = u[l - 1], free_states[l - 1], du[l - 1], d[l - 1]
        g = (ui * dui).sum(0)[:, None] - ui.T @ dvi - dui.T @ vi + (vi * dvi).sum(0)[None, :]
        dG.append(w[l - 1] * g / len(v0))
        db.append(-w[l - 1] * dvi.mean(0))
    return Gradient(dG, db)
