"""General networks: CD on any deck equals ngspice on the same deck; a layered network through the general path
equals the layered solver; plain CD never increases the co-content; bad circuits are clear errors."""

import csv

import numpy as np
import pytest

from cdsolver import random_network, solve
from cdsolver.circuit import Circuit, CircuitError, random_circuit
from cdsolver.graph import Graph, colouring, solve_circuit
from spice_bridge.netlist import circuit_deck, general_deck
from spice_bridge.parse import parse_deck, parse_text
from spice_bridge.runners import op_deck
from reference import box_qp
from studies.circuit_cli import CHECK_OPTIONS
from studies.cli import main

TOL = 1e-13  # CD's KCL tolerance in these tests (default 1e-12; the rounding floor of some decks is ~3e-14)


def rel_l1(v, ref):
    return np.abs(v - ref).sum() / np.abs(ref).sum()


def cd_and_ngspice(deck, workdir):
    ckt = parse_deck(deck)
    sol = solve_circuit(ckt, tol=TOL).check()
    vec, *_, why = op_deck(deck, workdir, options=CHECK_OPTIONS)
    assert not why, why
    return sol.states[0][0, ckt.external], np.array([vec[f"v({n})"] for n in ckt.node_names()])


CASES = [(kind, rs, gmin) for kind in ("graph", "grid", "ladder", "bridge") for rs, gmin in
         ((False, "default"), (True, "deck"), (kind in ("graph", "bridge"), "1e-9"))]


@pytest.mark.parametrize("kind, rs, gmin", CASES)
def test_cd_equals_ngspice_on_random_decks(ngspice, tmp_path, kind, rs, gmin):
    ckt = random_circuit(kind, 30, seed=len(kind) + rs, rs=rs, gmin=1e-9 if gmin == "1e-9" else 1e-12)
    deck = tmp_path / "d.cir"
    deck.write_text(circuit_deck(ckt, options=gmin != "default"))
    v, ref = cd_and_ngspice(deck, tmp_path)
    assert rel_l1(v, ref) <= 1e-12


def test_supernode_subcircuit_and_shorts_equal_ngspice(ngspice, tmp_path):
    deck = tmp_path / "s.cir"
    deck.write_text("""floating sources, a short, a current source, subcircuits
.param vf=0.7
.subckt cell a b
R1 a m 2k
D1 m b dm
R2 m b 10k
.ends
.model dm D(IS=2e-14 N=1.3 RS=3)
V1 in 0 3
Vf x y {vf}
L1 y z 1u
R1 in x 1k
R2 z 0 3k
R3 x 0 5k
I1 0 z 0.2m
X1 in x cell
X2 z 0 cell
D2 0 y dm
.end
""")
    v, ref = cd_and_ngspice(deck, tmp_path)
    assert rel_l1(v, ref) <= 1e-12
    names = parse_deck(deck).node_names()
    assert v[names.index("x")] - v[names.index("y")] == pytest.approx(0.7, abs=1e-15)
    assert v[names.index("y")] == v[names.index("z")]


@pytest.mark.parametrize("body", [
    "V1 vcc 0 5\nR1 vcc a 150\nD1 a b led\nD2 b 0 led\n.model led D(IS=1e-20 N=1.8 RS=2)\n",  # two LEDs
    "V1 a 0 1\nD1 a b dm\nD2 b 0 dm\n.model dm D(RS=10)\n",
    "V1 a 0 3\nD1 a b dm\nD2 b c dm\nD3 c 0 dm\nD4 b 0 dm\n.model dm D(IS=1e-15 RS=5)\n"])
def test_nodes_joined_only_by_diodes_with_rs_equal_ngspice(ngspice, tmp_path, body):
    """A node between diodes with RS (each one branch, its junction's gmin inside) has no linear conductance: it
    was refused as if gmin were 0. Its update now brackets the root from its neighbours."""
    deck = tmp_path / "d.cir"
    deck.write_text("series diodes with RS\n" + body + ".end\n")
    v, ref = cd_and_ngspice(deck, tmp_path)
    assert rel_l1(v, ref) <= 1e-12


