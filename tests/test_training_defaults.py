"""Training defaults that hold on every network shape: the β rule keeps the negative phase convex, non-converged
phases never feed the gradient, the implicit-gradient control, and the history's diagnostics."""

import csv

import numpy as np
import pytest

from cdsolver import defaults, random_network, solve
from cdsolver.datasets import Split, load_digits
from cdsolver.ep import beta_limit, ep_gradient, implicit_gradient, safe_beta
from cdsolver.network import Amplifier
from cdsolver.topology import Layered
from cdsolver.train import TrainConfig, train
from cdsolver.validation import ValidationError
from studies.cli import main

SHAPES = [[8, 6, 4], [8, 6, 5, 4], [8, 6, 5, 5, 4], [8, 12, 3]]
AMPS = [None, (4.0, 1.0), (4.0, 0.25), (4.0, 1.0, "half")]
AMP_IDS = ["passive", "A4C1", "A4C0.25", "A4C1-invert"]


def lin_hessian(net, g_out):
    """Dense co-content Hessian of the diode-free network (layer weights w_l), nudging conductance ``g_out`` on the
    outputs (paired: between v+ and v−) — written out node by node, independently of ``beta_limit``."""
    n, L, A = net.sizes, net.depth, net.A
    w = [(net.C / A) ** (l - 1) for l in range(1, L + 1)]  # co-content weights (C/A)^(l−1)
    cuts = np.cumsum([0] + n[1:])
    H = np.zeros((cuts[-1], cuts[-1]))
    for l in range(1, L + 1):  # crossbar l: ½·w_l·Σ G_ij (u_i − v_j)², u = v0 (l = 1) or A·v_{l−1}
        G = net.G[l - 1]
        for i in range(n[l - 1]):
            for j in range(n[l]):
                vj = cuts[l - 1] + j
                H[vj, vj] += w[l - 1] * G[i, j]
                if l > 1:
                    ui = cuts[l - 2] + i
                    H[ui, ui] += w[l - 1] * A * A * G[i, j]
                    sg = net.signs(l - 1)[i]
                    H[ui, vj] -= w[l - 1] * A * sg * G[i, j]
                    H[vj, ui] -= w[l - 1] * A * sg * G[i, j]
    out = np.arange(cuts[-2], cuts[-1])
    D = net.decode(np.eye(len(out))).T  # (classes, n_L)
    H[np.ix_(out, out)] += w[-1] * g_out * D.T @ D
    return H


@pytest.mark.parametrize("outputs", ["single", "paired"])
@pytest.mark.parametrize("amp", AMPS, ids=AMP_IDS)
@pytest.mark.parametrize("sizes", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_beta_limit_is_the_convexity_boundary(sizes, amp, outputs):
    """At margin 1 the negative phase's Hessian (diode-free: the worst case) is singular; at the default margin it
    is positive definite with room to spare."""
    net = random_network(sizes, "shockley", seed=3, amplifier=amp, outputs=outputs)
    for margin, check in ((1.0, "singular"), (0.5, "definite")):
        b = beta_limit(net, margin)
        lam = np.linalg.eigvalsh(lin_hessian(net, net.g_nudge(-b)))
        scale = np.abs(lam).max()
        if check == "singular":
            assert abs(lam[0]) <= 1e-9 * scale
        else:
            assert lam[0] > 1e-6 * scale
    assert safe_beta(net, 1e-3) == 1e-3 and safe_beta(net, 10.0) == beta_limit(net)


@pytest.mark.parametrize("element", ["shockley", "ideal", "pwl"])
@pytest.mark.parametrize("amp", AMPS, ids=AMP_IDS)
def test_default_networks_have_a_convex_negative_phase(element, amp):
    """Every default network shape (1–3 hidden layers, any element and amplifier, single or paired outputs): the
    negative phase at the default β solves to the tolerance from the free state."""
    x = load_digits(seed=0)["train"].x[:40]
    y = np.zeros((40, 10))
    y[np.arange(40), np.arange(40) % 10] = defaults.TRAIN["target"]
    for hidden in ([16], [16, 12], [16, 12, 12]):
        for outputs in ("single", "paired"):
            net = defaults.network(x, hidden, 10, element, amplifier=None if amp is None else Amplifier(*amp),
                                   outputs=outputs)
            beta = safe_beta(net, defaults.TRAIN["beta"])
            free = solve(net, net.encode(x), targets=y).check()
            solve(net, net.encode(x), beta=-beta, targets=y, init=free.states).check()


def test_non_converged_phases_are_excluded_and_counted():
    net = random_network([128, 16, 16, 10], "shockley", seed=0, input_gain=80.0, amplifier=(4.0, 1.0))
    d = load_digits(seed=0)
    x, lab = d["train"].x[:24], d["train"].y[:24]
    y = np.zeros((24, 10))
    y[np.arange(24), lab] = 0.6
    v0 = net.encode(x)
    g, free = ep_gradient(net, v0, y, beta=0.05, max_sweeps=16)
    assert 0 < g.used.sum() < 24  # a sweep cap that stops some samples, not all
    rows = np.flatnonzero(g.used)
    alone, _ = ep_gradient(net, v0[rows], y[rows], beta=0.05, max_sweeps=16)
    assert alone.used.all()
    for a, b in zip(g.dG + g.db, alone.dG + alone.db):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)  # the gradient is the mean over the used ones
    none, _ = ep_gradient(net, v0, y, beta=0.05, max_sweeps=1)
    assert not none.used.any() and all(not np.any(a) for a in none.dG + none.db)
    data = {"train": Split(x, lab), "val": Split(x[:8], lab[:8])}
    hist = train(net.copy(), data, TrainConfig(epochs=1, max_sweeps=16, batch_size=8))
    assert hist[0]["excluded"] > 0
    hist = train(net.copy(), data, TrainConfig(epochs=1, max_sweeps=16, batch_size=8, gradient="implicit"))
    assert hist[0]["excluded"] > 0  # the true gradient, too, only over the samples whose free phase converged


