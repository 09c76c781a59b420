"""General resistor–diode–source networks (any topology) and ngspice's DC diode law. No parsing here:
``spice_bridge.parse`` builds a ``Circuit`` from a deck, ``cdsolver.graph`` solves it.

A ``Circuit`` holds named nodes (``"0"`` is ground) and elements between them: resistors, junction diodes
(ngspice ``D`` model with ``IS``, ``N``, ``RS``), ideal diodes (seed 001's QP constraint ``v(anode) <= v(cathode)``,
any current ``>= 0`` from anode to cathode when equal; ``.model NAME D(IDEAL=1)`` in a deck), independent DC voltage
and current sources, and shorts (an inductor at DC). Every node name is stored lower case.

Diode law (ngspice DC analysis, ``src/spicelib/devices/dio/dioload.c``, no breakdown, 27 °C = TNOM), with
``vte = N*Vt`` and ``vd`` the junction voltage (anode side minus cathode side)::

    I(vd) = IS*(exp(vd/vte) - 1)             vd >= -3*vte   (forward)
    I(vd) = -IS*(1 + (3*vte/(e*vd))**3)      vd <  -3*vte   (reverse: saturates at -IS)
    plus gmin*vd                             (every junction, ``.options gmin``, default 1e-12 S)

continuous with a continuous slope at ``-3*vte``, strictly increasing. ``RS > 0`` puts a resistor ``RS`` between
the anode and an internal node ``<diode>#internal`` (the junction's anode side), as ngspice does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .constants import EPSMIN, VT
from .validation import ValidationError

__all__ = ["Circuit", "CircuitError", "GMIN", "GROUND", "KINDS", "random_circuit", "diode_law",
           "diode_current", "diode_potential"]

#: ngspice's default gmin across every junction, S.
GMIN = 1e-12
#: ngspice's diode model defaults: saturation current (A), emission coefficient, series resistance (Ω).
IS_DEFAULT, N_DEFAULT, RS_DEFAULT = 1e-14, 1.0, 0.0
#: The ground node's name (``gnd`` is read as ``0``, as ngspice does).
GROUND = "0"

_E = math.e


class CircuitError(ValidationError):
    """A circuit that cannot be built or solved as asked; the message names the element or node."""


def diode_law(vd: np.ndarray, Is: np.ndarray, vte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Junction current (A) and its derivative (S) at junction voltage ``vd`` (V), gmin excluded (ngspice's
    ``cdb`` and ``gdb``)."""
    rev = vd < -3.0 * vte
    with np.errstate(over="ignore"):
        e = np.exp(np.where(rev, 0.0, vd) / vte)
    vr = np.where(rev, vd, -1.0)
    arg = 3.0 * vte / (vr * _E)
    arg = arg * arg * arg
    i = np.where(rev, -Is * (1.0 + arg), Is * (e - 1.0))
    g = np.where(rev, Is * 3.0 * arg / vr, Is * e / vte)
    return i, g


def diode_current(vd: np.ndarray, Is: np.ndarray, vte: np.ndarray) -> np.ndarray:
    """Junction current (A) at junction voltage ``vd`` (V), gmin excluded (ngspice's ``cdb``)."""
    return diode_law(vd, Is, vte)[0]


def diode_potential(vd: np.ndarray, Is: np.ndarray, vte: np.ndarray) -> np.ndarray:
    """``∫ I dvd`` (W) with the value ``Is*vte`` at ``vd = 0`` (continuous at ``-3*vte``), gmin excluded."""
    rev = vd < -3.0 * vte
    with np.errstate(over="ignore"):
        vr = np.where(rev, vd, -1.0)
        back = -Is * vr + Is * (3.0 * vte / _E) ** 3 / (2.0 * vr * vr) - 0.5 * Is * vte * _E**-3
        return np.where(rev, back, Is * vte * np.exp(np.where(rev, 0.0, vd) / vte) - Is * vd)


