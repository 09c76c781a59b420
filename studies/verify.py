"""`drn verify`: do these steady states agree with ngspice? One command with thresholds, exit codes and a report.

ngspice solves the samples (the reference), the CD solver solves them too, and with ``--states`` a user's own
states (docs/formats.md#states-files: ``v1..vL``, each ``(batch, n_l)``, V) are read. Each comparison — CD vs ngspice,
and theirs vs ngspice and theirs vs CD — gives per sample the relative L1 error ``‖a − b‖₁ / (‖b‖₁ + ε)`` over
hidden+output nodes (``b`` = the reference, ε = ``metrics.EPS_L1``), overall and per layer; its P50/P90/P99/max
over the samples; the largest ``|a − b|`` (V) with its sample and node. Samples ngspice failed on are left out
of the comparisons against it (and counted). Samples whose states are NaN or inf (CD failed on them) cannot be
compared: they are left out of the numbers and fail the comparison, named.

Exit status: 0 every comparison within ``p90`` (and ``max``, if given); 1 some comparison outside (named, with
its worst layer); 2 bad input (the CLI's error path); 3 a solver failed: ngspice on more samples than allowed or on
all (nothing compared with it), or CD (NaN or inf states) on any (checked before the thresholds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cdsolver.validation import ValidationError

if TYPE_CHECKING:  # numpy and the solver are imported where used: ``drn --help`` loads this module (studies/cli.py)
    import numpy as np

    from cdsolver.network import Network

__all__ = ["Comparison", "Verification", "compare_states", "load_their_states", "verify", "exit_code",
           "report_json", "report_junit", "write_report", "add_parser", "cmd_verify", "P90_TOL"]

#: default threshold on the P90 of the overall relative L1 error of every comparison
P90_TOL = 1e-9
EXIT_OUTSIDE = 1
EXIT_SOLVER_FAILED = 3
REPORT_SUFFIXES = (".json", ".xml")


class VerifyInputError(ValidationError):
    """Bad input to ``drn verify`` (a states file that does not fit, a bad option): one line, exit 2."""


@dataclass
class Comparison:
    """States ``a`` against reference states ``b`` over the ``samples`` both have, finite.

    rel_l1: P50/P90/P99/max over the samples of the overall relative L1 error; layers: the same per layer
    (``layers[l-1]`` is layer ``l``). max_abs_V: largest ``|a − b|`` (V), at ``worst_node`` = (sample, layer,
    node). worst_sample: the sample with the largest overall relative L1 error (both None when no sample was
    compared). not_finite: side ("cd" of "cd vs ngspice") -> the samples left out because its states are NaN or
    inf there. failure: why the comparison is outside the thresholds or has such samples ("" = within).
    """

    name: str
    samples: int
    rel_l1: dict[str, float]
    layers: list[dict[str, float]]
    max_abs_V: float
    worst_sample: int | None
    worst_node: tuple[int, int, int] | None
    not_finite: dict[str, list[int]] = field(default_factory=dict)
    failure: str = ""

    @property
    def passed(self) -> bool:
        return not self.failure

    def worst_layer(self, stat: str) -> int:
        """The layer (1-based) with the largest per-layer ``stat`` ("p90" or "max")."""
        import numpy as np

        return 1 + int(np.nanargmax([s[stat] for s in self.layers]))

    def check(self, p90: float, max_tol: float | None) -> "Comparison":
        """Set ``failure`` if some states are NaN or inf, P90 > ``p90`` or max > ``max_tol`` (or nothing was
        compared); return self."""
        r = self.rel_l1
        why = [f"NaN/inf states from {side} on {len(k)} samples (first: sample {k[0]}), not compared"
               for side, k in self.not_finite.items()]
        if self.samples == 0:
            why = why or ["no sample to compare (ngspice failed on all of them)"]
        elif not r["p90"] <= p90:
            l = self.worst_layer("p90")
            why.append(f"P90 rel L1 {r['p90']:.3g} > {p90:g}; worst layer v{l} (P90 {self.layers[l - 1]['p90']:.3g})")
        elif max_tol is not None and not r["max"] <= max_tol:
            l = self.worst_layer("max")
            why.append(f"max rel L1 {r['max']:.3g} > {max_tol:g}; worst layer v{l} "
                       f"(max {self.layers[l - 1]['max']:.3g})")
        self.failure = "; ".join(why)
        return self


def _finite_rows(states: Sequence[np.ndarray]) -> np.ndarray:
    """Per sample: are all its states (``v1..vL``, each ``(batch, n_l)``) finite?"""
    import numpy as np

    return np.all([np.isfinite(v).all(axis=1) for v in states], axis=0)


def compare_states(name: str, a: Sequence[np.ndarray], b: Sequence[np.ndarray],
                   rows: np.ndarray | None = None) -> Comparison:
    """Compare states ``a`` with reference states ``b`` (lists ``v1..vL`` of ``(batch, n_l)``, V) over the
    sample indices ``rows`` (default: all) where both are finite; ``name`` is "<a's name> vs <b's name>"."""
    import numpy as np

    from .metrics import percentiles, rel_l1

    rows = np.arange(len(a[0])) if rows is None else np.asarray(rows, dtype=np.int64)
    sides = (name.split(" vs ", 1) + ["reference"])[:2]
    ok_a, ok_b = (_finite_rows([x[rows] for x in s]) for s in (a, b))
    not_finite = {side: rows[~ok].tolist() for side, ok in zip(sides, (ok_a, ok_b)) if not ok.all()}
    rows = rows[ok_a & ok_b]
    a, b = [x[rows] for x in a], [x[rows] for x in b]
    if rows.size == 0:
        none = percentiles(np.empty(0))
        return Comparison(name, 0, none, [none] * len(a), np.nan, None, None, not_finite)
    err = rel_l1(a, b)
    dv = np.abs(np.concatenate(a, axis=1) - np.concatenate(b, axis=1))
    k, j = np.unravel_index(int(np.argmax(dv)), dv.shape)
    first = np.cumsum([0] + [x.shape[1] for x in a])  # first column of each layer in dv
    layer = int(np.searchsorted(first, j, side="right")) - 1
    return Comparison(name, int(rows.size), percentiles(err), [percentiles(rel_l1([x], [y])) for x, y in zip(a, b)],
                      float(dv[k, j]), int(rows[np.argmax(err)]), (int(rows[k]), layer + 1, int(j - first[layer])),
                      not_finite)


def load_their_states(path: str | Path, sizes: Sequence[int], batch: int) -> tuple[list[np.ndarray], int]:
    """A user's states file checked against the network (layer sizes ``sizes[1:]``) and the batch: returns
    (``v1..vL``, samples it marks ``converged == False``, 0 without that array). Raises VerifyInputError."""
    import numpy as np

    from cdsolver.files import check_in, numpy_kind
    from cdsolver.solver import load_states
    from cdsolver.validation import check_array

    try:
        p = check_in(path, "states")
    except ValidationError as e:
        raise VerifyInputError(str(e)) from None
    try:
        kind = numpy_kind(p)
    except OSError as e:
        raise VerifyInputError(f"states file {p}: cannot read ({e.strerror or e})") from None
    if kind != "npz":
        raise VerifyInputError(f"states file {p} is not an .npz archive: --states must be an .npz with arrays "
                               f"v1..vL (numpy.savez)")
    try:
        states = load_states(p)
        with np.load(p, allow_pickle=False) as f:
            conv = f["converged"] if "converged" in f.files else None
    except Exception as e:
        raise VerifyInputError(f"states file {p} is not a readable .npz with v1..vL ({e})") from None
    L = len(sizes) - 1
    if len(states) != L:
        raise VerifyInputError(f"states file {p} has layers v1..v{len(states)}, the network has {L} layers "
                               f"(needs v1..v{L}; a states file for another network?)")
    out = []
    for l, v in enumerate(states, 1):
        v = np.asarray(v)
        if v.ndim == 2 and v.shape[1] != sizes[l]:
            raise VerifyInputError(f"states file {p}: v{l} has {v.shape[1]} nodes, layer {l} of the network has "
                                   f"{sizes[l]} (a states file for another network?)")
        if v.ndim == 2 and v.shape[0] != batch:
            raise VerifyInputError(f"states file {p}: v{l} has {v.shape[0]} samples, INPUTS has {batch}")
        try:
            out.append(check_array(v, f"states file {p}: v{l}", (batch, sizes[l])))
        except ValueError as e:
            raise VerifyInputError(str(e)) from None
    if conv is None:
        return out, 0
    if conv.shape != (batch,) or conv.dtype != bool:
        raise VerifyInputError(f"states file {p}: converged is {conv.dtype} {conv.shape}, needs bool ({batch},): "
                               f"one flag per sample of INPUTS (docs/formats.md#states-files)")
    return out, int((~conv).sum())


@dataclass
class Verification:
    """Everything ``drn verify`` found: the comparisons and the runs behind them."""

    comparisons: list[Comparison]
    samples: int
    runner: str
    spice_failed: list[tuple[int, str]]  # (sample, ngspice's reason)
    allow_spice_failures: int
    spice_s: float  # wall time of the ngspice run, s
    cd_s: float  # wall time of the CD solve, s
    cd_not_converged: int
    cd_failed: list[int]  # samples whose CD states are NaN or inf
    their_not_converged: int | None  # None: no --states
    thresholds: dict[str, float | None]
    info: dict[str, Any] = field(default_factory=dict)  # network, inputs, states file, beta (for the report)

    @property
    def spice_error(self) -> bool:
        """ngspice failed on more samples than allowed, or on all of them (nothing was compared with it)."""
        nf = len(self.spice_failed)
        return nf > self.allow_spice_failures or nf == self.samples

    @property
    def solver_failed(self) -> bool:
        """ngspice failed (``spice_error``), or CD on any sample (NaN or inf states)."""
        return self.spice_error or bool(self.cd_failed)


def verify(net: Network, v0: np.ndarray, *, theirs: Sequence[np.ndarray] | None = None, runner: str = "batch",
           beta: float = 0.0, targets: np.ndarray | None = None, jobs: int = 1, p90: float = P90_TOL,
           max_tol: float | None = None, allow_spice_failures: int = 0) -> Verification:
    """Solve ``v0`` (V, ``(batch, n_0)``) with ngspice (``runner``, ``jobs`` processes) and CD, and compare
    CD, and ``theirs`` if given, against ngspice, and ``theirs`` against CD (``p90``, ``max_tol``: thresholds on
    the relative L1 error)."""
    import numpy as np

    from cdsolver.solver import solve
    from spice_bridge.runners import run

    t = time.perf_counter()
    cd = solve(net, v0, beta=beta, targets=targets)
    cd_s = time.perf_counter() - t
    t = time.perf_counter()
    ref = run(net, v0, runner=runner, beta=beta, targets=targets, jobs=jobs)
    spice_s = time.perf_counter() - t
    ok = np.flatnonzero(ref.ok)
    comps = [compare_states("cd vs ngspice", cd.states, ref.states, ok)]
    if theirs is not None:
        comps += [compare_states("theirs vs ngspice", theirs, ref.states, ok),
                  compare_states("theirs vs cd", theirs, cd.states)]
    for c in comps:
        c.check(p90, max_tol)
    failed = [(int(k), ref.reason[k]) for k in np.flatnonzero(~ref.ok)]
    return Verification(comps, len(v0), runner, failed, int(allow_spice_failures), spice_s, cd_s,
                        int((~cd.converged).sum()), np.flatnonzero(~_finite_rows(cd.states)).tolist(), None,
                        {"p90": p90, "max": max_tol})


def exit_code(v: Verification) -> int:
    """3 if ngspice failed on too many samples (or all) or CD on any, else 1 if some comparison is outside, else
    0."""
    if v.solver_failed:
        return EXIT_SOLVER_FAILED
    return EXIT_OUTSIDE if any(not c.passed for c in v.comparisons) else 0


# ---------------------------------------------------------------- output
def _finite(x: Any) -> Any:
    """JSON-safe: NaN/inf become None, NumPy scalars Python numbers, recursively."""
    import numpy as np

    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def report_json(v: Verification) -> dict[str, Any]:
    """The report as plain JSON data (NaN as null)."""
    from .metrics import EPS_L1

    return _finite({
        "tool": "drn verify", **v.info, "samples": v.samples, "thresholds": v.thresholds, "eps_l1_V": EPS_L1,
        "exit_code": exit_code(v),
        "ngspice": {"runner": v.runner, "failed": len(v.spice_failed), "allowed": v.allow_spice_failures,
                    "failures": [{"sample": k, "reason": r} for k, r in v.spice_failed], "wall_s": v.spice_s},
        "cd": {"not_converged": v.cd_not_converged, "not_finite": v.cd_failed, "wall_s": v.cd_s},
        "theirs": None if v.their_not_converged is None else {"not_converged": v.their_not_converged},
        "comparisons": [{"name": c.name, "passed": c.passed, "failure": c.failure or None, "samples": c.samples,
                         "rel_l1": c.rel_l1, "layers": [{"layer": l, **s} for l, s in enumerate(c.layers, 1)],
                         "max_abs_V": c.max_abs_V, "worst_sample": c.worst_sample,
                         "worst_node": None if c.worst_node is None else
                         dict(zip(("sample", "layer", "node"), c.worst_node)),
                         "not_finite": c.not_finite}
                        for c in v.comparisons]})


def _numbers(c: Comparison) -> str:
    """A comparison's numbers as text lines (the console table row and the JUnit failure body)."""
    if c.samples == 0:
        return f"{c.name}: no sample compared"
    r = c.rel_l1
    lines = [f"{c.name}: {c.samples} samples; rel L1 P50 {r['p50']:.3g} P90 {r['p90']:.3g} max {r['max']:.3g}; "
             f"max |dv| {c.max_abs_V:.3g} V at sample {c.worst_node[0]} node v{c.worst_node[1]}[{c.worst_node[2]}]; "
             f"worst sample {c.worst_sample}"]
    lines += [f"  v{l}: rel L1 P50 {s['p50']:.3g} P90 {s['p90']:.3g} max {s['max']:.3g}"
              for l, s in enumerate(c.layers, 1)]
    return "\n".join(lines)


