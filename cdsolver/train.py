"""EP training with the CD solver: mini-batch SGD with momentum or Adam, per-layer learning rates, conductances
clamped to ``[g_min, g_max]`` S after each step, biases trained, optionally an exponential moving average of the
weights as the trained model. The free phase of each training sample is warm-started from its last free state
(kept across epochs); nudged phases start from the free state. Training solves to ``TrainConfig.tol`` (default
1e-10 of the largest branch current), evaluation to the strict ``eval_tol``.
A run can be checkpointed after every epoch and resumed bit for bit (``save_checkpoint``/``load_checkpoint``)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import defaults
from .datasets import Split, check_split
from .defaults import TRAIN
from .constants import ESTIMATORS
from .ep import Gradient, beta_floor, ep_gradient, implicit_gradient, loss, over_samples, safe_beta
from .network import Network, NetworkFormatError, load_network, save_network
from .solver import solve
from .validation import ValidationError, check_tol, whole

__all__ = ["TrainConfig", "TrainState", "TrainingDiverged", "step", "train", "evaluate", "save_checkpoint",
           "load_checkpoint"]

#: Training gradients: EP's estimate, or the true gradient by implicit differentiation (a control).
GRADIENTS = ("ep", "implicit")

#: Optimizers and the buffers each keeps per parameter (see ``step``): momentum its velocity, Adam two moments.
OPTIMIZERS = {"momentum": 1, "adam": 2}


class TrainingDiverged(ValidationError):
    """The states or the gradient of a batch became NaN or inf, or the solver refused the network the steps made:
    the options drove the weights out of range."""


def _diverged(epoch: int, k: int, cfg: "TrainConfig", what: str) -> str:
    """TrainingDiverged's message at batch ``k`` (0-based) of ``epoch``."""
    return (f"training diverged in epoch {epoch}, batch {k + 1}: {what} (a learning rate {cfg.lr} or a target "
            f"{cfg.target} V too large?); the checkpoint, if any, holds the last finished epoch")


