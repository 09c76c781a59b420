"""Exact coordinate descent on a general resistor–diode–source network (``cdsolver.circuit.Circuit``).

Unknowns: one potential per *coordinate*. Voltage sources and shorts tie nodes together: nodes joined to ground
through them are fixed; every other group (a single node, or a supernode of nodes joined by floating sources)
is one coordinate ``x`` with each member at ``x + offset``. The KCL of a coordinate (summed over its members) is
``a*x - c + Σ s*J(s*(x - w)) = 0``: ``a`` (S) the conductances leaving it (resistors, diode ``RS`` and gmin),
``c`` (A) the drive from its neighbours and sources, ``J`` each attached junction's current without gmin
(``circuit.diode_law``), ``s = ±1`` (anode / cathode side) and ``w`` (V) set by the far terminal. It is
strictly increasing in ``x``: the 1-D update is unique.

Coordinates are coloured so that no element joins two of one colour (2 colours when the graph is bipartite,
else Jones–Plassmann greedy colouring); a colour is then one exact vectorised block update (sparse rows of the
conductance matrix; nodes without a diode: ``x = c/a``; with diodes: safeguarded Newton inside the bracket
``[min(c/a, w), max(c/a, w)]``, bisection when a step leaves it, to rounding). One sweep updates every colour
in turn (Gauss–Seidel); ``solver.fixed_point`` accelerates it (Anderson + safeguard) and stops on
``max|KCL| <= tol * I_ref``, ``I_ref`` the largest current of a branch an unknown sets (``Graph.i_ref``).
Ideal diodes with one terminal fixed are bounds (a clip in the node update); between two unknown nodes they are
constraints of ``active_set`` (supernodes of the conducting ones, each solved here).
"""

from __future__ import annotations

from functools import partial
from operator import itemgetter

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.special import wrightomega

from .circuit import Circuit, CircuitError, diode_law
from .constants import ANDERSON, CIRCUIT_COARSE_AFTER, CIRCUIT_MAX_SWEEPS, CIRCUIT_TOL, MAX_ANDERSON, STEP_PER_TOL
from .solver import Solution, fixed_point
from .validation import check_int, check_tol

__all__ = ["Graph", "solve_circuit", "colouring"]

_EPS = np.finfo(float).eps
_NEWTON_CAP = 80  # safeguarded Newton steps per node update (bisection halves the bracket at worst)
_LNZ_CUTOFF = -12.0  # a junction with ln z below this carries < 6e-6 of its node's current: no closed-form start
_COARSE_MIN = 16  # aggregation rounds stop at this many aggregates
_COARSE_STALL = 2000  # no two-level correction when the coarsest aggregation level keeps more aggregates
_LU_BUDGET = 4.0  # the coarse LU factors may hold this many times the nonzeros of the fine graph (W and diagonal)
_REFRESH = 0.05  # refactorise the coarse matrix when a junction conductance moved by this part of its node's total
_FORWARD_MAX = 600.0  # a coarse correction that biases a junction (no RS) beyond this many vte is not taken


class _UnionFind:
    """Nodes tied by voltage sources / shorts, with potential offsets ``v(node) - v(root)`` (V)."""

    def __init__(self):
        self.parent: dict[int, int] = {}
        self.off: dict[int, float] = {}

    def find(self, i: int) -> tuple[int, float]:
        off = 0.0
        while i in self.parent:
            off += self.off[i]
            i = self.parent[i]
        return i, off

    def union(self, p: int, m: int, volts: float, name: str, nodes: list[str]) -> None:
        """Tie ``v(p) = v(m) + volts``; a loop of sources/shorts is an error naming ``name``."""
        rp, op = self.find(p)
        rm, om = self.find(m)
        if rp == rm:
            raise CircuitError(f"{name} closes a loop of voltage sources/shorts (through node "
                               f"{_name(nodes, p)}): ngspice's matrix would be singular")
        if rp == -1:  # keep ground a root
            rp, rm, op, om, volts = rm, rp, om, op, -volts
        # v(rp) = v(p) - op = v(m) + volts - op = v(rm) + om + volts - op
        self.parent[rp], self.off[rp] = rm, om + volts - op


def _name(nodes: list[str], i: int) -> str:
    return "0" if i < 0 else nodes[i]


