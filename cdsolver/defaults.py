"""The one source of training defaults, used by the library (``TrainConfig``), ``drn train`` and ``drn compare``.

Fixed values live in ``TRAIN``; the values that depend on the network or the data are rules (docs/training.md):

- ``batch_size(n_train)``: about ``STEPS_PER_EPOCH`` optimizer steps per epoch, between 8 and 128 samples.
- ``lr(batch)``: Adam's step, in units of each crossbar's mean initial conductance (``train.step``), grows as the
  square root of the batch (the gradient's noise falls as 1/√batch).
- ``average(batch, n_train)``: the weights' moving average spans about one epoch.
- ``input_gain(...)``: the input voltage scale that puts the first hidden layer's pre-activation spread (over the
  training inputs, at initialisation, with the load the next crossbar really puts on it) at the element's scale —
  the rails for Shockley and pwl elements — and, in a passive network whose hidden nodes are clipped on one side
  (``stepped``: ideal diodes or Shockley with some node's rail open, as on split rails), a gain that grows with depth
  (``PASSIVE_GAIN_STEP`` per hidden layer after the first) to make up for the signal each layer clips away.
  Nodes bounded on both sides (every rail finite; pwl curves, which saturate by design) would saturate, and
  linear nodes would only scale their outputs past the target: no step. A first hidden layer narrower than
  ``NARROW_WIDTH`` gets ``width / NARROW_WIDTH`` of the gain (few nodes must stay inside their rails).
- ``init(depth, amplifier)``: conductances uniform on ``[0, 2/n_{l-1}]`` S, but sparse (``fan_in`` inputs per
  node: 1 in passive networks without the gain step from three hidden layers on, else 4) after the first crossbar
  of a passive network with two or more hidden layers, or of an amplified one with ``AMPLIFIED_SPARSE_FROM`` or
  more: a node averages its inputs, and a dense average of ``n`` inputs keeps only ~1.15/√n of their
  input-dependent spread.
- ``centring_bias(x, net)``: bias currents into the first hidden layer that cancel its mean input current over the
  training inputs, so that its nodes start centred on their rails' midpoint (0 V), not pinned beyond one rail.
- β: ``ep.safe_beta`` lowers ``TRAIN["beta"]`` (once per epoch) to keep the negative phase convex
  (``ep.beta_limit``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where used: ``drn --help`` loads this module (see studies/cli.py)
    import numpy as np

__all__ = ["TRAIN", "STEPS_PER_EPOCH", "SPARSE_FAN_IN", "UNSTEPPED_FAN_IN", "UNSTEPPED_FAN_IN_FROM",
           "AMPLIFIED_SPARSE_FROM", "PASSIVE_GAIN_STEP", "NARROW_WIDTH", "batch_size", "lr", "average", "rails",
           "RAILLESS", "stepped", "fan_in", "init", "input_gain", "centring_bias", "network"]

#: Network-independent defaults of ``TrainConfig`` (SI units: β in S, target in V, conductances in S).
TRAIN: dict[str, Any] = dict(
    epochs=20, optimizer="adam", momentum=0.9, lr_decay=1.0, beta=0.1, estimator="centered", target=0.6,
    g_min=1e-6, g_max=10.0, tol=1e-10, eval_tol=1e-12, max_sweeps=1000, gradient="ep", seed=0,
)

#: Optimizer steps per epoch the default batch size aims at.
STEPS_PER_EPOCH = 128


def batch_size(n_train: int) -> int:
    """Default mini-batch: ``n_train / STEPS_PER_EPOCH`` clipped to [8, 128] (Digits: 8; Fashion-MNIST: 128)."""
    return int(min(128, max(8, n_train // STEPS_PER_EPOCH)))


def lr(batch: int) -> float:
    """Default Adam rate for mini-batches of ``batch``: 0.01 at 8, ×√(batch/8) (0.04 at 128)."""
    return 0.01 * math.sqrt(batch / 8)


def average(batch: int, n_train: int) -> float:
    """Default decay per batch of the weights' moving average: a window of about one epoch, at most 0.999."""
    return min(0.999, 1.0 - batch / n_train) if n_train > batch else 0.0


def rails(element: str, hidden: Sequence[int] = ()) -> str:
    """``"split"`` for ideal diodes (half the nodes ``[0, ∞)``, half ``(−∞, 0]``) where every hidden layer of
    ``hidden`` (sizes) has ``NARROW_WIDTH`` nodes or more, ``"both"`` otherwise: a narrow layer of one-sided nodes
    has too few of each sign (Digits, 20 epochs, test error split against both: 8 nodes 48.1 and 32.8 against
    12.5 and 11.7 % (seeds 0, 1); 12 × 2 29.2 and 37.8 against 6.7 and 6.7 %; 16 5.8 against 4.7 %; 32 3.3
    against 4.2 %; 2 × 64 1.1 against 3.1 %; docs/training.md)."""
    wide = min(hidden, default=NARROW_WIDTH) >= NARROW_WIDTH
    return "split" if element == "ideal" and wide else "both"


