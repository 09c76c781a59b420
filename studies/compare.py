"""`drn compare`: a config-driven study, CD vs ngspice, over depth × width × element × amplifier × seed (SPEC §6).

For each cell: build (and, with ``[train] epochs > 0``, train with EP) the network, or load it from
``OUT/networks/``; solve the validation samples with CD and with each ngspice runner; record per sample the
relative L1 error ``‖v_cd − v_spice‖₁ / (‖v_spice‖₁ + ε)`` over hidden+output nodes (ε = ``metrics.EPS_L1``),
the max absolute error (V), CD sweeps, ngspice iterations, wall times and ngspice failures. A finished cell is
written to ``OUT/cells/<cell>.csv`` (atomically), so a re-run skips it; within a cell each finished runner is
kept in ``OUT/cells/<cell>.<runner>.csv`` until the cell is done, so a re-run also skips finished runners.
Then ``OUT/samples.csv`` (all rows) and ``OUT/summary.csv`` (per cell and runner), both with a provenance header.

Timing: ``cd_s`` = one ``solve`` call over the cell's samples / samples (``study.cd_tol``, default 1e-13: the
states are then accurate well below the 1e-12 errors a study reports; one process);
``spice_s`` = the runner's clock (``spice_bridge.runners.CLOCKS``). Speed-up = median SPICE / CD.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cdsolver import load_network, random_network, save_network, solve
from cdsolver.datasets import load_digits
from cdsolver.network import Amplifier
from cdsolver.train import DEFAULTS, TrainConfig, train
from cdsolver.validation import ValidationError
from spice_bridge.runners import RUNNERS, ngspice_version, run

from .metrics import EPS_L1, max_abs, percentiles, rel_l1

__all__ = ["load_config", "compare", "ConfigError", "ELEMENTS", "summarize"]

#: grid element name: (element kind, rails)
ELEMENTS = {"shockley-double": ("shockley", "both"), "shockley-single": ("shockley", "split"), "pwl": ("pwl", "both")}

SCHEMA: dict[str, dict[str, Any]] = {
    "study": {"name": str, "dataset": str, "samples": int, "seeds": list, "runners": list, "jobs": int,
              "cell_jobs": int, "timeout": float, "data_seed": int, "cd_tol": float},
    "grid": {"depth": list, "width": list, "element": list, "amplifier": list},
    "train": {"epochs": int, "lr": float, "beta": float, "target": float, "batch_size": int},
}
DEFAULT = {"study": {"dataset": "digits", "seeds": [0], "runners": ["batch"], "jobs": 1, "cell_jobs": 1,
                     "timeout": 3600.0, "data_seed": 0, "cd_tol": 1e-13},
           "grid": {"amplifier": ["none"]}, "train": {"epochs": 0}}

COLUMNS = ["depth", "width", "element", "amplifier", "seed", "runner", "sample", "rel_l1", "max_abs_V",
           "cd_sweeps", "cd_converged", "cd_s", "spice_s", "spice_iterations", "spice_ok", "spice_fallback",
           "spice_reason"]


class ConfigError(ValidationError):
    """A study config is invalid; the message names the key."""


def _amplifier(name: str) -> Amplifier | None:
    if name == "none":
        return None
    m = re.fullmatch(r"A([0-9.]+)C([0-9.]+)", name)
    if not m:
        raise ConfigError(f"grid.amplifier: {name!r} is not 'none' or like 'A4C1' (gains A and C)")
    return Amplifier(float(m.group(1)), float(m.group(2)))


def load_config(path: str | Path) -> dict:
    """Read and validate a study config (TOML); every problem is reported before any work."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    cfg = {sec: dict(DEFAULT.get(sec, {})) for sec in SCHEMA}
    for sec, body in raw.items():
        if sec not in SCHEMA:
            raise ConfigError(f"{p}: unknown section [{sec}] (allowed: {', '.join(SCHEMA)})")
        for key, val in body.items():
            if key not in SCHEMA[sec]:
                raise ConfigError(f"{p}: unknown key {sec}.{key} (allowed: {', '.join(SCHEMA[sec])})")
            want = SCHEMA[sec][key]
            if want is float and isinstance(val, int) and not isinstance(val, bool):
                val = float(val)
            if not isinstance(val, want) or isinstance(val, bool):
                raise ConfigError(f"{p}: {sec}.{key} must be {want.__name__}, got {val!r}")
            cfg[sec][key] = val
    st, gr = cfg["study"], cfg["grid"]
    for key in ("name", "samples"):
        if key not in st:
            raise ConfigError(f"{p}: study.{key} is required")
    for key in ("depth", "width", "element"):
        if key not in gr:
            raise ConfigError(f"{p}: grid.{key} is required")
    if st["dataset"] != "digits":
        raise ConfigError(f"{p}: study.dataset must be 'digits' (MNIST studies: issue 7), got {st['dataset']!r}")
    if not 1 <= st["samples"] <= 360:
        raise ConfigError(f"{p}: study.samples must be 1..360 (the Digits validation split), got {st['samples']}")
    for key in ("jobs", "cell_jobs"):
        if st[key] < 1:
            raise ConfigError(f"{p}: study.{key} must be >= 1, got {st[key]}")
    bad = [r for r in st["runners"] if r not in RUNNERS]
    if bad or not st["runners"]:
        raise ConfigError(f"{p}: study.runners must be a non-empty list of {RUNNERS}, got {st['runners']}")
    for key, ok in (("depth", lambda d: isinstance(d, int) and 1 <= d <= 8),
                    ("width", lambda w: isinstance(w, int) and w >= 1),
                    ("element", lambda e: e in ELEMENTS)):
        bad = [v for v in gr[key] if not ok(v)]
        if bad or not gr[key]:
            hint = f" (one of {sorted(ELEMENTS)})" if key == "element" else ""
            raise ConfigError(f"{p}: grid.{key} has invalid values {bad or '[]'}{hint}")
    for a in gr["amplifier"]:
        _amplifier(a)
    if not all(isinstance(s, int) for s in st["seeds"]) or not st["seeds"]:
        raise ConfigError(f"{p}: study.seeds must be a non-empty list of integers")
    cfg["hash"] = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]
    return cfg


