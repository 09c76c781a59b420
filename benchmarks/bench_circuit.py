"""General networks: CD (``drn circuit``) against ngspice ``.op`` on the same deck. Run: ``make bench`` or
``python benchmarks/bench_circuit.py [--sizes 100 1000 10000] [--timeout 600] [--ablation 1024 10000]``.

Decks: ``cdsolver.circuit.random_circuit`` — ``graph`` (random spanning tree of resistors + n random branches,
30 % diodes, n/50 sources) and ``grid`` (√n × √n resistor mesh, a diode to ground at every third node, two
corner sources), seed 0; and DRNs (128-H-10, double Shockley) written as general decks (``general_deck``),
solved by the graph solver and by the layered one (best of 5 runs each). CD: graph set-up + sweeps with the
defaults (KCL tol 1e-14, Anderson 5, two-level correction after 20 sweeps). ``--ablation``: grids solved by plain
CD, Anderson CD and Anderson + two-level correction, each against ngspice. ngspice: one ``ngspice -b`` process,
tight tolerances (reltol 1e-12, vntol 1e-15, abstol 1e-18), deck's gmin (1e-12). Times: wall and CPU seconds
(CPU is robust to other load on the machine); rel L1 over the deck's nodes. Growth exponents: least-squares
slope of log CPU time against log n.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_solver import best  # benchmarks/ is the script's folder

from cdsolver import random_network, solve
from cdsolver.circuit import random_circuit
from cdsolver.graph import Graph, solve_circuit
from spice_bridge.netlist import circuit_deck, general_deck
from spice_bridge.parse import parse_deck
from spice_bridge.runners import ngspice_version, op_deck
from studies.circuit_cli import CHECK_OPTIONS


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cd_run(ckt, **kw):
    """(solution, wall s, CPU s, colours) of graph set-up + solve."""
    t, c = time.perf_counter(), time.process_time()
    g = Graph(ckt)
    sol = solve_circuit(g, **kw)
    return sol, time.perf_counter() - t, time.process_time() - c, len(g.colours)


def best_cpu(f):
    """(smallest CPU s of 5 calls of ``f``, its last result)."""
    return best(f, 5, time.process_time)


def ngspice_run(deck: Path, wd: Path, timeout: float):
    """(vectors or None, wall s, CPU s)."""
    c0 = _children_cpu()
    vec, wall, _, _, why = op_deck(deck, wd, options=CHECK_OPTIONS, timeout=timeout)
    return (vec if not why else None), wall, _children_cpu() - c0


def random_decks(sizes, timeout, wd):
    print("| deck | nodes | colours | CD sweeps | CD wall s | CD CPU s | ngspice wall s | ngspice CPU s | "
          "CPU speed-up | rel L1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    fits = {}
    for kind in ("graph", "grid"):
        for n in sizes:
            deck = wd / f"{kind}{n}.cir"
            deck.write_text(circuit_deck(random_circuit(kind, n, seed=0), title=f"bench {kind} {n}"))
            ckt = parse_deck(deck)
            sol, cw, cc, ncol = cd_run(ckt)
            vec, sw, sc = ngspice_run(deck, wd, timeout)
            v = sol.states[0][0, ckt.external]
            if vec is None:
                err, spd, sws, scs = "–", f"> {sc / cc:.0f}", f"> {timeout:.0f} (timeout)", f"≥ {sc:.1f}"
            else:
                ref = np.array([vec[f"v({m})"] for m in ckt.node_names()])
                err = f"{np.abs(v - ref).sum() / np.abs(ref).sum():.1e}"
                spd, sws, scs = f"{sc / cc:.1f}", f"{sw:.3f}", f"{sc:.3f}"
                fits.setdefault((kind, "ngspice"), []).append((n, sc))
            fits.setdefault((kind, "CD"), []).append((n, cc))
            conv = "" if sol.converged[0] else " (not converged)"
            print(f"| {kind} | {len(v)} | {ncol} | {sol.iterations[0]}{conv} | {cw:.3f} | {cc:.3f} | {sws} | {scs} | "
                  f"{spd} | {err} |", flush=True)
    print("\ngrowth exponents (CPU time ~ n^k):", ", ".join(
        f"{k[0]} {k[1]} k = {np.polyfit(np.log([p[0] for p in v]), np.log([p[1] for p in v]), 1)[0]:.2f}"
        for k, v in fits.items() if len(v) >= 2))


def drn_decks(widths):
    print("\n| DRN 128-H-10 as a deck, 1 sample | nodes | parse CPU s | graph set-up CPU s | graph CD sweeps | "
          "graph CD CPU s | layered CD CPU s | solve ratio | rel L1 graph vs ngspice |")
    print("|---|---|---|---|---|---|---|---|---|")
    x = np.random.default_rng(0).uniform(0, 1, (1, 64))
    for H in widths:
        net = random_network([128, H, 10], "shockley", seed=0, input_gain=40.0)
        v0 = net.encode(x)
        with tempfile.TemporaryDirectory(prefix="drn-bench-drn-") as wd:
            deck = Path(wd) / "drn.cir"
            deck.write_text(general_deck(net, v0[0]))
            c = time.process_time()
            ckt = parse_deck(deck)
            parse = time.process_time() - c
            setup, g = best_cpu(lambda: Graph(ckt))
            cc, sol = best_cpu(lambda: solve_circuit(g))
            lc, _ = best_cpu(lambda: solve(net, v0))
            vec, _, _ = ngspice_run(deck, Path(wd), 600.0)
        v = sol.states[0][0, ckt.external]
        ref = np.array([vec[f"v({m})"] for m in ckt.node_names()])
        print(f"| H = {H} | {len(v)} | {parse:.3f} | {setup:.4f} | {sol.iterations[0]} | {cc:.4f} | {lc:.4f} | "
              f"{cc / lc:.2f} | "
              f"{np.abs(v - ref).sum() / np.abs(ref).sum():.1e} |", flush=True)


def ablation(sizes, timeout, wd):
    """Grids: plain CD, Anderson CD, Anderson + two-level correction (the default), each against ngspice."""
    print("\n| grid | nodes | CD variant | sweeps | CD CPU s | rel L1 vs ngspice |")
    print("|---|---|---|---|---|---|")
    variants = {"plain CD": dict(anderson=0, coarse_after=-1), "Anderson 5": dict(coarse_after=-1),
                "Anderson 5 + two-level (default)": {}}
    for n in sizes:
        deck = wd / f"ablation{n}.cir"
        deck.write_text(circuit_deck(random_circuit("grid", n, seed=0), title=f"bench grid {n}"))
        ckt = parse_deck(deck)
        vec, _, _ = ngspice_run(deck, wd, timeout)
        if vec is None:
            print(f"| grid | {n} | ngspice did not finish in {timeout:g} s | | | |")
            continue
        ref = np.array([vec[f"v({m})"] for m in ckt.node_names()])
        for name, kw in variants.items():
            sol, _, cc, _ = cd_run(ckt, **kw)
            v = sol.states[0][0, ckt.external]
            conv = "" if sol.converged[0] else " (not converged)"
            print(f"| grid | {len(v)} | {name} | {sol.iterations[0]}{conv} | {cc:.3f} | "
                  f"{np.abs(v - ref).sum() / np.abs(ref).sum():.1e} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000], help="(none: DRN decks only)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per ngspice run (default: 600)")
    ap.add_argument("--widths", type=int, nargs="*", default=[64, 256, 1024], help="(none: no DRN decks)")
    ap.add_argument("--ablation", type=int, nargs="*", default=[1024], help="grid sizes (none: no ablation)")
    args = ap.parse_args()
    print(f"# bench_circuit: ngspice {ngspice_version()}, sizes {args.sizes}, timeout {args.timeout:g} s")
    with tempfile.TemporaryDirectory(prefix="drn-bench-circuit-") as wd:
        if args.sizes:
            random_decks(args.sizes, args.timeout, Path(wd))
        if args.ablation:
            ablation(args.ablation, args.timeout, Path(wd))
    if args.widths:
        drn_decks(args.widths)


if __name__ == "__main__":
    main()
