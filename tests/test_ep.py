"""EP gradients against the implicit-differentiation gradient (and that against finite differences), training
that lowers the loss deterministically, MNIST-format IDX/npz reading, and `drn train`."""

import csv
import gzip
import itertools

import numpy as np
import pytest

from cdsolver import load_network, random_network, save_network, solve
from cdsolver.datasets import DatasetError, Split, load_digits, load_fashion_mnist, load_mnist, read_idx
from cdsolver.ep import ep_gradient, implicit_gradient, loss
from cdsolver.network import NetworkFormatError
from cdsolver.ep import Gradient
from cdsolver.train import TrainConfig, TrainState, evaluate, load_checkpoint, save_checkpoint, step, train
from cdsolver.validation import ValidationError
from studies.cli import main

NETS = {  # element, rails
    "shockley-double": ("shockley", "both"),
    "shockley-single": ("shockley", "split"),
    "ideal": ("ideal", "split"),
}
AMPS = {"no-amp": None, "A4C1": (4.0, 1.0), "A4C0.25": (4.0, 0.25), "A4C1inv": (4.0, 1.0, "half")}


def problem(el, amp, outputs="single"):
    kind, rails = NETS[el]
    net = random_network([6, 5, 4, 3], kind, rails=rails, seed=1, amplifier=AMPS[amp], input_gain=3.0, g_mean=1.0,
                         bias=0.1, outputs=outputs)
    rng = np.random.default_rng(0)
    v0, y = net.encode(rng.uniform(0, 1, (4, 3))), rng.uniform(-1, 1, (4, 3))
    return net, v0, y, solve(net, v0, targets=y, tol=1e-14, max_sweeps=5000).check()


@pytest.mark.parametrize("el, amp, outputs", itertools.product(NETS, AMPS, ["single", "paired"]))
def test_ep_converges_to_the_true_gradient_at_the_right_order(el, amp, outputs):
    net, v0, y, free = problem(el, amp, outputs)
    true = implicit_gradient(net, v0, free.states, y).flat()
    # ideal diodes: β small enough that no node crosses a rail between phases
    betas = [0.01, 0.005, 0.0025] if el == "ideal" else [0.04, 0.02, 0.01]

    def err(est, beta):
        g, _ = ep_gradient(net, v0, y, beta=beta, estimator=est, free=free, tol=1e-14, max_sweeps=5000)
        return np.linalg.norm(g.flat() - true) / np.linalg.norm(true)

    for est, order in (("centered", 4.0), ("positive", 2.0), ("negative", 2.0)):
        e = [err(est, b) for b in betas]
        ratios = [e[0] / e[1], e[1] / e[2]]
        assert all(0.85 * order < r < 1.15 * order for r in ratios), (est, e, ratios)
        assert e[-1] < (0.02 if est == "centered" else 0.2)


@pytest.mark.parametrize("el, outputs", [("shockley-double", "single"), ("shockley-single", "single"),
                                         ("shockley-double", "paired")])
def test_implicit_gradient_matches_finite_differences(el, outputs):
    net, v0, y, free = problem(el, "A4C0.25", outputs)
    g = implicit_gradient(net, v0, free.states, y)
    rng = np.random.default_rng(3)
    for l in range(net.depth):
        for _ in range(2):
            i, j = rng.integers(net.G[l].shape[0]), rng.integers(net.G[l].shape[1])
            L = []
            for h in (1e-6, -1e-6):
                n2 = net.copy()
                n2.G[l][i, j] += h
                L.append(loss(n2, solve(n2, v0, targets=y, tol=1e-14, max_sweeps=5000).states, y))
            assert (L[0] - L[1]) / 2e-6 == pytest.approx(g.dG[l][i, j], rel=1e-5, abs=1e-9)
        k = rng.integers(len(net.b[l]))
        L = []
        for h in (1e-6, -1e-6):
            n2 = net.copy()
            n2.b[l][k] += h
            L.append(loss(n2, solve(n2, v0, targets=y, tol=1e-14, max_sweeps=5000).states, y))
        assert (L[0] - L[1]) / 2e-6 == pytest.approx(g.db[l][k], rel=1e-5, abs=1e-9)