def test_anderson_that_circles_restarts_and_every_phase_converges():
    """128-1-10 on Digits, the defaults, one epoch: a negative phase (β = -0.046 S, inside the convexity limit
    0.055 S) hit the 1,000-sweep cap, Anderson's residual circling at 0.14-0.21 A without a step bad enough for
    the safeguard (plain CD: 79 sweeps); the sample was left out. A sample whose best residual stalls restarts."""
    d = load_digits(seed=0)
    net = defaults.network(d["train"].x, [1], 10, "shockley")
    hist = train(net, d, TrainConfig(epochs=1).resolved(len(d["train"].x)))
    assert hist[0]["excluded"] == 0


def test_a_narrow_first_hidden_layer_gets_less_gain_and_learns():
    """128-8-10 on Digits with the defaults: the full gain (188 V) drove the eight nodes beyond their rails (97 %
    of node-sample pairs by epoch 5) and the network stayed at 73.6 % validation error after 5 epochs (53.1 % test
    error after 20); 8/32 of it reaches 23.6 % (11.1 % after 20)."""
    d = load_digits(seed=0)
    net = defaults.network(d["train"].x, [8], 10, "shockley")
    assert 40 < net.input_gain < 55  # V (the full rule: 188)
    hist = train(net, d, TrainConfig(epochs=5).resolved(len(d["train"].x)))
    assert hist[-1]["val_error"] < 0.4


def test_narrow_ideal_diode_networks_default_to_rails_on_both_sides_and_learn():
    """Split rails give a narrow layer too few nodes of each sign: 128-8-10 ideal diodes stayed at 51 %
    validation error after 5 epochs (48 % test error after 20); on ±0.8 V rails it reaches 20 % (12.5 %)."""
    d = load_digits(seed=0)
    wide = defaults.network(d["train"].x, [32], 10, "ideal")
    assert np.isinf(wide.hi[0]).any() and np.isinf(wide.lo[0]).any()  # (split: half [0, inf), half (-inf, 0])
    net = defaults.network(d["train"].x, [8], 10, "ideal")
    assert np.isfinite(net.lo[0]).all() and np.isfinite(net.hi[0]).all()
    hist = train(net, d, TrainConfig(epochs=5).resolved(len(d["train"].x)))
    assert hist[-1]["val_error"] < 0.35


def test_a_network_without_hidden_layers_takes_the_full_gain():
    d = load_digits(seed=0)
    net = defaults.network(d["train"].x, [], 10, "shockley")  # (the narrow rule is for a first hidden layer)
    assert net.input_gain > 80  # V (89.1; 27.9 when the rule took the 10 outputs for a narrow hidden layer)


