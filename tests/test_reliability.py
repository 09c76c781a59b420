"""Reliability and data integrity (docs/reliability.md): what a hostile but fair user tried, one test each —
fake ngspice binaries on PATH, damaged files, interrupted runs. Each test failed before its fix."""

import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cdsolver import random_network, save_network, solve
from spice_bridge.runners import run
from studies.cli import main

#: `python PATCH RAW WHAT` damages an ngspice raw file in place: "nan" puts NaN in every v(n1_0) value,
#: "no-nvar" drops the "No. Variables" line, "zero-nvar" declares 0 variables, "cut" sets "No. Points: 0" (a run
#: killed while it wrote)
PATCH = r'''
import re, sys
path, what = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
i = data.index(b"Binary:\n") + len(b"Binary:\n")
head, body = data[:i].decode(), bytearray(data[i:])
if what == "nan":
    names = re.findall(r"^\s+\d+\s+(\S+)", head.split("\nVariables:", 1)[1], flags=re.M)
    k, n = names.index("v(n1_0)"), len(names)
    for row in range(len(body) // (8 * n)):
        body[8 * (row * n + k):8 * (row * n + k + 1)] = bytes.fromhex("000000000000f87f")
elif what == "no-nvar":
    head = re.sub(r"No\. Variables:.*\n", "", head)
elif what == "zero-nvar":
    head = re.sub(r"No\. Variables:.*\n", "No. Variables: 0\n", head)
elif what == "cut":
    head = re.sub(r"No\. Points:.*\n", "No. Points: 0\n", head)
open(path, "wb").write(head.encode() + bytes(body))
'''


def small(batch=5, seed=0):
    net = random_network([6, 5, 3], "shockley", seed=seed, input_gain=3.0, g_mean=1.0, bias=0.1)
    return net, net.encode(np.random.default_rng(seed).uniform(0, 1, (batch, 3)))


def rel_l1(a, b):
    a, b = np.concatenate(a, axis=1), np.concatenate(b, axis=1)
    return (np.abs(a - b).sum(axis=1) / np.abs(b).sum(axis=1)).max()


@pytest.fixture
def wrap_ngspice(fake_ngspice, tmp_path):
    """A fake ngspice that runs the real one, then `after` (shell, may use $3 = raw file, $4 = deck, $PATCH)."""
    real = shutil.which("ngspice")
    patch = tmp_path / "patch.py"
    patch.write_text(PATCH)

    def make(after, before=""):
        fake_ngspice(f'PATCH="{sys.executable} {patch}"\n{before}\n{real} "$@"; rc=$?\n{after}\nexit $rc')
    return make


# ---- 2: the shared runner reads ngspice's result, not PySpice's exception
def test_shared_runner_keeps_operating_points_found_by_gmin_stepping(ngspice):
    """ngspice needs gmin stepping on 3 of these 5 samples; its notes on stderr made PySpice raise."""
    net = random_network([8, 6, 4], "shockley", seed=0, input_gain=40.0)
    v0 = net.encode(np.random.default_rng(0).uniform(0, 1, (5, 4)))
    res = run(net, v0, runner="shared")
    assert res.ok.all(), res.reason
    assert rel_l1(res.states, solve(net, v0, tol=1e-14).check().states) <= 1e-12


# ---- 4: a NaN from ngspice is a failure with a reason
@pytest.mark.parametrize("runner", ["op", "batch"])
def test_nan_in_ngspice_result_is_a_failure(ngspice, wrap_ngspice, runner):
    wrap_ngspice('case "$4" in sample1.cir|batch*) $PATCH "$3" nan;; esac')
    net, v0 = small(3)
    res = run(net, v0, runner=runner)
    assert res.ok.tolist() == [True, False, True]
    assert "nan V at node n1_0 (non-finite" in res.reason[1]
    assert np.isnan(res.states[0][1]).all() and np.isfinite(res.states[0][[0, 2]]).all()
    assert res.fallback.tolist() == [runner == "batch"] * 3  # batch: NaN at every swept point, all go to op


# ---- 5: one bad ngspice output loses nothing else
def test_one_unreadable_deck_loses_only_its_sample(ngspice, wrap_ngspice, tmp_path, capsys):
    wrap_ngspice("", before='[ "$4" = sample1.cir ] && { echo "Error on line 3 or its substitute:"; exit 1; }')
    net, v0 = small(3)
    save_network(net, tmp_path / "net.npz")
    np.save(tmp_path / "v0.npy", v0)
    out = tmp_path / "s.npz"
    assert main(["spice", str(tmp_path / "net.npz"), str(tmp_path / "v0.npy"), "--encoded", "--runner", "op",
                 "--out", str(out)]) == 3
    assert "could not read deck" in capsys.readouterr().err
    with np.load(out) as f:
        assert f["converged"].tolist() == [True, False, True] and np.isfinite(f["v1"][[0, 2]]).all()
        assert re.search(r"could not read deck .*sample1.cir: Error on line 3", str(f["reason"][1]))


@pytest.mark.parametrize("damage, msg", [("no-nvar", "without 'No. Variables'"),
                                         ("zero-nvar", "declares 0 variables")])
def test_bad_raw_header_is_a_reason_not_a_traceback(ngspice, wrap_ngspice, damage, msg):
    wrap_ngspice(f'[ "$4" = sample0.cir ] && $PATCH "$3" {damage}')
    net, v0 = small(2)
    res = run(net, v0, runner="op")
    assert res.ok.tolist() == [False, True]
    assert "unreadable raw file" in res.reason[0] and msg in res.reason[0]


def test_ctrl_c_keeps_the_finished_samples(ngspice, tmp_path, monkeypatch, capsys):
    import spice_bridge.runners as runners

    real, calls = runners._op_one, []

    def op_then_ctrl_c(workdir, b, src, timeout):
        calls.append(b)
        if b == 2:
            raise KeyboardInterrupt
        return real(workdir, b, src, timeout)

    monkeypatch.setattr(runners, "_op_one", op_then_ctrl_c)
    net, v0 = small(4)
    save_network(net, tmp_path / "net.npz")
    np.save(tmp_path / "v0.npy", v0)
    assert main(["spice", str(tmp_path / "net.npz"), str(tmp_path / "v0.npy"), "--encoded", "--runner", "op",
                 "--out", str(tmp_path / "s.npz")]) == 130
    assert "interrupted" in capsys.readouterr().err
    with np.load(tmp_path / "s.npz") as f:
        assert f["converged"].tolist() == [True, True, False, False]
        assert str(f["reason"][3]).startswith("interrupted")


# ---- 12: time limits sized to the network; a failed point's time stays out of its neighbours' clocks
def test_default_timeout_grows_with_the_network():
    from spice_bridge.runners import default_timeout

    small_net = random_network([128, 32, 10], "shockley")
    big = random_network([128, 1024, 1024, 10], "shockley")
    amp = random_network([128, 1024, 1024, 10], "shockley", amplifier=(4.0, 1.0))
    assert default_timeout(small_net) == 10.0  # the floor
    assert 1000 < default_timeout(big) < default_timeout(amp) == 2 * default_timeout(big)


def test_failed_sweep_point_keeps_its_time_to_itself(ngspice, wrap_ngspice, tmp_path):
    """The first sweep spends 3 s and stops after 2 of 5 points (the failing point's stepping): points 0 and 1
    get the clock of a clean sweep of their own, point 2 the 3 s, then its op fallback."""
    wrap_ngspice("", before='[ "$4" = batch0_0_5.cir ] && { sleep 3; sed -i "s/^.dc Vsw 0 4 1$/.dc Vsw 0 1 1/" "$4"; }')
    net, v0 = small(5)
    res = run(net, v0, runner="batch", workdir=tmp_path / "wd")
    assert res.ok.all() and res.fallback.tolist() == [False, False, True, False, False]
    assert res.wall[2] >= 3.0 and max(res.wall[[0, 1, 3, 4]]) < 1.0, res.wall
    assert rel_l1(res.states, solve(net, v0, tol=1e-14).check().states) <= 1e-12