def small_digits():
    d = load_digits(seed=0)
    return {"train": Split(d["train"].x[:300], d["train"].y[:300]), "val": Split(d["val"].x[:100], d["val"].y[:100])}


def test_training_lowers_the_loss_and_is_deterministic(tmp_path):
    data = small_digits()
    cfg = TrainConfig(epochs=3, lr=0.002, target=0.3, beta=0.1)
    nets = [random_network([128, 32, 10], "shockley", seed=0, input_gain=40.0) for _ in range(2)]
    before = evaluate(nets[0], data["val"], cfg)[1]
    hist = [train(n, data, cfg) for n in nets]
    assert hist[0][-1]["val_loss"] < 0.8 * before
    assert hist[0][-1]["train_loss"] < hist[0][0]["train_loss"]
    for a, b in zip(nets[0].G + nets[0].b, nets[1].G + nets[1].b):
        np.testing.assert_array_equal(a, b)
    assert all(np.all(G >= cfg.g_min) and np.all(G <= cfg.g_max) for G in nets[0].G)
    save_network(nets[0], tmp_path / "t.npz")
    back = load_network(tmp_path / "t.npz")
    for a, b in zip(nets[0].G + nets[0].b, back.G + back.b):
        np.testing.assert_array_equal(a, b)


def test_evaluation_does_not_see_the_labels():
    """The free phase with the target sources at the labels (through R_off = 1e12 Ω) decided the argmax where the
    outputs were otherwise tied: a network whose ten outputs are equal read ~0 % error. At inference the
    targets are 0 V: every output equal, the argmax is class 0."""
    data = small_digits()["val"]
    net = random_network([128, 4, 10], "shockley", seed=0, input_gain=40.0)
    net.G[-1][:] = 0.1  # (every output node sees the same conductances and bias: ten equal outputs)
    net.b[-1][:] = 0.0
    err, _ = evaluate(net, data, TrainConfig())
    assert err == pytest.approx(np.mean(data.y != 0))


def test_adam_first_step_moves_every_parameter_by_rate_times_scale():
    """Adam's first step is ``rate·scale·sign(g)`` (up to ε): 1/n_{l−1} S per unit rate for G_l, 1 A for b_l; two
    steps match the paper's formula; momentum is ``v ← μv − rate·g``."""
    net = random_network([6, 5, 4], "shockley", seed=0)
    rng = np.random.default_rng(1)
    grads = [Gradient([rng.normal(size=G.shape) for G in net.G], [rng.normal(size=b.shape) for b in net.b])
             for _ in range(2)]
    cfg = TrainConfig(optimizer="adam")
    rates = [0.1, 0.01]
    start, slots = [p.copy() for p in net.G + net.b], TrainState.start(net, 1, cfg).slots
    step(cfg, net, grads[0], rates, slots, 1)
    scale = [0.1 / 6, 0.01 / 5, 0.1, 0.01]
    for p, p0, g, s in zip(net.G + net.b, start, grads[0].dG + grads[0].db, scale):
        np.testing.assert_allclose(p - p0, -s * np.sign(g), rtol=1e-4)  # up to ε
    step(cfg, net, grads[1], rates, slots, 2)
    corr = [np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) for t in (1, 2)]  # the ε̂ form of Adam (its §2)
    for p, p0, g1, g2, s in zip(net.G + net.b, start, grads[0].dG + grads[0].db, grads[1].dG + grads[1].db, scale):
        m, v = [0.1 * g1, 0.9 * 0.1 * g1 + 0.1 * g2], [0.001 * g1 ** 2, 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2]
        want = -sum(s * c * mt / (np.sqrt(vt) + 1e-8) for c, mt, vt in zip(corr, m, v))
        np.testing.assert_allclose(p - p0, want, rtol=1e-12)
    cfg = TrainConfig(optimizer="momentum")
    before, slots = [p.copy() for p in net.G + net.b], TrainState.start(net, 1, cfg).slots
    step(cfg, net, grads[0], rates, slots, 1)
    step(cfg, net, grads[1], rates, slots, 2)
    for p, p0, g1, g2, r in zip(net.G + net.b, before, grads[0].dG + grads[0].db, grads[1].dG + grads[1].db,
                                rates + rates):
        np.testing.assert_allclose(p - p0, -r * (1.9 * g1 + g2), rtol=1e-12)
    with pytest.raises(ValidationError, match="optimizer must be 'momentum' or 'adam'"):
        TrainConfig(optimizer="sgd").rates(net)
    with pytest.raises(ValidationError, match=r"momentum and average must be in \[0, 1\)"):
        TrainConfig(average=1.0).resolved(100).rates(net)