class Graph:
    """The topology of a circuit for CD: coordinates, sparse conductances, junction terminals, colours.

    n: coordinates; ``coord[k]``/``off[k]``: node ``k``'s coordinate (``n`` = fixed) and offset (V; the node's
    potential if fixed). a (S), b (A): total conductance and constant drive per coordinate; W: off-diagonal
    conductances (csr, S); terminals: arrays ``own, other, s, Is, vte, RS, d`` with ``w = x[other] + d``.
    """

    def __init__(self, circuit: Circuit):
        self.circuit = ckt = circuit
        N = len(ckt.nodes)
        uf = _UnionFind()
        for name, p, m, volts in ckt.vsources:
            uf.union(p, m, volts, name, ckt.nodes)
        for name, p, m in ckt.shorts:
            uf.union(p, m, 0.0, name, ckt.nodes)
        root = np.arange(N)
        off = np.zeros(N)
        for k in {t for e in ckt.vsources + ckt.shorts for t in e[1:3] if t >= 0}:
            root[k], off[k] = uf.find(k)
        # diodes with RS: the junction in series with RS is one branch from the outer anode (no internal node)
        an, ca, Is, vte = ckt.diode_table()
        names = [d[0] for d in ckt.diodes]
        rs = np.array([ckt.series[m][1] if m in ckt.series else 0.0 for m in names])
        outer = np.array([ckt.node(ckt.series[m][0]) if m in ckt.series else a for m, a in zip(names, an)],
                         dtype=np.int64)
        inner = an[rs > 0]
        self._series = (inner, outer[rs > 0], ca[rs > 0], Is[rs > 0], vte[rs > 0], rs[rs > 0])
        fixed = root < 0  # ground stays a root: off is then the node's potential
        fixed[inner] = True  # set by voltages() from the branch current
        roots = np.unique(root[~fixed])
        self.n = n = roots.size
        coord = np.full(N, n)
        coord[~fixed] = np.searchsorted(roots, root[~fixed])
        self.coord, self.off = np.append(coord, n), np.append(off, 0.0)  # index -1 (ground) -> fixed, 0 V
        # linear branches: resistors (RS ones left out), then gmin across every junction without RS
        R, ser = ckt.resistors, ckt.series
        ra, rb, rg = (np.fromiter(map(itemgetter(k), R), t, len(R)) for k, t in ((1, np.int64), (2, np.int64),
                                                                               (3, np.float64)))
        plain = np.fromiter((e[0] not in ser for e in R), bool, len(R)) if ser else np.ones(len(R), dtype=bool)
        sets = plain & (self.coord[ra] != self.coord[rb])  # resistors whose current an unknown sets (i_ref)
        self._r = (ra[sets], rb[sets], rg[sets])
        lin = rs == 0
        bp = np.concatenate([ra[plain], an[lin]])
        bq = np.concatenate([rb[plain], ca[lin]])
        bg = np.concatenate([rg[plain], np.full(lin.sum(), ckt.gmin)])
        cp, cq = self.coord[bp], self.coord[bq]
        op, oq = self.off[bp], self.off[bq]
        keep = (cp != cq) & (bg > 0)
        cp, cq, op, oq, bg = cp[keep], cq[keep], op[keep], oq[keep], bg[keep]
        def at(i, x):  # sums of x at coordinates i (float64 also without branches: numpy's bincount of none is int)
            return np.bincount(i, x, n + 1).astype(np.float64)

        self.a = at(cp, bg)[:n] + at(cq, bg)[:n]
        tp, tq = cq == n, cp == n  # branches to a fixed potential
        self.a_fixed = at(cp[tp], bg[tp])[:n] + at(cq[tq], bg[tq])[:n]
        b = at(cp, bg * (oq - op)) + at(cq, bg * (op - oq))
        for _, p, m, amps in ckt.isources:  # leaves p, enters m
            b[self.coord[p]] -= amps
            b[self.coord[m]] += amps
        self.b = b[:n]
        both = (cp < n) & (cq < n)
        W = sp.coo_matrix((bg[both], (cp[both], cq[both])), shape=(n, n))
        self.W = (W + W.T).tocsr()
        # junction terminals: own coordinate, far coordinate, side s, law (Is, vte, RS), w offset d
        cA, cK = self.coord[outer], self.coord[ca]
        jk = cA != cK
        self._d = (outer[jk], ca[jk], Is[jk], vte[jk], rs[jk])
        iv = np.array([e[1:] for e in ckt.isources]).reshape(-1, 3)
        ip, im = iv[:, 0].astype(np.int64), iv[:, 1].astype(np.int64)
        self._i = iv[:, 2][self.coord[ip] != self.coord[im]]
        own = np.concatenate([cA[jk], cK[jk]])
        other = np.concatenate([cK[jk], cA[jk]])
        s = np.concatenate([np.ones(jk.sum()), -np.ones(jk.sum())])
        d = np.concatenate([self.off[ca][jk] - self.off[outer][jk], self.off[outer][jk] - self.off[ca][jk]])
        law = [np.concatenate([q[jk]] * 2) for q in (Is, vte, rs)]
        t = own < n
        self.terminals = tuple(q[t] for q in (own, other, s, *law, d))
        self._check_paths(cA[jk], cK[jk], cp, cq)
        self.lo, self.hi = self._bounds()
        self._check_conductance()
        ia, ik = ckt.ideal_table()
        ca_, ck_ = self.coord[ia], self.coord[ik]
        moves = np.flatnonzero(ca_ != ck_)  # the ideal diodes whose v(anode) - v(cathode) an unknown sets
        self.constraints = (moves, ia[moves], ik[moves], ca_[moves], ck_[moves])  # index in circuit.ideal, nodes,
        # coordinates (n: fixed)
        self.coupled = np.flatnonzero((ca_ < n) & (ck_ < n) & (ca_ != ck_))  # both terminals unknown: active_set
        self.boxed = np.flatnonzero(np.isfinite(self.lo) | np.isfinite(self.hi))
        self.colours = colouring(self._adjacency(cA[jk], cK[jk]))
        self.blocks = [_Block(self, S) for S in self.colours]

    def _adjacency(self, cA: np.ndarray, cK: np.ndarray) -> sp.csr_matrix:
        n = self.n
        both = (cA < n) & (cK < n)
        D = sp.coo_matrix((np.ones(both.sum()), (cA[both], cK[both])), shape=(n, n))
        A = (self.W != 0).astype(float) + D + D.T
        A = A.tocsr()
        A.setdiag(0)
        A.eliminate_zeros()
        A.data[:] = 1.0
        return A

    def _check_paths(self, cA, cK, cp, cq) -> None:
        """Every coordinate needs a DC path (resistor or junction) to a fixed potential."""
        n = self.n
        i = np.concatenate([cp, cA])
        j = np.concatenate([cq, cK])
        G = sp.coo_matrix((np.ones(i.size), (i, j)), shape=(n + 1, n + 1))
        _, lab = connected_components(G, directed=False)
        bad = np.flatnonzero(lab[:n] != lab[n])
        if bad.size:
            raise CircuitError(f"node {self.node_of(bad[0])} has no DC path to ground or a voltage source "
                               f"(floating{f'; {bad.size} nodes in all have none' if bad.size > 1 else ''})")

    def _check_conductance(self) -> None:
        """A coordinate without a linear conductance (``a = 0``: only diodes with RS, each one branch with its
        junction's gmin inside) is updated from a bracket of its neighbours (``_Block``) where gmin > 0 and no
        ideal diode bounds it; elsewhere it is an error."""
        zero = np.flatnonzero(self.a <= 0)
        if zero.size and self.circuit.gmin <= 0:
            raise CircuitError(f"node {self.node_of(zero[0])} is connected only through diodes and gmin = 0: "
                               f"CD needs a conductance at every node (set .options gmin > 0 or add a resistor)")
        boxed = zero[np.isfinite(self.lo[zero]) | np.isfinite(self.hi[zero])]
        if boxed.size:
            raise CircuitError(f"node {self.node_of(boxed[0])} is connected only through diodes with RS and ideal "
                               f"diodes: CD needs a conductance there (add a resistor)")

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds (V) of each coordinate from the ideal diodes: one terminal fixed (or both in one group) makes
        ``v(anode) <= v(cathode)`` a bound of the other's coordinate; the node update is then an exact clip.
        A diode between two unknown coordinates is no bound (``coupled``: ``active_set``)."""
        n, coord, off, ckt = self.n, self.coord, self.off, self.circuit
        lo, hi = np.full(n + 1, -np.inf), np.full(n + 1, np.inf)
        for name, a, k in ckt.ideal:
            ca, ck = coord[a], coord[k]
            gap = off[a] - off[k]  # v(anode) - v(cathode) when ca == ck (both fixed: the potentials)
            if ca == ck:
                if gap > 8 * _EPS * max(abs(off[a]), abs(off[k])):
                    raise CircuitError(f"ideal diode {name} is forward-biased by {gap:.6g} V between potentials "
                                       f"fixed by sources: its current would be unbounded")
            elif ca < n and ck < n:
                continue  # a coupled constraint: active_set.solve_active, not a bound
            elif ca < n:
                hi[ca] = min(hi[ca], off[k] - off[a])
            else:
                lo[ck] = max(lo[ck], off[a] - off[k])
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            c = bad[0]
            raise CircuitError(f"ideal diodes hold node {self.node_of(c)} above {lo[c]:.6g} V and below "
                               f"{hi[c]:.6g} V: a loop of ideal diodes and sources with unbounded current")
        return lo[:n], hi[:n]

    def bias(self, x: np.ndarray) -> np.ndarray:
        """Each junction terminal's branch voltage ``v(anode) − v(cathode)`` (V, the outer anode for RS diodes) at
        coordinates ``x``."""
        own, other, s, *_, d = self.terminals
        xe = np.append(x, 0.0)
        return s * (xe[own] - xe[other] - d)

    def bounded_bias(self, x: np.ndarray) -> bool:
        """Whether coordinates ``x`` are finite and bias no junction without RS forward by ``_FORWARD_MAX·vte`` or
        more (its current, ``e^600·Is``, would overflow in the node update's Newton steps)."""
        vte, rs = self.terminals[4:6]
        k = rs == 0
        return bool(np.isfinite(x).all() and np.all(self.bias(x)[k] < _FORWARD_MAX * vte[k]))

    def node_of(self, c: int) -> str:
        """A deck node name of coordinate ``c``."""
        return self.circuit.nodes[int(np.flatnonzero(self.coord[:-1] == c)[0])]

    # ---- states ----
    def voltages(self, x: np.ndarray) -> np.ndarray:
        """Potentials (V) of every node of the circuit (internal included) from coordinates ``x``."""
        v = np.append(x, 0.0)[self.coord] + self.off  # last entry: ground
        inner, outer, ca, Is, vte, rs = self._series
        if inner.size:
            i, _ = _law(v[outer] - v[ca], Is, vte, rs, self.circuit.gmin)
            v[inner] = v[outer] - rs * i
        return v[:-1]

    def coordinates(self, v: np.ndarray) -> np.ndarray:
        """Coordinates from node potentials ``v`` (V): the inverse of ``voltages`` on its image."""
        x = np.zeros(self.n)
        free = self.coord[:-1] < self.n
        x[self.coord[:-1][free]] = (v - self.off[:-1])[free]
        return x

    def kcl(self, x: np.ndarray, slopes: bool = False, bounds: bool = True):
        """KCL residual (A) of every coordinate: the current leaving it (a bounded coordinate: the natural residual
        ``a*(x - clip(x - f/a, lo, hi))`` of its ideal diodes' complementarity, as ``elements.Ideal``; not with
        ``bounds=False``: the current leaving through the other elements); with ``slopes``, also each junction
        terminal's conductance (S)."""
        own, _, s, Is, vte, rs, _ = self.terminals
        J, dJ = _law(self.bias(x), Is, vte, rs, self.circuit.gmin)
        J *= s
        f = self.a * x - self.b - self.W @ x + np.bincount(own, J, self.n)
        if bounds and self.boxed.size:  # natural residual of the bounds: 0 iff KCL holds with diode currents >= 0
            k = self.boxed
            f[k] = self.a[k] * (x[k] - np.clip(x[k] - f[k] / self.a[k], self.lo[k], self.hi[k]))
        return (f, dJ) if slopes else f

    def kcl_scale(self, x: np.ndarray) -> float:
        """Largest sum of the absolute terms of a coordinate's KCL (A): its rounding scale. A junction's current
        ``Is·(e^x - 1)`` counts as ``|J| + 2·Is``, its two terms before they cancel (near 0 V, with a large
        ``Is``, ``|J|`` alone put the scale below the rounding of the terms, and CD ran to its sweep cap)."""
        own, _, _, Is, vte, rs, _ = self.terminals
        J = _law(self.bias(x), Is, vte, rs, self.circuit.gmin)[0]
        S = (self.a * np.abs(x) + np.abs(self.b) + self.W @ np.abs(x)  # (W >= 0)
             + np.bincount(own, np.abs(J) + 2.0 * Is, self.n))
        return float(S.max(initial=0.0))

    def i_ref(self, x: np.ndarray) -> float:
        """Largest current (A) of a branch that an unknown potential sets (both ends fixed, or in one
        supernode, left out): resistors, junctions (with RS and gmin), current sources."""
        v = np.append(self.voltages(x), 0.0)
        ra, rb, rg = self._r
        outer, ca, Is, vte, rs = self._d
        vd, gmin = v[outer] - v[ca], self.circuit.gmin
        junction = _law(vd, Is, vte, rs, gmin)[0] + np.where(rs > 0, 0.0, gmin * vd)
        cur = [rg * (v[ra] - v[rb]), junction, self._i]
        return max((float(np.abs(q).max()) for q in cur if q.size), default=0.0)


    def kkt(self, v: np.ndarray) -> dict[str, float]:
        """The ideal diodes' KKT conditions at node potentials ``v`` (V, ``voltages`` order), from the circuit's element
        tables. Diode currents are assigned by KCL: a coordinate at a bound passes its KCL current ``f`` (without the
        ideal diodes) through the diodes that set the bound, others carry 0. Returns ``violation`` (V: largest
        ``v(anode) - v(cathode)``, feasibility), ``kcl`` (A: largest ``|f|`` of a coordinate at no bound),
        ``current`` (A: largest negative diode current, ``f > 0`` at an upper bound or ``f < 0`` at a lower one),
        ``complementarity`` (W: largest ``|i|·|v(cathode) - v(anode)|`` of a conducting diode) and ``i_ref`` (A).
        With ideal diodes between two unknown nodes the currents are assigned as ``_kkt_coupled`` says."""
        ckt, n = self.circuit, self.n
        ve = np.append(np.asarray(v, dtype=np.float64), 0.0)
        out = np.zeros(ve.size)  # current leaving each node through resistors, junctions, current sources
        if ckt.resistors:
            _, ra, rb, rg = (np.array(q) for q in zip(*ckt.resistors))
            ra, rb = ra % ve.size, rb % ve.size  # ground (-1): the last entry
            ir = rg * (ve[ra] - ve[rb])
            out += np.bincount(ra, ir, ve.size) - np.bincount(rb, ir, ve.size)
        an, ca, Is, vte = ckt.diode_table()
        an, ca = an % ve.size, ca % ve.size
        vd = ve[an] - ve[ca]
        ij = diode_law(vd, Is, vte)[0] + ckt.gmin * vd
        out += np.bincount(an, ij, ve.size) - np.bincount(ca, ij, ve.size)
        for _, p, m, amps in ckt.isources:
            out[p] += amps
            out[m] -= amps
        coord = self.coord[:-1]
        free = coord < n
        f = np.bincount(coord[free], out[:-1][free], n)
        x = self.coordinates(np.asarray(v, dtype=np.float64))
        if self.coupled.size:
            return self._kkt_coupled(ve, f, x)
        at_hi, at_lo = x >= self.hi, x <= self.lo
        held = at_hi | at_lo
        wrong = np.concatenate([f[at_hi & ~at_lo], -f[at_lo & ~at_hi], [0.0]])
        ia, ik = ckt.ideal_table()
        gap = ve[ik] - ve[ia]  # >= 0 when feasible
        ce = np.append(coord, n)
        own = np.where(ce[ia] < n, ce[ia], ce[ik])  # the diode's unknown coordinate (n: none)
        closest = np.full(n + 1, np.inf)
        np.minimum.at(closest, own, np.abs(gap))  # the diode nearest conduction of each coordinate
        return dict(violation=float(np.max(-gap, initial=0.0)) + 0.0, kcl=float(np.abs(f[~held]).max(initial=0.0)),
                    current=float(wrong.max()), complementarity=float(np.max(np.abs(f[held]) * closest[:n][held],
                                                                              initial=0.0)),
                    i_ref=self.i_ref(x))


    def _kkt_coupled(self, ve: np.ndarray, f: np.ndarray, x: np.ndarray) -> dict[str, float]:
        """``kkt`` with coupled ideal diodes: the diodes within ``1e-12·max(|v|, 1 V)`` of conduction carry the
        non-negative currents that best satisfy KCL (least squares, scipy's ``nnls``: a loop of such diodes leaves
        them non-unique); ``kcl`` is the largest ``|f|`` of a coordinate no such diode touches, ``current`` the
        largest KCL those currents leave (what only a negative diode current would carry), ``complementarity``
        the largest ``i·|v(cathode) - v(anode)|``."""
        from scipy.optimize import nnls

        n = self.n
        ia, ik = self.circuit.ideal_table()
        _, ja, jk, ca, ck = self.constraints
        gap = ve[jk] - ve[ja]
        tight = np.flatnonzero(gap <= 1e-12 * max(float(np.abs(ve).max()), 1.0))
        rows = np.unique(np.concatenate([ca[tight], ck[tight]]))
        rows = rows[rows < n]
        pos = np.searchsorted(rows, np.minimum(np.concatenate([ca[tight], ck[tight]]), n))
        into = np.concatenate([ca[tight], ck[tight]]) < n
        B = np.zeros((rows.size, tight.size))  # current leaving a coordinate through its tight diodes, per ampere
        np.add.at(B, (pos[into], np.tile(np.arange(tight.size), 2)[into]),
                  np.repeat([1.0, -1.0], tight.size)[into])
        lam = nnls(B, -f[rows])[0] if rows.size else np.zeros(tight.size)
        left = f.copy()
        left[rows] += B @ lam
        free = np.ones(n, dtype=bool)
        free[rows] = False
        return dict(violation=float(np.max(ve[ia] - ve[ik], initial=0.0)) + 0.0,
                    kcl=float(np.abs(f[free]).max(initial=0.0)), current=float(np.abs(left[rows]).max(initial=0.0)),
                    complementarity=float(np.max(lam * np.abs(gap[tight]), initial=0.0)), i_ref=self.i_ref(x))


class _Block:
    """One colour: its coordinates ``S``, their conductance rows, and the junction terminals on them."""

    def __init__(self, g: Graph, S: np.ndarray):
        self.S, self.W, self.a, self.b = S, g.W[S], g.a[S], g.b[S]
        own, other, s, Is, vte, rs, d = g.terminals
        self.gmin = g.circuit.gmin
        local = np.full(g.n + 1, -1)
        local[S] = np.arange(S.size)
        on = local[own] >= 0
        order = np.argsort(local[own][on], kind="stable")
        loc = local[own][on][order]
        self.dn, starts = np.unique(loc, return_index=True)  # local indices of nodes with junctions
        self.starts = starts
        self.t_pos = np.searchsorted(self.dn, loc)  # terminal -> row of dn
        self.other, self.s, self.Is, self.vte, self.rs, self.d = (q[on][order] for q in (other, s, Is, vte, rs, d))
        self.vmin = np.minimum.reduceat(self.vte, starts) if starts.size else np.zeros(0)
        # nodes without a linear conductance (Graph._check_conductance): their branches' least total slope, each
        # at least gmin/(1 + RS·gmin), stands in for a in the bracket and in the division below
        self.bare = self.a[self.dn] <= 0
        slope = np.add.reduceat(self.gmin / (1.0 + self.rs * self.gmin), starts) if starts.size else np.zeros(0)
        self.a_div = self.a.copy()
        self.a_div[self.dn[self.bare]] = slope[self.bare]
        self.S_dn, self.a_dn, self.a_div_dn = S[self.dn], self.a[self.dn], self.a_div[self.dn]  # (once, not per update)
        self.box = np.flatnonzero(np.isfinite(g.lo[S]) | np.isfinite(g.hi[S]))
        self.lo, self.hi = g.lo[S][self.box], g.hi[S][self.box]

    def update(self, xe: np.ndarray) -> None:
        """Set ``xe[S]`` to the exact minimiser given the other coordinates (``xe[-1] = 0``: fixed)."""
        c = self.b + self.W @ xe[:-1]
        v = c / self.a_div
        if self.dn.size:
            v[self.dn] = self._junctions(xe, xe[self.S_dn], c[self.dn])
        if self.box.size:  # ideal diodes: the minimiser of a convex 1-D function on an interval is a clip
            v[self.box] = np.clip(v[self.box], self.lo, self.hi)
        xe[self.S] = v

    def _junctions(self, xe, v, c):
        """Safeguarded Newton on ``a*v - c + Σ s*J(s*(v - w)) = 0`` per node (1-D arrays), from ``_dominant``
        (a node with ``a = 0``: from ``v``), inside ``[min(c/a, w), max(c/a, w)]`` (``a = 0``: the neighbours
        ``w`` widened by ``c/G``, ``G`` the branches' least total slope: every branch's current grows at least
        that fast away from its neighbour); each node leaves the iteration once its step, its residual or the
        error its last Newton step leaves is at rounding level (that step taken)."""
        a, w = self.a_dn, xe[self.other] + self.d
        wlo, whi = np.minimum.reduceat(w, self.starts), np.maximum.reduceat(w, self.starts)
        bare, x = self.bare, c / self.a_div_dn
        lo = np.minimum(np.where(bare, wlo + x, x), wlo)
        hi = np.maximum(np.where(bare, whi + x, x), whi)
        v = np.clip(np.where(bare, v, self._dominant(v, self.a_div_dn, c, w)), lo, hi)
        act = np.arange(v.size)  # nodes still iterating, and their terminals:
        loc, s, Is, vte, rs = self.t_pos, self.s, self.Is, self.vte, self.rs
        for _ in range(_NEWTON_CAP):
            va, aa, ca = v[act], a[act], c[act]
            J, dJ = _law(s * (va[loc] - w), Is, vte, rs, self.gmin)
            J *= s
            m = act.size
            f = aa * va - ca + np.bincount(loc, J, m)
            fp = aa + np.bincount(loc, dJ, m)
            la = lo[act] = np.where(f < 0, va, lo[act])
            ha = hi[act] = np.where(f > 0, va, hi[act])
            new = va - f / fp
            out = ~((new >= la) & (new <= ha))
            new[out] = 0.5 * (la[out] + ha[out])
            scale = np.abs(aa * va) + np.abs(ca) + np.bincount(loc, np.abs(J), m)
            # done: a step or a residual at rounding level, or a Newton step that leaves an error at rounding level:
            # below |f''|/(2f')·step², |f''| <= 2·Σ g/vte (forward law: g/vte; reverse: 4g/|vd| <= 4g/(3·vte))
            step, vm = np.abs(new - va), self.vmin[act]
            left = np.bincount(loc, dJ / vte, m) / fp * step * step
            done = ((step <= 2 * _EPS * (np.abs(va) + vm)) | (~out & (left <= _EPS * (np.abs(new) + vm)))
                    | (np.abs(f) <= 8 * _EPS * scale))
            v[act] = new
            if done.all():
                break
            keep = ~done
            tk = keep[loc]
            loc = (np.cumsum(keep) - 1)[loc[tk]]
            act, w, s, Is, vte, rs = act[keep], w[tk], s[tk], Is[tk], vte[tk], rs[tk]
        return v


    def _dominant(self, v, a, c, w):
        """Start of the Newton iteration: where a junction conducts, the closed form of the node with that junction
        alone (the forward exponential, the one whose ``ln z`` is largest): ``v = w + s*vte*(ln W0(z) - ln k)``,
        ``k = Is/(a*vte)``, ``ln z = ln k + s*(c'/a - w)/vte``, ``c' = c + Σ s*Is`` (every junction's ``-1``
        term), ``W0(e^t) = wrightomega(t)``; elsewhere the node without the junctions' exponentials, ``c'/a``."""
        s, Is, vte, pos = self.s, self.Is, self.vte, self.t_pos
        aa, cc = a[pos], (c + np.bincount(pos, s * Is, c.size))[pos]
        lnk = np.log(Is / (aa * vte))
        t = lnk + s * (cc / aa - w) / vte
        top = np.maximum.reduceat(t, self.starts)
        k = np.flatnonzero(t == top[pos])  # terminals are grouped by node: keep each node's first dominant one
        k = k[np.r_[True, pos[k][1:] != pos[k][:-1]]]
        on = top > _LNZ_CUTOFF
        k = k[on]
        out = (c + np.bincount(pos, s * Is, c.size)) / a
        out[on] = w[k] + s[k] * vte[k] * (np.log(wrightomega(t[k]).real) - lnk[k])
        return out


def _law(vd: np.ndarray, Is: np.ndarray, vte: np.ndarray, rs: np.ndarray, gmin: float):
    """(current (A), conductance (S)) of junction branches at branch voltage ``vd`` (V): the junction alone
    (``rs = 0``; its gmin is a linear branch of the graph), or the junction with its gmin in series with ``rs``
    (Ω), whose junction voltage ``u`` solves ``u + rs*(J(u) + gmin*u) = vd`` (``_series``)."""
    i, g = diode_law(vd, Is, vte)
    k = rs > 0
    if k.any():
        i[k], g[k] = _series(vd[k], Is[k], vte[k], rs[k], gmin)
    return i, g


def _series(V, Is, vte, rs, gmin):
    """Safeguarded Newton on the strictly increasing ``h(u) = u + rs*(J(u) + gmin*u) - V`` inside
    ``[min(0, V), max(0, V)]`` (forward: also ``u <= vte*ln(1 + V/(rs*Is))``), to rounding."""
    lo, hi = np.minimum(V, 0.0), np.maximum(V, 0.0)
    with np.errstate(invalid="ignore"):
        hi = np.where(V > 0, np.minimum(hi, vte * np.log1p(np.maximum(V, 0.0) / (rs * Is))), hi)
    u = np.where(V > 0, hi, np.clip(V + rs * Is, lo, hi))
    for _ in range(_NEWTON_CAP):
        j, gj = diode_law(u, Is, vte)
        j += gmin * u
        gj += gmin
        h = u + rs * j - V
        lo = np.where(h < 0, u, lo)
        hi = np.where(h > 0, u, hi)
        new = u - h / (1.0 + rs * gj)
        out = ~((new >= lo) & (new <= hi))
        new[out] = 0.5 * (lo[out] + hi[out])
        done = np.abs(new - u) <= 2 * _EPS * (np.abs(u) + vte)
        u = new
        if done.all():
            break
    j, gj = diode_law(u, Is, vte)
    gj += gmin
    return j + gmin * u, gj / (1.0 + rs * gj)


def colouring(A: sp.csr_matrix, seed: int = 0) -> list[np.ndarray]:
    """Colour classes of the graph ``A`` (symmetric csr, no diagonal): no edge inside a class. Two classes
    when the graph is bipartite (BFS parity), else Jones–Plassmann: in each round the uncoloured nodes whose
    random priority beats all their uncoloured neighbours take the smallest colour none of their neighbours has."""
    n = A.shape[0]
    if n == 0:
        return []
    parity = _bfs_parity(A)
    i, j = A.nonzero()
    if np.all(parity[i] != parity[j]):
        return [q for q in (np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)) if q.size]
    prio = np.random.default_rng(seed).permutation(n).astype(float) + 1.0
    colour = np.full(n, -1)
    Ai = A.tocsr(copy=True)
    Ai.data[:] = 1.0
    while (colour < 0).any():
        U = colour < 0
        best = Ai.multiply(np.where(U, prio, 0.0)[None, :]).max(axis=1).toarray().ravel()
        S = np.flatnonzero(U & (prio > best))
        R = Ai[S].tocoo()
        cols = colour[R.col]
        has = cols >= 0
        k = colour.max() + 2
        used = np.zeros((S.size, k), dtype=bool)
        used[R.row[has], cols[has]] = True
        colour[S] = np.argmin(used, axis=1)
    return [np.flatnonzero(colour == c) for c in range(colour.max() + 1)]


