"""Network model and the drn/1 file: round trip, unknown keys kept, clear errors on malformed files."""

import json

import numpy as np
import pytest

from cdsolver.circuit import random_circuit
from cdsolver.network import NetworkFormatError, load_network, random_network, save_network
from cdsolver.validation import ValidationError


def arrays_of(net):
    return {f"{p}{l}": a for p, arrs in (("G", net.G), ("b", net.b), ("lo", net.lo), ("hi", net.hi))
            for l, a in enumerate(arrs, 1)}


@pytest.mark.parametrize("kind", ["linear", "ideal", "shockley", "pwl"])
def test_round_trip_bit_for_bit(tmp_path, kind):
    net = random_network([6, 5, 4, 3], kind, seed=3, amplifier=(4.0, 0.25), bias=1e-3, input_gain=2.5, r_off=np.inf)
    net.extra_meta["note"] = {"trained": True}
    net.extra_arrays["history"] = np.arange(5.0)
    save_network(net, tmp_path / "net.npz")
    back = load_network(tmp_path / "net.npz")
    for k, a in arrays_of(net).items():
        np.testing.assert_array_equal(arrays_of(back)[k], a)
        assert arrays_of(back)[k].dtype == np.float64
    assert back.meta() == net.meta()
    assert back.meta()["note"] == {"trained": True} and back.meta()["switch"]["R_off"] is None
    np.testing.assert_array_equal(back.extra_arrays["history"], np.arange(5.0))
    assert back.element == net.element


def write(tmp_path, arrays, meta):
    with open(tmp_path / "bad.npz", "wb") as f:
        text = meta if isinstance(meta, str) else json.dumps(meta)
        np.savez(f, **arrays, **({} if meta is None else {"meta": np.array(text)}))
    return tmp_path / "bad.npz"


def good(tmp_path):
    net = random_network([4, 3, 2], "shockley", seed=0)
    return arrays_of(net), net.meta()


@pytest.mark.parametrize("change, msg", [
    (lambda a, m: a.pop("b2"), "missing array 'b2'"),
    (lambda a, m: a.pop("G1"), "missing array 'G1'"),
    (lambda a, m: a.pop("lo1"), "missing array 'lo1'"),
    (lambda a, m: a.__setitem__("G2", -a["G2"]), r"G2\[0,0\] = .* conductances must be >= 0"),
    (lambda a, m: a["G1"].__setitem__((1, 1), np.nan), r"G1\[1, 1\] = nan"),
    (lambda a, m: a.__setitem__("b1", np.zeros(7)), r"b1 must have shape \(3,\)"),
    (lambda a, m: a.__setitem__("G2", np.ones((4, 2))), "G2 has 4 rows but layer 1 has 3 nodes"),
    (lambda a, m: a.__setitem__("lo1", np.full(3, 1.0)), r"lo1\[0\] = 1.0 V > hi1\[0\]"),
    (lambda a, m: a.__setitem__("hi1", np.full(3, np.nan)), r"hi1\[0\] = nan"),
    (lambda a, m: (a["G1"].__setitem__((slice(None), 0), 0.0), a["G2"].__setitem__(0, 0.0)),
     "node 0 of layer 1 is floating"),
    (lambda a, m: m.pop("input_gain"), "meta.input_gain is missing"),
    (lambda a, m: m.__setitem__("format", "drn/0"), "meta.format must be 'drn/1'"),
    (lambda a, m: m.__setitem__("encoding", "onehot"), "meta.encoding must be one of"),
    (lambda a, m: m["element"].__setitem__("Vd", "big"), "meta.element.Vd"),
    (lambda a, m: m.__setitem__("amplifier", {"A": 4}), "meta.amplifier must be null or"),
    (lambda a, m: m.__setitem__("amplifier", {"A": 4, "C": -1}), "meta.amplifier.C"),
    (lambda a, m: m.__setitem__("switch", {"R_on": -1}), "meta.switch.R_on"),
    (lambda a, m: m.__setitem__("outputs", "triple"), "meta.outputs must be one of"),
    (lambda a, m: (m.__setitem__("outputs", "paired"), a.__setitem__("G2", np.ones((3, 3))),
                   a.__setitem__("b2", np.zeros(3))), "paired outputs need an even number of output nodes"),
])
def test_malformed_file_names_the_problem(tmp_path, change, msg):
    arrays, meta = good(tmp_path)
    change(arrays, meta)
    with pytest.raises(NetworkFormatError, match=msg):
        load_network(write(tmp_path, arrays, meta))