def test_beta_lowered_below_eps_floor_by_the_convexity_rule_says_so():
    """Output conductances of 1e-10 S (a g_min far below the default): the convexity rule lowers β to 8e-10 S,
    which EP refuses (``ep.ep_phases``); the message names the β the user gave and why it fell."""
    d = load_digits(seed=0)
    net = defaults.network(d["train"].x, [16], 10, "shockley")
    net.G[-1][:] = 1e-10
    with pytest.raises(ValidationError, match="lowered beta from 0.1 to 8e-10 S, below EP's floor 1e-09 S"):
        train(net, d, TrainConfig(epochs=1, g_min=1e-12).resolved(len(d["train"].x)))


def test_implicit_gradient_trainer_first_step_is_the_implicit_gradient():
    """--gradient implicit: SGD without momentum, one batch of the whole set, moves θ by −rate × the implicit
    gradient at the free state (a control for EP's bias)."""
    d = load_digits(seed=0)
    data = {"train": Split(d["train"].x[:16], d["train"].y[:16]), "val": Split(d["val"].x[:8], d["val"].y[:8])}
    net = defaults.network(data["train"].x, [12, 10], 10, "shockley", amplifier=Amplifier(4.0, 1.0))
    before = net.copy()
    cfg = TrainConfig(epochs=1, batch_size=16, optimizer="momentum", momentum=0.0, lr=[1e-4] * 3, average=0.0,
                      gradient="implicit", g_min=0.0)
    train(net, data, cfg)
    y = np.zeros((16, 10))
    y[np.arange(16), data["train"].y] = cfg.target
    v0 = before.encode(data["train"].x)
    g = implicit_gradient(before, v0, solve(before, v0, targets=y, tol=1e-13).states, y)
    for new, old, grad in zip(net.G, before.G, g.dG):  # conductances clamped at g_min = 0 after the step
        np.testing.assert_allclose(new, np.maximum(old - 1e-4 * grad, 0.0), rtol=1e-6, atol=1e-12)
    for new, old, grad in zip(net.b, before.b, g.db):
        np.testing.assert_allclose(new - old, -1e-4 * grad, rtol=1e-6, atol=1e-15)


def test_drn_train_defaults_write_diagnostics(tmp_path, capsys):
    out = tmp_path / "n.npz"
    assert main(["train", "--hidden", "8", "6", "--epochs", "1", "--out", str(out)]) == 0
    start = capsys.readouterr().out.splitlines()[0]  # the initialisation the defaults chose, then the gain
    assert "shockley, sparse crossbars after the first (4 inputs per node), input gain" in start
    assert "first hidden layer biased to a mean drive of 0 V; batch" in start
    assert main(["train", "--hidden", "8", "--epochs", "0", "--out", str(tmp_path / "one.npz")]) == 0
    assert "sparse" not in capsys.readouterr().out
    assert main(["train", "--hidden", "16", "4", "--epochs", "0", "--out", str(tmp_path / "narrow.npz")]) == 0
    assert "sparse crossbars after the first (4 inputs per node)" in capsys.readouterr().out  # (4 -> 10: dense)
    assert main(["train", "--hidden", "8", "8", "8", "--epochs", "0", "--out", str(tmp_path / "chains.npz")]) == 0
    assert "sparse crossbars after the first (1 input per node)" in capsys.readouterr().out
    row = next(csv.DictReader(open(tmp_path / "n.history.csv")))
    for k in ("v1_mean", "v1_spread", "v1_beyond", "v2_beyond", "v3_spread", "grad1", "grad3", "excluded",
              "beta_min"):
        assert k in row
    assert 0 <= float(row["v1_beyond"]) <= 1 and float(row["grad1"]) > 0 and int(row["excluded"]) == 0


def test_train_config_has_one_source_of_defaults():
    cfg = TrainConfig()
    for k, v in defaults.TRAIN.items():
        assert getattr(cfg, k) == v
    r = cfg.resolved(1077)
    assert (r.batch_size, r.lr) == (8, 0.01) and 0.99 < r.average < 0.999
    r = cfg.resolved(55000)
    assert (r.batch_size, r.lr) == (128, 0.04)


