"""The ``drn`` command line (SPEC §4). Each subcommand validates its inputs first and exits with status 2 and
one clear line on bad input, 3 when it ran but some samples did not converge (their states are still written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cdsolver.constants import TOL

EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_npy(path: str, what: str) -> np.ndarray:
    """An array from a ``.npy`` file; errors name the file and what it should hold."""
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{what} file not found: {p}")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:
        raise CliError(f"{what} file {p} is not a readable .npy array ({e})") from None


def load_problem(args: argparse.Namespace):
    """(network, v0, targets) from the common arguments NET INPUTS [--encoded] [--targets]."""
    from cdsolver.network import load_network
    from cdsolver.validation import check_array

    if not Path(args.network).is_file():
        raise CliError(f"network file not found: {args.network}")
    net = load_network(args.network)
    x = load_npy(args.inputs, "inputs")
    v0 = check_array(x, "inputs (already encoded v0)", (None, net.sizes[0])) if args.encoded else net.encode(x)
    targets = None
    if args.targets is not None:
        targets = check_array(load_npy(args.targets, "targets"), "targets", (len(v0), net.sizes[-1]))
    if args.beta != 0 and targets is None:
        print("note: --beta without --targets nudges the outputs towards 0 V", file=sys.stderr)
    return net, v0, targets


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("network", metavar="NET.npz", help="network file (format drn/1)")
    p.add_argument("inputs", metavar="INPUTS.npy",
                   help="features (batch, n_features) scaled to [0, 1]; the network's input_gain and encoding make v0")
    p.add_argument("--encoded", action="store_true", help="INPUTS already holds the input voltages v0 (batch, n_0), V")
    p.add_argument("--beta", type=float, default=0.0,
                   help="nudging strength β (S); 0 = free phase; negative allowed (default: 0)")
    p.add_argument("--targets", metavar="Y.npy", help="output target voltages (batch, n_L), V (default: 0 V)")


def cmd_solve(args: argparse.Namespace) -> int:
    from cdsolver.solver import solve

    net, v0, targets = load_problem(args)
    t0 = time.perf_counter()
    sol = solve(net, v0, beta=args.beta, targets=targets, tol=args.tol, max_sweeps=args.max_iter,
                anderson=args.anderson)
    wall = time.perf_counter() - t0
    sol.save(args.out)
    rel = sol.residual / np.maximum(sol.i_ref, 1e-300)
    print(f"{len(v0)} samples, network {'-'.join(map(str, net.sizes))} ({net.element.kind}): "
          f"{int(sol.converged.sum())} converged; sweeps mean {sol.iterations.mean():.1f} max {sol.iterations.max()}; "
          f"max residual/I_ref {rel.max():.2e}; {1e3 * wall / len(v0):.3f} ms/sample; wrote {args.out}")
    if not sol.converged.all():
        print(f"warning: {int((~sol.converged).sum())} samples hit --max-iter {args.max_iter} "
              f"(states written, marked converged=False)", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def cmd_netlist(args: argparse.Namespace) -> int:
    from spice_bridge.netlist import deck

    net, v0, targets = load_problem(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for b in range(len(v0)):
        y = None if targets is None else targets[b]
        (out / f"sample{b}.cir").write_text(deck(net, v0[b], beta=args.beta, targets=y,
                                                 builtin_diode=args.builtin_diode, title=f"drn-cd sample {b}"))
    (out / "batch.cir").write_text(deck(net, v0, beta=args.beta, targets=targets, builtin_diode=args.builtin_diode,
                                        title=f"drn-cd: {len(v0)} samples swept by .dc"))
    print(f"wrote {len(v0)} .op decks sample<k>.cir and one .dc sweep deck batch.cir to {out}/ "
          f"(run: ngspice -b {out}/sample0.cir)")
    return 0


def cmd_spice(args: argparse.Namespace) -> int:
    from spice_bridge.runners import run

    net, v0, targets = load_problem(args)
    t0 = time.perf_counter()
    res = run(net, v0, runner=args.runner, beta=args.beta, targets=targets, jobs=args.jobs, timeout=args.timeout,
              builtin_diode=args.builtin_diode)
    total = time.perf_counter() - t0
    res.save(args.out)
    print(f"{len(v0)} samples through ngspice ({args.runner}): {int(res.ok.sum())} solved, "
          f"{int(res.fallback.sum())} by op fallback; {res.wall.mean():.4f} s/sample ({res.clock}); "
          f"total {total:.2f} s; wrote {args.out}")
    if not res.ok.all():
        bad = np.flatnonzero(~res.ok)
        print(f"warning: {bad.size} samples failed (states NaN), first: sample {bad[0]}: {res.reason[bad[0]]}",
              file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import os
    import platform

    import scipy

    from spice_bridge.runners import NgspiceMissing, _ngspice_shared, ngspice_version

    problems = 0
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"numpy {np.__version__}, scipy {scipy.__version__}")
    try:
        from threadpoolctl import threadpool_info  # installed with scikit-learn

        blas = {f"{c['internal_api']} {c['num_threads']} threads" for c in threadpool_info() if c["user_api"] == "blas"}
        print(f"BLAS: {', '.join(sorted(blas)) or 'unknown'}")
    except ImportError:
        print("BLAS: unknown (threadpoolctl not installed)")
    try:
        print(f"ngspice {ngspice_version()} (batch mode): ok")
    except NgspiceMissing as e:
        problems += 1
        print(f"ngspice: MISSING — {e}")
    try:
        import PySpice

        _ngspice_shared()
        print(f"PySpice {PySpice.__version__}: shared library loads: ok")
    except (ImportError, NgspiceMissing) as e:
        problems += 1
        print(f"PySpice shared ngspice: NOT AVAILABLE — {e}")
    print("all good" if problems == 0 else f"{problems} problem(s)")
    return 0 if problems == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="drn",
        description="Deep resistive networks: exact coordinate-descent steady states, checked against ngspice.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("solve", help="CD steady states of a network for a batch of inputs",
                       description="Solve KCL of every sample by exact block coordinate descent (Anderson-"
                                   "accelerated). Writes a states file: v1..vL (batch, n_l) in V, and per sample "
                                   "iterations, residual (A), i_ref (A), converged. Exit 3 if some sample hit "
                                   "--max-iter.")
    _add_problem_args(p)
    p.add_argument("--out", required=True, metavar="STATES.npz", help="output states file")
    p.add_argument("--tol", type=float, default=TOL,
                   help=f"stop when max|KCL| <= tol * I_ref per sample, I_ref ~ largest crossbar current (default: {TOL:g})")
    p.add_argument("--max-iter", type=int, default=1000, help="sweep cap per sample (default: 1000)")
    p.add_argument("--anderson", type=int, default=5,
                   help="Anderson history depth; 0 = plain block CD (default: 5)")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("netlist", help="write ngspice decks of the same circuit",
                       description="Write one .op deck per sample (sample<k>.cir) and one deck sweeping all samples "
                                   "with .dc (batch.cir), readable, with tight options (SPEC §5).")
    _add_problem_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--builtin-diode", action="store_true",
                   help="Shockley elements as ngspice's built-in D model (differs by up to 3e-7 V in reverse bias) "
                        "instead of exact behavioural B sources")
    p.set_defaults(func=cmd_netlist)

    p = sub.add_parser("spice", help="ngspice steady states of a network for a batch of inputs",
                       description="Solve the same circuit with real ngspice. Writes a states file like `drn solve` "
                                   "(converged = ngspice succeeded; failed samples are NaN with a reason) plus wall "
                                   "time per sample. Exit 3 if some sample failed.")
    _add_problem_args(p)
    p.add_argument("--out", required=True, metavar="STATES.npz", help="output states file")
    p.add_argument("--runner", choices=["op", "batch", "shared"], default="batch",
                   help="op: one ngspice process per sample; batch: one .dc sweep over all samples (fastest); "
                        "shared: PySpice in process, alter + op (default: batch)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per ngspice run (default: 600)")
    p.add_argument("--builtin-diode", action="store_true", help="use ngspice's D model (see drn netlist --help)")
    p.set_defaults(func=cmd_spice)

    p = sub.add_parser("doctor", help="check ngspice, PySpice, versions, BLAS",
                       description="Report versions and whether ngspice (batch) and its shared library work. "
                                   "Exit 1 if something is missing.")
    p.set_defaults(func=cmd_doctor)
    return ap


def main(argv: list[str] | None = None) -> int:
    from cdsolver.network import NetworkFormatError
    from spice_bridge.runners import NgspiceMissing, SpiceError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, NetworkFormatError, ValueError, FileNotFoundError, NgspiceMissing, SpiceError) as e:
        print(f"drn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
