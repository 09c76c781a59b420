"""``drn circuit``: a SPICE deck of any topology (the DC subset of ``spice_bridge.parse``) solved by exact
coordinate descent (``cdsolver.graph``), checked against ngspice on the same deck, and layered networks
written as such decks."""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cdsolver.constants import ANDERSON, CIRCUIT_COARSE_AFTER, CIRCUIT_MAX_SWEEPS, CIRCUIT_TOL
from cdsolver.validation import MAX_TIMEOUT

from .verify import P90_TOL

#: Tight ngspice tolerances added by ``check`` (docs/spice.md); gmin stays the deck's own.
CHECK_OPTIONS = ".options reltol=1e-12 vntol=1e-15 abstol=1e-18"
CSV_FIELDS = ["deck", "nodes", "rel_l1", "solved_nodes", "rel_l1_solved", "max_abs_dv", "cd_s", "sweeps", "converged",
              "ngspice_s", "ngspice_analysis_s", "ngspice_iterations", "speedup", "options"]


def add_parser(sub) -> None:
    """Register ``drn circuit solve|check|from-network``."""
    p = sub.add_parser("circuit", help="any resistor-diode-source SPICE deck: CD solve, check against ngspice",
                       description="General networks: read a SPICE deck (DC subset: R, D, V, I, C, L, X, .param, "
                                   ".subckt, .include, .options gmin; docs/circuits.md), solve its DC operating "
                                   "point by exact coordinate descent, compare with ngspice on the same deck.")
    cs = p.add_subparsers(dest="circuit_command", required=True, metavar="ACTION")
    q = cs.add_parser("solve", help="CD operating point of a deck",
                      description="Writes nodes (names, lower case; subcircuit nodes x1.n), v (V), iterations, "
                                  "residual (A), i_ref (A), converged. Exit 3 if not converged.")
    q.add_argument("deck", metavar="DECK.cir", help="the SPICE deck to solve")
    q.add_argument("--out", required=True, metavar="S.npz", help="results file (.npz, replaced if it exists)")
    _solver_args(q)
    q.set_defaults(func=cmd_solve)
    q = cs.add_parser("check", help="CD and ngspice on the same deck: errors, times, speed-up",
                      description="Runs ngspice's .op on the deck (tight tolerances added unless --keep-options) and "
                                  "CD; prints relative L1 (over all nodes, and over the nodes CD solves: without "
                                  "those voltage sources fix), max |dv|, both times and the speed-up; appends a CSV "
                                  "row to DIR/check.csv (--out) or prints it; exits 1 if the two disagree (--max-rel), "
                                  "3 if CD did not converge or ngspice found no operating point (with the tight "
                                  "tolerances, try --keep-options). A deck with ideal diodes (D(IDEAL=1)) "
                                  "cannot be compared with ngspice: its KKT conditions are checked instead (exit 1 "
                                  "if they fail).")
    q.add_argument("deck", metavar="DECK.cir", help="the SPICE deck to solve with CD and ngspice")
    q.add_argument("--out", metavar="DIR",
                   help="folder (created if missing) for ngspice's deck <name>.op.cir and raw file <name>.op.raw "
                        "(both replaced) and check.csv (a row appended); default: a temporary folder, removed "
                        "unless an ngspice error names its deck, and the row printed. Decks with ideal diodes "
                        "write nothing")
    q.add_argument("--keep-options", action="store_true", help="run ngspice with the deck's own options only")
    q.add_argument("--max-rel", type=float, metavar="TOL",
                   help=f"exit 1 if the relative L1 error over the nodes CD solves exceeds TOL (default: "
                        f"{P90_TOL:g}, drn verify's; none with --keep-options, where ngspice's own tolerances "
                        f"decide its accuracy; decks with ideal diodes are checked by their KKT conditions instead)")
    q.add_argument("--timeout", type=float, default=600.0,
                   help=f"seconds for ngspice, at most {MAX_TIMEOUT:g} (default: 600)")
    _solver_args(q)
    q.set_defaults(func=cmd_check)
    q = cs.add_parser("from-network", help="write a layered network's samples as general decks",
                      description="One .op deck per sample (sample<k>.cir) that drn circuit and ngspice read: "
                                  "Shockley elements as built-in D diodes, the free phase's switch as R_off. "
                                  "Networks of linear or shockley elements without amplifiers only: amplifiers "
                                  "need E/F sources and pwl elements B sources, which drn circuit does not read, "
                                  "and ngspice has no ideal diode. Decks of an earlier run in DIR are replaced; "
                                  "a DIR holding sample<k>.cir decks this run would not replace (an earlier run "
                                  "had more samples) is refused, so that old and new decks never mix.")
    q.add_argument("network", metavar="NET.npz", help="network file (format drn/1): linear or shockley elements, "
                                                      "no amplifiers")
    q.add_argument("inputs", metavar="X.npy", help="features (batch, n_features); --encoded: v0 (batch, n_0), V")
    q.add_argument("--encoded", action="store_true", help="X already holds the input voltages v0")
    q.add_argument("--out", required=True, metavar="DIR",
                   help="folder (created if missing) for the decks sample0.cir ... sample<batch-1>.cir")
    q.set_defaults(func=cmd_from_network)