#: Inputs per node of the sparse crossbars of deep networks (``init``, ``fan_in``) ...
SPARSE_FAN_IN = 4
#: ... and of passive networks whose input gain takes no step (not ``stepped``), from ``UNSTEPPED_FAN_IN_FROM``
#: hidden layers on.
UNSTEPPED_FAN_IN = 1
UNSTEPPED_FAN_IN_FROM = 3

#: Hidden layers from which an amplified network starts sparse (``init``).
AMPLIFIED_SPARSE_FROM = 4


def init(depth: int, amplifier) -> str:
    """Initialisation of ``random_network`` for a network of ``depth`` crossbars: ``"sparse"`` (each node after the
    first hidden layer fed by ``fan_in`` nodes) for a passive network (``amplifier`` None) with two or more
    hidden layers and an amplified one with ``AMPLIFIED_SPARSE_FROM`` or more, else ``"uniform"``. A node's
    voltage is a conductance-weighted average of its inputs (times ±A with amplifiers): with ``n`` equal-ish
    inputs it keeps ~1.15/√n of their input-dependent spread (uniform weights), with 4 inputs ~0.6. Passive: the
    signal then reaches the outputs (3 × 64 ideal diodes at initialisation: last hidden layer 1/42 of the first's
    spread dense, 1/14 sparse). Amplified (A = 4, C = 1): two and three hidden layers train better dense
    (Digits, 20 epochs: 0.56–1.94 % against 1.94–6.67 % sparse), four to six stay at 13–73 % test error dense and
    reach 1.1–3.1 % sparse (docs/training.md)."""
    hidden = depth - 1
    return "sparse" if hidden >= (2 if amplifier is None else AMPLIFIED_SPARSE_FROM) else "uniform"


#: Elements whose nodes have no rails (``drn train`` refuses ``--rails`` for them).
RAILLESS = ("linear", "pwl")


def stepped(element: str, lo, hi) -> bool:
    """Whether a passive network's input gain grows ``PASSIVE_GAIN_STEP`` per hidden layer (``input_gain``): ideal
    or Shockley nodes of which some is clipped on one side only (a rail in ``lo``, ``hi`` — V, one array per hidden
    layer — is infinite, as on split rails): each layer clips part of the signal away, and a larger input makes up
    for it. Not linear nodes (never clipped), pwl curves (clipped by their table, rails unused), nor nodes with
    every rail finite (bounded on both sides)."""
    import numpy as np

    return element not in RAILLESS and not all(
        np.isfinite(lo_l).all() and np.isfinite(hi_l).all() for lo_l, hi_l in zip(lo, hi))


def fan_in(element: str, lo, hi, amplifier) -> int:
    """Inputs per node of the sparse crossbars (``init``) of a network with hidden-layer rails ``lo``, ``hi`` (V,
    one array per hidden layer): ``UNSTEPPED_FAN_IN`` in a passive network of ``UNSTEPPED_FAN_IN_FROM`` or more
    hidden layers whose gain takes no step (not ``stepped``), so its crossbars must lose less of the signal: one
    input per node (``random_network`` deals the layer below out evenly: chains where widths are equal) passes a
    node's signal on whole, where an average of 2 inputs keeps ~0.8 of its spread and of 4 ~0.6 — and does not mix
    narrow layers' features (Digits, double Shockley, 20 epochs, seeds 0–2, test error, 1 input against the rule
    before — 4 inputs at three hidden layers, 2 from four: 16 × 3 4.7–38.9 against 30.6–59.2 %, 24 × 3 3.9–5.6
    against 6.9–11.4 %, 32 × 3 4.2–5.0 against 4.2–10.8 %, 64 × 3 2.2–3.6 against 2.5–3.3 %, 32 × 4 2.8–3.9 against
    5.3–15.6 %, 32 × 5 3.6–5.3 against 26.9–31.1 %, 48 × 5 2.5–4.4 against 6.9–14.2 %, 64 × 4 2.2–3.3 against
    2.2–4.2 %, 64 × 5 3.3–4.2 against 3.3–6.4 %; pwl mixed, linear even; docs/training.md) — else
    ``SPARSE_FAN_IN``, which
    the gain step of one-sided nodes makes up for (ideal diodes on split rails, 2 inputs: 4 × 64 5.3 against
    1.9 %)."""
    deep = len(lo) >= UNSTEPPED_FAN_IN_FROM
    return UNSTEPPED_FAN_IN if amplifier is None and deep and not stepped(element, lo, hi) else SPARSE_FAN_IN


#: Pre-activation spread (V) the input gain aims at in the first hidden layer, per element kind.
SPREAD = {"shockley": 1.2, "pwl": 1.2, "ideal": 0.3, "linear": 0.3}

#: First hidden layers narrower than this get the input gain times ``width / NARROW_WIDTH`` (``input_gain``).
NARROW_WIDTH = 32

