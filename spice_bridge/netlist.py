"""ngspice decks for the very circuit the CD solver solves (docs/spice.md), readable by a person.

Node ``n<l>_<j>`` is node ``j`` of layer ``l`` (layer 0 = inputs). With amplifiers, hidden node ``n<l>_<j>``
drives the next crossbar from ``u<l>_<j>`` through an ``E`` source (gain A), a 0 V sense source and an ``F``
source (gain C) pulling C times the delivered current back out of the node. Each element's lines come from
``Element.spice``. Two forms: ``op`` (one sample, DC sources, ``.op``) and ``sweep`` (all samples: every input
and target is a ``B`` source ``pwl(V(sw), 0, x_0, 1, x_1, ...)`` of a dummy source swept by ``.dc``).
"""

from __future__ import annotations

import math

import numpy as np

from cdsolver.circuit import Circuit
from cdsolver.constants import EPSMIN
from cdsolver.elements import Shockley, rail_node, spice_number as num
from cdsolver.network import Network
from cdsolver.topology import Layered
from cdsolver.validation import ValidationError

__all__ = ["deck", "general_deck", "check_general", "circuit_deck", "header", "sources", "body", "analysis", "node",
           "OPTIONS"]

#: Tight tolerances: agree with exact references to ~1e-15 (docs/spice.md); reltol < 1e-15 fails.
OPTIONS = ".options reltol=1e-12 vntol=1e-15 abstol=1e-18 gmin=0"


def node(l: int, j: int) -> str:
    """Name of node ``j`` of layer ``l``."""
    return f"n{l}_{j}"


def _source(name: str, nd: str, values: np.ndarray, ref: str = "0") -> str:
    """A voltage source from ``ref`` to ``nd``: DC for one value, a swept ``pwl`` B source for one per sample."""
    if values.ndim == 0:
        return f"V{name} {nd} {ref} DC {num(values)}"
    vals = values if len(values) > 1 else np.repeat(values, 2)
    pts = ", ".join(f"{k}, {num(x)}" for k, x in enumerate(vals))
    return f"B{name} {nd} {ref} V=pwl(V(sw), {pts})"


def _target_ref(net: Network, k: int) -> str:
    """The node target source ``y<L>_<k>`` stands on: ground, or the ``v−`` node of pair ``k``."""
    return node(net.depth, net.n_classes + k) if net.outputs == "paired" else "0"


def deck(net: Network, v0: np.ndarray, *, beta: float = 0.0, targets: np.ndarray | None = None,
         builtin_diode: bool = False, title: str = "drn-cd deck") -> str:
    """The deck of ``net`` for input voltages ``v0`` (V): shape ``(n_0,)`` gives an ``.op`` deck, ``(batch, n_0)``
    a ``.dc`` sweep over the samples. ``targets`` (V) like ``v0`` with ``n_L`` columns; 0 V if None."""
    net.g_nudge(beta)  # (ValidationError where the nudge is undefined, as in the CD solver)
    v0 = np.asarray(v0, dtype=np.float64)
    lines = header(net, beta, title, len(v0) if v0.ndim == 2 else None)
    lines += sources(net, v0, beta=beta, targets=targets) + body(net, beta=beta, builtin_diode=builtin_diode)
    return "\n".join(lines + ["", analysis(v0), ".end", ""])


def header(net: Network, beta: float, title: str, batch: int | None) -> list[str]:
    """Title and comment lines naming the circuit, then the options."""
    amp = net.amplifier
    return [
        f"* {title}",
        f"* network {'-'.join(map(str, net.sizes))}; element {net.element.to_meta()}; amplifier "
        + (f"A={num(amp.A)} C={num(amp.C)}" + (", second half of each layer inverting" if amp.invert == "half" else "")
           if amp else "none")
        + f"; phase {'free' if beta == 0 else f'nudged beta={num(beta)} S'}; "
        + (f"{batch} samples swept by .dc" if batch else "one sample, .op"),
        "* node n<l>_<j> = node j of layer l (layer 0: inputs); u<l>_<j> = amplified drive of a hidden node",
        OPTIONS,
    ]


def analysis(v0: np.ndarray) -> str:
    """``.op`` for one sample, a ``.dc`` sweep of ``Vsw`` over the samples for a batch."""
    return f".dc Vsw 0 {max(len(v0), 2) - 1} 1" if v0.ndim == 2 else ".op"


def has_nudging_branch(net: Network, beta: float) -> bool:
    return beta != 0 or math.isfinite(net.r_off)