def _solver_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--tol", type=float, default=CIRCUIT_TOL,
                   help=f"stop when max|KCL| <= tol * largest branch current (default: {CIRCUIT_TOL:g})")
    q.add_argument("--max-iter", type=int, default=CIRCUIT_MAX_SWEEPS,
                   help=f"sweep cap (default: {CIRCUIT_MAX_SWEEPS})")
    q.add_argument("--anderson", type=int, default=ANDERSON, help=f"Anderson depth, 0 = plain CD (default: {ANDERSON})")
    q.add_argument("--coarse-after", type=int, default=CIRCUIT_COARSE_AFTER, metavar="N",
                   help=f"sweeps before the two-level correction joins every sweep, -1 = never "
                        f"(default: {CIRCUIT_COARSE_AFTER})")


def _check_solver_args(args) -> None:
    """``--tol``, ``--max-iter``, ``--anderson`` (``cli.check_solver_options``, as ``drn solve``) and
    ``--coarse-after``: one line naming the option, before the deck is read."""
    from .cli import CliError, check_solver_options

    check_solver_options(args)
    if args.coarse_after < -1:
        raise CliError(f"--coarse-after must be >= -1 (-1 = never), got {args.coarse_after}")


def _solve(args):
    """(circuit, solution, CD seconds: graph set-up + sweeps, graph) of the deck."""
    from cdsolver.graph import Graph, solve_circuit
    from spice_bridge.parse import parse_deck

    from .cli import CliError

    if Path(args.deck).is_dir():
        raise CliError(f"deck {args.deck} is a folder, not a deck file")
    if not Path(args.deck).is_file():
        raise CliError(f"deck not found: {args.deck}")
    try:
        ckt = parse_deck(args.deck)
    except OSError as e:  # the deck itself (parse_deck reports included files)
        raise CliError(f"cannot read deck {args.deck} ({e.strerror or e})") from None
    if not ckt.node_names():
        raise CliError(f"deck {args.deck} has no node but ground (0): nothing to solve")
    t0 = time.perf_counter()
    g = Graph(ckt)
    sol = solve_circuit(g, tol=args.tol, max_sweeps=args.max_iter, anderson=args.anderson,
                        coarse_after=args.coarse_after)
    return ckt, sol, time.perf_counter() - t0, g


def cmd_solve(args) -> int:
    import numpy as np  # imported where used: ``drn --help`` loads this module (studies/cli.py)

    from cdsolver.files import atomic_write, check_out

    from .cli import EXIT_NOT_CONVERGED, save_or_rescue

    _check_solver_args(args)
    check_out(args.out, inputs=(args.deck,))
    ckt, sol, wall, _ = _solve(args)
    v = sol.states[0][0, ckt.external]

    def save(path: str | Path) -> None:
        with atomic_write(path) as f:
            np.savez(f, nodes=np.array(ckt.node_names(), dtype=str), v=v, iterations=sol.iterations[0],
                     residual=sol.residual[0], i_ref=sol.i_ref[0], converged=sol.converged[0])

    save_or_rescue(save, args.out)
    print(f"{args.deck}: {len(v)} nodes; {'converged' if sol.converged[0] else 'NOT converged'} in "
          f"{sol.iterations[0]} sweeps, residual/I_ref {sol.residual[0] / max(sol.i_ref[0], 1e-300):.2e}; "
          f"{wall:.4f} s{_rounds(sol)}; wrote {args.out}")
    return 0 if sol.converged[0] else EXIT_NOT_CONVERGED


