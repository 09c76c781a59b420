"""`drn plot`: figures (PNG + PDF) and a Markdown table from a `drn compare` results folder, or learning curves
from `drn train` histories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cdsolver.validation import ValidationError

__all__ = ["plot", "learning_curves"]


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> list[Path]:
    fig.tight_layout()
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths


def plot(results: str | Path) -> list[Path]:
    """runtime_vs_width (median s/sample, log-log, one panel per depth, CD and each runner), speedup_vs_width,
    error_cdf (relative L1 per element and runner), summary.md. Returns the files written."""
    plt = _pyplot()
    out = Path(results)
    if not (out / "samples.csv").is_file():
        raise ValidationError(f"{out}/samples.csv not found: run `drn compare CONFIG --out {out}` first")
    df = pd.read_csv(out / "samples.csv", comment="#")
    summ = pd.read_csv(out / "summary.csv", comment="#")
    written = []
    depths = sorted(df.depth.unique())
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6), squeeze=False)
    for ax, d in zip(axes[0], depths):
        s = summ[summ.depth == d]
        for (r, e), g in s.groupby(["runner", "element"]):
            g = g.groupby("width").spice_s_median.median()
            ax.plot(g.index, g.values, "o-", label=f"ngspice {r} ({e})")
        for e, g in s.groupby("element"):
            g = g.groupby("width").cd_s.median()
            ax.plot(g.index, g.values, "s--k", label=f"CD ({e})")
        ax.set(xscale="log", yscale="log", xlabel="hidden width", ylabel="seconds per sample",
               title=f"{d} hidden layer{'s' if d > 1 else ''}")
        ax.legend(fontsize=7)
    written += _save(fig, out, "runtime_vs_width")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for (d, r), g in summ.groupby(["depth", "runner"]):
        g = g.groupby("width").speedup_median.median()
        ax.plot(g.index, g.values, "o-", label=f"depth {d}, vs {r}")
    ax.set(xscale="log", yscale="log", xlabel="hidden width", ylabel="speed-up (median SPICE / CD)")
    ax.legend(fontsize=7)
    written += _save(fig, out, "speedup_vs_width")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ok = df[df.spice_ok]
    for (e, r), g in ok.groupby(["element", "runner"]):
        x = np.sort(np.maximum(g.rel_l1.to_numpy(), 1e-18))
        ax.step(x, np.arange(1, len(x) + 1) / len(df[(df.element == e) & (df.runner == r)]), where="post",
                label=f"{e}, {r}")
    ax.set(xscale="log", xlabel="relative L1 error, CD vs ngspice", ylabel="fraction of samples",
           title="error CDF (failed SPICE samples count as missing)")
    ax.legend(fontsize=7)
    written += _save(fig, out, "error_cdf")
    plt.close("all")
    cols = ["depth", "width", "element", "amplifier", "runner", "samples", "spice_failed", "rel_l1_p50",
            "rel_l1_p90", "rel_l1_max", "max_abs_V", "cd_sweeps_mean", "cd_s", "spice_s_median", "speedup_median"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in summ[cols].iterrows():
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    written.append(out / "summary.md")
    return written


def learning_curves(histories: list[str | Path], out: str | Path) -> list[Path]:
    """Train and validation error per epoch of ``drn train`` runs (``NET.history.csv``), one line pair per run,
    written to ``out`` (``.png`` and ``.pdf``). Returns the files written."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for h in map(Path, histories):
        if not h.is_file():
            raise ValidationError(f"history file not found: {h} (drn train writes NET.history.csv)")
        df = pd.read_csv(h)
        missing = {"epoch", "train_error", "val_error"} - set(df.columns)
        if missing:
            raise ValidationError(f"{h}: not a drn train history (missing columns {sorted(missing)})")
        name = h.name.removesuffix(".history.csv")
        line, = ax.plot(df.epoch, 100 * df.val_error, "o-", ms=3, label=f"{name}: validation")
        ax.plot(df.epoch, 100 * df.train_error, "--", color=line.get_color(), label=f"{name}: train (during epoch)")
    ax.set(xlabel="epoch", ylabel="error (%)", title="EP training (CD solver)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = Path(out)
    written = _save(fig, out.parent, out.stem)
    plt.close(fig)
    return written
