"""``drn gradient``: the loss gradient of a network by four methods, to compare a fast solver with SPICE.

- ``implicit``: CD free phase, then implicit differentiation (``cdsolver.ep.implicit_gradient``): the truth.
- ``ep``: EP from CD's free and nudged phases.
- ``spice-ep``: EP from ngspice's free and nudged phases (any runner), the same estimator on SPICE's states.
- ``spice-linear``: hardware linearisation: ngspice's operating point and its ``.ac`` response to the cost's
  derivative injected at the outputs (``spice_bridge.linear``), then branch voltages × adjoint differences.

The gradient is the mean over the samples that did not fail (``failed`` flags per sample: CD did not converge,
or ngspice failed in a phase); with every sample failed it is NaN. Derivation: docs/gradients.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cdsolver.ep import ESTIMATORS, Gradient, ep_estimate, ep_phases, implicit_gradient, response_gradient
from cdsolver.network import Network
from cdsolver.solver import solve
from cdsolver.train import TrainConfig

__all__ = ["METHODS", "GradientResult", "gradient", "rel_error", "add_parser", "cmd_gradient"]

METHODS = ("implicit", "ep", "spice-ep", "spice-linear")


@dataclass
class GradientResult:
    """A gradient (mean over the samples not ``failed``), per-sample failure flags and reasons, wall time (s)."""

    grad: Gradient
    failed: np.ndarray
    reason: list[str]
    method: str
    wall: float

    def save(self, path: str | Path) -> None:
        """``G1..GL`` (V²/S), ``b1..bL`` (V²/A), ``failed``, ``reason``, ``method``, ``wall`` (s)."""
        arrays = {f"G{l}": g for l, g in enumerate(self.grad.dG, 1)}
        arrays.update({f"b{l}": b for l, b in enumerate(self.grad.db, 1)})
        arrays.update(failed=self.failed, reason=np.array(self.reason, dtype=str), method=np.array(self.method),
                      wall=np.array(self.wall))
        with open(path, "wb") as f:
            np.savez(f, **arrays)


def _mean_over(ok: np.ndarray, net: Network, fn: Callable[[np.ndarray], Gradient]) -> Gradient:
    """``fn(rows)`` over the samples ``ok``; NaN where none is."""
    if not ok.any():
        return Gradient([np.full_like(g, np.nan) for g in net.G], [np.full_like(b, np.nan) for b in net.b])
    return fn(np.flatnonzero(ok))


def _take(states: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    return [s[rows] for s in states]


def _ep(net: Network, v0: np.ndarray, y: np.ndarray, beta: float, estimator: str,
        phase: Callable[[float], tuple[list[np.ndarray], np.ndarray, list[str]]]):
    """EP from the phases ``phase(β) -> (states, ok, reason)`` of any engine."""
    a, b = ep_phases(estimator, beta)
    (sa, oka, ra), (sb, okb, rb) = phase(a), phase(b)
    ok = oka & okb
    reason = [x or z for x, z in zip(ra, rb)]
    grad = _mean_over(ok, net, lambda r: ep_estimate(net, v0[r], _take(sa, r), _take(sb, r), a, b))
    return grad, ok, reason


def gradient(net: Network, v0: np.ndarray, y: np.ndarray, method: str, *, beta: float = TrainConfig.beta,
             estimator: str = "centered", runner: str = "batch", jobs: int = 1, timeout: float = 600.0,
             chunk: int = 400, tol: float | None = None) -> GradientResult:
    """Gradient of the batch-mean loss ``½‖decode(v_L) − y‖²`` at the free steady state, w.r.t. every conductance
    and bias, by ``method`` (``METHODS``). ``v0`` input voltages (V, ``(batch, n_0)``), ``y`` targets (V,
    ``(batch, n_classes)``). ``beta`` (S, > 0) and ``estimator``: the EP methods. ``runner``, ``jobs``,
    ``timeout``, ``chunk``: ngspice (``spice_bridge.runners.run``). ``tol``: CD's tolerance (default: solver's)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in ("ep", "spice-ep"):
        ep_phases(estimator, beta)  # validates before any work
    kw = {} if tol is None else {"tol": tol}
    t0 = time.perf_counter()
    if method in ("implicit", "ep"):
        free = solve(net, v0, targets=y, **kw)

        def cd_phase(b: float):
            s = free if b == 0 else solve(net, v0, beta=b, targets=y, init=free.states, **kw)
            return s.states, s.converged, ["" if c else f"CD did not converge (beta={b})" for c in s.converged]

        if method == "implicit":
            _, ok, reason = cd_phase(0.0)
            grad = _mean_over(ok, net, lambda r: implicit_gradient(net, v0[r], _take(free.states, r), y[r]))
        else:
            grad, ok, reason = _ep(net, v0, y, beta, estimator, cd_phase)
    elif method == "spice-ep":
        from spice_bridge.runners import run

        def spice_phase(b: float):
            res = run(net, v0, runner=runner, beta=b, targets=y, jobs=jobs, timeout=timeout, chunk=chunk)
            return res.states, res.ok, [x and f"ngspice (beta={b}): {x}" for x in res.reason]

        grad, ok, reason = _ep(net, v0, y, beta, estimator, spice_phase)
    else:
        from spice_bridge.linear import run_linear

        res = run_linear(net, v0, y, runner=runner, jobs=jobs, timeout=timeout, chunk=chunk)
        ok, reason = res.ok, res.reason
        grad = _mean_over(ok, net, lambda r: response_gradient(net, v0[r], _take(res.states, r),
                                                                [-x[r] for x in res.response]))
    return GradientResult(grad, ~ok, list(reason), method, time.perf_counter() - t0)


