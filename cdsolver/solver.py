"""Exact block coordinate descent (docs/solver.md): the steady state of a DRN for a batch of inputs.

Nodes of one layer do not interact, so a layer is updated exactly, node by node, by its element's 1-D
update; odd layers depend only on even ones and vice versa. One *sweep* updates all odd layers, then all
even layers. Writing ``x`` for the even layers, a sweep is a map ``x -> T(x)`` whose fixed point is the
steady state; plain block CD iterates it (the co-content never increases), and Anderson acceleration
(the default, ``anderson=m``) extrapolates from the last ``m`` sweeps per sample, which removes the slow
common-mode eigenvalue of deep networks (docs/solver.md). Both are exact: they stop on KCL.

Stopping test, per sample: ``max|KCL| <= tol * I_ref`` and ``max|T(x) - x| <= STEP_PER_TOL * tol * max|x|``
(``STEP_PER_TOL`` = 10, constants.py). The state tested is ``(odd(x), x)``: its odd layers solve their KCL
exactly (to rounding), so its residual is that of the even layers, computed in the sweep for free, and so is
the step ``T(x) - x`` a further sweep would make. ``I_ref`` is a lower bound of the largest crossbar-resistor current
``|G_ij (v_j - u_i)|`` (the branches through each node's largest conductance and through each sample's extreme drives
and node voltages), so the KCL test is never looser than one against the largest current; ``max_branch_current`` gives
the exact value. The step test bounds the voltage error where a small residual does not (trained amplified networks:
voltage error ~30x the KCL ratio); docs/solver.md#stopping-test.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import kernels
from .constants import ANDERSON, MAX_ANDERSON, MAX_SWEEPS, STEP_PER_TOL, TOL
from .elements import Linear, LinearPair
from .files import atomic_write
from .network import Network
from .topology import Layered
from .validation import ValidationError, check_array, check_int, check_tol

__all__ = ["solve", "fixed_point", "Solution", "NotConvergedError", "kcl", "energy", "max_branch_current",
           "load_states"]


# An accelerated step whose residual exceeds _GUARD times the sample's best is rejected, and a sample whose best
# residual has not fallen for _STALL sweeps restarts the same way (Anderson can circle without a bad step)
_GUARD = 100.0
_STALL = 20


class NotConvergedError(RuntimeError):
    """Raised by ``Solution.check()`` when some samples hit the sweep cap."""


@dataclass
class Solution:
    """Steady states and per-sample statistics of a solve.

    states: ``v1..vL`` (V), each ``(batch, n_l)``. iterations: sweeps per sample. residual: ``max|KCL|`` (A).
    i_ref: the reference current of the stopping test (A). step: ``max|Δv|`` a further sweep would make (V).
    converged: ``residual <= tol * i_ref`` and ``step <= STEP_PER_TOL * tol *`` max|v| of the even layers.
    """

    states: list[np.ndarray]
    iterations: np.ndarray
    residual: np.ndarray
    i_ref: np.ndarray
    step: np.ndarray
    converged: np.ndarray
    tol: float
    setup: object = field(default=None, repr=False, compare=False)  # the solve's _Layers, for ``solve(reuse=)``

    @property
    def result(self) -> str:
        """``"converged"`` or ``"max_sweeps_reached"`` (for at least one sample)."""
        return "converged" if self.converged.all() else "max_sweeps_reached"

    def check(self) -> "Solution":
        """Return self, or raise NotConvergedError naming the samples that did not converge."""
        if not self.converged.all():
            bad = np.flatnonzero(~self.converged)
            rel = self.residual[bad] / np.maximum(self.i_ref[bad], 1e-300)
            raise NotConvergedError(
                f"{bad.size} of {self.converged.size} samples did not converge to tol={self.tol:g} "
                f"(first: sample {bad[0]}, residual/I_ref = {rel[0]:.3g}, step {self.step[bad[0]]:.3g} V after "
                f"{self.iterations[bad[0]]} sweeps)")
        return self

    def save(self, path: str | Path) -> None:
        """Write the states file (docs/formats.md#states-files): ``v1..vL``, ``iterations``, ``residual``,
        ``converged`` (+ ``i_ref``, ``step``)."""
        arrays = {f"v{l}": v for l, v in enumerate(self.states, 1)}
        arrays.update(iterations=self.iterations, residual=self.residual, converged=self.converged,
                      i_ref=self.i_ref, step=self.step, tol=np.array(self.tol))
        with atomic_write(path) as f:
            np.savez(f, **arrays)


def load_states(path: str | Path) -> list[np.ndarray]:
    """The state arrays ``v1..vL`` of a states file."""
    with np.load(path, allow_pickle=False) as f:
        n = 0
        while f"v{n + 1}" in f.files:
            n += 1
        if n == 0:
            raise ValidationError(f"{path}: not a states file (no array 'v1')")
        return [f[f"v{l}"] for l in range(1, n + 1)]


class _Anderson:
    """Type-II Anderson mixing of ``x -> T(x)``, solved per sample (rows are independent problems).

    Keeps the last ``m`` differences of ``f = T(x) - x`` and of ``T(x)`` (a ring buffer) and, for the compiled
    step, their Gram matrix (each step computes only its new difference's row); the mixing coefficients solve the
    column-scaled, Tikhonov-regularised (``reg``) ``m x m`` least squares of each sample. The compiled step
    writes the next iterate over ``x`` and keeps ``g`` (the caller changes neither afterwards).
    """

    def __init__(self, m: int, reg: float = 1e-10):
        self.m, self.reg = m, reg
        self.k = 0  # differences stored so far
        self.f = self.g = self.dF = self.dG = self.gram = None
        self.nk = None  # the compiled kernels, or None (NumPy): chosen at the first step, for the whole solve

    def keep(self, rows: np.ndarray) -> None:
        if self.f is not None:
            self.f, self.g = self.f[rows], self.g[rows]
            self.dF, self.dG, self.gram = self.dF[rows], self.dG[rows], self.gram[rows]

    def restart(self, rows: np.ndarray) -> None:
        """Forget the history of these samples (their next step is a plain CD step)."""
        if self.f is not None:
            self.dF[rows] = self.dG[rows] = self.gram[rows] = 0.0
            self.f[rows] = self.g[rows] = np.nan

    def __call__(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.f is None:  # the first step: no differences yet, a plain CD step
            self.dF = np.zeros((len(x), self.m, x.shape[1]))
            self.dG = np.zeros_like(self.dF)
            self.gram = np.zeros((len(x), self.m, self.m))
            self.f, self.g = g - x, g
            self.nk = kernels.compiled()  # (the compiled step keeps gram, the NumPy one does not: never both)
            return g.copy()  # (a later step writes its result over x, and g is kept)
        slot = self.k % self.m
        self.k += 1
        nk = self.nk
        if nk is None:
            return self._step_numpy(x, g, slot)
        x, g = _c(x), _c(g)
        step = nk.anderson_parallel if kernels.parallel(x.size) else nk.anderson_serial
        step(x, g, self.f, self.g, self.dF, self.dG, self.gram, slot, min(self.k, self.m), self.reg)
        self.g = g
        return x

    def _step_numpy(self, x: np.ndarray, g: np.ndarray, slot: int) -> np.ndarray:
        """The step after the first (``_numba_kernels._anderson_row`` in NumPy: the reference and the fallback)."""
        f = g - x
        self.dF[:, slot] = np.nan_to_num(f - self.f, nan=0.0)
        self.dG[:, slot] = np.nan_to_num(g - self.g, nan=0.0)
        self.f, self.g = f, g
        k = min(self.k, self.m)
        DF = self.dF[:, :k]
        M = DF @ DF.transpose(0, 2, 1)
        s = np.sqrt(np.einsum("bkk->bk", M))
        s[s == 0] = 1.0
        Ms = M / (s[:, :, None] * s[:, None, :]) + self.reg * np.eye(k)
        gamma = np.linalg.solve(Ms, (DF @ f[:, :, None]) / s[:, :, None])[:, :, 0] / s
        return g - np.einsum("bk,bkn->bn", gamma, self.dG[:, :k])


class _Plain:
    """Plain block CD: ``x <- T(x)``."""

    def keep(self, rows: np.ndarray) -> None:
        pass

    def restart(self, rows: np.ndarray) -> None:
        pass

    def __call__(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g


class _Layers:
    """Per-layer constants of one solve: total conductances ``a`` (S), rails, crossbars, fixed drives.

    The part that depends only on the network (crossbar sums, folded gains, the crossbars' largest conductances)
    is taken from ``shared`` if given, else from the last solve of the same ``Network`` object, when its crossbars
    and amplifier are unchanged (compared with the copies kept); so a network solved batch after batch computes
    it once. The part that depends on the inputs too (the input drive, the input side of ``I_ref``) is taken from
    ``shared`` only (the three phases of an EP step), when biases, inputs and encoding are unchanged too. Rails and
    element are read afresh."""

    def __init__(self, net: Network, v0: np.ndarray, beta: float, targets: np.ndarray | None,
                 shared: "_Layers | None" = None):
        L = net.depth
        self.net, self.L, self.topo = net, L, Layered(net)
        self.G = net.G
        self.odd = list(range(1, L + 1, 2))
        self.even = list(range(2, L + 1, 2))
        self.v0 = v0  # (this solve's array: an earlier one with the same values may have changed since)
        net_key = net.G + [np.array([net.A, net.C])] + self.topo.sign
        in_key = net.b + [v0, np.array([net.encoding == "pair"])]  # (pair: the input drive in half the products)
        shared = shared.__dict__ if shared is not None and shared.net is net else None
        prev = shared or _recent(net)
        same_net = prev is not None and _same(prev["net_key"], net_key)
        if same_net:
            self.__dict__.update({k: prev[k] for k in _Layers._NETWORK})
        else:
            self._network_part(net, [x.copy() for x in net_key])
            _remember(net, {k: self.__dict__[k] for k in _Layers._NETWORK})
        if same_net and shared and _same(shared["in_key"], in_key):
            self.__dict__.update({k: shared[k] for k in _Layers._INPUTS})
        else:
            self._input_part(net, v0, [x.copy() for x in in_key])
        self._phase(net, beta, targets)

    _NETWORK = ("net_key", "colmax", "gmax", "gtop", "a_net", "Gf", "Gb", "GT")
    _INPUTS = ("in_key", "fixed0", "input_ext", "input_range")

    def _network_part(self, net: Network, key: list[np.ndarray]) -> None:
        """The set-up from the crossbars and amplifiers (``key``: copies of them)."""
        L, topo = self.L, self.topo
        self.net_key = key
        # columns of G as contiguous rows, for _i_ref's branches from the extreme nodes (crossbars 2..L)
        self.GT = {l: np.ascontiguousarray(net.G[l - 1].T) for l in range(2, L + 1)}
        # row of each node's largest input conductance (from GT's rows where it exists: a reduction along G's
        # columns is strided, 7 ms at 1024 x 1024)
        self.colmax = [net.G[0].argmax(axis=0)] + [self.GT[l].argmax(axis=1) for l in range(2, L + 1)]
        self.gmax = [g.max() for g in net.G]
        self.gtop = [g[top, np.arange(g.shape[1])] for g, top in zip(net.G, self.colmax)]
        self.a_net = [topo.conductance(l) for l in range(1, L + 1)]
        # the crossbars with their amplifier gains and signs folded in: the drive of layer l is
        # v_{l-1} @ Gf[l] + v_{l+1} @ Gb[l] + fixed[l] (Gb: a transposed view; BLAS reads it as fast as a copy)
        self.Gf = {l: topo.forward(l) for l in range(2, L + 1)}
        self.Gb = {l: topo.backward(l).T for l in range(1, L)}

    def _input_part(self, net: Network, v0: np.ndarray, key: list[np.ndarray]) -> None:
        """The set-up from the inputs ``v0`` (V), the biases and the first crossbar (``key``: copies of the biases
        and the inputs)."""
        self.in_key = key
        self.fixed0 = self.topo.input_current(v0) + net.b[0]
        # each sample's highest and lowest input, for I_ref's branches from them (crossbar 1, see _i_ref)
        self.input_ext = np.stack([v0.argmax(axis=1), v0.argmin(axis=1)]).astype(np.int64)
        self.input_range = (v0.max(axis=1), v0.min(axis=1))  # for _i_upper

    def _phase(self, net: Network, beta: float, targets: np.ndarray | None) -> None:
        L = self.L
        gn = net.g_nudge(beta)
        self.a = self.a_net[:-1] + [self.a_net[-1] + gn]
        for l, a in enumerate(self.a, 1):
            if np.any(a <= 0):
                j = int(np.argmax(a <= 0))
                raise ValidationError(f"layer {l} node {j}: total conductance {a[j]:.4g} S <= 0 "
                                      f"(beta={beta} gives a nudging conductance of {gn:.4g} S; use a smaller |beta|)")
        inf = np.full(net.sizes[L], np.inf)
        self.lo = net.lo + [-inf]  # output layer: linear, no rails
        self.hi = net.hi + [inf]
        self.out = _LINEAR
        if net.outputs == "paired":
            self.out = LinearPair(gn)
            ap, am = np.split(self.a[-1], 2)
            bad = ap * am <= gn * gn
            if bad.any():
                k = int(np.argmax(bad))
                raise ValidationError(f"output pair {k}: beta={beta} (nudging conductance {gn:.4g} S) makes the "
                                      f"circuit non-convex; use a smaller |beta|")
        self.kernel = [kernels.LayerKernel(self.element(l), self.a[l - 1], self.lo[l - 1], self.hi[l - 1],
                                           len(self.a[l - 1])) for l in range(1, L + 1)]
        # drive terms that do not change during the solve
        self.fixed = [self.fixed0] + [np.array(bl) for bl in net.b[1:]]
        if targets is not None and gn != 0:
            self.fixed[L - 1] = self.fixed[L - 1] + gn * net.decode_T(targets)

    def element(self, l: int):
        return self.net.element if l < self.L else self.out

    def drive(self, l: int, v: dict[int, np.ndarray], rows: np.ndarray | slice) -> np.ndarray:
        """``c`` of layer ``l`` (A) from its neighbours' voltages ``v`` (only ``rows`` of the batch)."""
        c = self._fixed(l, rows)
        for part in self._parts(l, v):
            c = c + part
        return c

    def _parts(self, l: int, v: dict[int, np.ndarray]) -> list[np.ndarray]:
        """The crossbar products of layer ``l``'s drive (A): from below ``v_{l-1} @ Gf[l]``, from above
        ``v_{l+1} @ Gb[l]``, as far as they exist."""
        return [v[j] @ g[l] for j, g in ((l - 1, self.Gf), (l + 1, self.Gb)) if l in g]

    def _fixed(self, l: int, rows: np.ndarray | slice) -> np.ndarray:
        """The drive terms of layer ``l`` that do not change (A), of ``rows``: no copy while every row is left
        (``fixed_point``'s rows are ``arange(B)`` until samples finish)."""
        fixed = self.fixed[l - 1]
        if fixed.ndim == 1 or (not isinstance(rows, slice) and len(rows) == len(fixed)):
            return fixed
        return fixed[rows]

    def update(self, l: int, v: dict[int, np.ndarray], rows, old: np.ndarray | None):
        """(new voltages of layer ``l``, max |KCL| of its previous voltages ``old`` per sample; 0 if None): the
        fused kernel sums the drive's parts."""
        parts = self._parts(l, v)
        c = parts[0] if parts else np.zeros((len(rows), len(self.a[l - 1])))  # a single crossbar
        return self.kernel[l - 1].update(c, parts[1] if len(parts) > 1 else None, self._fixed(l, rows), old)

    def residual(self, l: int, vl: np.ndarray, c: np.ndarray) -> np.ndarray:
        i = l - 1
        return self.element(l).residual(vl, self.a[i], c, self.lo[i], self.hi[i])

    # ---- the interface of ``fixed_point`` ----
    def start(self, v0: np.ndarray, init: Sequence[np.ndarray] | None) -> np.ndarray:
        """The iterate ``x``: the even layers as one ``(batch, N)`` array (zeros or ``init``); allocates the
        output states."""
        B, n = v0.shape[0], self.net.sizes
        self.cuts = np.cumsum([0] + [n[l] for l in self.even])
        x = np.zeros((B, self.cuts[-1]))
        if init is not None:
            for k, l in enumerate(self.even):
                x[:, self.cuts[k]:self.cuts[k + 1]] = init[l - 1]
        self.states = [np.empty((B, n[l])) for l in range(1, self.L + 1)]
        return x

    def sweep(self, x: np.ndarray, rows: np.ndarray):
        """One sweep from even layers ``x``: odd layers, then even ones. Returns (T(x), residual, layers). The even
        layers' update also gives the KCL residual of ``x`` and starts from it (``kernels``); the odd layers start
        afresh (starting them from the previous sweep's voltages was measured no faster)."""
        cuts = self.cuts
        v = {l: x[:, cuts[k]:cuts[k + 1]] for k, l in enumerate(self.even)}
        for l in self.odd:
            v[l] = self.update(l, v, rows, None)[0]
        gx = np.empty_like(x)
        r = np.zeros(len(rows))
        for k, l in enumerate(self.even):
            gx[:, cuts[k]:cuts[k + 1]], rl = self.update(l, v, rows, v[l])
            np.maximum(r, rl, out=r)
        return gx, r, v

    def i_upper(self, rows: np.ndarray, v: dict[int, np.ndarray], near: np.ndarray) -> np.ndarray:
        return _i_upper(self, *_subset(rows, v, near))

    def i_ref(self, rows: np.ndarray, v: dict[int, np.ndarray], near: np.ndarray) -> np.ndarray:
        return _i_ref(self, *_subset(rows, v, near))

    def store(self, idx: np.ndarray, v: dict[int, np.ndarray], done: np.ndarray) -> None:
        for l in range(1, self.L + 1):
            self.states[l - 1][idx] = v[l][done]

    def project(self, x: np.ndarray) -> None:
        cuts = self.cuts
        for k, l in enumerate(self.even):
            xl = x[:, cuts[k]:cuts[k + 1]]
            xl[...] = self.element(l).admissible(xl, self.lo[l - 1], self.hi[l - 1])


_LINEAR = Linear()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


# The network part of the last set-up of each live Network (by id, with a weak reference to tell a reused id):
# {id: (ref, parts)}
_RECENT: dict[int, tuple[weakref.ref, dict]] = {}


def _recent(net: Network) -> dict | None:
    hit = _RECENT.get(id(net))
    return hit[1] if hit is not None and hit[0]() is net else None


def _remember(net: Network, parts: dict) -> None:
    key = id(net)
    _RECENT[key] = (weakref.ref(net, lambda _ref: _RECENT.pop(key, None)), parts)


def check_states(net: Network, states, batch: int, name: str, finite: bool = True) -> list[np.ndarray]:
    """``states`` as the float64 arrays ``v1..vL`` of ``batch`` samples of ``net``, ValidationError naming ``name``
    otherwise (finite unless ``finite`` is False)."""
    try:
        k = len(states)
    except TypeError:
        k = type(states).__name__
    if k != net.depth:
        raise ValidationError(f"{name}: expected {net.depth} state arrays v1..v{net.depth}, got {k}")
    sizes = net.sizes[1:]
    return [check_array(s, f"{name} v{l}", (batch, n), finite) for l, (s, n) in enumerate(zip(states, sizes), 1)]


def _inputs(net: Network, v0) -> np.ndarray:
    """``v0`` as ``net``'s checked input voltages (V, ``(batch, n_0)``); TypeError if ``net`` is no Network."""
    if not isinstance(net, Network):
        raise TypeError(f"network must be a cdsolver.Network, got {type(net).__name__}")
    return check_array(v0, "v0 (input voltages)", (None, net.sizes[0]))


def _diagnosed(net: Network, v0, states, targets=None):
    """(v0, states, targets) of ``kcl``, ``energy`` and ``max_branch_current``, checked: shapes that broadcast
    gave numbers of another problem (states of one sample against inputs of three: three energies); NaN and inf
    states are allowed (a failed sample's)."""
    v0 = _inputs(net, v0)
    states = check_states(net, states, len(v0), "states", finite=False)
    if targets is not None:
        targets = check_array(targets, "targets", (len(v0), net.n_classes))
    return v0, states, targets


def _validate(net: Network, v0, beta, targets, init, tol, max_sweeps, anderson):
    v0 = _inputs(net, v0)
    B = v0.shape[0]
    net.g_nudge(beta)  # (a ValidationError where the nudge is undefined)
    if targets is not None:
        targets = check_array(targets, "targets", (B, net.n_classes))
    if init is not None:
        init = check_states(net, init, B, "init")
    tol = check_tol(tol)
    max_sweeps = check_int(max_sweeps, "max_sweeps", 1)
    anderson = check_int(anderson, "anderson (history depth)", 0, MAX_ANDERSON)
    return v0, targets, init, tol, max_sweeps, anderson


def solve(
    network: Network,
    v0: np.ndarray,
    *,
    beta: float = 0.0,
    targets: np.ndarray | None = None,
    init: Sequence[np.ndarray] | None = None,
    tol: float = TOL,
    max_sweeps: int = MAX_SWEEPS,
    anderson: int = ANDERSON,
    reuse: Solution | None = None,
) -> Solution:
    """Steady states of ``network`` for input voltages ``v0`` (V, ``(batch, n_0)``; see ``Network.encode``).

    beta: nudging strength (S), 0 = free phase; targets: output target voltages (V, ``(batch, n_classes)``,
    paired outputs: targets of ``v+ − v−``; 0 V if None). init: warm start ``v1..vL``. tol: relative tolerance of
    the stopping test (KCL and step: the module docstring). max_sweeps: cap per sample; samples that hit it are
    returned with ``converged=False`` (call ``.check()`` to raise). anderson: history depth of Anderson
    acceleration; 0 = plain block CD (co-content non-increasing at every half sweep). reuse: an earlier solution
    of the same network and inputs, whose set-up (crossbar sums, input drive, ...) is reused if nothing has
    changed since (checked). Without it, the set-up's network part is still taken from the last solve of the
    same ``Network`` object if its crossbars and amplifier are unchanged (checked; it is kept while the network
    lives: docs/solver.md, "Set-up").
    """
    v0, targets, init, tol, max_sweeps, anderson = _validate(network, v0, beta, targets, init, tol, max_sweeps,
                                                             anderson)
    P = _Layers(network, v0, beta, targets, None if reuse is None else reuse.setup)
    x = P.start(v0, init)
    stats = fixed_point(P, x, tol=tol, max_sweeps=max_sweeps, anderson=anderson, step_tol=STEP_PER_TOL * tol)
    return Solution(P.states, *stats, float(tol), setup=P)


def fixed_point(P, x: np.ndarray, *, tol: float, max_sweeps: int, anderson: int, step_tol: float | None = None):
    """The sweep loop shared by every topology: iterate ``x -> T(x)`` per sample (rows of ``x``), plain or
    Anderson-accelerated with the safeguard, until ``max|KCL| <= tol * I_ref`` (and, given ``step_tol``,
    ``max|T(x) - x| <= step_tol * max|x|``) or ``max_sweeps``; a sample whose start has a NaN residual and whose
    first sweep is not finite stops after it, not converged.

    ``P`` supplies ``sweep(x, rows) -> (T(x), max|KCL| per row, state)``, ``i_upper(rows, state, near)`` (an upper
    bound of the reference current of rows ``near``, A), ``i_ref(rows, state, near)`` (that current, A),
    ``store(idx, state, done)`` (writes the finished rows' states) and ``project(x)`` (admissible voltages, in
    place). Returns (iterations, residual, i_ref, step, converged) per sample.
    """
    B = x.shape[0]
    iters = np.zeros(B, dtype=np.int64)
    res, iref, step = np.zeros(B), np.zeros(B), np.zeros(B)
    conv = np.zeros(B, dtype=bool)
    acc = _Anderson(int(anderson)) if anderson else _Plain()
    rows = np.arange(B)  # batch rows still being solved
    # safeguard of the accelerated steps: each sample's best residual and the CD step from that state
    r_best, g_best = np.full(B, np.inf), np.full_like(x, np.nan)  # (NaN: no best state yet)
    stall = np.zeros(B, dtype=np.int64)  # sweeps since the best residual last fell
    with np.errstate(over="ignore", invalid="ignore"):  # a wild extrapolation is caught by the safeguard
        for sweep in range(1, int(max_sweeps) + 1):
            gx, r, state = P.sweep(x, rows)
            stall = np.where(r < r_best, 0, stall + 1)
            rejected = ~(r <= _GUARD * r_best) | (stall >= _STALL)  # NaN included
            # the step a further sweep would make (V), max|x| (V); the best residual and its CD step, updated
            dx, xmax = _step_and_best(x, gx, r, r_best, g_best)
            small = np.ones(len(rows), bool) if step_tol is None else dx <= step_tol * xmax
            # I_ref at the cap, and where the step test passes and the residual is within reach of the
            # tolerance: an upper bound, computed only where the step test passes, says so
            cap = sweep == int(max_sweeps)
            near = np.full(len(rows), cap)
            if not cap and small.any():
                near[small] = r[small] <= tol * P.i_upper(rows, state, small)
            i_ref = np.zeros(len(rows))
            if near.any():
                i_ref[near] = P.i_ref(rows, state, near)
            ok = small & (r <= tol * i_ref)
            # a NaN residual at the start whose sweep is not finite either: non-finite drives, e.g. currents beyond
            # float64, that no sweep can mend (it ran to max_sweeps). (A start's residual can be NaN where the sweep
            # is finite: two junctions forward-biased far beyond 18 V at a general circuit's start, +inf and -inf.)
            done = ok | cap | (sweep == 1) & np.isnan(r) & ~np.isfinite(gx).all(axis=1)
            if done.any():
                idx = rows[done]
                P.store(idx, state, done)
                iters[idx], res[idx], iref[idx] = sweep, r[done], i_ref[done]
                step[idx], conv[idx] = dx[done], ok[done]
                keep = ~done
                if not keep.any():
                    break
                rows, x, gx, r_best, g_best, rejected, stall = (q[keep] for q in (rows, x, gx, r_best, g_best,
                                                                                 rejected, stall))
                acc.keep(keep)
            x = acc(x, gx)
            P.project(x)  # an extrapolation may leave an ideal diode's rails
            if anderson and rejected.any():  # restart from a plain CD step out of the best state (if none yet,
                # the residual never finite: out of this sweep's)
                x[rejected] = np.where(np.isfinite(r_best)[rejected, None], g_best[rejected], gx[rejected])
                r_best[rejected], stall[rejected] = np.inf, 0
                acc.restart(rejected)
    return iters, res, iref, step, conv


def _subset(rows: np.ndarray, v: dict[int, np.ndarray], near: np.ndarray):
    """(``rows[near]``, the voltages ``v`` of those rows): no copies when every row is near."""
    if near.all():
        return rows, v
    return rows[near], {l: vl[near] for l, vl in v.items()}


def _step_and_best(x: np.ndarray, gx: np.ndarray, r: np.ndarray, r_best: np.ndarray, g_best: np.ndarray):
    """(``max|gx - x|``, ``max|x|``) per row (V; NaN if a row has a NaN), and, in place, ``r_best``/``g_best`` take
    ``r``/``gx`` in the rows where ``r < r_best``: one compiled pass over the rows where the numba kernels are in
    use."""
    nk = kernels.compiled()
    if nk is None:
        better = r < r_best
        r_best[better], g_best[better] = r[better], gx[better]
        return np.abs(gx - x).max(axis=1, initial=0.0), np.abs(x).max(axis=1, initial=0.0)
    dx, xmax = np.empty(len(x)), np.empty(len(x))
    step = nk.step_and_best_parallel if kernels.parallel(x.size) else nk.step_and_best_serial
    step(_c(x), _c(gx), r, r_best, g_best, dx, xmax)
    return dx, xmax


def _i_upper(P: _Layers, rows: np.ndarray, v: dict[int, np.ndarray]) -> np.ndarray:
    """``_i_upper_numpy``'s bound (A) of samples ``rows`` (the same numbers), in one compiled pass per crossbar where
    the numba kernels are in use."""
    nk = kernels.compiled()
    if nk is None:
        return _i_upper_numpy(P, rows, v)
    v = _states(P, rows, v)
    best, umax, umin = np.zeros(len(rows)), P.input_range[0][rows], P.input_range[1][rows]
    for l in range(1, P.L + 1):
        below = np.zeros((0, 0)) if l == 1 else v[l - 1]
        gain = np.zeros(0) if l == 1 else _c(P.topo.gains(l - 1)[0])  # u_l = A·s_{l−1}·v_{l−1}
        nk.i_upper_layer(v[l], below, gain, umax, umin, P.gmax[l - 1], best)
    return best


def _i_upper_numpy(P: _Layers, rows: np.ndarray, v: dict[int, np.ndarray]) -> np.ndarray:
    """An upper bound (A) of the largest crossbar current of samples ``rows``: max G times the widest voltage
    span."""
    best = np.zeros(len(rows))
    for l in range(1, P.L + 1):
        if l == 1:
            umax, umin = P.input_range[0][rows], P.input_range[1][rows]
        else:
            u = P.topo.drive(l, v[l - 1])
            umax, umin = u.max(axis=1), u.min(axis=1)
        span = np.maximum(umax, v[l].max(axis=1)) - np.minimum(umin, v[l].min(axis=1))
        best = np.maximum(best, P.gmax[l - 1] * span)
    return best


def _i_ref(P: _Layers, rows: np.ndarray, v: dict[int, np.ndarray]) -> np.ndarray:
    """``_i_ref_numpy``'s bound (A) of samples ``rows`` (the same numbers), in one compiled pass per crossbar where
    the numba kernels are in use."""
    nk = kernels.compiled()
    if nk is None:
        return _i_ref_numpy(P, rows, v)
    v = _states(P, rows, v)
    best, rows, none = np.zeros(len(rows)), rows.astype(np.int64), np.zeros((2, 0), np.int64)
    step = nk.i_ref_parallel if kernels.parallel(len(rows) * sum(P.net.sizes[1:])) else nk.i_ref_serial
    step(v[1], _c(P.v0), np.zeros(0), rows, P.input_ext, _c(P.G[0]), np.zeros((0, 0)), P.colmax[0], P.gtop[0], best)
    for l in range(2, P.L + 1):
        gain = P.topo.gains(l - 1)[0]  # u_l = A·s_{l−1}·v_{l−1}
        step(v[l], v[l - 1], _c(gain), rows, none, _c(P.G[l - 1]), P.GT[l], P.colmax[l - 1], P.gtop[l - 1], best)
    return best


def _states(P: _Layers, rows: np.ndarray, v: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The voltages ``v`` of samples ``rows`` as the compiled bounds take them (C-contiguous float64), their
    shapes checked: compiled code does not check its indices."""
    for l in range(1, P.L + 1):
        if v[l].shape != (len(rows), P.net.sizes[l]):
            raise ValueError(f"layer {l}: states of shape {v[l].shape}, expected {(len(rows), P.net.sizes[l])}")
    return {l: _c(x) for l, x in v.items()}


def _c(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous float64 array (the one layout the compiled bounds and Anderson step take)."""
    return np.ascontiguousarray(x, dtype=np.float64)


def _i_ref_numpy(P: _Layers, rows: np.ndarray, v: dict[int, np.ndarray]) -> np.ndarray:
    """A lower bound (A) of the largest crossbar current ``max |G_ij (v_j - u_i)|`` of samples ``rows``: the
    branches through each node's largest conductance, and those from each sample's highest/lowest drive and
    node. Crossbar 1's drives are the inputs: their extremes are found once per set-up (``_Layers.input_ext``),
    and the branches from its extreme nodes are left out (a pass over every input per sample; they raised the bound
    by <= 1 % in 1 sample of 128 on Fashion-MNIST 1568-100-20, and never on 128-1024-1024-10)."""
    best = np.zeros(len(rows))
    for l in range(1, P.L + 1):
        vl = v[l]
        if l == 1:
            u_top = P.v0[rows[:, None], P.colmax[0]]
            ext = [(P.v0[rows, i[rows], None], P.G[0][i[rows]]) for i in P.input_ext]
            nodes = ()
        else:
            u, G = P.topo.drive(l, v[l - 1]), P.G[l - 1]
            u_top = u[:, P.colmax[l - 1]]
            ext = [(np.take_along_axis(u, i[:, None], axis=1), G[i]) for i in (u.argmax(axis=1), u.argmin(axis=1))]
            nodes = (vl.argmax(axis=1), vl.argmin(axis=1))
        best = np.maximum(best, (P.gtop[l - 1] * np.abs(vl - u_top)).max(axis=1))
        for ui, gi in ext:
            best = np.maximum(best, (gi * np.abs(vl - ui)).max(axis=1))
        for j in nodes:
            vj = np.take_along_axis(vl, j[:, None], axis=1)
            best = np.maximum(best, (P.GT[l][j] * np.abs(vj - u)).max(axis=1))
    return best


def _as_dict(states: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
    return {l: np.asarray(s, dtype=np.float64) for l, s in enumerate(states, 1)}


def kcl(network: Network, v0: np.ndarray, states: Sequence[np.ndarray], *, beta: float = 0.0,
        targets: np.ndarray | None = None) -> list[np.ndarray]:
    """KCL residual (A) of every hidden and output node, per layer ``(batch, n_l)``: the current leaving the
    node (ideal diodes: the natural residual, see ``elements.Ideal``)."""
    v0, states, targets = _diagnosed(network, v0, states, targets)
    P = _Layers(network, v0, beta, targets)
    v = _as_dict(states)
    rows = slice(None)
    return [P.residual(l, v[l], P.drive(l, v, rows)) for l in range(1, P.L + 1)]


def max_branch_current(network: Network, v0: np.ndarray, states: Sequence[np.ndarray]) -> np.ndarray:
    """Exact largest crossbar-resistor current ``max_ij |G_ij (v_j - u_i)|`` (A) per sample (O(batch·n·m))."""
    v0, states, _ = _diagnosed(network, v0, states)
    best = np.zeros(len(v0))
    for u, vl, G in zip(Layered(network).drives(v0, states), states, network.G):
        for b in range(len(v0)):
            best[b] = np.maximum(best[b], np.max(G * np.abs(vl[b][None, :] - u[b][:, None])))  # (NaN stays NaN)
    return best


def energy(network: Network, v0: np.ndarray, states: Sequence[np.ndarray], *, beta: float = 0.0,
           targets: np.ndarray | None = None) -> np.ndarray:
    """Co-content ``E(v)`` (W) per sample (docs/solver.md#model): ``Σ_l (C/A)^(l-1) E_l`` with
    ``E_l = ½ Σ G (u - v)² + Σ P(v) - b·v`` and ``½ g_nudge Σ (decode(v_L) - y)²`` at the output (weighted
    like layer L).
    CD minimises it exactly per layer; its gradient is the KCL residual scaled by the layer weight."""
    v0, states, targets = _diagnosed(network, v0, states, targets)
    P = _Layers(network, v0, beta, targets)  # checks β and gives each layer's element and rails
    y = 0.0 if targets is None else targets
    E = np.zeros(len(v0))
    for l, (u, vl, G) in enumerate(zip(P.topo.drives(v0, states), states, network.G), 1):
        w = P.topo.weights[l - 1]
        quad = (u * u) @ G.sum(axis=1) + (vl * vl) @ G.sum(axis=0) - 2 * np.einsum("bj,bj->b", u @ G, vl)
        El = 0.5 * quad - vl @ network.b[l - 1]
        if l < P.L:
            El = El + P.element(l).potential(vl, P.lo[l - 1], P.hi[l - 1]).sum(axis=1)
        else:
            El = El + 0.5 * network.g_nudge(beta) * ((network.decode(vl) - y) ** 2).sum(axis=1)
        E += w * El
    return E