def cells(cfg: dict) -> list[dict]:
    g = cfg["grid"]
    return [dict(depth=d, width=w, element=e, amplifier=a, seed=s)
            for d in g["depth"] for w in g["width"] for e in g["element"] for a in g["amplifier"]
            for s in cfg["study"]["seeds"]]


def cell_name(c: dict) -> str:
    return f"d{c['depth']}_w{c['width']}_{c['element']}_{c['amplifier']}_s{c['seed']}"


def cell_csv(out: Path, c: dict, runner: str | None = None) -> Path:
    """``OUT/cells/<cell>.csv`` (a finished cell), or ``<cell>.<runner>.csv`` (a finished runner of it)."""
    return out / "cells" / f"{cell_name(c)}{'' if runner is None else '.' + runner}.csv"


def provenance(cfg: dict) -> dict[str, str]:
    import scipy

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent,
                                  timeout=10).stdout.strip()
        except OSError:
            return ""

    commit = (git("rev-parse", "--short", "HEAD") or "unknown") + ("-dirty" if git("status", "--porcelain") else "")
    return {"study": cfg["study"]["name"], "config_sha256": cfg["hash"], "git_commit": commit,
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "ngspice": ngspice_version(), "python": platform.python_version(),
            "machine": f"{platform.machine()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "eps_l1_V": str(EPS_L1)}


def write_csv(df: pd.DataFrame, path: Path, prov: dict[str, str]) -> None:
    """CSV with ``# key: value`` provenance lines first (read back with ``comment='#'``)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.writelines(f"# {k}: {v}\n" for k, v in prov.items())
        df.to_csv(f, index=False)
    tmp.replace(path)


def network_for(cfg: dict, c: dict, out: Path) -> Any:
    """The cell's network: loaded from ``OUT/networks`` if present, else built (and trained) and saved."""
    path = out / "networks" / f"{cell_name(c)}.npz"
    if path.is_file():
        return load_network(path)
    kind, rails = ELEMENTS[c["element"]]
    gain, lr = DEFAULTS[kind]
    net = random_network([128] + [c["width"]] * c["depth"] + [10], kind, rails=rails, seed=c["seed"],
                         amplifier=_amplifier(c["amplifier"]), input_gain=gain)
    tr = cfg["train"]
    if tr["epochs"] > 0:
        tcfg = TrainConfig(epochs=tr["epochs"], lr=tr.get("lr", lr), beta=tr.get("beta", 0.1),
                           target=tr.get("target", 0.3), batch_size=tr.get("batch_size", 32), seed=c["seed"])
        train(net, load_digits(seed=cfg["study"]["data_seed"]), tcfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_network(net, path)
    return net


def run_cell(cfg: dict, c: dict, out: Path, prov: dict[str, str]) -> pd.DataFrame:
    """CD and every runner on the cell's samples. Each runner's rows are kept in ``OUT/cells/<cell>.<runner>.csv``
    as soon as it finishes, so an interrupted cell resumes at the runner it was in (CD is re-solved: cheap)."""
    st = cfg["study"]
    net = network_for(cfg, c, out)
    v0 = net.encode(load_digits(seed=st["data_seed"])["val"].x[: st["samples"]])
    t = time.perf_counter()
    cd = solve(net, v0, tol=st["cd_tol"])
    cd_s = (time.perf_counter() - t) / len(v0)
    frames = []
    for r in st["runners"]:
        part = cell_csv(out, c, r)
        if part.is_file():
            frames.append(pd.read_csv(part, comment="#"))
            continue
        res = run(net, v0, runner=r, jobs=st["jobs"], timeout=st["timeout"])
        err, mx = rel_l1(cd.states, res.states), max_abs(cd.states, res.states)
        rows = [dict(**c, runner=r, sample=b, rel_l1=err[b], max_abs_V=mx[b], cd_sweeps=cd.iterations[b],
                     cd_converged=cd.converged[b], cd_s=cd_s, spice_s=res.wall[b], spice_iterations=res.iterations[b],
                     spice_ok=res.ok[b], spice_fallback=res.fallback[b], spice_reason=res.reason[b])
                for b in range(len(v0))]
        frames.append(pd.DataFrame(rows, columns=COLUMNS))
        write_csv(frames[-1], part, prov)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell and runner: P50/P90/P99/max relative L1 (``numpy.percentile``, linear, over the samples ngspice
    solved), max |error| (V), failures, sweeps/iterations, times (s/sample) and the median speed-up."""
    keys = ["depth", "width", "element", "amplifier", "seed", "runner"]

    def one(g: pd.DataFrame) -> pd.Series:
        ok = g[g.spice_ok]
        return pd.Series({
            "samples": len(g), "spice_failed": int((~g.spice_ok).sum()),
            **{f"rel_l1_{k}": v for k, v in percentiles(ok.rel_l1.to_numpy()).items()},
            "max_abs_V": ok.max_abs_V.max(), "cd_sweeps_mean": g.cd_sweeps.mean(),
            "cd_not_converged": int((~g.cd_converged).sum()),
            "spice_iterations_median": g.spice_iterations.median(), "cd_s": g.cd_s.mean(),
            "spice_s_median": g.spice_s.median(), "spice_s_mean": g.spice_s.mean(),
            "speedup_median": g.spice_s.median() / g.cd_s.mean()})

    return df.groupby(keys).apply(one, include_groups=False).reset_index()


def _do_cell(cfg: dict, c: dict, out: Path, prov: dict[str, str]) -> str:
    """Run one cell and write its CSV (atomically); returns the cell name. Runs in a worker for parallel cells."""
    write_csv(run_cell(cfg, c, out, prov), cell_csv(out, c), prov)
    for r in cfg["study"]["runners"]:
        cell_csv(out, c, r).unlink(missing_ok=True)
    return cell_name(c)


def compare(config: str | Path, out: str | Path | None = None, jobs: int | None = None,
            max_samples: int | None = None, progress: bool = True, cell_jobs: int | None = None,
            dask: str | None = None) -> pd.DataFrame:
    """Run (or resume) a study; returns the summary. ``jobs``/``max_samples``/``cell_jobs`` override the config.

    cell_jobs: cells run at once (joblib loky processes; default 1, so that the timings of one cell are not
    disturbed by another). dask: address of a Dask scheduler (``tcp://host:8786``); cells then go to its workers
    through joblib's ``dask`` backend (``pip install 'drn-cd[dask]'``; OUT must be on storage every worker sees).
    """
    from joblib import Parallel, delayed, parallel_config

    cfg = load_config(config)
    for key, val in (("jobs", jobs), ("cell_jobs", cell_jobs)):
        if val is not None:
            if val < 1:
                raise ConfigError(f"{key} must be >= 1, got {val}")
            cfg["study"][key] = val
    if max_samples is not None:
        cfg["study"]["samples"] = min(cfg["study"]["samples"], max_samples)
    out = Path(out or Path("results") / cfg["study"]["name"])
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(Path(config).read_text())
    prov = provenance(cfg)
    todo = cells(cfg)
    paths = [cell_csv(out, c) for c in todo]
    for c, p in zip(todo, paths):
        if p.is_file():
            print(f"skip {cell_name(c)} (done: {p})", file=sys.stderr)
    pending = [c for c, p in zip(todo, paths) if not p.is_file()]
    if dask:
        from dask.distributed import Client

        try:
            client = Client(dask, timeout="10s")
        except OSError as e:
            raise ConfigError(f"cannot reach the Dask scheduler {dask!r}: {e}") from None
        backend = parallel_config(backend="dask")
    else:
        client, backend = None, parallel_config(backend="loky")
    try:
        with backend:
            done = Parallel(n_jobs=-1 if dask else cfg["study"]["cell_jobs"], return_as="generator_unordered")(
                delayed(_do_cell)(cfg, c, out, prov) for c in pending)
            if progress:
                from tqdm import tqdm

                done = tqdm(done, total=len(pending), desc="cells", unit="cell", file=sys.stderr)
            for _ in done:
                pass
    finally:
        if client is not None:
            client.close()
    df = pd.concat([pd.read_csv(p, comment="#") for p in paths], ignore_index=True)
    write_csv(df, out / "samples.csv", prov)
    summ = summarize(df)
    write_csv(summ, out / "summary.csv", prov)
    return summ