def _bfs_parity(A: sp.csr_matrix) -> np.ndarray:
    """Parity of each node's BFS depth from its component's first node (pointer jumping, vectorised)."""
    n = A.shape[0]
    ncomp, lab = connected_components(A, directed=False)
    pred = np.arange(n)
    for comp in range(ncomp):
        r = int(np.argmax(lab == comp))
        _, p = breadth_first_order(A, r, directed=False, return_predecessors=True)
        got = p >= 0
        pred[got] = p[got]
    anc, par = pred.copy(), (pred != np.arange(n)).astype(np.int64)
    while np.any(anc[anc] != anc):
        par = par ^ np.where(anc != np.arange(n), par[anc], 0)
        anc = anc[anc]
    return par


def _aggregates(W: sp.csr_matrix, seed: int = 0):
    """Aggregate index of each node of the weighted graph ``W`` (symmetric, S) after each round of pairwise
    heavy-edge matching (each unmatched node proposes to its strongest unmatched neighbour, ties broken at random;
    mutual proposals merge; four proposal rounds), each round on the graph aggregated by the previous one; yields
    until ``_COARSE_MIN`` aggregates or fewer are left, or a round would remove fewer than 20 % of them."""
    rng = np.random.default_rng(seed)
    agg = np.arange(W.shape[0])
    C = W.tocoo()
    while agg.size and agg.max() + 1 > _COARSE_MIN:
        m = agg.max() + 1
        mate = np.full(m, -1)
        keep = C.row != C.col
        r, c, w = C.row[keep], C.col[keep], C.data[keep] * (1.0 + 1e-6 * rng.uniform(size=keep.sum()))
        for _ in range(4):
            free = (mate[r] < 0) & (mate[c] < 0)
            rr, cc, ww = r[free], c[free], w[free]
            if not rr.size:
                break
            order = np.lexsort((-ww, rr))
            rr, cc = rr[order], cc[order]
            first = np.r_[True, rr[1:] != rr[:-1]]
            prop = np.full(m, -1)
            prop[rr[first]] = cc[first]
            mutual = (prop >= 0) & (prop[np.maximum(prop, 0)] == np.arange(m))
            mate[mutual] = prop[mutual]
        if (mate >= 0).sum() < 0.4 * m:  # fewer than 20 % fewer aggregates: the graph is too dense to coarsen
            return
        new = np.unique(np.where(mate >= 0, np.minimum(np.arange(m), mate), np.arange(m)), return_inverse=True)[1]
        agg = new[agg]
        C = sp.coo_matrix((C.data, (new[C.row], new[C.col])), shape=(new.max() + 1,) * 2).tocsr().tocoo()
        yield agg