def test_deep_passive_networks_start_sparse_and_keep_their_signal():
    """A passive network with two or more hidden layers starts sparse after its first crossbar (``SPARSE_FAN_IN``
    inputs per node, ~1 S each node as in the uniform init), so at initialisation the last hidden layer still
    varies with the input: 3 × 64 ideal diodes keep over 1/20 of the first hidden layer's spread (the dense
    uniform init keeps 1/42), and with the default input gain that is over 0.1 V. One-hidden-layer networks and
    amplified ones of up to three hidden layers keep the dense uniform init."""
    x = load_digits(seed=0)["train"].x
    spread = {}
    for init in (None, "uniform"):
        net = defaults.network(x, [64, 64, 64], 10, "ideal", init_=init)
        states = solve(net, net.encode(x)).check().states
        spread[init] = states[2].std(axis=0).mean() / states[0].std(axis=0).mean()
        if init is None:  # the default gain (×PASSIVE_GAIN_STEP per hidden layer after the first) feeds layer 3
            assert states[2].std(axis=0).mean() > 0.1  # V (0.18 V; ×2 per layer would give 0.045 V)
            assert np.all((net.G[0] > 0).sum(axis=0) == 128)
            for G in net.G[1:]:
                assert np.all((G > 0).sum(axis=0) == defaults.SPARSE_FAN_IN)
                assert 0.8 < G.sum(axis=0).mean() < 1.2
    assert spread[None] > 1 / 20 > 1 / 30 > spread["uniform"]
    assert defaults.init(3, None) == "sparse" and defaults.init(2, None) == "uniform"
    for amp in (Amplifier(4.0, 1.0, "half"), Amplifier(4.0, 1.0)):
        assert defaults.init(4, amp) == "uniform"
        assert np.all(defaults.network(x[:20], [16, 12, 12], 10, "shockley", amplifier=amp).G[2] > 0)
    with pytest.raises(ValueError, match="fan_in"):
        random_network([8, 6, 5, 4], "ideal", init="sparse")


def test_amplified_networks_of_four_hidden_layers_start_sparse_and_learn():
    """With amplifiers, one to three hidden layers start dense (they train better so) and four or more sparse
    after the first crossbar: 4 × 64 double Shockley with A = 4, C = 1 (inverting half) learns with the defaults
    (validation error 0.14 after 4 epochs; dense, as before, 0.61 and 23 % test error after 20)."""
    amp = Amplifier(4.0, 1.0, "half")
    assert [defaults.init(d, amp) for d in (2, 3, 4, 5, 7)] == ["uniform"] * 3 + ["sparse"] * 2
    data = load_digits(seed=0)
    net = defaults.network(data["train"].x, [64] * 4, 10, "shockley", amplifier=amp)
    assert np.all((net.G[0] > 0).sum(axis=0) == 128)
    for G in net.G[1:]:
        assert np.all((G > 0).sum(axis=0) == defaults.SPARSE_FAN_IN)
    history = train(net, data, TrainConfig(epochs=4).resolved(len(data["train"].x)))
    assert history[-1]["val_error"] < 0.3


def test_the_passive_gain_step_is_for_nodes_clipped_on_one_side_only():
    """The default input gain grows by ``PASSIVE_GAIN_STEP`` per extra hidden layer only where the hidden nodes
    have a rail on one side at most (ideal diodes on split rails); with rails on both sides (double Shockley,
    pwl) it does not, and a 4 × 64 double-Shockley network learns: its first hidden layer is not driven beyond
    its rails (with the step, 99.7 % of its nodes were, and the validation error after 4 epochs was 73 %)."""
    x = load_digits(seed=0)["train"].x
    gain = {(el, d): defaults.network(x, [64] * d, 10, el).input_gain for el in ("shockley", "pwl", "ideal")
            for d in (2, 3, 4)}
    # no ×4 step: the gain only falls from 2 to 3 hidden layers (from 3, chains: the first layer carries no load
    # from the next, so it needs 0.5–0.6 of the gain), and is the same at 3 and 4
    for el in ("shockley", "pwl"):
        assert 0.4 < gain[el, 3] / gain[el, 2] < 1.0 and gain[el, 4] == pytest.approx(gain[el, 3])
    assert gain["ideal", 4] == pytest.approx(defaults.PASSIVE_GAIN_STEP ** 2 * gain["ideal", 2], rel=0.05)
    linear = [defaults.network(x, [64] * d, 10, "linear").input_gain for d in (2, 3)]  # never clipped: no step
    assert 0.4 < linear[1] / linear[0] < 1.0
    split = [defaults.network(x, [64] * d, 10, "pwl", rails_="split").input_gain for d in (2, 3)]  # rails unused
    assert 0.4 < split[1] / split[0] < 1.0
    data = load_digits(seed=0)
    net = defaults.network(data["train"].x, [64] * 4, 10, "shockley")
    history = train(net, data, TrainConfig(epochs=4).resolved(len(data["train"].x)))
    assert history[0]["v1_beyond"] < 0.9
    assert history[-1]["val_error"] < 0.5  # (0.20 with this rule and 2 inputs per node, before 1 input)