def test_sweep_killed_at_its_time_limit_keeps_the_points_it_finished(ngspice, wrap_ngspice, tmp_path):
    """The first sweep writes 2 points and hangs: killed at its limit (2 s × (1 + 5/20)), its 2 points are kept
    (clocks from a clean sweep of them); which later point hung it is unknown, so points 2-4 go to op one by
    one; sample 3's op fails too, so the killed sweep's time is charged to it, not to its neighbours."""
    wrap_ngspice('[ "$4" = batch0_0_5.cir ] && { $PATCH "$3" cut; exec sleep 60; }',
                 before='[ "$4" = batch0_0_5.cir ] && sed -i "s/^.dc Vsw 0 4 1$/.dc Vsw 0 1 1/" "$4"\n'
                        '[ "$4" = sample3.cir ] && { echo "Error: no convergence in DC operating point"; exit 1; }')
    net, v0 = small(5)
    t = time.perf_counter()
    res = run(net, v0, runner="batch", timeout=2.0, workdir=tmp_path / "wd")
    assert time.perf_counter() - t < 15
    assert res.ok.tolist() == [True, True, True, False, True], res.reason
    assert "no convergence" in res.reason[3]
    assert res.fallback.tolist() == [False, False, True, True, True]
    assert 2.0 <= res.wall[3] < 5 and max(res.wall[[0, 1, 2, 4]]) < 1.0, res.wall
    ok = res.ok
    cd = solve(net, v0, tol=1e-14).check()
    assert rel_l1([s[ok] for s in res.states], [s[ok] for s in cd.states]) <= 1e-12

# ---- 1: a resumed study never mixes runs of different settings
ONE_CELL = """
[study]
name = "one"
samples = 6
runners = ["batch", "op"]
[grid]
depth = [1]
width = [5]
element = ["pwl"]
"""


def test_resume_with_other_settings_never_mixes_runs(ngspice, tmp_path, monkeypatch):
    """--max-samples 3, then an interrupted --max-samples 5 (batch done, op not), then 5 again, then the config's
    own 6: every run's samples.csv holds only rows made with its settings, each runner all of them."""
    import pandas as pd

    import studies.compare as cmp

    cfg, out = tmp_path / "one.toml", tmp_path / "res"
    cfg.write_text(ONE_CELL)
    real_run = cmp.run

    def rows():
        df = pd.read_csv(out / "samples.csv", comment="#")
        return {r: sorted(g["sample"]) for r, g in df.groupby("runner")}, set(df.cell_id)

    assert main(["compare", str(cfg), "--out", str(out), "--max-samples", "3"]) == 0
    assert rows()[0] == {"batch": [0, 1, 2], "op": [0, 1, 2]}

    def stop_at_op(net, v0, runner, **kw):
        if runner == "op":
            raise KeyboardInterrupt
        return real_run(net, v0, runner=runner, **kw)

    monkeypatch.setattr(cmp, "run", stop_at_op)
    assert main(["compare", str(cfg), "--out", str(out), "--max-samples", "5"]) == 130
    monkeypatch.setattr(cmp, "run", real_run)
    assert main(["compare", str(cfg), "--out", str(out), "--max-samples", "5"]) == 0
    five, ids5 = rows()
    assert five == {"batch": list(range(5)), "op": list(range(5))} and len(ids5) == 1
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    six, ids6 = rows()
    assert six == {"batch": list(range(6)), "op": list(range(6))} and ids6.isdisjoint(ids5)
    prov = pd.read_csv(out / "provenance.csv", comment="#")
    assert sorted(prov.runner) == ["batch", "op"] and set(prov.cell_id) == ids6
    assert all('"samples": 6' in s for s in prov.settings)
    assert len(list((out / "cells").glob("*.csv"))) == 3 * 2  # 3, 5 and 6 samples: 3 cell ids x 2 runners


def test_changed_training_settings_make_a_new_network(tmp_path):
    import studies.compare as cmp

    cfg = tmp_path / "one.toml"
    cfg.write_text(ONE_CELL + "[train]\nepochs = 0\n")
    c = cmp.cells(cmp.load_config(cfg))[0]
    a = cmp.cell_id(cmp.load_config(cfg), c)
    cfg.write_text(ONE_CELL + "[train]\nepochs = 1\n")
    b = cmp.cell_id(cmp.load_config(cfg), c)
    assert a != b and a.split("-")[0] == b.split("-")[0] == "d1_w5_pwl_none_s0"


# ---- 6, 7, 8: a study config and its overrides are checked before OUT exists
@pytest.mark.parametrize("change, msg", [
    (lambda t: t.replace('name = "one"', 'name = "../../elsewhere"'), "study.name must be"),
    (lambda t: t.replace('name = "one"', 'name = "/tmp/abs"'), "study.name must be"),
    (lambda t: t.replace('name = "one"', 'name = "a\\nb"'), "study.name must be"),
    (lambda t: t.replace("samples = 6", "samples = 6\ntimeout = -1.0"),
     "study.timeout: expected seconds in (0, 86400]"),
    (lambda t: t.replace("samples = 6", "samples = 6\ntimeout = nan"), "study.timeout: expected seconds in (0, 86400]"),
    (lambda t: t.replace("samples = 6", "samples = 6\ncd_tol = inf"), "study.cd_tol must be a finite number > 0"),
    (lambda t: t.replace("samples = 6", "samples = 6\njobs = 1000"), "study.jobs must be 1.."),
    (lambda t: t + "[train]\nepochs = 1\nbatch_size = 0\n", "train.batch_size >= 1"),
    # the same grid value, seed or runner twice: each cell's rows were in samples.csv twice (summary: 12 samples of 6)
    (lambda t: t.replace("width = [5]", "width = [5, 5]"), "grid.width lists 5 more than once"),
    (lambda t: t.replace("samples = 6", "samples = 6\nseeds = [0, 0]"), "study.seeds lists 0 more than once"),
    (lambda t: t.replace('["batch", "op"]', '["op", "op"]'), "study.runners lists 'op' more than once"),
    (lambda t: t + 'amplifier = ["none", "none"]\n', "grid.amplifier lists 'none' more than once"),
    (lambda t: t.replace("depth = [1]", "depth = [true]"), "grid.depth has invalid values [True]"),  # (was 1)
    (lambda t: t + "[train]\nepochs = 1\nbatch_size = 2000\n", "train.batch_size must be <= the 1077 training"),
])
def test_bad_study_settings_fail_before_any_work(tmp_path, capsys, change, msg):
    cfg, out = tmp_path / "one.toml", tmp_path / "res"
    cfg.write_text(change(ONE_CELL))
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert msg in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("args, msg", [(["--max-samples", "0"], "--max-samples must be >= 1"),
                                       (["--max-samples", "-1"], "--max-samples must be >= 1"),
                                       (["--jobs", "1000"], "--jobs must be 1.."),
                                       (["--cell-jobs", "0"], "--cell-jobs must be 1..")])
def test_bad_compare_options_fail_before_any_work(tmp_path, capsys, args, msg):
    cfg, out = tmp_path / "one.toml", tmp_path / "res"
    cfg.write_text(ONE_CELL)
    assert main(["compare", str(cfg), "--out", str(out), *args]) == 2
    assert msg in capsys.readouterr().err and not out.exists()


