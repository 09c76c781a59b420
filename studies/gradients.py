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
from typing import TYPE_CHECKING, Callable, Sequence

from cdsolver.constants import ESTIMATORS
from cdsolver.validation import ValidationError, check_timeout

if TYPE_CHECKING:  # numpy and the solver are imported where used: ``drn --help`` loads this module (studies/cli.py)
    import numpy as np
    import pandas as pd

    from cdsolver.datasets import Split
    from cdsolver.ep import Gradient
    from cdsolver.network import Network

    #: (per-sample ok flags, reasons, gradient over chosen samples)
    _Prepared = tuple[np.ndarray, list[str], Callable[[np.ndarray], Gradient]]

__all__ = ["METHODS", "BETA", "PAIRS", "GradientResult", "gradient", "sample_errors", "rel_error", "gradient_columns",
           "gradient_summary", "gradient_cdf", "add_parser", "cmd_gradient"]

METHODS = ("implicit", "ep", "spice-ep", "spice-linear")

#: Default EP nudging strength of the gradient checks, S: small against the ~1 S output conductances (the
#: negative phase stays convex; centered EP is then 1e-4..1e-3 off the true gradient on the test and demo
#: networks), large against the ~1e-15 V precision of the states (SPICE's EP = CD's EP to ~1e-11).
BETA = 0.01

#: (method, reference) pairs a study compares per sample
PAIRS = (("ep", "implicit"), ("spice-ep", "implicit"), ("spice-linear", "implicit"), ("spice-ep", "ep"))

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
        import numpy as np

        arrays = {f"G{l}": g for l, g in enumerate(self.grad.dG, 1)}
        arrays.update({f"b{l}": b for l, b in enumerate(self.grad.db, 1)})
        arrays.update(failed=self.failed, reason=np.array(self.reason, dtype=str), method=np.array(self.method),
                      wall=np.array(self.wall))
        with open(path, "wb") as f:
            np.savez(f, **arrays)