class _Coarse:
    """Two-level correction of a sweep: ``x <- x - P Jc^-1 P^T f(x)``, ``P`` the indicator of aggregates
    (``_aggregates`` on the conductance graph), ``Jc = P^T J P`` the aggregated KCL Jacobian (``J = diag(a) - W`` +
    the junctions' conductances; assembled from the branches between aggregates and to fixed potentials),
    factorised by scipy's ``splu`` and refactorised only when a junction's conductance has moved by more than
    ``_REFRESH`` of its node's total. The aggregates are the finest of the matching rounds (from the second on:
    about 4 coordinates) whose LU factors hold at most ``_LU_BUDGET`` times the fine graph's nonzeros (tried from
    the coarsest; a level is not tried when the growth from the previous one predicts it over; the coarsest level
    is used even if over): meshes keep small aggregates, random graphs (large separators: dense LU) get coarse
    ones; where the matching stalls above ``_COARSE_STALL`` aggregates (``agg`` None) there is no correction. It
    removes the smooth error modes the node updates damp slowly (long grids); its fixed points are CD's
    (``f = 0``), and a correction that would bias a junction beyond ``_FORWARD_MAX·vte`` is not taken."""

    def __init__(self, g: Graph, dJ: np.ndarray):
        self.g = g
        W = g.W.tocoo()
        self.W = W
        own, other = g.terminals[:2]
        self.own, self.inner, self.other = own, other < g.n, np.minimum(other, g.n - 1)
        levels = list(_aggregates(g.W))[1:] or [np.zeros(g.n, dtype=np.int64)]
        if levels[-1].max() + 1 > _COARSE_STALL:  # coarsening stalled on a large graph: a dense coarse LU
            self.agg = None
            return
        budget = _LU_BUDGET * (W.nnz + g.n)
        chosen, last = None, 0
        for agg in reversed(levels):  # coarsest first
            lu = self._factor(agg, dJ)
            size = lu.L.nnz + lu.U.nnz
            if size > budget and chosen is not None:
                break
            chosen = agg, lu
            if size > budget or (last and size * size / last > budget):  # the next level would not fit either
                break
            last = size
        self.agg, self.lu = chosen
        self.dJ = dJ.copy()
        self.nc = int(self.agg.max()) + 1

    def _factor(self, agg: np.ndarray, dJ: np.ndarray):
        from scipy.sparse.linalg import splu

        W, g = self.W, self.g
        wi, wj = agg[W.row], agg[W.col]
        ti, tj = agg[self.own], agg[self.other]
        w = wi != wj  # (branches inside an aggregate add nothing: summed in and out, a junction conducting 1e27 S
        t = ~self.inner | (ti != tj)  # left nothing of the rest, and the factor was singular)
        inner = t & self.inner
        nc = int(agg.max()) + 1
        rows = np.concatenate([agg, wi[w], wi[w], ti[t], ti[inner]])
        cols = np.concatenate([agg, wi[w], wj[w], ti[t], tj[inner]])
        data = np.concatenate([g.a_fixed, W.data[w], -W.data[w], dJ[t], -dJ[inner]])
        return splu(sp.coo_matrix((data, (rows, cols)), shape=(nc, nc)).tocsc())

    def correct(self, x: np.ndarray, f: np.ndarray, dJ: np.ndarray) -> np.ndarray:
        """``x`` corrected by the coarse Newton step of the residual ``f`` (A), junction conductances ``dJ`` (S)."""
        if np.any(np.abs(dJ - self.dJ) > _REFRESH * (self.g.a[self.own] + self.dJ)):
            self.lu, self.dJ = self._factor(self.agg, dJ), dJ.copy()
        e = self.lu.solve(np.bincount(self.agg, f, self.nc))
        return x - e[self.agg]


