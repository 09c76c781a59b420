"""Gradients (docs/gradients.md). Run: `python benchmarks/bench_gradient.py [accuracy|beta|speed]...` (all three
by default; accuracy and beta need ngspice).

- accuracy: relative L1 error (all parameters) of `spice-linear` against `implicit` on the networks of
  tests/test_gradients.py (6 inputs, 1-3 hidden layers of 5, 3 classes; linear, double Shockley, pwl; no amplifier,
  A=4 C=1, A=4 C=0.25; single and paired outputs; 4 samples, CD tol 1e-13).
- beta: centered `spice-ep` (ngspice batch runner) and `ep` (CD, tol 1e-14) against `implicit` while β halves from
  0.1 S, on two of those networks.
- speed: `implicit` on 128-1024-1024-1024-10 (paired outputs: 20 output nodes), double Shockley, A=4 C=0.25,
  input gain 40 V, 32 random Digits-sized inputs: `ms/sample` of the implicit gradient given the free states
  (best of 3, time.perf_counter), the CD free solve reported apart. BLAS threads as set by the environment
  (OPENBLAS_NUM_THREADS).
"""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np

from cdsolver import random_network, solve
from cdsolver.ep import implicit_gradient
from studies.gradients import gradient, rel_error

AMPS = {"none": None, "A4C1": (4.0, 1.0), "A4C0.25": (4.0, 0.25)}
ELEMENTS = {"linear": None, "shockley": "both", "pwl": None}


def problem(kind, amp, depth, outputs):
    net = random_network([6] + [5] * depth + [3], kind, rails=ELEMENTS[kind], seed=depth, amplifier=AMPS[amp],
                         input_gain=3.0, g_mean=1.0, bias=0.1, outputs=outputs)
    rng = np.random.default_rng(0)
    return net, net.encode(rng.uniform(0, 1, (4, 3))), rng.uniform(-1, 1, (4, 3))


def accuracy() -> None:
    worst = 0.0
    print("depth element amplifier outputs  spice-linear vs implicit  failed")
    for depth, kind, amp, outputs in itertools.product([1, 2, 3], ELEMENTS, AMPS, ["single", "paired"]):
        net, v0, y = problem(kind, amp, depth, outputs)
        ref = gradient(net, v0, y, "implicit", tol=1e-13)
        res = gradient(net, v0, y, "spice-linear")
        e = rel_error(res.grad, ref.grad)
        worst = max(worst, e)
        print(f"{depth} {kind:8s} {amp:7s} {outputs:6s}  {e:.2e}  {int(res.failed.sum())}")
    print(f"worst {worst:.2e}")


def beta() -> None:
    for kind, amp, depth, outputs in (("shockley", "none", 1, "single"), ("shockley", "A4C0.25", 2, "paired")):
        net, v0, y = problem(kind, amp, depth, outputs)
        ref = gradient(net, v0, y, "implicit", tol=1e-14).grad
        print(f"{depth} hidden, {kind}, {amp}, {outputs}: beta (S), spice-ep vs implicit, ratio, ep vs implicit, "
              f"spice-ep vs ep")
        prev = None
        for k in range(14):
            b = 0.1 / 2**k
            se, ce = gradient(net, v0, y, "spice-ep", beta=b).grad, gradient(net, v0, y, "ep", beta=b, tol=1e-14).grad
            e = rel_error(se, ref)
            print(f"  {b:.3e}  {e:.3e}  {prev / e if prev else float('nan'):6.3f}  {rel_error(ce, ref):.3e}  "
                  f"{rel_error(se, ce):.2e}")
            prev = e


def speed() -> None:
    net = random_network([128, 1024, 1024, 1024, 10], "shockley", rails="both", seed=0, amplifier=(4.0, 0.25),
                         input_gain=40.0, outputs="paired")
    rng = np.random.default_rng(0)
    B = 32
    v0, y = net.encode(rng.uniform(0, 1, (B, 64))), rng.uniform(-1, 1, (B, 10))
    t = time.perf_counter()
    free = solve(net, v0, targets=y)
    t_solve = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        implicit_gradient(net, v0, free.states, y)
        times.append(time.perf_counter() - t)
    print(f"128-1024x3-10 paired, {B} samples: implicit {1e3 * min(times) / B:.0f} ms/sample (best of 3); "
          f"CD free solve {1e3 * t_solve / B:.0f} ms/sample, {int(free.converged.sum())}/{B} converged")


if __name__ == "__main__":
    for what in sys.argv[1:] or ["accuracy", "beta", "speed"]:
        {"accuracy": accuracy, "beta": beta, "speed": speed}[what]()
