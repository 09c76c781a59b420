"""Hardware linearisation in ngspice (seed 004): the adjoint of the free circuit from SPICE's small-signal analysis.

Pass 1: the free operating point by a runner (``op``, ``batch`` or ``shared``). Pass 2: the same deck (free phase:
nudging switch open, ``R_off``) plus one AC current source into each output node, of amplitude
``r = decodeᵀ(decode(v_L) − y)/w_L`` (A, from pass 1's states: ``cdsolver.ep.cost_current``); ``.ac`` at
``FREQ_HZ`` linearises every element at the operating point (B-source diodes and pwl curves by their
derivative, E/F amplifiers by their gains, the open switch as ``R_off``; inputs and targets are AC shorts).
With no reactive element the response is real and is ``λ = J⁻¹ r`` (V), the adjoint (docs/gradients.md).
One ``ngspice -b`` process per chunk of samples: ``alter`` the sources, ``ac``, ``write`` one raw file each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import delayed

from cdsolver.ep import cost_current
from cdsolver.network import Network

from . import netlist
from .runners import _errors, _parallel, _decks_named, _run_process, _work_folder, default_timeout, parse_raw, run

__all__ = ["LinearResult", "run_linear", "FREQ_HZ"]

#: Frequency of the small-signal analysis, Hz (no reactive element: any frequency gives the DC linearisation).
FREQ_HZ = 1.0

#: Options added when a sample is re-run alone: ngspice's test on the branch currents of the target sources
#: (~1e-12 A through R_off) can sit at rounding noise with ``abstol=1e-18`` (amplified, paired nets); node
#: voltages keep their own test (``reltol``, ``vntol``).
RETRY_OPTIONS = ".options abstol=1e-14"


@dataclass
class LinearResult:
    """Free operating point ``states`` (V) and adjoint ``response`` ``λ = J⁻¹ r`` (V) per layer, ``(batch, n_l)``;
    failed samples (either pass) have NaN and a reason."""

    states: list[np.ndarray]
    response: list[np.ndarray]
    ok: np.ndarray
    reason: list[str]


def adjoint_sources(net: Network) -> list[str]:
    """AC current sources into the output nodes (DC 0 A: they leave the operating point alone)."""
    L = net.depth
    return ["", "* ---- adjoint: AC current sources into the outputs (amplitude set per sample by alter)"] + [
        f"Iadj{L}_{k} 0 {netlist.node(L, k)} DC 0 AC 0" for k in range(net.sizes[-1])]


def _alters(net: Network, v0: np.ndarray | None, y: np.ndarray, r: np.ndarray) -> list[str]:
    """Control lines setting one sample's input and target voltages (V; not if ``v0`` is None: the deck's own)
    and AC amplitudes (A)."""
    L, lines = net.depth, []
    if v0 is not None:
        lines += [f"alter vin0_{i} dc = {netlist.num(x)}" for i, x in enumerate(v0)]
        if netlist.has_nudging_branch(net, 0.0):
            lines += [f"alter vy{L}_{k} dc = {netlist.num(x)}" for k, x in enumerate(y)]
    return lines + [f"alter iadj{L}_{k} acmag = {netlist.num(x)}" for k, x in enumerate(r)]


def _ac_part(workdir: str, part: str, net: Network, idx: np.ndarray, v0: np.ndarray, y: np.ndarray,
             r: np.ndarray, timeout: float, start: list[np.ndarray] | None = None
             ) -> list[tuple[list[np.ndarray] | None, str]]:
    """One ngspice process for a chunk of samples (global indices ``idx``; the deck holds the first one's
    sources, the others are set by ``alter``). ``start``: node voltages (V) of a one-sample chunk given to
    Newton as ``.nodeset`` (its pass-1 operating point), with ``RETRY_OPTIONS``. Returns per sample (response
    per layer, or None) and the reason."""
    d = Path(workdir)
    nodeset = [] if start is None else [RETRY_OPTIONS] + [f".nodeset v({netlist.node(l, j)})={netlist.num(x)}"
                                                         for l, s in enumerate(start, 1) for j, x in enumerate(s)]
    deck = d / f"adjoint{part}.cir"
    control = [".control"]
    for k, b in enumerate(idx):
        control += _alters(net, v0[k] if k else None, y[k], r[k]) + [
            f"ac lin 1 {FREQ_HZ!r} {FREQ_HZ!r}", f"write ac{b}.raw", "destroy all"]
    deck.write_text("\n".join([f"* adjoint (small-signal) of samples {idx[0]}..{idx[-1]}; includes net.cir",
                               netlist.OPTIONS, *netlist.sources(net, v0[0], targets=y[0]), *adjoint_sources(net),
                               *nodeset, ".include net.cir", *control, "quit", ".endc", ".end", ""]))
    for b in idx:
        (d / f"ac{b}.raw").unlink(missing_ok=True)
    log, _, timed_out = _run_process(deck, None, timeout * len(idx))
    if timed_out:
        log = f"ngspice timed out after {timeout * len(idx):g} s"
    out = []
    for b in idx:
        try:
            vec = parse_raw(d / f"ac{b}.raw")
            (d / f"ac{b}.raw").unlink()
            out.append(([np.array([vec[f"v({netlist.node(l, j)})"][0].real for j in range(net.sizes[l])])
                         for l in range(1, net.depth + 1)], ""))
        except (OSError, ValueError, KeyError):
            out.append((None, f"ac failed: {_errors(log) or 'no result'} [deck {deck}]"))
    return out


def run_linear(net: Network, v0: np.ndarray, y: np.ndarray, *, runner: str = "batch", jobs: int = 1,
               timeout: float | None = None, chunk: int = 400, workdir: str | Path | None = None) -> LinearResult:
    """Free operating point (by ``runner``) and adjoint response (``.ac``) of ``net`` for input voltages ``v0``
    (V, ``(batch, n_0)``) and targets ``y`` (V, ``(batch, n_classes)``). ``jobs``, ``chunk`` (samples per
    ``.ac`` process) and ``workdir`` as in ``runners.run``; ``timeout``: s per sample (default: ``default_timeout``
    of ``net``, as ``runners.run``)."""
    timeout = default_timeout(net) if timeout is None else timeout
    with _work_folder(workdir, "drn-adjoint-") as wd:
        free = run(net, v0, runner=runner, targets=y, jobs=jobs, timeout=timeout, chunk=chunk, workdir=wd / "op")
        B = len(v0)
        response = [np.full((B, n), np.nan) for n in net.sizes[1:]]
        reason = list(free.reason)
        todo = np.flatnonzero(free.ok)
        if todo.size:
            r = cost_current(net, [s[todo] for s in free.states], y[todo])
            (wd / "net.cir").write_text("\n".join(["* network body, free phase", *netlist.body(net), ""]))
            parts = np.array_split(np.arange(todo.size), -(-todo.size // chunk))
            for retry in (False, True):  # a sample whose .ac operating point failed is re-run alone, Newton
                # starting from its pass-1 operating point (.nodeset)
                results = list(_parallel(jobs, None)(delayed(_ac_part)(
                    str(wd), f"{'r' * retry}{k}", net, todo[p], v0[todo[p]], y[todo[p]], r[p], timeout,
                    [s[todo[p[0]]] for s in free.states] if retry else None) for k, p in enumerate(parts)))
                for p, res in zip(parts, results):
                    for b, (resp, why) in zip(todo[p], res):
                        reason[b] = why
                        if resp is not None:
                            for l, x in enumerate(resp):
                                response[l][b] = x
                parts = [p[k:k + 1] for p, res in zip(parts, results)
                         for k, (resp, _) in enumerate(res) if resp is None]
    reason = _decks_named(reason, wd, workdir)
    return LinearResult(free.states, response, np.array([x == "" for x in reason]), reason)