class _Problem:
    """``solver.fixed_point``'s interface for a graph (one sample: rows of ``x`` are 1). After ``coarse_after``
    sweeps each sweep starts with the two-level correction (``_Coarse``)."""

    def __init__(self, g: Graph, tol: float, coarse_after: int):
        self.g, self.tol, self.after = g, tol, coarse_after
        self.x, self.last, self.floor, self.count = None, 0.0, 0.0, 0
        self.coarse = None

    def sweep(self, x, rows):
        g = self.g
        x0 = x[0]
        f, dJ = g.kcl(x0, slopes=True)
        r = np.abs(f).max(initial=0.0)
        self.count += 1
        y = x0
        if 0 <= self.after < self.count and g.n > 1:
            if self.coarse is None:
                self.coarse = _Coarse(g, dJ)
            if self.coarse.agg is not None:
                y = self.coarse.correct(x0, f, dJ)
                if g.boxed.size:
                    y[g.boxed] = np.clip(y[g.boxed], g.lo[g.boxed], g.hi[g.boxed])
                if not g.bounded_bias(y):  # (a linearisation far from the solution: the junctions' e^600)
                    y = x0
        xe = np.append(y, 0.0)
        for blk in g.blocks:
            blk.update(xe)
        return xe[None, :-1], np.array([r]), x0

    def i_upper(self, rows, state, near):
        """4x the last reference current, floor included (inf before one is known): ``I_ref`` is computed only when
        the residual could pass the test — a reference that grew faster than that merely delays the stop by some
        sweeps. (Without the floor, a deck whose floor set ``I_ref`` never came near: 10,000 sweeps.)"""
        last = max(self.last, self.floor)
        return np.array([4.0 * last if last > 0 else np.inf])

    def i_ref(self, rows, state, near):
        """The largest branch current, or the float64 floor ``32·eps·S/tol`` if larger (``S``: the largest sum of
        absolute terms in a node's KCL; float64 potentials cannot bring the residual below ~eps·S)."""
        self.last, self.floor = self.g.i_ref(state), 32 * _EPS * self.g.kcl_scale(state) / self.tol
        return np.array([max(self.last, self.floor)])

    def store(self, idx, state, done):
        self.x = state.copy()

    def project(self, x):
        """Keep an extrapolated iterate inside the ideal diodes' bounds."""
        k = self.g.boxed
        if k.size:
            x[:, k] = np.clip(x[:, k], self.g.lo[k], self.g.hi[k])


