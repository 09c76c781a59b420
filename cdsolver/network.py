"""The DRN model (docs/solver.md#model) and its network file, format ``drn/1`` (docs/formats.md).

Layers ``0..L``: layer 0 holds the input voltage sources, ``1..L-1`` are hidden, ``L`` is the output.
``G[l-1]`` (S, shape ``(n_{l-1}, n_l)``) is crossbar ``l``, ``b[l-1]`` (A) the bias into layer ``l``,
``lo[l-1]``/``hi[l-1]`` (V) the rails of hidden layer ``l``. Python lists are 0-based; file keys 1-based.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .constants import MAX_GAIN, OSANA_IS, OSANA_VD, OSANA_VOFF, R_OFF, R_ON
from .elements import Element, Ideal, Linear, Pwl, Shockley, element_from_meta
from .files import atomic_write, numpy_kind
from .topology import Layered
from .validation import ValidationError, check_inputs, check_int, plain, real, whole

__all__ = ["Network", "Amplifier", "NetworkFormatError", "load_network", "save_network", "random_network"]

FORMAT = "drn/1"
#: Smallest nonzero conductance (S): the deck's resistor 1/G must be a finite number (1/5e-309 S is inf).
G_MIN_NONZERO = 1e-300
ENCODINGS = ("pair", "identity")
OUTPUTS = ("single", "paired")
INVERT = ("none", "half")


class NetworkFormatError(ValidationError):
    """A network file or a Network's arrays do not follow format drn/1; the message names the problem."""


