"""drn compare / drn plot on a tiny config: documented columns, P90 as documented, resume, fail-fast configs."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies.cli import main
from studies.compare import COLUMNS, ConfigError, cell_name, cells, load_config

TINY = """
[study]
name = "tiny"
samples = 6
runners = ["batch", "op"]
[grid]
depth = [1, 2]
width = [5]
element = ["shockley-double", "pwl"]
"""


@pytest.fixture
def tiny(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    return cfg, tmp_path / "res"


def test_compare_writes_documented_csvs_and_resumes(ngspice, tiny, capsys):
    cfg, out = tiny
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    df = pd.read_csv(out / "samples.csv", comment="#")
    assert list(df.columns) == COLUMNS and len(df) == 2 * 2 * 2 * 6  # depth x element x runner x samples
    assert df.spice_ok.all() and (df.rel_l1 <= 1e-12).all() and df.cd_converged.all()
    head = (out / "samples.csv").read_text().splitlines()[:11]
    assert {h.split(":")[0] for h in head} >= {"# git_commit", "# ngspice", "# config_sha256", "# numpy", "# machine"}
    summ = pd.read_csv(out / "summary.csv", comment="#")
    for _, row in summ.iterrows():
        g = df[(df.depth == row.depth) & (df.element == row.element) & (df.runner == row.runner)]
        assert row.rel_l1_p90 == pytest.approx(np.percentile(g.rel_l1, 90), rel=1e-12)
        assert row.speedup_median == pytest.approx(g.spice_s.median() / g.cd_s.mean())
    cells = sorted((out / "cells").glob("*.csv"))
    stamps = [c.stat().st_mtime_ns for c in cells]
    assert f"wrote {out}/summary.csv (per cell and runner), {out}/samples.csv" in capsys.readouterr().out
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    assert [c.stat().st_mtime_ns for c in cells] == stamps  # nothing recomputed
    assert capsys.readouterr().err.count("skip ") == len(cells) // 2 == 4  # 4 cells, 2 runner files each
    assert main(["plot", str(out)]) == 0
    for name in ("runtime_vs_width", "speedup_vs_width", "error_cdf"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.pdf").is_file()
    assert "rel_l1_p90" in (out / "summary.md").read_text()


def test_an_interrupted_cell_resumes_at_the_runner_it_was_in(ngspice, tmp_path, monkeypatch):
    import studies.compare as cmp

    cfg = tmp_path / "one.toml"
    cfg.write_text(TINY.replace("depth = [1, 2]", "depth = [1]").replace('"shockley-double", "pwl"', '"pwl"'))
    out, calls, real_run = tmp_path / "res", [], cmp.run

    def run_then_fail_at_op(net, v0, runner, **kw):
        calls.append(runner)
        if runner == "op" and len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the study while ngspice op runs
        return real_run(net, v0, runner=runner, **kw)

    monkeypatch.setattr(cmp, "run", run_then_fail_at_op)
    assert main(["compare", str(cfg), "--out", str(out)]) == 130
    assert [p.name.split("-")[0] + "." + p.name.split(".")[-2] for p in (out / "cells").glob("*.csv")] == [
        "d1_w5_pwl_none_s0.batch"]
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    assert calls == ["batch", "op", "op"]  # batch was not run again
    df = pd.read_csv(out / "samples.csv", comment="#")
    assert sorted(df.runner.unique()) == ["batch", "op"] and len(df) == 12 and df.spice_ok.all()


def test_parallel_cells_with_joblib_and_dask_give_the_same_rows(ngspice, tiny):
    """The same study with 2 cells at once (loky processes) and on a local Dask cluster (joblib's dask
    backend, as with a real cluster address): every cell written, the same samples, the same agreement."""
    from dask.distributed import LocalCluster

    cfg, out = tiny
    keys = ["depth", "element", "runner", "sample"]
    runs = {}
    runs["sequential"] = main(["compare", str(cfg), "--out", str(out / "seq")])
    runs["joblib"] = main(["compare", str(cfg), "--out", str(out / "par"), "--cell-jobs", "2"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        runs["dask"] = main(["compare", str(cfg), "--out", str(out / "dask"), "--dask", cluster.scheduler_address])
    assert runs == {"sequential": 0, "joblib": 0, "dask": 0}
    dfs = [pd.read_csv(out / d / "samples.csv", comment="#").sort_values(keys).reset_index(drop=True)
           for d in ("seq", "par", "dask")]
    for df in dfs[1:]:
        pd.testing.assert_frame_equal(df[keys], dfs[0][keys])
        assert df.spice_ok.all() and (df.rel_l1 <= 1e-12).all()
        np.testing.assert_allclose(df.rel_l1, dfs[0].rel_l1, rtol=0, atol=1e-14)
        assert len(list((out / "par" / "cells").glob("*.csv"))) == 8
    assert main(["compare", str(cfg), "--out", str(out / "x"), "--dask", "tcp://127.0.0.1:9"]) == 2


ONE = TINY.replace("samples = 6", "samples = 2").replace('["batch", "op"]', '["batch"]').replace(
    "depth = [1, 2]", "depth = [1]").replace('"shockley-double", "pwl"', '"pwl"')


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_another_study_is_refused_and_the_same_study_resumes(ngspice, tmp_path, capsys):
    """Another study's name into a study folder: one line naming both, the folder untouched; the same study with
    other settings (a documented re-run: other samples, another grid) makes new cells beside the old ones; a
    folder of cell files alone is resumed."""
    cfg, out = tmp_path / "one.toml", tmp_path / "res"
    cfg.write_text(ONE)
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    before = snapshot(out)
    other = tmp_path / "amp.toml"
    other.write_text(ONE.replace('name = "tiny"', 'name = "amp"') + 'amplifier = ["A4C1"]\n')
    capsys.readouterr()
    assert main(["compare", str(other), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"drn compare: error: --out {out} holds the study 'tiny', not 'amp': a " \
                                      f"re-run resumes only a study of the same name; give a new --out\n"
    assert snapshot(out) == before
    (out / "config.toml").write_text("[grid]\n")  # (a damaged config: refused, not overwritten)
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert "its config.toml is not a study config (no study.name)" in capsys.readouterr().err
    (out / "config.toml").write_text(ONE)
    other.write_text(ONE.replace("samples = 2", "samples = 3"))  # other settings: a new cell beside the old one
    assert main(["compare", str(other), "--out", str(out)]) == 0
    assert len(list((out / "cells").glob("*.csv"))) == 2 and (out / "config.toml").read_text() == other.read_text()
    assert len(pd.read_csv(out / "samples.csv", comment="#")) == 3
    other.write_text(ONE.replace("width = [5]", "width = [5, 6]"))  # a larger grid: its new cell beside the others
    assert main(["compare", str(other), "--out", str(out)]) == 0
    assert len(list((out / "cells").glob("*.csv"))) == 3
    curated = tmp_path / "curated"  # a folder of cell files alone (as results/ keeps some) resumes
    shutil.copytree(out / "cells", curated / "cells")
    capsys.readouterr()
    assert main(["compare", str(cfg), "--out", str(curated)]) == 0
    assert capsys.readouterr().err.count("skip ") == 1


def test_a_folder_that_is_not_a_study_is_refused_untouched(tmp_path, capsys):
    """A folder with files drn compare would replace but no study config.toml is refused before anything is
    written in it."""
    cfg, out = tmp_path / "one.toml", tmp_path / "mine"
    cfg.write_text(ONE)
    out.mkdir()
    (out / "summary.csv").write_text("my own summary\n")
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"drn compare: error: --out {out} is not a drn compare results folder (no "
                                       f"config.toml file) but holds summary.csv, which drn compare would replace: "
                                       f"give a new --out\n")
    (out / "config.toml").write_text("[model]\nhidden = 3\n")
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert "its config.toml is not a study config" in capsys.readouterr().err
    assert snapshot(out) == {Path("summary.csv"): b"my own summary\n", Path("config.toml"): b"[model]\nhidden = 3\n"}
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "summary.csv"]  # no .lock, no cells/


@pytest.mark.parametrize("change, msg", [
    (lambda t: t + "\n[extra]\nx = 1\n", r"unknown section \[extra\]"),
    (lambda t: t.replace("samples = 6", "samples = 6\nsample_count = 3"), "unknown key study.sample_count"),
    (lambda t: t.replace('["batch", "op"]', '["batch", "xyce"]'), "study.runners must be"),
    (lambda t: t.replace('"pwl"]', '"zener"]'), r"grid.element has invalid values \['zener'\]"),
    (lambda t: t.replace("width = [5]", "width = [0]"), r"grid.width has invalid values \[0\]"),
    (lambda t: t.replace("samples = 6", "samples = 'six'"), "study.samples must be int"),
    (lambda t: t.replace("depth = [1, 2]\n", ""), "grid.depth is required"),
    (lambda t: t + "amplifier = ['A4']\n", "grid.amplifier: 'A4' is not"),
    (lambda t: t.replace("[grid]", "[grid"), "not valid TOML"),
])
def test_bad_config_fails_before_any_work(tiny, change, msg, capsys):
    cfg, out = tiny
    cfg.write_text(change(TINY))
    with pytest.raises(ConfigError, match=msg):
        load_config(cfg)
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert not out.exists()
    assert "drn compare: error:" in capsys.readouterr().err


STUDY_CONFIGS = [p for p in sorted((Path(__file__).parents[1] / "studies" / "configs").glob("*.toml"))
                 if "[study]" in p.read_text()]  # the others are drn train configs (test_ep)


@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_study_config_is_valid(path):
    """Each study config in studies/configs loads, is named after its file, and its cells can be named."""
    cfg = load_config(path)
    assert cfg["study"]["name"] == path.stem
    assert [cell_name(c) for c in cells(cfg)]
