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


def cmd_train(args: argparse.Namespace) -> int:
    import csv
    import json

    from cdsolver.datasets import DatasetError, load_digits, load_mnist
    from cdsolver.network import Amplifier, random_network, save_network
    from cdsolver.train import DEFAULTS, TrainConfig, evaluate, train

    gain0, lr0 = DEFAULTS[args.element]
    gain = args.input_gain if args.input_gain is not None else gain0
    if args.dataset == "digits":
        data = load_digits(seed=args.seed)
    else:
        if args.data_dir is None:
            raise CliError("--dataset mnist needs --data-dir DIR (MNIST IDX files or mnist.npz)")
        try:
            data = load_mnist(args.data_dir, seed=args.seed)
        except DatasetError as e:
            raise CliError(str(e)) from None
    n_in = data["train"].x.shape[1]
    amp = None if args.amplifier is None else Amplifier(*args.amplifier)
    net = random_network([2 * n_in, *args.hidden, 10], args.element, seed=args.seed, rails=args.rails,
                         amplifier=amp, input_gain=gain)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or lr0, momentum=args.momentum,
                      beta=args.beta, estimator=args.estimator, g_min=args.g_min, g_max=args.g_max,
                      target=args.target, tol=args.tol, seed=args.seed)
    cfg.rates(net.depth)  # validates --lr before any work
    out = Path(args.out)
    hist_path = out.with_suffix(".history.csv")
    cols = ["epoch", "train_error", "train_loss", "val_error", "val_loss", "seconds"]
    with open(hist_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()

        def on_epoch(row):
            writer.writerow(row)
            f.flush()
            print(f"epoch {row['epoch']:3d}: train error {row['train_error']:.4f} loss {row['train_loss']:.5f} | "
                  f"val error {row['val_error']:.4f} loss {row['val_loss']:.5f} | {row['seconds']:.2f} s", flush=True)

        train(net, data, cfg, on_epoch=on_epoch, progress=sys.stderr.isatty())
    test_err, test_loss = evaluate(net, data["test"], cfg)
    net.extra_meta["training"] = {"dataset": args.dataset, "epochs": cfg.epochs, "lr": cfg.lr, "beta": cfg.beta,
                                  "estimator": cfg.estimator, "target_V": cfg.target, "seed": cfg.seed,
                                  "test_error": test_err, "test_loss": test_loss}
    save_network(net, out)
    print(f"test error {test_err:.4f} (loss {test_loss:.5f}); wrote {out} and {hist_path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import ConfigError, compare

    try:
        summ = compare(args.config, out=args.out, jobs=args.jobs, max_samples=args.max_samples,
                       progress=sys.stderr.isatty())
    except ConfigError as e:
        raise CliError(str(e)) from None
    cols = ["depth", "width", "element", "amplifier", "runner", "spice_failed", "rel_l1_p90", "speedup_median"]
    print(summ[cols].to_string(index=False))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot

    for p in plot(args.results):
        print(f"wrote {p}")
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

    p = sub.add_parser("train", help="train a network with equilibrium propagation (CD solver)",
                       description="Train a DRN on Digits (shipped with scikit-learn) or MNIST-format local files with "
                                   "EP (SPEC §3): mini-batch SGD with momentum, conductances clamped to [g_min, g_max]. "
                                   "Writes the network (drn/1) and NET.history.csv (per-epoch train/val error, loss, "
                                   "seconds). Deterministic for a given --seed.")
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits", help="(default: digits)")
    p.add_argument("--data-dir", help="folder with MNIST IDX files (gz or not) or mnist.npz, for --dataset mnist")
    p.add_argument("--hidden", type=int, nargs="+", default=[256], help="hidden layer sizes (default: 256)")
    p.add_argument("--element", choices=["ideal", "linear", "pwl", "shockley"], default="shockley",
                   help="node element (default: shockley, Is=1e-6 A, Vd=0.05 V)")
    p.add_argument("--rails", choices=["both", "split"], help="both: every node [-0.8, 0.8] V (default for "
                   "shockley/pwl); split: half [0, inf), half (-inf, 0] (default for ideal)")
    p.add_argument("--amplifier", type=float, nargs=2, metavar=("A", "C"), help="bidirectional amplifier gains")
    p.add_argument("--input-gain", type=float, help="V per unit feature (default: 40 shockley, 4 otherwise)")
    p.add_argument("--epochs", type=int, default=20, help="(default: 20)")
    p.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    p.add_argument("--lr", type=float, nargs="+", help="learning rate, one or one per layer "
                   "(default: 0.002 shockley, 0.1 otherwise)")
    p.add_argument("--momentum", type=float, default=0.9, help="(default: 0.9)")
    p.add_argument("--beta", type=float, default=0.1, help="nudging strength β > 0, S (default: 0.1)")
    p.add_argument("--estimator", choices=["centered", "positive", "negative"], default="centered")
    p.add_argument("--target", type=float, default=0.3, help="output target of the true class, V (default: 0.3)")
    p.add_argument("--g-min", type=float, default=1e-6, help="conductance floor, S (default: 1e-6)")
    p.add_argument("--g-max", type=float, default=10.0, help="conductance ceiling, S (default: 10)")
    p.add_argument("--tol", type=float, default=1e-10, help="solver tolerance in training (evaluation: 1e-12)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--out", required=True, metavar="NET.npz", help="output network file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="run a CD-vs-ngspice study from a TOML config (resumable)",
                       description="For every cell of the config's grid (depth x width x element x amplifier x "
                                   "seed): build or train the network, solve the validation samples with CD and each "
                                   "ngspice runner, write per-sample and summary CSVs with provenance. Finished cells "
                                   "are skipped on a re-run. Configs: studies/configs/*.toml.")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/<study name>)")
    p.add_argument("--jobs", type=int, help="ngspice worker processes (overrides study.jobs)")
    p.add_argument("--max-samples", type=int, help="at most this many validation samples per cell")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plot", help="figures (PNG+PDF) and a Markdown table from a compare results folder",
                       description="runtime vs width per depth (log-log), speed-up vs width, error CDF, summary.md.")
    p.add_argument("results", metavar="RESULTS_DIR")
    p.set_defaults(func=cmd_plot)

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
