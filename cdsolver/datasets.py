"""Datasets as features scaled to [0, 1] (SPEC §4): scikit-learn's Digits (shipped with the package)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "load_digits"]


@dataclass
class Split:
    """Features ``x`` in [0, 1], shape ``(n, n_features)``, and integer labels ``y``."""

    x: np.ndarray
    y: np.ndarray


def load_digits(seed: int = 0, n_val: int = 360, n_test: int = 360) -> dict[str, Split]:
    """Digits (1797 images 8x8, values /16): a fixed random train/val/test split given by ``seed``."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x, y = d.data.astype(np.float64) / 16.0, d.target.astype(np.int64)
    if n_val + n_test >= len(x):
        raise ValueError(f"n_val + n_test must be < {len(x)}, got {n_val} + {n_test}")
    idx = np.random.default_rng(seed).permutation(len(x))
    parts = {"test": idx[:n_test], "val": idx[n_test:n_test + n_val], "train": idx[n_test + n_val:]}
    return {k: Split(x[i], y[i]) for k, i in parts.items()}
