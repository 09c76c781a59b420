"""`drn plot`: figures (PNG + vector PDF) and a Markdown table from a `drn compare` results folder, or learning
curves from `drn train` histories.

Every figure uses one colour per element (Okabe–Ito, colour-blind safe) and one marker and line style per
engine (CD, batch, op, shared), the same in every panel; hidden widths are labelled as the widths themselves;
legends sit outside the data. ``style="paper"`` sizes figures for a two-column paper (3.4 in for one panel,
7 in for a row of panels, 8 pt text, TrueType fonts embedded in the PDF); ``style="screen"`` is larger.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Collection, Mapping

import numpy as np
import pandas as pd

from cdsolver.files import check_out
from cdsolver.validation import ValidationError

from .gradients import gradient_cdf

__all__ = ["plot", "learning_curves", "STYLES", "ELEMENT_COLORS", "ENGINE_STYLES", "provenance_header"]

#: figure widths (in) for one panel and for a row of panels, text size (pt), PNG resolution (dpi)
STYLES = {"paper": {"one": 3.4, "row": 7.0, "font": 8, "dpi": 200},
          "screen": {"one": 5.5, "row": 11.0, "font": 11, "dpi": 120}}
#: Okabe & Ito's colour-blind-safe palette, in the order elements (or runs) take them
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
ELEMENT_COLORS = {"shockley-double": OKABE_ITO[0], "shockley-single": OKABE_ITO[1], "pwl": OKABE_ITO[2]}
#: engine: matplotlib marker and line style
ENGINE_STYLES = {"CD": ("s", "-"), "batch": ("o", "--"), "op": ("^", ":"), "shared": ("D", "-.")}
#: columns drn plot reads: of summary.csv (also those of summary.md), samples.csv, the cell files it summarises
#: (compare.summarize) and a drn train history; all numbers except the keys of TEXT
SUMMARY_COLUMNS = ["depth", "width", "element", "amplifier", "runner", "samples", "spice_failed", "rel_l1_p50",
                   "rel_l1_p90", "rel_l1_max", "max_abs_V", "cd_sweeps_mean", "cd_s", "spice_s_median",
                   "speedup_median"]
SAMPLES_COLUMNS = ["depth", "element", "amplifier", "runner", "rel_l1", "spice_ok"]
CELL_COLUMNS = ["depth", "width", "element", "amplifier", "seed", "runner", "rel_l1", "max_abs_V", "cd_sweeps",
                "cd_converged", "cd_s", "spice_s", "spice_iterations", "spice_ok"]
HISTORY_COLUMNS = ["epoch", "train_error", "val_error"]
#: text columns of a drn compare CSV: the values drn plot draws (None: any)
TEXT: dict[str, Collection[str] | None] = {"element": list(ELEMENT_COLORS), "amplifier": None,
                                           "runner": ["batch", "op", "shared"]}


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rc(style: str) -> dict:
    """matplotlib settings of a style; fonts TrueType (type 42) so that PDFs embed them."""
    s = STYLES[style]
    return {"font.size": s["font"], "axes.titlesize": s["font"], "axes.labelsize": s["font"],
            "legend.fontsize": s["font"] - 1, "xtick.labelsize": s["font"] - 1, "ytick.labelsize": s["font"] - 1,
            "lines.markersize": 4 if style == "paper" else 6, "lines.linewidth": 1.2,
            "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": s["dpi"]}


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        # constrained layout: the figure keeps its width (3.4 in or 7 in for paper); no date: same data, same PDF
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    return paths


def _series(summ: pd.DataFrame) -> list[tuple[str, str]]:
    """The (element, amplifier) pairs of a study, in ELEMENT_COLORS' order."""
    return sorted({(e, a) for e, a in zip(summ.element, summ.amplifier)},
                  key=lambda ea: (list(ELEMENT_COLORS).index(ea[0]), ea[1]))


