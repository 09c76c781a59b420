"""How ngspice is driven (docs/spice.md): three runners returning the same states as the CD solver.

- ``op``: one ``ngspice -b`` process per sample (the papers' baseline).
- ``batch``: one process per chunk of samples, one ``.dc`` sweep of a dummy source driving every input through
  ``pwl`` B sources; points the sweep could not solve fall back to ``op``.
- ``shared``: PySpice ``NgSpiceShared`` in process: ``alter`` the input sources, ``op``, read the vectors.
Parallel over processes with joblib (loky). A failed or hung sample is recorded (reason, time), never lost:
each ngspice run has a time limit sized to the network (``default_timeout``), a deck ngspice cannot read, an
unreadable raw file or a non-finite voltage fails only the samples it concerns, and Ctrl-C returns the samples
finished so far (``SpiceResult.interrupted``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from joblib import Parallel, delayed

from cdsolver.files import atomic_write
from cdsolver.network import Network
from cdsolver.validation import ValidationError, check_array, check_timeout

from . import netlist
from .errors import INSTALL_HINT, NgspiceMissing
from .parse import _COMMENT

__all__ = ["SpiceResult", "NgspiceMissing", "run", "RUNNERS", "ngspice_version", "parse_raw",
           "default_timeout", "op_deck", "check_jobs", "MAX_JOBS"]

RUNNERS = ("op", "batch", "shared")

#: most worker processes (ngspice ``jobs``, a study's ``cell_jobs``) on this machine
MAX_JOBS = 4 * (os.cpu_count() or 1)


def check_jobs(jobs: int, name: str = "jobs") -> int:
    """A number of ngspice worker processes (``name`` in messages): an int in 1..``MAX_JOBS``, else
    ValidationError."""
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or not 1 <= jobs <= MAX_JOBS:
        raise ValidationError(f"{name} must be 1..{MAX_JOBS} (4 per core), got {jobs}")
    return int(jobs)

#: Expected seconds of one ngspice ``.op`` on a network with ``OP_REF_RESISTORS`` crossbar resistors, growing as
#: (resistors / OP_REF_RESISTORS) ** OP_GROWTH (docs/spice.md: 0.09 s at 128-64-10; the exponent 1.6 covers
#: its 1–3 hidden-layer timings), twice that with amplifiers. The time limit is TIMEOUT_MARGIN times it, at
#: least TIMEOUT_MIN_S; a ``.dc`` sweep of n points gets (1 + n / SWEEP_POINTS_PER_OP) limits (a sweep point
#: costs ~1/20 of an op, docs/spice.md).
OP_REF_S, OP_REF_RESISTORS, OP_GROWTH = 0.09, 8_800, 1.6
TIMEOUT_MARGIN, TIMEOUT_MIN_S, SWEEP_POINTS_PER_OP = 10.0, 10.0, 20.0

CLOCKS = {
    "op": "per sample: one `ngspice -b` process (start, deck parse, .op, raw file write, exit)",
    "batch": "per chunk: one `ngspice -b` process (start, deck parse, .dc sweep over the chunk, raw write), "
             "divided by the chunk's samples; a sweep that stops at a point is re-run over the points it solved, "
             "whose clocks come from that clean sweep (the failed point keeps the rest); fallback `op` runs added "
             "to their samples",
    "shared": "per sample: in-process `alter` of the sources, `op`, reading the vectors (circuit loaded once)",
}

@dataclass
class SpiceResult:
    """ngspice steady states, in the CD solver's layout. Failed samples have NaN states and a reason."""

    states: list[np.ndarray]
    wall: np.ndarray  # s per sample, see ``clock``
    ok: np.ndarray
    reason: list[str]
    iterations: np.ndarray  # ngspice Newton iterations per sample (-1 where not known)
    fallback: np.ndarray  # batch runner: samples its sweep could not solve, re-run by `op`
    runner: str
    clock: str = field(default="")
    interrupted: bool = False  # Ctrl-C: samples not finished have reason "interrupted"

    def save(self, path: str | Path) -> None:
        """States file (docs/formats.md#states-files) (``converged`` = ngspice succeeded) plus ``wall``, ``reason``,
        ``runner``."""
        arrays = {f"v{l}": v for l, v in enumerate(self.states, 1)}
        arrays.update(iterations=self.iterations, residual=np.full(len(self.ok), np.nan), converged=self.ok,
                      wall=self.wall, reason=np.array(self.reason, dtype=str), fallback=self.fallback,
                      runner=np.array(self.runner),
                      clock=np.array(self.clock))
        with atomic_write(path) as f:
            np.savez(f, **arrays)


