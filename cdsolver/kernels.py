"""Fused node kernels: a layer's exact node update, compiled with numba.

``update`` is what a sweep calls for one layer: it sums the drive ``c`` (A) from its parts, solves every node's
KCL ``a*v - c + I(v) = 0`` exactly (the same closed forms as ``elements``), and returns the largest KCL residual of
the layer's previous voltages ``old`` per sample — the stopping test's residual, at no extra exponential. For
Shockley nodes, ``old`` also serves as the Newton start: where one Newton step from it is provably final (the
rules are in ``_numba_kernels._newton_step`` and docs/solver.md), the closed form is skipped, so a
converging sweep costs one exponential per node (the two diode sides' exponentials have a known product).

Backends (``backend()``): ``"numba"`` (default; ``parallel=True`` over samples, ``cache=True``, no fastmath) or
``"numpy"``, the reference implementation in ``elements``, used where numba cannot be imported or when the
environment sets ``DRN_KERNELS=numpy``. Both give the same voltages to rounding (tests/test_kernels.py). The
interface is arrays in, arrays out, so another array backend can implement it.
"""

from __future__ import annotations

import os
import time
from types import ModuleType

import numpy as np

from .elements import Element, Ideal, Linear, LinearPair, Pwl, Shockley
from .validation import ValidationError

__all__ = ["backend", "update", "LayerKernel", "compile_seconds", "compiled", "parallel"]

# Element codes of the kernel
_LINEAR, _IDEAL, _SHOCKLEY, _PWL, _PAIR = range(5)
#: Layers with fewer nodes (samples x nodes) run in one thread: starting threads costs more than the work.
_PARALLEL_NODES = 1 << 15

_compiled = None  # the numba module functions once compiled, False if numba is unavailable
_compile_s = 0.0
_UNSET = object()  # a LayerKernel's backend before its first update


def backend() -> str:
    """``"numba"`` or ``"numpy"``: the implementation ``update`` uses (``DRN_KERNELS`` chooses; numba needs the
    package)."""
    choice = os.environ.get("DRN_KERNELS", "numba").lower()
    if choice not in ("numba", "numpy"):
        raise ValidationError(f"environment variable DRN_KERNELS must be 'numba' or 'numpy', got {choice!r}")
    return "numba" if choice == "numba" and _numba() else "numpy"


def compile_seconds() -> float:
    """Seconds spent importing numba and loading (or, on a first run, compiling) the kernels in this process."""
    return _compile_s


def _numba():
    """The compiled module, or False where numba cannot be imported (the NumPy reference then runs). Where numba
    imports but the kernels do not load (e.g. an on-disk cache written for a copy of the package under another
    name), RuntimeError says what to do: falling back would make every solve ~3x slower without a word."""
    global _compiled, _compile_s
    if _compiled is None:
        t = time.perf_counter()
        try:
            from numba import __version__ as version, njit  # noqa: F401  (an empty `numba` directory imports too)
        except ImportError:
            _compiled = False
        except ValueError as e:  # (numba refuses some of its settings while it loads: NUMBA_NUM_THREADS=0)
            given = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("NUMBA_"))
            raise ValidationError(f"numba did not load: {e} (environment: {given or 'no NUMBA_ settings'})") from None
        else:
            try:
                from . import _numba_kernels

                _numba_kernels.warm_up()
            except Exception as e:
                cache = (f"under NUMBA_CACHE_DIR={os.environ['NUMBA_CACHE_DIR']}" if os.environ.get("NUMBA_CACHE_DIR")
                         else f"in {os.path.join(os.path.dirname(__file__), '__pycache__')}")
                raise RuntimeError(
                    f"numba {version} is installed, but cdsolver's compiled node kernels did not load "
                    f"({type(e).__name__}: {e}); if numba's cache of them is stale (the _numba_kernels.* files "
                    f"{cache}), delete it to compile them afresh; or set DRN_KERNELS=numpy for the NumPy "
                    f"reference") from e
            _compiled = _numba_kernels
        _compile_s = time.perf_counter() - t
    return _compiled


def parallel(nodes: int) -> bool:
    """Whether a compiled pass over ``nodes`` node updates (samples × nodes) runs its samples in parallel."""
    return nodes >= _PARALLEL_NODES


def compiled() -> "ModuleType | None":
    """The compiled numba module (``_numba_kernels``) when ``backend()`` is ``"numba"``, else None."""
    return _compiled if backend() == "numba" else None


def _params(element: Element) -> tuple[int, np.ndarray, np.ndarray]:
    """(code, [Is, Vd, g], table (K, 3): v_k, i_k, s_k) of an element for the kernel."""
    table = np.zeros((0, 3))
    if isinstance(element, LinearPair):
        return _PAIR, np.array([0.0, 1.0, element.g]), table
    if isinstance(element, Shockley):
        return _SHOCKLEY, np.array([element.Is, element.Vd, 0.0]), table
    if isinstance(element, Pwl):
        table = np.column_stack([element.vk, element.ik, np.append(element.sk, 0.0)])
        return _PWL, np.array([0.0, 1.0, 0.0]), table
    if isinstance(element, Ideal):
        return _IDEAL, np.array([0.0, 1.0, 0.0]), table
    if isinstance(element, Linear):
        return _LINEAR, np.array([0.0, 1.0, 0.0]), table
    raise TypeError(f"no kernel for element {element!r}")


