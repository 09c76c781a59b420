"""`drn compare`: a config-driven study, CD vs ngspice, over depth × width × element × amplifier × seed
(docs/studies.md).

For each cell: build (and, with ``[train] epochs > 0``, train with EP) the network, or load it from
``OUT/networks/``; solve the validation samples with CD and with each ngspice runner; record per sample the
relative L1 error ``‖v_cd − v_spice‖₁ / (‖v_spice‖₁ + ε)`` over hidden+output nodes (ε = ``metrics.EPS_L1``),
the max absolute error (V), CD sweeps, ngspice iterations, wall times and ngspice failures. Each runner of a
cell is written to ``OUT/cells/<cell id>.<runner>.csv`` (atomically) when it finishes, with its own provenance
header, so a re-run skips it. The cell id is the grid point plus a digest of every other setting that shapes
its rows (``row_settings``): a re-run with other settings computes new cells next to the old ones, never mixes
them (docs/reliability.md). The network of a cell is cached in ``OUT/networks/<cell>-<training digest>.npz``.
Then ``OUT/samples.csv`` (the config's rows, column ``cell_id``), ``OUT/provenance.csv`` (per cell id and runner:
commit, versions, date, machine, settings) and ``OUT/summary.csv`` (per cell and runner). One ``drn compare``
at a time per OUT (``OUT/.lock``).

Timing: ``cd_s`` = one ``solve`` call over the cell's samples / samples (``study.cd_tol``, default the solver's
``TOL``: states within 1e-13 relative L1 of the exact steady state, docs/solver.md#stopping-test; one process);
``spice_s`` = the runner's clock (``spice_bridge.runners.CLOCKS``). Speed-up = median SPICE / CD.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from cdsolver import defaults, kernels, load_network, save_network, solve
from cdsolver.constants import TOL
from cdsolver.datasets import load_digits
from cdsolver.files import atomic_write, check_out
from cdsolver.network import Amplifier, NetworkFormatError
from cdsolver.train import TrainConfig, TrainState, evaluate, train
from cdsolver.validation import ValidationError, check_timeout, check_tol
from spice_bridge.runners import RUNNERS, check_jobs, ngspice_version, run

from .gradients import gradient_columns, gradient_summary
from .metrics import EPS_L1, max_abs, percentiles, rel_l1

__all__ = ["load_config", "compare", "ConfigError", "ELEMENTS", "summarize"]

#: grid element name: (element kind, rails)
ELEMENTS = {"shockley-double": ("shockley", "both"), "shockley-single": ("shockley", "split"), "pwl": ("pwl", "both")}

SCHEMA: dict[str, dict[str, Any]] = {
    "study": {"name": str, "dataset": str, "samples": int, "seeds": list, "runners": list, "jobs": int,
              "cell_jobs": int, "timeout": float, "data_seed": int, "cd_tol": float, "gradients": bool},
    "grid": {"depth": list, "width": list, "element": list, "amplifier": list},
    "train": {"epochs": int, "lr": float, "beta": float, "target": float, "batch_size": int, "optimizer": str,
              "average": float, "lr_decay": float, "gradient": str},
}
DEFAULT = {"study": {"dataset": "digits", "seeds": [0], "runners": ["batch"], "jobs": 1, "cell_jobs": 1,
                     "timeout": None, "data_seed": 0, "cd_tol": TOL, "gradients": False},
           "grid": {"amplifier": ["none"]}, "train": {"epochs": 0}}

COLUMNS = ["depth", "width", "element", "amplifier", "seed", "runner", "sample", "rel_l1", "max_abs_V",
           "cd_sweeps", "cd_converged", "cd_s", "spice_s", "spice_iterations", "spice_ok", "spice_fallback",
           "spice_reason", "test_error", "train_epochs", "train_s", "cell_id"]

#: ``[study]`` keys that shape a cell's rows besides the grid (``jobs``: concurrent ngspice runs change the
#: clocks); with the ``[train]`` section they make the cell id. ``name``, ``runners`` (one file per runner),
#: ``cell_jobs`` and ``seeds`` (a grid axis) do not.
ROW_KEYS = ("dataset", "samples", "data_seed", "cd_tol", "timeout", "jobs", "gradients")


#: The files of OUT every ``drn compare`` run replaces (with ``config.toml``; cell and network files are named by
#: their settings and never replaced): an OUT without a study config that holds one of them is refused.
REPLACED = ("config.toml", "samples.csv", "provenance.csv", "summary.csv")


class ConfigError(ValidationError):
    """A study config is invalid; the message names the key."""


def _amplifier(name: str) -> Amplifier | None:
    if name == "none":
        return None
    m = isinstance(name, str) and re.fullmatch(r"A([0-9]+(?:\.[0-9]+)?)C([0-9]+(?:\.[0-9]+)?)(-inv)?", name)
    if not m:
        raise ConfigError(f"grid.amplifier: {name!r} is not 'none' or like 'A4C1' (gains A and C) or 'A4C1-inv' "
                          f"(the second half of each hidden layer inverting)")
    return Amplifier(float(m.group(1)), float(m.group(2)), "half" if m.group(3) else "none")


def load_config(path: str | Path) -> dict:
    """Read and validate a study config (TOML); every problem is reported before any work."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
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
            if not isinstance(val, want) or (isinstance(val, bool) and want is not bool):
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
        raise ConfigError(f"{p}: study.dataset must be 'digits' (studies support no other dataset yet), "
                          f"got {st['dataset']!r}")
    if not 1 <= st["samples"] <= 360:
        raise ConfigError(f"{p}: study.samples must be 1..360 (the Digits validation split), got {st['samples']}")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", st["name"]):
        raise ConfigError(f"{p}: study.name must be letters, digits, '.', '_' or '-' (it names a folder in "
                          f"results/), got {st['name']!r}")
    for key in ("jobs", "cell_jobs"):
        _check_jobs(st, key, f"{p}: study.{key}")
    try:
        check_tol(st["cd_tol"], f"{p}: study.cd_tol")
        check_timeout(st["timeout"], f"{p}: study.timeout")
    except ValidationError as e:
        raise ConfigError(str(e)) from None
    try:  # every [train] key, also when epochs = 0 (TrainConfig's messages begin with the key)
        TrainConfig(**cfg["train"])
    except ValidationError as e:
        raise ConfigError(f"{p}: train.{e}") from None
    bad = [r for r in st["runners"] if r not in RUNNERS]
    if bad or not st["runners"]:
        raise ConfigError(f"{p}: study.runners must be a non-empty list of {RUNNERS}, got {st['runners']}")
    def integer(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    for key, ok in (("depth", lambda d: integer(d) and 1 <= d <= 8),
                    ("width", lambda w: integer(w) and w >= 1),
                    ("element", lambda e: isinstance(e, str) and e in ELEMENTS)):
        bad = [v for v in gr[key] if not ok(v)]
        if bad or not gr[key]:
            hint = f" (one of {sorted(ELEMENTS)})" if key == "element" else ""
            raise ConfigError(f"{p}: grid.{key} has invalid values {bad or '[]'}{hint}")
    for a in gr["amplifier"]:
        try:
            _amplifier(a)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
        except ValidationError as e:  # gains out of range (Amplifier)
            raise ConfigError(f"{p}: grid.amplifier {a!r}: {str(e).removeprefix('meta.amplifier.')}") from None
    if not st["seeds"] or not all(integer(s) and s >= 0 for s in st["seeds"]):
        raise ConfigError(f"{p}: study.seeds must be a non-empty list of integers >= 0, got {st['seeds']}")
    if st["data_seed"] < 0:
        raise ConfigError(f"{p}: study.data_seed must be >= 0, got {st['data_seed']}")
    for sec, key in (*(("grid", k) for k in SCHEMA["grid"]), ("study", "seeds"), ("study", "runners")):
        twice = [v for i, v in enumerate(cfg[sec][key]) if v in cfg[sec][key][:i]]
        if twice:  # (the same cell or runner twice: its rows would be counted twice in samples.csv and summary.csv)
            raise ConfigError(f"{p}: {sec}.{key} lists {twice[0]!r} more than once: give each value once")
    if cfg["train"]["epochs"] > 0:  # the checks that need the training split (a batch no larger than it)
        try:
            TrainConfig(**cfg["train"]).resolved(len(load_digits(seed=st["data_seed"])["train"].x))
        except ValidationError as e:
            raise ConfigError(f"{p}: train.{e}") from None
    cfg["hash"] = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]
    return cfg


