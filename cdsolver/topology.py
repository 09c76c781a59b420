"""Who connects to whom in a layered DRN (docs/solver.md#model), written once: the solver's set-up and drives, EP's
drives and KCL Jacobian, the co-content, the deck's amplifiers and the floating-node check all read it from ``Layered``.

Crossbar ``l`` joins the drive voltages ``u_l`` of layer ``l−1`` to the nodes of layer ``l``: ``u_1`` are the
inputs, ``u_l = A·s_{l−1}·v_{l−1}`` for ``l ≥ 2`` (``s``: each hidden node's amplifier sign, ±1; no amplifier:
``A = C = 1``, ``s = 1``), and the amplifier pulls ``C·s_l`` times the current it delivers back out of node ``l``.
So node ``j`` of layer ``l`` sees the total conductance ``Σ_i G_l[i, j] + C·A·Σ_k G_{l+1}[j, k]`` and the drive
``u_l @ G_l + C·s_l·(G_{l+1} @ v_{l+1}) + b_l``; the KCL of layer ``l`` weighted by ``w_l = (C/A)^(l−1)`` is the
gradient of one co-content. The general (graph) kind of network is ``cdsolver.graph.Graph``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .network import Network

__all__ = ["Layered"]


class Layered:
    """The connections of ``net`` (read live: a change of its crossbars shows; its amplifier and sizes are taken
    once). Layers are numbered ``1..L`` (``L``: the output layer), hidden layers ``1..L−1``."""

    def __init__(self, net: "Network"):
        self.net, self.L, self.A, self.C = net, net.depth, net.A, net.C
        #: amplifier signs ``s_l`` of hidden layer ``l`` at index ``l − 1``
        self.sign = [net.signs(l) for l in range(1, self.L)]
        #: co-content weight ``w_l = (C/A)^(l−1)`` of layer ``l`` at index ``l − 1``
        self.weights = [(self.C / self.A) ** (l - 1) for l in range(1, self.L + 1)]

    def gains(self, l: int) -> tuple[np.ndarray, np.ndarray]:
        """Forward voltage gains ``A·s_l`` and pull-back current gains ``C·s_l`` of hidden layer ``l``'s nodes."""
        s = self.sign[l - 1]
        return self.A * s, self.C * s

    def drive(self, l: int, below: np.ndarray) -> np.ndarray:
        """Drive voltages ``u_l`` (V) of crossbar ``l`` from the voltages ``below`` of layer ``l − 1``."""
        return below if l == 1 else self.A * self.sign[l - 2] * below

    def drives(self, v0: np.ndarray, states: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``u_1..u_L`` (V) from the inputs ``v0`` and the voltages ``states`` of layers ``1..L`` (or ``1..L−1``)."""
        return [v0] + [self.drive(l, states[l - 2]) for l in range(2, self.L + 1)]

    def forward(self, l: int) -> np.ndarray:
        """``A·diag(s_{l−1})·G_l`` (S), ``l ≥ 2``: layer ``l``'s drive current from layer ``l − 1`` is
        ``v_{l−1} @ forward(l)``."""
        return (self.A * self.sign[l - 2])[:, None] * self.net.G[l - 1]

    def backward(self, l: int) -> np.ndarray:
        """``C·diag(s_l)·G_{l+1}`` (S), ``l < L``: layer ``l``'s drive current from layer ``l + 1`` is
        ``v_{l+1} @ backward(l).T``."""
        return (self.C * self.sign[l - 1])[:, None] * self.net.G[l]

    def input_current(self, v0: np.ndarray) -> np.ndarray:
        """``v0 @ G_1`` (A, ``(batch, n_1)``): crossbar 1's current into layer 1 from input voltages ``v0`` (V)."""
        half = self._pair_half(v0)
        G1 = self.net.G[0]
        if half is None:
            return v0 @ G1
        n = half.shape[1]
        return half @ (G1[:n] - G1[n:])

    def input_outer(self, v0: np.ndarray, d: np.ndarray) -> np.ndarray:
        """``v0.T @ d`` (``(n_0, n_1)``), the input side of crossbar 1's gradient, for ``d`` ``(batch, n_1)``."""
        half = self._pair_half(v0)
        if half is None:
            return v0.T @ d
        top = half.T @ d
        return np.concatenate([top, -top])

    def _pair_half(self, v0: np.ndarray) -> np.ndarray | None:
        """``x`` where the inputs are pair-encoded, ``v0 = [x, −x]`` (checked): the two halves of a product with
        ``v0`` are then one product of half the size. None otherwise."""
        if self.net.encoding != "pair":
            return None
        n = v0.shape[1] // 2
        x = v0[:, :n]
        return x if np.array_equal(v0[:, n:], -x) else None

    def conductance(self, l: int) -> np.ndarray:
        """Total crossbar conductance (S) at each node of layer ``l``: its input crossbar, plus ``C·A`` times its
        output crossbar for a hidden layer (the output's nudging branch not included)."""
        G = self.net.G
        return G[l - 1].sum(axis=0) + (self.C * self.A * G[l].sum(axis=1) if l < self.L else 0.0)

    def driving_point(self, l: int) -> np.ndarray:
        """Conductance (S) each node of layer ``l`` presents to its own drive in the network without its elements
        (every node linear, the output layer floating): its input crossbar plus, for a hidden layer, ``C·A·Σ_k
        G[j, k]·(1 − G[j, k]/a_k)`` over the next crossbar, where node ``k`` above, of driving-point conductance
        ``a_k`` (recursively, from the output layer's input crossbar), follows node ``j`` by ``A·G[j, k]/a_k`` of
        its change, the other inputs of node ``k`` held. Exact where each node above has one input from this layer
        (chains: a chain of one-input nodes floats with its first node, no load; fan-out); a node above that
        averages ``n`` inputs follows each by ~1/n, and the load is nearly ``conductance(l)``'s full one (two
        siblings feeding one node: within 2 % passive, 20 % at A = 4, C = 1)."""
        G = self.net.G
        a = G[self.L - 1].sum(axis=0)
        for k in range(self.L - 1, l - 1, -1):
            g = G[k]
            a = G[k - 1].sum(axis=0) + self.C * self.A * (g * (1.0 - g / np.maximum(a, 1e-300))).sum(axis=1)
        return a
