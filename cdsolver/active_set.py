"""Ideal diodes between two unknown nodes: a primal active-set method whose sub-problems are solved by CD.

Seed 001 states a resistive network with ideal diodes as a quadratic program over linear inequality constraints
``v(anode) - v(cathode) <= 0`` (with junction diodes: a convex program of the same form). An ideal diode with one
terminal at a fixed potential is a bound of one coordinate, which the node update clips exactly (``graph``). One
between two unknown coordinates couples them, and node-wise CD stalls on it: with both nodes pressed together
neither can move alone. Such circuits are solved here, exactly:

- **Constraints.** Every ideal diode whose two terminals are not in one coordinate (the bounds included: the fixed
  potentials are one vertex ``F``) is a constraint ``x[ca] - x[ck] <= c`` on the coordinates of the circuit with
  its voltage sources and shorts merged (``Graph``), ``c`` from the offsets.
- **Working set ``W``.** A diode in ``W`` is a 0 V short: the sub-problem is the circuit without ideal diodes, plus
  ``W`` as shorts (``Graph`` merges them into supernodes, a short to ``F`` fixes the node), solved by CD from the
  current point. ``W`` is always a forest over the coordinates and ``F``: a diode joins ``W`` only when it blocks a
  step, and a diode with both ends in one supernode has a constant ``v(anode) - v(cathode)`` and never blocks.
  Hence the current of each diode in ``W`` is unique: the KCL current of the subtree it cuts off (the side away from
  ``F`` or from the tree's root), ``_currents``.
- **Rounds (primal active set, monotone).** Start from a feasible point (``feasible``: the greatest solution below
  the unconstrained optimum, by Bellman–Ford on the difference constraints) and ``W = {}``. Each round solves the
  sub-problem (``y``). If ``y`` violates a diode outside ``W``, step from the current point ``x`` towards ``y`` up to
  the first diode it meets (the co-content, convex, decreases along the step) and add that diode to ``W``. Else
  ``x = y``: if every diode in ``W`` carries a current ``>= -kkt*tol*I_ref`` the KKT conditions hold and ``y`` is the
  answer; otherwise the diode with the most negative current leaves ``W`` (its constraint then holds strictly at the
  next sub-problem's solution). Each iterate is feasible and the co-content never increases, so no working set
  repeats after a strict decrease; degenerate rounds (step 0) are bounded by ``max_rounds``, after which the
  solution is returned as not converged (failure as data, never a wrong answer marked converged).
- **Errors.** Constraints no potentials satisfy (a loop of ideal diodes and sources forward-biased in total: an
  unbounded current) are a ``CircuitError`` naming a node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components

from .circuit import CircuitError
from .graph import Graph
from .solver import Solution

__all__ = ["ActiveSet", "feasible", "solve_active"]

_KKT = 100.0  # slack of the KKT tests in units of tol: gaps (V, of the largest potential) and currents (of I_ref)
_ROUNDS_PER_DIODE = 4  # rounds allowed per constraint, plus _ROUNDS_MIN
_ROUNDS_MIN = 20


@dataclass
class ActiveSet:
    """How an active-set solve ended: ``rounds`` (sub-problems solved), ``dropped`` (rounds that took a diode out of
    the working set), ``active`` (names of the ideal diodes shorted at the answer), ``currents`` (A, their forward
    currents, same order), ``kkt`` (True if the KKT conditions held within the slack)."""

    rounds: int
    dropped: int
    active: list[str]
    currents: np.ndarray
    kkt: bool


def solve_active(g: Graph, init: np.ndarray | None, run: Callable[[Graph, np.ndarray | None], Solution]) -> Solution:
    """The operating point of ``g.circuit`` with its ideal diodes as constraints (module docstring). ``run(graph,
    init)`` is CD on a sub-problem (``graph._solve`` with the caller's tolerances). Returns the last sub-problem's
    ``Solution`` with ``iterations`` summed over the rounds, ``converged`` only if the KKT conditions hold, and the
    ``ActiveSet`` record in ``setup``."""
    ckt = g.circuit
    idx, ia, ik, ca, ck = g.constraints
    names = [ckt.ideal[i][0] for i in idx]
    m = ia.size

    def sub(active: list[int]) -> Graph:
        return Graph(replace(ckt, ideal=[], shorts=ckt.shorts + [(names[j], int(ia[j]), int(ik[j])) for j in active]))

    def gaps(v):
        ve = np.append(v, 0.0)
        return ve[ik] - ve[ia]  # >= 0 when the diode holds

    sol = run(sub([]), init)
    sweeps = int(sol.iterations[0])
    y = sol.states[0][0]
    tol = sol.tol
    x = feasible(g, y, _KKT * tol * _vmax(y, g))
    W: list[int] = []
    forest = _Forest(g.n)
    lam = np.zeros(0)
    dropped = 0
    for rounds in range(1, _ROUNDS_PER_DIODE * m + _ROUNDS_MIN + 1):
        if rounds > 1:
            sol = run(sub(W), x)
            sweeps += int(sol.iterations[0])
            y = sol.states[0][0]
        if not sol.converged[0]:
            break
        tv = _KKT * tol * _vmax(y, g)
        gx, gy = gaps(x), gaps(y)
        out = np.zeros(m, dtype=bool)
        out[W] = True
        hit = np.flatnonzero(~out & (gy < -tv))
        if hit.size:  # step towards y up to the first diode met, which joins W
            gxh = np.maximum(gx[hit], 0.0)
            t = gxh / (gxh - gy[hit])
            x = x + t.min() * (y - x)
            for j in hit[t == t.min()]:
                if forest.join(ca[j], ck[j]):
                    W.append(int(j))
            continue
        x = y
        lam = _currents(g, y, ca[W], ck[W])
        if not W or lam.min() >= -_KKT * tol * sol.i_ref[0]:
            return _done(sol, sweeps, ActiveSet(rounds, dropped, [names[j] for j in W], lam, True))
        W.pop(int(np.argmin(lam)))
        dropped += 1
        forest = _Forest(g.n)
        for j in W:
            forest.join(ca[j], ck[j])
    sol.converged[0] = False
    return _done(sol, sweeps, ActiveSet(rounds, dropped, [names[j] for j in W], lam, False))


def _done(sol: Solution, sweeps: int, record: ActiveSet) -> Solution:
    sol.iterations[0] = sweeps
    sol.converged[0] &= record.kkt
    sol.setup = record
    return sol


def _vmax(v: np.ndarray, g: Graph) -> float:
    """The potential scale (V) of the gap tests: the largest |potential| or |offset|, at least 1e-300 V."""
    return max(float(np.abs(v).max(initial=0.0)), float(np.abs(g.off).max(initial=0.0)), 1e-300)


class _Forest:
    """Union–find over the coordinates and the fixed vertex ``n``: is a new edge a tree edge?"""

    def __init__(self, n: int):
        self.parent = np.arange(n + 1)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            i = self.parent[i]
        return int(i)

    def join(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[ra] = rb
        return True


def _currents(g: Graph, v: np.ndarray, ca: np.ndarray, ck: np.ndarray) -> np.ndarray:
    """Forward currents (A) of the shorted diodes ``ca -> ck`` (a forest over coordinates and the fixed vertex
    ``g.n``) at potentials ``v``: each carries the KCL current of the subtree it cuts off, the side away from the
    fixed vertex (or from its tree's smallest coordinate)."""
    n = g.n
    if not ca.size:
        return np.zeros(0)
    r = np.append(g.kcl(g.coordinates(v), bounds=False), 0.0)  # current leaving each coordinate, its diodes left out
    A = sp.coo_matrix((np.ones(ca.size), (ca, ck)), shape=(n + 1, n + 1)).tocsr()
    _, lab = connected_components(A, directed=False)
    ends = np.unique(np.concatenate([ca, ck]))
    pred = np.full(n + 1, -9999)
    below = r.copy()  # KCL current of each vertex's subtree
    for comp in np.unique(lab[ends]):
        members = ends[lab[ends] == comp]
        root = n if lab[n] == comp else int(members.min())
        order, p = breadth_first_order(A, root, directed=False, return_predecessors=True)
        pred[order] = p[order]
        for c in order[:0:-1]:  # leaves first; the root is order[0]
            below[p[c]] += below[c]
    anode_below = pred[ca] == ck
    return np.where(anode_below, -below[ca], below[ck])


def feasible(g: Graph, v: np.ndarray, tv: float) -> np.ndarray:
    """Potentials (V) that satisfy every ideal diode of ``g`` (within ``tv`` V), close to ``v``: the greatest
    solution below ``clip(v, L, U)`` of the difference constraints ``x[ca] <= x[ck] + c`` (``L``, ``U``: the least
    and greatest potentials the diodes and the fixed vertex allow), by Bellman–Ford. Raises ``CircuitError`` when no
    potentials satisfy them (a loop of ideal diodes and sources with unbounded current)."""
    n = g.n
    _, ia, ik, ca, ck = g.constraints
    c = g.off[ik] - g.off[ia]
    lo = np.append(np.full(n, -np.inf), 0.0)
    hi = np.append(np.full(n, np.inf), 0.0)
    lo = _relax(g, lo, ca, ck, -c, tv, np.maximum)  # x[ck] >= x[ca] - c
    hi = _relax(g, hi, ck, ca, c, tv, np.minimum)  # x[ca] <= x[ck] + c
    bad = np.flatnonzero(lo > hi + tv)
    if bad.size:
        raise CircuitError(f"ideal diodes hold node {g.node_of(bad[0])} above {lo[bad[0]]:.6g} V and below "
                           f"{hi[bad[0]]:.6g} V: a loop of ideal diodes and sources with unbounded current")
    x = np.clip(np.append(g.coordinates(v), 0.0), lo, hi)
    x = _relax(g, x, ck, ca, c, tv, np.minimum)
    return g.voltages(x[:n])


def _relax(g: Graph, x: np.ndarray, src: np.ndarray, dst: np.ndarray, w: np.ndarray, tv: float, pick) -> np.ndarray:
    """Bellman–Ford from ``x``: ``x[dst] = pick(x[dst], x[src] + w)`` (``np.maximum``: lower limits; ``np.minimum``:
    upper) until no value moves by more than ``tv``. A value still moving after ``n + 2`` rounds, or a move of the
    fixed vertex ``x[n]``, means a loop of ideal diodes and sources forward-biased in total: ``CircuitError``."""
    n = g.n
    x = x.copy()
    with np.errstate(invalid="ignore"):
        for _ in range(n + 2):
            new = x.copy()
            pick.at(new, dst, x[src] + w)
            moved = np.abs(new - x) > tv  # inf - inf: nan, not moved
            if moved[n]:  # the diodes would move a fixed potential
                break
            x = new
            if not moved.any():
                return x
    bad = int(np.flatnonzero(moved[:n])[0]) if moved[:n].any() else None
    where = "a potential fixed by a source" if bad is None else f"node {g.node_of(bad)}"
    raise CircuitError(f"no potentials satisfy every ideal diode ({where} on a loop of ideal diodes and sources "
                       f"forward-biased in total): a loop with unbounded current")
