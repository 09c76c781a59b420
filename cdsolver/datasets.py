"""Datasets as features scaled to [0, 1] (docs/formats.md#inputs): scikit-learn's Digits (shipped with the package),
MNIST-format files from a user's folder, and Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
(``make data``). Nothing is ever downloaded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import ValidationError, check_inputs, check_int

__all__ = ["Split", "check_split", "DatasetError", "load_digits", "load_mnist", "load_fashion_mnist", "read_idx",
           "FASHION_DIR"]

#: Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files (``dpkg -L dataset-fashion-mnist``).
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass
class Split:
    """Features ``x`` in [0, 1], shape ``(n, n_features)``, and integer labels ``y``."""

    x: np.ndarray
    y: np.ndarray


def check_split(split: Split, name: str, n_features: int, n_classes: int) -> None:
    """ValidationError naming ``name`` unless ``split`` holds at least one sample, features ``(n, n_features)``
    (finite) and ``n`` labels, integers ``0..n_classes-1`` (a label -1 trained towards the last class, labels of
    shape ``(n, 1)`` counted 5.5 errors per sample, an empty split divided by zero)."""
    if not isinstance(split, Split):
        raise ValidationError(f"{name}: expected a cdsolver.datasets.Split (x, y), got {type(split).__name__}")
    x = check_inputs(split.x, n_features, f"{name}.x")
    y = np.asarray(split.y)
    if len(x) == 0:
        raise ValidationError(f"{name}: no samples")
    if y.shape != (len(x),):
        raise ValidationError(f"{name}.y: expected {len(x)} labels, shape ({len(x)},), got shape {y.shape}")
    if not (y.dtype.kind in "iu" and y.min() >= 0 and y.max() < n_classes):
        span = f"{y.min():g}..{y.max():g}" if y.dtype.kind in "iuf" else ""
        raise ValidationError(f"{name}.y: labels must be integers 0..{n_classes - 1} (the network's {n_classes} "
                              f"classes), found {y.dtype} {span}".rstrip())


def load_digits(seed: int = 0, n_val: int = 360, n_test: int = 360) -> dict[str, Split]:
    """Digits (1797 images 8x8, values /16): a fixed random train/val/test split given by ``seed``."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x, y = d.data.astype(np.float64) / 16.0, d.target.astype(np.int64)
    idx, (n_val, n_test) = _permutation(len(x), seed, "Digits' images", n_val=n_val, n_test=n_test)
    parts = {"test": idx[:n_test], "val": idx[n_test:n_test + n_val], "train": idx[n_test + n_val:]}
    return {k: Split(x[i], y[i]) for k, i in parts.items()}


class DatasetError(ValidationError):
    """A data file is missing or malformed; the message says which and what is expected."""


def _permutation(n: int, seed: int | None, of: str, **held_out: int) -> tuple[np.ndarray, list[int]]:
    """(the seeded permutation of ``n`` samples (``of``: what they are) that a split takes its parts from, the sizes
    of the parts ``held_out`` (``n_val``, ``n_test``) as ints), after checking those: each a whole number >= 1,
    leaving >= 1 sample for training (a negative size made test and training samples overlap; ``load_mnist``'s
    ``n_val = 0`` left no training set). ``seed`` None: a fresh random split."""
    sizes = [check_int(k, key, 1) for key, k in held_out.items()]
    if sum(sizes) >= n:
        raise ValidationError(f"{' + '.join(held_out)} must be < {n} ({of}: some must be left to train on), got "
                              f"{' + '.join(map(str, sizes))}")
    return np.random.default_rng(None if seed is None else check_int(seed, "seed", 0)).permutation(n), sizes


_IDX = {  # split: (images, labels) file stems
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path) -> np.ndarray:
    """An IDX file (``.gz`` or not): magic ``0x0000 <type 0x08 = uint8> <ndim>``, big-endian sizes, data."""
    import gzip
    import zlib
    from pathlib import Path

    p = Path(path)
    try:
        with gzip.open(p) if p.suffix == ".gz" else open(p, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a cut .gz ends in EOFError
        raise DatasetError(f"{p}: cannot read ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DatasetError(f"{p}: not an IDX file of unsigned bytes (bad magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{p}: header says shape {shape} ({int(np.prod(shape))} bytes), file has {body.size}")
    return body.reshape(shape)


def load_fashion_mnist(data_dir=FASHION_DIR, n_val: int = 5000, seed: int = 0) -> dict[str, Split]:
    """Fashion-MNIST (70,000 28x28 images, 10 classes) from its four IDX files, by default those of Debian's
    ``dataset-fashion-mnist`` package; split like ``load_mnist``."""
    from pathlib import Path

    if not Path(data_dir).is_dir():
        hint = (" — install Debian's package with `make data` (apt-get install dataset-fashion-mnist)"
                if str(data_dir) == FASHION_DIR else "")
        raise DatasetError(f"Fashion-MNIST folder not found: {data_dir}{hint}, or pass a folder with the four "
                           f"IDX files (train-images-idx3-ubyte[.gz], ...)")
    return load_mnist(data_dir, n_val=n_val, seed=seed)


def load_mnist(data_dir, n_val: int = 5000, seed: int = 0) -> dict[str, Split]:
    """MNIST-format data from a user's folder: the four IDX files (``train-images-idx3-ubyte`` …, gzipped or
    not) or ``mnist.npz`` with ``x_train, y_train, x_test, y_test``. Pixels /255; the last ``n_val`` training
    images of a seeded permutation are the validation split. Nothing is downloaded."""
    from pathlib import Path

    d = Path(data_dir)
    if not d.is_dir():
        raise DatasetError(f"data folder not found: {d}")
    if (d / "mnist.npz").is_file():
        with np.load(d / "mnist.npz", allow_pickle=False) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise DatasetError(f"{d / 'mnist.npz'}: missing arrays {sorted(missing)}")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    else:
        arrays = {}
        for split, stems in _IDX.items():
            for key, stem in zip(("x", "y"), stems):
                found = [d / (stem + ext) for ext in ("", ".gz") if (d / (stem + ext)).is_file()]
                if not found:
                    raise DatasetError(f"{d}: neither mnist.npz nor {stem}[.gz] found; put the four MNIST IDX files "
                                       f"(train/t10k images and labels) or mnist.npz there")
                arrays[f"{key}_{split}"] = read_idx(found[0])
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DatasetError(f"{split}: {len(x)} images but {len(y)} labels")
        if y.ndim != 1 or x.ndim < 2 or len(y) == 0:
            raise DatasetError(f"{split}: expected images (n, rows, cols) and labels (n,), got {x.shape} and {y.shape}")
        for a, what, top in ((y, "labels must be classes", 9), (x, "pixels must be bytes", 255)):  # (pixels: /255)
            whole = a.dtype.kind in "iu"
            if not (whole and a.min() >= 0 and a.max() <= top):
                span = f"{a.min():g}..{a.max():g}" if a.dtype.kind in "iuf" else ""
                found = span if whole else f"{a.dtype} {span}".rstrip() + " (integers needed)"
                raise DatasetError(f"{split}: {what} 0..{top}, found {found}")
        out[split] = Split(x.reshape(len(x), -1).astype(np.float64) / 255.0, y.astype(np.int64))
    perm, (n_val,) = _permutation(len(out["train"].x), seed, f"the training images in {d}", n_val=n_val)
    tr, va = perm[:-n_val], perm[-n_val:]
    x, y = out["train"].x, out["train"].y
    out["train"], out["val"] = Split(x[tr], y[tr]), Split(x[va], y[va])
    return out