def test_spice_jobs_are_bounded(problem, capsys):
    d, files = problem
    assert main(["spice", *files, "--jobs", "1000", "--out", str(d / "s.npz")]) == 2
    assert "--jobs must be 1.." in capsys.readouterr().err and not (d / "s.npz").exists()


def test_compare_out_a_file_is_one_line(tmp_path, capsys):
    cfg, out = tmp_path / "one.toml", tmp_path / "file"
    cfg.write_text(ONE_CELL)
    out.write_text("x")
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["compare", str(cfg), "--out", str(out / "under")]) == 2
    assert "file is not a folder" in capsys.readouterr().err


def test_a_full_disk_during_a_study_is_one_line_and_keeps_finished_runners(ngspice, tmp_path, capsys, monkeypatch):
    import errno

    import studies.compare as cmp

    cfg, out = tmp_path / "one.toml", tmp_path / "res"
    cfg.write_text(ONE_CELL.replace("samples = 6", "samples = 2"))
    real, calls = cmp.write_csv, []

    def full_at_second(df, path, prov):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(df, path, prov)

    monkeypatch.setattr(cmp, "write_csv", full_at_second)
    assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert [p.name.rsplit(".", 2)[1] for p in (out / "cells").glob("*.csv")] == ["batch"]
    monkeypatch.setattr(cmp, "write_csv", real)
    assert main(["compare", str(cfg), "--out", str(out)]) == 0


# ---- 9: writes
def test_a_second_compare_on_the_same_folder_stops(tmp_path, capsys):
    import fcntl

    cfg, out = tmp_path / "one.toml", tmp_path / "res"
    cfg.write_text(ONE_CELL)
    out.mkdir()
    with open(out / ".lock", "w") as f:  # another drn compare holds the study folder
        f.write("pid 1 on elsewhere")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)
        assert main(["compare", str(cfg), "--out", str(out)]) == 2
    assert "in use by another drn compare (pid 1 on elsewhere)" in capsys.readouterr().err
    assert not (out / "cells").exists() or not any((out / "cells").iterdir())


def test_two_writers_of_one_file_never_mix(tmp_path):
    """Two writers interleaved on one path (the old fixed `.tmp` name made them share a temporary file): the
    result is one writer's whole content, and no temporary file is left."""
    from cdsolver.files import atomic_write

    path = tmp_path / "cells.csv"
    with atomic_write(path, "w") as a, atomic_write(path, "w") as b:
        a.write("first writer, " * 1000)
        b.write("second writer")
        a.write("end")
    assert path.read_text() == "first writer, " * 1000 + "end"
    assert [p.name for p in tmp_path.iterdir()] == ["cells.csv"]


def test_truncated_network_cache_is_rebuilt(tmp_path, capsys):
    import studies.compare as cmp
    from cdsolver import load_network

    cfg_path = tmp_path / "one.toml"
    cfg_path.write_text(ONE_CELL)
    cfg = cmp.load_config(cfg_path)
    c = cmp.cells(cfg)[0]
    net = cmp.network_for(cfg, c, tmp_path)
    cache = next((tmp_path / "networks").glob("*.npz"))
    cache.write_bytes(cache.read_bytes()[:100])  # a full disk cut it short
    again = cmp.network_for(cfg, c, tmp_path)
    assert "rebuilding" in capsys.readouterr().err
    np.testing.assert_array_equal(again.G[0], net.G[0])
    np.testing.assert_array_equal(load_network(cache).G[0], net.G[0])


# ---- 3: a network file missing a crossbar does not load as a smaller network
@pytest.mark.parametrize("drop, msg", [("G2", "missing array 'G2'"), ("b3", "missing array 'b3'"),
                                       ("lo1", "missing array 'lo1'"), ("hi2", "missing array 'hi2'")])
def test_a_network_file_with_a_hole_is_refused(tmp_path, drop, msg):
    from cdsolver import load_network
    from cdsolver.network import NetworkFormatError

    save_network(random_network([6, 5, 4, 3], "shockley", seed=0), tmp_path / "n.npz")
    with np.load(tmp_path / "n.npz") as f:
        arrays = {k: f[k] for k in f.files if k != drop}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(NetworkFormatError, match=msg):
        load_network(tmp_path / "bad.npz")


def test_an_array_beyond_the_last_crossbar_is_refused(tmp_path):
    from cdsolver import load_network
    from cdsolver.network import NetworkFormatError

    save_network(random_network([6, 5, 3], "shockley", seed=0), tmp_path / "n.npz")
    with np.load(tmp_path / "n.npz") as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(tmp_path / "bad.npz", **arrays, lo2=np.zeros(3))
    with pytest.raises(NetworkFormatError, match="'lo2' does not belong to a network with G1..G2"):
        load_network(tmp_path / "bad.npz")


# ---- 4, 6: damaged checkpoints are a clear error
def _checkpoint(tmp_path):
    from cdsolver.train import TrainConfig, TrainState, save_checkpoint

    net = random_network([8, 5, 3], "shockley", seed=0)
    cfg = TrainConfig(average=0.9)
    save_checkpoint(tmp_path / "c.npz", net, TrainState.start(net, 4, cfg), {"note": 1})
    with np.load(tmp_path / "c.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("damage, msg", [
    (lambda a, m: a["ckpt_average0"].__setitem__((0, 0), np.nan), "ckpt_average0 hold NaN or inf"),
    (lambda a, m: m["checkpoint"].pop("rng"), "meta.checkpoint.rng must be an object, got 'missing'"),
    (lambda a, m: m["checkpoint"].pop("run"), "meta.checkpoint.run must be an object"),
    (lambda a, m: m["checkpoint"].__setitem__("epoch", "3"), "meta.checkpoint.epoch must be an integer, got '3'"),
    (lambda a, m: m["checkpoint"].__setitem__("history", {"a": 1}), "meta.checkpoint.history must be a list"),
    (lambda a, m: m["checkpoint"]["rng"].__setitem__("state", 5), "meta.checkpoint.rng is not a NumPy generator"),
])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage, msg):
    import json

    from cdsolver.network import NetworkFormatError
    from cdsolver.train import load_checkpoint

    arrays = _checkpoint(tmp_path)
    meta = json.loads(str(arrays["meta"]))
    damage(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(NetworkFormatError, match=re.escape(msg)):
        load_checkpoint(tmp_path / "bad.npz")


def test_resume_from_a_nan_checkpoint_exits_2(tmp_path, capsys):
    out = tmp_path / "n.npz"
    base = ["train", "--hidden", "8", "--batch-size", "200", "--out", str(out)]
    assert main(base + ["--epochs", "1"]) == 0
    ckpt = tmp_path / "n.ckpt.npz"
    with np.load(ckpt) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["ckpt_slot0"][0, 0] = np.nan
    np.savez(ckpt, **arrays)
    capsys.readouterr()
    assert main(base + ["--epochs", "2", "--resume"]) == 2
    assert "ckpt_slot0 hold NaN or inf" in capsys.readouterr().err


# ---- 6, 7: values that were accepted silently or ended in a traceback
@pytest.mark.parametrize("args, msg", [
    (["--batch-size", "0"], "--batch-size >= 1 is required"),
    (["--batch-size", "-5"], "--batch-size >= 1 is required"),
    (["--hidden", "0"], "--hidden must be sizes >= 1"),
    (["--tol", "inf"], "--tol must be a finite number > 0"),
    (["--g-min", "5", "--g-max", "1"], "--g-min and --g-max must be 0 <= g_min < g_max"),
    (["--beta", "nan"], "--beta must be a finite number > 0"),
    (["--element", "linear", "--rails", "split"], "--rails: linear nodes have no rails"),
    (["--element", "pwl", "--rails", "both"], "--rails: pwl nodes have no rails"),
    # batches of 1077 printed as "batch 5000", Adam's default rate 0.25 for 5000 (0.116 for a batch of all 1077)
    (["--batch-size", "5000"], "--batch-size must be <= the 1077 training samples (one batch of all of them: 1077)"),
])
def test_bad_training_options_exit_2(tmp_path, capsys, args, msg):
    assert main(["train", *args, "--out", str(tmp_path / "n.npz")]) == 2
    assert msg in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_invert_needs_an_amplifier_and_checkpoints_still_resume(tmp_path, capsys):
    """``--invert`` without ``--amplifier`` is refused (it was ignored); checkpoints record the resolved value, so
    one made before ``--invert`` existed, or with its default, resumes with or without the option."""
    import json

    assert main(["train", "--invert", "none", "--epochs", "0", "--out", str(tmp_path / "a.npz")]) == 2
    assert "--invert applies to amplifiers: give --amplifier A C too" in capsys.readouterr().err
    for name, amp in (("p", []), ("q", ["--amplifier", "4", "1"])):
        base = ["train", "--hidden", "8", *amp, "--out", str(tmp_path / f"{name}.npz")]
        assert main(base + ["--epochs", "1"]) == 0
        ckpt = tmp_path / f"{name}.ckpt.npz"
        with np.load(ckpt) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays["meta"]))
        assert meta["checkpoint"]["run"].pop("invert") == "half"
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(ckpt, **arrays)
        assert main(base + ["--epochs", "2", "--resume"]) == 0
    assert main(base + ["--invert", "half", "--epochs", "3", "--resume"]) == 0