def write_idx(path, arr, gz=False):
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_mnist(d, gz):
    rng = np.random.default_rng(0)
    for stem, n in (("train", 40), ("t10k", 10)):
        ext = ".gz" if gz else ""
        write_idx(d / f"{stem}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(d / f"{stem}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n), gz)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    make_mnist(tmp_path, gz)
    d = load_mnist(tmp_path, n_val=8)
    assert d["train"].x.shape == (32, 784) and d["val"].x.shape == (8, 784) and d["test"].x.shape == (10, 784)
    assert d["train"].x.max() <= 1.0 and d["train"].x.min() >= 0.0
    raw = read_idx(tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if gz else "")))
    np.testing.assert_array_equal(d["test"].y, raw)


def test_mnist_npz_and_errors(tmp_path):
    with pytest.raises(DatasetError, match="data folder not found"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DatasetError, match="neither mnist.npz nor train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00" + bytes(20))
    with pytest.raises(DatasetError, match="bad magic 08030000"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    write_idx(tmp_path / "short", np.zeros((2, 3)))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(DatasetError, match=r"header says shape \(2, 3\)"):
        read_idx(tmp_path / "short")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (30, 28, 28)), y_train=rng.integers(0, 10, 30),
             x_test=rng.integers(0, 256, (5, 28, 28)), y_test=rng.integers(0, 10, 5))
    assert load_mnist(tmp_path, n_val=10)["val"].x.shape == (10, 784)


