"""(Re)make the golden decks: `python netlists/make_golden.py`. Each case stores its network (<name>.net.npz),
inputs (<name>.v0.npy, V), targets, the .dc sweep deck (<name>.cir) and the CD states (<name>.states.npz).
tests/test_golden.py regenerates every deck (the text must match) and re-runs ngspice on it (states must match CD).
"""

from pathlib import Path

import numpy as np

from cdsolver import random_network, save_network, solve
from spice_bridge.netlist import deck

HERE = Path(__file__).parent

# name: (sizes, element kind, rails, amplifier, beta)
CASES = {
    "linear_free": ([6, 5, 3], "linear", None, None, 0.0),
    "shockley_double_amp_nudged": ([6, 5, 4, 3], "shockley", "both", (4.0, 1.0), 0.5),
    "shockley_single_amp025_negative_beta": ([6, 5, 4, 3], "shockley", "split", (4.0, 0.25), -0.1),
    "pwl_free_3hidden": ([6, 5, 4, 4, 3], "pwl", None, None, 0.0),
    "shockley_double_inverting_amp_nudged": ([6, 6, 4, 3], "shockley", "both", (4.0, 1.0, "half"), 0.3),
}


def build(name):
    sizes, kind, rails, amp, beta = CASES[name]
    net = random_network(sizes, kind, rails=rails, seed=7, amplifier=amp, input_gain=3.0, g_mean=1.0, bias=0.1)
    rng = np.random.default_rng(7)
    v0 = net.encode(rng.uniform(0, 1, (3, sizes[0] // 2)))
    y = rng.uniform(-1, 1, (3, sizes[-1]))
    return net, v0, y, beta


def main():
    for name in CASES:
        net, v0, y, beta = build(name)
        save_network(net, HERE / f"{name}.net.npz")
        np.save(HERE / f"{name}.v0.npy", v0)
        np.save(HERE / f"{name}.targets.npy", y)
        (HERE / f"{name}.cir").write_text(deck(net, v0, beta=beta, targets=y, title=f"golden deck {name}"))
        solve(net, v0, beta=beta, targets=y, tol=1e-14, max_sweeps=5000).check().save(HERE / f"{name}.states.npz")
        print("wrote", name)


if __name__ == "__main__":
    main()
