"""The ``drn`` command line (README, docs/formats.md). Each subcommand validates its inputs first and exits with status
2 and one clear line on bad input, 3 when it ran but some samples did not converge (their states are still written).

Start-up: the modules the parser is built from (this one, ``verify``, ``gradients``, ``circuit_cli``,
``cdsolver.constants``, ``.files``, ``.validation``, ``.defaults``) import only the standard library at the top; numpy
and everything above it (the solver, SciPy, pandas, matplotlib, joblib, PySpice) are imported inside the functions that
use them, so ``drn --help`` starts in ~0.2 s and each command loads only what it uses (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cdsolver.constants import ANDERSON, MAX_SWEEPS, STEP_PER_TOL, TOL
from cdsolver.files import check_out
from cdsolver.validation import MAX_TIMEOUT, ValidationError, check_int, check_tol
from spice_bridge.errors import NgspiceMissing

from . import circuit_cli

if TYPE_CHECKING:
    import numpy as np

    from cdsolver.network import Amplifier, Network
    from cdsolver.train import TrainConfig

EXIT_BAD_INPUT = 2
EXIT_NOT_CONVERGED = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as the shell reports a tool killed by a closed pipe
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class CliError(ValidationError):
    """A user error: printed as one line, exit status 2."""


def load_npy(path: str, what: str) -> np.ndarray:
    """An array from a ``.npy`` file; errors name the file and what it should hold."""
    import numpy as np

    from cdsolver.files import check_in, numpy_kind

    p = check_in(path, what)
    if numpy_kind(p) is None:  # (an .npz archive is named by check_inputs)
        raise CliError(f"{what} file {p} is not a .npy array file (numpy.save writes one)")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:
        raise CliError(f"{what} file {p} is not a readable .npy array ({e})") from None


def check_no_stale_decks(out: Path, names: set[str]) -> None:
    """``--out`` folder of decks: CliError where it holds ``sample<k>.cir`` decks of an earlier run that this run
    (writing ``names``) would not replace, so that old and new decks never mix."""
    import re

    stale = sorted((p.name for p in out.glob("sample*.cir") if re.fullmatch(r"sample\d+\.cir", p.name)
                    and p.name not in names), key=lambda n: (len(n), n))
    if stale:
        raise CliError(f"--out {out} holds {len(stale)} deck(s) of an earlier run that this one would not replace "
                       f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}): remove them or give another "
                       f"folder")


def save_or_rescue(save, out: str) -> None:
    """``save(out)``; if writing fails (a full disk, a folder that went away), the finished results are written
    to a new temporary folder instead and CliError says where."""
    import tempfile

    try:
        save(out)
    except OSError as e:
        rescue = Path(tempfile.mkdtemp(prefix="drn-rescue-")) / Path(out).name
        save(rescue)
        raise CliError(f"cannot write {out} ({e.strerror or e}); the results are in {rescue}") from None


def load_problem(args: argparse.Namespace, nudged: bool = True):
    """(network, v0, targets) from the common arguments NET INPUTS [--encoded] [--targets]; checks ``--out`` where
    the command has one (``drn verify`` writes only an optional report). ``nudged``: --beta and --targets set the
    solved phase (a note where one is given without the other)."""
    import numpy as np

    from cdsolver.network import load_network
    from cdsolver.validation import check_array

    if getattr(args, "out", None) is not None:
        check_out(args.out, folder=args.command == "netlist",
                  inputs=(args.network, args.inputs, args.targets, getattr(args, "states", None)))
    if not Path(args.network).is_file():
        raise CliError(f"network file not found: {args.network}")
    net = load_network(args.network)
    x = load_npy(args.inputs, "inputs")
    v0 = check_array(x, "inputs (already encoded v0)", (None, net.sizes[0])) if args.encoded else net.encode(x)
    if len(v0) == 0:
        raise CliError(f"inputs: no samples (shape {np.shape(x)})")
    if not args.encoded and not (x.min() >= 0 and x.max() <= 1):
        print(f"note: the inputs span [{x.min() + 0.0:.4g}, {x.max() + 0.0:.4g}]; features are expected in [0, 1] "
              f"(input voltages: --encoded)", file=sys.stderr)
    targets = None
    if args.targets is not None:
        targets = check_array(load_npy(args.targets, "targets"), "targets", (len(v0), net.n_classes))
    args.beta += 0.0  # (-0 is 0, shown as 0 in reports)
    net.g_nudge(args.beta)  # (ValidationError where the nudge is undefined: before any work)
    if nudged and args.beta != 0 and targets is None:
        print("note: --beta without --targets nudges the outputs towards 0 V", file=sys.stderr)
    if nudged and args.beta == 0 and targets is not None:
        print("note: --targets without --beta: the free phase (beta 0) does not use them", file=sys.stderr)
    return net, v0, targets


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("network", metavar="NET.npz", help="network file (format drn/1)")
    p.add_argument("inputs", metavar="INPUTS.npy",
                   help="features (batch, n_features) scaled to [0, 1]; the network's input_gain and encoding make v0")
    p.add_argument("--encoded", action="store_true", help="INPUTS already holds the input voltages v0 (batch, n_0), V")
    p.add_argument("--beta", type=float, default=0.0,
                   help="nudging strength β (S); 0 = free phase; negative allowed (default: 0)")
    p.add_argument("--targets", metavar="Y.npy", help="output target voltages (batch, n_L), V; paired outputs: "
                   "(batch, n_L/2), targets of v+ - v- (default: 0 V)")


def check_solver_options(args: argparse.Namespace) -> None:
    """``--tol``, ``--max-iter`` and ``--anderson`` of ``drn solve`` and ``drn circuit``: one line naming the
    option, before any file is read."""
    from cdsolver.constants import MAX_ANDERSON

    check_tol(args.tol, "--tol")
    check_int(args.max_iter, "--max-iter", 1)
    check_int(args.anderson, "--anderson", 0, MAX_ANDERSON)


def cmd_solve(args: argparse.Namespace) -> int:
    import numpy as np

    from cdsolver import kernels
    from cdsolver.solver import solve

    check_solver_options(args)
    net, v0, targets = load_problem(args)
    kernels.backend()  # numba's import and the kernels' load: once per process, outside the solve's clock
    t0 = time.perf_counter()
    sol = solve(net, v0, beta=args.beta, targets=targets, tol=args.tol, max_sweeps=args.max_iter,
                anderson=args.anderson)
    wall = time.perf_counter() - t0
    save_or_rescue(sol.save, args.out)
    rel = sol.residual / np.maximum(sol.i_ref, 1e-300)
    print(f"{len(v0)} samples, network {'-'.join(map(str, net.sizes))} ({net.element.kind}): "
          f"{int(sol.converged.sum())} converged; sweeps mean {sol.iterations.mean():.1f} max {sol.iterations.max()}; "
          f"max residual/I_ref {rel.max():.2e}; {1e3 * wall / len(v0):.3f} ms/sample; wrote {args.out}")
    if not sol.converged.all():
        nan = int(np.isnan(sol.residual).sum())
        capped = int((~sol.converged).sum()) - nan
        for count, why in ((capped, f"hit --max-iter {args.max_iter}"),
                           (nan, "have a NaN KCL residual (non-finite currents: inputs times conductances beyond "
                                 "float64?)")):
            if count:
                print(f"warning: {count} samples {why} (states written, marked converged=False)", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def cmd_netlist(args: argparse.Namespace) -> int:
    import shlex

    from spice_bridge.netlist import deck

    net, v0, targets = load_problem(args)
    from cdsolver.files import atomic_write

    out = Path(args.out)
    decks = {f"sample{b}.cir": (v0[b], None if targets is None else targets[b], f"drn-cd sample {b}")
             for b in range(len(v0))}
    check_no_stale_decks(out, set(decks))
    decks["batch.cir"] = (v0, targets, f"drn-cd: {len(v0)} samples swept by .dc")
    for name in decks if out.is_dir() else ():  # (before any is written: a FIFO or device is refused, not replaced)
        check_out(out / name)
    out.mkdir(parents=True, exist_ok=True)
    for name, (v, y, title) in decks.items():
        with atomic_write(out / name, "w") as f:
            f.write(deck(net, v, beta=args.beta, targets=y, builtin_diode=args.builtin_diode, title=title))
    print(f"wrote {len(v0)} .op decks sample<k>.cir and one .dc sweep deck batch.cir to {out}/ "
          f"(run: ngspice -b {shlex.quote(str(out / 'sample0.cir'))})")
    return 0


def cmd_spice(args: argparse.Namespace) -> int:
    import numpy as np

    from cdsolver.validation import check_timeout
    from spice_bridge.runners import check_jobs, run

    check_jobs(args.jobs, "--jobs")
    check_timeout(args.timeout, "--timeout")
    if args.runner == "shared" and args.jobs == 1 and args.timeout is not None:
        print("note: --timeout does not bind --runner shared with --jobs 1 (ngspice runs in this process; with "
              "--jobs 2 or more each worker's task is limited)", file=sys.stderr)
    net, v0, targets = load_problem(args)
    t0 = time.perf_counter()
    res = run(net, v0, runner=args.runner, beta=args.beta, targets=targets, jobs=args.jobs, timeout=args.timeout,
              builtin_diode=args.builtin_diode)
    total = time.perf_counter() - t0
    save_or_rescue(res.save, args.out)
    print(f"{len(v0)} samples through ngspice ({args.runner}): {int(res.ok.sum())} solved, "
          f"{int(res.fallback.sum())} by op fallback; {res.wall.mean():.4f} s/sample ({res.clock.split('; ')[0]}; "
          f"docs/spice.md); total {total:.2f} s; wrote {args.out}")
    if res.interrupted:
        print(f"\ninterrupted: {int(res.ok.sum())} finished samples written to {args.out}, the others marked "
              f"'interrupted'", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not res.ok.all():
        bad = np.flatnonzero(~res.ok)
        print(f"warning: {bad.size} samples failed (states NaN), first: sample {bad[0]}: {res.reason[bad[0]]}",
              file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


#: largest ``drn train --input-gain``, V per unit feature: the data's default is ~1e2 V; on a 16-8-4 Shockley network
#: CD and ngspice agree to 1e-13 V up to 1e6 V, while ngspice needs its op fallback from 1e4 V and fails from 1e8 V
#: (a network trained there could not be checked)
MAX_INPUT_GAIN = 1e6
#: options of ``drn train`` that define a run; ``--resume`` requires them unchanged (only --epochs may grow)
INVERT = "half"  # --invert's default, set once the option is checked (a checkpoint records the resolved value)
RUN_OPTIONS = ("dataset", "data_dir", "hidden", "element", "rails", "amplifier", "invert", "input_gain", "outputs",
               "batch_size", "lr", "lr_decay", "optimizer", "momentum", "average", "beta", "estimator", "target",
               "g_min", "g_max",
               "tol", "max_sweeps", "gradient", "seed", "init")


def _train_data(args: argparse.Namespace) -> dict:
    from cdsolver.datasets import FASHION_DIR, DatasetError, load_digits, load_fashion_mnist, load_mnist

    try:
        if args.dataset == "digits":
            return load_digits(seed=args.seed)
        if args.dataset == "fashion-mnist":
            return load_fashion_mnist(args.data_dir or FASHION_DIR, seed=args.seed)
        if args.data_dir is None:
            raise CliError("--dataset mnist needs --data-dir DIR (MNIST IDX files, gzipped or not, or mnist.npz)")
        return load_mnist(args.data_dir, seed=args.seed)
    except DatasetError as e:
        raise CliError(str(e)) from None


def _write_history(rows: list[dict], path: Path) -> None:
    import csv

    from cdsolver.files import atomic_write

    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"])
        w.writeheader()
        w.writerows(rows)


def _check_train_args(args: argparse.Namespace) -> None:
    """Ranges argparse does not check (one line naming the option, before any work)."""
    from cdsolver.defaults import RAILLESS

    # (the training settings are TrainConfig's to check: _train_config)
    checks = [("--hidden", args.hidden, all(h >= 1 for h in args.hidden), "sizes >= 1"),
              ("--input-gain", args.input_gain, args.input_gain is None or 0 < args.input_gain <= MAX_INPUT_GAIN,
               f"a finite number > 0 and <= {MAX_INPUT_GAIN:g} V (beyond, ngspice fails to check the network)")]
    for name, val, ok, want in checks:
        if not ok:
            raise CliError(f"{name} must be {want}, got {val}")
    if args.data_dir is not None and args.dataset == "digits":
        raise CliError("--data-dir: --dataset digits ships with scikit-learn and reads no folder (give --dataset "
                       "mnist or fashion-mnist)")
    if args.data_dir is not None:  # (recorded absolute: --resume from another folder must not read other data)
        args.data_dir = os.path.abspath(args.data_dir)
    if args.invert is not None and args.amplifier is None:
        raise CliError("--invert applies to amplifiers: give --amplifier A C too")
    args.invert = args.invert or INVERT
    if args.rails is not None and args.element in RAILLESS and not args.resume:  # (a checkpoint may record it)
        why = "a pwl curve saturates by its own table" if args.element == "pwl" else "linear nodes are not clipped"
        raise CliError(f"--rails: {args.element} nodes have no rails ({why})")


def _train_config(args: argparse.Namespace, n_train: int | None = None) -> TrainConfig:
    """The training settings of ``drn train``'s options (for ``n_train`` training samples: resolved), checked by
    ``TrainConfig`` and its ``resolved`` (their messages begin with the fields' names, here given as the options':
    ``batch_size`` → ``--batch-size``)."""
    import dataclasses
    import re

    from cdsolver.train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        cfg = TrainConfig(**{k: getattr(args, k) for k in names if hasattr(args, k)})
        return cfg if n_train is None else cfg.resolved(n_train)
    except ValidationError as e:
        msg = str(e)
        m = re.match(r"[a-z_ ]+?(?= must | >= )", msg)  # the leading field names, e.g. "g_min and g_max"
        if m is None:
            raise CliError(msg) from None
        head = re.sub(r"[a-z_]+", lambda w: "--" + w[0].replace("_", "-") if w[0] in names else w[0], m[0])
        raise CliError(head + msg[m.end():]) from None


def _init_network(args: argparse.Namespace, n_inputs: int, amp: Amplifier | None) -> Network:
    """``--init NET.npz``: the trained network to start from, checked against the structure options (its rails
    and input gain are kept)."""
    import numpy as np

    from cdsolver.network import hidden_rails, load_network

    if not Path(args.init).is_file():
        raise CliError(f"--init: network file not found: {args.init}")
    net = load_network(args.init)  # a malformed file: NetworkFormatError naming it (one line, exit 2)
    want = {"sizes": [n_inputs, *args.hidden, 20 if args.outputs == "paired" else 10], "element": args.element,
            "amplifier": amp, "outputs": args.outputs}
    have = {"sizes": net.sizes, "element": net.element.kind, "amplifier": net.amplifier, "outputs": net.outputs}
    diff = [f"{k} {have[k]} (options: {want[k]})" for k in want if have[k] != want[k]]
    if diff:
        raise CliError(f"--init {args.init}: the network differs from the options: {'; '.join(diff)}")
    if args.input_gain is not None and args.input_gain != net.input_gain:
        raise CliError(f"--init {args.init}: the network's input gain is {net.input_gain:g} V, --input-gain "
                       f"{args.input_gain:g}")
    if args.rails is not None and not all(np.array_equal(q, r) for lo, hi in zip(net.lo, net.hi)
                                          for q, r in zip((lo, hi), hidden_rails(args.rails, lo.size))):
        raise CliError(f"--init {args.init}: the network's rails are not --rails {args.rails} (its rails are kept)")
    return net


def cmd_train(args: argparse.Namespace) -> int:
    from cdsolver import defaults
    from cdsolver.network import Amplifier, save_network
    from cdsolver.train import TrainState, evaluate, load_checkpoint, save_checkpoint, train

    if args.threads < 1:
        raise CliError(f"--threads must be >= 1, got {args.threads}")
    _check_train_args(args)
    check_out(args.out, inputs=(args.init, args.config))
    run = {k: getattr(args, k) for k in RUN_OPTIONS}
    out = Path(args.out)
    ckpt, hist_path = out.with_suffix(".ckpt.npz"), out.with_suffix(".history.csv")
    for p in (ckpt, hist_path):  # (written after every epoch: a FIFO or device there is refused now)
        check_out(p, option="--out's")
    _train_config(args)  # (checked before the data are read)
    if args.resume and not ckpt.is_file():
        raise CliError(f"--resume: no checkpoint {ckpt} (it is written after every epoch of a run with --out {out})")
    data = _train_data(args)
    cfg = _train_config(args, len(data["train"].x))
    if args.resume:
        net, state, run0 = load_checkpoint(ckpt)
        default = vars(build_parser().parse_args(["train", "--out", str(out)]))  # options newer than the checkpoint
        default["invert"] = INVERT
        run0 = {k: run0.get(k, default[k]) for k in RUN_OPTIONS}
        if args.init is not None and args.init != run0["init"]:
            raise CliError(f"--init {args.init} conflicts with --resume, which continues the checkpoint's network "
                           f"(the run started from {_shown_init(run0['init'])}): leave --init out")
        was, now = (_resolved_run(r, len(data["train"].x), net.input_gain) for r in (run0, json_ready(run)))
        diff = [k for k in RUN_OPTIONS if k != "init" and was[k] != now[k]]  # (the checkpoint's network goes on)
        if diff:
            first = " ".join(_as_option(k, v) for k, v in run0.items()
                             if k != "init" and v is not None and v != default[k])
            raise CliError("--resume: the checkpoint was made with other options (only --epochs may change): "
                           + "; ".join(f"--{k.replace('_', '-')} was {_shown(run0[k], was[k])}, now "
                                       f"{_shown(run[k], now[k])}" for k in diff)
                           + f"; give the same options as the first run ({first or 'the defaults'})")
        run = run0  # (the checkpoints keep the first run's record)
        if state.epoch > args.epochs or (state.epoch == args.epochs and out.exists()):
            raise CliError(f"--resume: the checkpoint has {state.epoch} epochs done; ask for more with --epochs")
        print(f"resuming {ckpt} after epoch {state.epoch}" + (" (all epochs done: the network was not written; "
              "evaluating and writing it)" if state.epoch == args.epochs else ""), flush=True)
    else:
        try:
            amp = None if args.amplifier is None else Amplifier(*args.amplifier, args.invert)
        except ValidationError as e:  # (its message names the file's key)
            raise CliError(f"--amplifier A C: {str(e).removeprefix('meta.amplifier.')}") from None
        if args.init:
            net = _init_network(args, 2 * data["train"].x.shape[1], amp)
        else:
            net = defaults.network(data["train"].x, args.hidden, 10, args.element, rails_=args.rails,
                                   amplifier=amp, outputs=args.outputs, gain=args.input_gain, seed=args.seed)
    try:
        cfg.rates(net)  # validates --lr, --optimizer, --momentum, --average before any work
    except ValidationError as e:
        raise CliError(str(e)) from None
    if not args.resume:
        state = TrainState.start(net, len(data["train"].x), cfg)
    if data["train"].x.shape[1] != net.n_features:
        raise CliError(f"the data has {data['train'].x.shape[1]} features per sample, the network {net.n_features}")
    earlier = [p for p in (ckpt, hist_path) if p.is_file()]
    record = _training_record(out) if out.exists() else None
    kept = out.exists() and not (record is not None and (args.resume or record.get("epochs") == 0))
    if not args.resume and earlier:
        raise CliError(f"--out {out}: {' and '.join(map(str, [out] * kept + earlier))} of an earlier run exist; "
                       f"continue it with --resume (and more --epochs), or move them away to start afresh")
    if kept:
        why = ("and is not a network written by drn train, which --resume would replace" if args.resume else
               "and a fresh run replaces no file (but the network of a run of 0 epochs)")
        raise CliError(f"--out {out} exists {why}: give another name or move it away")
    fans = {int(k) for G in net.G[1:] for k in (G > 0).sum(axis=0) if k < G.shape[0]}  # nodes not fed by all
    sparse = (f", sparse crossbars after the first ({'/'.join(map(str, sorted(fans)))} "
              f"input{'' if fans == {1} else 's'} per node)" if fans else "")
    centred = "" if args.init or args.resume else ", first hidden layer biased to a mean drive of 0 V"
    print(f"network {'-'.join(map(str, net.sizes))}, {args.element}{sparse}, input gain {net.input_gain:.4g} V"
          f"{centred}; batch "
          f"{cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, average {cfg.average:.4g}, beta {cfg.beta} S "
          f"(lowered per epoch where the negative phase would not be convex), target {cfg.target} V, gradient "
          f"{cfg.gradient}", flush=True)

    n_train = len(data["train"].x)

    def on_epoch(row: dict) -> None:
        left_out = (f" | {row['excluded']} of {n_train} samples left out (a phase hit --max-sweeps "
                    f"{cfg.max_sweeps})" if row["excluded"] else "")
        print(f"epoch {row['epoch']:3d}: train error {row['train_error']:.4f} loss {row['train_loss']:.5f} | "
              f"val error {row['val_error']:.4f} loss {row['val_loss']:.5f} | {row['seconds']:.2f} s{left_out}",
              flush=True)

    def checkpoint(st) -> None:
        save_checkpoint(ckpt, net, st, json_ready(run))
        _write_history(st.history, hist_path)

    from threadpoolctl import threadpool_limits

    done = state.epoch
    try:
        with threadpool_limits(args.threads, user_api="blas"):
            train(net, data, cfg, on_epoch=on_epoch, progress=sys.stderr.isatty(), state=state, checkpoint=checkpoint)
            net = state.model(net)
            test_err, test_loss = evaluate(net, data["test"], cfg)
        net.extra_meta["training"] = {"dataset": args.dataset, "epochs": cfg.epochs, "lr": cfg.lr,
                                      "batch_size": cfg.batch_size, "gradient": cfg.gradient,
                                      "optimizer": cfg.optimizer, "average": cfg.average, "beta": cfg.beta,
                                      "estimator": cfg.estimator, "target_V": cfg.target, "seed": cfg.seed,
                                      "outputs": net.outputs, "test_error": test_err, "test_loss": test_loss}
        save_or_rescue(lambda p: save_network(net, p), str(out))  # (--resume writes it again: the run is done)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {ckpt} holds the last finished epoch; continue with the same command and --resume"
              if ckpt.is_file() else "\ninterrupted before the first epoch finished: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # a checkpoint write failed (full disk): the previous checkpoint is whole
        raise CliError(f"cannot write {e.filename or ckpt} ({e.strerror or e}); {ckpt} holds the last epoch "
                       f"written, --resume continues from it") from None
    written = (f"{out} (no epoch run: no history or checkpoint)" if not state.history else
               f"{out}, {hist_path} and {ckpt}" if state.epoch > done else
               f"{out} ({hist_path} and {ckpt} as they were)")
    print(f"test error {test_err:.4f} (loss {test_loss:.5f}); wrote {written}")
    if state.history and state.history[-1]["excluded"] >= n_train:
        print(f"error: every training sample of the last epoch was left out of the gradient (a phase hit "
              f"--max-sweeps {cfg.max_sweeps}): the network did not learn; raise --max-sweeps", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def _training_record(path: Path) -> dict | None:
    """The ``training`` record of a network file written by ``drn train`` (None: another file)."""
    from cdsolver.network import load_network

    try:
        record = load_network(path).extra_meta.get("training")
    except (ValidationError, OSError):
        return None
    return record if isinstance(record, dict) else None


def _resolved_run(run: dict, n_train: int, input_gain: float) -> dict:
    """``run`` (options as recorded) with the data-dependent defaults (``None``) of --batch-size, --lr and
    --average resolved for ``n_train`` samples (one lr: a list of one), --input-gain's set to ``input_gain`` and
    --data-dir absolute (from the current folder)."""
    import numpy as np

    from cdsolver.train import TrainConfig

    c = TrainConfig(batch_size=run["batch_size"], lr=run["lr"], average=run["average"]).resolved(n_train)
    return {**run, "batch_size": c.batch_size, "lr": [float(x) for x in np.atleast_1d(c.lr)], "average": c.average,
            "input_gain": input_gain if run["input_gain"] is None else run["input_gain"],
            "data_dir": run["data_dir"] and os.path.abspath(run["data_dir"])}  # (relative in older checkpoints)


def _as_option(key: str, value) -> str:
    """A recorded option as command-line words, e.g. ``--hidden 16 8``."""
    import shlex

    flag = "--" + key.replace("_", "-")
    return " ".join([flag, *map(str, value)] if isinstance(value, list) else [flag, shlex.quote(str(value))])


def _shown_init(init: str | None) -> str:
    """Where a run started: its --init, or a random network."""
    return "a random network" if init is None else f"--init {init}"


def _shown(given, value) -> str:
    """An option's ``value``, marked as the default where it was not ``given`` (``None``: the default rule of
    cdsolver/defaults.py)."""
    return f"the default {value!r}" if given is None else repr(value)


def json_ready(d: dict) -> dict:
    """``d`` as it reads back from JSON (tuples become lists)."""
    import json

    return json.loads(json.dumps(d))


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import ConfigError, compare

    try:
        summ = compare(args.config, out=args.out, jobs=args.jobs, max_samples=args.max_samples,
                       progress=sys.stderr.isatty(), cell_jobs=args.cell_jobs, dask=args.dask)
    except ConfigError as e:
        raise CliError(str(e)) from None
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells and runners are kept; the same command resumes", file=sys.stderr)
        return EXIT_INTERRUPTED
    cols = ["depth", "width", "element", "amplifier", "runner", "spice_failed", "rel_l1_p90", "speedup_median"]
    print(summ[cols].to_string(index=False))
    out = summ.attrs["out"]
    print(f"wrote {out}/summary.csv (per cell and runner), {out}/samples.csv (per sample), {out}/provenance.csv; "
          f"drn plot {out} draws the figures")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import learning_curves, plot

    paths = [Path(p) for p in args.results]
    if all(p.name.endswith(".history.csv") for p in paths):
        written = learning_curves(paths, args.out, args.style)
    elif len(paths) == 1 or (args.out and all(p.is_dir() for p in paths)):
        written = plot(paths, args.out, args.style)
    else:
        raise CliError("give drn compare results folders (several: with --out DIR), or drn train *.history.csv "
                       "files (with optional --out)")
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import version

    import numpy as np
    import scipy

    from spice_bridge.runners import NgspiceMissing, _ngspice_shared, ngspice_version

    problems = 0
    print(f"drn-cd {version('drn-cd')} ({Path(__file__).resolve().parent.parent})")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"numpy {np.__version__}, scipy {scipy.__version__}")
    try:
        from threadpoolctl import threadpool_info  # installed with scikit-learn

        blas = {f"{c['internal_api']} {c['num_threads']} threads" for c in threadpool_info() if c["user_api"] == "blas"}
        print(f"BLAS: {', '.join(sorted(blas)) or 'unknown'}")
    except ImportError:
        print("BLAS: unknown (threadpoolctl not installed)")
    from cdsolver import allocator, kernels, threads

    print(threads.report())
    print(allocator.report())

    try:
        backend = kernels.backend()
    except RuntimeError as e:  # numba imports, the compiled kernels do not load (every solve would raise it)
        problems += 1
        print(f"node kernels: NOT LOADED — {e}")
    else:
        if backend == "numba":
            import numba

            print(f"node kernels: numba {numba.__version__}, {numba.get_num_threads()} threads (imported and loaded "
                  f"in {kernels.compile_seconds():.2f} s; compiled once, then cached on disk)")
        else:
            print("node kernels: the NumPy reference (numba not importable, or DRN_KERNELS=numpy): slower, same "
                  "results")
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


class _Parser(argparse.ArgumentParser):
    """argparse, reading ``-1e-3`` as a negative number (an option's value, e.g. ``--beta -1e-3``), not an option
    (argparse's own test knows no exponent), and printing a usage error as one line. Subcommands' parsers are of
    this class too; the top one has ``commands``, their parsers by name."""

    def __init__(self, *a, **k) -> None:
        import re

        super().__init__(*a, **k)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str) -> None:
        """A usage error as one line (argparse prints its usage first), exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Once(argparse.Action):
    """An option that may be given once (a second value would be silently the one read)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice ({getattr(namespace, self.dest)}, {values}): give one")
        setattr(namespace, self.dest, values)


class _Version(argparse.Action):
    """``--version``: the installed package's version (read only when asked: ``drn --help`` stays fast)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from importlib.metadata import version

        print(f"drn-cd {version('drn-cd')}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from cdsolver.constants import MAX_GAIN
    from cdsolver.constants import OSANA_VOFF as VOFF
    from cdsolver.defaults import NARROW_WIDTH, PASSIVE_GAIN_STEP
    from cdsolver.defaults import TRAIN as T

    ap = _Parser(
        prog="drn",
        description="Deep resistive networks: exact coordinate-descent steady states, checked against ngspice.")
    ap.add_argument("--version", action=_Version, nargs=0, help="print drn-cd's version and exit")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ap.commands = sub.choices

    p = sub.add_parser("solve", help="CD steady states of a network for a batch of inputs",
                       description="Solve KCL of every sample by exact block coordinate descent (Anderson-"
                                   "accelerated). Writes a states file: v1..vL (batch, n_l) in V, and per sample "
                                   "iterations, residual (A), i_ref (A), converged. Exit 3 if some sample hit "
                                   "--max-iter.")
    _add_problem_args(p)
    p.add_argument("--out", required=True, metavar="STATES.npz", help="output states file")
    p.add_argument("--tol", type=float, default=TOL,
                   help=f"stop when max|KCL| <= tol * I_ref per sample, I_ref ~ largest crossbar current, and "
                        f"a further sweep would change no voltage by more than {STEP_PER_TOL:g} tol max|v| "
                        f"(default: {TOL:g})")
    p.add_argument("--max-iter", type=int, default=MAX_SWEEPS, help=f"sweep cap per sample (default: {MAX_SWEEPS})")
    p.add_argument("--anderson", type=int, default=ANDERSON,
                   help=f"Anderson history depth; 0 = plain block CD (default: {ANDERSON})")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("netlist", help="write ngspice decks of the same circuit",
                       description="Write one .op deck per sample (sample<k>.cir) and one deck sweeping all samples "
                                   "with .dc (batch.cir), readable, with tight options (docs/spice.md).")
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
    p.add_argument("--timeout", type=float, help="seconds one sample's ngspice run may take before it counts as "
                   f"failed, at most {MAX_TIMEOUT:g} (default: sized to the network, at least 10; "
                   "docs/reliability.md); --runner shared: a worker task of n samples gets n times it, so none "
                   "with --jobs 1")
    p.add_argument("--builtin-diode", action="store_true", help="use ngspice's D model (see drn netlist --help)")
    p.set_defaults(func=cmd_spice)

    p = sub.add_parser("train", help="train a network with equilibrium propagation (CD solver)",
                       description="Train a DRN with EP (docs/training.md) on Digits (shipped with scikit-learn), "
                                   "Fashion-MNIST (Debian package dataset-fashion-mnist: make data) or MNIST-format "
                                   "local files: "
                                   "mini-batch SGD with momentum or Adam, conductances clamped to [g_min, g_max], "
                                   "optionally a moving average of the weights as the model. After every epoch "
                                   "writes NET.ckpt.npz (network + optimizer + RNG state; --resume continues bit for "
                                   "bit) and NET.history.csv (train/val error, loss, seconds); at the end NET.npz "
                                   "(drn/1, the model) and the test error. Deterministic for a given --seed. A "
                                   "NET.ckpt.npz or NET.history.csv of an earlier run is never replaced: --resume "
                                   "continues it; nor is an existing NET.npz, except by the --resume of the run that "
                                   "wrote it or where a run of 0 epochs wrote it. "
                                   "Exit 3 if every training sample of the last epoch was left out of the gradient "
                                   "(a phase hit --max-sweeps).",
                       epilog="--config FILE.toml sets any of these options (keys = option names, e.g. lr = [0.01, "
                              "0.002], input_gain = 40); options on the command line win. Ctrl-C keeps the last "
                              "checkpoint valid.")
    p.add_argument("--config", metavar="FILE.toml", action=_Once,
                   help="read options from a TOML file (keys = option names); one file")
    p.add_argument("--dataset", choices=["digits", "fashion-mnist", "mnist"], default="digits",
                   help="digits: scikit-learn's 8x8 digits; fashion-mnist, mnist: 28x28 images from --data-dir "
                        "(default: digits)")
    p.add_argument("--data-dir", help="folder with the four IDX files (gz or not) or mnist.npz; needed for mnist, "
                   "optional for fashion-mnist (default: /usr/share/datasets/fashion-mnist)")
    p.add_argument("--hidden", type=int, nargs="+", default=[256],
                   help="hidden layer sizes, one number per layer (--hidden 64 64: two layers of 64 nodes) "
                        "(default: 256)")
    p.add_argument("--element", choices=["ideal", "linear", "pwl", "shockley"], default="shockley",
                   help="node element (default: shockley, Is=1e-6 A, Vd=0.05 V)")
    p.add_argument("--rails", choices=["both", "split"], help=f"ideal and shockley nodes: both: every node [-{VOFF:g}, "
                   f"{VOFF:g}] V (default for shockley, and for ideal with a hidden layer narrower than "
                   f"{NARROW_WIDTH}); split: half [0, inf), half (-inf, 0] (default for ideal)")
    p.add_argument("--amplifier", type=float, nargs=2, metavar=("A", "C"), help="bidirectional amplifiers after every "
                   f"hidden node: forward voltage gain A and current pull-back C, each in (0, {MAX_GAIN:g}] (default: "
                   "none, a passive network; e.g. 4 1)")
    p.add_argument("--invert", choices=["half", "none"],
                   help="with --amplifier: half: the second half of each hidden layer's amplifiers invert (gains -A, "
                        "-C), so positive conductances can weigh a hidden node negatively and the layers' common mode "
                        "cancels (what lets deep amplified networks learn); none: all non-inverting (default: half)")
    p.add_argument("--input-gain", type=float, help=f"V per unit feature, in (0, {MAX_INPUT_GAIN:g}] (larger gains "
                   "leave ngspice without an operating point, so the network could not be checked) (default: set "
                   "from the training data so that the first hidden layer's pre-activations spread over the "
                   f"element's scale (less where that layer has fewer than {NARROW_WIDTH} nodes: width/"
                   f"{NARROW_WIDTH} of it), times {PASSIVE_GAIN_STEP:g} per extra hidden layer of a passive network "
                   "of ideal or Shockley nodes "
                   "with a rail open (e.g. --rails split); printed at the start; cdsolver/defaults.py). A new "
                   "network's first hidden layer also gets bias currents that make its mean drive over the training "
                   "data 0 V (the middle of +-0.8 V rails; on split rails, the rail)")
    p.add_argument("--outputs", choices=["single", "paired"], default="single",
                   help="paired: two output nodes per class, prediction and cost on v+ - v-, the nudging branch "
                        "between the pair (Kendall et al.); on Fashion-MNIST it learns faster, and the shipped "
                        "configs use it (docs/training.md) (default: single)")
    p.add_argument("--epochs", type=int, default=T["epochs"], help="passes over the training data (0: "
                   f"evaluate the initial network only) (default: {T['epochs']}; with --resume: the new total)")
    p.add_argument("--batch-size", type=int, help="(default: training samples / 128, clipped to [8, 128]: Digits 8, "
                   "Fashion-MNIST 128)")
    p.add_argument("--lr", type=float, nargs="+", help="learning rate, one per layer, or one (momentum: the output "
                   "layer's, earlier layers scaled by (C/A)^(L-l) with amplifiers) (default, Adam: 0.01 x "
                   "sqrt(batch/8); momentum needs one)")
    p.add_argument("--lr-decay", type=float, default=T["lr_decay"], help="rates times this factor after every epoch "
                   f"(default: {T['lr_decay']})")
    p.add_argument("--optimizer", choices=["momentum", "adam"], default=T["optimizer"],
                   help="momentum: SGD with momentum; adam: Adam, steps of about lr x the layer's mean initial "
                        f"conductance (1/n_in S) and lr A for biases; one --lr is every layer's, unscaled "
                        f"(default: {T['optimizer']})")
    p.add_argument("--momentum", type=float, default=T["momentum"], help=f"momentum, Adam's beta1 (default: "
                   f"{T['momentum']})")
    p.add_argument("--average", type=float, metavar="DECAY",
                   help="moving average of the weights (decay per batch; 0: off) used as the trained model: "
                        "validation, test and NET.npz (default: a window of one epoch, 1 - batch/training samples)")
    p.add_argument("--beta", type=float, default=T["beta"], help="nudging strength β > 0, S, lowered every epoch to "
                   f"keep the negative phase convex (half the smallest output conductance) (default: {T['beta']})")
    p.add_argument("--estimator", choices=["centered", "positive", "negative"], default=T["estimator"],
                   help="the two phases EP compares: centered: +beta and -beta (bias O(beta^2)); positive: +beta and "
                        f"free; negative: free and -beta (bias O(beta)) (default: {T['estimator']})")
    p.add_argument("--gradient", choices=["ep", "implicit"], default=T["gradient"],
                   help="ep: equilibrium propagation; implicit: the true gradient by implicit differentiation, a "
                        f"control that tells EP's bias from a model that cannot learn (default: {T['gradient']})")
    p.add_argument("--target", type=float, default=T["target"], help="output target of the true class, V "
                   f"(default: {T['target']})")
    p.add_argument("--g-min", type=float, default=T["g_min"], help=f"conductance floor, S (default: {T['g_min']})")
    p.add_argument("--g-max", type=float, default=T["g_max"], help=f"conductance ceiling, S (default: {T['g_max']})")
    p.add_argument("--tol", type=float, default=T["tol"], help="solver tolerance in training, relative KCL "
                   f"(default: {T['tol']}; evaluation always uses {T['eval_tol']})")
    p.add_argument("--max-sweeps", type=int, default=T["max_sweeps"], help="solver sweep cap in training; a sample "
                   "any of whose phases hits it is left out of the gradient and counted (history column excluded) "
                   f"(default: {T['max_sweeps']})")
    p.add_argument("--seed", type=int, default=T["seed"], help="seed of the initial network, the train/validation "
                   f"split and the batch order (default: {T['seed']})")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default: 1 — 2 threads were no faster for "
                   "mini-batches of this size on the 2-core reference machine, and 1 leaves a core free; "
                   "docs/performance.md#training)")
    p.add_argument("--resume", action="store_true", help="continue from NET.ckpt.npz (same options, more "
                   "--epochs; the same --epochs where the run's NET.npz was not written: writes it)")
    p.add_argument("--init", metavar="NET.npz", help="start from this trained network's weights (and its rails and "
                   "input gain) instead of a random one, with a fresh optimizer: e.g. a finished run continued at a "
                   "lower --lr; the structure options must describe it")
    p.add_argument("--out", required=True, metavar="NET.npz", help="output network file; an existing file is "
                   "refused, but the network of a run of 0 epochs, or with --resume the network its run wrote")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="run a CD-vs-ngspice study from a TOML config (resumable)",
                       description="For every cell of the config's grid (depth x width x element x amplifier x "
                                   "seed): build or train the network, solve the validation samples with CD and each "
                                   "ngspice runner, write per-sample and summary CSVs with provenance. Finished cells "
                                   "are skipped on a re-run. Configs: studies/configs/*.toml.")
    p.add_argument("config", metavar="CONFIG.toml", help="study config: [study] (name, samples, jobs, ...) and "
                   "[grid] (depth, width, element, amplifier, seed lists); examples in studies/configs/")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/<study name>)")
    p.add_argument("--jobs", type=int, help="ngspice worker processes (overrides study.jobs)")
    p.add_argument("--max-samples", type=int, help="at most this many validation samples per cell")
    p.add_argument("--cell-jobs", type=int, help="cells run at once, joblib processes (overrides study.cell_jobs, "
                   "default 1: parallel cells disturb each other's timings)")
    p.add_argument("--dask", metavar="ADDRESS", help="run the cells on a Dask cluster (scheduler address, e.g. "
                   "tcp://10.0.0.5:8786; pip install 'drn-cd[dask]'; the --out folder must be shared by the workers)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plot", help="figures (PNG+PDF): a compare results folder, or training learning curves",
                       description="RESULTS_DIR of drn compare: runtime vs width per depth (log-log), speed-up vs "
                                   "width, error CDF per depth, summary.md and README.md (provenance), written into "
                                   "it; several RESULTS_DIRs are merged into --out DIR. NET.history.csv files of drn "
                                   "train: train and validation error per epoch in one figure (--out, default: "
                                   "learning_curve.png next to the first file).")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR | NET.history.csv")
    p.add_argument("--out", metavar="FIG.png | DIR", help="learning-curve figure, FIG.png or FIG.pdf (both are "
                   "written; default: learning_curve.png beside the first history), or the folder for the figures "
                   "of results folders (default: the results folder itself; several: --out DIR needed)")
    p.add_argument("--style", choices=["paper", "screen"], default="paper",
                   help="paper: 3.4 in / 7 in wide, 8 pt, fonts embedded in the PDF (default); screen: larger")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("doctor", help="check ngspice, PySpice, versions, BLAS",
                       description="Report versions and whether ngspice (batch) and its shared library work. "
                                   "Exit 1 if something is missing.")
    p.set_defaults(func=cmd_doctor)
    from .verify import add_parser as add_verify_parser
    add_verify_parser(sub)
    from . import gradients
    gradients.add_parser(sub)
    circuit_cli.add_parser(sub)
    return ap