def test_rails_with_resume_and_init(tmp_path, capsys):
    """``--rails`` where it cannot apply: a pwl checkpoint that recorded it (before the refusal) still resumes with
    its own options; ``--init`` refuses a ``--rails`` the network does not have (its rails are kept)."""
    import json

    base = ["train", "--element", "pwl", "--hidden", "8", "--out", str(tmp_path / "p.npz")]
    assert main(base + ["--epochs", "1"]) == 0
    ckpt = tmp_path / "p.ckpt.npz"
    with np.load(ckpt) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta["checkpoint"]["run"]["rails"] = "both"
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(ckpt, **arrays)
    assert main(base + ["--rails", "both", "--epochs", "2", "--resume"]) == 0
    save_network(random_network([128, 8, 10], "ideal", rails="split"), tmp_path / "i.npz")
    args = ["train", "--element", "ideal", "--hidden", "8", "--epochs", "0", "--init", str(tmp_path / "i.npz")]
    capsys.readouterr()
    assert main(args + ["--rails", "both", "--out", str(tmp_path / "o.npz")]) == 2
    assert "the network's rails are not --rails both" in capsys.readouterr().err
    assert main(args + ["--rails", "split", "--out", str(tmp_path / "o2.npz")]) == 0


@pytest.mark.parametrize("meta_change, msg", [
    (lambda m: m["element"].__setitem__("kind", ["shockley"]), "meta.element.kind must be one of"),
    (lambda m: m["element"].__setitem__("Vd", 1e-300), "Vd must be a finite voltage >= 1e-12 V"),
    (lambda m: m.__setitem__("amplifier", {"A": True, "C": 1.0}), "meta.amplifier.A must be a number in (0, 1e+06]"),
    (lambda m: m.__setitem__("input_gain", True), "meta.input_gain must be a finite number"),
])
def test_bad_meta_values_exit_2(tmp_path, capsys, meta_change, msg):
    import json

    save_network(random_network([8, 5, 3], "shockley", seed=0), tmp_path / "n.npz")
    with np.load(tmp_path / "n.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta_change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "n.npz", **arrays)
    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    assert main(["solve", str(tmp_path / "n.npz"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "s.npz")]) == 2
    assert msg in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [complex, bool])
def test_complex_or_boolean_arrays_are_refused(tmp_path, dtype):
    from cdsolver import load_network
    from cdsolver.network import NetworkFormatError

    save_network(random_network([8, 5, 3], "shockley", seed=0), tmp_path / "n.npz")
    with np.load(tmp_path / "n.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["G1"] = arrays["G1"].astype(dtype)
    np.savez(tmp_path / "n.npz", **arrays)
    with pytest.raises(NetworkFormatError, match="G1: expected real numbers"):
        load_network(tmp_path / "n.npz")


# ---- 8: a config file sets options, never more words of a command line
def test_train_config_lists_cannot_smuggle_options(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text('hidden = [8, "--dataset", "mnist", "--data-dir", "ELSEWHERE"]\n')
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "n.npz")]) == 2
    assert "hidden must be a number, a string or a list of numbers" in capsys.readouterr().err
    cfg.write_text('data_dir = "--epochs=0"\nhidden = [8]\nepochs = 0\n')  # a string is one value: --data-dir's
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "n.npz")]) == 2  # (refused with digits)
    assert "--data-dir: --dataset digits ships with scikit-learn" in capsys.readouterr().err


def test_train_config_with_equals_sign_is_read(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text("hidden = [0]\n")
    assert main(["train", f"--config={cfg}", "--out", str(tmp_path / "n.npz")]) == 2
    assert "--hidden must be sizes >= 1" in capsys.readouterr().err


def test_train_config_abbreviated_or_given_twice_is_never_ignored(tmp_path, capsys):
    bad, good = tmp_path / "bad.toml", tmp_path / "good.toml"
    bad.write_text("seed = -1\n")
    good.write_text("hidden = [2]\n")
    run = ["train", "--epochs", "0", "--hidden", "2", "--out", str(tmp_path / "n.npz")]
    for flag in ("--conf", "--c"):  # argparse's abbreviations of --config: read, not silently dropped
        assert main([*run, flag, str(bad)]) == 2
        assert "--seed >= 0 is required" in capsys.readouterr().err
        assert main([*run, f"{flag}={bad}"]) == 2
        assert "--seed >= 0 is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # (a usage error: argparse's exit)
        main([*run, "--config", str(good), "--config", str(bad)])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"drn train: error: --config given twice ({good}, {bad}): give one (see drn "
                                       f"train --help)\n")
    assert not (tmp_path / "n.npz").exists()


def test_plot_of_a_folder_of_cells_alone_never_pools_two_runs_of_a_cell(tmp_path, capsys):
    """A study folder without summary.csv (a run that crashed or was interrupted) whose cells/ holds one cell of
    two runs with other settings (--max-samples 1, then 3): drn plot summarised them as one cell of 4 samples."""
    import pandas as pd

    from studies.compare import COLUMNS, write_csv

    res = tmp_path / "res"
    (res / "cells").mkdir(parents=True)
    for digest, n in (("1b6397ae", 1), ("5acb6b18", 3)):
        cid = f"d1_w4_shockley-double_none_s0-{digest}"
        rows = [dict(depth=1, width=4, element="shockley-double", amplifier="none", seed=0, runner="batch", sample=i,
                     rel_l1=1e-15, max_abs_V=1e-15, cd_sweeps=7, cd_converged=True, cd_s=1e-4, spice_s=1e-3,
                     spice_iterations=3, spice_ok=True, spice_fallback=False, spice_reason="", cell_id=cid)
                for i in range(n)]
        write_csv(pd.DataFrame(rows, columns=COLUMNS), res / "cells" / f"{cid}.batch.csv", {"study": "one"})
    assert main(["plot", str(res)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"drn plot: error: {res}: no summary.csv, and cells/ holds runs of other settings of one "
                          f"cell (d1_w4_shockley-double_none_s0-1b6397ae, d1_w4_shockley-double_none_s0-5acb6b18)")
    assert not (res / "summary.md").exists()
    (res / "cells" / "d1_w4_shockley-double_none_s0-1b6397ae.batch.csv").unlink()  # one run: summarised
    assert main(["plot", str(res)]) == 0
    assert "| 1 | 4 | shockley-double | none | batch | 3 |" in (res / "summary.md").read_text()


# ---- 10: internal errors are not user errors
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    import cdsolver.solver

    def broken(*a, **k):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cdsolver.solver, "solve", broken)
    save_network(random_network([8, 5, 3], "shockley", seed=0), tmp_path / "n.npz")
    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    with pytest.raises(ValueError, match="an internal bug"):
        main(["solve", str(tmp_path / "n.npz"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "s.npz")])