@dataclass(frozen=True)
class Amplifier:
    """Bidirectional amplifier after each hidden node: VCVS of gain ``A`` forward, CCCS of gain ``C`` back.
    ``invert="half"``: the second half of every hidden layer's amplifiers invert (gains ``−A`` and ``−C``), so
    the next crossbar sees each node's value with both signs, as the input pair encoding does for the inputs
    (positive conductances alone can then weigh a hidden node negatively, and the layers' common mode cancels)."""

    A: float
    C: float
    invert: str = "none"

    def __post_init__(self):
        for name in ("A", "C"):
            object.__setattr__(self, name, plain(getattr(self, name)))
            val = getattr(self, name)
            if not (_number(val) and 0 < val <= MAX_GAIN):
                raise NetworkFormatError(f"meta.amplifier.{name} must be a number in (0, {MAX_GAIN:g}], got {val!r}")
        if self.invert not in INVERT:
            raise NetworkFormatError(f"meta.amplifier.invert must be one of {INVERT}, got {self.invert!r}")

    def signs(self, n: int) -> np.ndarray:
        """Sign (±1) of each of ``n`` amplifiers of a hidden layer."""
        return np.where(np.arange(n) < (n + 1) // 2, 1.0, -1.0) if self.invert == "half" else np.ones(n)


@dataclass
class Network:
    """A deep resistive network. Constructing one validates it (errors name the offending array or key)."""

    G: list[np.ndarray]
    b: list[np.ndarray]
    lo: list[np.ndarray]
    hi: list[np.ndarray]
    element: Element
    input_gain: float = 1.0
    encoding: str = "pair"
    amplifier: Amplifier | None = None
    outputs: str = "single"
    r_on: float = R_ON
    r_off: float = R_OFF
    extra_meta: dict[str, Any] = field(default_factory=dict)
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.G = [_float_array(g, f"G{l}", 2) for l, g in enumerate(self.G, 1)]
        self.b = [_float_array(x, f"b{l}", 1) for l, x in enumerate(self.b, 1)]
        self.lo = [_float_array(x, f"lo{l}", 1, allow_inf=True) for l, x in enumerate(self.lo, 1)]
        self.hi = [_float_array(x, f"hi{l}", 1, allow_inf=True) for l, x in enumerate(self.hi, 1)]
        self.input_gain, self.r_on, self.r_off = (plain(x) for x in (self.input_gain, self.r_on, self.r_off))
        self._validate()

    # ---- structure ----
    @property
    def depth(self) -> int:
        """Number of crossbars ``L``."""
        return len(self.G)

    @property
    def sizes(self) -> list[int]:
        """Layer sizes ``[n_0, ..., n_L]``."""
        return [self.G[0].shape[0]] + [g.shape[1] for g in self.G]

    @property
    def n_features(self) -> int:
        """Number of input features a sample has before encoding."""
        return self.sizes[0] // 2 if self.encoding == "pair" else self.sizes[0]

    @property
    def A(self) -> float:
        return 1.0 if self.amplifier is None else float(self.amplifier.A)

    @property
    def C(self) -> float:
        return 1.0 if self.amplifier is None else float(self.amplifier.C)

    def signs(self, l: int) -> np.ndarray:
        """Sign (±1) of the amplifier of each node of hidden layer ``l`` (all +1 without inverting ones): the drive
        of crossbar ``l+1`` is ``A·signs(l)·v_l`` and its pull-back ``C·signs(l)·(G_{l+1} v_{l+1})``."""
        n = self.sizes[l]
        return np.ones(n) if self.amplifier is None else self.amplifier.signs(n)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Input-source voltages ``v0`` (V), shape ``(batch, n_0)``, from features ``x`` (batch, n_features)."""
        x = check_inputs(x, self.n_features, "inputs")
        v0 = np.concatenate([x, -x], axis=1) if self.encoding == "pair" else x.copy()
        with np.errstate(over="ignore"):
            v0 *= self.input_gain
        if not np.all(np.isfinite(v0)):  # (x is finite: the product overflowed)
            i, j = (int(k) for k in np.argwhere(~np.isfinite(v0))[0])
            j %= self.n_features
            raise ValidationError(f"inputs: entry [{i}, {j}] = {x[i, j]:g} times input_gain {self.input_gain:g} is "
                                  f"beyond float64 (no finite input voltage)")
        return v0

    @property
    def n_classes(self) -> int:
        """Number of outputs a target has: ``n_L``, or ``n_L/2`` with paired outputs."""
        return self.sizes[-1] // 2 if self.outputs == "paired" else self.sizes[-1]

    def decode(self, v_out: np.ndarray) -> np.ndarray:
        """Output values (V), ``(batch, n_classes)``: ``v_L`` itself, or ``v+ − v−`` with paired outputs (nodes
        ``k`` and ``K+k`` of the output layer are the pair of class ``k``). The prediction is its argmax."""
        if self.outputs == "paired":
            K = self.n_classes
            return v_out[:, :K] - v_out[:, K:]
        return v_out

    def decode_T(self, r: np.ndarray) -> np.ndarray:
        """The transpose of ``decode``: spreads ``(batch, n_classes)`` onto the output nodes (``[r, −r]``)."""
        return np.concatenate([r, -r], axis=1) if self.outputs == "paired" else r

    def g_nudge(self, beta: float) -> float:
        """Conductance (S) of each nudging branch (output to its target source; paired: ``v+`` to ``v−`` plus
        target): ``1/(1/β + R_on)`` when nudged (β ≠ 0), ``1/R_off`` (0 if ``R_off = inf``) in the free phase."""
        if not real(beta):  # (a string or None raised TypeError in math.isfinite)
            raise ValidationError(f"beta must be a number (S), got {beta!r}")
        beta = float(plain(beta))
        if not math.isfinite(beta) or beta * self.r_on <= -1:
            limit = 1 / self.r_on if self.r_on else math.inf
            raise ValidationError(f"beta = {beta:g} S: a nudge needs a finite beta, and a negative one |beta| < "
                                  f"1/R_on = {limit:g} S (else -1/|beta| in series with R_on is no longer a negative "
                                  f"resistance)")
        if beta != 0:
            return 1.0 / (1.0 / beta + self.r_on)
        return 0.0 if math.isinf(self.r_off) else 1.0 / self.r_off

    def copy(self) -> "Network":
        return copy.deepcopy(self)

    def meta(self) -> dict[str, Any]:
        """The JSON meta of the network file (unknown keys read from a file are kept)."""
        m = dict(self.extra_meta)
        m.update(
            format=FORMAT,
            input_gain=self.input_gain,
            encoding=self.encoding,
            element=self.element.to_meta(),
            amplifier=None if self.amplifier is None else {"A": self.amplifier.A, "C": self.amplifier.C,
                                                            "invert": self.amplifier.invert},
            outputs=self.outputs,
            switch={"R_on": self.r_on, "R_off": None if math.isinf(self.r_off) else self.r_off},
        )
        return m

    # ---- validation ----
    def _validate(self) -> None:
        L = self.depth
        if L < 1:
            raise NetworkFormatError("a network needs at least one crossbar (G1)")
        for name, arrs, want in (("b", self.b, L), ("lo", self.lo, L - 1), ("hi", self.hi, L - 1)):
            if len(arrs) != want:
                raise NetworkFormatError(f"expected {want} arrays {name}1..{name}{want}, got {len(arrs)}")
        for l in range(1, L):
            if self.G[l].shape[0] != self.G[l - 1].shape[1]:
                raise NetworkFormatError(
                    f"G{l + 1} has {self.G[l].shape[0]} rows but layer {l} has {self.G[l - 1].shape[1]} nodes (G{l})")
        n = self.sizes
        for l, g in enumerate(self.G, 1):
            if np.any(g < 0):
                i, j = np.argwhere(g < 0)[0]
                raise NetworkFormatError(f"G{l}[{i},{j}] = {float(g[i, j])} S: conductances must be >= 0")
            if 0 in g.shape:
                raise NetworkFormatError(f"G{l} has an empty dimension {g.shape}")
            tiny = (g > 0) & (g < G_MIN_NONZERO)
            if tiny.any():
                i, j = np.argwhere(tiny)[0]
                raise NetworkFormatError(f"G{l}[{i},{j}] = {float(g[i, j])} S: a nonzero conductance must be >= "
                                         f"{G_MIN_NONZERO:g} S (its resistance 1/G must be a finite number)")
        for l in range(1, L + 1):
            _check_len(self.b[l - 1], n[l], f"b{l}")
        for l in range(1, L):
            lo, hi = self.lo[l - 1], self.hi[l - 1]
            _check_len(lo, n[l], f"lo{l}")
            _check_len(hi, n[l], f"hi{l}")
            if np.any(lo == np.inf) or np.any(hi == -np.inf):
                raise NetworkFormatError(f"lo{l} may be -inf but not +inf, hi{l} +inf but not -inf")
            if np.any(lo > hi):
                j = int(np.argmax(lo > hi))
                raise NetworkFormatError(f"lo{l}[{j}] = {lo[j]} V > hi{l}[{j}] = {hi[j]} V")
        topo = Layered(self)
        for l in range(1, L + 1):
            total = topo.conductance(l)
            if np.any(total <= 0):
                j = int(np.argmax(total <= 0))
                raise NetworkFormatError(f"node {j} of layer {l} is floating: all its conductances are 0")
        if not isinstance(self.element, Element):
            raise NetworkFormatError(f"element must be an Element, got {type(self.element).__name__}")
        if not (_number(self.input_gain) and math.isfinite(self.input_gain)):
            raise NetworkFormatError(f"meta.input_gain must be a finite number, got {self.input_gain!r}")
        if self.encoding not in ENCODINGS:
            raise NetworkFormatError(f"meta.encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.encoding == "pair" and n[0] % 2:
            raise NetworkFormatError(f"encoding 'pair' needs an even number of inputs, G1 has {n[0]} rows")
        if self.outputs not in OUTPUTS:
            raise NetworkFormatError(f"meta.outputs must be one of {OUTPUTS}, got {self.outputs!r}")
        if self.outputs == "paired" and n[-1] % 2:
            raise NetworkFormatError(f"paired outputs need an even number of output nodes, G{L} has {n[-1]} columns")
        if not (_number(self.r_on) and math.isfinite(self.r_on) and self.r_on >= 0):
            raise NetworkFormatError(f"meta.switch.R_on must be a finite number >= 0 Ω, got {self.r_on!r}")
        if not (_number(self.r_off) and self.r_off > 0):
            raise NetworkFormatError(f"meta.switch.R_off must be > 0 Ω or null (infinite), got {self.r_off!r}")


def _number(x: Any) -> bool:
    """A real number from JSON or Python (``true``/``false`` are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _float_array(x: Any, name: str, ndim: int, allow_inf: bool = False) -> np.ndarray:
    kind = np.asarray(x).dtype.kind
    if kind not in "fiu":
        raise NetworkFormatError(f"{name}: expected real numbers, got dtype {np.asarray(x).dtype} (bool, complex "
                                 f"and text are not conductances, currents or voltages)")
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise NetworkFormatError(f"{name}: not a numeric array ({e})") from None
    if a.ndim != ndim:
        raise NetworkFormatError(f"{name} must be {ndim}-D, got shape {a.shape}")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "NaN" if allow_inf else "NaN or inf"
        raise NetworkFormatError(f"{name}{list(idx)} = {float(a[idx])}: {what} not allowed")
    return a


def _check_len(a: np.ndarray, n: int, name: str) -> None:
    if a.shape != (n,):
        raise NetworkFormatError(f"{name} must have shape ({n},), got {a.shape}")


# ---- file I/O ----
_META_KEYS = ("format", "input_gain", "encoding", "element", "amplifier", "outputs", "switch")


def load_network(path: str | Path) -> Network:
    """Read a ``drn/1`` network file; a malformed file raises NetworkFormatError naming the key."""
    path = Path(path)
    try:
        kind = numpy_kind(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise NetworkFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    if kind != "npz":
        raise NetworkFormatError(f"{path}: not a network file (a drn/1 network is a NumPy .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zip / format errors from numpy
        raise NetworkFormatError(f"{path}: not a readable .npz network file ({e})") from None
    try:
        return _from_arrays(arrays)
    except NetworkFormatError as e:
        raise NetworkFormatError(f"{path}: {e}") from None


def _from_arrays(arrays: dict[str, np.ndarray]) -> Network:
    if "meta" not in arrays:
        raise NetworkFormatError("missing array 'meta' (the JSON description)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise NetworkFormatError(f"meta is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise NetworkFormatError("meta must be a JSON object")
    if meta.get("format") != FORMAT:
        raise NetworkFormatError(f"meta.format must be {FORMAT!r}, got {meta.get('format')!r}")
    for key in ("input_gain", "encoding", "element"):
        if key not in meta:
            raise NetworkFormatError(f"meta.{key} is missing")
    layers = {}  # name -> numbers of its arrays: G1..GL, b1..bL, lo1..lo{L-1}, hi1..hi{L-1}, nothing else
    for key in arrays:
        m = re.fullmatch(r"(G|b|lo|hi)(\d+)", key)
        if m:
            layers.setdefault(m.group(1), set()).add(int(m.group(2)))
    L = max(layers.get("G", {0}))
    if L == 0:
        raise NetworkFormatError("missing array 'G1'")
    for name, count in (("G", L), ("b", L), ("lo", L - 1), ("hi", L - 1)):
        have = layers.get(name, set())
        extra, missing = sorted(have - set(range(1, count + 1))), sorted(set(range(1, count + 1)) - have)
        if missing:
            raise NetworkFormatError(f"missing array '{name}{missing[0]}' (a network with G1..G{L} needs "
                                     f"{name}1..{name}{count})")
        if extra:
            raise NetworkFormatError(f"array '{name}{extra[0]}' does not belong to a network with G1..G{L}")

    def take(prefix: str, count: int) -> list[np.ndarray]:
        out = []
        for l in range(1, count + 1):
            if f"{prefix}{l}" not in arrays:
                raise NetworkFormatError(f"missing array '{prefix}{l}'")
            out.append(arrays.pop(f"{prefix}{l}"))
        return out

    G, b, lo, hi = take("G", L), take("b", L), take("lo", L - 1), take("hi", L - 1)
    try:
        element = element_from_meta(meta["element"])
    except ValueError as e:
        raise NetworkFormatError(str(e)) from None
    amp = meta.get("amplifier")
    if amp is not None:
        if not isinstance(amp, dict) or "A" not in amp or "C" not in amp:
            raise NetworkFormatError(f"meta.amplifier must be null or {{'A': float, 'C': float[, 'invert': 'none'|"
                                     f"'half']}}, got {amp!r}")
        amp = Amplifier(amp["A"], amp["C"], amp.get("invert", "none"))
    switch = meta.get("switch") or {}
    if not isinstance(switch, dict):
        raise NetworkFormatError(f"meta.switch must be an object, got {switch!r}")
    r_off = switch.get("R_off", R_OFF)
    return Network(
        G=G, b=b, lo=lo, hi=hi, element=element,
        input_gain=meta["input_gain"], encoding=meta["encoding"], amplifier=amp,
        outputs=meta.get("outputs", "single"),
        r_on=switch.get("R_on", R_ON), r_off=math.inf if r_off is None else r_off,
        extra_meta={k: v for k, v in meta.items() if k not in _META_KEYS},
        extra_arrays=arrays,
    )


def save_network(net: Network, path: str | Path) -> None:
    """Write ``net`` as a ``drn/1`` file (float64 arrays, JSON meta; unknown keys kept), atomically."""
    arrays = dict(net.extra_arrays)
    for name, arrs in (("G", net.G), ("b", net.b), ("lo", net.lo), ("hi", net.hi)):
        arrays.update({f"{name}{l}": a for l, a in enumerate(arrs, 1)})
    arrays["meta"] = np.array(json.dumps(net.meta()))
    with atomic_write(path) as f:  # a file object: np.savez would append ".npz" to a name without it
        np.savez(f, **arrays)


# ---- random initialisation ----
def hidden_rails(rails: str, n: int, v_off: float = OSANA_VOFF) -> tuple[np.ndarray, np.ndarray]:
    """The rails (V) ``(lo, hi)`` of a hidden layer of ``n`` nodes: ``"split"`` (the first half ``[0, inf)``, the
    second ``(-inf, 0]``: Scellier) or ``"both"`` (every node ``[-v_off, v_off]``: Osana's double diode)."""
    if rails == "split":
        pos = np.arange(n) < (n + 1) // 2
        return np.where(pos, 0.0, -np.inf), np.where(pos, np.inf, 0.0)
    if rails == "both":
        return np.full(n, -v_off), np.full(n, v_off)
    raise ValidationError(f"rails must be 'split' or 'both', got {rails!r}")


def random_network(
    sizes: Sequence[int],
    element: str | Element = "ideal",
    *,
    seed: int | np.random.Generator | None = 0,
    g_mean: float | None = None,
    rails: str | None = None,
    v_off: float = OSANA_VOFF,
    amplifier: Amplifier | tuple | None = None,
    bias: float = 0.0,
    input_gain: float = 1.0,
    encoding: str = "pair",
    outputs: str = "single",
    init: str = "uniform",
    fan_in: int | None = None,
    **kw: Any,
) -> Network:
    """A random network with layer sizes ``[n_0, ..., n_L]``.

    ``init="uniform"``: conductances uniform on ``[0, 2*g_mean]`` S (default ``g_mean = 1/n_{l-1}`` per crossbar:
    each node's input conductances sum to ~1 S); ``init="clamped"`` (Scellier's): uniform on ``±1/√n_{l-1}`` S
    (times ``g_mean·n_{l-1}`` if given), negative ones set to 0 — about half the conductances start at 0 (``G = 0``
    is an open circuit; training may grow them), the others spread widely; ``init="sparse"``: crossbar 1 as
    ``uniform``, and in every later crossbar each node of layer ``l`` connects to ``fan_in`` random nodes of layer
    ``l−1``, uniform on ``[0, 2*g_mean*n_{l-1}/fan_in]`` S (the same ~1 S per node), the other entries 0 (open);
    with ``fan_in=1`` the nodes of layer ``l−1`` are dealt out in random order, each to as many nodes as the
    others (±1): equal widths make chains;
    biases uniform on ``[-bias, bias]`` A.
    ``element``: a kind name
    (``linear``, ``ideal``, ``shockley`` = Osana's Is=1e-6 A, Vd=0.05 V; ``pwl`` = a soft-clipping table) or an
    Element. ``rails``: ``"split"`` (half the hidden nodes ``[0, inf)``, half ``(-inf, 0]``: Scellier) or
    ``"both"`` (every node ``[-v_off, v_off]``: Osana's double diode); default split for ideal, both otherwise.
    ``outputs="paired"``: ``sizes[-1]`` is the number of classes and the output layer gets two nodes per class.
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence | np.ndarray):
        raise ValidationError(f"sizes must be a list of layer sizes [n_0, ..., n_L], got {sizes!r}")
    sizes = [check_int(n, f"sizes[{k}]", 1) for k, n in enumerate(sizes)]
    for name, val, low in (("g_mean", g_mean, "> 0"), ("bias", bias, ">= 0")):
        if val is not None and not (real(val) and math.isfinite(val) and (val > 0 if low == "> 0" else val >= 0)):
            raise ValidationError(f"{name} must be a finite number {low}, got {val!r}")
    g_mean, bias = (None if v is None else float(plain(v)) for v in (g_mean, bias))
    if whole(seed) is not None:  # (or None, or a Generator)
        check_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    if isinstance(element, str):
        kinds = {
            "linear": Linear,
            "ideal": Ideal,
            "shockley": lambda: Shockley(OSANA_IS, OSANA_VD),
            "pwl": lambda: Pwl([[-1.0, -0.5], [-0.5, -0.01], [0.5, 0.01], [1.0, 0.5]]),
        }
        if element not in kinds:
            raise ValidationError(f"element must be one of {list(kinds)} or an Element, got {element!r}")
        element = kinds[element]()
    rails = rails or ("split" if isinstance(element, Ideal) else "both")
    if len(sizes) < 2:
        raise ValidationError(f"sizes must list at least the input and output layer, got {list(sizes)}")
    if outputs == "paired":
        sizes = list(sizes[:-1]) + [2 * sizes[-1]]
    G, b, lo, hi = [], [], [], []
    for l in range(1, len(sizes)):
        gm = g_mean if g_mean is not None else 1.0 / sizes[l - 1]
        if init == "uniform" or (init == "sparse" and l == 1):
            G.append(rng.uniform(0.0, 2.0 * gm, (sizes[l - 1], sizes[l])))
        elif init == "sparse":
            if whole(fan_in) is None or whole(fan_in) < 1:
                raise ValidationError(f"init 'sparse' needs fan_in, a whole number >= 1, got {fan_in!r}")
            k = min(whole(fan_in), sizes[l - 1])
            if k == 1:  # every input feeds as many nodes as the others, ±1 (independent draws would leave 37 % unfed)
                n = sizes[l - 1]
                rows = np.concatenate([rng.permutation(n) for _ in range(-(-sizes[l] // n))])[None, :sizes[l]]
            else:
                rows = np.argsort(rng.random((sizes[l - 1], sizes[l])), axis=0)[:k]  # k distinct inputs per node
            g = np.zeros((sizes[l - 1], sizes[l]))
            g[rows, np.arange(sizes[l])] = rng.uniform(0.0, 2.0 * gm * sizes[l - 1] / k, (k, sizes[l]))
            G.append(g)
        elif init == "clamped":
            bound = gm * math.sqrt(sizes[l - 1])
            G.append(np.maximum(rng.uniform(-bound, bound, (sizes[l - 1], sizes[l])), 0.0))
        else:
            raise ValidationError(f"init must be 'uniform', 'clamped' or 'sparse', got {init!r}")
        b.append(rng.uniform(-bias, bias, sizes[l]))
        if l < len(sizes) - 1:
            lo_l, hi_l = hidden_rails(rails, sizes[l], v_off)
            lo.append(lo_l)
            hi.append(hi_l)
    if isinstance(amplifier, tuple):
        amplifier = Amplifier(*amplifier)
    return Network(G=G, b=b, lo=lo, hi=hi, element=element, input_gain=input_gain, encoding=encoding,
                   amplifier=amplifier, outputs=outputs, **kw)