def sources(net: Network, v0: np.ndarray, *, beta: float = 0.0, targets: np.ndarray | None = None) -> list[str]:
    """Input sources ``in0_<i>`` and output target sources ``y<L>_<k>`` for one sample or a swept batch."""
    v0 = np.asarray(v0, dtype=np.float64)
    sweep, L, nL = v0.ndim == 2, net.depth, net.n_classes
    if targets is None:
        targets = np.zeros(v0.shape[:-1] + (nL,))
    targets = np.asarray(targets, dtype=np.float64)
    lines = ["", "* ---- layer 0: input voltage sources"] + (["Vsw sw 0 DC 0"] if sweep else [])
    lines += [_source(f"in0_{i}", node(0, i), v0[..., i]) for i in range(net.sizes[0])]
    if has_nudging_branch(net, beta):
        lines += ["", "* ---- output target voltage sources" + (" (on the v- node of each pair)"
                                                                   if net.outputs == "paired" else "")]
        lines += [_source(f"y{L}_{k}", f"t{L}_{k}", targets[..., k], _target_ref(net, k)) for k in range(nL)]
    return lines


def body(net: Network, *, beta: float = 0.0, builtin_diode: bool = False) -> list[str]:
    """Everything but the sources and the analysis: crossbars, biases, elements, amplifiers, nudging branches."""
    if beta != 0 and net.r_on <= 0:
        raise ValidationError("ngspice switches need R_on > 0 Ω; this network has R_on = 0")
    L, n, el, amp = net.depth, net.sizes, net.element, net.amplifier is not None
    topo = Layered(net)
    lines: list[str] = []
    rails: set[float] = set()
    for l in range(1, L + 1):
        G = net.G[l - 1]
        drive = [node(l - 1, i) if (l == 1 or not amp) else f"u{l - 1}_{i}" for i in range(n[l - 1])]
        lines += ["", f"* ---- crossbar {l}: layer {l - 1} -> layer {l}, R = 1/G (G = 0 omitted)"]
        lines += [f"R{l}_{i}_{j} {drive[i]} {node(l, j)} {num(1.0 / G[i, j])}" for i, j in zip(*np.nonzero(G))]
        b = net.b[l - 1]
        if np.any(b):
            lines += ["", f"* ---- layer {l}: bias current sources (A, into the node)"]
            lines += [f"Ib{l}_{j} 0 {node(l, j)} DC {num(b[j])}" for j in np.flatnonzero(b)]
        if l == L:
            break
        lo, hi = net.lo[l - 1], net.hi[l - 1]
        el_lines = [x for j in range(n[l]) for x in el.spice(f"d{l}_{j}", node(l, j), lo[j], hi[j], builtin_diode)]
        if el_lines:
            lines += ["", f"* ---- layer {l}: nonlinear elements ({el.kind})"] + el_lines
            if builtin_diode and isinstance(el, Shockley):
                rails |= {float(r) for r in np.concatenate([lo, hi]) if math.isfinite(r)}
        if amp:
            lines += ["", f"* ---- layer {l}: amplifiers (E: u = A v; Vs: 0 V sense; F: pulls C x delivered current)"]
            for j, (ga, gc) in enumerate(zip(*topo.gains(l))):  # an inverting amplifier: gains −A and −C
                lines += [f"E{l}_{j} s{l}_{j} 0 {node(l, j)} 0 {num(ga)}", f"Vs{l}_{j} s{l}_{j} u{l}_{j} DC 0",
                          f"F{l}_{j} {node(l, j)} 0 Vs{l}_{j} {num(gc)}"]
    if rails:
        lines += ["", "* ---- diode rails (built-in D model option)", el.spice_model()]
        lines += [f"V{rail_node(r)} {rail_node(r)} 0 DC {num(r)}" for r in sorted(rails)]
    return lines + _nudging(net, beta)


def _nudging(net: Network, beta: float) -> list[str]:
    """Output branches: switch S (RON/ROFF, closed by the phase source) + 1/β resistor, to the target node
    (paired outputs: from ``v+`` to the target source standing on ``v−``, so the branch sees ``v+ − v− − y``)."""
    L, nL = net.depth, net.n_classes
    if not has_nudging_branch(net, beta):
        return ["", "* ---- outputs: free phase, R_off = inf: no nudging branch"]
    roff = num(net.r_off) if math.isfinite(net.r_off) else "1e30"
    lines = ["", "* ---- outputs: nudging switch (closed = nudged) + R = 1/beta to the target source",
             f".model swnudge SW(VT=0.5 VH=0 RON={num(net.r_on)} ROFF={roff})",
             f"Vphase phase 0 DC {1 if beta != 0 else 0}"]
    for k in range(nL):
        out, tgt = node(L, k), f"t{L}_{k}"
        if beta != 0:
            lines += [f"S{L}_{k} {out} m{L}_{k} phase 0 swnudge", f"Rbeta{L}_{k} m{L}_{k} {tgt} {num(1.0 / beta)}"]
        else:
            lines.append(f"S{L}_{k} {out} {tgt} phase 0 swnudge")
    return lines


