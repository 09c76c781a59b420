"""Ideal diodes between two unknown nodes (``cdsolver.active_set``): CD's answer equals an independent solution of
seed 001's constrained program and satisfies its KKT conditions; a hand-solved circuit; the CLI; the errors."""

import numpy as np
import pytest

from cdsolver.circuit import Circuit, CircuitError, diode_law, diode_potential
from cdsolver.graph import Graph, solve_circuit
from spice_bridge.netlist import circuit_deck
from spice_bridge.parse import parse_text
from reference import constrained_min
from studies.cli import main


def coupled_circuit(n: int, seed: int) -> Circuit:
    """Resistors (a random spanning tree and n more), Shockley diodes (every second one with RS = 10 Ω), two
    sources, a current source, rails at ±0.3 V with ideal diodes to them, and ideal diodes between unknown nodes:
    random pairs of both orientations, a chain, a series pair, a parallel pair, an antiparallel pair and a loop."""
    rng = np.random.default_rng(seed)
    c = Circuit()
    nm = [f"n{i}" for i in range(n)]
    for i in range(1, n):
        c.add_resistor(f"rt{i}", nm[i], nm[int(rng.integers(0, i))], float(10 ** rng.uniform(2, 4)))
    for k in range(n):
        i, j = rng.choice(n, 2, replace=False)
        c.add_resistor(f"rx{k}", nm[i], nm[j] if rng.uniform() < 0.7 else "0", float(10 ** rng.uniform(2, 4)))
    for k in range(n // 4):
        i, j = rng.choice(n, 2, replace=False)
        c.add_diode(f"dj{k}", nm[i], nm[j] if rng.uniform() < 0.5 else "0", float(10 ** rng.uniform(-15, -12)),
                    float(rng.uniform(1, 2)), 10.0 * (k % 2))
    c.add_vsource("v0", nm[0], "0", float(rng.uniform(0.5, 1.0)))
    c.add_vsource("v1", nm[1], "0", float(rng.uniform(-1.0, -0.5)))
    c.add_isource("i0", "0", nm[2], float(rng.uniform(-2e-4, 2e-4)))
    c.add_vsource("vhi", "rhi", "0", 0.3)
    c.add_vsource("vlo", "rlo", "0", -0.3)
    u = [nm[i] for i in rng.permutation(np.arange(2, n))]  # unknown nodes, shuffled
    ideal = [(u[0], "rhi"), ("rlo", u[1]), (u[2], "rhi")]
    ideal += [tuple(rng.choice(u, 2, replace=False)) for _ in range(n // 3)]  # random pairs, either way
    ideal += [(u[3], u[4]), (u[4], u[5]), (u[5], u[6])]  # a chain (series)
    ideal += [(u[7], u[8]), (u[7], u[8])]  # parallel
    ideal += [(u[9], u[10]), (u[10], u[9])]  # antiparallel
    ideal += [(u[11], u[12]), (u[12], u[13]), (u[13], u[11])]  # a loop
    for k, (a, b) in enumerate(ideal):
        c.add_ideal_diode(f"di{k}", a, b)
    return c


def program(ckt: Circuit):
    """Seed 001's program of a circuit whose voltage sources all go to ground, from its element tables (not
    cdsolver.graph): co-content (scaled to V²·S/S_max), its gradient and Hessian over the free nodes, and the ideal
    diodes as ``A x <= b``. Returns (fun, jac, hess, A, b, free mask, fixed potentials)."""
    N = len(ckt.nodes)
    vf, free = np.zeros(N + 1), np.ones(N + 1, dtype=bool)  # ground last
    free[N] = False
    for _, p, m, volts in ckt.vsources:
        assert m == -1
        vf[p], free[p] = volts, False
    R = np.array([(a % (N + 1), b % (N + 1), g) for _, a, b, g in ckt.resistors])
    ra, rb, rg = R[:, 0].astype(int), R[:, 1].astype(int), R[:, 2]
    da, dk, Is, vte = ckt.diode_table()
    da, dk = da % (N + 1), dk % (N + 1)
    src = [(p % (N + 1), m % (N + 1), amps) for _, p, m, amps in ckt.isources]
    scale = 1.0 / rg.max()
    pos = np.cumsum(free) - 1

    def full(x):
        v = vf.copy()
        v[free] = x
        return v

    def fun(x):
        v = full(x)
        vd = v[da] - v[dk]
        E = 0.5 * np.sum(rg * (v[ra] - v[rb]) ** 2) + np.sum(diode_potential(vd, Is, vte) + 0.5 * ckt.gmin * vd * vd)
        return scale * (E - sum(amps * (v[m] - v[p]) for p, m, amps in src))

    def jac(x):
        v = full(x)
        i_r = rg * (v[ra] - v[rb])
        vd = v[da] - v[dk]
        i_d = diode_law(vd, Is, vte)[0] + ckt.gmin * vd
        out = np.bincount(ra, i_r, N + 1) - np.bincount(rb, i_r, N + 1)
        out += np.bincount(da, i_d, N + 1) - np.bincount(dk, i_d, N + 1)
        for p, m, amps in src:
            out[p] += amps
            out[m] -= amps
        return scale * out[free]

    def hess(x):
        v = full(x)
        H = np.zeros((N + 1, N + 1))
        g_d = diode_law(v[da] - v[dk], Is, vte)[1] + ckt.gmin
        for a, b, g in list(zip(ra, rb, rg)) + list(zip(da, dk, g_d)):
            H[a, a] += g
            H[b, b] += g
            H[a, b] -= g
            H[b, a] -= g
        return scale * H[np.ix_(free, free)]

    rows, b = [], []
    for _, a, k in ckt.ideal:
        a, k = a % (N + 1), k % (N + 1)
        row = np.zeros(free.sum())
        if free[a]:
            row[pos[a]] += 1.0
        if free[k]:
            row[pos[k]] -= 1.0
        rows.append(row)
        b.append((0.0 if free[k] else vf[k]) - (0.0 if free[a] else vf[a]))
    return fun, jac, hess, np.array(rows), np.array(b), free[:N], vf[:N]


def reference(ckt: Circuit) -> np.ndarray:
    fun, jac, hess, A, b, free, vf = program(ckt)
    v = vf.copy()
    v[free] = constrained_min(fun, jac, hess, A, b, np.zeros(free.sum()))
    return v


@pytest.mark.parametrize("seed", range(6))
def test_coupled_ideal_diodes_match_the_constrained_program_and_kkt(seed):
    ckt = coupled_circuit(18, seed)
    ref = dict(zip(ckt.nodes, reference(ckt)))
    deck = parse_text(circuit_deck(ckt))  # through the deck flag D(IDEAL=1) and the parser
    assert sorted(deck.nodes) == sorted(ckt.nodes) and len(deck.ideal) == len(ckt.ideal)
    for c in (ckt, deck):
        g = Graph(c)
        assert g.coupled.size >= 10
        sol = solve_circuit(g).check()
        v = sol.states[0][0]
        assert np.abs(v - np.array([ref[m] for m in c.nodes])).max() <= 1e-10
        k = g.kkt(v)
        scale = 1e-12 * k["i_ref"]
        assert k["violation"] <= 1e-12 and max(k["kcl"], k["current"]) <= scale
        assert k["complementarity"] <= scale * max(np.abs(v).max(), 1.0)
        rec = sol.setup
        assert rec.kkt and len(rec.active) >= 3 and np.all(rec.currents >= -scale)
        assert rec.dropped >= (seed == 0)  # measured: 1-2 drops per circuit; seed 0 takes the drop path twice
    # the diodes are really in play: the answer without them violates some
    free = solve_circuit(Circuit(**{**ckt.__dict__, "ideal": []})).states[0][0]
    ve = np.append(free, 0.0)
    assert max(ve[a] - ve[k] for _, a, k in ckt.ideal) > 1e-3


@pytest.mark.parametrize("seed", [1, 3])
def test_coupled_ideal_diodes_with_floating_sources_satisfy_kkt(seed):
    c = coupled_circuit(30, seed)  # the reference takes grounded sources only: KKT here
    c.add_vsource("vf1", "n5", "n9", 0.2)
    c.add_vsource("vf2", "n12", "n3", -0.1)
    g = Graph(c)
    sol = solve_circuit(g).check()
    k = g.kkt(sol.states[0][0])
    assert k["violation"] <= 1e-12 and max(k["kcl"], k["current"]) <= 1e-12 * k["i_ref"]
    assert k["complementarity"] <= 1e-12 * k["i_ref"] * max(np.abs(sol.states[0]).max(), 1.0)
    assert sol.setup.kkt and sol.setup.dropped >= 1


def test_kkt_sees_a_wrong_answer():
    ckt = coupled_circuit(18, 0)
    g = Graph(ckt)
    sol = solve_circuit(g).check()
    v = sol.states[0][0]
    _, a, k = next(e for e in ckt.ideal if e[0] in sol.setup.active and min(g.coord[e[1]], g.coord[e[2]]) < g.n)
    up, down = v.copy(), v.copy()
    up[a] += 1e-6  # the conducting diode forward-biased
    down[a] -= 1e-6  # the diode let go: its current is missing from a's KCL
    assert g.kkt(up)["violation"] == pytest.approx(1e-6, rel=1e-6)
    kd = g.kkt(down)
    assert kd["violation"] == 0 and max(kd["kcl"], kd["current"]) > 1e-6 * kd["i_ref"]


def hand_circuit(v1: float, v2: float) -> Circuit:
    """V1 -1k- b, b -3k- 0; V2 -2k- k, k -4k- 0; an ideal diode from b to k."""
    c = Circuit()
    c.add_vsource("v1", "p", "0", v1)
    c.add_vsource("v2", "q", "0", v2)
    c.add_resistor("r1", "p", "b", 1e3)
    c.add_resistor("r3", "b", "0", 3e3)
    c.add_resistor("r2", "q", "k", 2e3)
    c.add_resistor("r4", "k", "0", 4e3)
    c.add_ideal_diode("d1", "b", "k")
    return c


@pytest.mark.parametrize("v1, v2", [(2.0, 0.5), (1.0, 3.0)])
def test_hand_checkable_diode_between_two_unknown_nodes(v1, v2):
    c = hand_circuit(v1, v2)
    v = solve_circuit(c).check().states[0][0]
    vb, vk = v1 * 3 / 4, v2 * 4 / 6  # the diode off: two dividers
    if vb > vk:  # forward biased: b = k, one node fed by both sources
        vb = vk = (v1 / 1e3 + v2 / 2e3) / (1 / 1e3 + 1 / 3e3 + 1 / 2e3 + 1 / 4e3)
    assert v[c.node("b")] == pytest.approx(vb, abs=1e-14) and v[c.node("k")] == pytest.approx(vk, abs=1e-14)
    rec = solve_circuit(c).setup
    if v1 == 2.0:  # forward: 2 V, 0.5 V -> 1.5 V vs 0.333 V; b = k = 2.25 mA / 2.0833 mS = 1.08 V
        assert vb == pytest.approx(1.08) and rec.active == ["d1"]
        assert rec.currents[0] == pytest.approx((v1 - vb) / 1e3 - vb / 3e3, rel=1e-12)
    else:  # reverse: 0.75 V vs 2 V
        assert vb < vk and rec.active == [] and rec.rounds == 1


def test_cli_solve_and_check_on_a_coupled_deck(tmp_path, capsys):
    deck = tmp_path / "c.cir"
    deck.write_text(circuit_deck(hand_circuit(2.0, 0.5)))
    assert main(["circuit", "solve", str(deck), "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as f:
        v = dict(zip(f["nodes"], f["v"]))
        assert bool(f["converged"])
    assert v["b"] == v["k"] == pytest.approx(1.08, abs=1e-14)
    assert main(["circuit", "check", str(deck)]) == 0
    out = capsys.readouterr().out
    assert "cannot compare with ngspice" in out and "KKT hold" in out


def test_not_converged_is_data_not_an_error():
    sol = solve_circuit(coupled_circuit(18, 0), max_sweeps=2)  # the first sub-problem stops at its sweep cap
    assert not sol.converged[0] and not sol.setup.kkt
    with pytest.raises(Exception, match="did not converge"):
        sol.check()


def test_unbounded_loops_are_errors():
    c = hand_circuit(2.0, 0.5)
    c.add_vsource("vf", "b", "m", 0.5)  # floating: v(b) = v(m) + 0.5
    c.add_resistor("r5", "m", "0", 1e3)
    c.add_ideal_diode("d2", "k", "m")  # v(b) <= v(k) <= v(m) = v(b) - 0.5
    with pytest.raises(CircuitError, match="unbounded current"):
        solve_circuit(c)
    c = hand_circuit(2.0, 0.5)
    c.add_ideal_diode("d2", "k", "rl")  # v(k) <= -1 V
    c.add_vsource("vl", "rl", "0", -1.0)
    c.add_ideal_diode("d3", "p", "b")  # v(b) >= 2 V, and v(b) <= v(k)
    with pytest.raises(CircuitError, match="unbounded current"):
        solve_circuit(c)