def _spice_failures(v: Verification) -> str:
    """``ngspice failed on N samples (allowed K)``; on all of them, that nothing was compared with it."""
    nf = len(v.spice_failed)
    if nf == v.samples:
        return f"ngspice failed on all {nf} samples (allowed {v.allow_spice_failures}): nothing compared with it"
    return f"ngspice failed on {nf} samples (allowed {v.allow_spice_failures})"


def report_junit(v: Verification) -> str:
    """JUnit XML: one test case per comparison (a ``<failure>`` with its numbers when outside the thresholds)
    and one for the ngspice run (an ``<error>`` when it failed on more samples than allowed, or on all)."""
    cases = []
    for c in v.comparisons:
        tc = ET.Element("testcase", classname="drn.verify", name=c.name, time="0")
        if not c.passed:
            ET.SubElement(tc, "failure", message=f"{c.name}: {c.failure}",
                          type="not finite" if c.not_finite else "threshold").text = _numbers(c)
        else:
            ET.SubElement(tc, "system-out").text = _numbers(c)
        cases.append(tc)
    tc = ET.Element("testcase", classname="drn.verify", name="ngspice reference", time=f"{v.spice_s:.3f}")
    text = "\n".join(f"sample {k}: {r}" for k, r in v.spice_failed)
    if v.spice_error:
        ET.SubElement(tc, "error", type="ngspice", message=_spice_failures(v)).text = text
    elif text:
        ET.SubElement(tc, "system-out").text = text
    cases.append(tc)
    counts = {"tests": str(len(cases)), "failures": str(sum(not c.passed for c in v.comparisons)),
              "errors": str(int(v.spice_error)), "skipped": "0", "time": f"{v.spice_s + v.cd_s:.3f}"}
    root = ET.Element("testsuites", **counts)
    suite = ET.SubElement(root, "testsuite", name="drn verify", **counts)
    props = ET.SubElement(suite, "properties")
    for k, val in {**v.info, **{f"threshold_{k}": t for k, t in v.thresholds.items()}}.items():
        ET.SubElement(props, "property", name=k, value="none" if val is None else str(val))
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_report(v: Verification, path: str | Path) -> None:
    """JSON (``.json``, any case) or JUnit XML (``.xml``), written atomically (a temporary file, then renamed)."""
    from cdsolver.files import atomic_write

    p = Path(path)
    with atomic_write(p, "w") as f:
        f.write(json.dumps(report_json(v), indent=2) + "\n" if p.suffix.lower() == ".json" else report_junit(v))


