"""EP training with the CD solver: mini-batch SGD with momentum, per-layer learning rates, conductances clamped
to ``[g_min, g_max]`` S after each step, biases trained. The free phase of each training sample is warm-started
from its last free state; nudged phases start from the free state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .datasets import Split
from .ep import ep_gradient, loss
from .network import Network
from .solver import solve

__all__ = ["TrainConfig", "train", "evaluate", "DEFAULTS"]

#: Tuned on Digits' validation split (README): (input gain in V, learning rate) per element kind.
DEFAULTS = {"shockley": (40.0, 0.002), "ideal": (4.0, 0.1), "linear": (4.0, 0.1), "pwl": (4.0, 0.1)}


@dataclass
class TrainConfig:
    """Hyper-parameters. lr: one rate or one per layer (G and b of layer l share it). tol: solver tolerance in
    training (evaluation uses ``eval_tol``). target: output voltage (V) of the correct class, 0 V elsewhere."""

    epochs: int = 20
    batch_size: int = 32
    lr: float | Sequence[float] = 0.05
    momentum: float = 0.9
    beta: float = 0.5
    estimator: str = "centered"
    g_min: float = 1e-6
    g_max: float = 10.0
    target: float = 1.0
    tol: float = 1e-10
    eval_tol: float = 1e-12
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def rates(self, depth: int) -> list[float]:
        lr = [float(x) for x in np.atleast_1d(self.lr)]
        lr = lr * depth if len(lr) == 1 else lr
        if len(lr) != depth or any(not x > 0 for x in lr):
            raise ValueError(f"lr must be one positive rate or {depth} of them (one per layer), got {self.lr}")
        return lr


def targets(labels: np.ndarray, n_out: int, target: float) -> np.ndarray:
    """One-hot output voltages (V): ``target`` for the labelled class, 0 elsewhere."""
    y = np.zeros((len(labels), n_out))
    y[np.arange(len(labels)), labels] = target
    return y


def evaluate(net: Network, data: Split, cfg: TrainConfig, batch: int = 512) -> tuple[float, float]:
    """(error rate, mean loss) of the free phase on ``data`` (strict tolerance ``cfg.eval_tol``)."""
    errs, losses = 0, 0.0
    for k in range(0, len(data.x), batch):
        x, lab = data.x[k:k + batch], data.y[k:k + batch]
        y = targets(lab, net.sizes[-1], cfg.target)
        s = solve(net, net.encode(x), targets=y, tol=cfg.eval_tol)
        errs += int((s.states[-1].argmax(1) != lab).sum())
        losses += loss(net, s.states, y) * len(x)
    return errs / len(data.x), losses / len(data.x)


def train(net: Network, data: dict[str, Split], cfg: TrainConfig,
          on_epoch: Callable[[dict], None] | None = None, progress: bool = False) -> list[dict]:
    """Train ``net`` in place on ``data["train"]``; evaluates ``data["val"]`` after each epoch. Returns one
    dict per epoch (epoch, train_error, train_loss, val_error, val_loss, seconds)."""
    rng = np.random.default_rng(cfg.seed)
    lr = cfg.rates(net.depth)
    tr = data["train"]
    free_cache = [np.zeros((len(tr.x), n)) for n in net.sizes[1:]]
    velocity = [np.zeros_like(g) for g in net.G] + [np.zeros_like(b) for b in net.b]
    history = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(tr.x))
        errs, tot_loss = 0, 0.0
        batches = range(0, len(order), cfg.batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="batch")
        for k in batches:
            idx = order[k:k + cfg.batch_size]
            v0, lab = net.encode(tr.x[idx]), tr.y[idx]
            y = targets(lab, net.sizes[-1], cfg.target)
            free = solve(net, v0, targets=y, init=[c[idx] for c in free_cache], tol=cfg.tol)
            grad, free = ep_gradient(net, v0, y, beta=cfg.beta, estimator=cfg.estimator, free=free, tol=cfg.tol)
            for c, s in zip(free_cache, free.states):
                c[idx] = s
            errs += int((free.states[-1].argmax(1) != lab).sum())
            tot_loss += loss(net, free.states, y) * len(idx)
            params = net.G + net.b
            for p, (g, v, rate) in enumerate(zip(grad.dG + grad.db, velocity, lr + lr)):
                v *= cfg.momentum
                v -= rate * g
                params[p] += v
            for G in net.G:
                np.clip(G, cfg.g_min, cfg.g_max, out=G)
        val_err, val_loss = evaluate(net, data["val"], cfg)
        row = dict(epoch=epoch, train_error=errs / len(tr.x), train_loss=tot_loss / len(tr.x), val_error=val_err,
                   val_loss=val_loss, seconds=time.perf_counter() - t0)
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return history
