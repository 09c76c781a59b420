"""How ngspice is driven (SPEC §5): three runners returning the same states as the CD solver.

- ``op``: one ``ngspice -b`` process per sample (the papers' baseline).
- ``batch``: one process per chunk of samples, one ``.dc`` sweep of a dummy source driving every input through
  ``pwl`` B sources; points the sweep could not solve fall back to ``op``.
- ``shared``: PySpice ``NgSpiceShared`` in process: ``alter`` the input sources, ``op``, read the vectors.
Parallel over processes with joblib (loky). A failed or hung sample is recorded (reason, time), never lost.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from cdsolver.network import Network
from cdsolver.validation import check_array

from . import netlist

__all__ = ["SpiceResult", "SpiceError", "NgspiceMissing", "run", "op_deck", "RUNNERS", "ngspice_version", "parse_raw"]

RUNNERS = ("op", "batch", "shared")

CLOCKS = {
    "op": "per sample: one `ngspice -b` process (start, deck parse, .op, raw file write, exit)",
    "batch": "per chunk: one `ngspice -b` process (start, deck parse, .dc sweep over the chunk, raw write), "
             "divided by the chunk's samples; fallback `op` runs added to their samples",
    "shared": "per sample: in-process `alter` of the sources, `op`, reading the vectors (circuit loaded once)",
}

INSTALL_HINT = "install it: `apt-get install ngspice libngspice0 libngspice0-dev` (Debian) or run `make install`"


class NgspiceMissing(RuntimeError):
    """ngspice (or its shared library) is not installed."""


class SpiceError(RuntimeError):
    """ngspice failed in a way that is not a per-sample convergence failure; the message names the deck."""


class SpiceTimeout(SpiceError):
    """An ngspice run exceeded its timeout (recorded per sample, not raised by ``run``)."""


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

    def save(self, path: str | Path) -> None:
        """States file of SPEC §4 (``converged`` = ngspice succeeded) plus ``wall``, ``reason``, ``runner``."""
        arrays = {f"v{l}": v for l, v in enumerate(self.states, 1)}
        arrays.update(iterations=self.iterations, residual=np.full(len(self.ok), np.nan), converged=self.ok,
                      wall=self.wall, reason=np.array(self.reason, dtype=str), fallback=self.fallback,
                      runner=np.array(self.runner),
                      clock=np.array(self.clock))
        with open(path, "wb") as f:
            np.savez(f, **arrays)


def ngspice_exe() -> str:
    exe = shutil.which("ngspice")
    if exe is None:
        raise NgspiceMissing(f"ngspice not found on PATH; {INSTALL_HINT}")
    return exe


def ngspice_version() -> str:
    out = subprocess.run([ngspice_exe(), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"ngspice-(\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0]


# ---------------------------------------------------------------- raw files
def parse_raw(path: str | Path) -> dict[str, np.ndarray]:
    """Vectors of an ngspice binary raw file (real data): name -> values over the points."""
    data = Path(path).read_bytes()
    head_end = data.find(b"Binary:\n")
    if head_end < 0:
        raise ValueError(f"{path}: not a binary ngspice raw file")
    head = data[:head_end].decode("ascii", "replace")
    nvar = int(re.search(r"No\. Variables:\s*(\d+)", head).group(1))
    npts = int(re.search(r"No\. Points:\s*(\d+)", head).group(1))
    names = re.findall(r"^\s+\d+\s+(\S+)\s+\S+", head.split("\nVariables:", 1)[1], flags=re.M)[:nvar]
    raw = np.frombuffer(data, dtype="<f8", offset=head_end + len(b"Binary:\n"))
    npts = min(npts, raw.size // nvar)  # a sweep cut short writes fewer points
    values = raw[: npts * nvar].reshape(npts, nvar)
    return {name.lower(): values[:, k] for k, name in enumerate(names)}


def _states_from(vectors: dict[str, np.ndarray], net: Network) -> list[np.ndarray]:
    """States v1..vL of one sample from its result vectors (first point)."""
    return [np.array([vectors[f"v({netlist.node(l, j)})"][0] for j in range(net.sizes[l])])
            for l in range(1, net.depth + 1)]


# ---------------------------------------------------------------- one ngspice process
def _control(analysis: str, raw: str) -> list[str]:
    return [".control", analysis, f"write {raw}", "rusage totiter", "quit", ".endc"]


def _run_process(deck_path: Path, timeout: float) -> tuple[str, float]:
    """Run ``ngspice -b`` on a deck; returns (its output, wall seconds). Timeout -> SpiceError naming the deck."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([ngspice_exe(), "-b", deck_path.name], cwd=deck_path.parent, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SpiceTimeout(f"ngspice timed out after {timeout:g} s on deck {deck_path}") from None
    return p.stdout + p.stderr, time.perf_counter() - t0