def _colors(series: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Each element's own colour; with several amplifiers, one palette colour per (element, amplifier)."""
    if len({a for _, a in series}) == 1:
        return {ea: ELEMENT_COLORS[ea[0]] for ea in series}
    return {ea: OKABE_ITO[i % len(OKABE_ITO)] for i, ea in enumerate(series)}


def _label(ea: tuple[str, str]) -> str:
    """Legend text: the element, and the amplifier when there is one."""
    return ea[0] if ea[1] == "none" else f"{ea[0]}, {ea[1]}"


def _width_axis(ax, widths) -> None:
    """Log x axis whose ticks are the hidden widths, labelled as plain numbers."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log")
    ax.set_xticks(list(widths), labels=[str(int(w)) for w in widths])
    ax.xaxis.set_minor_locator(NullLocator())
    lo, hi = min(widths), max(widths)
    ax.set_xlim(lo / 1.5, hi * 1.5)


def _legend(fig, colors: dict, engines: list[str], markers: bool = True) -> None:
    """One legend below the panels: a line per element (colour) and per engine (marker and line style)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2.5, label=_label(ea)) for ea, c in colors.items()]
    handles += [Line2D([], [], color="0.25", marker=ENGINE_STYLES[e][0] if markers else None,
                       ls=ENGINE_STYLES[e][1], label=e if e == "CD" else f"ngspice {e}") for e in engines]
    one_column = len(fig.axes) == 1
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 2 if one_column else 6),
               frameon=False, handlelength=2.6, columnspacing=1.2)


def _panels(plt, n: int, style: str, height: float):
    s = STYLES[style]
    size = (s["one"], height + 0.35) if n == 1 else (s["row"], height)  # one column: a legend of 2-3 rows
    fig, axes = plt.subplots(1, n, figsize=size, squeeze=False, layout="constrained", sharey=True)
    return fig, axes[0]


def _depth_title(d: int) -> str:
    return f"{d} hidden layer{'s' if d > 1 else ''}"


def runtime_figure(summ: pd.DataFrame, style: str = "paper"):
    """Seconds per sample against hidden width (log-log), one panel per depth: CD and each ngspice runner."""
    plt = _pyplot()
    series, depths, runners = _series(summ), sorted(summ.depth.unique()), sorted(summ.runner.unique())
    colors = _colors(series)
    fig, axes = _panels(plt, len(depths), style, 2.6 if style == "paper" else 4.2)
    for ax, d in zip(axes, depths):
        s = summ[summ.depth == d]
        for ea in series:
            g = s[(s.element == ea[0]) & (s.amplifier == ea[1])]
            for engine, col, sub in [("CD", "cd_s", g)] + [
                    (r, "spice_s_median", g[g.runner == r]) for r in runners]:
                v = sub.groupby("width")[col].median()
                m, ls = ENGINE_STYLES[engine]
                ax.plot(v.index, v.values, marker=m, ls=ls, color=colors[ea])
        _width_axis(ax, sorted(summ.width.unique()))
        ax.set(yscale="log", xlabel="hidden width", title=_depth_title(d))
        ax.grid(alpha=0.3, which="major")
    axes[0].set_ylabel("seconds per sample")
    _legend(fig, colors, ["CD", *runners])
    return fig


def speedup_figure(summ: pd.DataFrame, style: str = "paper"):
    """Median ngspice time / CD time, one panel per depth: a row per hidden width and element (colour), a
    marker per runner on a line in the runner's style, each labelled with its value."""
    plt = _pyplot()
    series, depths, runners = _series(summ), sorted(summ.depth.unique()), sorted(summ.runner.unique())
    colors, widths = _colors(series), sorted(summ.width.unique())
    have = set(zip(summ.width, summ.element, summ.amplifier))
    rows = [(w, ea) for w in widths for ea in series if (w, *ea) in have]
    ys = np.arange(len(rows)) + np.cumsum([i > 0 and w != rows[i - 1][0] for i, (w, _) in enumerate(rows)]) * 0.6
    off = np.linspace(-0.2, 0.2, len(runners)) if len(runners) > 1 else np.zeros(1)
    left = 10.0 ** np.floor(np.log10(summ.speedup_median.min() / 2))  # a decade below the smallest
    height = (1.5 if style == "paper" else 2.2) + len(rows) * len(runners) * (0.12 if style == "paper" else 0.18)
    fig, axes = _panels(plt, len(depths), style, height)
    for ax, d in zip(axes, depths):
        for y0, (w, ea) in zip(ys, rows):
            g = summ[(summ.depth == d) & (summ.width == w) & (summ.element == ea[0]) & (summ.amplifier == ea[1])]
            if g.empty:
                ax.text(left * 1.5, y0, "not measured", va="center", color="0.5", fontsize=STYLES[style]["font"] - 2)
            for dy, r in zip(off, runners):
                v = g[g.runner == r].speedup_median
                if v.empty:
                    continue
                m, ls = ENGINE_STYLES[r]
                ax.hlines(y0 + dy, left, v.median(), colors=colors[ea], linestyles=ls, lw=0.9)
                ax.plot(v.median(), y0 + dy, marker=m, color=colors[ea], ls="none")
                ax.annotate(f"{v.median():,.0f}", (v.median(), y0 + dy), xytext=(3, 0), textcoords="offset points",
                            ha="left", va="center", fontsize=STYLES[style]["font"] - 2)
        ax.set_xscale("log")
        ax.set_xlim(left, summ.speedup_median.max() * 12)
        ax.set_yticks([ys[[r[0] == w for r in rows]].mean() for w in widths], labels=[str(int(w)) for w in widths])
        ax.set_ylim(ys[-1] + 0.6, ys[0] - 0.6)
        ax.set(xlabel="speed-up (ngspice / CD)", title=_depth_title(d))
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_ylabel("hidden width")
    _legend(fig, colors, runners)
    return fig


