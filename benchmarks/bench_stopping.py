"""The stopping rule: sweeps and voltage error of the former and the current default (docs/solver.md#stopping-test).
Run: `python benchmarks/bench_stopping.py [--spice] [NET.npz ...]`.

Networks: the built-in random ones below (double Shockley, Digits validation inputs at input gain 40 V, or ±10 V
input voltages) and any network files given (Digits validation inputs, the file's own gain). 60 samples each.
Rules: the KCL test alone at tol 1e-12 (the former default), 1e-13 (the former study default) and 1e-14; the
KCL test at 1e-12 with step tests of 1e-14 and 5e-15; the default (``solve``: tol 1e-14, step 10 tol).
Reference: tol 1e-16, 300 sweeps (float64's floor). Columns: sweeps mean / max, converged, relative L1
(``studies.metrics.rel_l1``) against the reference, P90 / max; with ``--spice`` also against ngspice (batch
runner, tight options, one process, 600 s per run: the machine may be shared) on the first 10 samples, and the
reference's own error against ngspice (networks of at most 1,024 hidden nodes: ngspice needs minutes per
sample beyond).
"""

from __future__ import annotations

import sys

import numpy as np

from cdsolver import load_network, random_network, solve
from cdsolver.constants import ANDERSON, MAX_SWEEPS, STEP_PER_TOL, TOL
from cdsolver.datasets import load_digits
from cdsolver.network import Amplifier
from cdsolver.solver import _Layers, fixed_point
from studies.metrics import rel_l1

SAMPLES, SPICE_SAMPLES, SPICE_MAX_HIDDEN, SPICE_TIMEOUT = 60, 10, 1024, 600.0


def networks(files: list[str]):
    """(name, network, v0) of every case."""
    x = load_digits(seed=0)["val"].x[:SAMPLES]
    net = random_network([128, 32, 32, 10], "shockley", seed=0)
    yield "128-32-32-10, ±10 V inputs", net, np.random.default_rng(0).uniform(-10, 10, (SAMPLES, 128))
    for sizes, amp in (([128, 1024, 10], None), ([128, 256, 256, 256, 10], None), ([128, 256, 256, 256, 10], (4, 1)),
                       ([128, 1024, 1024, 1024, 10], (4, 1))):
        net = random_network(sizes, "shockley", seed=0, input_gain=40.0, amplifier=amp and Amplifier(*amp))
        yield "-".join(map(str, sizes)) + (f", A={amp[0]} C={amp[1]}" if amp else ""), net, net.encode(x)
    for f in files:
        net = load_network(f)
        yield f, net, net.encode(x)


#: (KCL tol, step tol or None) of the rules compared with the default
RULES = {"KCL 1e-12 (former default)": (1e-12, None), "KCL 1e-13": (1e-13, None), "KCL 1e-14": (1e-14, None),
         "KCL 1e-12, step 1e-14": (1e-12, 1e-14), "KCL 1e-12, step 5e-15": (1e-12, 5e-15)}


def rule(net, v0, tol: float, step_tol: float | None):
    """Iterations, converged and states of the stopping test (``tol``, ``step_tol``)."""
    P = _Layers(net, v0, 0.0, None)
    iters, *_, conv = fixed_point(P, P.start(v0, None), tol=tol, max_sweeps=MAX_SWEEPS, anderson=ANDERSON,
                                  step_tol=step_tol)
    return iters, conv, P.states


def main(argv: list[str]) -> None:
    spice = "--spice" in argv
    if spice:
        from spice_bridge.runners import run
    print("| network | rule | sweeps mean / max | converged | rel L1 vs tight CD, P90 / max |"
          + (" rel L1 vs ngspice, P90 / max |" if spice else ""))
    print("|---|---|---|---|---|" + ("---|" if spice else ""))
    for name, net, v0 in networks([a for a in argv if a != "--spice"]):
        ref = solve(net, v0, tol=1e-16, max_sweeps=300)  # converged=False: tol is below the floor
        rules = {k: rule(net, v0, *r) for k, r in RULES.items()}
        s = solve(net, v0)
        rules[f"default: KCL {TOL:g}, step {STEP_PER_TOL * TOL:g}"] = s.iterations, s.converged, s.states
        sp = None
        if spice and sum(net.sizes[1:-1]) <= SPICE_MAX_HIDDEN:
            sp = run(net, v0[:SPICE_SAMPLES], runner="batch", timeout=SPICE_TIMEOUT)
        for label, (iters, conv, states) in rules.items():
            e = rel_l1(states, ref.states)
            row = (f"| {name} | {label} | {iters.mean():.2f} / {iters.max()} | {conv.sum()}/{len(v0)} | "
                   f"{np.percentile(e, 90):.1e} / {e.max():.1e} |")
            if sp is not None:
                ok = sp.ok
                es = rel_l1([v[:SPICE_SAMPLES][ok] for v in states], [v[ok] for v in sp.states])
                row += f" {np.percentile(es, 90):.1e} / {es.max():.1e} ({ok.sum()} samples) |"
            elif spice:
                row += " not run |"
            print(row, flush=True)
        if sp is not None:
            es = rel_l1([v[:SPICE_SAMPLES][sp.ok] for v in ref.states], [v[sp.ok] for v in sp.states])
            print(f"| {name} | reference (tol 1e-16) | {ref.iterations.mean():.1f} | | | "
                  f"{np.percentile(es, 90):.1e} / {es.max():.1e} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
