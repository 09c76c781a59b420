"""Start-up of the command line: building the parser imports only the standard library and light project
modules (``drn --help`` fast), ``drn solve`` no pandas, matplotlib, PySpice, scikit-learn or joblib, and every
command's --help still works."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from studies.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "scipy", "pandas", "matplotlib", "PySpice", "sklearn", "joblib", "tqdm", "numba",
         "cdsolver.elements", "cdsolver.solver")


def _loaded_after(code: str) -> set[str]:
    """Top-level and project module names in sys.modules after running ``code`` in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    return set(json.loads(out))


def test_help_imports_nothing_heavy():
    loaded = _loaded_after("from studies.cli import build_parser\nbuild_parser().format_help()")
    assert "studies.cli" in loaded
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_solve_imports_only_what_it_uses(tmp_path, small_problem):
    small_problem(3)
    argv = ["solve", str(tmp_path / "net.npz"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "s.npz")]
    loaded = _loaded_after(f"from studies.cli import main\nassert main({argv!r}) == 0")
    assert "cdsolver.solver" in loaded
    unused = ("pandas", "matplotlib", "PySpice", "sklearn", "joblib", "tqdm", "spice_bridge.runners", "studies.compare")
    assert sorted(m for m in unused if m in loaded) == []


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command path of the parser, e.g. ("circuit", "check")."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _commands(sub, prefix + (name,))


def test_every_command_has_help(capsys):
    paths = list(_commands(build_parser()))
    assert {("solve",), ("train",), ("verify",), ("gradient",), ("circuit", "check")} <= set(paths)
    for path in paths:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0
        assert f"usage: drn {' '.join(path)}" in capsys.readouterr().out


def test_a_closed_stdout_ends_a_command_without_a_traceback(ngspice):
    """``drn doctor | head -1``: the reader leaves; drn stops with the shell's SIGPIPE status, no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "studies.cli", "doctor"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # before drn writes anything
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_solver_options_default_to_the_librarys():
    """``drn solve`` and ``drn circuit solve|check`` take their defaults from the functions they call (one source:
    cdsolver.constants), and their help states them."""
    import inspect

    from cdsolver import solve
    from cdsolver.graph import solve_circuit

    for path, fn in ((("solve",), solve), (("circuit", "solve"), solve_circuit), (("circuit", "check"), solve_circuit)):
        sub, params = _subparser(build_parser(), path), inspect.signature(fn).parameters
        for option, name in (("tol", "tol"), ("max_iter", "max_sweeps"), ("anderson", "anderson")):
            assert sub.get_default(option) == params[name].default, (path, option)
            assert f"(default: {params[name].default:g})" in " ".join(sub.format_help().split()), (path, option)
