"""Comparison metrics of two sets of steady states (docs/studies.md)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: ε in the relative L1 error ‖v_cd − v_spice‖₁ / (‖v_spice‖₁ + ε), V.
EPS_L1 = 1e-12


def rel_l1(cd: Sequence[np.ndarray], spice: Sequence[np.ndarray], eps: float = EPS_L1) -> np.ndarray:
    """Per-sample relative L1 error over hidden + output nodes (NaN where SPICE failed)."""
    a, b = np.concatenate(cd, axis=1), np.concatenate(spice, axis=1)
    return np.abs(a - b).sum(axis=1) / (np.abs(b).sum(axis=1) + eps)


def max_abs(cd: Sequence[np.ndarray], spice: Sequence[np.ndarray]) -> np.ndarray:
    """Per-sample largest absolute node-voltage difference, V."""
    return np.abs(np.concatenate(cd, axis=1) - np.concatenate(spice, axis=1)).max(axis=1)


def percentiles(x: np.ndarray) -> dict[str, float]:
    """P50/P90/P99/max of the finite values (``numpy.percentile``, linear interpolation)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"p50": np.nan, "p90": np.nan, "p99": np.nan, "max": np.nan}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": p50, "p90": p90, "p99": p99, "max": x.max()}
