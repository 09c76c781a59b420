"""drn-cd: deep resistive networks solved exactly by coordinate descent.

The names below are loaded from their modules on first use (PEP 562), so that importing a light module such as
``cdsolver.constants`` (as ``drn --help`` does) does not load the solver and SciPy. Importing the package first
tells the thread pools to let idle threads sleep (``threads``), before numpy and numba load, and the C allocator to
keep the memory of large temporary arrays (``allocator``).
"""

import importlib

from . import allocator, threads

threads.configure()
allocator.configure()

_EXPORTS = {
    "constants": ["VT"],
    "elements": ["Ideal", "Linear", "Pwl", "Shockley"],
    "network": ["Amplifier", "Network", "NetworkFormatError", "load_network", "random_network", "save_network"],
    "solver": ["NotConvergedError", "Solution", "energy", "kcl", "load_states", "max_branch_current", "solve"],
}
_MODULE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'cdsolver' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