class LayerKernel:
    """One layer's element and per-node constants (``a`` in S, rails in V, each ``(n,)``), prepared once for the
    repeated updates of a solve (``update``)."""

    def __init__(self, element: Element, a: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int):
        self.element, self.n = element, n
        self._nk = _UNSET  # the compiled module or None (NumPy), chosen at the first update (a solve's kernels)
        self.a, self.lo, self.hi = (_arr(np.broadcast_to(q, (n,))) for q in (a, lo, hi))
        self.code, self.prm, self.table = _params(element)
        if self.code == _PAIR and n % 2:
            raise ValueError(f"paired output nodes come in pairs (v+ then v-): got {n} nodes")
        self.lnk = self.shift = self.kp = self.ia = np.zeros(n)
        if self.code == _SHOCKLEY:
            self.ia = 1.0 / self.a  # (the closed form's start: a product where a division costs ~3x as much)
            self.lnk = np.log(element.Is / (self.a * element.Vd))
            with np.errstate(under="ignore"):  # (rails more than 708 Vd apart: subnormal or 0)
                self.kp = np.exp((self.lo - self.hi) / element.Vd)  # the product of the two sides' exponentials
            self.shift = element._sides(self.lo, self.hi)  # the -1 terms of I, moved to the drive

    def update(self, c: np.ndarray, c2: np.ndarray | None = None, fixed: np.ndarray | None = None,
               old: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """New voltages (V, ``(B, n)``) and the largest ``|KCL|`` (A, ``(B,)``) of ``old``; see ``update``."""
        c = np.asarray(c, dtype=np.float64)
        B = c.shape[0]
        if self._nk is _UNSET:
            self._nk = compiled()
        if self._nk is None:
            if fixed is not None:
                c = c + fixed
            if c2 is not None:
                c = c + c2
            el, a, lo, hi = self.element, self.a, self.lo, self.hi
            v = el.solve_reference(a, c, lo, hi)
            r = np.zeros(B) if old is None else np.abs(el.residual(old, a, c, lo, hi)).max(axis=1, initial=0.0)
            return v, r
        empty = np.zeros((0, 0))
        v, r = np.empty((B, self.n)), np.zeros(B)
        args = (self.code, _arr(c), empty if c2 is None else _arr(c2),
                empty if fixed is None else _arr(np.atleast_2d(fixed)), self.a, self.ia, self.lnk, self.kp, self.shift,
                self.lo, self.hi, self.prm, self.table, empty if old is None else _arr(old), v, r)
        if parallel(B * self.n):
            bad = self._nk.layer_parallel(*args, self._nk.threads())
        else:
            bad = self._nk.layer_serial(*args)
        if bad:
            raise RuntimeError(f"Shockley node update did not converge in 200 safeguarded Newton steps ({bad} "
                               f"nodes)")
        return v, r


def update(element: Element, a: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray,
           c2: np.ndarray | None = None, fixed: np.ndarray | None = None,
           old: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """New voltages (V, ``(B, n)``) of one layer and the largest ``|KCL|`` (A, ``(B,)``) of ``old``.

    ``a``, ``lo``, ``hi``: per node ``(n,)`` (S, V, V). The drive is ``(fixed + c) + c2`` (A): ``c`` ``(B, n)``,
    ``c2`` ``(B, n)`` or None, ``fixed`` ``(n,)``, ``(B, n)`` or None. ``old``: the layer's previous voltages
    ``(B, n)`` or None (then the residual is 0). A solve prepares each layer once (``LayerKernel``).
    """
    return LayerKernel(element, a, lo, hi, np.shape(c)[1]).update(c, c2, fixed, old)


def _arr(x) -> np.ndarray:
    """``x`` as a C-contiguous, writeable float64 array (the one array type the kernel is compiled for)."""
    if type(x) is np.ndarray and x.dtype == np.float64 and x.flags.c_contiguous and x.flags.writeable:
        return x  # (the usual case, without np.require's overhead)
    return np.require(x, np.float64, "CW")


def solve(element: Element, a, c, lo, hi) -> np.ndarray:
    """``element.solve`` through the kernel, for any broadcastable shapes (flattened to one row when ``a``, ``lo``,
    ``hi`` are not per-node vectors of ``c``'s last axis; paired outputs then use the reference)."""
    c = np.asarray(c, dtype=np.float64)
    if backend() == "numpy" or c.size == 0:
        return element.solve_reference(a, c, lo, hi)
    n = c.shape[-1] if c.ndim else 1
    if c.ndim and all(np.ndim(q) <= 1 and np.size(q) in (1, n) for q in (a, lo, hi)):
        return update(element, a, lo, hi, c.reshape(-1, n))[0].reshape(c.shape)
    if isinstance(element, LinearPair):
        return element.solve_reference(a, c, lo, hi)
    shape = np.broadcast_shapes(c.shape, np.shape(a), np.shape(lo), np.shape(hi))
    a, c, lo, hi = (np.broadcast_to(q, shape).reshape(-1) for q in (a, c, lo, hi))
    return update(element, a, lo, hi, c[None, :])[0].reshape(shape)