@dataclass
class Circuit:
    """A DC resistor–diode–source network. Build it with the ``add_*`` methods (values in SI units).

    nodes: node names in order of first use (ground excluded; internal diode nodes included, see ``internal``).
    Element tables hold node indices, ``-1`` for ground. gmin: conductance across every junction (S). epsmin:
    the smallest diode IS (A) ngspice takes as given (it raises smaller ones to it): ``add_diode`` refuses those.
    """

    gmin: float = GMIN
    epsmin: float = EPSMIN
    nodes: list[str] = field(default_factory=list)
    internal: list[bool] = field(default_factory=list)
    resistors: list[tuple[str, int, int, float]] = field(default_factory=list)  # name, a, b, conductance S
    diodes: list[tuple[str, int, int, float, float]] = field(default_factory=list)  # name, anode, cathode, Is, N
    vsources: list[tuple[str, int, int, float]] = field(default_factory=list)  # name, +, -, V
    isources: list[tuple[str, int, int, float]] = field(default_factory=list)  # name, +, -, A (+ -> - inside)
    shorts: list[tuple[str, int, int]] = field(default_factory=list)  # name, a, b (0 V)
    ideal: list[tuple[str, int, int]] = field(default_factory=list)  # name, anode, cathode: v(anode) <= v(cathode)
    series: dict[str, tuple[str, float]] = field(default_factory=dict)  # diode name -> (outer anode, RS Ω)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def node(self, name: str, internal: bool = False) -> int:
        """Index of node ``name`` (created on first use), ``-1`` for ground."""
        key = name.lower()
        if key in (GROUND, "gnd"):
            return -1
        if key not in self._index:
            self._index[key] = len(self.nodes)
            self.nodes.append(key)
            self.internal.append(internal)
        return self._index[key]

    def add_resistor(self, name: str, a: str, b: str, ohms: float) -> None:
        """A resistor of ``ohms`` > 0 (Ω) between nodes ``a`` and ``b``."""
        if not (math.isfinite(ohms) and ohms > 0):
            raise CircuitError(f"{name}: resistance must be a positive finite number of Ω, got {ohms!r}")
        self.resistors.append((name, self.node(a), self.node(b), 1.0 / ohms))

    def add_diode(self, name: str, anode: str, cathode: str, Is: float = IS_DEFAULT, N: float = N_DEFAULT,
                  RS: float = RS_DEFAULT) -> None:
        """An ngspice junction diode from ``anode`` to ``cathode``: ``Is`` (A) > 0, ``N`` > 0, ``RS`` (Ω) >= 0;
        ``Is`` at least ``epsmin``."""
        for key, val, ok in (("IS", Is, Is > 0), ("N", N, N > 0), ("RS", RS, RS >= 0)):
            if not (math.isfinite(val) and ok):
                raise CircuitError(f"{name}: diode {key} must be finite and {'>= 0' if key == 'RS' else '> 0'}, "
                                   f"got {val!r}")
        if Is < self.epsmin:
            raise CircuitError(f"{name}: diode IS {Is:g} A is below epsmin {self.epsmin:g} A, to which ngspice raises "
                               f"it; give IS >= {self.epsmin:g}, or a smaller epsmin (.options epsmin=...)")
        if RS > 0:
            inner = f"{name.lower()}#internal"
            self.series[name] = (anode.lower(), float(RS))
            self.resistors.append((name, self.node(anode), self.node(inner, internal=True), 1.0 / RS))
            anode = inner
        self.diodes.append((name, self.node(anode), self.node(cathode), float(Is), float(N)))

    def add_ideal_diode(self, name: str, anode: str, cathode: str) -> None:
        """An ideal diode: ``v(anode) <= v(cathode)``, its current (>= 0, anode to cathode) whatever KCL needs when
        equal, 0 otherwise (seed 001's QP constraint; no ngspice model)."""
        self.ideal.append((name, self.node(anode), self.node(cathode)))

    def add_vsource(self, name: str, plus: str, minus: str, volts: float) -> None:
        """An independent DC voltage source: ``v(plus) - v(minus) = volts``."""
        _finite(name, volts, "voltage")
        self.vsources.append((name, self.node(plus), self.node(minus), float(volts)))

    def add_isource(self, name: str, plus: str, minus: str, amps: float) -> None:
        """An independent DC current source: ``amps`` flow from ``plus`` through the source to ``minus``."""
        _finite(name, amps, "current")
        self.isources.append((name, self.node(plus), self.node(minus), float(amps)))

    def add_short(self, name: str, a: str, b: str) -> None:
        """A 0 V connection (an inductor at DC): nodes ``a`` and ``b`` share one potential."""
        self.shorts.append((name, self.node(a), self.node(b)))

    @property
    def external(self) -> np.ndarray:
        """Indices of the deck's own nodes (internal diode nodes left out)."""
        return np.flatnonzero(~np.array(self.internal, dtype=bool))

    def node_names(self) -> list[str]:
        """The deck's own node names, lower case, in the order of ``external``."""
        return [self.nodes[k] for k in self.external]

    def diode_table(self) -> tuple[np.ndarray, ...]:
        """(anode, cathode, Is (A), vte = N*Vt (V)) arrays of every diode."""
        if not self.diodes:
            e = np.zeros(0)
            return e.astype(np.int64), e.astype(np.int64), e, e
        _, a, k, Is, N = zip(*self.diodes)
        return np.array(a), np.array(k), np.array(Is), np.array(N) * VT

    def ideal_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(anode, cathode) node arrays of every ideal diode."""
        return tuple(np.array([e[i] for e in self.ideal], dtype=np.int64) for i in (1, 2))

    def energy(self, v: np.ndarray) -> float:
        """Co-content (W) at node voltages ``v`` (V, every node incl. internal ones, ground excluded):
        ``Σ_R ½g·Δv² + Σ_D (P(vd) + ½gmin·vd²) − Σ_I I·(v(−) − v(+))``; constrained by the sources and shorts;
        ``inf`` where an ideal diode's ``v(anode) > v(cathode)`` by more than rounding (8 ulp)."""
        ve = np.append(np.asarray(v, dtype=np.float64), 0.0)  # index -1 = ground
        if self.ideal:
            ia, ik = self.ideal_table()
            va, vk = ve[ia], ve[ik]
            if np.any(va - vk > 8 * np.finfo(float).eps * np.maximum(np.abs(va), np.abs(vk))):
                return math.inf
        E = 0.0
        if self.resistors:
            _, a, b, g = zip(*self.resistors)
            E += 0.5 * float(np.sum(np.array(g) * (ve[list(a)] - ve[list(b)]) ** 2))
        an, ca, Is, vte = self.diode_table()
        if an.size:
            vd = ve[an] - ve[ca]
            E += float(np.sum(diode_potential(vd, Is, vte) + 0.5 * self.gmin * vd * vd))
        for _, p, m, amps in self.isources:
            E -= amps * (ve[m] - ve[p])
        return E


