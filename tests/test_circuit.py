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