def test_drn_train_writes_a_valid_network_and_history(tmp_path, capsys):
    out = tmp_path / "net.npz"
    assert main(["train", "--hidden", "16", "--epochs", "2", "--out", str(out)]) == 0
    net = load_network(out)
    assert net.sizes == [128, 16, 10] and net.meta()["training"]["epochs"] == 2
    rows = list(csv.DictReader(open(tmp_path / "net.history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"val_error", "seconds"} <= set(rows[0])
    assert "test error" in capsys.readouterr().out
    assert main(["train", "--dataset", "mnist", "--out", str(out)]) == 2
    assert main(["train", "--hidden", "8", "8", "--lr", "0.1", "0.1", "--epochs", "1", "--out", str(out)]) == 2
    assert "lr must be one positive rate or 3" in capsys.readouterr().err
    assert main(["train", "--hidden", "8", "--lr-decay", "0", "--epochs", "1", "--out", str(out)]) == 2
    assert "--lr-decay must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("opt", [dict(optimizer="momentum", average=0.0),
                                 dict(optimizer="adam", lr=0.01, average=0.99)],
                         ids=["momentum", "adam-avg"])
def test_resume_continues_bit_for_bit(tmp_path, opt):
    """1 epoch + checkpoint + load + 2 epochs == 3 epochs straight (weights, biases, averaged model, history),
    paired outputs; SGD with momentum, and Adam with a moving average of the weights."""
    data = small_digits()
    cfg = TrainConfig(**{**dict(epochs=3, lr=0.002, target=0.3, beta=0.1), **opt})
    make = lambda: random_network([128, 16, 10], "shockley", seed=0, input_gain=40.0, outputs="paired")  # noqa
    straight = make()
    st = TrainState.start(straight, len(data["train"].x), cfg)
    hist = train(straight, data, cfg, state=st)
    net = make()
    train(net, data, TrainConfig(**{**cfg.__dict__, "epochs": 1}),
          checkpoint=lambda st: save_checkpoint(tmp_path / "c.npz", net, st, {"note": 1}))
    back, state, run = load_checkpoint(tmp_path / "c.npz")
    assert state.epoch == 1 and run == {"note": 1} and "checkpoint" not in back.meta()
    assert not any(k.startswith("ckpt_") for k in back.extra_arrays)
    hist2 = train(back, data, cfg, state=state)
    for a, b in zip(straight.G + straight.b + st.model(straight).G, back.G + back.b + state.model(back).G):
        np.testing.assert_array_equal(a, b)
    assert (st.model(straight) is straight) == (not cfg.average)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(hist2) == strip(hist) and len(hist2) == 3
    other = TrainConfig(**{**cfg.__dict__, "optimizer": "momentum" if cfg.optimizer == "adam" else "adam"})
    with pytest.raises(ValidationError, match="made for another optimizer"):
        train(back, data, other, state=state)
    with pytest.raises(ValidationError, match=r"labels must be integers 0..2 \(the network's 3 classes\), found int64 "
                                              r"0..9"):
        train(random_network([128, 4, 3], "shockley", seed=0), data, cfg)
    assert load_network(tmp_path / "c.npz").sizes == [128, 16, 20]  # a checkpoint is a valid drn/1 network file
    old = load_network(tmp_path / "c.npz")  # a checkpoint of the previous format: momentum buffers "ckpt_velocity"
    old.extra_arrays["ckpt_velocity0"] = old.extra_arrays.pop("ckpt_slot0")
    save_network(old, tmp_path / "old.npz")
    with pytest.raises(NetworkFormatError, match="checkpoint arrays ckpt_velocity0 are not this version's"):
        load_checkpoint(tmp_path / "old.npz")
    with pytest.raises(NetworkFormatError, match="not a training checkpoint"):
        save_network(straight, tmp_path / "plain.npz")
        load_checkpoint(tmp_path / "plain.npz")


def test_drn_train_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    import cdsolver.train as tr

    base = ["train", "--hidden", "8", "--outputs", "paired", "--batch-size", "64"]
    assert main(base + ["--epochs", "3", "--out", str(tmp_path / "full.npz")]) == 0
    real_save, calls = tr.save_network, []

    def save_then_ctrl_c(net, path):  # the 2nd checkpoint is cut half-written by Ctrl-C
        calls.append(path)
        if len(calls) == 2:
            open(path, "wb").write(b"PK half a zip")
            raise KeyboardInterrupt
        real_save(net, path)

    monkeypatch.setattr(tr, "save_network", save_then_ctrl_c)
    out = tmp_path / "cut.npz"
    assert main(base + ["--epochs", "3", "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert tr.load_checkpoint(tmp_path / "cut.ckpt.npz")[1].epoch == 1  # the last finished epoch, intact
    assert len(list(csv.DictReader(open(tmp_path / "cut.history.csv")))) == 1
    monkeypatch.setattr(tr, "save_network", real_save)
    assert main(base + ["--epochs", "3", "--out", str(out), "--resume"]) == 0
    a, b = load_network(tmp_path / "full.npz"), load_network(out)
    for x, y in zip(a.G + a.b, b.G + b.b):
        np.testing.assert_array_equal(x, y)
    assert [r["val_error"] for r in csv.DictReader(open(tmp_path / "cut.history.csv"))] == \
           [r["val_error"] for r in csv.DictReader(open(tmp_path / "full.history.csv"))]
    # resume refuses what would not continue the same run
    assert main(base + ["--epochs", "3", "--out", str(tmp_path / "none.npz"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(base + ["--epochs", "4", "--lr", "0.01", "--out", str(out), "--resume"]) == 2
    assert "--lr was the default [0.028284271247461905], now [0.01]" in capsys.readouterr().err
    assert main(base + ["--epochs", "3", "--out", str(out), "--resume"]) == 2
    assert "3 epochs done" in capsys.readouterr().err
    assert main(base + ["--epochs", "4", "--optimizer", "momentum", "--out", str(out), "--resume"]) == 2
    assert "--optimizer was 'adam', now 'momentum'" in capsys.readouterr().err
    # learning curves from the histories
    fig = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "full.history.csv"), str(tmp_path / "cut.history.csv"), "--out", str(fig)]) == 0
    assert fig.stat().st_size > 10_000 and fig.with_suffix(".pdf").is_file()
    assert main(["plot", str(tmp_path / "full.history.csv"), str(tmp_path)]) == 2


def test_drn_train_adam_with_average_saves_the_averaged_model(tmp_path, capsys):
    out = tmp_path / "a.npz"
    args = ["train", "--hidden", "8", "--epochs", "2", "--optimizer", "adam", "--lr", "0.01", "--average", "0.99"]
    assert main(args + ["--out", str(out)]) == 0
    test_err = float(capsys.readouterr().out.split("test error ")[1].split()[0])
    net, raw = load_network(out), load_checkpoint(tmp_path / "a.ckpt.npz")
    assert net.meta()["training"]["test_error"] == pytest.approx(test_err, abs=5e-5)
    _, state, run = raw
    assert run["optimizer"] == "adam" and run["average"] == 0.99 and len(state.slots) == 8
    for model, avg, w in zip(net.G + net.b, state.average, raw[0].G + raw[0].b):
        np.testing.assert_array_equal(model, avg)  # NET.npz is the average, the checkpoint keeps the weights
        assert not np.array_equal(model, w)
    assert evaluate(net, load_digits(seed=0)["test"], TrainConfig())[0] == pytest.approx(test_err, abs=5e-5)
    assert main(["train", "--hidden", "8", "--average", "1", "--out", str(out)]) == 2
    assert "--momentum and --average must be in [0, 1)" in capsys.readouterr().err


def test_drn_train_config_file(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text('hidden = [8, 6]\nlr = [0.002, 0.001, 0.001]\nepochs = 1\noutputs = "paired"\ninput_gain = 30\n')
    out = tmp_path / "n.npz"
    assert main(["train", "--config", str(cfg), "--hidden", "8", "4", "--out", str(out)]) == 0  # command line wins
    net = load_network(out)
    assert net.sizes == [128, 8, 4, 20] and net.input_gain == 30.0 and net.outputs == "paired"
    cfg.write_text("hiden = [8]\n")
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    assert "unknown key 'hiden'" in capsys.readouterr().err
    cfg.write_text("hidden = [8\n")
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_fashion_mnist_files_and_messages(tmp_path, monkeypatch):
    import cdsolver.datasets as ds

    make_mnist(tmp_path, gz=True)  # the Debian package ships the four files gzipped
    d = load_fashion_mnist(tmp_path, n_val=8)
    assert d["train"].x.shape == (32, 784) and d["val"].x.shape == (8, 784) and d["test"].x.shape == (10, 784)
    assert d["train"].x.max() <= 1.0
    monkeypatch.setattr(ds, "FASHION_DIR", str(tmp_path / "usr-share"))
    with pytest.raises(DatasetError, match=r"make data.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(ds.FASHION_DIR)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 12), gz=True)
    with pytest.raises(DatasetError, match=r"test: labels must be classes 0..9, found 12..12"):
        load_fashion_mnist(tmp_path)


@pytest.mark.parametrize("name", ["fashion_shockley", "fashion_ideal", "fashion_deep", "fashion_deep_ideal"])
def test_shipped_fashion_configs_train(tmp_path, name):
    """The README's Fashion-MNIST configs run as shipped (one epoch on generated 28×28 files: 64 train images
    after the 5,000 of the validation split)."""
    import tomllib
    from pathlib import Path

    path = Path(__file__).parents[1] / "studies" / "configs" / f"{name}.toml"
    rng = np.random.default_rng(0)
    for stem, n in (("train", 5064), ("t10k", 50)):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), gz=True)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), gz=True)
    out = tmp_path / "n.npz"
    assert main(["train", "--config", str(path), "--data-dir", str(tmp_path), "--epochs", "1", "--out", str(out)]) == 0
    want = tomllib.loads(path.read_text())
    net = load_network(out)
    assert net.sizes == [1568, *want["hidden"], 20] and net.outputs == "paired"
    assert net.meta()["training"]["optimizer"] == want.get("optimizer", "adam")


def test_one_rate_is_scaled_per_layer_by_the_amplifier_weights():
    amp = random_network([6, 5, 4, 3], "shockley", amplifier=(4.0, 0.25))
    np.testing.assert_allclose(TrainConfig(lr=0.1, optimizer="momentum").rates(amp), [0.1 / 256, 0.1 / 16, 0.1])
    passive = random_network([6, 5, 4, 3], "shockley")
    assert TrainConfig(lr=0.1, optimizer="momentum").rates(passive) == [0.1, 0.1, 0.1]
    assert TrainConfig(lr=[0.1, 0.2, 0.3], optimizer="momentum").rates(amp) == [0.1, 0.2, 0.3]
    with pytest.raises(ValidationError, match="lr must be one positive rate or 3"):
        TrainConfig(lr=[0.1, 0.2]).rates(amp)


def test_drn_train_init_starts_from_a_trained_network(tmp_path, capsys):
    """--init NET.npz: the run starts from NET's weights with a fresh optimizer (= the library's train on the loaded
    network); a network that the structure options do not describe, or a bad file, is a one-line error."""
    from cdsolver.datasets import load_digits

    base = ["train", "--hidden", "8", "--outputs", "paired", "--batch-size", "64"]
    one = tmp_path / "one.npz"
    assert main(base + ["--epochs", "1", "--out", str(one)]) == 0
    assert main(base + ["--epochs", "0", "--init", str(one), "--out", str(tmp_path / "same.npz")]) == 0
    a, b = load_network(one), load_network(tmp_path / "same.npz")
    for x, y in zip(a.G + a.b, b.G + b.b):
        np.testing.assert_array_equal(x, y)
    assert b.input_gain == a.input_gain
    assert main(base + ["--epochs", "1", "--lr", "0.003", "--init", str(one), "--out", str(tmp_path / "two.npz")]) == 0
    net, data = load_network(one), load_digits(seed=0)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.003)
    st = TrainState.start(net, len(data["train"].x), cfg)
    train(net, data, cfg, state=st)
    got, want = load_network(tmp_path / "two.npz"), st.model(net)
    for x, y in zip(got.G + got.b, want.G + want.b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(got.G[0], a.G[0])  # it trained
    capsys.readouterr()
    assert main(["train", "--hidden", "9", "--init", str(one), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "the network differs from the options: sizes [128, 8, 20] (options: [128, 9, 10]); outputs paired" in err
    assert main(base + ["--init", str(one), "--input-gain", "3", "--out", str(tmp_path / "x.npz")]) == 2
    assert "input gain" in capsys.readouterr().err
    assert main(base + ["--init", str(tmp_path / "nothing.npz"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "--init" in capsys.readouterr().err
