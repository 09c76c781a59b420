"""CD solver speed on Osana-size networks, and the node kernels behind it (docs/performance.md).
Run: `make bench` or `python benchmarks/bench_solver.py [--quick]`.

1. The numba kernels' load: compiled from scratch (an empty NUMBA_CACHE_DIR) and from the on-disk cache (every
   later run), each in a fresh process (the rest of the start: bench_start.py).
2. Node kernels: one layer update of 720 x 1024 nodes per element, drives set so that about half the Shockley
   nodes are beyond the rails. `ns/node` and `exp-passes` (the time over one `numpy.exp` of an array of the same
   shape into a preallocated output: `numpy.exp(x)` alone also allocates and first touches its result, which
   made the unit 5-10 ns per element from run to run) for the NumPy reference (`solve_reference`), the fused
   kernel from scratch (`cold`) and started from the previous voltages (`warm`: a converging sweep; here the
   exact solution), timed in turn with the unit, best of 7 each; the kernel on all of numba's threads, then on
   one (since 2026-12-01: the kernel's own cost, apart from how much of a second core the machine gives; the unit
   is always one thread). The unit depends on NumPy's SIMD level, printed
   with the table: from AVX512F on NumPy's exp is vectorised (0.8 ns per element on the AVX-512 machine of
   docs/performance.md), below it calls libm per element (5-9 ns on the AVX2 one).
   Then the double-Shockley update of 128 samples (a training batch) with rows of 10, 20, 100 and 1,024 nodes,
   cold and warm, ns per node (what does not grow with the row shows on short ones).
3. Networks 128-1024-10, 128-1024²-10, 128-1024³-10, double Shockley (Is=1e-6 A, Vd=0.05 V, rails ±0.8 V),
   uniform random conductances (mean 1/n_in S), a batch of 360 random Digits-sized inputs (64 features in [0, 1],
   pair-encoded, input gain 40 V: ~17 % of first-layer nodes beyond the rails), default tolerance.
   Clocks (time.perf_counter): `ms/sample` = one whole `solve` call / 360. `sweep ms` = a 10-sweep
   solve of the full batch (nothing converges: tol=1e-300; its set-up included) / 10; `products ms` = the 2(L-1)
   dense products a sweep needs, alone, same shapes; the three timed in turn, best of 5 each (the sweep and the
   products since 2026-11-30, the whole solve since 2026-12-01: before, one after the other, and the machine's
   drift moved the ratios). `ratio` = sweep / products;
   `solve / products` = the whole solve in sweep-equivalents of products; `page faults per sweep`: the process's
   minor page faults over those 10-sweep solves, per sweep (memory touched for the first time:
   cdsolver.allocator).
4. Thread pools (cdsolver.threads): a 10-sweep solve of 128-1024-10 and 128-1024³-10 (A=4, C=1) in a fresh
   process per setting: idle threads sleep (drn's settings); idle threads spin as the libraries do when nothing
   is set (OPENBLAS_THREAD_TIMEOUT=28 and GOMP_SPINCOUNT=300000 are those values; an explicit spin count
   overrides the passive policy cdsolver sets); one thread. Wall and CPU (user + system) ms per sweep, best of 3
   in each process.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import cdsolver  # noqa: F401  (first, before numpy: idle pool threads sleep, cdsolver.threads)
import numpy as np

from cdsolver import kernels, random_network, solve
from cdsolver.elements import Ideal, Linear, LinearPair, Pwl, Shockley

BATCH, GAIN, REPEAT = 360, 40.0, 3
KB, KN = 720, 1024  # kernel table: samples x nodes


def best(f, repeat=REPEAT, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t = clock()
        out = f()
        times.append(clock() - t)
    return min(times), out


def fresh(code: str, env: dict | None = None, repeat: int = 3) -> float:
    """Best wall time (s) of ``python -c code`` in a fresh process."""
    return min(_run([sys.executable, "-c", code], env) for _ in range(repeat))


def _run(cmd, env) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def startup() -> None:
    """The numba kernels' load in a fresh process (`drn --help` and the imports: bench_start.py)."""
    load = "import time; t=time.perf_counter(); from cdsolver import kernels; kernels.backend(); " \
           "print(time.perf_counter()-t)"
    print("| numba kernels: import numba and load them | seconds (fresh process) |\n|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        first = fresh(load, {"NUMBA_CACHE_DIR": cache}, repeat=1)
        cached = fresh(load, {"NUMBA_CACHE_DIR": cache})
    print(f"| first run: compiled (empty cache), whole process | {first:.2f} |")
    print(f"| every later run: from the on-disk cache, whole process (best of 3) | {cached:.2f} |", flush=True)


def drives(rng, rows: int, n: int):
    """Per-node ``a`` (S) and drives ``c`` (A, ``(rows, n)``) of the kernel tables: |c/a| ~ 1.6 V, about half the
    nodes beyond ±0.8 V."""
    return rng.uniform(0.5, 2, n) * 1e-3, rng.normal(0, 1.6e-3, (rows, n))


def kernel_cases():
    a, c = drives(np.random.default_rng(0), KB, KN)
    both, inf = np.full(KN, 0.8), np.full(KN, np.inf)
    table = [[-1.0, -0.3], [-0.8, -1e-3], [0.8, 1e-3], [1.0, 0.3]]
    return [
        ("double Shockley", Shockley(1e-6, 0.05), a, c, -both, both),
        ("one-sided Shockley (upper rail)", Shockley(1e-6, 0.05), a, c, -inf, both),
        ("pwl, 4 points", Pwl(table), a, c, -inf, inf),
        ("ideal diodes", Ideal(), a, c, -both, both),
        ("linear", Linear(), a, c, -inf, inf),
        ("paired outputs", LinearPair(2e-4), a + 2e-4, c, -inf, inf),
    ]


def kernel_table(rounds: int = 7) -> None:
    """Per element: the NumPy reference, the kernel cold and warm on all threads, then on one, and the unit (one
    ``numpy.exp`` pass, one thread) timed in turn, ``rounds`` times, each its best: the machine's speed drifts,
    and a ratio holds only between clocks taken in the same stretch. The one-thread columns are the kernel's own
    cost against the unit's; the all-thread ones also hold how much of the other cores the machine gives."""
    import numba

    x = np.random.default_rng(1).standard_normal((KB, KN))
    y = np.empty_like(x)
    n = KB * KN
    threads = numba.get_num_threads()
    print(f"\nOne layer update of {KB} x {KN} nodes; exp-pass = one `numpy.exp(x, out=y)` over the same shape "
          f"({numpy_simd()}), timed in turn with the updates of its row; best of {rounds}; the kernel on "
          f"{threads} threads, then on 1\n")
    print("| element | beyond rails | exp-pass ns | NumPy reference ns/node | exp-passes | kernel cold ns/node "
          "| exp-passes | kernel warm ns/node | exp-passes | 1 thread: cold exp-passes | warm exp-passes |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")

    def one_thread(f):
        def run():
            numba.set_num_threads(1)
            try:
                return f()
            finally:
                numba.set_num_threads(threads)
        return run

    for name, el, a, c, lo, hi in kernel_cases():
        ref = el.solve_reference(a, c, lo, hi)
        cold, warm = lambda: kernels.update(el, a, lo, hi, c), lambda: kernels.update(el, a, lo, hi, c, old=ref)
        runs = (lambda: np.exp(x, out=y), lambda: el.solve_reference(a, c, lo, hi), cold, warm, one_thread(cold),
                one_thread(warm))
        t_exp, t_ref, t_cold, t_warm, t_cold1, t_warm1 = (
            min(ts) for ts in zip(*([best(f, 1)[0] for f in runs] for _ in range(rounds))))
        beyond = f"{(np.abs(ref) >= 0.8).mean():.0%}"  # ideal diodes: on the rail
        print(f"| {name} | {beyond} | {1e9 * t_exp / n:.2f} | " + " | ".join(
            f"{1e9 * t / n:.1f} | {t / t_exp:.2f}" for t in (t_ref, t_cold, t_warm))
            + f" | {t_cold1 / t_exp:.2f} | {t_warm1 / t_exp:.2f} |", flush=True)


def row_table(rows: int = 128, nodes=(10, 20, 100, 1024), rounds: int = 7) -> None:
    """The double-Shockley update of ``rows`` samples (a training batch) for rows of several lengths: the part of
    an update that does not grow with the row (set-up, scratch, calls) shows as ns per node on short rows."""
    print(f"\nDouble-Shockley update of {rows} samples by row length (drives as in the table above; serial below "
          f"{kernels._PARALLEL_NODES} nodes); ns per node, each clock over ~200,000 node updates, best of {rounds}\n")
    print("| nodes per row | threads | cold ns/node | warm ns/node | cold ns/row |\n|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    el = Shockley(1e-6, 0.05)
    for n in nodes:
        a, c = drives(rng, rows, n)
        lo, hi = np.full(n, -0.8), np.full(n, 0.8)
        k = kernels.LayerKernel(el, a, lo, hi, n)
        ref = k.update(c)[0]
        reps = max(1, 200_000 // c.size)

        def clock(old):
            t = time.perf_counter()
            for _ in range(reps):
                k.update(c, old=old)
            return (time.perf_counter() - t) / (reps * c.size)

        cold, warm = (min(ts) for ts in zip(*([clock(None), clock(ref)] for _ in range(rounds))))
        print(f"| {n} | {'all' if kernels.parallel(c.size) else 1} | {1e9 * cold:.1f} | {1e9 * warm:.1f} "
              f"| {1e9 * cold * n:.0f} |", flush=True)


def numpy_simd() -> str:
    """The widest x86 SIMD extension NumPy finds on this CPU (its float64 exp is vectorised from AVX512F on; below,
    a call to libm per element), from NumPy's internal ``__cpu_features__``."""
    found = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # (NumPy 2, NumPy 1)
        try:
            found = __import__(module, fromlist=["__cpu_features__"]).__cpu_features__
            break
        except (ImportError, AttributeError):
            pass
    if not found:
        return "NumPy's SIMD level unknown"
    level = next((f for f in ("AVX512_SPR", "AVX512_ICL", "AVX512_SKX", "AVX512F", "AVX2") if found.get(f)), None)
    return f"CPU SIMD for NumPy: {level}" if level else "CPU SIMD for NumPy: below AVX2"


def products(net, B):
    """A function doing the dense products of one sweep (each crossbar l >= 2 forward, each l <= L-1 backward)
    for a batch of B."""
    rng = np.random.default_rng(0)
    n = net.sizes
    xs = {l: rng.standard_normal((B, n[l])) for l in range(1, net.depth + 1)}

    def run():
        for l in range(2, net.depth + 1):
            xs[l - 1] @ net.G[l - 1]
        for l in range(1, net.depth):
            xs[l + 1] @ net.G[l].T

    return run


def timed_in_turn(net, v0, repeat=5):
    """(the solution, seconds for the whole solve, per sweep of a 10-sweep solve, for the sweep's products alone,
    page faults per sweep), best of ``repeat`` each, the three timed in turn: the machine's speed drifts (the same
    products took 24-36 ms in one run), and a ratio is only meaningful between clocks taken in the same stretch."""
    run, times, faults = products(net, len(v0)), ([], [], []), 0
    sol = solve(net, v0)  # (first the heap grows to the size of a round: a solution kept, a 10-sweep solve)
    solve(net, v0, tol=1e-300, max_sweeps=10)
    for _ in range(repeat):
        t, sol = best(lambda: solve(net, v0), 1)
        times[0].append(t)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times[1].append(best(lambda: solve(net, v0, tol=1e-300, max_sweeps=10), 1)[0] / 10)
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        times[2].append(best(run, 1)[0])
    return (sol, *map(min, times), faults / (10 * repeat))


def bench_network(hidden: int, amp: tuple[float, float] | None):
    """The network 128-1024^hidden-10 of the tables and its input voltages (BATCH random Digits-sized inputs)."""
    net = random_network([128] + [1024] * hidden + [10], "shockley", seed=0, input_gain=GAIN, amplifier=amp)
    return net, net.encode(np.random.default_rng(0).uniform(0, 1, (BATCH, 64)))


def network_table(depths=(1, 2, 3)) -> None:
    print(f"\nbatch {BATCH}, double Shockley, input gain {GAIN} V, default tolerance\n")
    print("| network | amplifier | sweeps mean / max | converged | ms/sample | sweep ms | products ms | ratio "
          "| solve / products | page faults per sweep | beyond rails per hidden layer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for hidden in depths:
        for amp in (None, (4.0, 1.0)):
            net, v0 = bench_network(hidden, amp)
            sol, t, t_sweep, t_prod, faults = timed_in_turn(net, v0)
            frac = ", ".join(f"{(np.abs(v) > 0.8).mean():.0%}" for v in sol.states[:-1])
            print(f"| {'-'.join(map(str, net.sizes))} | {'none' if amp is None else f'A={amp[0]:g} C={amp[1]:g}'} "
                  f"| {sol.iterations.mean():.1f} / {sol.iterations.max()} | {sol.converged.sum()}/{BATCH} "
                  f"| {1e3 * t / BATCH:.3f} | {1e3 * t_sweep:.1f} | {1e3 * t_prod:.1f} | {t_sweep / t_prod:.2f} "
                  f"| {t / t_prod:.1f} | {faults:.0f} | {frac} |", flush=True)


THREAD_SETTINGS = {
    "idle threads sleep (drn)": {},
    "idle threads spin (the libraries' defaults)": {"OPENBLAS_THREAD_TIMEOUT": "28", "GOMP_SPINCOUNT": "300000"},
    "one thread": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
}


def sweep_clocks(hidden: int, amp: tuple[float, float] | None) -> None:
    """Print wall and CPU ms per sweep of a 10-sweep solve of ``bench_network`` (best of 3 by wall clock)."""
    net, v0 = bench_network(hidden, amp)
    solve(net, v0[:4])  # load the kernels
    clocks = []
    for _ in range(3):
        w, c = time.perf_counter(), time.process_time()
        solve(net, v0, tol=1e-300, max_sweeps=10)
        clocks.append((time.perf_counter() - w, time.process_time() - c))
    wall, cpu = min(clocks)
    print(100 * wall, 100 * cpu)


def thread_table() -> None:
    """Each setting in a fresh process: the libraries read the variables when they load."""
    print("\n| network | setting | wall ms/sweep | CPU ms/sweep |\n|---|---|---|---|")
    here = os.path.dirname(os.path.abspath(__file__))
    for hidden, amp in ((1, None), (3, (4.0, 1.0))):
        name = "-".join(map(str, [128] + [1024] * hidden + [10])) + ("" if amp is None else ", A=4 C=1")
        code = (f"import sys; sys.path.insert(0, {here!r}); import bench_solver; "
                f"bench_solver.sweep_clocks({hidden}, {amp})")
        for setting, env in THREAD_SETTINGS.items():
            out = subprocess.run([sys.executable, "-c", code], check=True, text=True, capture_output=True,
                                 env={**os.environ, **env}).stdout.split()
            print(f"| {name} | {setting} | {float(out[0]):.1f} | {float(out[1]):.1f} |", flush=True)


def main():
    quick = "--quick" in sys.argv
    import numba

    print(f"# bench_solver: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy "
          f"{np.__version__}, numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), kernels: "
          f"{kernels.backend()}\n")
    startup()
    kernel_table()
    row_table()
    network_table((1,) if quick else (1, 2, 3))
    thread_table()


if __name__ == "__main__":
    main()