#: Factor of the input gain per hidden layer after the first in a passive network whose hidden nodes are clipped on
#: one side only (``stepped``, ``input_gain``).
PASSIVE_GAIN_STEP = 4.0


def input_gain(x: np.ndarray, net, element: str) -> float:
    """Input gain (V per unit feature) from training features ``x`` (batch, n_features) and network ``net``:
    ``SPREAD[element] / σ`` with σ the median over the first hidden layer's nodes of the standard deviation over
    ``x`` of ``encode(x)·G1 / a`` at unit gain — the node's voltage without its element, ``a`` the conductance it
    presents to its drive in the network without elements (``Layered.driving_point``): its input crossbar plus
    the load of the next crossbar, ``C·A`` times it with amplifiers (5× the input side at A = 4, C = 1 with equal
    widths), less what the nodes above follow it (nothing in a chain of one-input nodes, whose load is then 0:
    σ twice that with the full load) — times ``PASSIVE_GAIN_STEP^(hidden − 1)`` in a passive network of
    ``stepped`` nodes (ideal or Shockley clipped on one side: each sparse passive layer of them divides the
    input-dependent spread by 3–6 at initialisation, whatever the width). Nodes bounded on both sides — ideal or
    Shockley with every rail finite, and pwl curves — get no step: a larger gain would drive the first hidden
    layer beyond its knees, where it no longer tells inputs apart (passive double Shockley on Digits, 20 epochs:
    53 % test error at 4 × 64 with the step, 5.0 % without). Nor do linear nodes: a linear layer loses little of
    the spread (4 × 64: 0.33, 0.14, 0.11, 0.10 V), and the step drove the outputs' spread to 6.5 V against a 0.6 V
    target (4 × 64: 33.1 % test error with it, 11.9 % without; docs/training.md). A first hidden layer narrower
    than ``NARROW_WIDTH`` gets ``width / NARROW_WIDTH`` of the gain (not linear nodes): its few nodes must stay
    inside their rails to carry the input, where a wide layer's many can act as switches (double Shockley on
    Digits, 20 epochs, test error at the gain, half, a quarter: 8 nodes 53.1, 16.4, 11.1 %; 12 × 2 42.8, 10.6,
    8.9 %; 10 × 6 48.9, 13.9, 10.0 %; 16 5.3, 5.0, 5.0 %; 32 3.6, 4.4, 4.4 %; 64 1.7, 2.2, 3.3 %)."""
    import numpy as np

    from .topology import Layered

    v0 = np.concatenate([x, -x], axis=1) if net.encoding == "pair" else x
    a = Layered(net).driving_point(1)
    sigma = float(np.median(((v0 @ net.G[0]) / np.maximum(a, 1e-300)).std(axis=0)))
    if not sigma > 0:
        return 1.0
    step = PASSIVE_GAIN_STEP ** max(net.depth - 2, 0) if net.amplifier is None and stepped(element, net.lo, net.hi) \
        else 1.0
    narrow = 1.0 if element == "linear" or net.depth < 2 else min(1.0, net.sizes[1] / NARROW_WIDTH)
    return SPREAD[element] / sigma * step * narrow


def centring_bias(x: np.ndarray, net) -> np.ndarray:
    """Bias currents (A) into the first hidden layer of ``net`` (at its input gain) that cancel the mean over the
    training features ``x`` (batch, n_features) of crossbar 1's current into it, ``encode(x)·G1`` (linear in ``x``:
    computed at the mean): each node's input drive then has mean 0, the midpoint of ±0.8 V rails. Without them a
    node's mean drive is a random sum over the inputs' means, and a narrow layer has many nodes pinned beyond one
    rail whatever the input (16 × 3 double Shockley on Digits: 94–97 % of node-sample pairs beyond the rails
    during training, 82 % test error; with the bias, 48–54 % at initialisation at one hidden layer; docs/training.md).
    On split rails 0 V is the rail."""
    from .topology import Layered

    return -Layered(net).input_current(net.encode(x.mean(axis=0, keepdims=True)))[0]


def network(x: np.ndarray, hidden: list[int], n_classes: int, element: str, *, rails_: str | None = None,
            amplifier=None, outputs: str = "single", gain: float | None = None, init_: str | None = None,
            seed: int = 0):
    """A random network for features ``x`` (batch, n_features) with the default rails, initialisation, input
    gain and first-layer bias (``centring_bias``)."""
    from .network import hidden_rails, random_network

    sizes = [2 * x.shape[1], *hidden, n_classes]
    r = rails_ or rails(element, hidden)
    lo, hi = zip(*(hidden_rails(r, n) for n in hidden)) if hidden else ((), ())
    net = random_network(sizes, element, seed=seed, rails=r, amplifier=amplifier, outputs=outputs,
                         init=init_ or init(len(sizes) - 1, amplifier), fan_in=fan_in(element, lo, hi, amplifier))
    net.input_gain = gain if gain is not None else input_gain(x, net, element)
    if hidden:
        net.b[0] = centring_bias(x, net)
    return net