def test_deep_linear_networks_take_no_gain_step_and_learn():
    """Linear nodes lose little of the signal per layer, so their gain takes no step (with it, the outputs' spread
    at initialisation was 6.5 V against the 0.6 V target at 4 × 64), and from four hidden layers their sparse
    crossbars take 1 input (2 before): 4 × 64 learns (validation error 0.19 after 4 epochs with 2; with the step
    and 4 inputs 0.86, and 33.1 % test error after 20)."""
    data = load_digits(seed=0)
    x = data["train"].x
    net = defaults.network(x, [64] * 4, 10, "linear")
    # (chains from three hidden layers: no load on the first layer, 0.5–0.6 of the gain of two hidden layers)
    assert 0.4 < net.input_gain / defaults.network(x, [64] * 2, 10, "linear").input_gain < 1.0
    assert {int(n) for G in net.G[1:] for n in (G > 0).sum(axis=0)} == {defaults.UNSTEPPED_FAN_IN}
    history = train(net, data, TrainConfig(epochs=4).resolved(len(x)))
    assert history[-1]["val_error"] < 0.4


def test_unstepped_passive_networks_start_sparser_and_five_hidden_layers_learn():
    """Passive networks whose gain takes no step (hidden nodes clipped on both sides, or linear) take
    ``UNSTEPPED_FAN_IN`` (1) input per node on their sparse crossbars from ``UNSTEPPED_FAN_IN_FROM`` (3) hidden
    layers on, not 4, every node of the layer below feeding one node above (equal widths: chains): a narrow 5 × 32
    double-Shockley network learns with the defaults (validation error 0.22 after 5 epochs; with 2 inputs per node
    0.66, and 27–31 % test error after 20; 5 × 64 with 4 inputs: 52.8 %).
    Two hidden layers keep 4, and so do ideal diodes and Shockley nodes on split rails (16 nodes: ideal diodes
    take ±0.8 V rails by default, ``defaults.rails``), which get the step."""
    x = load_digits(seed=0)["train"].x
    fans = {}
    for el, r in (("shockley", None), ("pwl", None), ("shockley", "split"), ("ideal", "split"), ("linear", None)):
        for d in (3, 4):
            net = defaults.network(x[:50], [16] * d, 10, el, rails_=r)
            fans[el, r, d] = {int(n) for G in net.G[1:] for n in (G > 0).sum(axis=0)}
            assert defaults.stepped(el, net.lo, net.hi) == (el == "ideal" or r == "split")
    unstepped = (("shockley", None), ("pwl", None), ("linear", None))
    assert all(fans[k] == {1} for k in fans if k[:2] in unstepped)
    assert defaults.UNSTEPPED_FAN_IN == 1 and defaults.UNSTEPPED_FAN_IN_FROM == 3
    assert {int(n) for G in defaults.network(x[:50], [16] * 2, 10, "shockley").G[1:]
            for n in (G > 0).sum(axis=0)} == {defaults.SPARSE_FAN_IN}
    chains = defaults.network(x[:50], [16] * 4, 10, "shockley")
    for G in chains.G[1:-1]:  # every node feeds one node of the next layer (independent draws left ~37 % unfed)
        assert np.all((G > 0).sum(axis=1) == 1)
    assert np.all((chains.G[-1] > 0).sum(axis=1) <= 1) and (chains.G[-1] > 0).sum() == 10
    assert all(fans[k] == {defaults.SPARSE_FAN_IN} == {4} for k in fans if k[:2] not in unstepped)
    amp = Amplifier(4.0, 1.0, "half")
    assert defaults.fan_in("shockley", [[-0.8]] * 4, [[0.8]] * 4, amp) == defaults.SPARSE_FAN_IN
    data = load_digits(seed=0)
    net = defaults.network(data["train"].x, [32] * 5, 10, "shockley")
    history = train(net, data, TrainConfig(epochs=5).resolved(len(data["train"].x)))
    assert history[-1]["val_error"] < 0.4  # (0.22; with 2 inputs per node 0.66)