def test_not_json_and_not_npz(tmp_path):
    arrays, _ = good(tmp_path)
    with pytest.raises(NetworkFormatError, match="meta is not valid JSON"):
        load_network(write(tmp_path, arrays, "{oops"))
    with pytest.raises(NetworkFormatError, match="missing array 'meta'"):
        load_network(write(tmp_path, arrays, None))
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(NetworkFormatError, match="not a network file"):
        load_network(tmp_path / "junk.npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\0" * 20)  # a zip's start, cut
    with pytest.raises(NetworkFormatError, match="not a readable .npz"):
        load_network(tmp_path / "cut.npz")


def test_encode_pair_and_identity():
    net = random_network([6, 2], "linear", input_gain=2.0)
    x = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(net.encode(x), [[0, 1, 2, 0, -1, -2]])
    with pytest.raises(ValueError, match=r"inputs: expected shape \(batch, 3\), got \(1, 4\)"):
        net.encode(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN/inf"):
        net.encode(np.array([[0.0, np.nan, 1.0]]))
    ident = random_network([3, 2], "linear", encoding="identity")
    np.testing.assert_array_equal(ident.encode(x), x)


def test_bad_random_network_arguments_are_the_users_errors():
    with pytest.raises(ValidationError, match="init must be 'uniform', 'clamped' or 'sparse', got 'dense'"):
        random_network([4, 3, 2], init="dense")
    with pytest.raises(ValidationError, match="init 'sparse' needs fan_in, a whole number >= 1, got 0"):
        random_network([4, 3, 2], init="sparse", fan_in=0)
    with pytest.raises(ValidationError, match="element must be one of"):
        random_network([4, 3, 2], "diode")
    with pytest.raises(ValidationError, match="needs fan_in"):
        random_network([4, 3, 2], init="sparse", fan_in=True)
    with pytest.raises(ValidationError, match="kind must be one of"):
        random_circuit("mesh", 8)


def test_g_nudge():
    net = random_network([4, 3, 2], "ideal", r_on=1.0, r_off=1e12)
    assert net.g_nudge(0.5) == pytest.approx(1 / 3)
    assert net.g_nudge(-0.5) == pytest.approx(-1.0)
    assert net.g_nudge(0.0) == 1e-12
    assert random_network([4, 2], "ideal", r_off=np.inf).g_nudge(0.0) == 0.0


def test_paired_outputs_decode_round_trip_and_default(tmp_path):
    net = random_network([4, 3, 2], "shockley", seed=0, outputs="paired")
    assert net.sizes == [4, 3, 4] and net.n_classes == 2
    v = np.array([[0.3, -0.1, 0.1, 0.2]])  # v+ = (0.3, -0.1), v- = (0.1, 0.2)
    np.testing.assert_allclose(net.decode(v), [[0.2, -0.3]])
    assert net.decode(v).argmax(1)[0] == 0
    np.testing.assert_array_equal(net.decode_T(np.array([[1.0, 2.0]])), [[1, 2, -1, -2]])
    save_network(net, tmp_path / "p.npz")
    assert load_network(tmp_path / "p.npz").outputs == "paired"
    arrays, meta = good(tmp_path)  # files written before the key existed: single outputs
    meta.pop("outputs")
    assert load_network(write(tmp_path, arrays, meta)).outputs == "single"
