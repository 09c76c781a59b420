"""ngspice runners: seconds per sample for 128-H-10 (docs/performance.md).
Run: `make bench` or `python benchmarks/bench_spice.py`.

Double-Shockley elements (Is=1e-6 A, Vd=0.05 V, rails ±0.8 V), uniform random conductances, random Digits-sized
inputs (64 features, pair-encoded, input gain 40 V), free phase, tight options (docs/spice.md), one worker process.
Clocks (each runner's `clock` string): op = one `ngspice -b` process per sample; batch = one process sweeping
the samples by .dc, divided by their number (deck parse included); shared = in-process alter + op.
Also: CD (`solve`, same samples) and the worst relative L1 between every runner and CD. Each width runs twice:
exact behavioural B-source diodes (the default deck) and ngspice's built-in D model (`--builtin-diode`), whose
junction-voltage limiting needs ~3x fewer Newton iterations but whose reverse law differs (up to 3e-7 V).
"""

from __future__ import annotations

import time

import numpy as np

from cdsolver import random_network, solve
from spice_bridge.runners import ngspice_version, run
from studies.metrics import rel_l1

WIDTHS = (64, 256, 1024)
SAMPLES = {"op": 4, "shared": 4, "batch": 40}


def main():
    print(f"# bench_spice: ngspice {ngspice_version()}, double Shockley, samples per runner {SAMPLES}")
    x = np.random.default_rng(0).uniform(0, 1, (max(SAMPLES.values()), 64))
    for builtin in (False, True):
        table(x, builtin)


def table(x, builtin):
    rows = {}
    print(f"\n## diodes: {'built-in D model' if builtin else 'behavioural B sources (exact)'}")
    print("| H | op s/sample | shared s/sample | batch s/sample | op / batch | CD s/sample | worst rel L1 vs CD |")
    print("|---|---|---|---|---|---|---|")
    for H in WIDTHS:
        net = random_network([128, H, 10], "shockley", seed=0, input_gain=40.0)
        v0 = net.encode(x)
        solve(net, v0[:2])  # warm-up (first-call costs of numpy/scipy)
        t = time.perf_counter()
        cd = solve(net, v0).check()
        t_cd = (time.perf_counter() - t) / len(v0)
        per, worst = {}, 0.0
        for r, k in SAMPLES.items():
            res = run(net, v0[:k], runner=r, builtin_diode=builtin)
            assert res.ok.all(), res.reason
            per[r] = float(np.mean(res.wall))
            worst = max(worst, rel_l1(res.states, [s[:k] for s in cd.states]).max())
        rows[H] = per
        print(f"| {H} | {per['op']:.4f} | {per['shared']:.4f} | {per['batch']:.4f} | {per['op'] / per['batch']:.1f} "
              f"| {t_cd:.2e} | {worst:.1e} |", flush=True)
    logH = np.log(WIDTHS)
    for r in SAMPLES:
        slope = np.polyfit(logH, np.log([rows[H][r] for H in WIDTHS]), 1)[0]
        print(f"growth exponent in H, {r}: {slope:.2f}", flush=True)


if __name__ == "__main__":
    main()