@pytest.mark.parametrize("element, amp", [("shockley", None), ("ideal", None), ("pwl", None), ("linear", None),
                                          ("shockley", Amplifier(4.0, 1.0, "half"))],
                         ids=["shockley", "ideal", "pwl", "linear", "shockley-A4C1"])
def test_the_first_hidden_layer_starts_centred(element, amp):
    """``defaults.network`` biases the first hidden layer so that its drive, ``encode(x)·G1 + b1``, has mean 0 over
    the training inputs at every node (the midpoint of its rails); without the bias a 16-node layer's mean drives
    are random sums of the inputs' means, 2.0 V from 0 (median) against a 1.2 V spread and ±0.8 V rails. Only the
    first layer: the others keep no bias."""
    x = load_digits(seed=0)["train"].x
    net = defaults.network(x, [16, 16, 16], 10, element, amplifier=amp)
    drive = Layered(net).input_current(net.encode(x))
    centred = (drive + net.b[0]).mean(axis=0)
    assert np.abs(centred).max() <= 1e-12 * np.abs(drive).max()
    assert np.median(np.abs(drive.mean(axis=0))) > 0.5 * np.median(drive.std(axis=0))  # (the bias matters)
    assert all(not b.any() for b in net.b[1:])


def test_a_narrow_network_learns_with_the_centred_first_layer():
    """16 × 1 double Shockley, the defaults, 4 epochs: validation error 0.27, 78 % of the first layer's node-sample
    pairs beyond the rails in the last epoch; without the first layer's bias 0.47 and 90 % (and after 20 epochs
    6.11 against 10.83 % test error; docs/training.md)."""
    data = load_digits(seed=0)
    net = defaults.network(data["train"].x, [16], 10, "shockley")
    history = train(net, data, TrainConfig(epochs=4).resolved(len(data["train"].x)))
    assert history[-1]["val_error"] < 0.4
    assert history[-1]["v1_beyond"] < 0.85


@pytest.mark.parametrize("hidden, element, amplifier", [([64], "shockley", None), ([16] * 3, "shockley", None),
                                                        ([32] * 4, "pwl", None), ([64] * 2, "shockley", None),
                                                        ([64] * 3, "ideal", None), ([32] * 2, "shockley", (4.0, 1.0)),
                                                        ([32] * 5, "shockley", (4.0, 1.0))])
def test_the_input_gain_sets_the_spread_of_the_network_without_elements(hidden, element, amplifier):
    """The gain's σ, ``encode(x)·G1 / driving_point(1)`` at unit gain, is the first hidden layer's spread in the same
    network with linear nodes and no biases (one CD solve here) within 6 % (measured: 0.1–5.4 %), for dense, sparse,
    chained and amplified networks. The full load (``conductance(1)``, the rule before) was 2× off for chains, where
    a node above follows its one input: their gain was twice too large (16 × 3: 28.9 % test error; halved 5.0 %)."""
    import dataclasses

    from cdsolver import solve
    from cdsolver.elements import Linear
    from cdsolver.network import Amplifier
    from cdsolver.topology import Layered

    x = load_digits(seed=0)["train"].x
    amp = Amplifier(*amplifier, "half") if amplifier else None
    net = defaults.network(x, hidden, 10, element, amplifier=amp)
    bare = dataclasses.replace(net, element=Linear(), input_gain=1.0, b=[np.zeros_like(b) for b in net.b])
    v1 = solve(bare, bare.encode(x), tol=1e-8, max_sweeps=5000).check().states[0]
    pre = bare.encode(x) @ net.G[0]
    sigma = np.median((pre / Layered(net).driving_point(1)).std(axis=0))
    assert sigma == pytest.approx(np.median(v1.std(axis=0)), rel=0.06)
    if len(hidden) >= 3 and amp is None and element != "ideal":  # chains: the full load halves σ
        assert np.median((pre / Layered(net).conductance(1)).std(axis=0)) < 0.6 * sigma


def test_a_narrow_deep_network_learns_with_the_defaults():
    """16 × 3 double Shockley, the defaults (chains, the first layer centred, its gain from the load it really
    carries), 5 epochs: validation error 0.41 (with the full load counted, twice the gain: 0.61, and 28.9 % test
    error after 20 epochs against 5.0 %; docs/training.md)."""
    data = load_digits(seed=0)
    net = defaults.network(data["train"].x, [16] * 3, 10, "shockley")
    history = train(net, data, TrainConfig(epochs=5).resolved(len(data["train"].x)))
    assert history[-1]["val_error"] < 0.5