def _take(states: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    return [s[rows] for s in states]


def _ep(net: Network, v0: np.ndarray, beta: float, estimator: str,
        phase: Callable[[float], tuple[list[np.ndarray], np.ndarray, list[str]]]) -> _Prepared:
    """EP from the phases ``phase(β) -> (states, ok, reason)`` of any engine."""
    from cdsolver.ep import ep_estimate, ep_phases

    a, b = ep_phases(net, estimator, beta)
    (sa, oka, ra), (sb, okb, rb) = phase(a), phase(b)
    return oka & okb, [x or z for x, z in zip(ra, rb)], \
        lambda r: ep_estimate(net, v0[r], _take(sa, r), _take(sb, r), a, b)


def _prepare(net: Network, v0: np.ndarray, y: np.ndarray, method: str, beta: float, estimator: str, runner: str,
             jobs: int, timeout: float | None, chunk: int, tol: float | None) -> _Prepared:
    """Solve what ``method`` needs (CD or ngspice); returns per-sample ok flags and reasons, and the function
    that gives the gradient (batch mean) over chosen samples."""
    from cdsolver.ep import ep_phases, implicit_gradient, response_gradient
    from cdsolver.solver import solve

    if method not in METHODS:
        raise ValidationError(f"method must be one of {METHODS}, got {method!r}")
    if method in ("ep", "spice-ep"):
        ep_phases(net, estimator, beta)  # validates before any work
    kw = {} if tol is None else {"tol": tol}
    if method in ("implicit", "ep"):
        free = solve(net, v0, targets=y, **kw)

        def cd_phase(b: float):
            s = free if b == 0 else solve(net, v0, beta=b, targets=y, init=free.states, reuse=free, **kw)
            return s.states, s.converged, ["" if c else f"CD did not converge (beta={b})" for c in s.converged]

        if method == "ep":
            return _ep(net, v0, beta, estimator, cd_phase)
        _, ok, reason = cd_phase(0.0)
        return ok, reason, lambda r: implicit_gradient(net, v0[r], _take(free.states, r), y[r])
    if method == "spice-ep":
        from spice_bridge.runners import run

        def spice_phase(b: float):
            res = run(net, v0, runner=runner, beta=b, targets=y, jobs=jobs, timeout=timeout, chunk=chunk)
            return res.states, res.ok, [x and f"ngspice (beta={b}): {x}" for x in res.reason]

        return _ep(net, v0, beta, estimator, spice_phase)
    from spice_bridge.linear import run_linear

    res = run_linear(net, v0, y, runner=runner, jobs=jobs, timeout=timeout, chunk=chunk)
    return res.ok, res.reason, lambda r: response_gradient(net, v0[r], _take(res.states, r),
                                                           [-x[r] for x in res.response])


def gradient(net: Network, v0: np.ndarray, y: np.ndarray, method: str, *, beta: float = BETA,
             estimator: str = "centered", runner: str = "batch", jobs: int = 1, timeout: float | None = None,
             chunk: int = 400, tol: float | None = None) -> GradientResult:
    """Gradient of the batch-mean loss ``½‖decode(v_L) − y‖²`` at the free steady state, w.r.t. every conductance
    and bias, by ``method`` (``METHODS``). ``v0`` input voltages (V, ``(batch, n_0)``), ``y`` targets (V,
    ``(batch, n_classes)``). ``beta`` (S, > 0) and ``estimator``: the EP methods. ``runner``, ``jobs``,
    ``timeout`` (s), ``chunk``: ngspice (``spice_bridge.runners.run``). ``tol``: CD's tolerance (default: solver's)."""
    import numpy as np

    from cdsolver.ep import Gradient

    t0 = time.perf_counter()
    ok, reason, fn = _prepare(net, v0, y, method, beta, estimator, runner, jobs, timeout, chunk, tol)
    grad = fn(np.flatnonzero(ok)) if ok.any() else Gradient([np.full_like(g, np.nan) for g in net.G],
                                                             [np.full_like(b, np.nan) for b in net.b])
    return GradientResult(grad, ~ok, list(reason), method, time.perf_counter() - t0)


def sample_errors(net: Network, v0: np.ndarray, y: np.ndarray, pairs: Sequence[tuple[str, str]] = PAIRS, *,
                  beta: float = BETA, runner: str = "batch", jobs: int = 1, timeout: float | None = None,
                  tol: float | None = None) -> dict[tuple[str, str], np.ndarray]:
    """Per sample, the relative L1 error (``rel_error``) of method ``m``'s one-sample gradient against method
    ``ref``'s, for each pair ``(m, ref)`` (centered EP; NaN where either failed). Each method is solved once."""
    import numpy as np

    args = dict(beta=beta, estimator="centered", runner=runner, jobs=jobs, timeout=timeout, chunk=400, tol=tol)
    prep = {m: _prepare(net, v0, y, m, **args) for m in dict.fromkeys(x for p in pairs for x in p)}
    out = {}
    for m, ref in pairs:
        (ok, _, fn), (ok0, _, fn0) = prep[m], prep[ref]
        out[m, ref] = np.array([rel_error(fn([b]), fn0([b])) if ok[b] and ok0[b] else np.nan
                                for b in range(len(v0))])
    return out


def rel_error(g: Gradient, ref: Gradient) -> float:
    """Relative L1 error over all parameters, ``Σ|g − ref| / Σ|ref|``."""
    import numpy as np

    a, b = g.flat(), ref.flat()
    return float(np.abs(a - b).sum() / np.abs(b).sum())


# ---------------------------------------------------------------- studies (study.gradients = true)
def _column(method: str, ref: str) -> str:
    return "grad_" + method.replace("-", "_") + ("" if ref == "implicit" else "_vs_" + ref.replace("-", "_"))


def gradient_columns(df: pd.DataFrame, net: Network, val: Split, cfg: dict) -> pd.DataFrame:
    """A study cell's rows plus, per ``PAIRS`` entry, a column of per-sample relative L1 gradient errors:
    ``grad_ep``, ``grad_spice_ep``, ``grad_spice_linear`` (against ``implicit``) and ``grad_spice_ep_vs_ep``
    (ngspice methods through the row's runner; targets one-hot, ``TrainConfig.target`` V; β = ``BETA``)."""
    from cdsolver.train import TrainConfig, targets

    st, n = cfg["study"], int(df["sample"].max()) + 1
    v0, y = net.encode(val.x[:n]), targets(val.y[:n], net.n_classes, TrainConfig.target)
    df = df.copy()
    for r in df.runner.unique():
        rows = (df.runner == r).to_numpy()
        for pair, e in sample_errors(net, v0, y, runner=r, jobs=st["jobs"], timeout=st["timeout"]).items():
            df.loc[rows, _column(*pair)] = e[df.loc[rows, "sample"].to_numpy()]
    return df


def gradient_summary(g: pd.DataFrame) -> dict[str, float]:
    """P50/P90 (``metrics.percentiles``) of the gradient-error columns a cell's rows have (none: ``{}``)."""
    from .metrics import percentiles

    out = {}
    for c in (_column(*p) for p in PAIRS):
        if c in g:
            p = percentiles(g[c].to_numpy())
            out.update({f"{c}_p50": p["p50"], f"{c}_p90": p["p90"]})
    return out


def gradient_cdf(df: pd.DataFrame, plt) -> object | None:
    """Figure: CDF over a study's samples of each gradient-error column (None if the study has none)."""
    import numpy as np

    cols = [(p, _column(*p)) for p in PAIRS if _column(*p) in df]
    if not cols:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for k, ((m, ref), c) in enumerate(cols):
        x = np.sort(np.maximum(df[c].dropna().to_numpy(), 1e-18))
        ax.step(x, np.arange(1, len(x) + 1) / len(df), where="post", ls="-:"[k % 2], label=f"{m} vs {ref}")
    ax.set(xscale="log", xlabel="relative L1 gradient error (all parameters)",
           ylabel="fraction of samples (failed: missing)", title=f"gradients, centered EP at β = {BETA} S")
    ax.legend(fontsize=7)
    return fig


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
    p.add_argument("--method", choices=METHODS, default="implicit",
                   help="implicit: CD's free phase and implicit differentiation, the exact gradient; ep: equilibrium "
                        "propagation from CD's free and nudged phases; spice-ep: the same from ngspice's phases; "
                        "spice-linear: ngspice's operating point and its .ac response to the cost's derivative at the "
                        "outputs (the circuit's own linearisation) (default: implicit)")
    p.add_argument("--beta", type=float, help=f"EP nudging strength β > 0, S; with the negative or "
                   f"centered estimator below the network's convexity limit (cdsolver.ep.beta_limit) (default: {BETA})")
    p.add_argument("--estimator", choices=ESTIMATORS, help="EP estimator (default: centered)")
    p.add_argument("--runner", choices=["op", "batch", "shared"],
                   help="ngspice runner of the spice methods' operating points (default: batch)")
    p.add_argument("--jobs", type=int, help="ngspice worker processes of the spice methods, 1..4 per core "
                   "(default: 1)")
    p.add_argument("--timeout", type=float, help="seconds per ngspice run of one sample, spice methods (default: "
                   "sized to the network, spice_bridge.runners.default_timeout)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default: 1)")
    p.add_argument("--out", required=True, metavar="GRAD.npz", help="output gradient file")
    p.set_defaults(func=cmd_gradient)


def cmd_gradient(args: argparse.Namespace) -> int:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from spice_bridge.runners import check_jobs, ngspice_exe

    # (errors raise ValidationError: also under python -m studies.cli)
    from .cli import EXIT_NOT_CONVERGED, load_problem

    given = [k for k, v in {"--runner": args.runner, "--jobs": args.jobs, "--timeout": args.timeout}.items()
             if v is not None]
    args.runner, args.jobs = args.runner or "batch", check_jobs(1 if args.jobs is None else args.jobs, "--jobs")
    nudge = [k for k, v in {"--beta": args.beta, "--estimator": args.estimator}.items() if v is not None]
    ep = args.method in ("ep", "spice-ep")
    args.beta = (BETA if args.beta is None else args.beta) if ep else 0.0  # (other methods nudge nothing)
    args.estimator = args.estimator or "centered"
    if ep and not args.beta > 0:
        raise ValidationError(f"--beta must be > 0 for --method {args.method} (the estimator sets the signs), "
                         f"got {args.beta}")
    if args.threads < 1:
        raise ValidationError(f"--threads must be >= 1, got {args.threads}")
    check_timeout(args.timeout, "--timeout")
    if args.method.startswith("spice"):
        ngspice_exe()  # NgspiceMissing: one line, exit 2
    net, v0, y = load_problem(args, nudged=False)  # (--beta is EP's, the targets the cost's)
    if given and not args.method.startswith("spice"):
        print(f"note: --method {args.method} runs no ngspice: {', '.join(given)} not used", file=sys.stderr)
    if nudge and not ep:
        print(f"note: --method {args.method} nudges nothing (no EP): {', '.join(nudge)} not used", file=sys.stderr)
    if ep and args.estimator != "positive":
        from cdsolver.ep import beta_limit

        limit = beta_limit(net, margin=1.0)
        if not args.beta < limit:
            raise ValidationError(f"--beta {args.beta:g} S: the -beta phase of the {args.estimator} estimator keeps "
                                  f"this network convex only for beta < {limit:.4g} S (cdsolver.ep.beta_limit)")
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
