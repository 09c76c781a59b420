"""Start-up of the command line: wall and CPU seconds of `python -m studies.cli ARGS` (docs/performance.md#start-up).
Run: `python benchmarks/bench_start.py [--runs N] [--compare DIR] [ARGS ...]` (default ARGS: --help).

Each run is a fresh interpreter with PYTHONPATH = the checkout; CPU = user + system seconds of the child. With
``--compare DIR`` the runs alternate between this checkout and DIR (another checkout, e.g. a ``git worktree`` of
an older commit), so both see the same machine load. Prints medians over N runs (default 11), and the same for
``python -c pass`` (the interpreter's own start).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one run of ``cmd`` with PYTHONPATH = ``cwd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(cwd)}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--compare", type=Path, help="another checkout, timed in alternation")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="drn arguments (default: --help)")
    opts = ap.parse_args()
    drn = [sys.executable, "-m", "studies.cli", *(opts.args or ["--help"])]
    cases = {f"{ROOT}: {' '.join(drn[3:])}": (drn, ROOT)}
    if opts.compare:
        cases[f"{opts.compare.resolve()}: {' '.join(drn[3:])}"] = (drn, opts.compare.resolve())
    cases["python -c pass"] = ([sys.executable, "-c", "pass"], ROOT)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(opts.runs):
        for name, (cmd, cwd) in cases.items():
            times[name].append(timed(cmd, cwd))
    for name, t in times.items():
        print(f"{name}: wall median {statistics.median(w for w, _ in t):.3f} s (min {min(w for w, _ in t):.3f}), "
              f"CPU median {statistics.median(c for _, c in t):.3f} s, {opts.runs} runs")


if __name__ == "__main__":
    main()