_DECK_ERROR = re.compile(r"PTerror|syntax error|Error on line|unknown (device|parameter|subckt)|"
                         r"could not find|Unable to find definition", re.I)


def _check_deck(log: str, deck: Path) -> None:
    """A deck ngspice cannot read is a bug or a bad network, not a per-sample failure: raise."""
    bad = [ln.strip() for ln in log.splitlines() if _DECK_ERROR.search(ln)]
    if bad:
        raise SpiceError(f"ngspice could not read deck {deck}: {'; '.join(bad[:3])}")


def _errors(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines()
             if re.search(r"error|abort|fail|singular|too small|no convergence", ln, re.I)]
    return "; ".join(lines[-4:]) or "ngspice wrote no result (see its output)"


def _iterations(log: str) -> int:
    m = re.findall(r"Total iterations\s*=\s*(\d+)", log)
    return int(m[-1]) if m else -1


def _run_deck(d: Path, name: str, comment: str, src: list[str], analysis: str, timeout: float):
    """Write ``<name>.cir`` (options, sources, ``.include net.cir``, ``analysis`` in a control block) and run it.
    Returns (result vectors or None if ngspice wrote none, its output, wall s, deck path). Raises SpiceTimeout,
    or SpiceError for a deck ngspice cannot read."""
    deck, raw = d / f"{name}.cir", d / f"{name}.raw"
    deck.write_text("\n".join([f"* {comment}; includes the network body net.cir", netlist.OPTIONS, *src,
                               ".include net.cir", *_control(analysis, raw.name), ".end", ""]))
    log, wall = _run_process(deck, timeout)
    _check_deck(log, deck)
    try:
        vec = parse_raw(raw)
        raw.unlink()
    except (OSError, ValueError):
        vec = None
    return vec, log, wall, deck


def _op_one(workdir: str, b: int, src: list[str], timeout: float):
    """One sample through its own ngspice process. Returns (states or None, wall, reason, iterations)."""
    try:
        vec, log, wall, deck = _run_deck(Path(workdir), f"sample{b}", f"sample {b}", src, "op", timeout)
    except SpiceTimeout as e:
        return None, timeout, str(e), -1
    if vec is None or len(vec.get("v(n1_0)", ())) == 0:
        return None, wall, f"{_errors(log)} [deck {deck}]", _iterations(log)
    return vec, wall, "", _iterations(log)


# ---------------------------------------------------------------- a user's deck
#: ngspice's own analysis time, printed by ``rusage time``.
_ANALYSIS_TIME = re.compile(r"Total analysis time \(seconds\)\s*=\s*([0-9.eE+-]+)")