def cmd_check(args) -> int:
    import numpy as np

    from cdsolver.files import check_out
    from cdsolver.validation import check_timeout
    from spice_bridge.runners import op_deck

    from .cli import EXIT_NOT_CONVERGED, CliError

    timeout = check_timeout(args.timeout, "--timeout")
    limit = args.max_rel if args.max_rel is not None else (None if args.keep_options else P90_TOL)
    if limit is not None and not 0 < limit < math.inf:
        raise CliError(f"--max-rel must be a positive number, got {limit:g}")
    _check_solver_args(args)
    own = args.out is None
    if not own:
        check_out(args.out, folder=True)
        if Path(args.out).is_dir():
            stem = Path(args.deck).stem
            for name in ("check.csv", f"{stem}.op.cir", f"{stem}.op.raw"):
                check_out(str(Path(args.out) / name))
    ckt, sol, cd_s, g = _solve(args)
    if ckt.ideal:
        return _check_kkt(args, sol, g, cd_s)
    wd = Path(tempfile.mkdtemp(prefix="drn-circuit-") if own else args.out)
    try:
        vec, sp_s, sp_an, sp_it, why = op_deck(args.deck, wd, options=None if args.keep_options else CHECK_OPTIONS,
                                               timeout=timeout)
    except BaseException:
        if own:
            shutil.rmtree(wd, ignore_errors=True)
        raise
    if why and "could not read deck" in why:
        raise CliError(why)  # it names ngspice's deck: kept, in a temporary folder too
    if why:  # ngspice failed on the circuit: a solver's failure, not the user's input (exit 3)
        hint = "" if args.keep_options else (f"; ngspice ran with check's tight options ({CHECK_OPTIONS[9:]}): "
                                             "--keep-options runs it with the deck's own")
        print(f"{args.deck}: ngspice failed, nothing compared: {why}{hint}", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    if own:
        shutil.rmtree(wd)
    names = ckt.node_names()
    missing = [n for n in names if f"v({n})" not in vec]
    if missing:
        raise CliError(f"ngspice wrote no voltage for node(s) {', '.join(missing[:5])}")
    ref = np.array([vec[f"v({n})"] for n in names])
    v = sol.states[0][0, ckt.external]
    solved = g.coord[ckt.external] < g.n  # (the others are fixed by voltage sources: the same in both engines)
    with np.errstate(invalid="ignore", over="ignore"):  # (inf - inf where both overflow: NaN, reported as such)
        err = np.abs(v - ref)
        rel, rel_solved = (float(err[m].sum() / (np.abs(ref)[m].sum() + 1e-12)) for m in (slice(None), solved))
    dv = float(err.max(initial=0.0))
    k = int(solved.sum())
    row = dict(deck=args.deck, nodes=len(names), rel_l1=f"{rel:.3e}", solved_nodes=k,
               rel_l1_solved=f"{rel_solved:.3e}", max_abs_dv=f"{dv:.3e}", cd_s=f"{cd_s:.6f}",
               sweeps=int(sol.iterations[0]), converged=bool(sol.converged[0]), ngspice_s=f"{sp_s:.6f}",
               ngspice_analysis_s=f"{sp_an:.6f}", ngspice_iterations=sp_it, speedup=f"{sp_s / cd_s:.2f}",
               options="deck" if args.keep_options else "tight")
    print(f"{args.deck}: {len(names)} nodes; relative L1 {rel:.3e} ({rel_solved:.3e} over the {k} node"
          f"{'' if k == 1 else 's'} CD solves, without those voltage sources fix), max |dv| {dv:.3e} V; CD "
          f"{cd_s:.4f} s "
          f"({sol.iterations[0]} sweeps{'' if sol.converged[0] else ', NOT converged'}); ngspice {sp_s:.4f} s "
          f"(process; analysis {sp_an:.3f} s, {sp_it} iterations); speed-up {sp_s / cd_s:.1f}x")
    agree = limit is None or rel_solved <= limit  # (NaN: False)
    if not agree:
        print(f"{args.deck}: CD and ngspice DISAGREE: relative L1 {rel_solved:.3e} over the nodes CD solves > "
              f"--max-rel {limit:g}")
    if own:
        w = csv.DictWriter(sys.stdout, CSV_FIELDS)
        w.writeheader()
        w.writerow(row)
    else:
        path = wd / "check.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)
        print(f"wrote {path}")
    return EXIT_NOT_CONVERGED if not sol.converged[0] else 0 if agree else 1


#: ``check`` on an ideal-diode deck passes when KCL and the diode currents' signs hold to this times I_ref.
KKT_TOL = 1e-12


def _check_kkt(args, sol, g, cd_s) -> int:
    """``check`` of a deck with ideal diodes: ngspice has none, so CD's solution is checked against the KKT
    conditions of the ideal diodes' QP (``Graph.kkt``): feasibility, KCL, currents >= 0, complementarity."""
    import numpy as np

    from .cli import EXIT_NOT_CONVERGED

    k = g.kkt(sol.states[0][0])
    iref = max(k["i_ref"], 1e-300)
    ok = (k["violation"] <= 0.0 and k["kcl"] <= KKT_TOL * iref and k["current"] <= KKT_TOL * iref
          and k["complementarity"] <= KKT_TOL * iref * max(np.abs(sol.states[0]).max(), 1.0))
    print(f"{args.deck}: {len(g.circuit.ideal)} ideal diodes (IDEAL=1): ngspice has no ideal diode, so check cannot "
          f"compare with ngspice; checked the KKT conditions of CD's solution instead:")
    print(f"  feasibility max v(anode)-v(cathode) {k['violation']:.3e} V; KCL at unclamped nodes "
          f"{k['kcl'] / iref:.3e} x I_ref; KCL only a negative diode current could carry {k['current'] / iref:.3e} "
          f"x I_ref; "
          f"complementarity max |i*dv| {k['complementarity']:.3e} W (I_ref {k['i_ref']:.3e} A)")
    print(f"  KKT {'hold' if ok else 'FAIL'} (tolerance {KKT_TOL:g} x I_ref); CD {cd_s:.4f} s "
          f"({sol.iterations[0]} sweeps{'' if sol.converged[0] else ', NOT converged'}){_rounds(sol)}")
    if not sol.converged[0]:
        return EXIT_NOT_CONVERGED
    return 0 if ok else 1


def _rounds(sol) -> str:
    """``; N active-set rounds (K ideal diodes shorted)`` when ideal diodes joined two unknown nodes, else ``""``."""
    rec = sol.setup
    if rec is None:
        return ""
    return f"; {rec.rounds} active-set rounds ({len(rec.active)} ideal diodes shorted)"


def cmd_from_network(args) -> int:
    from cdsolver.files import atomic_write, check_out
    from cdsolver.network import load_network
    from cdsolver.validation import check_array
    from spice_bridge.netlist import check_general, general_deck

    from .cli import CliError, check_no_stale_decks, load_npy

    check_out(args.out, folder=True)
    if not Path(args.network).is_file():
        raise CliError(f"network file not found: {args.network}")
    net = load_network(args.network)
    check_general(net)
    x = load_npy(args.inputs, "inputs")
    v0 = check_array(x, "inputs (already encoded v0)", (None, net.sizes[0])) if args.encoded else net.encode(x)
    if len(v0) == 0:
        raise CliError(f"inputs: no samples (shape {x.shape})")
    out = Path(args.out)
    check_no_stale_decks(out, {f"sample{k}.cir" for k in range(len(v0))})
    for k in range(len(v0)) if out.is_dir() else ():  # (before any is written: a FIFO or device is refused)
        check_out(out / f"sample{k}.cir")
    out.mkdir(parents=True, exist_ok=True)
    for k, row in enumerate(v0):
        with atomic_write(out / f"sample{k}.cir", "w") as f:
            f.write(general_deck(net, row, title=f"{Path(args.network).name} sample {k}"))
    print(f"wrote {len(v0)} decks to {out}/sample<k>.cir (node n<l>_<j> = node j of layer l)")
    return 0