@pytest.mark.parametrize("anderson, tol", [(0, 1e-12), (None, TOL)])  # (plain CD stalls at 1.07e-13 here)
def test_a_start_whose_residual_is_nan_is_solved_as_ngspice_solves_it(ngspice, tmp_path, anderson, tol):
    """A floating 30 V source between two diodes (review helper-55): at the all-zero start the two junctions are
    forward-biased by 30 V, +inf and -inf at one node, so the start's KCL residual is NaN though the sweep is
    finite. The layered solver's stop for samples with non-finite drives stopped it after one sweep (states at
    the start, not converged); Anderson's restart took its 'best state', NaN, and raised IndexError."""
    deck = tmp_path / "d.cir"
    deck.write_text("floating source\nV1 p q 30\nV3 z 0 30\nD1 p m1 dm\nD2 z q dm\nR1 m1 0 1k\n.model dm D\n.end\n")
    ckt = parse_deck(deck)
    g = Graph(ckt)
    with np.errstate(all="ignore"):
        assert np.isnan(g.kcl(np.zeros(g.n))).any()
    kw = {} if anderson is None else {"anderson": anderson}
    sol = solve_circuit(ckt, tol=tol, **kw).check()
    vec, *_, why = op_deck(deck, tmp_path, options=CHECK_OPTIONS)
    assert not why, why
    ref = np.array([vec[f"v({n})"] for n in ckt.node_names()])
    assert rel_l1(sol.states[0][0, ckt.external], ref) <= 1e-12


def test_a_current_source_into_diodes_with_rs_only():
    """Nodes without a linear conductance, driven by a current source alone: the drive was added to an integer
    array (numpy's sum over no branches) and lost, every potential 0. D2 and D3 are alike, so v(c) = v(b)/2;
    (ngspice needs its transient fallback here and lands 1e-5 V away)."""
    ckt = parse_text("t\nI1 0 a 1m\nD1 a b dm\nD2 b c dm\nD3 c 0 dm\nD4 b 0 dm\n.model dm D(IS=1e-15 RS=5)\n")
    g = Graph(ckt)
    sol = solve_circuit(g, tol=TOL).check()
    v = dict(zip(ckt.nodes, sol.states[0][0]))
    assert v["a"] > v["b"] > v["c"] > 0.3 and v["c"] == pytest.approx(v["b"] / 2, rel=1e-15)
    assert np.abs(g.kcl(g.coordinates(sol.states[0][0]))).max() <= 1e-16  # A, against the source's 1 mA


@pytest.mark.parametrize("tol", [1e-12, 1e-13])
def test_a_deck_whose_rounding_floor_sets_i_ref_stops(tol):
    """Where the float64 floor set ``I_ref``, the bound that decides when to compute it left the floor out: it was
    never computed before the cap, and the solve ran 10,000 sweeps (here 11)."""
    ckt = parse_text("t\nV1 a 0 1\nR1 a b 1k\nD1 b c dm\nD2 c d dm\nD4 d 0 dm\n.model dm D(RS=10)\n")
    sol = solve_circuit(ckt, tol=tol)
    assert sol.converged.all() and sol.iterations[0] <= 30


@pytest.mark.parametrize("volts, Is", [(1e-5, 1e-5), (1e-4, 1e-3), (0.01, 0.01)])
def test_a_large_is_near_0_v_converges_at_the_default_tolerance(ngspice, tmp_path, volts, Is):
    """``Is·(e^x - 1)`` near 0 V: the rounding of its two terms (``Is``) is far above the current it leaves,
    which alone set the residual's scale: 10,000 sweeps and exit 3 where 2 sweeps reach the exact state."""
    deck = tmp_path / "d.cir"
    deck.write_text(f"t\nV1 a 0 {volts}\nR1 a b 1k\nD1 b 0 dm\n.model dm D(IS={Is})\n.end\n")
    sol = solve_circuit(parse_deck(deck))
    assert sol.converged.all() and sol.iterations[0] <= 5
    vec, *_, why = op_deck(deck, tmp_path, options=CHECK_OPTIONS)
    assert sol.states[0][0, 1] == pytest.approx(vec["v(b)"], rel=1e-11, abs=1e-17)


@pytest.mark.parametrize("body, words", [
    ("V1 a 0 1\nD1 a b dm\nD2 b 0 dm\n.model dm D(RS=10)\n.options gmin=0\n", "only through diodes and gmin = 0"),
    ("V1 a 0 1\nD1 a b dm\nD2 b 0 dm\nD3 b 0 di\n.model dm D(RS=10)\n.model di D(IDEAL=1)\n",
     "only through diodes with RS and ideal diodes")])
def test_a_node_without_conductance_is_refused_where_cd_cannot_update_it(body, words):
    with pytest.raises(CircuitError, match=words):
        Graph(parse_text("t\n" + body))