def _finite(name: str, x: float, what: str) -> None:
    if not math.isfinite(x):
        raise CircuitError(f"{name}: {what} must be finite, got {x!r}")


#: Topologies of ``random_circuit``.
KINDS = ("graph", "grid", "ladder", "bridge")


def random_circuit(kind: str, n: int, *, seed: int = 0, rs: bool = False, gmin: float = GMIN,
                   ideal: bool = False) -> Circuit:
    """A random resistor–diode network with about ``n`` nodes (a test and benchmark case).

    graph: a random spanning tree of resistors plus ~n extra random branches (30 % diodes), n/50 voltage
    sources to ground (≥ 1) and n/50 current sources; grid: a √n × √n resistor mesh, a diode to ground at every
    third node, sources at two corners; ladder: series resistors, a diode and a resistor to ground at every rung;
    bridge: n/4 diode bridges fed by one source, each with its load. Resistors 100 Ω–10 kΩ (log-uniform), diodes
    IS 1e-15–1e-12 A, N 1–2, and ``RS`` 1–50 Ω when ``rs``. ``ideal``: each diode becomes an ideal diode from its
    anode's node to a rail at +0.1 V or from a rail at −0.1 V to it (one terminal fixed: a bound in ``graph``),
    the sources' voltages are scaled by 0.1, and a diode left between two forward-biased fixed potentials is dropped.
    """
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    ckt = Circuit(gmin=gmin)
    count = {"r": 0, "d": 0}
    vs = 0.1 if ideal else 1.0
    if ideal:
        ckt.add_vsource("vhi", "rhi", "0", 0.1)
        ckt.add_vsource("vlo", "rlo", "0", -0.1)

    def res(a, b):
        count["r"] += 1
        ckt.add_resistor(f"r{count['r']}", a, b, float(10 ** rng.uniform(2, 4)))

    def dio(a, b):
        count["d"] += 1
        if ideal:
            up = rng.uniform() < 0.5
            ckt.add_ideal_diode(f"d{count['d']}", a if up else "rlo", "rhi" if up else a)
            return
        ckt.add_diode(f"d{count['d']}", a, b, float(10 ** rng.uniform(-15, -12)), float(rng.uniform(1, 2)),
                      float(rng.uniform(1, 50)) if rs else 0.0)

    nm = lambda i: f"n{i}"  # noqa: E731
    if kind == "graph":
        for i in range(1, n):
            res(nm(i), nm(int(rng.integers(0, i))))
        for _ in range(n):
            i, j = (int(q) for q in rng.integers(0, n, 2))
            if i != j:
                (dio if rng.uniform() < 0.3 else res)(nm(i), nm(j))
        for k, i in enumerate(rng.choice(n, max(1, n // 50), replace=False)):
            ckt.add_vsource(f"v{k}", nm(int(i)), "0", vs * float(rng.uniform(-5, 5)))
        for k, i in enumerate(rng.choice(n, max(1, n // 50), replace=False)):
            ckt.add_isource(f"i{k}", "0", nm(int(i)), float(rng.uniform(-1e-3, 1e-3)))
    elif kind == "grid":
        m = max(2, int(round(n ** 0.5)))
        g = lambda r, c: nm(r * m + c)  # noqa: E731
        for r in range(m):
            for c in range(m):
                if c + 1 < m:
                    res(g(r, c), g(r, c + 1))
                if r + 1 < m:
                    res(g(r, c), g(r + 1, c))
                if (r * m + c) % 3 == 0:
                    dio(g(r, c), "0")
        ckt.add_vsource("v0", g(0, 0), "0", vs * 5.0)
        ckt.add_vsource("v1", g(m - 1, m - 1), "0", vs * -2.0)
    elif kind == "ladder":
        ckt.add_vsource("v0", nm(0), "0", vs * 3.0)
        for i in range(1, n):
            res(nm(i - 1), nm(i))
            dio(nm(i), "0")
            res(nm(i), "0")
    else:  # bridge
        ckt.add_vsource("v0", "in", "0", vs * 4.0)
        for b in range(max(1, n // 4)):
            p, q, o = f"p{b}", f"q{b}", f"o{b}"
            res("in", p)
            dio(p, o)
            dio(q, p)
            dio("0", o)
            dio(q, "0")
            res(o, q)
            res(q, "0")
    if ideal:
        fixed = np.zeros(len(ckt.nodes) + 1)  # ground last
        known = np.zeros(len(ckt.nodes) + 1, dtype=bool)
        known[-1] = True
        for _, p, _, volts in ckt.vsources:  # every source of random_circuit goes to ground
            fixed[p], known[p] = volts, True
        ckt.ideal = [e for e in ckt.ideal if not (known[e[1]] and known[e[2]] and fixed[e[1]] > fixed[e[2]])]
    return ckt