def test_validation_errors_share_one_base():
    from cdsolver.datasets import DatasetError
    from cdsolver.network import NetworkFormatError
    from cdsolver.validation import ValidationError
    from studies.cli import CliError
    from studies.compare import ConfigError

    assert all(issubclass(e, ValidationError) for e in (DatasetError, NetworkFormatError, CliError, ConfigError))


# ---- 6: --out problems are one line, found before the work; a failed final write loses nothing
@pytest.fixture
def problem(tmp_path):
    save_network(random_network([8, 5, 3], "shockley", seed=0, input_gain=3.0), tmp_path / "n.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(0, 1, (3, 4)))
    return tmp_path, [str(tmp_path / "n.npz"), str(tmp_path / "x.npy")]


@pytest.mark.parametrize("command", ["solve", "spice", "netlist", "train"])
def test_out_that_cannot_be_written_is_one_line(problem, capsys, command):
    d, files = problem
    (d / "afile").write_text("x")
    (d / "adir").mkdir()
    args = [command] + ([] if command == "train" else files)
    cases = [str(d / "afile" / "under.npz")] + ([str(d / "afile")] if command == "netlist" else [str(d / "adir")])
    for out in cases:
        assert main(args + ["--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out" in err, err


def test_a_failed_final_write_keeps_the_results(problem, capsys, monkeypatch):
    import errno

    from cdsolver.solver import Solution

    d, files = problem
    real = Solution.save

    def disk_full(self, path):
        if str(path) == str(d / "s.npz"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, path)

    monkeypatch.setattr(Solution, "save", disk_full)
    assert main(["solve", *files, "--out", str(d / "s.npz")]) == 2
    err = capsys.readouterr().err
    rescued = re.search(r"the results are in (\S+)", err).group(1)
    assert "No space left on device" in err
    with np.load(rescued) as f:
        assert f["converged"].all() and f["v1"].shape == (3, 5)


def test_a_full_disk_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import cdsolver.train as tr

    real, calls = tr.save_network, []

    def full_at_second(net, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(net, path)

    monkeypatch.setattr(tr, "save_network", full_at_second)
    out = tmp_path / "n.npz"
    assert main(["train", "--hidden", "8", "--batch-size", "200", "--epochs", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume continues" in err
    assert tr.load_checkpoint(tmp_path / "n.ckpt.npz")[1].epoch == 1



def test_a_run_whose_network_was_not_written_finishes_with_resume(tmp_path, capsys, monkeypatch):
    """The final write of NET.npz failed (a full disk; or Ctrl-C after the last checkpoint): a traceback, and
    --resume refused the finished checkpoint ("ask for more with --epochs"). Now the network goes to a rescue
    folder, and --resume with the same options evaluates and writes it."""
    import errno

    import cdsolver.network as nw
    from cdsolver.network import load_network

    out, real = tmp_path / "n.npz", nw.save_network

    def full_at_out(net, path):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(net, path)

    monkeypatch.setattr(nw, "save_network", full_at_out)
    run = ["train", "--hidden", "4", "--batch-size", "200", "--epochs", "1", "--out", str(out)]
    assert main(run) == 2
    err = capsys.readouterr().err
    rescued = Path(re.search(r"the results are in (\S+)$", err.strip())[1])
    assert err.startswith(f"drn train: error: cannot write {out} (No space left on device)") and not out.exists()
    monkeypatch.setattr(nw, "save_network", real)
    assert main([*run, "--resume"]) == 0
    assert "all epochs done" in capsys.readouterr().out
    a, b = load_network(out), load_network(rescued)
    assert all(np.array_equal(x, y) for x, y in zip(a.G + a.b, b.G + b.b))
    assert main([*run, "--resume"]) == 2  # (written: more epochs are needed now)
    assert "ask for more with --epochs" in capsys.readouterr().err

# ---- 7: inputs that are not real numbers, empty batches, conductances without a finite resistance
def test_complex_datetime_and_empty_inputs_are_refused(problem, capsys):
    d, files = problem
    for name, x, msg in [("c.npy", np.ones((2, 4), complex), "expected real numbers, got dtype complex128"),
                         ("t.npy", np.zeros((2, 4), "datetime64[s]"), "expected real numbers, got dtype datetime64"),
                         ("e.npy", np.zeros((0, 4)), "inputs: no samples")]:
        np.save(d / name, x)
        for command in ("solve", "netlist"):
            assert main([command, files[0], str(d / name), "--out", str(d / "o")]) == 2
            assert msg in capsys.readouterr().err
    assert not (d / "o").exists()


def test_a_1d_input_is_refused_not_read_as_one_sample(problem, capsys):
    from cdsolver.validation import ValidationError

    d, files = problem
    np.save(d / "x1.npy", np.full(4, 0.5))
    for command in ("solve", "netlist"):
        assert main([command, files[0], str(d / "x1.npy"), "--out", str(d / "o")]) == 2
        err = capsys.readouterr().err
        assert "inputs: expected shape (batch, 4), got (4,) (one sample is an array of shape (1, 4))" in err
        assert err.count("\n") == 1, err
    assert not (d / "o").exists()
    with pytest.raises(ValidationError, match=r"expected shape \(batch, 4\), got \(4,\)"):
        random_network([8, 5, 3], "shockley", seed=0).encode(np.full(4, 0.5))


def test_an_npz_archive_or_a_0d_array_as_inputs_is_named_as_such(problem, capsys):
    d, files = problem
    np.savez(d / "z.npy", x=np.zeros((2, 4)))  # (numpy.savez adds .npz)
    np.save(d / "s.npy", np.array(0.5))
    for name, flags, msg in [("z.npy.npz", [], "inputs: got an .npz archive (arrays x), not one array: give a .npy"),
                             ("z.npy.npz", ["--encoded"], "(already encoded v0): got an .npz archive (arrays x)"),
                             ("s.npy", [], "inputs: expected shape (batch, 4), got ()"),
                             ("s.npy", ["--encoded"], "(already encoded v0): expected shape (batch, 8), got ()")]:
        assert main(["solve", files[0], str(d / name), *flags, "--out", str(d / "o.npz")]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert main(["solve", *files, "--beta", "0.1", "--targets", str(d / "z.npy.npz"), "--out", str(d / "o.npz")]) == 2
    assert "targets: got an .npz archive" in capsys.readouterr().err
    assert not (d / "o.npz").exists()


def test_a_conductance_with_no_finite_resistance_is_refused():
    from cdsolver.network import NetworkFormatError

    net = random_network([8, 5, 3], "shockley", seed=0)
    net.G[0][0, 0] = 1e-310
    with pytest.raises(NetworkFormatError, match=r"G1\[0,0\] = 1e-310 S: a nonzero conductance must be >= 1e-300"):
        net.copy().__post_init__()


def test_truncated_gz_idx_file_is_a_dataset_error(tmp_path):
    import gzip

    from cdsolver.datasets import DatasetError, read_idx

    raw = bytes([0, 0, 8, 1]) + (1000).to_bytes(4, "big") + bytes(range(200)) * 5
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "x.gz")


# ---- 11: packaging: the declared minimum versions are the ones the code needs; the linter passes
def test_declared_minimum_versions_cover_what_the_code_uses():
    import tomllib
    from pathlib import Path

    root = Path(__file__).parent.parent
    proj = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=\[]", d)[0].lower(): d for d in proj["dependencies"]}
    assert proj["requires-python"].startswith(">=3.11")  # tomllib
    assert deps["pandas"].startswith("pandas>=2.2")  # groupby.apply(include_groups=)
    assert deps["joblib"].startswith("joblib>=1.4")  # return_as="generator_unordered"
    assert any(d.startswith("ruff") for d in proj["optional-dependencies"]["test"])
    assert "ruff check" in (root / "Makefile").read_text()


def test_ruff_finds_nothing():
    import subprocess
    from pathlib import Path

    root = Path(__file__).parent.parent
    p = subprocess.run([sys.executable, "-m", "ruff", "check", str(root)], capture_output=True, text=True, cwd=root)
    assert p.returncode == 0, p.stdout + p.stderr


# ---- 12: the library and the commands called as in a notebook: numbers at the edge of float64, odd arguments
def test_inputs_whose_voltages_overflow_are_refused(problem, capsys):
    """x = 1e308 with input_gain 3: ``encode`` overflowed to inf with a RuntimeWarning, and ``drn netlist`` wrote
    decks holding ``DC inf`` (exit 0)."""
    from cdsolver.validation import ValidationError

    d, files = problem
    np.save(d / "big.npy", np.full((2, 4), 1e308))
    for command in ("solve", "netlist"):
        assert main([command, files[0], str(d / "big.npy"), "--out", str(d / "o")]) == 2
        err = capsys.readouterr().err
        assert err == (f"drn {command}: error: inputs: entry [0, 0] = 1e+308 times input_gain 3 is beyond float64 "
                       f"(no finite input voltage)\n"), err
    assert not (d / "o").exists()
    net = random_network([8, 5, 3], "shockley", seed=0, input_gain=3.0, encoding="identity")
    with pytest.raises(ValidationError, match=r"entry \[1, 6\] = -1e\+308 times input_gain 3"):
        net.encode(np.where((np.arange(2)[:, None] == 1) & (np.arange(8) == 6), -1e308, 0.5))


def test_samples_whose_currents_overflow_stop_at_once_and_are_named(tmp_path, capsys):
    """A network file with input_gain 1e308 (helper-53): the crossbar's sums overflow, and a sample with a NaN
    residual ran all --max-iter sweeps and was reported as "hit --max-iter"; it now stops after the first sweep,
    not converged, and the warning says why. The other samples are solved as before."""
    net = random_network([4, 6, 3], "shockley", seed=0, input_gain=1e308)
    save_network(net, tmp_path / "big.npz")
    x = np.array([[1.0, 0.5], [0.0, 0.0]])
    np.save(tmp_path / "x.npy", x)
    sol = solve(net, net.encode(x))
    assert sol.converged.tolist() == [False, True] and sol.iterations[0] == 1 and np.isnan(sol.residual[0])
    assert main(["solve", str(tmp_path / "big.npz"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "s.npz"),
                 "--max-iter", "50"]) == 3
    err = capsys.readouterr().err
    assert err == ("warning: 1 samples have a NaN KCL residual (non-finite currents: inputs times conductances "
                   "beyond float64?) (states written, marked converged=False)\n"), err


def test_ctrl_c_outside_a_command_s_own_handler_is_one_line_and_130(monkeypatch, capsys):
    """Ctrl-C while a command loads its libraries (helper-54), or in one that keeps nothing (drn solve), printed
    Python's KeyboardInterrupt traceback (exit 1 from the shell's view of a crash); it is one line and 130."""
    import studies.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_doctor", interrupted)
    assert main(["doctor"]) == 130
    assert capsys.readouterr().err == "drn doctor: interrupted\n"


def test_ctrl_c_before_the_first_epoch_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    """Ctrl-C before a fresh run's first epoch finished said a checkpoint held the last finished epoch, which did
    not exist (helper-54)."""
    import cdsolver.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cdsolver.train, "train", interrupted)
    assert main(["train", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "t.npz")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == ("interrupted before the first epoch finished: "
                                                                "nothing written")
    assert not any(tmp_path.iterdir())


def test_numbers_a_researcher_passes_are_numbers():
    """The checks above refused ordinary numbers (review helper-55): ``max_sweeps=1e4``, 0-d arrays (values read
    from an .npz file) for ``max_sweeps``, ``tol`` and ``beta``, ``anderson=np.float64(5.0)``, ``Decimal`` tolerances,
    ``load_digits(seed=None)``, a NumPy ``fan_in``; whole numbers come out as ints."""
    from decimal import Decimal

    from cdsolver.datasets import load_digits
    from cdsolver.train import TrainConfig

    net = random_network([4, 3, 2], "shockley", seed=np.int64(0), g_mean=np.array(0.3), init="sparse",
                         fan_in=np.int64(2))
    v0 = net.encode(np.ones((1, 2)))
    for kw in (dict(max_sweeps=1e4), dict(max_sweeps=np.array(500)), dict(anderson=np.float64(5.0)),
               dict(tol=np.array(1e-8)), dict(tol=Decimal("0.001")),
               dict(beta=np.array(0.01), targets=np.zeros((1, 2)))):
        assert solve(net, v0, **kw).converged.all(), kw
    assert len(load_digits(seed=None)["train"].x) == 1077
    assert len(load_digits(n_val=np.int64(100), n_test=100.0)["test"].x) == 100
    cfg = TrainConfig(epochs=2.0, batch_size=np.int64(16))
    assert (cfg.epochs, cfg.batch_size) == (2, 16) and type(cfg.epochs) is int and type(cfg.batch_size) is int
    for bad in (1.5, True, "3", float("nan")):
        with pytest.raises(ValueError, match="epochs >= 0 is required"):
            TrainConfig(epochs=bad)


def test_resume_from_another_folder_never_reads_other_data(tmp_path, monkeypatch, capsys):
    """A checkpoint recorded ``--data-dir`` as given: a relative folder, resumed from another working folder, named
    other data and passed the options check (helper-54; stopped only if the sample counts differed). It is
    recorded absolute now, and a relative one of an older checkpoint is read from the current folder."""
    rng = np.random.default_rng(0)
    for where in ("a", "b"):  # the same relative path d/ under two folders, other images in each
        (tmp_path / where / "d").mkdir(parents=True)
        np.savez(tmp_path / where / "d" / "mnist.npz", x_train=rng.integers(0, 256, (5010, 2, 2), dtype=np.uint8),
                 y_train=rng.integers(0, 10, 5010), x_test=rng.integers(0, 256, (5, 2, 2), dtype=np.uint8),
                 y_test=rng.integers(0, 10, 5))
    out = str(tmp_path / "t.npz")
    args = ["train", "--dataset", "mnist", "--data-dir", "d", "--hidden", "2", "--out", out]
    monkeypatch.chdir(tmp_path / "a")
    assert main([*args, "--epochs", "1"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"--data-dir was '{tmp_path / 'a' / 'd'}', now '{tmp_path / 'b' / 'd'}'" in err, err
    monkeypatch.chdir(tmp_path / "a")
    assert main([*args, "--epochs", "2", "--resume"]) == 0


def test_solver_counts_and_tolerances_of_the_wrong_type_are_validation_errors():
    """``solve(..., max_sweeps=1.7)`` ran 1 sweep; ``inf``, ``nan``, ``"abc"``, ``None`` raised OverflowError,
    ValueError, TypeError; ``tol="1e-3"`` passed the check and then raised TypeError in the solver (and
    ``TrainConfig(tol="1e-3")`` was accepted). One check of whole numbers (``validation.check_int``) for the
    solvers and the command line."""
    from cdsolver.circuit import random_circuit
    from cdsolver.graph import solve_circuit
    from cdsolver.train import TrainConfig
    from cdsolver.validation import ValidationError

    net, v0 = small(2)
    for kw, says in [({"max_sweeps": 1.7}, "max_sweeps must be >= 1 (a whole number), got 1.7"),
                     ({"max_sweeps": float("inf")}, "max_sweeps must be >= 1 (a whole number), got inf"),
                     ({"max_sweeps": "abc"}, "max_sweeps must be >= 1 (a whole number), got 'abc'"),
                     ({"max_sweeps": None}, "max_sweeps must be >= 1 (a whole number), got None"),
                     ({"max_sweeps": True}, "max_sweeps must be >= 1 (a whole number), got True"),
                     ({"max_sweeps": 0}, "max_sweeps must be >= 1, got 0"),
                     ({"anderson": float("nan")}, "anderson (history depth) must be in [0, 100] (a whole number), "
                                                  "got nan"),
                     ({"anderson": 101}, "anderson (history depth) must be in [0, 100], got 101"),
                     ({"tol": "1e-3"}, "tol must be a finite number > 0 and < 1, got '1e-3'")]:
        with pytest.raises(ValidationError, match=re.escape(says)):
            solve(net, v0, **kw)
    s = solve(net, v0, max_sweeps=np.int64(200), anderson=np.int32(3), tol=np.float32(1e-6))
    assert s.converged.all() and type(s.tol) is float
    with pytest.raises(ValidationError, match=re.escape("tol must be a finite number > 0 and < 1, got '1e-3'")):
        TrainConfig(tol="1e-3")
    with pytest.raises(ValidationError, match=re.escape("max_sweeps must be >= 1 (a whole number), got 2.5")):
        solve_circuit(random_circuit("graph", 10), max_sweeps=2.5)


def test_dataset_splits_and_files_that_would_mislead_are_refused(tmp_path):
    """``load_mnist(D, n_val=0)`` (or ``n_val`` >= the training images, as the default 5000 on a small file) gave an
    empty training set and every image to validation; ``load_digits(n_test=-5)`` a test set overlapping the
    training set; pixels already scaled to [0, 1] were divided by 255 again, float labels cut to class 0."""
    from cdsolver.datasets import DatasetError, load_digits, load_mnist
    from cdsolver.validation import ValidationError

    rng = np.random.default_rng(0)
    files = dict(x_train=rng.integers(0, 256, (20, 2, 2)), y_train=rng.integers(0, 10, 20),
                 x_test=rng.integers(0, 256, (5, 2, 2)), y_test=rng.integers(0, 10, 5))
    np.savez(tmp_path / "mnist.npz", **files)
    for n_val, says in [(0, "n_val must be >= 1, got 0"), (-3, "n_val must be >= 1, got -3"),
                        (20, f"n_val must be < 20 (the training images in {tmp_path}: some must be left to train on), "
                             f"got 20"),
                        (5000, "n_val must be < 20"), (2.5, "n_val must be >= 1 (a whole number), got 2.5")]:
        with pytest.raises(ValidationError, match=re.escape(says)):
            load_mnist(tmp_path, n_val=n_val)
    assert {k: len(s.x) for k, s in load_mnist(tmp_path, n_val=19).items()} == {"train": 1, "val": 19, "test": 5}
    for kw, says in [({"n_test": -5}, "n_test must be >= 1, got -5"), ({"n_val": 0}, "n_val must be >= 1, got 0"),
                     ({"n_val": 1000, "n_test": 797}, "n_val + n_test must be < 1797 (Digits' images: some must be "
                                                      "left to train on), got 1000 + 797"),
                     ({"seed": -1}, "seed must be >= 0, got -1")]:
        with pytest.raises(ValidationError, match=re.escape(says)):
            load_digits(**kw)
    for key, value, says in [("x_train", files["x_train"] / 255.0, "train: pixels must be bytes 0..255, found "
                                                                   "float64 0..1 (integers needed)"),
                             ("x_test", files["x_test"] * 1000, "test: pixels must be bytes 0..255, found 13000.."),
                             ("y_train", rng.random(20), "train: labels must be classes 0..9, found float64 "),
                             ("y_test", np.array(["3"] * 5), "test: labels must be classes 0..9, found <U1 "
                                                             "(integers needed)")]:
        np.savez(tmp_path / "mnist.npz", **dict(files, **{key: value}))
        with pytest.raises(DatasetError, match=re.escape(says)):
            load_mnist(tmp_path, n_val=5)


def test_training_data_with_labels_the_network_cannot_have_is_refused():
    """``train`` with labels -1 trained every sample towards the last class (exit 0); labels of shape (n, 1) gave
    ``train_error`` 5.5; float labels, an empty split, x and y of different lengths or no ``"val"`` split raised
    IndexError, ValueError, ZeroDivisionError or KeyError. ``datasets.check_split``, for ``train`` and
    ``evaluate``."""
    from cdsolver.datasets import Split
    from cdsolver.train import TrainConfig, evaluate, train
    from cdsolver.validation import ValidationError

    net = random_network([8, 4, 3], "shockley", seed=0, input_gain=2.0)
    rng = np.random.default_rng(0)

    def split(n, y=None):
        return Split(rng.random((n, 4)), rng.integers(0, 3, n) if y is None else np.asarray(y))

    cfg = TrainConfig(epochs=1)
    for data, says in [({"train": split(8, [-1] * 8), "val": split(4)},
                        "data['train'].y: labels must be integers 0..2 (the network's 3 classes), found int64 -1..-1"),
                       ({"train": split(8, [[1]] * 8), "val": split(4)},
                        "data['train'].y: expected 8 labels, shape (8,), got shape (8, 1)"),
                       ({"train": split(8, [1.0] * 8), "val": split(4)}, "found float64 1..1"),
                       ({"train": split(8, [3] * 8), "val": split(4)}, "labels must be integers 0..2"),
                       ({"train": split(8), "val": split(0)}, "data['val']: no samples"),
                       ({"train": Split(rng.random((8, 4)), np.zeros(6, int)), "val": split(4)},
                        "expected 8 labels, shape (8,), got shape (6,)"),
                       ({"train": Split(rng.random((8, 5)), np.zeros(8, int)), "val": split(4)},
                        "data['train'].x: expected shape (batch, 4), got (8, 5)"),
                       ({"train": split(8)}, "data must be a dict with splits 'train' and 'val', got ['train']")]:
        before = [g.copy() for g in net.G]
        with pytest.raises(ValidationError, match=re.escape(says)):
            train(net, data, cfg)
        assert all(np.array_equal(a, b) for a, b in zip(before, net.G))
    for data, says in [(split(0), "data: no samples"), (split(4, [-1] * 4), "data.y: labels must be integers 0..2")]:
        with pytest.raises(ValidationError, match=re.escape(says)):
            evaluate(net, data, cfg)


def test_a_shared_worker_task_over_its_time_limit_fails_its_samples_not_the_run(ngspice, problem, capsys):
    """``drn spice --runner shared --jobs 2 --timeout 1e-9``: joblib's TimeoutError came out as a traceback (exit
    1) and no sample was kept. The limit of a worker task is the timeout times its samples."""
    net, v0 = small(3)
    res = run(net, v0, runner="shared", jobs=2, timeout=1e-9)
    assert not res.ok.any() and not res.interrupted and np.isnan(res.states[0]).all()
    assert res.reason[0] == ("ngspice (shared) timed out: its worker task of 2 samples took more than 2e-09 s "
                             "(1e-09 s per sample)"), res.reason
    assert res.reason[2] == ("ngspice (shared) timed out: not collected: worker task 0 (samples 0-1) timed out, "
                             "and joblib stops every worker"), res.reason
    d, files = problem
    assert main(["spice", *files, "--out", str(d / "s.npz"), "--runner", "shared", "--jobs", "2",
                 "--timeout", "1e-9"]) == 3
    assert "ngspice (shared) timed out" in capsys.readouterr().err
    assert np.isnan(np.load(d / "s.npz")["v1"]).all()


def test_diagnostics_of_states_of_another_shape_are_refused_not_broadcast():
    """``energy(net, v0, states of 1 sample)`` with 3 samples of inputs gave 3 energies, ``kcl`` residuals of
    shapes (3, n1) and (1, n2), ``implicit_gradient`` with a ``(n_classes,)`` target a gradient (broadcast over the
    samples) — all without a word; ``max_branch_current`` an IndexError, and for a NaN state a finite current
    (Python's ``max`` drops NaN). NaN states (a failed ngspice sample) are still allowed in the diagnostics."""
    from cdsolver import energy, kcl, max_branch_current
    from cdsolver.ep import implicit_gradient
    from cdsolver.validation import ValidationError

    net, v0 = small(3)
    s = solve(net, v0).check().states
    one = [x[:1] for x in s]
    for f in (energy, kcl, max_branch_current):
        with pytest.raises(ValidationError, match=re.escape("states v1: expected shape (3, 5), got (1, 5)")):
            f(net, v0, one)
        with pytest.raises(ValidationError, match=re.escape("states: expected 2 state arrays v1..v2, got 1")):
            f(net, v0, s[:1])
    with pytest.raises(ValidationError, match=re.escape("targets: expected shape (3, 3), got (3,)")):
        kcl(net, v0, s, beta=0.1, targets=np.zeros(3))
    with pytest.raises(ValidationError, match=re.escape("y (targets): expected shape (3, 3), got (3,)")):
        implicit_gradient(net, v0, s, np.zeros(3))
    with pytest.raises(ValidationError, match=re.escape("free_states v2: expected shape (3, 3), got (3, 5)")):
        implicit_gradient(net, v0, [s[0], s[0]], np.zeros((3, 3)))
    with pytest.raises(ValidationError, match=re.escape("init: expected 2 state arrays v1..v2, got int")):
        solve(net, v0, init=5)
    nan = [x.copy() for x in s]
    nan[0][1] = np.nan
    assert np.isnan(max_branch_current(net, v0, nan)[1]) and np.isfinite(energy(net, v0, nan)[[0, 2]]).all()


def test_a_pwl_table_whose_slope_overflows_is_refused(problem, capsys):
    """``Pwl([[0, -1e300], [1e-10, 1e300]])``: the slope 2e310 S overflowed to inf (a RuntimeWarning), and every
    sample ran to the sweep cap with NaN states (exit 3, "hit --max-iter"); a table of text raised ValueError."""
    import json

    from cdsolver import Pwl
    from cdsolver.validation import ValidationError

    says = "pwl table: the slope between points 0 and 1 (0 V, -1e+300 A) and (1e-10 V, 1e+300 A) is beyond float64"
    with pytest.raises(ValidationError, match=re.escape(says)):
        Pwl([[0, -1e300], [1e-10, 1e300]])
    with pytest.raises(ValidationError, match=re.escape("pwl table must hold numbers, [v, i] pairs")):
        Pwl([["a", "b"], ["c", "d"]])
    d, files = problem
    f = dict(np.load(files[0]))
    f["meta"] = np.array(json.dumps(dict(json.loads(str(f["meta"])), element={"kind": "pwl", "table": [
        [0, -1e300], [1e-10, 1e300]]})))
    np.savez(d / "pwl.npz", **f)
    assert main(["solve", str(d / "pwl.npz"), files[1], "--out", str(d / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert err == f"drn solve: error: {d / 'pwl.npz'}: meta.element.table: {says}\n", err


def test_numpy_scalars_are_numbers_in_a_network(tmp_path):
    """``random_network(..., input_gain=np.float32(40))``, ``r_on=np.int64(1)``, ``Amplifier(np.int64(4), 1)``:
    ``meta.input_gain must be a finite number, got np.float32(40.0)`` (np.float64 passed, being a float)."""
    from cdsolver import Amplifier, load_network
    from cdsolver.network import NetworkFormatError

    net = random_network([8, 5, 3], "shockley", seed=0, input_gain=np.float32(40), r_on=np.int64(1),
                         amplifier=Amplifier(np.int64(4), np.float32(0.5)))
    assert (type(net.input_gain), type(net.r_on), type(net.amplifier.A)) == (float, int, int)
    save_network(net, tmp_path / "n.npz")
    back = load_network(tmp_path / "n.npz")
    assert (back.input_gain, back.r_on, back.A, back.C) == (40.0, 1, 4, 0.5)
    with pytest.raises(NetworkFormatError, match=re.escape("meta.input_gain must be a finite number, got True")):
        random_network([8, 5, 3], "shockley", input_gain=np.bool_(True))


def test_a_beta_that_is_no_number_is_a_validation_error():
    """``solve(net, v0, beta="0.1")`` or ``beta=None``: TypeError from ``math.isfinite``."""
    from cdsolver.validation import ValidationError

    net, v0 = small(2)
    for beta in ("0.1", None, True):
        with pytest.raises(ValidationError, match=re.escape(f"beta must be a number (S), got {beta!r}")):
            solve(net, v0, beta=beta)
    assert solve(net, v0, beta=np.float32(0.1)).converged.all()


def test_random_network_arguments_are_checked():
    """``random_network([8, 0, 3])``, ``[8, -1, 3]``, ``[8, 2.5, 3]``, ``"843"``, ``seed=-1``, ``g_mean=-1`` or NaN,
    ``bias=nan``: ZeroDivisionError, ValueError, TypeError or OverflowError from NumPy."""
    from cdsolver.validation import ValidationError

    for args, kw, says in [(([8, 0, 3],), {}, "sizes[1] must be >= 1, got 0"),
                           (([8, -1, 3],), {}, "sizes[1] must be >= 1, got -1"),
                           (([8, 2.5, 3],), {}, "sizes[1] must be >= 1 (a whole number), got 2.5"),
                           (("843",), {}, "sizes must be a list of layer sizes [n_0, ..., n_L], got '843'"),
                           (([8, 4, 3],), {"seed": -1}, "seed must be >= 0, got -1"),
                           (([8, 4, 3],), {"g_mean": -1}, "g_mean must be a finite number > 0, got -1"),
                           (([8, 4, 3],), {"g_mean": float("nan")}, "g_mean must be a finite number > 0, got nan"),
                           (([8, 4, 3],), {"bias": float("nan")}, "bias must be a finite number >= 0, got nan")]:
        with pytest.raises(ValidationError, match=re.escape(says)):
            random_network(*args, **kw)
    assert random_network(np.array([8, 4, 3]), seed=np.int64(1), g_mean=np.float32(0.5)).sizes == [8, 4, 3]
