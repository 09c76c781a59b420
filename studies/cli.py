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
    return ap


def main(argv: list[str] | None = None) -> int:
    from cdsolver.network import NetworkFormatError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, NetworkFormatError, ValueError, FileNotFoundError) as e:
        print(f"drn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