def error_figure(samples: pd.DataFrame, style: str = "paper"):
    """Empirical CDF of the relative L1 error of CD vs ngspice, one panel per depth (widths pooled), over the
    samples ngspice solved: a failure counts as missing, so its curve ends below 1. Grey line: 1e-12."""
    plt = _pyplot()
    series, depths, runners = _series(samples), sorted(samples.depth.unique()), sorted(samples.runner.unique())
    colors = _colors(series)
    fig, axes = _panels(plt, len(depths), style, 2.4 if style == "paper" else 4.0)
    for ax, d in zip(axes, depths):
        for ea in series:
            for r in runners:
                g = samples[(samples.depth == d) & (samples.element == ea[0]) & (samples.amplifier == ea[1])
                            & (samples.runner == r)]
                x = np.sort(np.maximum(g.rel_l1[g.spice_ok].to_numpy(), 1e-18))
                if not len(x):  # not measured, or every sample failed
                    continue
                y = np.arange(1, len(x) + 1) / len(g)
                ax.step(np.r_[x[:1], x], np.r_[0.0, y], where="post", ls=ENGINE_STYLES[r][1], color=colors[ea])
        ax.axvline(1e-12, color="0.5", lw=0.8)
        ax.set(xscale="log", ylim=(0, 1.02), xlabel="relative L1 error", title=_depth_title(d))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of samples")
    _legend(fig, colors, runners, markers=False)
    return fig


def error_quantile_figure(summ: pd.DataFrame, style: str = "paper"):
    """Without per-sample rows: P90 relative L1 error against hidden width (markers and lines), with a bar from
    P50 to the maximum, one panel per depth. Grey line: 1e-12."""
    plt = _pyplot()
    series, depths, runners = _series(summ), sorted(summ.depth.unique()), sorted(summ.runner.unique())
    colors, widths = _colors(series), sorted(summ.width.unique())
    fig, axes = _panels(plt, len(depths), style, 2.6 if style == "paper" else 4.2)
    shift = {r: 1.06 ** (i - (len(runners) - 1) / 2) for i, r in enumerate(runners)}  # runners side by side
    for ax, d in zip(axes, depths):
        for i, ea in enumerate(series):
            for r in runners:
                g = summ[(summ.depth == d) & (summ.element == ea[0]) & (summ.amplifier == ea[1])
                         & (summ.runner == r)].sort_values("width")
                x = g.width.to_numpy() * shift[r] * 1.13 ** (i - (len(series) - 1) / 2)
                m, ls = ENGINE_STYLES[r]
                ax.errorbar(x, g.rel_l1_p90, yerr=[g.rel_l1_p90 - g.rel_l1_p50, g.rel_l1_max - g.rel_l1_p90],
                            marker=m, ls=ls, color=colors[ea], elinewidth=0.7, capsize=0)
        ax.axhline(1e-12, color="0.5", lw=0.8)
        _width_axis(ax, widths)
        ax.set(yscale="log", xlabel="hidden width", title=_depth_title(d))
        ax.grid(alpha=0.3, which="major")
    axes[0].set_ylabel("relative L1 error: P90 (P50 to max)")
    _legend(fig, colors, runners)
    return fig


