"""drn plot on a synthetic study (no ngspice): widths as tick labels, sizes per style, embedded fonts, the
same colour per element and style per engine in every panel, and the provenance README."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.cli import main
from studies.compare import COLUMNS, summarize, write_csv
from studies.plot import ELEMENT_COLORS, ENGINE_STYLES, error_figure, runtime_figure, speedup_figure

PROV = {"study": "synthetic", "config_sha256": "0123456789abcdef", "git_commit": "abc1234", "numpy": "2",
        "machine": "x86_64 2 cores", "date": "2026-01-02 03:04:05", "eps_l1_V": "1e-12",
        "command": "drn compare synthetic.toml --out res"}


def _samples(depths=(1, 2), widths=(64, 256, 1024), n=5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [dict(depth=d, width=w, element=e, amplifier="none", seed=0, runner=r, sample=i,
                 rel_l1=10 ** rng.uniform(-16, -13), max_abs_V=1e-14, cd_sweeps=6, cd_converged=True,
                 cd_s=1e-4 * w / 64, spice_s=(0.01 if r == "batch" else 0.1) * (w / 64) ** 1.5 * d,
                 spice_iterations=10, spice_ok=i != 0 or r != "op", spice_fallback=False, spice_reason="")
            for d in depths for w in widths for e in ("shockley-double", "pwl") for r in ("batch", "op")
            for i in range(n)]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def study(tmp_path):
    df = _samples()
    write_csv(df, tmp_path / "samples.csv", PROV)
    write_csv(summarize(df), tmp_path / "summary.csv", PROV)
    return tmp_path


def _media_box_width_in(pdf: bytes) -> float:
    return float(re.search(rb"/MediaBox \[\s*0 0 ([\d.]+)", pdf).group(1)) / 72


def test_paper_figures_are_printable(study):
    assert main(["plot", str(study), "--style", "paper"]) == 0
    for name in ("runtime_vs_width", "speedup_vs_width", "error_cdf"):
        pdf = (study / f"{name}.pdf").read_bytes()
        assert _media_box_width_in(pdf) == pytest.approx(7.0)  # two panels (depths): a two-column figure
        assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType fonts embedded (pdf.fonttype 42)
        assert (study / f"{name}.png").stat().st_size > 1000
    readme = (study / "README.md").read_text()
    for v in PROV["command"], "abc1234", "2026-01-02 03:04:05", "x86_64 2 cores", "error_cdf.png":
        assert v in readme
    assert "rel_l1_p90" in (study / "summary.md").read_text()
    # the columns' link leads to docs/formats.md from wherever the study is (here a temporary folder)
    link = re.search(r"\[docs/formats.md\]\(([^)#]+)#study-csv-files\)", readme).group(1)
    assert (study / link).resolve() == (Path(__file__).parents[1] / "docs" / "formats.md").resolve()


def test_one_depth_is_one_column_and_screen_is_larger(tmp_path):
    df = _samples(depths=(1,), widths=(32, 128))
    write_csv(df, tmp_path / "samples.csv", PROV)
    write_csv(summarize(df), tmp_path / "summary.csv", PROV)
    assert main(["plot", str(tmp_path)]) == 0
    assert _media_box_width_in((tmp_path / "runtime_vs_width.pdf").read_bytes()) == pytest.approx(3.4)
    assert runtime_figure(summarize(df), "screen").get_size_inches()[0] > 3.4
    with pytest.raises(SystemExit) as e:
        main(["plot", str(tmp_path), "--style", "poster"])
    assert e.value.code == 2


def test_width_ticks_colours_and_engine_styles_agree_in_every_panel():
    df = _samples()
    summ = summarize(df)
    fig = runtime_figure(summ)
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "256", "1024"]
        assert list(ax.get_xticks()) == [64, 256, 1024]
        assert not ax.xaxis.get_minor_ticks()
        drawn = {(ln.get_color(), ln.get_marker(), ln.get_linestyle()) for ln in ax.get_lines()}
        expect = {(ELEMENT_COLORS[e], ENGINE_STYLES[g][0], {"-": "-", "--": "--", ":": ":"}[ENGINE_STYLES[g][1]])
                  for e in ("shockley-double", "pwl") for g in ("CD", "batch", "op")}
        assert drawn == expect
    fig = speedup_figure(summ)
    for ax, d in zip(fig.axes, (1, 2)):
        labels = sorted(float(t.get_text().replace(",", "")) for t in ax.texts)
        want = sorted(round(v) for v in summ[summ.depth == d].speedup_median)
        assert labels == want  # every point annotated with its value
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["64", "256", "1024"]
    fig = error_figure(df)
    for ax, d in zip(fig.axes, (1, 2)):
        assert ax.get_title() == f"{d} hidden layer{'s' if d > 1 else ''}"
        tops = sorted(ln.get_ydata()[-1] for ln in ax.get_lines() if len(ln.get_ydata()) > 2)
        assert tops[0] == pytest.approx(12 / 15) and tops[-1] == 1.0  # op failed 1 of 5 per width: missing


def test_without_samples_the_error_figure_shows_the_summary_quantiles(study, tmp_path):
    (study / "samples.csv").unlink()
    out = tmp_path / "elsewhere"
    assert main(["plot", str(study), "--out", str(out)]) == 0
    assert (out / "error_vs_width.pdf").is_file() and not (out / "error_cdf.pdf").exists()
    readme = (out / "README.md").read_text()
    assert "error_vs_width.png" in readme and f"`summary.csv` in `{study}`" in readme


def test_several_studies_merge_into_one_figure_set(study, tmp_path):
    """A folder that kept only cells/ (an unfinished or curated study) is summarised from its cell files."""
    wide = tmp_path / "wide"
    (wide / "cells").mkdir(parents=True)
    df = _samples(depths=(3,), widths=(2048,))
    write_csv(df, wide / "cells" / "d3_w2048_x.csv", PROV | {"study": "wide", "git_commit": "def5678"})
    out = tmp_path / "both"
    assert main(["plot", str(study), str(wide), "--out", str(out), "--style", "screen"]) == 0
    readme = (out / "README.md").read_text()
    assert "abc1234" in readme and "def5678" in readme and "error_cdf.png" in readme
    assert "| 3 | 2048 | pwl | none | op |" in (out / "summary.md").read_text()
    assert main(["plot", str(study), str(wide)]) == 2  # several folders need --out