def rel_error(g: Gradient, ref: Gradient) -> float:
    """Relative L1 error over all parameters, ``Σ|g − ref| / Σ|ref|``."""
    a, b = g.flat(), ref.flat()
    return float(np.abs(a - b).sum() / np.abs(b).sum())


# ---------------------------------------------------------------- command line
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``drn gradient``."""
    p = sub.add_parser("gradient", help="loss gradient by implicit differentiation, EP (CD or ngspice) or ngspice's "
                                        "small-signal analysis",
                       description="Gradient of the mean cost ½‖v_L − y‖² (paired outputs: on v+ − v−) at the free "
                                   "steady state w.r.t. every conductance (S) and bias current (A). Writes G1..GL, "
                                   "b1..bL and per-sample failed flags (docs/gradients.md).")
    p.add_argument("network", metavar="NET.npz", help="network file (format drn/1)")
    p.add_argument("inputs", metavar="X.npy", help="features (batch, n_features) scaled to [0, 1]")
    p.add_argument("--encoded", action="store_true", help="X already holds the input voltages v0 (batch, n_0), V")
    p.add_argument("--targets", required=True, metavar="Y.npy",
                   help="output targets (batch, n_classes), V; paired outputs: targets of v+ - v-")
    p.add_argument("--method", choices=METHODS, default="implicit", help="(default: implicit)")
    p.add_argument("--beta", type=float, default=TrainConfig.beta,
                   help=f"EP nudging strength β > 0, S (default: {TrainConfig.beta}, training's)")
    p.add_argument("--estimator", choices=ESTIMATORS, default="centered", help="EP estimator (default: centered)")
    p.add_argument("--runner", choices=["op", "batch", "shared"], default="batch",
                   help="ngspice runner of the spice methods' operating points (default: batch)")
    p.add_argument("--jobs", type=int, default=1, help="ngspice worker processes (default: 1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per ngspice run (default: 600)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default: 1)")
    p.add_argument("--out", required=True, metavar="GRAD.npz", help="output gradient file")
    p.set_defaults(func=cmd_gradient)


def cmd_gradient(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from spice_bridge.runners import ngspice_exe

    from .cli import EXIT_NOT_CONVERGED, load_problem  # errors raise ValueError: also under python -m studies.cli

    if args.method in ("ep", "spice-ep") and not args.beta > 0:
        raise ValueError(f"--beta must be > 0 for --method {args.method} (the estimator sets the signs), got {args.beta}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.method.startswith("spice"):
        ngspice_exe()  # NgspiceMissing: one line, exit 2
    net, v0, y = load_problem(args)
    with threadpool_limits(args.threads, user_api="blas"):
        res = gradient(net, v0, y, args.method, beta=args.beta, estimator=args.estimator, runner=args.runner,
                       jobs=args.jobs, timeout=args.timeout)
    res.save(args.out)
    print(f"{len(v0)} samples, network {'-'.join(map(str, net.sizes))} ({net.element.kind}), method {args.method}: "
          f"{int(res.failed.sum())} failed; |grad|_1 = {np.abs(res.grad.flat()).sum():.6g}; "
          f"{res.wall / len(v0):.4f} s/sample; wrote {args.out}")
    if res.failed.any():
        bad = np.flatnonzero(res.failed)
        print(f"warning: {bad.size} samples failed and are left out of the mean, first: sample {bad[0]}: "
              f"{res.reason[bad[0]]}", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0