def provenance_header(path: Path) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a ``drn compare`` CSV."""
    out = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# "):
            break
        k, _, v = line[2:].partition(": ")
        out[k] = v
    return out


def _provenance_rows(prov: dict[str, str]) -> list[str]:
    """A Markdown table of one provenance header."""
    versions = ", ".join(f"{k} {prov[k]}" for k in ("python", "numpy", "scipy", "pandas", "ngspice") if k in prov)
    commit = f"`{prov.get('git_commit', '?')}`" + (" (`-dirty`: the tree had uncommitted changes)"
                                                   if prov.get("git_commit", "").endswith("-dirty") else "")
    rows = [("study", prov.get("study", "?")),
            ("command", f"`{prov['command']}`" if "command" in prov else
             "not recorded (the run predates the `command` key)"),
            ("git commit", commit),
            ("date (start of the run that wrote it, machine's local time)", prov.get("date", "?")),
            ("machine", prov.get("machine", "?")), ("versions", versions),
            ("config sha256 (first 16 hex)", f"`{prov.get('config_sha256', '?')}`"),
            ("ε of the relative L1 (V)", prov.get("eps_l1_V", "?"))]
    return ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]


def _readme(out: Path, sources: list[tuple[Path, Path, dict[str, str]]], figures: list[str],
            samples_kept: bool) -> str:
    """results/<study>/README.md: where the numbers come from (one provenance table per source), and the figures."""
    title = sources[0][2].get("study", out.name) if len(sources) == 1 else out.name
    text = [f"# {title}: CD vs ngspice", ""]
    if len(sources) == 1:
        folder, csv, _ = sources[0]
        text += [f"Written by `drn plot` from the provenance header of `{csv.relative_to(folder)}`"
                 + ("" if folder == out else f" in `{folder}`") + ".", ""]
        text += _provenance_rows(sources[0][2])
    else:
        text += ["Written by `drn plot` from the studies below (provenance from the header of each one's CSV).", ""]
        for folder, csv, prov in sources:
            text += [f"## `{folder}` (`{csv.name}`)", ""] + _provenance_rows(prov)
    formats = Path(__file__).resolve().parents[1] / "docs" / "formats.md"  # (with a source checkout)
    where = (f"[docs/formats.md]({Path(os.path.relpath(formats, out.resolve())).as_posix()}#study-csv-files)"
             if formats.is_file() else "docs/formats.md of drn-cd")
    text += [f"Table: [summary.md](summary.md) (per cell and runner; columns in {where})."
             + ("" if samples_kept else " Not every source kept `samples.csv` (per sample), so the error figure "
                "shows the P50, P90 and maximum per cell instead of a CDF."), ""]
    text += [f"![{f}]({f}.png)  \n[{f}.pdf]({f}.pdf)\n" for f in figures]
    return "\n".join(text)


def _read_csv(path: Path, what: str, need: list[str], text: Mapping[str, Collection[str] | None]) -> pd.DataFrame:
    """The table in ``path`` (leading ``#`` lines skipped), checked: the columns ``need`` (numbers, except those
    in ``text``, whose values must be among the given ones unless None), at least one row, every row as long as the
    header and the last one ended by a line break (not truncated); else ValidationError naming the file."""
    try:
        body = re.sub(r"\A(#[^\n]*\n)*", "", path.read_text())
        rows = [r for r in csv.reader(io.StringIO(body)) if r]
        df = pd.read_csv(io.StringIO(body)) if len(rows) > 1 else None
    except (OSError, UnicodeDecodeError, csv.Error, pd.errors.ParserError) as e:
        raise ValidationError(f"{path}: cannot read it as a {what} ({e})") from None
    if not rows:
        raise ValidationError(f"{path}: empty, not a {what}")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise ValidationError(f"{path}: not a {what} (missing columns {missing})")
    if df is None:
        raise ValidationError(f"{path}: no rows (a truncated {what}?)")
    short = next((k for k, r in enumerate(rows[1:], 1) if len(r) != len(rows[0])), None)
    if short is not None:
        raise ValidationError(f"{path}: row {short} has {len(rows[short])} fields, the header {len(rows[0])} "
                              f"(a truncated or damaged {what}?)")
    if not body.endswith("\n"):
        raise ValidationError(f"{path}: the last row does not end with a line break (a truncated {what}?)")
    for c in need:
        known = text.get(c)
        if c not in text and not pd.api.types.is_numeric_dtype(df[c]):
            raise ValidationError(f"{path}: column {c} holds something other than numbers")
        if known is not None and not df[c].isin(known).all():
            raise ValidationError(f"{path}: column {c} has {df[c][~df[c].isin(known)].iloc[0]!r}, drn plot knows "
                                  f"{', '.join(known)}")
    return df


def _load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, Path]:
    """(summary, samples or None, the CSV whose header is the provenance) of a ``drn compare`` folder, checked
    (ValidationError); a folder that kept only ``cells/`` is summarised from its cell files."""
    from .compare import summarize

    if not folder.is_dir():
        raise ValidationError(f"results folder not found: {folder}" if not folder.exists() else
                              f"{folder} is not a folder: drn plot takes drn compare results folders or drn train "
                              f"NET.history.csv files")
    if (folder / "summary.csv").is_file():
        samples = folder / "samples.csv"
        return (_read_csv(folder / "summary.csv", "drn compare summary", SUMMARY_COLUMNS, TEXT),
                _read_csv(samples, "drn compare samples file", SAMPLES_COLUMNS, TEXT) if samples.is_file() else None,
                folder / "summary.csv")
    cells = sorted((folder / "cells").glob("*.csv"))
    if not cells:
        raise ValidationError(f"{folder}: neither summary.csv nor cells/*.csv: run `drn compare CONFIG --out "
                              f"{folder}` first")
    runs: dict[tuple[str, str], list[str]] = {}  # (grid point, runner): cell ids, `<grid point>-<settings digest>`
    for c in cells:
        cid, _, runner = c.name.removesuffix(".csv").rpartition(".")
        runs.setdefault((cid.rpartition("-")[0], runner), []).append(cid)
    mixed = next((ids for ids in runs.values() if len(ids) > 1), None)
    if mixed:  # (summarised together they would be one cell of both runs' samples)
        raise ValidationError(f"{folder}: no summary.csv, and cells/ holds runs of other settings of one cell "
                              f"({', '.join(mixed)}): the same drn compare command writes summary.csv of its own "
                              f"cells (finished ones are skipped); or move the other runs' cells away")
    samples = pd.concat([_read_csv(c, "drn compare cell file", CELL_COLUMNS, TEXT) for c in cells],
                        ignore_index=True)
    for c in ("test_error", "train_epochs", "train_s"):  # not in cell files older than trained studies (untrained)
        samples[c] = samples.get(c, np.nan)
    return summarize(samples), samples, cells[0]


def plot(results: str | Path | list[str | Path], out: str | Path | None = None, style: str = "paper") -> list[Path]:
    """runtime_vs_width, speedup_vs_width and error_cdf (PNG + PDF, one panel per depth), summary.md and
    README.md (provenance) for one ``drn compare`` folder (written into it, or into the folder ``out``) or several
    (merged, written to ``out``). Where ``samples.csv`` was not kept (a curated folder), error_vs_width replaces
    error_cdf. The folders and ``out`` are checked before drawing (ValidationError). Returns the files written."""
    plt = _pyplot()
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (one of {', '.join(STYLES)})")
    folders = [Path(r) for r in (results if isinstance(results, list) else [results])]
    if out is None and len(folders) > 1:
        raise ValidationError("several results folders need an output folder (--out DIR)")
    if out is not None and Path(out).suffix in (".png", ".pdf"):
        raise ValidationError(f"--out {out}: the figures of results folders go into a folder (--out DIR); "
                              f"FIG.png is for learning curves")
    loaded = [_load(f) for f in folders]
    check_out(out or folders[0], folder=True, option="--out" if out else "results folder")
    out = Path(out or folders[0])
    summ = pd.concat([s for s, _, _ in loaded], ignore_index=True)
    samples = None if any(x is None for _, x, _ in loaded) else pd.concat([x for _, x, _ in loaded])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context(_rc(style)):
        figures = {"runtime_vs_width": runtime_figure(summ, style), "speedup_vs_width": speedup_figure(summ, style)}
        if samples is not None:
            figures["error_cdf"] = error_figure(samples, style)
            grad = gradient_cdf(samples, plt)  # study.gradients = true
            if grad is not None:
                figures["gradient_error_cdf"] = grad
        else:
            figures["error_vs_width"] = error_quantile_figure(summ, style)
        for name, fig in figures.items():
            written += _save(fig, out, name)
            plt.close(fig)
    cols = list(SUMMARY_COLUMNS)
    if "test_error" in summ and summ.test_error.notna().any():  # trained cells: what the network learned
        cols[4:4] = ["test_error", "train_epochs", "train_s"]
    cols += [c for c in summ.columns if c.startswith("grad_")]  # study.gradients = true
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in summ[cols].iterrows():
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    sources = [(f, csv, provenance_header(csv)) for f, (_, _, csv) in zip(folders, loaded)]
    (out / "README.md").write_text(_readme(out, sources, list(figures), samples is not None))
    return written + [out / "summary.md", out / "README.md"]


#: diagnostics panels of a learning-curve figure: (column prefix, column suffix, y label, log scale)
DIAGNOSTICS = [("v", "_spread", "voltage spread over the batch (V)", True),
               ("v", "_beyond", "nodes on or beyond a rail", False),
               ("grad", "", "‖∂loss/∂G_l‖", True)]
#: line style of layer l (1-based) in the diagnostics panels
LAYER_STYLES = ["-", "--", ":", "-.", (0, (1, 3)), (0, (5, 1))]


def learning_curves(histories: list[str | Path], out: str | Path | None = None, style: str = "paper") -> list[Path]:
    """Validation (solid) and train (dashed, during the epoch) error per epoch of ``drn train`` runs
    (``NET.history.csv``), one colour per run, written to ``out`` (``FIG.png`` or ``FIG.pdf``: both are written;
    default: ``learning_curve.png`` beside the first history).
    Histories with the training diagnostics (``cdsolver.train``) get three more panels beside it — each layer's
    voltage spread over the batch, its fraction of nodes on or beyond a rail, each crossbar's gradient norm — one
    line style per layer. The histories and ``out`` are checked before drawing (ValidationError). Returns the
    files."""
    plt = _pyplot()
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (one of {', '.join(STYLES)})")
    frames = []
    for h in map(Path, histories):
        if not h.is_file():
            raise ValidationError(f"history file not found: {h} (drn train writes NET.history.csv)")
        frames.append((h, _read_csv(h, "drn train history", HISTORY_COLUMNS, {})))
    given, out = out is not None, Path(out if out is not None else Path(histories[0]).parent / "learning_curve.png")
    check_out(out, option="--out" if given else "figure")
    if out.suffix not in (".png", ".pdf"):
        raise ValidationError(f"--out {out}: a learning-curve figure is FIG.png or FIG.pdf (both are written)")
    check_out(out.with_suffix(".pdf" if out.suffix == ".png" else ".png"), option="--out's")  # (both written)
    diag = all({"v1_spread", "grad1"} <= set(df.columns) for _, df in frames)
    with plt.rc_context(_rc(style)):
        w = STYLES[style]["row"]
        fig, axes = plt.subplots(2 if diag else 1, 2 if diag else 1, figsize=(w, w / (1.4 if diag else 2.4)),
                                 layout="constrained", squeeze=False)
        axes = axes.ravel()
        ax = axes[0]
        for i, (h, df) in enumerate(frames):
            c = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(df.epoch, 100 * df.val_error, "-", color=c, label=h.name.removesuffix(".history.csv"))
            ax.plot(df.epoch, 100 * df.train_error, "--", color=c, lw=0.8)
            for dax, (pre, suf, _, _) in zip(axes[1:] if diag else [], DIAGNOSTICS):
                l = 1
                while f"{pre}{l}{suf}" in df.columns:
                    dax.plot(df.epoch, df[f"{pre}{l}{suf}"], color=c, ls=LAYER_STYLES[(l - 1) % len(LAYER_STYLES)],
                             lw=0.9)
                    l += 1
        ax.set(xlabel="epoch", ylabel="error (%)")
        for dax, (_, _, label, log) in zip(axes[1:] if diag else [], DIAGNOSTICS):
            dax.set(xlabel="epoch", ylabel=label, yscale="log" if log else "linear")
        for a in axes:
            a.grid(alpha=0.3)
        from matplotlib.lines import Line2D

        handles = ax.get_legend_handles_labels()[0] + [
            Line2D([], [], color="0.25", ls="-", label="validation"),
            Line2D([], [], color="0.25", ls="--", lw=0.8, label="train (during the epoch)")]
        if diag:
            depth = max(int(m[1]) for _, df in frames for c in df.columns if (m := re.fullmatch(r"grad(\d+)", c)))
            handles += [Line2D([], [], color="0.5", ls=LAYER_STYLES[(l - 1) % len(LAYER_STYLES)], lw=0.9,
                               label=f"layer / crossbar {l}") for l in range(1, depth + 1)]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        written = _save(fig, out.parent, out.stem)
        plt.close(fig)
    return written