@dataclass
class TrainConfig:
    """Hyper-parameters; every default comes from ``cdsolver.defaults`` (``None``: the rule there, resolved for
    the training set by ``resolved``). lr: one rate (see ``rates``) or one per layer (G and b of layer l share
    it), times ``lr_decay**(e-1)`` in epoch ``e``. optimizer: ``"adam"`` or ``"momentum"`` (SGD; see ``step``;
    ``momentum`` is Adam's β₁). average: decay per batch of the weights' moving average, the model evaluated and
    kept (0: the weights themselves). beta (S): the nudging strength, lowered at the start of every epoch to
    ``ep.beta_limit`` for negative and centered EP. gradient: ``"ep"``, or ``"implicit"`` (the true gradient, a
    control). tol: solver tolerance in training (evaluation uses ``eval_tol``); max_sweeps: the solver's cap, a
    sample any of whose phases hits it is left out of the gradient. target: output voltage (V) of the correct
    class (paired outputs: of ``v+ − v−``), 0 V elsewhere."""

    epochs: int = TRAIN["epochs"]
    batch_size: int | None = None
    lr: float | Sequence[float] | None = None
    lr_decay: float = TRAIN["lr_decay"]
    optimizer: str = TRAIN["optimizer"]
    momentum: float = TRAIN["momentum"]
    average: float | None = None
    beta: float = TRAIN["beta"]
    estimator: str = TRAIN["estimator"]
    g_min: float = TRAIN["g_min"]
    g_max: float = TRAIN["g_max"]
    target: float = TRAIN["target"]
    tol: float = TRAIN["tol"]
    eval_tol: float = TRAIN["eval_tol"]
    max_sweeps: int = TRAIN["max_sweeps"]
    gradient: str = TRAIN["gradient"]
    seed: int = TRAIN["seed"]
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every field, once, for the library, ``drn train`` and ``drn compare`` alike: ValidationError whose
        message begins with the field's name (``rates`` checks the number of rates against a network)."""
        def integer(x: object, low: int) -> bool:
            return whole(x) is not None and whole(x) >= low

        def finite(x: object) -> bool:
            return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)

        lr = [] if self.lr is None or isinstance(self.lr, str) else list(np.atleast_1d(np.asarray(self.lr, object)))
        m, a, lo, hi = self.momentum, self.average, self.g_min, self.g_max
        checks = [  # (valid, rule, the value as shown)
            (integer(self.epochs, 0), "epochs >= 0 is required (an integer)", repr(self.epochs)),
            (self.batch_size is None or integer(self.batch_size, 1),
             "batch_size >= 1 is required (an integer)", repr(self.batch_size)),
            (integer(self.max_sweeps, 1), "max_sweeps >= 1 is required (an integer)", repr(self.max_sweeps)),
            (integer(self.seed, 0), "seed >= 0 is required (an integer)", repr(self.seed)),
            (self.lr is None or (bool(lr) and all(finite(x) and x > 0 for x in lr)),
             "lr must be finite and > 0 (one rate, or one per layer)", repr(self.lr)),
            (finite(self.lr_decay) and 0 < self.lr_decay <= 1, "lr_decay must be in (0, 1]", repr(self.lr_decay)),
            (self.optimizer in tuple(OPTIMIZERS), "optimizer must be 'momentum' or 'adam'", repr(self.optimizer)),
            (finite(m) and 0 <= m < 1 and (a is None or (finite(a) and 0 <= a < 1)),
             "momentum and average must be in [0, 1)",
             f"momentum {m!r}, average {a!r}"),
            (finite(self.beta) and self.beta > 0, "beta must be a finite number > 0 (S)", repr(self.beta)),
            (self.estimator in ESTIMATORS, f"estimator must be one of {ESTIMATORS}", repr(self.estimator)),
            (finite(lo) and finite(hi) and 0 <= lo < hi, "g_min and g_max must be 0 <= g_min < g_max < inf (S)",
             f"{lo!r}, {hi!r}"),
            (finite(self.target), "target must be finite (V)", repr(self.target)),
            (self.gradient in GRADIENTS, f"gradient must be one of {GRADIENTS}", repr(self.gradient)),
        ]
        for ok, rule, got in checks:
            if not ok:
                raise ValidationError(f"{rule}, got {got}")
        for name in ("epochs", "batch_size", "max_sweeps", "seed"):  # (as ints: 1e4 or a NumPy int is one)
            if getattr(self, name) is not None:
                setattr(self, name, whole(getattr(self, name)))
        check_tol(self.tol, "tol")
        check_tol(self.eval_tol, "eval_tol")

    def resolved(self, n_train: int) -> "TrainConfig":
        """A copy with the data-dependent defaults (``None``) set for ``n_train`` training samples; a
        ``batch_size`` larger than ``n_train`` is refused (the batches would hold ``n_train``, the defaults of
        ``lr`` and ``average`` would follow the larger number)."""
        if self.batch_size is not None and self.batch_size > n_train:
            raise ValidationError(f"batch_size must be <= the {n_train} training samples (one batch of all of them: "
                                  f"{n_train}), got {self.batch_size}")
        bs = self.batch_size if self.batch_size is not None else defaults.batch_size(n_train)
        return replace(self, batch_size=bs, lr=self.lr if self.lr is not None else defaults.lr(bs),
                       average=self.average if self.average is not None else defaults.average(bs, n_train))

    def rates(self, net: Network) -> list[float]:
        """Learning rate of each crossbar. One ``lr`` with momentum is the output layer's; crossbar ``l`` gets
        ``lr·(C/A)^(L−l)``, which cancels the layer weight ``(A/C)^(L−l)`` in its EP gradient, so every crossbar
        learns from its own ``½ΔV²`` (the local rule; no change without amplifiers). Adam's steps do not scale
        with the gradient: one ``lr`` is every layer's. A list is used as given."""
        depth = net.depth
        if self.lr is None:
            raise ValidationError("lr is unset (its default depends on the batch): call TrainConfig.resolved(n_train)")
        lr = [float(x) for x in np.atleast_1d(self.lr)]
        if len(lr) == 1:
            w = net.C / net.A if self.optimizer == "momentum" else 1.0
            lr = [lr[0] * w ** (depth - l) for l in range(1, depth + 1)]
        if len(lr) != depth:
            raise ValidationError(f"lr must be one positive rate or {depth} of them (one per layer), got {self.lr}")
        return lr