# ---------------------------------------------------------------- command line
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``drn verify``."""
    from .cli import _add_problem_args

    p = sub.add_parser("verify", help="check CD (and your own simulator's states) against ngspice, for CI",
                       description="Solve the samples with ngspice (the reference) and with CD; with --states also "
                                   "read your simulator's states (v1..vL, (batch, n_l), V). Compare CD vs ngspice "
                                   "and theirs vs ngspice and vs CD: relative L1 error over hidden+output nodes "
                                   "(P50/P90/max, overall and per layer), max |dv| (V), worst sample and node. "
                                   "Exit 0 within the thresholds, 1 outside (naming the comparison and its worst "
                                   "layer), 2 bad input, 3 a solver failed: ngspice on more samples than "
                                   "allowed or on all, or CD (NaN or inf states) on any.",
                       epilog="docs/verify.md: the CI step, a GitHub Actions job, writing a states file.")
    _add_problem_args(p)
    p.add_argument("--states", metavar="THEIRS.npz", help="your states: arrays v1..vL, (batch, n_l), V")
    p.add_argument("--runner", choices=["batch", "op", "shared"], default="batch",
                   help="ngspice runner, as in drn spice (default: batch)")
    p.add_argument("--p90", type=float, default=P90_TOL, metavar="TOL",
                   help=f"largest allowed P90 of the relative L1 error of each comparison (default: {P90_TOL:g})")
    p.add_argument("--max", type=float, dest="max_tol", metavar="TOL",
                   help="largest allowed relative L1 error of any sample (default: no limit)")
    p.add_argument("--allow-spice-failures", type=int, default=0, metavar="K",
                   help="exit 3 if ngspice fails on more than K samples, or on all (default: 0)")
    p.add_argument("--report", metavar="FILE.json|FILE.xml",
                   help="write a JSON report or a JUnit XML report (one test case per comparison)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="ngspice worker processes (default: 1)")
    p.set_defaults(func=cmd_verify)


def _check_options(args: argparse.Namespace) -> None:
    """The numbers argparse does not check and the report path, before any work; else VerifyInputError."""
    from spice_bridge.runners import check_jobs

    for name, val in (("--p90", args.p90), ("--max", args.max_tol)):
        if val is not None and not (math.isfinite(val) and val >= 0):
            raise VerifyInputError(f"{name} must be a finite number >= 0, got {val}")
    if args.allow_spice_failures < 0:
        raise VerifyInputError(f"--allow-spice-failures must be >= 0, got {args.allow_spice_failures}")
    try:
        check_jobs(args.jobs, "--jobs")
    except ValidationError as e:
        raise VerifyInputError(str(e)) from None
    if args.report is not None:
        from cdsolver.files import check_out

        name = Path(args.report).name
        if name.lower() in REPORT_SUFFIXES:  # (".json" is a hidden file's name to pathlib, with no suffix)
            raise VerifyInputError(f"--report {args.report}: needs a name before {name}")
        if Path(name).suffix.lower() not in REPORT_SUFFIXES:
            raise VerifyInputError(f"--report {args.report}: the name must end in .json or .xml")
        try:
            check_out(args.report, option="--report")
        except ValidationError as e:
            raise VerifyInputError(str(e)) from None


def cmd_verify(args: argparse.Namespace) -> int:
    """``drn verify``: check the options and the report path, run, print, write the report; the exit status."""
    from .cli import load_problem, save_or_rescue

    _check_options(args)
    net, v0, targets = load_problem(args)
    theirs, their_bad = (None, None) if args.states is None else load_their_states(args.states, net.sizes, len(v0))
    v = verify(net, v0, theirs=theirs, runner=args.runner, beta=args.beta, targets=targets, jobs=args.jobs,
               p90=args.p90, max_tol=args.max_tol, allow_spice_failures=args.allow_spice_failures)
    v.their_not_converged = their_bad
    v.info = {"network": args.network, "inputs": args.inputs, "states": args.states, "beta": args.beta}
    nf = len(v.spice_failed)
    print(f"{v.samples} samples, network {'-'.join(map(str, net.sizes))} ({net.element.kind}), beta {args.beta:g}")
    print(f"ngspice ({v.runner}): {v.samples - nf} solved, {nf} failed (allowed {v.allow_spice_failures}); "
          f"{v.spice_s:.2f} s")
    print(f"CD: {v.samples - v.cd_not_converged} converged; {v.cd_s:.3f} s"
          + ("" if not their_bad else f"; your states file marks {their_bad} samples not converged"))
    for c in v.comparisons:
        print(("PASS " if c.passed else "FAIL ") + _numbers(c))
    if nf:
        print(f"{'error' if v.spice_error else 'note'}: {_spice_failures(v)}, first: sample {v.spice_failed[0][0]}: "
              f"{v.spice_failed[0][1]}", file=sys.stderr)
    if v.cd_failed:
        print(f"error: CD's states are NaN or inf on {len(v.cd_failed)} samples, first: sample {v.cd_failed[0]} "
              f"(CD failed on them: they are not compared)", file=sys.stderr)
    if v.cd_not_converged:
        print(f"note: CD hit its sweep cap on {v.cd_not_converged} samples (those with finite states compared as "
              f"they are)", file=sys.stderr)
    for c in v.comparisons:
        if not c.passed:
            print(f"drn verify: FAILED {c.name}: {c.failure}", file=sys.stderr)
    if args.report is not None:
        save_or_rescue(lambda path: write_report(v, path), args.report)
        print(f"wrote {args.report}")
    return exit_code(v)
