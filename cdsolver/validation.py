"""Validation of user arrays: shape, dtype, finiteness; messages name the argument, what was expected and got."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where used: ``drn --help`` loads this module (see studies/cli.py)
    import numpy as np

__all__ = ["ValidationError", "check_array", "check_inputs", "check_int", "check_timeout", "check_tol", "plain", "real",
           "whole", "MAX_TIMEOUT"]

#: The longest time limit (s) one ngspice run accepts: a day (a ``.dc`` sweep of n samples gets up to 21 times it).
MAX_TIMEOUT = 86400.0


class ValidationError(ValueError):
    """Bad user input (an argument, array, file or config): the message names it; the CLI prints it as one
    line and exits 2. Any other exception is a bug and keeps its traceback."""


def _no_archive(x: Any, name: str) -> None:
    """ValidationError if ``x`` is an opened ``.npz`` archive (``np.load`` of an .npz file), which NumPy would
    read as an array of its key names."""
    import numpy as np

    if isinstance(x, np.lib.npyio.NpzFile):
        raise ValidationError(f"{name}: got an .npz archive (arrays {', '.join(x.files) or 'none'}), not one array: "
                              f"give a .npy file (numpy.save)")


def check_array(x: Any, name: str, shape: tuple[int | None, ...], finite: bool = True) -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 array of ``shape`` (``None`` = any length), finite unless ``finite``
    is False (NaN and inf allowed: diagnostics of states such as a failed ngspice sample's)."""
    import numpy as np

    _no_archive(x, name)
    kind = np.asarray(x).dtype.kind
    if kind not in "fiub":
        raise ValidationError(f"{name}: expected real numbers, got dtype {np.asarray(x).dtype}")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"{name}: expected a numeric array, got {type(x).__name__} ({e})") from None
    want = "(" + ", ".join("batch" if s is None else str(s) for s in shape) + ")"
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ValidationError(f"{name}: expected shape {want}, got {a.shape}")
    a = np.ascontiguousarray(a)  # (after the shape test: it makes a 0-d array 1-d)
    if finite and not np.all(np.isfinite(a)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValidationError(f"{name}: entry {list(idx)} is {a[idx]} (NaN/inf not allowed)")
    return a


def check_inputs(x: Any, n: int, name: str = "inputs") -> np.ndarray:
    """A batch of samples ``(batch, n)``; a 1-D array is refused too (one sample is ``(1, n)``), so that a flat
    array is never read as a batch of some other shape."""
    import numpy as np

    _no_archive(x, name)
    if np.ndim(x) == 1:
        raise ValidationError(f"{name}: expected shape (batch, {n}), got {np.shape(x)} (one sample is an array of "
                              f"shape (1, {n}))")
    return check_array(x, name, (None, n))


def check_timeout(t: float | None, name: str = "timeout") -> float | None:
    """A time limit in seconds: None (the default limit), or a number in (0, ``MAX_TIMEOUT``]."""
    if t is None:
        return None
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected seconds, got {t!r}") from None
    if not 0 < t <= MAX_TIMEOUT:  # (NaN fails too)
        raise ValidationError(f"{name}: expected seconds in (0, {MAX_TIMEOUT:g}], got {t:g}")
    return t


def plain(x: Any) -> Any:
    """A NumPy scalar or 0-d array as the Python number it holds (``np.float32(40)``, or a value read from an
    ``.npz`` file); anything else unchanged."""
    return x.item() if getattr(x, "ndim", None) == 0 and hasattr(x, "item") else x


def real(x: Any) -> bool:
    """A real number (Python's, NumPy's, a 0-d array of one, a Fraction or a Decimal), not a bool and not a string
    that holds one."""
    import decimal
    import numbers

    x = plain(x)
    return isinstance(x, (numbers.Real, decimal.Decimal)) and not isinstance(x, bool)


def whole(x: Any) -> int | None:
    """``x`` as an int if it is a whole number (an int, a real number without a fraction such as 1e4, NumPy's or a
    0-d array of one), else None (bools, strings, 1.7, NaN, inf)."""
    import math
    import numbers

    x = plain(x)
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):
        return int(x)
    if real(x) and math.isfinite(x) and float(x).is_integer():
        return int(x)
    return None


def check_int(x: Any, name: str, low: int, high: int | None = None) -> int:
    """A whole number (``whole``) in ``[low, high]`` (``high`` None: no upper bound), as an int; else
    ValidationError naming ``name`` (a float such as 1.7 was cut to 1, inf or NaN raised OverflowError or
    ValueError)."""
    rule = f"{name} must be >= {low}" if high is None else f"{name} must be in [{low}, {high}]"
    n = whole(x)
    if n is None:
        raise ValidationError(f"{rule} (a whole number), got {x!r}")
    if not (low <= n and (high is None or n <= high)):
        raise ValidationError(f"{rule}, got {n}")
    return n


def check_tol(tol: Any, name: str = "tol") -> float:
    """A solver's relative tolerance: a number in (0, 1) (at 1 or more the stop accepts a KCL residual as large as
    ``I_ref`` itself: states 9 % off were reported converged), as a float; else ValidationError naming ``name``
    (a string is not a number: ``"1e-3"`` passed this check, then broke the solver)."""
    if not real(tol):
        raise ValidationError(f"{name} must be a finite number > 0 and < 1, got {tol!r}")
    t = float(plain(tol))
    if not 0 < t < 1:  # (NaN fails too)
        raise ValidationError(f"{name} must be a finite number > 0 and < 1, got {t:g}")
    return t