def _config_options(config: str) -> list[str]:
    """``drn train --config FILE.toml`` (also ``--config=FILE``, or an abbreviation argparse accepts): the file's
    keys as options, to be placed before the command line's own (which therefore win). Unknown keys and wrong types
    are errors naming the file. A value is one option's value, never more command-line words: scalars are passed as
    ``--key=value``, lists may hold numbers only."""
    import tomllib

    path = Path(config)
    try:
        cfg = tomllib.loads(path.read_text())
    except OSError as e:
        raise CliError(f"--config {path}: cannot read ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CliError(f"--config {path}: not valid TOML ({e})") from None
    opts: list[str] = []
    for key, val in cfg.items():
        dest = key.replace("-", "_")
        if dest not in RUN_OPTIONS + ("epochs",):
            raise CliError(f"--config {path}: unknown key {key!r} (allowed: {', '.join(RUN_OPTIONS)}, epochs)")
        flag = "--" + dest.replace("_", "-")
        if isinstance(val, list):
            if not val or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in val):
                raise CliError(f"--config {path}: {key} must be a number, a string or a list of numbers, got {val!r}")
            opts += [flag, *map(str, val)]
        elif isinstance(val, (int, float, str)) and not isinstance(val, bool):
            opts.append(f"{flag}={val}")
        else:
            raise CliError(f"--config {path}: {key} must be a number, a string or a list of numbers, got {val!r}")
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser()
    args, extra = ap.parse_known_args(argv)
    if args.command == "train" and args.config is not None:  # --config: the file's options, then argv's again
        try:
            opts = _config_options(args.config)
        except CliError as e:
            print(f"drn train: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        i = argv.index(args.command) + 1
        args, extra = ap.parse_known_args([*argv[:i], *opts, *argv[i:]])
    if extra:  # named by the command's parser: "drn solve: error: unrecognized arguments"
        ap.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except (ValidationError, NgspiceMissing) as e:  # bad input; any other exception is a bug: traceback, exit 1
        print(f"drn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader of stdout left (drn doctor | head): stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # Ctrl-C where a command keeps nothing (spice, train, compare keep their work)
        print(f"drn {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # run the package's module, so that errors raised by command modules are caught
    from studies.cli import main
    sys.exit(main())