def solve_circuit(circuit: Circuit | Graph, *, init: np.ndarray | None = None, tol: float = CIRCUIT_TOL,
                  max_sweeps: int = CIRCUIT_MAX_SWEEPS, anderson: int = ANDERSON,
                  coarse_after: int = CIRCUIT_COARSE_AFTER) -> Solution:
    """DC operating point of ``circuit`` by exact coordinate descent. Returns a ``Solution`` whose one state is
    ``(1, n_nodes)``: every node's potential (V) in ``circuit.nodes`` order (internal diode nodes included).
    init: starting node potentials (V); tol, max_sweeps, anderson: as ``solver.solve``; ``i_ref`` is the largest
    branch current, raised to the float64 floor of the residual where that is larger (``_Problem.i_ref``); the
    stop also needs a sweep that moves no potential by more than ``10·tol`` of the largest. coarse_after: sweeps
    before the two-level correction (``_Coarse``) joins each sweep (-1: never). Ideal diodes between two unknown
    nodes: ``active_set.solve_active`` (CD on each sub-problem, ``setup`` holds its ``ActiveSet`` record)."""
    g = circuit if isinstance(circuit, Graph) else Graph(circuit)
    tol = check_tol(tol)
    max_sweeps = check_int(max_sweeps, "max_sweeps", 1)
    anderson = check_int(anderson, "anderson", 0, MAX_ANDERSON)
    coarse_after = check_int(coarse_after, "coarse_after", -1)
    run = partial(_solve, tol=tol, max_sweeps=max_sweeps, anderson=anderson, coarse_after=coarse_after)
    if g.coupled.size:
        from .active_set import solve_active

        return solve_active(g, init, run)
    return run(g, init)


def _solve(g: Graph, init: np.ndarray | None, *, tol: float, max_sweeps: int, anderson: int,
           coarse_after: int) -> Solution:
    """CD on the coordinates of ``g`` from node potentials ``init`` (V; None: 0)."""
    x = np.zeros((1, g.n)) if init is None else g.coordinates(np.asarray(init, dtype=np.float64))[None, :]
    P = _Problem(g, tol, int(coarse_after))
    stats = fixed_point(P, x, tol=tol, max_sweeps=max_sweeps, anderson=anderson, step_tol=STEP_PER_TOL * tol)
    return Solution([g.voltages(P.x)[None, :]], *stats, float(tol))