def _check_jobs(st: dict, key: str, name: str) -> None:
    """``st[key]``, a number of processes, is 1..MAX_JOBS (``runners.check_jobs``), else ConfigError."""
    try:
        check_jobs(st[key], name)
    except ValidationError as e:
        raise ConfigError(str(e)) from None


def _check_folder(out: Path, cfg: dict) -> None:
    """OUT is new, holds none of the files ``drn compare`` replaces (``REPLACED``; a folder of ``cells/`` alone
    resumes), or holds a study of the same ``study.name`` (read from ``OUT/config.toml``): a re-run with other
    settings, grid and seeds included, adds cells beside the old ones (a cell id names its grid point and every
    setting that shapes its rows); else ConfigError naming OUT."""
    import tomllib

    if not out.is_dir():
        return
    if not (out / "config.toml").is_file():
        found = [n for n in REPLACED if (out / n).exists()]
        if found:
            raise ConfigError(f"--out {out} is not a drn compare results folder (no config.toml file) but holds "
                              f"{', '.join(found)}, which drn compare would replace: give a new --out")
        return
    try:
        was = tomllib.loads((out / "config.toml").read_text())["study"]["name"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        was = None
    if not isinstance(was, str):
        raise ConfigError(f"--out {out}: its config.toml is not a study config (no study.name): give a new --out")
    if was != cfg["study"]["name"]:
        raise ConfigError(f"--out {out} holds the study {was!r}, not {cfg['study']['name']!r}: a re-run resumes only "
                          f"a study of the same name; give a new --out")


def cells(cfg: dict) -> list[dict]:
    g = cfg["grid"]
    return [dict(depth=d, width=w, element=e, amplifier=a, seed=s)
            for d in g["depth"] for w in g["width"] for e in g["element"] for a in g["amplifier"]
            for s in cfg["study"]["seeds"]]


def cell_name(c: dict) -> str:
    return f"d{c['depth']}_w{c['width']}_{c['element']}_{c['amplifier']}_s{c['seed']}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def training_settings(cfg: dict) -> dict:
    """What shapes a cell's network besides the grid: the ``[train]`` section (and the data split if trained)."""
    tr = dict(cfg["train"])
    return tr if tr["epochs"] == 0 else dict(tr, data_seed=cfg["study"]["data_seed"])


def row_settings(cfg: dict) -> dict:
    """Everything besides the grid point that shapes a cell's rows (``ROW_KEYS`` and the training)."""
    return {"study": {k: cfg["study"].get(k) for k in ROW_KEYS}, "train": training_settings(cfg)}


def cell_id(cfg: dict, c: dict) -> str:
    """``<cell>-<digest of row_settings>``: equal ids have equal settings."""
    return f"{cell_name(c)}-{_digest(row_settings(cfg))}"


def cell_csv(out: Path, cfg: dict, c: dict, runner: str) -> Path:
    """``OUT/cells/<cell id>.<runner>.csv``: the rows of one runner of one cell."""
    return out / "cells" / f"{cell_id(cfg, c)}.{runner}.csv"


def _memory() -> str:
    """`` 24 GB`` (physical memory), or nothing where the OS does not say."""
    try:
        return f" {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB"
    except (AttributeError, ValueError, OSError):
        return ""


def provenance(cfg: dict) -> dict[str, str]:
    import scipy

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent,
                                  timeout=10).stdout.strip()
        except OSError:
            return ""

    commit = (git("rev-parse", "--short", "HEAD") or "unknown") + ("-dirty" if git("status", "--porcelain") else "")
    return {"study": cfg["study"]["name"], "config_sha256": cfg["hash"], "settings": json.dumps(row_settings(cfg)),
            "cell_jobs": str(cfg["study"]["cell_jobs"]), "git_commit": commit,
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "ngspice": ngspice_version(), "python": platform.python_version(),
            "machine": f"{platform.machine()} {os.cpu_count()} cores{_memory()}",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "eps_l1_V": str(EPS_L1)}