def op_deck(deck: str | Path, workdir: str | Path, *, options: str | None = None,
            timeout: float = 600.0) -> tuple[dict[str, np.ndarray], float, float, int]:
    """The DC operating point of a user's deck, unchanged but for: its ``.include`` paths made absolute, its
    ``.control`` blocks and ``.end`` dropped, ``options`` (a ``.options`` line) added, and a control block
    (``op``, binary raw file) appended. Written to ``workdir/<name>.op.cir``. Returns (vectors ``v(node)`` at the
    operating point, process wall s, ngspice's analysis time s, Newton iterations). Raises SpiceError if ngspice
    cannot read the deck or finds no operating point."""
    deck, wd = Path(deck), Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    lines = deck.read_text(errors="replace").splitlines()
    out, control = lines[:1], False
    for text in lines[1:]:
        key = text.strip().lower()
        if control or key.startswith(".control"):
            control = not key.startswith(".endc")
            continue
        if key == ".end":
            break
        words = text.split(None, 1)
        if key.split()[:1] in ([".include"], [".inc"]) and len(words) == 2:
            name = words[1].split(";")[0].strip().strip("'\"")
            text = f"{words[0]} {(deck.parent / name).resolve()}"
        out.append(text)
    path, raw = wd / f"{deck.stem}.op.cir", wd / f"{deck.stem}.op.raw"
    extra = [options] if options else []
    path.write_text("\n".join(out + extra + _control("op", raw.name)[:-2]
                              + ["rusage time", "quit", ".endc", ".end", ""]))
    log, wall = _run_process(path, timeout)
    _check_deck(log, path)
    try:
        vec = parse_raw(raw)
    except (OSError, ValueError):
        raise SpiceError(f"ngspice found no operating point for {deck}: {_errors(log)} [deck {path}]") from None
    m = _ANALYSIS_TIME.findall(log)
    return {k: v[0] for k, v in vec.items()}, wall, float(m[-1]) if m else float("nan"), _iterations(log)