class _Diagnostics:
    """Per-epoch statistics of the free phase and the gradient, columns of the history (``row``): per layer
    ``v{l}_mean`` and ``v{l}_spread`` (V: mean over nodes and batches of the node voltage and of its standard
    deviation over the batch — how much the layer depends on the input), ``v{l}_beyond`` (hidden layers: fraction of
    nodes on or beyond a rail), ``grad{l}`` (mean over batches of ‖dG_l‖, S-gradient units); ``excluded``
    (samples left out of the gradient because a phase did not converge) and ``beta_min`` (the smallest β used,
    S)."""

    def __init__(self, net: Network):
        self.net, self.n, self.excluded, self.beta = net, 0, 0, np.inf
        L = net.depth
        self.mean, self.spread, self.beyond, self.grad = np.zeros(L), np.zeros(L), np.zeros(L - 1), np.zeros(L)

    def add(self, states: Sequence[np.ndarray], grad: Gradient, beta: float) -> None:
        net = self.net
        self.n += 1
        self.beta = min(self.beta, beta)
        self.excluded += 0 if grad.used is None else int((~grad.used).sum())
        for l, v in enumerate(states):
            self.mean[l] += v.mean()
            self.spread[l] += v.std(axis=0).mean()
            self.grad[l] += np.linalg.norm(grad.dG[l])
            if l < net.depth - 1:
                self.beyond[l] += np.mean((v >= net.hi[l]) | (v <= net.lo[l]))

    def finite(self) -> bool:
        """Whether every state mean and gradient norm added so far is finite."""
        return all(math.isfinite(x) for x in (*self.mean, *self.grad))

    def row(self) -> dict:
        n, L = max(self.n, 1), self.net.depth
        out: dict = {"excluded": self.excluded, "beta_min": self.beta}
        for l in range(L):
            out[f"v{l + 1}_mean"], out[f"v{l + 1}_spread"] = self.mean[l] / n, self.spread[l] / n
            if l < L - 1:
                out[f"v{l + 1}_beyond"] = self.beyond[l] / n
        out.update({f"grad{l + 1}": self.grad[l] / n for l in range(L)})
        return out


def targets(labels: np.ndarray, n_out: int, target: float) -> np.ndarray:
    """One-hot output voltages (V): ``target`` for the labelled class, 0 elsewhere."""
    y = np.zeros((len(labels), n_out))
    y[np.arange(len(labels)), labels] = target
    return y


def evaluate(net: Network, data: Split, cfg: TrainConfig, batch: int = 512) -> tuple[float, float]:
    """(error rate, mean loss) of the free phase on ``data`` (strict tolerance ``cfg.eval_tol``), as at
    inference: the target sources at 0 V, not at the labels (through ``R_off`` the labels leak into the outputs:
    where those were otherwise tied, an untrained 128-1-10 network read 33.9 % test error instead of 87.2 %)."""
    check_split(data, "data", net.n_features, net.n_classes)
    errs, losses = 0, 0.0
    for k in range(0, len(data.x), batch):
        x, lab = data.x[k:k + batch], data.y[k:k + batch]
        y = targets(lab, net.n_classes, cfg.target)
        s = solve(net, net.encode(x), tol=cfg.eval_tol)
        errs += int((net.decode(s.states[-1]).argmax(1) != lab).sum())
        losses += loss(net, s.states, y) * len(x)
    return errs / len(data.x), losses / len(data.x)


