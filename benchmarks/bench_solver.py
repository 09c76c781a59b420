"""CD solver speed on Osana-size networks (docs/performance.md).
Run: `make bench` or `python benchmarks/bench_solver.py`.

Networks 128-1024-10, 128-1024²-10, 128-1024³-10, double Shockley (Is=1e-6 A, Vd=0.05 V, rails ±0.8 V),
uniform random conductances (mean 1/n_in S), a batch of 360 random Digits-sized inputs (64 features in [0, 1],
pair-encoded, input gain 40 V: ~17 % of first-layer nodes beyond the rails), tol 1e-12.

Clocks (time.perf_counter, best of 3): `ms/sample` = one whole `solve` call / 360. `sweep ms` = a 10-sweep
solve of the full batch (nothing converges: tol=1e-300) / 10. `products ms` = the 2(L-1) dense products a
sweep needs, alone, same shapes. `ratio` = sweep / products.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from cdsolver import random_network, solve

BATCH, GAIN, REPEAT = 360, 40.0, 3


def best(f, repeat=REPEAT, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t = clock()
        out = f()
        times.append(clock() - t)
    return min(times), out


def products_time(net, B):
    """Seconds for the dense products of one sweep: each crossbar l >= 2 forward, each l <= L-1 backward."""
    rng = np.random.default_rng(0)
    n = net.sizes
    xs = {l: rng.standard_normal((B, n[l])) for l in range(1, net.depth + 1)}

    def run():
        for l in range(2, net.depth + 1):
            xs[l - 1] @ net.G[l - 1]
        for l in range(1, net.depth):
            xs[l + 1] @ net.G[l].T

    return best(run, 5)[0]


def main():
    x = np.random.default_rng(0).uniform(0, 1, (BATCH, 64))
    print(f"# bench_solver: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy "
          f"{np.__version__}, batch {BATCH}, double Shockley, input gain {GAIN} V, tol 1e-12")
    print("| network | amplifier | sweeps mean / max | converged | ms/sample | sweep ms | products ms | ratio "
          "| beyond rails per hidden layer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for hidden in (1, 2, 3):
        sizes = [128] + [1024] * hidden + [10]
        for amp in (None, (4.0, 1.0)):
            net = random_network(sizes, "shockley", seed=0, input_gain=GAIN, amplifier=amp)
            v0 = net.encode(x)
            t, sol = best(lambda: solve(net, v0))
            t_sweep = best(lambda: solve(net, v0, tol=1e-300, max_sweeps=10))[0] / 10
            t_prod = products_time(net, BATCH)
            frac = ", ".join(f"{(np.abs(v) > 0.8).mean():.0%}" for v in sol.states[:-1])
            print(f"| {'-'.join(map(str, sizes))} | {'none' if amp is None else f'A={amp[0]:g} C={amp[1]:g}'} "
                  f"| {sol.iterations.mean():.1f} / {sol.iterations.max()} | {sol.converged.sum()}/{BATCH} "
                  f"| {1e3 * t / BATCH:.3f} | {1e3 * t_sweep:.1f} | {1e3 * t_prod:.1f} | {t_sweep / t_prod:.2f} "
                  f"| {frac} |", flush=True)


if __name__ == "__main__":
    main()