def test_deck_features_fixed_in_the_parser_equal_ngspice(ngspice, tmp_path):
    """Model expressions with parentheses, left-associative powers, '$'/'//' comments, .param/.model inside
    .subckt (ngspice: instance values override them; models local), X ... params:, defaults that depend on an
    overridden parameter, a nested instance that sees its parent's parameters: CD equals ngspice's operating point."""
    deck = tmp_path / "f.cir"
    deck.write_text("""parser features
.param g=1k r2=500 q=1k e={2^3^2}
.model dm D(IS={1e-14*(1+1)} N={2*(0.5+0.25)} RS='2*(1+1)')
.subckt s a b params: r=1k r2={2*r}
.param r3={r2+g}
.model dm D(IS=1e-10)
R1 a m {r3}
D1 m b dm
.ends
.subckt inner a b
R1 a b {q*2}
.ends
.subckt outer a b params: q=3k
X1 a b inner
.ends
V1 in 0 2 $comment
R0 in m0 {e*10}//comment
X1 m0 m1 s r=5k
X2 m1 m2 s
X3 m2 m3 s params: r3=7k
X4 m3 m4 s r={r2}
X5 m4 0 outer
D6 m0 0 dm
.end
""")
    v, ref = cd_and_ngspice(deck, tmp_path)
    assert rel_l1(v, ref) <= 1e-12

def test_layered_network_through_the_general_path_equals_the_layered_solver():
    net = random_network([6, 5, 4, 3], "linear", seed=2, bias=0.1, input_gain=3.0, g_mean=1.0)
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (3, 3)))
    ref = solve(net, v0, tol=TOL).check()
    for k in range(len(v0)):
        ckt = parse_text(general_deck(net, v0[k]))
        v = solve_circuit(ckt, tol=TOL).check().states[0][0]
        names = ckt.nodes
        got = np.concatenate([[v[names.index(f"n{l}_{j}")] for j in range(net.sizes[l])]
                              for l in range(1, net.depth + 1)])
        want = np.concatenate([s[k] for s in ref.states])
        assert rel_l1(got, want) <= 1e-12


def test_shockley_network_from_network_decks_equal_ngspice(ngspice, tmp_path):
    net = random_network([4, 6, 3], "shockley", seed=1, input_gain=2.0)
    from cdsolver.network import save_network

    save_network(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(0, 1, (2, 2)))
    assert main(["circuit", "from-network", str(tmp_path / "net.npz"), str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "decks")]) == 0
    for k in range(2):
        v, ref = cd_and_ngspice(tmp_path / "decks" / f"sample{k}.cir", tmp_path)
        assert rel_l1(v, ref) <= 1e-12


def test_long_grid_equals_ngspice_with_the_coarse_correction(ngspice, tmp_path):
    # 32 x 32 grid: plain/Anderson CD stopped on KCL at 5.9e-12 of ngspice after 872 sweeps (ill-conditioned mesh)
    deck = tmp_path / "grid.cir"
    deck.write_text(circuit_deck(random_circuit("grid", 1024, seed=0)))
    ckt = parse_deck(deck)
    sol = solve_circuit(ckt).check()  # the defaults: two-level correction after 20 sweeps, step test
    vec, *_, why = op_deck(deck, tmp_path, options=CHECK_OPTIONS)
    assert not why, why
    ref = np.array([vec[f"v({n})"] for n in ckt.node_names()])
    assert rel_l1(sol.states[0][0, ckt.external], ref) <= 1e-12
    assert sol.iterations[0] <= 150


@pytest.mark.parametrize("kind, rs", [("graph", False), ("grid", True), ("bridge", True)])
def test_plain_cd_never_increases_the_co_content(kind, rs):
    ckt = random_circuit(kind, 16, seed=5, rs=rs)
    g = Graph(ckt)
    xe = np.zeros(g.n + 1)  # the coordinates and the fixed entry 0, as a sweep sees them
    E = [ckt.energy(g.voltages(xe[:-1]))]
    for _ in range(15):
        for blk in g.blocks:  # every exact block update
            blk.update(xe)
            E.append(ckt.energy(g.voltages(xe[:-1])))
    assert np.all(np.diff(E) <= 1e-13 * np.abs(E[1:])), np.diff(E)
    assert E[-1] < E[0]


def test_colouring_is_proper_and_two_colours_a_grid():
    ckt = random_circuit("grid", 49, seed=0)
    g = Graph(ckt)
    assert len(g.colours) == 2
    A = g._adjacency(*([np.zeros(0, dtype=np.int64)] * 2))
    for cols in (colouring(A), g.colours):
        lab = np.empty(g.n, dtype=int)
        for c, S in enumerate(cols):
            lab[S] = c
        i, j = A.nonzero()
        assert np.all(lab[i] != lab[j])
    assert len(Graph(random_circuit("graph", 200, seed=0)).colours) > 2