ADAM_BETA2, ADAM_EPS = 0.999, 1e-8  # Adam's second-moment decay and ε (gradient units; typical |g| 1e-5–1e-1)


def step(cfg: TrainConfig, net: Network, grad: Gradient, rates: Sequence[float], slots: list[np.ndarray],
         t: int) -> None:
    """Update ``net``'s G then b in place from ``grad`` at the run's ``t``-th step (from 1); ``rates`` per layer.
    momentum: ``v ← μ·v − rate·g``, ``θ ← θ + v`` (``slots``: one v per parameter). adam (Kingma & Ba, β₁ = μ,
    the ε̂ form of their §2): ``θ ← θ − rate·scale·m̂/(√v̂ + ε̂)``, a step of about ``rate·scale``, ``scale`` =
    1/n_{l−1} S for G_l (its mean conductance at initialisation) and 1 A for b_l (a node has ~1 S of input
    conductance: ~rate V) (``slots``: first moments, then second moments)."""
    params, grads, n = net.G + net.b, grad.dG + grad.db, 2 * net.depth
    if cfg.optimizer == "momentum":
        for p, g, v, r in zip(params, grads, slots, rates + rates):
            v *= cfg.momentum
            v -= r * g
            p += v
        return
    scale = [r / m for r, m in zip(rates, net.sizes)] + list(rates)
    corr = np.sqrt(1 - ADAM_BETA2 ** t) / (1 - cfg.momentum ** t)
    for p, g, m, v, r in zip(params, grads, slots[:n], slots[n:], scale):
        m *= cfg.momentum
        m += (1 - cfg.momentum) * g
        v *= ADAM_BETA2
        v += (1 - ADAM_BETA2) * g * g
        d = np.sqrt(v)
        d += ADAM_EPS
        np.divide(m, d, out=d)
        d *= r * corr
        p -= d


@dataclass
class TrainState:
    """Everything but the network a run needs to go on bit for bit: epochs done, optimizer buffers (see
    ``step``), the weights' moving average (G then b; empty without ``average``), the warm-start cache of every
    training sample's free state, the shuffling RNG, the history."""

    epoch: int
    slots: list[np.ndarray]
    average: list[np.ndarray]
    free_cache: list[np.ndarray]
    rng: np.random.Generator
    history: list[dict]

    @classmethod
    def start(cls, net: Network, n_train: int, cfg: TrainConfig) -> "TrainState":
        cfg = cfg.resolved(n_train)
        params = net.G + net.b
        slots = [np.zeros_like(p) for _ in range(OPTIMIZERS[cfg.optimizer]) for p in params]
        return cls(0, slots, [p.copy() for p in params] if cfg.average else [],
                   [np.zeros((n_train, n)) for n in net.sizes[1:]], np.random.default_rng(cfg.seed), [])

    def model(self, net: Network) -> Network:
        """The trained model: ``net`` itself, or a copy holding the moving average of its weights."""
        if not self.average:
            return net
        out = net.copy()
        for dst, src in zip(out.G + out.b, self.average):
            dst[...] = src
        return out


