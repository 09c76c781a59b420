"""`make demo`: a small Digits comparison, CD vs ngspice, written to results/demo/ (CSV, summary, plots).

Untrained double-Shockley networks 128-H-10 (H = 32, 128; Is=1e-6 A, Vd=0.05 V, rails ±0.8 V, input gain 40 V)
and 50 Digits validation samples, solved by CD and by ngspice's `batch` and `op` runners. Timing: CD = one
`solve` call over the 50 samples / 50; SPICE = each runner's own clock (see `spice_bridge.runners.CLOCKS`);
speed-up = SPICE median / CD. ngspice failures are counted (`spice_failed`), their time is in the mean.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cdsolver import random_network, solve
from cdsolver.datasets import load_digits
from spice_bridge.runners import CLOCKS, run

from .metrics import EPS_L1, max_abs, percentiles, rel_l1

OUT = Path("results/demo")
WIDTHS, SAMPLES, RUNNERS = (32, 128), 50, ("batch", "op")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    x = load_digits(seed=0)["val"].x[:SAMPLES]
    rows = []
    for H in WIDTHS:
        net = random_network([128, H, 10], "shockley", seed=0, input_gain=40.0)
        v0 = net.encode(x)
        t = time.perf_counter()
        cd = solve(net, v0).check()
        t_cd = (time.perf_counter() - t) / len(v0)
        for r in RUNNERS:
            res = run(net, v0, runner=r, jobs=2)
            err, mx = rel_l1(cd.states, res.states), max_abs(cd.states, res.states)
            for b in range(len(v0)):
                rows.append(dict(width=H, runner=r, sample=b, rel_l1=err[b], max_abs_V=mx[b], cd_sweeps=cd.iterations[b],
                                 spice_iterations=res.iterations[b], cd_s=t_cd, spice_s=res.wall[b], spice_ok=res.ok[b],
                                 spice_reason=res.reason[b]))
            med = np.median(res.wall)
            print(f"H={H:4d} {r:6s}: P90 rel L1 {percentiles(err)['p90']:.1e}, SPICE median {med:.4f} s/sample "
                  f"(mean {res.wall.mean():.4f}, {int((~res.ok).sum())} failed), CD {t_cd * 1e3:.3f} ms/sample, "
                  f"speed-up {med / t_cd:.0f}x", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(OUT / "samples.csv", index=False)
    summ = df.groupby(["width", "runner"]).apply(lambda g: pd.Series({
        **{f"rel_l1_{k}": v for k, v in percentiles(g.rel_l1.to_numpy()).items()},
        "max_abs_V": g.max_abs_V.max(), "cd_ms": 1e3 * g.cd_s.mean(), "spice_s_median": g.spice_s.median(),
        "spice_s_mean": g.spice_s.mean(), "speedup_median": g.spice_s.median() / g.cd_s.mean(),
        "spice_failed": int((~g.spice_ok).sum())}), include_groups=False)
    summ.to_csv(OUT / "summary.csv")
    (OUT / "README.md").write_text(
        f"# demo: CD vs ngspice on Digits\n\n{__doc__}\nrelative L1 ε = {EPS_L1} V.\n\n"
        + "\n".join(f"- {r}: {c}" for r, c in CLOCKS.items() if r in RUNNERS)
        + "\n\n```\n" + summ.to_string() + "\n```\n")
    plot(df)
    print(f"\nwrote {OUT}/samples.csv, summary.csv, README.md, runtime.png/pdf, error_cdf.png/pdf")
    print(summ.to_string())
    return 0


def plot(df: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    g = df.groupby(["runner", "width"]).agg(spice=("spice_s", "median"), cd=("cd_s", "mean")).reset_index()
    for r, d in g.groupby("runner"):
        ax.plot(d.width, d.spice, "o-", label=f"ngspice {r}")
    cd = g.groupby("width").cd.mean()
    ax.plot(cd.index, cd.values, "s-k", label="CD")
    ax.set(xscale="log", yscale="log", xlabel="hidden width H", ylabel="seconds per sample (median)", title="128-H-10")
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(OUT / f"runtime.{ext}", dpi=150)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for (H, r), d in df.groupby(["width", "runner"]):
        e = np.sort(d.rel_l1.to_numpy())
        ax.step(np.maximum(e, 1e-18), np.arange(1, len(e) + 1) / len(e), where="post", label=f"H={H} {r}")
    ax.set(xscale="log", xlabel="relative L1 error CD vs ngspice", ylabel="fraction of samples", title="error CDF")
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(OUT / f"error_cdf.{ext}", dpi=150)


if __name__ == "__main__":
    sys.exit(main())