def check_general(net: Network) -> None:
    """ValidationError (one line: what general decks take, and why not ``net``) unless ``net`` has linear or
    Shockley elements and no amplifiers."""
    kind = net.element.kind
    if net.amplifier is not None:
        why = "amplifiers (E and F sources, which drn circuit does not read)"
    elif kind == "ideal":
        why = "ideal diodes (ngspice has none: it would read D(IDEAL=1) as a junction diode)"
    elif kind not in ("linear", "shockley"):
        why = f"{kind} elements (B sources, which drn circuit does not read)"
    else:
        return
    raise ValidationError(f"general decks take networks of linear or shockley elements without amplifiers (only R, "
                          f"D, V and I elements, which both drn circuit and ngspice solve); this network has {why}")


def general_deck(net: Network, v0: np.ndarray, title: str = "drn-cd network as a general deck") -> str:
    """The ``.op`` deck of one sample (``v0`` (V), shape ``(n_0,)``) in the DC subset ``spice_bridge.parse``
    reads: Shockley elements as built-in ``D`` diodes (ngspice's law: it differs from the layered solver's pure
    Shockley law in reverse bias below -3·Vd), the free phase's open switch as its resistor ``R_off``. Other
    networks raise ValidationError (``check_general``)."""
    check_general(net)
    v0 = np.asarray(v0, dtype=np.float64)
    lines = header(net, 0.0, title, None) + sources(net, v0) + body(net, builtin_diode=True)
    out = []
    for ln in lines:
        if ln.startswith((".model swnudge", "Vphase")):
            continue
        if ln.startswith(f"S{net.depth}_"):
            name, a, b = ln.split()[:3]
            ln = f"R{name} {a} {b} {num(net.r_off)}"
        out.append(ln)
    return "\n".join(out + ["", ".op", ".end", ""])


def circuit_deck(ckt: Circuit, title: str = "drn-cd circuit", options: bool = True) -> str:
    """The ``.op`` deck of a general circuit (``spice_bridge.parse`` reads it back to the same circuit): one
    ``.model`` per diode (ideal diodes share ``.model ideal D(IDEAL=1)``, which only drn circuit reads),
    ``.options gmin=`` (and ``epsmin=`` where not ngspice's default) when ``options`` (else ngspice's defaults
    apply)."""
    names = ["0"] + ckt.nodes
    nd = lambda i: names[i + 1]  # noqa: E731  (index -1 = ground)
    lines = [f"* {title}", f"* {len(ckt.external)} nodes, {len(ckt.resistors)} resistors, {len(ckt.diodes)} diodes"]
    if options:
        lines.append(f".options gmin={num(ckt.gmin)}" + (f" epsmin={num(ckt.epsmin)}" if ckt.epsmin != EPSMIN else ""))
    lines += [f"{n} {nd(p)} {nd(m)} DC {num(x)}" for n, p, m, x in ckt.vsources]
    lines += [f"{n} {nd(p)} {nd(m)} DC {num(x)}" for n, p, m, x in ckt.isources]
    lines += [f"{n} {nd(a)} {nd(b)} 0" for n, a, b in ckt.shorts]
    lines += [f"{n} {nd(a)} {nd(b)} {num(1.0 / g)}" for n, a, b, g in ckt.resistors if n not in ckt.series]
    for n, a, k, Is, N in ckt.diodes:
        outer, rs = ckt.series.get(n, (nd(a), 0.0))
        model = f".model m{n} D(IS={num(Is)} N={num(N)}" + (f" RS={num(rs)})" if rs else ")")
        lines += [f"{n} {outer} {nd(k)} m{n}", model]
    if ckt.ideal:
        lines.append(".model ideal D(IDEAL=1)")
        lines += [f"{n} {nd(a)} {nd(k)} ideal" for n, a, k in ckt.ideal]
    return "\n".join(lines + [".op", ".end", ""])