def save_checkpoint(path: str | Path, net: Network, state: TrainState, run: dict) -> None:
    """Write ``net`` + ``state`` as one ``drn/1`` network file (extra arrays ``ckpt_*``, meta ``checkpoint``:
    epochs done, RNG state, history, and ``run``, the options that made it). Atomic: written to a temporary
    file and renamed, so an interrupted run always leaves the previous checkpoint whole."""
    arrays = {f"ckpt_slot{k}": v for k, v in enumerate(state.slots)}
    arrays.update({f"ckpt_average{k}": a for k, a in enumerate(state.average)})
    arrays.update({f"ckpt_free{l}": c for l, c in enumerate(state.free_cache, 1)})
    meta = dict(net.extra_meta, checkpoint={"epoch": state.epoch, "rng": state.rng.bit_generator.state,
                                           "history": state.history, "run": run})
    ck = replace(net, extra_meta=meta, extra_arrays=dict(net.extra_arrays, **arrays))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_network(ck, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[Network, TrainState, dict]:
    """(network, state, run options) from a file written by ``save_checkpoint``. A damaged checkpoint (missing
    or mistyped meta.checkpoint entries, non-finite arrays) raises NetworkFormatError naming the entry."""
    ck = load_network(path)
    meta = dict(ck.extra_meta)
    info = meta.pop("checkpoint", None)
    if info is None:
        raise NetworkFormatError(f"{path}: a network file but not a training checkpoint (no meta.checkpoint)")
    for key, kind, what in (("epoch", int, "an integer"), ("rng", dict, "an object"), ("history", list, "a list"),
                            ("run", dict, "an object")):
        if not isinstance(info, dict) or not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            got = info.get(key, "missing") if isinstance(info, dict) else info
            raise NetworkFormatError(f"{path}: meta.checkpoint.{key} must be {what}, got {got!r}")
    if not all(isinstance(row, dict) for row in info["history"]):
        raise NetworkFormatError(f"{path}: meta.checkpoint.history must be a list of objects (one per epoch)")
    arrays = dict(ck.extra_arrays)
    bad = sorted(k for k, a in arrays.items() if k.startswith("ckpt_") and not np.all(np.isfinite(a)))
    if bad:
        raise NetworkFormatError(f"{path}: checkpoint arrays {', '.join(bad)} hold NaN or inf (a diverged or damaged "
                                 f"run): resuming would write a network with non-finite conductances")
    slots, average = ([arrays.pop(f"{p}{k}") for k in range(4 * ck.depth) if f"{p}{k}" in arrays]
                      for p in ("ckpt_slot", "ckpt_average"))
    free = [arrays.pop(f"ckpt_free{l}") for l in range(1, ck.depth + 1) if f"ckpt_free{l}" in arrays]
    unknown = sorted(k for k in arrays if k.startswith("ckpt_"))
    if unknown:
        raise NetworkFormatError(f"{path}: checkpoint arrays {', '.join(unknown)} are not this version's (an older "
                                 f"drn-cd wrote them); its network loads with load_network, the run must start anew")
    if len(free) != ck.depth:
        raise NetworkFormatError(f"{path}: checkpoint arrays ckpt_free1..ckpt_free{ck.depth} are incomplete")
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = info["rng"]
    except (TypeError, ValueError, KeyError) as e:
        raise NetworkFormatError(f"{path}: meta.checkpoint.rng is not a NumPy generator state ({e})") from None
    net = replace(ck, extra_meta=meta, extra_arrays=arrays)
    return net, TrainState(info["epoch"], slots, average, free, rng, info["history"]), info["run"]


@np.errstate(over="ignore", invalid="ignore")  # (a batch's NaN or inf is found and named: TrainingDiverged)
def train(net: Network, data: dict[str, Split], cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None,
          progress: bool = False, state: TrainState | None = None,
          checkpoint: Callable[[TrainState], None] | None = None) -> list[dict]:
    """Train ``net`` in place on ``data["train"]`` up to ``cfg.epochs``; evaluates the model (``state.model``)
    on ``data["val"]`` after each epoch. ``state``: a new one (``TrainState.start``), whose ``model(net)`` is the
    trained model afterwards, or a run to continue (``load_checkpoint``) — the result is bit for bit that of an
    uninterrupted run; ``checkpoint(state)`` is called after every epoch. Returns the history, one dict per epoch
    (epoch, train_error, train_loss, val_error, val_loss, seconds)."""
    if not (isinstance(data, dict) and "train" in data and "val" in data):
        raise ValidationError(f"data must be a dict with splits 'train' and 'val', got "
                              f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    for name, split in data.items():
        check_split(split, f"data[{name!r}]", net.n_features, net.n_classes)
    tr = data["train"]
    cfg = cfg.resolved(len(tr.x))
    lr = cfg.rates(net)
    st = state or TrainState.start(net, len(tr.x), cfg)
    if len(st.free_cache[0]) != len(tr.x):
        raise ValidationError(f"the state was made with {len(st.free_cache[0])} training samples, the data has "
                              f"{len(tr.x)}")
    if len(st.slots) != 2 * net.depth * OPTIMIZERS[cfg.optimizer] or bool(st.average) != bool(cfg.average):
        raise ValidationError(f"the state was made for another optimizer or averaging than {cfg.optimizer!r}, "
                              f"average={cfg.average}")
    n_batches = -(-len(tr.x) // cfg.batch_size)
    stepped = False
    for epoch in range(st.epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        rates = [r * cfg.lr_decay ** (epoch - 1) for r in lr]
        order = st.rng.permutation(len(tr.x))
        errs, tot_loss = 0, 0.0
        batches = range(n_batches)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="batch")
        diag = _Diagnostics(net)
        # β for the epoch: convex negative phase (ep.beta_limit, one dense solve per layer: once per epoch)
        beta = safe_beta(net, cfg.beta) if cfg.estimator != "positive" else cfg.beta
        if cfg.gradient == "ep" and beta < cfg.beta and not beta >= beta_floor(net):
            why = (f"the convexity rule (ep.beta_limit) lowered beta from {cfg.beta:g} to {beta:.3g} S, below EP's "
                   f"floor {beta_floor(net):g} S (ep.beta_floor): the output crossbar's conductances are that "
                   f"small (a larger g_min keeps them up)")
            raise TrainingDiverged(f"in epoch {epoch}: {why}") if stepped else ValidationError(why)
        for k in batches:
            idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            v0, lab = net.encode(tr.x[idx]), tr.y[idx]
            y = targets(lab, net.n_classes, cfg.target)
            try:
                free = solve(net, v0, targets=y, init=[c[idx] for c in st.free_cache], tol=cfg.tol,
                             max_sweeps=cfg.max_sweeps)
                if cfg.gradient == "implicit":  # the true gradient, over the samples whose free phase converged
                    grad = over_samples(net, free.converged, lambda r: implicit_gradient(
                        net, v0[r], [s[r] for s in free.states], y[r]))
                else:
                    grad, free = ep_gradient(net, v0, y, beta=beta, estimator=cfg.estimator, free=free,
                                             tol=cfg.tol, max_sweeps=cfg.max_sweeps)
            except ValidationError as e:  # a network the steps made that the solver refuses (e.g. β no longer
                if not stepped:  # convex); before this run's first step, the user's own network or options
                    raise
                raise TrainingDiverged(_diverged(epoch, k, cfg, f"the network it made is refused ({e})")) from None
            for c, s in zip(st.free_cache, free.states):
                c[idx] = s
            errs += int((net.decode(free.states[-1]).argmax(1) != lab).sum())
            batch_loss = loss(net, free.states, y)
            tot_loss += batch_loss * len(idx)
            diag.add(free.states, grad, beta)
            if not (math.isfinite(batch_loss) and diag.finite()):
                raise TrainingDiverged(_diverged(epoch, k, cfg, "NaN or inf in the states or the gradient"))
            if grad.used is None or grad.used.any():
                step(cfg, net, grad, rates, st.slots, (epoch - 1) * n_batches + k + 1)
                stepped = True
            for G in net.G:
                np.clip(G, cfg.g_min, cfg.g_max, out=G)
            for a, p in zip(st.average, net.G + net.b):
                a *= cfg.average
                a += (1 - cfg.average) * p
        val_err, val_loss = evaluate(st.model(net), data["val"], cfg)
        row = dict(epoch=epoch, train_error=errs / len(tr.x), train_loss=tot_loss / len(tr.x), val_error=val_err,
                   val_loss=val_loss, seconds=time.perf_counter() - t0, **diag.row())
        st.history.append(row)
        st.epoch = epoch
        if checkpoint:
            checkpoint(st)
        if on_epoch:
            on_epoch(row)
    return st.history