def ngspice_exe() -> str:
    exe = shutil.which("ngspice")
    if exe is None:
        raise NgspiceMissing(f"ngspice not found on PATH; {INSTALL_HINT}")
    return exe


def default_timeout(net: Network) -> float:
    """Seconds one ngspice run of one sample of ``net`` may take before it counts as failed (see OP_REF_S)."""
    resistors = sum(int(np.count_nonzero(g)) for g in net.G)
    expected = OP_REF_S * (resistors / OP_REF_RESISTORS) ** OP_GROWTH * (2.0 if net.amplifier else 1.0)
    return max(TIMEOUT_MIN_S, TIMEOUT_MARGIN * expected)


def ngspice_version() -> str:
    out = subprocess.run([ngspice_exe(), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"ngspice-(\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0]


# ---------------------------------------------------------------- raw files
def parse_raw(path: str | Path) -> dict[str, np.ndarray]:
    """Vectors of an ngspice binary raw file: name -> values over the points (complex for an ``.ac`` file)."""
    data = Path(path).read_bytes()
    head_end = data.find(b"Binary:\n")
    if head_end < 0:
        raise ValueError(f"{path}: not a binary ngspice raw file")
    head = data[:head_end].decode("ascii", "replace")
    counts = [re.search(rf"^No\. {k}:\s*(\d+)\s*$", head, flags=re.M) for k in ("Variables", "Points")]
    if None in counts or "\nVariables:" not in head:
        raise ValueError(f"{path}: raw header without 'No. Variables', 'No. Points' or 'Variables:'")
    nvar, npts = (int(m.group(1)) for m in counts)
    names = re.findall(r"^\s+\d+\s+(\S+)\s+\S+", head.split("\nVariables:", 1)[1], flags=re.M)[:nvar]
    if nvar == 0 or len(names) != nvar:
        raise ValueError(f"{path}: raw header declares {nvar} variables and names {len(names)}")
    dtype = "<c16" if re.search(r"^Flags:.*complex", head, flags=re.M) else "<f8"  # .ac: complex values
    size = np.dtype(dtype).itemsize
    body = data[head_end + len(b"Binary:\n"):]
    raw = np.frombuffer(body[: len(body) // size * size], dtype=dtype)
    # a run cut short writes fewer points; one killed while running has "No. Points: 0" and whole rows so far
    npts = raw.size // nvar if npts == 0 else min(npts, raw.size // nvar)
    values = raw[: npts * nvar].reshape(npts, nvar)
    return {name.lower(): values[:, k] for k, name in enumerate(names)}


def _states_from(vectors: dict[str, np.ndarray], net: Network) -> list[np.ndarray]:
    """States v1..vL of one sample from its result vectors (first point). A missing node or a non-finite
    voltage raises ValueError naming it."""
    states = []
    for l in range(1, net.depth + 1):
        names = [f"v({netlist.node(l, j)})" for j in range(net.sizes[l])]
        missing = [n for n in names if len(vectors.get(n, ())) == 0]
        if missing:
            raise ValueError(f"ngspice's result has no {missing[0]}")
        v = np.array([vectors[n][0] for n in names])
        if not np.all(np.isfinite(v)):
            j = int(np.argmax(~np.isfinite(v)))
            raise ValueError(f"ngspice returned {v[j]} V at node {netlist.node(l, j)} (non-finite: not a solution)")
        states.append(v)
    return states


def _points(vectors: dict[str, np.ndarray]) -> int:
    """Number of points (samples) in result vectors."""
    return len(vectors.get(f"v({netlist.node(1, 0)})", ()))


# ---------------------------------------------------------------- one ngspice process
_MAX_WAIT_S = 2.0e6  # the longest wait the OS's poll() takes (its milliseconds are a 32-bit int: ~2.1e6 s)


def _run_process(deck_path: Path, raw_path: Path | None, limit: float) -> tuple[str, float, bool]:
    """Run ``ngspice -b -r RAW DECK`` (the raw file grows point by point, so a run killed at ``limit`` seconds
    leaves the points it finished; without ``raw_path``, ``ngspice -b DECK``: the deck writes its own files);
    returns (its output, wall seconds, timed out)."""
    raw = ["-r", raw_path.name] if raw_path is not None else []
    t0 = time.perf_counter()
    try:
        p = subprocess.run([ngspice_exe(), "-b", *raw, deck_path.name], cwd=deck_path.parent,
                           capture_output=True, text=True, timeout=min(limit, _MAX_WAIT_S), stdin=subprocess.DEVNULL)
        log, timed_out = p.stdout + p.stderr, False
    except subprocess.TimeoutExpired as e:
        log, timed_out = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or ""
                                 for x in (e.stdout, e.stderr)), True
    return log, time.perf_counter() - t0, timed_out


_DECK_ERROR = re.compile(r"PTerror|syntax error|Error on line|unknown (device|parameter|subckt)|"
                         r"could not find|Unable to find definition|"
                         r"level depth greater|Undefined parameter|Formula\(\) error", re.I)  # (numparam's)


def _deck_errors(log: str) -> str:
    """ngspice's complaints about the deck itself ("" if none): it then skips lines and would solve another
    circuit, so such a run has no result."""
    return "; ".join([ln.strip() for ln in log.splitlines() if _DECK_ERROR.search(ln)][:3])


def _errors(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines()
             if re.search(r"error|abort|fail|singular|too small|no convergence", ln, re.I)]
    return "; ".join(lines[-4:])


def _iterations(log: str) -> int:
    m = re.findall(r"Total iterations\s*=\s*(\d+)", log)
    return int(m[-1]) if m else -1


@dataclass
class _Run:
    """One ngspice process: result vectors (empty if none are usable), wall s, Newton iterations (-1: unknown),
    and why it stopped short ("" if it did not), naming the deck; ``unreadable``: ngspice rejected the deck;
    ``killed``: stopped at its time limit."""

    vec: dict[str, np.ndarray]
    wall: float
    iterations: int
    why: str
    unreadable: bool
    killed: bool


def _run_deck(d: Path, name: str, comment: str, src: list[str], analysis: str, limit: float) -> _Run:
    """Write ``<name>.cir`` (options, sources, ``.include net.cir``, ``analysis``) and run it for at most
    ``limit`` seconds; its points are read from the raw file even when it was cut short."""
    deck, raw = d / f"{name}.cir", d / f"{name}.raw"
    deck.write_text("\n".join([f"* {comment}; includes the network body net.cir", netlist.OPTIONS,
                               ".options acct", *src, ".include net.cir", analysis, ".end", ""]))
    raw.unlink(missing_ok=True)
    log, wall, timed_out = _run_process(deck, raw, limit)
    bad = _deck_errors(log)
    try:
        vec, problem = parse_raw(raw), ""
    except OSError:
        vec, problem = {}, "ngspice wrote no raw file"
    except ValueError as e:
        vec, problem = {}, f"unreadable raw file: {e}"
    raw.unlink(missing_ok=True)
    if timed_out:
        why = f"ngspice timed out after {limit:.3g} s on deck {deck}"
    elif bad:
        vec, why = {}, f"ngspice could not read deck {deck}: {bad}"
    else:
        why = f"{_errors(log) or problem or 'ngspice wrote no result (see its output)'} [deck {deck}]"
    return _Run(vec, wall, _iterations(log), why, bool(bad), timed_out)


def _op_one(workdir: str, b: int, src: list[str], timeout: float):
    """One sample through its own ngspice process. Returns (vectors or None, wall, reason, iterations)."""
    r = _run_deck(Path(workdir), f"sample{b}", f"sample {b}", src, ".op", timeout)
    return (r.vec, r.wall, "", r.iterations) if _points(r.vec) else (None, r.wall, r.why, r.iterations)


# ---------------------------------------------------------------- a user's deck
#: ngspice's own analysis time (``.options acct``).
_ANALYSIS_TIME = re.compile(r"Total analysis time \(seconds\)\s*=\s*([0-9.eE+-]+)")
#: Cards ``op_deck`` drops, with their ``+`` continuation lines: analyses, and output cards (``.save v(b)``
#: would leave the other nodes' voltages unwritten).
_DROPPED = {".op", ".tran", ".ac", ".dc", ".noise", ".save", ".print", ".plot", ".probe", ".meas", ".measure",
            ".four", ".width"}


def op_deck(deck: str | Path, workdir: str | Path, *, options: str | None = None,
            timeout: float = 600.0) -> tuple[dict[str, float], float, float, int, str]:
    """The DC operating point of a user's deck, unchanged but for: its ``.include`` paths made absolute, its
    ``.control`` blocks, analysis and output cards (``_DROPPED``, with their continuation lines) and ``.end``
    lines dropped (ngspice 39 reads past them, as the parser does), ``options`` (a ``.options`` line), ``.op``
    and ``.end`` added. Written to
    ``workdir/<name>.op.cir``. Returns (``v(node)`` etc. at the operating point, ``{}`` if none; process wall s;
    ngspice's analysis time s (NaN if not printed); Newton iterations; why there is no result, "" if there is
    one)."""
    deck, wd = Path(deck), Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    lines = deck.read_text(errors="replace").splitlines()
    out, control, dropping = lines[:1], False, False
    for text in lines[1:]:
        s = _COMMENT.split(text.strip(), maxsplit=1)[0].strip()  # (as the parser: comments, then '*' and '$' lines)
        key = "" if s[:1] in ("*", "$") else s.lower()
        if control or key.startswith(".control"):
            control = not key.startswith(".endc")
            continue
        if key.split()[:1] == [".end"]:  # (ngspice 39 reads past it, as the parser does; ours goes last)
            continue
        if key and not key.startswith("+"):  # a card: comments and control blocks do not end its continuation
            dropping = key.split()[0] in _DROPPED
        if key and dropping:
            continue
        words = s.split(None, 1)
        if key.split()[:1] in ([".include"], [".inc"]) and len(words) == 2:
            name = words[1].strip("'\"")  # (the case kept, the comment gone, as the parser reads it)
            text = f"{words[0]} {(deck.parent / name).resolve()}"
        out.append(text)
    path, raw = wd / f"{deck.stem}.op.cir", wd / f"{deck.stem}.op.raw"
    path.write_text("\n".join(out + ([options] if options else []) + [".options acct", ".op", ".end", ""]))
    raw.unlink(missing_ok=True)
    log, wall, timed_out = _run_process(path, raw, timeout)
    bad = _deck_errors(log)
    try:
        vec = {k: float(v[0]) for k, v in parse_raw(raw).items() if len(v)}
    except (OSError, ValueError):
        vec = {}
    why = ""
    if timed_out:
        vec, why = {}, f"ngspice timed out after {timeout:.3g} s on deck {path}"
    elif bad:
        vec, why = {}, f"ngspice could not read deck {path}: {bad}"
    elif not vec:
        why = f"ngspice found no operating point: {_errors(log) or 'no result'} [deck {path}]"
    m = _ANALYSIS_TIME.findall(log)
    return vec, wall, float(m[-1]) if m else float("nan"), _iterations(log), why


# ---------------------------------------------------------------- runners
def run(net: Network, v0: np.ndarray, *, runner: str = "batch", beta: float = 0.0,
        targets: np.ndarray | None = None, jobs: int = 1, timeout: float | None = None, chunk: int = 400,
        builtin_diode: bool = False, workdir: str | Path | None = None) -> SpiceResult:
    """ngspice steady states of ``net`` for input voltages ``v0`` (V, ``(batch, n_0)``).

    jobs: worker processes (joblib loky), 1..``MAX_JOBS``. timeout: seconds one sample's ngspice run may take
    (``op``, the ``batch`` fallback; a sweep of n points gets ``timeout·(1 + n/20)``; ``shared``: a worker task
    of n samples gets ``timeout·n``, and where it takes longer its samples fail; none with ``jobs=1``), default
    ``default_timeout(net)``. chunk: samples per ``.dc`` deck (``batch``). workdir: where decks
    and raw files go, kept (the reasons name the decks in it); default: a temporary folder, removed whatever
    happens (the reasons then name a deck by its file name).
    Ctrl-C stops the run and returns what is finished, ``interrupted=True``.
    """
    if runner not in RUNNERS:
        raise ValidationError(f"runner must be one of {RUNNERS}, got {runner!r}")
    jobs = check_jobs(jobs)
    ngspice_exe()
    v0 = check_array(v0, "v0", (None, net.sizes[0]))
    B = len(v0)
    if B == 0:
        raise ValidationError("v0: no samples (shape (0, n_0))")
    timeout = default_timeout(net) if timeout is None else check_timeout(timeout)
    net.g_nudge(beta)  # (ValidationError where the nudge is undefined, as in the CD solver)
    y = np.zeros((B, net.n_classes)) if targets is None else check_array(targets, "targets", (B, net.n_classes))
    out = [np.full((B, n), np.nan) for n in net.sizes[1:]]
    wall, iters = np.zeros(B), np.full(B, -1, dtype=np.int64)
    reason = [_INTERRUPTED] * B
    fallback = np.zeros(B, dtype=bool)
    with _work_folder(workdir, "drn-spice-") as wd:
        try:
            body = netlist.body(net, beta=beta, builtin_diode=builtin_diode)
            (wd / "net.cir").write_text("\n".join(["* network body (included by the sample decks)", *body, ""]))
            if runner == "shared":  # a worker task's time limit: timeout per sample of the task
                parts = np.array_split(np.arange(B), max(1, min(jobs, B)))
                limit = timeout * max(len(p) for p in parts)
                results = _parallel(jobs, limit)(delayed(_shared_part)(net, beta, builtin_diode, v0[p], y[p])
                                                 for p in parts)
                done = 0
                try:
                    for i, res in enumerate(results):
                        for k, (vec, t, why, it) in zip(parts[i], res):
                            _store(out, net, k, vec, t, why, it, wall, reason, iters)
                        done = i + 1
                except multiprocessing.TimeoutError:  # joblib stops every worker: the uncollected tasks fail
                    for i, p in enumerate(parts[done:], done):
                        why = (f"its worker task of {len(p)} samples took more than {limit:.3g} s ({timeout:.3g} s "
                               f"per sample)" if i == done else f"not collected: worker task {done} (samples "
                               f"{parts[done][0]}-{parts[done][-1]}) timed out, and joblib stops every worker")
                        for k in p:
                            reason[k] = f"ngspice (shared) timed out: {why}"
            else:
                todo, charges = np.arange(B), []
                if runner == "batch":
                    parts = np.array_split(todo, -(-B // chunk))
                    results = _parallel(jobs, None)(delayed(_batch_part)(str(wd), k, net, v0[p], y[p], beta, timeout)
                                                    for k, p in enumerate(parts))
                    for i, (res, charge) in enumerate(results):
                        for k, (vec, t, it, why) in zip(parts[i], res):
                            _store(out, net, k, vec, t, why, it, wall, reason, iters)
                        charges += [(parts[i][a:b], t) for a, b, t in charge]
                    todo = np.flatnonzero([r != "" for r in reason])
                    fallback[todo] = True
                    for k in todo:
                        reason[k] = _INTERRUPTED
                srcs = [netlist.sources(net, v0[k], beta=beta, targets=y[k]) for k in todo]
                results = _parallel(jobs, None)(delayed(_op_one)(str(wd), int(k), s, timeout)
                                                for k, s in zip(todo, srcs))
                for i, (vec, t, why, it) in enumerate(results):
                    _store(out, net, todo[i], vec, t, why, it, wall, reason, iters)
                for ks, t in charges:  # a killed sweep's time: to the points that hung it
                    failed = [k for k in ks if reason[k] != ""] or list(ks)
                    wall[failed] += t / len(failed)
        except KeyboardInterrupt:
            pass
    reason = _decks_named(reason, wd, workdir)
    ok = np.array([r == "" for r in reason])
    return SpiceResult(out, wall, ok, reason, iters, fallback, runner, CLOCKS[runner],
                       interrupted=_INTERRUPTED in reason)


_INTERRUPTED = "interrupted (Ctrl-C) before ngspice finished this sample"


def _store(out, net, k, vec, t, why, it, wall, reason, iters):
    """Record sample ``k``: its time is added (a fallback adds to its sweep share), its states or its reason
    (no vectors, a missing node or a non-finite voltage fail the sample)."""
    wall[k] += t
    iters[k] = it
    reason[k] = why or "failed"
    if vec is None:
        return
    try:
        states = _states_from(vec, net)
    except ValueError as e:
        reason[k] = str(e)
        return
    for l, s in enumerate(states):
        out[l][k] = s
    reason[k] = ""


@contextlib.contextmanager
def _work_folder(workdir: str | Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (created if missing, and kept), or a new temporary folder ``<prefix>*`` that is removed when the
    block ends, whatever happens (success, failure, Ctrl-C, an exception)."""
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix=prefix) if own else workdir)
    try:
        wd.mkdir(parents=True, exist_ok=True)
        yield wd
    finally:
        if own:
            shutil.rmtree(wd, ignore_errors=True)


def _decks_named(reason: list[str], wd: Path, workdir: str | Path | None) -> list[str]:
    """``reason`` with the decks named by file name where ``wd`` was the run's own temporary folder (``workdir``
    None: the decks are gone), else unchanged (full paths into the kept folder)."""
    return [r.replace(f"{wd}{os.sep}", "") for r in reason] if workdir is None else reason


def _parallel(jobs: int, timeout: float | None) -> Parallel:
    """joblib over loky processes, results in order as they come (so Ctrl-C keeps the finished ones); ``jobs=1``
    runs in this process (joblib cannot time out sequential work)."""
    return Parallel(n_jobs=jobs, backend="loky", timeout=timeout if jobs != 1 else None, return_as="generator")


def _batch_part(workdir: str, part: int, net: Network, v0: np.ndarray, y: np.ndarray, beta: float,
                timeout: float, first: int = 0) -> tuple[list, list]:
    """A chunk through ``.dc`` sweeps, each point's time its own:
    - a sweep that stops at a point ngspice cannot solve: the points before it are swept again on their own
      (their clocks hold nothing of the failure), the point keeps the rest of the time and goes to the ``op``
      fallback (vectors None), a new sweep resumes after it;
    - a sweep killed at its time limit: its written points are kept as above; which point hung it is not known
      (the last rows may not have reached the raw file), so the rest go to ``op`` one by one and the killed
      sweep's remaining time is a charge ``(start, stop, seconds)`` over them that ``run`` gives to those whose
      ``op`` fails too;
    - a deck ngspice cannot read sends every point to the fallback.
    ``first``: index of ``v0[0]`` in the chunk (deck names). Returns (per sample (vectors of its point or None,
    wall (s), iterations, reason), charges)."""
    out: list = []
    charges: list = []
    start = 0
    while start < len(v0):
        vs, ys = v0[start:], y[start:]
        r = _run_deck(Path(workdir), f"batch{part}_{first + start}_{len(vs)}",
                      f"samples {first + start}..{first + len(v0) - 1} of chunk {part} swept by .dc",
                      netlist.sources(net, vs, beta=beta, targets=ys), netlist.analysis(vs),
                      timeout * (1 + len(vs) / SWEEP_POINTS_PER_OP))
        got = min(_points(r.vec), len(vs))
        if got == len(vs):
            it = r.iterations // got if r.iterations > 0 else -1
            out += [({k: v[m:m + 1] for k, v in r.vec.items()}, r.wall / got, it, "") for m in range(got)]
            break
        if r.unreadable:
            out += [(None, r.wall / len(vs), -1, r.why)] * len(vs)
            break
        solved, more = _batch_part(workdir, part, net, vs[:got], ys[:got], beta, timeout, first + start) \
            if got else ([], [])
        spent = max(r.wall - sum(s[1] for s in solved), 0.0)
        out += solved
        charges += [(a + start, b + start, t) for a, b, t in more]
        if r.killed:
            charges.append((start + got, len(v0), spent))
            out += [(None, 0.0, -1, f"the sweep was killed before this point: {r.why}")] * (len(vs) - got)
            break
        out.append((None, spent, -1, f"the sweep stopped at this point: {r.why}"))
        start += got + 1
    return out, charges


# ---------------------------------------------------------------- shared library (PySpice)
_SHARED = {}


def _ngspice_shared():
    """The process's one NgSpiceShared instance (a second one fails; threads crash it)."""
    if "ng" not in _SHARED:
        import logging

        # "Unsupported Ngspice version 39" and ngspice's stderr lines (read by _shared_op) are not log news
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared

            _SHARED["ng"] = NgSpiceShared.new_instance()
        except (ImportError, OSError) as e:
            raise NgspiceMissing(f"the ngspice shared library does not load ({e}); {INSTALL_HINT}") from None
    return _SHARED["ng"]


def _shared_part(net: Network, beta: float, builtin_diode: bool, v0: np.ndarray, y: np.ndarray) -> list:
    """Samples through the process's shared ngspice. Returns per sample (vectors or None, wall, reason, iters)."""
    ng = _ngspice_shared()
    text = netlist.deck(net, v0[0], beta=beta, targets=y[0], builtin_diode=builtin_diode, title="drn-cd shared")
    ng.exec_command("destroy all")
    if _SHARED.get("loaded"):
        ng.remove_circuit()
    ng.load_circuit(text)
    _SHARED["loaded"] = True
    names = [f"vin0_{i}" for i in range(net.sizes[0])]
    tnames = [f"vy{net.depth}_{k}" for k in range(net.n_classes)] if netlist.has_nudging_branch(net, beta) else []
    res = []
    try:
        for b in range(len(v0)):
            t0 = time.perf_counter()
            for nm, x in zip(names + tnames, np.concatenate([v0[b], y[b]]) if tnames else v0[b]):
                ng.exec_command(f"alter {nm} dc = {netlist.num(x)}")
            before = _totiter(ng)
            vec, why = _shared_op(ng)
            it = _totiter(ng) - before
            ng.exec_command("destroy all")
            res.append((vec, time.perf_counter() - t0, why, it))
            if b % 50 == 49:
                ng.exec_command("echo")  # keeps ngspice's command history from growing (docs/spice.md)
    except KeyboardInterrupt:  # the samples done so far are returned; the caller marks the rest interrupted
        pass
    return res


def _shared_op(ng) -> tuple[dict[str, np.ndarray] | None, str]:
    """``op`` in the shared ngspice: (node vectors, "") if ngspice made an operating point plot, else (None,
    its error lines). PySpice raises on any stderr line that is not a "Warning:" — also on the notes of gmin
    stepping that then succeeded — so its exception is not the verdict; ngspice's plot is."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    try:
        ng.exec_command("op")
    except NgSpiceCommandError:
        pass
    name = ng.last_plot
    vec = {} if not name.startswith("op") else {
        f"v({k})": np.array(v._data, dtype=float) for k, v in ng.plot(None, name).items() if not k.endswith("#branch")}
    if _points(vec) == 0:
        return None, f"ngspice (shared) op failed: {_errors(ng.stdout + chr(10) + ng.stderr) or 'no operating point'}"
    return vec, ""


def _totiter(ng) -> int:
    m = re.findall(r"Total iterations\s*=\s*(\d+)", "\n".join(ng.exec_command("rusage totiter", join_lines=False)))
    return int(m[-1]) if m else 0
