"""The layered topology (cdsolver.topology.Layered) against the circuit it describes: the KCL Jacobian measured
through ``solver.kcl`` has Layered's blocks, the co-content weights make it symmetric, and the deck's amplifier
lines carry Layered's gains."""

import numpy as np
import pytest

from cdsolver.elements import Linear
from cdsolver.network import Amplifier, random_network
from cdsolver.solver import kcl
from cdsolver.topology import Layered
from spice_bridge.netlist import body

AMPS = [None, Amplifier(4.0, 1.0), Amplifier(3.0, 0.5, invert="half")]


def _jacobian(net, v0):
    """KCL Jacobian (S) of a linear-element network, one column per node, from unit steps (KCL is affine)."""
    sizes = net.sizes[1:]
    base = [np.zeros((1, n)) for n in sizes]
    r0 = np.concatenate([r[0] for r in kcl(net, v0, base)])
    cols = []
    for l, n in enumerate(sizes):
        for j in range(n):
            s = [x.copy() for x in base]
            s[l][0, j] = 1.0
            cols.append(np.concatenate([r[0] for r in kcl(net, v0, s)]) - r0)
    return np.array(cols).T


@pytest.mark.parametrize("amp", AMPS, ids=["passive", "A4C1", "A3C0.5-inv"])
@pytest.mark.parametrize("hidden", [[5], [4, 6], [3, 5, 4]])
def test_kcl_jacobian_has_the_topologys_blocks(hidden, amp):
    net = random_network([6] + hidden + [3], "linear", seed=1, amplifier=amp)
    net.element = Linear()
    topo = Layered(net)
    v0 = np.random.default_rng(0).normal(size=(1, 6))
    J = _jacobian(net, v0)
    off = np.cumsum([0] + net.sizes[1:])
    block = lambda l, m: J[off[l - 1]:off[l], off[m - 1]:off[m]]  # noqa: E731
    for l in range(1, topo.L + 1):
        leak = net.g_nudge(0.0) if l == topo.L else 0.0
        np.testing.assert_allclose(np.diag(block(l, l)), topo.conductance(l) + leak, rtol=1e-12)
        if l >= 2:
            np.testing.assert_allclose(block(l, l - 1), -topo.forward(l).T, rtol=1e-12, atol=1e-15)
        if l < topo.L:
            np.testing.assert_allclose(block(l, l + 1), -topo.backward(l), rtol=1e-12, atol=1e-15)
    W = np.concatenate([np.full(n, w) for n, w in zip(net.sizes[1:], topo.weights)])
    H = W[:, None] * J
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-15)


def test_drives_and_deck_gains_follow_the_signs():
    net = random_network([4, 6, 6, 2], "shockley", seed=2, amplifier=Amplifier(4.0, 1.0, invert="half"))
    topo = Layered(net)
    s = np.array([1, 1, 1, -1, -1, -1.0])
    v = np.arange(6.0)[None, :]
    np.testing.assert_array_equal(topo.drive(2, v), 4.0 * s * v)
    np.testing.assert_array_equal(topo.drives(np.ones((1, 4)), [v, v, v])[2], 4.0 * s * v)
    lines = body(net)
    e = {ln.split()[0]: float(ln.split()[-1]) for ln in lines if ln.startswith("E2_")}
    f = {ln.split()[0]: float(ln.split()[-1]) for ln in lines if ln.startswith("F2_")}
    np.testing.assert_array_equal([e[f"E2_{j}"] for j in range(6)], topo.gains(2)[0])
    np.testing.assert_array_equal([f[f"F2_{j}"] for j in range(6)], topo.gains(2)[1])
    assert topo.weights == [1.0, 0.25, 0.0625]


@pytest.mark.parametrize("encoding", ["pair", "single"])
def test_input_products_equal_the_full_products(encoding):
    """``input_current`` and ``input_outer`` are ``v0 @ G_1`` and ``v0.T @ d`` for pair-encoded inputs (half the
    product, from ``x``), for inputs that only look pair-encoded in part, and for single encoding; a
    rounding of the cancelling sum ``x (G+ − G−)`` apart at most."""
    net = random_network([40, 7, 3], "shockley", seed=2, input_gain=3.0)
    net.encoding = encoding
    topo = Layered(net)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (9, 20 if encoding == "pair" else 40))
    d = rng.normal(size=(9, 7))
    v0 = net.encode(x)
    near = v0.copy()
    near[4, -1] += 1e-9  # one sample breaks the pair structure: the full products
    for v in (v0, near):
        scale = np.abs(v) @ net.G[0]  # the sum of |terms|: the rounding's scale
        assert np.all(np.abs(topo.input_current(v) - v @ net.G[0]) <= 4e-16 * 20 * scale)
        assert np.all(np.abs(topo.input_outer(v, d) - v.T @ d) <= 4e-16 * 9 * (np.abs(v).T @ np.abs(d)))
    assert (topo._pair_half(v0) is not None) == (encoding == "pair")
    assert topo._pair_half(near) is None