# ---------------------------------------------------------------- runners
def run(net: Network, v0: np.ndarray, *, runner: str = "batch", beta: float = 0.0,
        targets: np.ndarray | None = None, jobs: int = 1, timeout: float = 600.0, chunk: int = 400,
        builtin_diode: bool = False, workdir: str | Path | None = None) -> SpiceResult:
    """ngspice steady states of ``net`` for input voltages ``v0`` (V, ``(batch, n_0)``).

    jobs: worker processes (joblib loky). timeout: seconds per ngspice process (``op``/``batch``) or per
    worker task (``shared``). chunk: samples per ``.dc`` deck (``batch``). workdir: where decks and raw files
    go (default: a temporary folder, removed unless something failed — then the message names it).
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    ngspice_exe()
    v0 = np.asarray(v0, dtype=np.float64)
    if v0.ndim != 2 or v0.shape[1] != net.sizes[0]:
        raise ValueError(f"v0: expected shape (batch, {net.sizes[0]}), got {v0.shape}")
    B = len(v0)
    y = np.zeros((B, net.n_classes)) if targets is None else check_array(targets, "targets", (B, net.n_classes))
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="drn-spice-") if own else workdir)
    wd.mkdir(parents=True, exist_ok=True)
    body = netlist.body(net, beta=beta, builtin_diode=builtin_diode)
    (wd / "net.cir").write_text("\n".join(["* network body (included by the sample decks)", *body, ""]))
    out = [np.full((B, n), np.nan) for n in net.sizes[1:]]
    wall, iters = np.zeros(B), np.full(B, -1, dtype=np.int64)
    reason = [""] * B
    fallback = np.zeros(B, dtype=bool)
    if runner == "shared":
        parts = np.array_split(np.arange(B), max(1, min(jobs, B)))
        results = _parallel(jobs, timeout)(delayed(_shared_part)(net, beta, builtin_diode, v0[p], y[p])
                                           for p in parts)
        for p, res in zip(parts, results):
            for k, (vec, t, why, it) in zip(p, res):
                _store(out, net, k, vec, t, why, it, wall, reason, iters)
    else:
        todo = np.arange(B)
        if runner == "batch":
            parts = np.array_split(todo, -(-B // chunk))
            results = _parallel(jobs, None)(delayed(_batch_part)(str(wd), k, net, v0[p], y[p], beta, timeout)
                                            for k, p in enumerate(parts))
            for p, res in zip(parts, results):
                for k, (vec, t, it) in zip(p, res):
                    _store(out, net, k, vec, t, "sweep failed", it, wall, reason, iters)
            todo = np.flatnonzero([r != "" for r in reason])
            fallback[todo] = True
        srcs = [netlist.sources(net, v0[k], beta=beta, targets=y[k]) for k in todo]
        results = _parallel(jobs, None)(delayed(_op_one)(str(wd), int(k), s, timeout) for k, s in zip(todo, srcs))
        for k, (vec, t, why, it) in zip(todo, results):
            _store(out, net, k, vec, t, why, it, wall, reason, iters)
    ok = np.array([r == "" for r in reason])
    if own and ok.all():
        shutil.rmtree(wd, ignore_errors=True)
    return SpiceResult(out, wall, ok, reason, iters, fallback, runner, CLOCKS[runner])


def _store(out, net, k, vec, t, why, it, wall, reason, iters):
    """Record sample ``k``: its time is added (a fallback adds to its sweep share), its states or its reason."""
    wall[k] += t
    iters[k] = it
    if vec is None:
        reason[k] = why or "failed"
        return
    for l, s in enumerate(_states_from(vec, net)):
        out[l][k] = s
    reason[k] = ""


def _parallel(jobs: int, timeout: float | None) -> Parallel:
    """joblib over loky processes; ``jobs=1`` runs in this process (joblib cannot time out sequential work)."""
    return Parallel(n_jobs=jobs, backend="loky", timeout=timeout if jobs != 1 else None)


def _batch_part(workdir: str, part: int, net: Network, v0: np.ndarray, y: np.ndarray, beta: float,
                timeout: float) -> list:
    """A chunk through ``.dc`` sweeps: a sweep stops at a point ngspice cannot solve; that point is left to the
    ``op`` fallback (vector None) and a new sweep resumes after it. Returns per sample (vectors of that point
    or None, wall share (s), iterations share)."""
    out: list = []
    start, run_no = 0, 0
    while start < len(v0):
        vs, ys = v0[start:], y[start:]
        try:
            vec, log, wall, _ = _run_deck(Path(workdir), f"batch{part}_{run_no}",
                                          f"samples {start}.. of chunk {part} swept by .dc",
                                          netlist.sources(net, vs, beta=beta, targets=ys),
                                          netlist.analysis(vs)[1:], timeout)
        except SpiceTimeout:  # a hung sweep: every remaining point goes to op (each with its own timeout)
            return out + [(None, timeout / len(vs), -1)] * len(vs)
        got = 0 if vec is None else min(len(vec.get("v(n1_0)", ())), len(vs))
        share, it = wall / (got + 1 if got < len(vs) else got), _iterations(log)
        it_share = it // max(got, 1) if it > 0 else -1
        out += [({k: v[m:m + 1] for k, v in vec.items()}, share, it_share) for m in range(got)]
        if got < len(vs):  # point `got` failed: leave it to op, resume after it
            out.append((None, share, -1))
        start += got + 1
        run_no += 1
    return out[: len(v0)]


# ---------------------------------------------------------------- shared library (PySpice)
_SHARED = {}


def _ngspice_shared():
    """The process's one NgSpiceShared instance (a second one fails; threads crash it)."""
    if "ng" not in _SHARED:
        import logging

        logging.getLogger("PySpice").setLevel(logging.ERROR)  # "Unsupported Ngspice version 39": harmless
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
    for b in range(len(v0)):
        t0 = time.perf_counter()
        for nm, x in zip(names + tnames, np.concatenate([v0[b], y[b]]) if tnames else v0[b]):
            ng.exec_command(f"alter {nm} dc = {netlist.num(x)}")
        before = _totiter(ng)
        try:
            ng.exec_command("op")
            plot = ng.plot(None, ng.last_plot)
            vec = {f"v({k})": np.array(plot[k]._data, dtype=float) for k in plot if not k.endswith("#branch")}
            if f"v({netlist.node(1, 0)})" not in vec:
                raise RuntimeError("op produced no node voltages")
            why = ""
        except Exception as e:  # PySpice raises on any ngspice error line
            vec, why = None, f"ngspice (shared) op failed: {e}"
        it = _totiter(ng) - before
        ng.exec_command("destroy all")
        res.append((vec, time.perf_counter() - t0, why, it))
        if b % 50 == 49:
            ng.exec_command("echo")  # keeps ngspice's command history from growing (notes/ngspice.md)
    return res


def _totiter(ng) -> int:
    m = re.findall(r"Total iterations\s*=\s*(\d+)", "\n".join(ng.exec_command("rusage totiter", join_lines=False)))
    return int(m[-1]) if m else 0