def write_csv(df: pd.DataFrame, path: Path, prov: dict[str, str]) -> None:
    """CSV with ``# key: value`` provenance lines first (read back with ``comment='#'``, ``read_provenance``),
    written atomically (``atomic_write``)."""
    with atomic_write(path, "w") as f:
        f.writelines(f"# {k}: {v}\n" for k, v in prov.items())
        df.to_csv(f, index=False)


def read_provenance(path: Path) -> dict[str, str]:
    """The ``# key: value`` header lines of a CSV written by ``write_csv``."""
    prov = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("# "):
                break
            k, _, v = line[2:].rstrip("\n").partition(": ")
            prov[k] = v
    return prov


def network_for(cfg: dict, c: dict, out: Path) -> Any:
    """The cell's network: loaded from ``OUT/networks`` if present and whole, else built (and trained) and saved."""
    path = out / "networks" / f"{cell_name(c)}-{_digest(training_settings(cfg))}.npz"
    if path.is_file():
        try:
            return load_network(path)
        except NetworkFormatError as e:  # e.g. cut short by a full disk before writes were atomic: rebuild
            print(f"rebuilding {path.name}: {e}", file=sys.stderr)
    kind, rails = ELEMENTS[c["element"]]
    data = load_digits(seed=cfg["study"]["data_seed"])
    net = defaults.network(data["train"].x, [c["width"]] * c["depth"], 10, kind, rails_=rails, seed=c["seed"],
                           amplifier=_amplifier(c["amplifier"]))
    tr = cfg["train"]
    if tr["epochs"] > 0:  # the training defaults (cdsolver/defaults.py) for what [train] does not set
        tcfg = TrainConfig(**dict(tr, seed=c["seed"]))
        state = TrainState.start(net, len(data["train"].x), tcfg)
        t0 = time.perf_counter()
        train(net, data, tcfg, state=state)
        net = state.model(net)
        net.extra_meta["training"] = {"epochs": tr["epochs"], "seconds": time.perf_counter() - t0,
                                      "test_error": evaluate(net, data["test"], tcfg)[0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_network(net, path)
    return net


def run_cell(cfg: dict, c: dict, out: Path, prov: dict[str, str]) -> str:
    """CD and every runner not yet done on the cell's samples; each runner's rows go to ``cell_csv`` as soon as
    it finishes, so an interrupted cell resumes at the runner it was in (CD is re-solved: cheap). Returns the
    cell id. Runs in a worker for parallel cells."""
    st = cfg["study"]
    todo = [r for r in st["runners"] if not cell_csv(out, cfg, c, r).is_file()]
    if not todo:
        return cell_id(cfg, c)
    net = network_for(cfg, c, out)
    trained = net.extra_meta.get("training", {})
    val = load_digits(seed=st["data_seed"])["val"]
    v0 = net.encode(val.x[: st["samples"]])
    kernels.backend()  # numba's import and the kernels' load are paid once per process, outside the clock
    t = time.perf_counter()
    cd = solve(net, v0, tol=st["cd_tol"])
    cd_s = (time.perf_counter() - t) / len(v0)
    for r in todo:
        res = run(net, v0, runner=r, jobs=st["jobs"], timeout=st["timeout"])
        if res.interrupted:
            raise KeyboardInterrupt
        err, mx = rel_l1(cd.states, res.states), max_abs(cd.states, res.states)
        rows = [dict(**c, runner=r, sample=b, rel_l1=err[b], max_abs_V=mx[b], cd_sweeps=cd.iterations[b],
                     cd_converged=cd.converged[b], cd_s=cd_s, spice_s=res.wall[b], spice_iterations=res.iterations[b],
                     spice_ok=res.ok[b], spice_fallback=res.fallback[b], spice_reason=res.reason[b],
                     test_error=trained.get("test_error", np.nan), train_epochs=trained.get("epochs", 0),
                     train_s=trained.get("seconds", np.nan), cell_id=cell_id(cfg, c))
                for b in range(len(v0))]
        df = pd.DataFrame(rows, columns=COLUMNS)
        if st["gradients"]:  # study.gradients = true: per-sample gradient errors vs implicit, through this runner
            df = gradient_columns(df, net, val, cfg)
        write_csv(df, cell_csv(out, cfg, c, r), prov)
    return cell_id(cfg, c)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell and runner: P50/P90/P99/max relative L1 (``numpy.percentile``, linear, over the samples ngspice
    solved), max |error| (V), failures, sweeps/iterations, times (s/sample) and the median speed-up."""
    keys = ["depth", "width", "element", "amplifier", "seed", "runner"]

    def one(g: pd.DataFrame) -> pd.Series:
        ok = g[g.spice_ok]
        return pd.Series({
            "test_error": g.test_error.iloc[0], "train_epochs": g.train_epochs.iloc[0], "train_s": g.train_s.iloc[0],
            "samples": len(g), "spice_failed": int((~g.spice_ok).sum()),
            **{f"rel_l1_{k}": v for k, v in percentiles(ok.rel_l1.to_numpy()).items()},
            "max_abs_V": ok.max_abs_V.max(), "cd_sweeps_mean": g.cd_sweeps.mean(),
            "cd_not_converged": int((~g.cd_converged).sum()),
            "spice_iterations_median": g.spice_iterations.median(), "cd_s": g.cd_s.mean(),
            "spice_s_median": g.spice_s.median(), "spice_s_mean": g.spice_s.mean(),
            "speedup_median": g.spice_s.median() / g.cd_s.mean(), **gradient_summary(g)})

    return df.groupby(keys).apply(one, include_groups=False).reset_index()


def compare(config: str | Path, out: str | Path | None = None, jobs: int | None = None,
            max_samples: int | None = None, progress: bool = True, cell_jobs: int | None = None,
            dask: str | None = None) -> pd.DataFrame:
    """Run (or resume) a study; returns the summary. ``jobs``/``max_samples``/``cell_jobs`` override the config.

    cell_jobs: cells run at once (joblib loky processes; default 1, so that the timings of one cell are not
    disturbed by another). dask: address of a Dask scheduler (``tcp://host:8786``); cells then go to its workers
    through joblib's ``dask`` backend (``pip install 'drn-cd[dask]'``; OUT must be on storage every worker sees).
    Everything is validated before OUT is touched; an OUT holding another study (``_check_folder``) or files of
    the names ``compare`` writes without being a study folder is refused; a second ``compare`` on the same OUT stops
    (``OUT/.lock``).
    """
    cfg = load_config(config)
    for key, val in (("jobs", jobs), ("cell_jobs", cell_jobs)):
        if val is not None:
            cfg["study"][key] = val
            _check_jobs(cfg["study"], key, "--" + key.replace("_", "-"))
    if max_samples is not None:
        if max_samples < 1:
            raise ConfigError(f"--max-samples must be >= 1, got {max_samples}")
        cfg["study"]["samples"] = min(cfg["study"]["samples"], max_samples)
    if dask:
        _check_dask_address(dask)
    out = Path(out or Path("results") / cfg["study"]["name"])
    check_out(out, folder=True, inputs=(config,))
    _check_folder(out, cfg)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    with _lock(out):
        _check_folder(out, cfg)  # (again under the lock: a run that ended since the check may have written OUT)
        try:
            command = " ".join(["drn compare", str(config), "--out", str(out)] + [
                f"--{k.replace('_', '-')} {v}" for k, v in (("jobs", jobs), ("max_samples", max_samples),
                                                           ("cell_jobs", cell_jobs), ("dask", dask)) if v is not None])
            return _compare(cfg, Path(config), out, progress, dask, command)
        except OSError as e:  # a full disk or a folder that went away; every finished runner file is whole
            raise ConfigError(f"cannot write in {out} ({e.strerror or e}); the finished cells and runners are "
                              f"kept, the same command resumes") from None


def _check_dask_address(address: str) -> None:
    """``--dask``: a scheduler address with a port (``tcp://host:8786``), and the optional package installed."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError:
        raise ConfigError("--dask needs Dask's distributed package: pip install 'drn-cd[dask]'") from None
    try:
        parse_host_port(parse_address(address)[1])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--dask {address!r} is not a scheduler address like tcp://host:8786 ({e})") from None


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` (an advisory lock the system drops when the process ends) for the whole study."""
    import fcntl

    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(f"{out} is in use by another drn compare ({f.read().strip() or 'unknown process'}); "
                              f"wait for it or use another --out") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        yield


def _compare(cfg: dict, config: Path, out: Path, progress: bool, dask: str | None, command: str) -> pd.DataFrame:
    from joblib import Parallel, delayed, parallel_config

    with atomic_write(out / "config.toml", "w") as f:  # the config of the latest run; each cell keeps its own
        f.write(config.read_text())
    prov = provenance(cfg) | {"command": command}
    todo = cells(cfg)
    runners = cfg["study"]["runners"]
    paths = [[cell_csv(out, cfg, c, r) for r in runners] for c in todo]
    for c, ps in zip(todo, paths):
        if all(p.is_file() for p in ps):
            print(f"skip {cell_id(cfg, c)} (done: {', '.join(p.name for p in ps)})", file=sys.stderr)
    pending = [c for c, ps in zip(todo, paths) if not all(p.is_file() for p in ps)]
    if dask:
        from dask.distributed import Client

        try:
            client = Client(dask, timeout="10s")
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot reach the Dask scheduler {dask!r}: {e}") from None
        backend = parallel_config(backend="dask")
    else:
        client, backend = None, parallel_config(backend="loky")
    try:
        with backend:
            done = Parallel(n_jobs=-1 if dask else cfg["study"]["cell_jobs"], return_as="generator_unordered")(
                delayed(run_cell)(cfg, c, out, prov) for c in pending)
            if progress:
                from tqdm import tqdm

                done = tqdm(done, total=len(pending), desc="cells", unit="cell", file=sys.stderr)
            for _ in done:
                pass
    finally:
        if client is not None:
            client.close()
    files = [p for ps in paths for p in ps]
    df = pd.concat([pd.read_csv(p, comment="#") for p in files], ignore_index=True)
    write_csv(df, out / "samples.csv", dict(prov, note="rows of earlier runs keep their provenance: provenance.csv"))
    cell_prov = pd.DataFrame([dict(cell_id=p.name.rsplit(".", 2)[0], runner=p.name.rsplit(".", 2)[1],
                                   **read_provenance(p)) for p in files])
    write_csv(cell_prov, out / "provenance.csv", {})
    summ = summarize(df)
    write_csv(summ, out / "summary.csv", prov)
    summ.attrs["out"] = str(out)  # (where the files went: the CLI names them)
    return summ