def test_floating_node_and_source_loop_are_errors():
    c = Circuit()
    c.add_vsource("v1", "a", "0", 1.0)
    c.add_resistor("r1", "a", "0", 1e3)
    c.add_resistor("r2", "f1", "f2", 1e3)
    c.add_isource("i1", "0", "f1", 1e-3)
    with pytest.raises(CircuitError, match="node f1 has no DC path to ground"):
        Graph(c)
    c = Circuit()
    c.add_vsource("v1", "a", "0", 1.0)
    c.add_vsource("v2", "a", "0", 2.0)
    with pytest.raises(CircuitError, match="v2 closes a loop of voltage sources"):
        Graph(c)


def test_cli_solve_writes_named_voltages_and_bad_decks_exit_2(tmp_path, capsys):
    deck = tmp_path / "d.cir"
    deck.write_text("divider\nV1 in 0 2\nR1 in m 1k\nR2 m 0 3k\n.op\n.end\n")
    assert main(["circuit", "solve", str(deck), "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as f:
        assert list(f["nodes"]) == ["in", "m"] and bool(f["converged"])
        assert f["v"] == pytest.approx([2.0, 1.5], rel=1e-14)
    deck.write_text("bad\nV1 in 0 2\nR1 in m 1k\nM1 m in 0 0 nmos\n")
    assert main(["circuit", "solve", str(deck), "--out", str(tmp_path / "s.npz")]) == 2
    assert f"{deck}:4: element m1 (MOSFET) is not supported" in capsys.readouterr().err


def test_cli_check_writes_a_csv_row(ngspice, tmp_path, capsys):
    deck = tmp_path / "d.cir"
    deck.write_text(circuit_deck(random_circuit("ladder", 10, seed=1)))
    assert main(["circuit", "check", str(deck), "--out", str(tmp_path / "out"), "--tol", "1e-14"]) == 0
    assert "relative L1" in capsys.readouterr().out
    with open(tmp_path / "out" / "check.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["rel_l1"]) <= 1e-12 and row["converged"] == "True" and row["options"] == "tight"
    # a divider: one node of two is fixed by the source; the second L1 is over the solved one only
    deck.write_text("divider\nV1 in 0 20\nR1 in m 1k\nR2 m 0 3k\n.op\n.end\n")
    assert main(["circuit", "check", str(deck), "--out", str(tmp_path / "out2")]) == 0
    assert "over the 1 node CD solves" in capsys.readouterr().out
    with open(tmp_path / "out2" / "check.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["nodes"] == "2" and row["solved_nodes"] == "1" and float(row["rel_l1_solved"]) <= 1e-14
    assert float(row["rel_l1"]) <= float(row["rel_l1_solved"]) or float(row["rel_l1_solved"]) == 0.0


def circuit_qp(ckt):
    """Seed 001's QP of a resistor / ideal-diode / source circuit whose voltage sources all go to ground, built
    from its element tables (not cdsolver.graph) and solved by ``reference.box_qp``. Returns (potentials v (V) of
    every node, free-node mask, bounds lo, hi of the free nodes (V), KCL of the free nodes without the diodes)."""
    N = len(ckt.nodes)
    vf = np.zeros(N + 1)  # ground last
    free = np.ones(N + 1, dtype=bool)
    free[N] = False
    for _, p, m, volts in ckt.vsources:
        assert m == -1
        vf[p], free[p] = volts, False
    L = np.zeros((N + 1, N + 1))
    for _, a, b, g in ckt.resistors:
        a, b = a % (N + 1), b % (N + 1)
        L[a, a] += g
        L[b, b] += g
        L[a, b] -= g
        L[b, a] -= g
    inj = np.zeros(N + 1)
    for _, p, m, amps in ckt.isources:
        inj[p] -= amps
        inj[m] += amps
    Lff = L[np.ix_(free, free)]
    rhs = inj[free] - L[np.ix_(free, ~free)] @ vf[~free]
    pos = np.cumsum(free) - 1
    lo, hi = np.full(free.sum(), -np.inf), np.full(free.sum(), np.inf)
    for _, a, k in ckt.ideal:
        a, k = a % (N + 1), k % (N + 1)
        if free[a]:
            hi[pos[a]] = min(hi[pos[a]], vf[k])
        elif free[k]:
            lo[pos[k]] = max(lo[pos[k]], vf[a])
    x = box_qp(lambda x: 0.5 * x @ Lff @ x - rhs @ x, lambda x: Lff @ x - rhs, lambda x: (Lff @ x - rhs, Lff),
               lo, hi, np.clip(np.zeros(lo.size), lo, hi))
    v = vf.copy()
    v[free] = x
    return v[:N], free[:N], lo, hi, lambda x: Lff @ x - rhs


@pytest.mark.parametrize("kind, seed", [("graph", 1), ("graph", 2), ("grid", 2), ("grid", 3)])
def test_ideal_diodes_match_the_qp_and_satisfy_kkt(tmp_path, kind, seed):
    ckt = random_circuit(kind, 60, seed=seed, ideal=True)
    deck = tmp_path / "ideal.cir"
    deck.write_text(circuit_deck(ckt))  # through the deck flag D(IDEAL=1) and the parser
    ckt = parse_deck(deck)
    assert ckt.ideal and not ckt.diodes
    sol = solve_circuit(ckt).check()  # the default tol (1e-14)
    v = sol.states[0][0]
    ref, free, lo, hi, kcl = circuit_qp(ckt)
    assert rel_l1(v, ref) <= 1e-12
    # KKT at CD's solution, from the QP's own KCL: feasibility, KCL where no diode conducts, currents >= 0,
    # complementarity (a diode carries current only at 0 V across it)
    x = v[free]
    r = kcl(x)  # current leaving each free node through resistors and sources; its diodes carry -r
    scale = 1e-12 * sol.i_ref[0]
    assert np.all((x >= lo) & (x <= hi))
    at_hi, at_lo = x == hi, x == lo
    inner = ~(at_hi | at_lo)
    assert np.all(np.abs(r[inner]) <= scale)
    assert np.all(r[at_hi] <= scale) and np.all(r[at_lo] >= -scale)
    assert (at_hi | at_lo).sum() >= 2  # the diodes are really in play
    k = Graph(ckt).kkt(v)
    assert k["violation"] == 0 and max(k["kcl"], k["current"]) <= scale and k["complementarity"] <= scale


def test_ideal_diode_deck_check_uses_kkt_not_ngspice(tmp_path, capsys):
    deck = tmp_path / "i.cir"
    deck.write_text("clamp\nV1 in 0 2\nVr r 0 0.5\nR1 in m 1k\nR2 m 0 1k\nD1 m r di\n"
                    ".model di D(IDEAL=1)\n.op\n.end\n")
    assert main(["circuit", "check", str(deck)]) == 0
    out = capsys.readouterr().out
    assert "cannot compare with ngspice" in out and "KKT hold" in out
    assert main(["circuit", "solve", str(deck), "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as f:
        assert f["v"][list(f["nodes"]).index("m")] == 0.5  # clamped: 1 V unclamped


def test_ideal_diode_errors():
    c = Circuit()
    c.add_vsource("v1", "a", "0", 1.0)
    c.add_resistor("r1", "a", "b", 1e3)
    c.add_resistor("r2", "b", "c", 1e3)
    c.add_resistor("r3", "c", "0", 1e3)
    c.add_ideal_diode("d1", "b", "c")  # two unknown nodes: conducts, b = c = 0.5 V (tests/test_ideal_coupled.py)
    assert solve_circuit(c).check().states[0][0] == pytest.approx([1.0, 0.5, 0.5], abs=1e-15)
    c.add_vsource("v2", "c", "m", -0.5)  # v(b) <= v(c) = v(m) - 0.5 and an ideal diode m -> b: v(m) <= v(b)
    c.add_resistor("r4", "m", "0", 1e3)
    c.add_ideal_diode("d5", "m", "b")
    with pytest.raises(CircuitError, match="loop of ideal diodes and sources .* unbounded current"):
        solve_circuit(c)
    c.ideal = [("d2", c.node("a"), -1)]
    with pytest.raises(CircuitError, match="ideal diode d2 is forward-biased by 1 V"):
        Graph(c)
    c.ideal = [("d3", c.node("b"), -1), ("d4", c.node("a"), c.node("b"))]  # b <= 0 and b >= 1
    with pytest.raises(CircuitError, match="hold node b above 1 V and below 0 V"):
        Graph(c)
    with pytest.raises(Exception, match="an ideal diode \\(IDEAL=1\\) takes no IS, N or RS"):
        parse_text("t\nV1 a 0 1\nR1 a b 1k\nD1 b 0 di\n.model di D(IDEAL=1 RS=2)\n")
