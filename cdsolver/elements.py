"""Node elements: the nonlinear element at each hidden node and its exact 1-D coordinate-descent update.

Every element gives, for a node with total conductance ``a`` (S, > 0) and drive current ``c`` (A), the
unique voltage ``v`` (V) solving the node's KCL ``a*v - c + I(v) = 0`` (docs/solver.md#elements-elementspy), where
``I(v)`` is the current leaving the node through the element. Rails ``lo``/``hi`` (V) are per node; ``±inf`` means
no diode on that side. Arrays broadcast: ``a``, ``lo``, ``hi`` have shape ``(n,)``, ``c`` and ``v`` ``(..., n)``.

Each element also gives ``current(v)`` (A), ``conductance(v) = dI/dv`` (S), ``potential(v) = ∫I dv`` (W, the
dissipation potential entering the co-content) and ``residual(v, a, c)``, the KCL residual (A) used for the
stopping test — and ``spice(name, node, lo, hi)``, the ngspice lines of the same element at one node, so that
the two engines model the same circuit (``spice_bridge.netlist`` assembles the deck).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .constants import EPSMIN, VT
from .validation import ValidationError

__all__ = ["Element", "Linear", "LinearPair", "Ideal", "Shockley", "Pwl", "element_from_meta", "spice_number",
           "KINDS"]

# Below this value of ln z the diode carries < 6e-6 of the node's current: one Newton step from c'/a is
# exact there (its error is ~z^2), and the (slow, ~110 ns) wrightomega call is skipped.
_LNZ_CUTOFF = -12.0
_EPS = np.finfo(float).eps
#: Smallest Shockley Vd = n*Vt (V) accepted: far below any physical diode (n*Vt >= ~0.02 V); at 1e-300 the
#: update divides by Vd**2 = 0.
VD_MIN = 1e-12


def spice_number(x: float) -> str:
    """A float as ngspice reads it back bit for bit (shortest round-trip repr)."""
    return repr(float(x))


class Element:
    """Base class: the common interface of every node element."""

    kind: ClassVar[str] = ""

    def solve(self, a: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Voltage (V) solving ``a*v - c + I(v) = 0``: the fused kernel of ``cdsolver.kernels`` (numba), or
        ``solve_reference`` where numba is not available."""
        from . import kernels  # imports numba on first use only

        return kernels.solve(self, a, c, lo, hi)

    def solve_reference(self, a: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """``solve`` in NumPy: the reference the kernels are tested against."""
        raise NotImplementedError

    def current(self, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Current (A) leaving the node through the element at voltage ``v``."""
        raise NotImplementedError

    def conductance(self, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Small-signal conductance ``dI/dv`` (S)."""
        raise NotImplementedError

    def potential(self, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Dissipation potential ``∫ I dv`` (W), up to a constant per node."""
        raise NotImplementedError

    def residual(self, v: np.ndarray, a: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """KCL residual (A): current leaving the node, ``a*v - c + I(v)``."""
        return a * v - c + self.current(v, lo, hi)

    def admissible(self, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """``v`` projected on the voltages the element allows (all of them, except for ideal diodes)."""
        return v

    def spice(self, name: str, node: str, lo: float, hi: float, builtin_diode: bool = False) -> list[str]:
        """ngspice lines of the element at ``node`` (current leaving the node to ground); none if linear."""
        return []

    def to_meta(self) -> dict[str, Any]:
        """The ``element`` entry of the network file's meta."""
        return {"kind": self.kind}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_meta().items() if k != "kind")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_meta() == other.to_meta()  # type: ignore[union-attr]


class Linear(Element):
    """No element: ``I = 0``, update ``v = c/a`` (exact)."""

    kind = "linear"

    def solve_reference(self, a, c, lo, hi):
        return c / a

    def current(self, v, lo, hi):
        return np.zeros_like(v)

    def conductance(self, v, lo, hi):
        return np.zeros_like(v)

    def potential(self, v, lo, hi):
        return np.zeros_like(v)


class LinearPair(Linear):
    """Paired (differential) linear output nodes: node ``k`` (``v+``) and node ``K+k`` (``v−``) of the layer are
    joined by the nudging branch, conductance ``g`` (S) in series with the target source (its current is in
    ``c``). KCL: ``a·v − c − g·v_partner = 0`` with ``a`` including ``g``; the update solves each 2×2 pair
    exactly (needs ``a+·a− > g²``, true whenever the co-content is convex). Its SPICE lines: the nudging
    branches of ``spice_bridge.netlist``."""

    kind = "linear-pair"

    def __init__(self, g: float):
        self.g = float(g)

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K = x.shape[-1] // 2
        return x[..., :K], x[..., K:]

    def solve_reference(self, a, c, lo, hi):
        (ap, am), (cp, cm), g = self._split(a), self._split(c), self.g
        det = ap * am - g * g
        return np.concatenate([(cp * am + g * cm) / det, (cm * ap + g * cp) / det], axis=-1)

    def residual(self, v, a, c, lo, hi):
        vp, vm = self._split(v)
        return a * v - c - self.g * np.concatenate([vm, vp], axis=-1)

    def to_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "g": self.g}


class Ideal(Element):
    """Ideal diodes to both rails: ``v`` is clamped to ``[lo, hi]``; update ``v = clip(c/a, lo, hi)`` (exact).

    The diode current is whatever KCL needs, so ``current`` is undefined; ``residual`` is the natural
    residual of the complementarity problem, ``a*(v - clip(c/a, lo, hi))`` (A): zero iff KCL holds with
    non-negative diode currents (the KKT conditions of Scellier's QP).
    """

    kind = "ideal"

    def solve_reference(self, a, c, lo, hi):
        return np.clip(c / a, lo, hi)

    def current(self, v, lo, hi):
        raise TypeError("an ideal diode's current is set by the circuit, not by its voltage")

    def conductance(self, v, lo, hi):
        """0 S inside the rails, ``inf`` (a voltage clamp) on a rail."""
        return np.where((v <= lo) | (v >= hi), np.inf, 0.0)

    def potential(self, v, lo, hi):
        """Indicator of the rails: 0 inside, ``inf`` outside."""
        return np.where((v < lo) | (v > hi), np.inf, 0.0)

    def residual(self, v, a, c, lo, hi):
        return a * (v - np.clip(c / a, lo, hi))

    def admissible(self, v, lo, hi):
        return np.clip(v, lo, hi)

    def spice(self, name, node, lo, hi, builtin_diode=False):
        raise ValidationError("ideal diodes have no exact ngspice model; simulate a Shockley (small Vd) or pwl element")


class Shockley(Element):
    """Shockley diodes: forward to the upper rail, reverse from the lower one (either may be absent).

    ``I(v) = Is*(exp((v-hi)/Vd) - 1) - Is*(exp((lo-v)/Vd) - 1)``; a side whose rail is infinite is absent
    (its term, ``-1`` included, is dropped). ``Is`` in A, ``Vd = n*Vt`` in V.

    Update: the ``-1`` terms move into ``c' = c + Is*[hi finite] - Is*[lo finite]``; the dominant side has the
    closed form ``v = c'/a ∓ Vd*W0(z)``, ``ln z = ln(Is/(a*Vd)) ± (c'/a - rail)/Vd``, with
    ``W0(e^t) = wrightomega(t)`` (never forms ``z``), evaluated as ``rail ± Vd*(ln W0 - ln(Is/(a*Vd)))``
    where the diode conducts (no cancellation, no overflow, for any ``|c/a|``); then one Newton step on the
    full two-sided equation; nodes where both diodes conduct (rails within a few ``Vd``) continue with a
    safeguarded Newton–bisection until the step is at rounding level. Exact to float64 rounding (tests: ≤ 1e-13
    relative to brentq).
    """

    kind = "shockley"

    def __init__(self, Is: float, Vd: float):
        if not (math.isfinite(Is) and Is > 0):
            raise ValidationError(f"Shockley Is must be a positive finite current in A, got {Is!r}")
        if Is < EPSMIN:  # (the decks would describe another circuit than CD's)
            raise ValidationError(f"Shockley Is must be >= {EPSMIN:g} A, ngspice's epsmin (it raises a smaller IS to "
                                  f"it), got {Is!r}")
        if not (math.isfinite(Vd) and Vd >= VD_MIN):
            raise ValidationError(f"Shockley Vd must be a finite voltage >= {VD_MIN:g} V, got {Vd!r}")
        self.Is = float(Is)
        self.Vd = float(Vd)

    def to_meta(self):
        return {"kind": self.kind, "Is": self.Is, "Vd": self.Vd}

    def _sides(self, lo, hi):
        """Constant part of I: ``-Is`` per present forward diode, ``+Is`` per present reverse diode."""
        return self.Is * (np.isfinite(lo).astype(float) - np.isfinite(hi).astype(float))

    def _exps(self, v, lo, hi):
        return np.exp((v - hi) / self.Vd), np.exp((lo - v) / self.Vd)

    def solve_reference(self, a, c, lo, hi):
        Is, Vd = self.Is, self.Vd
        c1 = c - self._sides(lo, hi)  # c' : the -1 terms moved to the drive
        v = c1 / a
        ln_k = np.log(Is / (a * Vd))
        t_fwd, t_rev = ln_k + (v - hi) / Vd, ln_k + (lo - v) / Vd
        on = np.maximum(t_fwd, t_rev) > _LNZ_CUTOFF  # elsewhere the Newton step from c'/a below is exact
        if on.any():  # W + ln W = t gives v = rail ± Vd*(ln W - ln k): no cancellation for any |c/a|
            tf, tr, lk = t_fwd[on], t_rev[on], np.broadcast_to(ln_k, v.shape)[on]
            fwd = tf >= tr
            rail = np.where(fwd, np.broadcast_to(hi, v.shape)[on], np.broadcast_to(lo, v.shape)[on])
            from scipy.special import wrightomega  # here: the reference only (scipy.special loads in ~0.3 s)

            w = wrightomega(np.where(fwd, tf, tr)).real
            v[on] = rail + np.where(fwd, Vd, -Vd) * (np.log(w) - lk)
        v, left = self._newton(v, a, c1, lo, hi)
        todo = left > _EPS * (np.abs(v) + Vd)
        if todo.any():  # both diodes conduct (rails within a few Vd): safeguarded Newton on those nodes
            v[todo] = self._polish(v[todo], *(np.broadcast_to(q, v.shape)[todo] for q in (a, c1, lo, hi)))
        return v

    @np.errstate(over="ignore", invalid="ignore")  # an overflowing slope is handled (no step), not an error
    def _newton(self, v, a, c1, lo, hi):
        """One Newton step on ``f(v) = a*v - c1 + Is*(ef - er) = 0``. Returns the new ``v`` and the error
        left after it, ``|f''| step² / (2 f')`` (V): Newton's quadratic term."""
        ef, er = self._exps(v, lo, hi)
        d = ef - er
        slope = ef + er
        slope *= self.Is / self.Vd
        slope += a
        step = (a * v - c1 + self.Is * d) / slope
        left = np.abs(d) * (self.Is / (2 * self.Vd**2)) * step * step / slope
        finite = slope < np.inf  # else Is/Vd*exp overflowed (exp itself may not have): f/slope = 0 is no step
        return np.where(finite, v - step, np.nan), np.where(finite, left, np.inf)

    @np.errstate(over="ignore")  # f = ±inf far beyond a rail still orders the bracket
    def _polish(self, v, a, c1, lo, hi):
        """Newton with bisection fallback inside the bracket [rail midpoint, c1/a] (1-D arrays): a Newton step that
        leaves the bracket or is not below half the previous step is replaced by bisection."""
        mid, x = 0.5 * (lo + hi), c1 / a
        left, right = np.minimum(mid, x), np.maximum(mid, x)
        dx = right - left
        v = v.copy()
        todo = np.arange(v.size)
        for _ in range(200):
            vt, at, ct, lt, ht = v[todo], a[todo], c1[todo], lo[todo], hi[todo]
            ef, er = self._exps(vt, lt, ht)
            f = at * vt - ct + self.Is * (ef - er)
            left[todo] = np.where(f < 0, np.maximum(left[todo], vt), left[todo])
            right[todo] = np.where(f > 0, np.minimum(right[todo], vt), right[todo])
            new, err = self._newton(vt, at, ct, lt, ht)
            inside = (new >= left[todo]) & (new <= right[todo])
            final = inside & ~(err > _EPS * (np.abs(new) + self.Vd))
            bisect = ~final & (~inside | (np.abs(new - vt) > 0.5 * dx[todo]))
            new[bisect] = 0.5 * (left[todo][bisect] + right[todo][bisect])
            dx[todo] = np.abs(new - vt)
            v[todo] = new
            todo = todo[~final]
            if todo.size == 0:
                return v
        raise RuntimeError("Shockley node update did not converge in 200 safeguarded Newton steps")

    def current(self, v, lo, hi):
        ef, er = self._exps(v, lo, hi)
        return self.Is * (ef - er) + self._sides(lo, hi)

    def spice(self, name, node, lo, hi, builtin_diode=False):
        """A behavioural ``B`` source with exactly ``I(v)`` (default), or built-in ``D`` diodes (model ``dshock``,
        ``N = Vd/Vt``) to rail nodes ``rail_<value>`` — ngspice's D law differs in reverse bias by up to 3e-7 V."""
        if builtin_diode:
            lines = []
            if np.isfinite(hi):
                lines.append(f"D{name}f {node} {rail_node(hi)} dshock")
            if np.isfinite(lo):
                lines.append(f"D{name}r {rail_node(lo)} {node} dshock")
            return lines
        Is, Vd, terms = spice_number(self.Is), spice_number(self.Vd), []
        if np.isfinite(hi):
            terms.append(f"{Is}*(exp((V({node})-({spice_number(hi)}))/{Vd})-1)")
        if np.isfinite(lo):
            terms.append(f"-{Is}*(exp((({spice_number(lo)})-V({node}))/{Vd})-1)")
        return [f"B{name} {node} 0 I={''.join(terms)}"] if terms else []

    def spice_model(self) -> str:
        """The ``.model`` line of the built-in diode option."""
        return f".model dshock D(IS={spice_number(self.Is)} N={spice_number(self.Vd / VT)})"

    def conductance(self, v, lo, hi):
        ef, er = self._exps(v, lo, hi)
        return (self.Is / self.Vd) * (ef + er)

    def potential(self, v, lo, hi):
        ef, er = self._exps(v, lo, hi)
        return self.Is * self.Vd * (ef + er) + self._sides(lo, hi) * v


class Pwl(Element):
    """A measured I–V curve of the whole element: table ``(v_k, i_k)`` (V, A), ``v_k`` strictly increasing,
    ``i_k`` non-decreasing; linear between points and extended linearly beyond the ends. Rails are unused.

    Update (exact): ``g_k = a*v_k + i_k`` is increasing in ``k``; the segment with ``g_k <= c < g_{k+1}``
    holds the root, ``v = (c - i_k + s_k*v_k)/(a + s_k)`` with ``s_k`` the segment's slope (S).
    """

    kind = "pwl"

    def __init__(self, table):
        try:
            t = np.asarray(table, dtype=float)
        except (TypeError, ValueError) as e:
            raise ValidationError(f"pwl table must hold numbers, [v, i] pairs ({e})") from None
        if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] < 2:
            raise ValidationError(f"pwl table must be a list of at least 2 [v, i] pairs, got shape {t.shape}")
        if not np.all(np.isfinite(t)):
            raise ValidationError("pwl table contains NaN or inf")
        if np.any(np.diff(t[:, 0]) <= 0):
            raise ValidationError("pwl table voltages must be strictly increasing")
        if np.any(np.diff(t[:, 1]) < 0):
            raise ValidationError("pwl table currents must be non-decreasing (the element must be passive, monotone)")
        self.vk = t[:, 0].copy()
        self.ik = t[:, 1].copy()
        with np.errstate(over="ignore"):
            self.sk = np.diff(self.ik) / np.diff(self.vk)
        if not np.all(np.isfinite(self.sk)):  # (else NaN states after max_sweeps sweeps)
            k = int(np.argmax(~np.isfinite(self.sk)))
            raise ValidationError(f"pwl table: the slope between points {k} and {k + 1} ({self.vk[k]:g} V, "
                                  f"{self.ik[k]:g} A) and ({self.vk[k + 1]:g} V, {self.ik[k + 1]:g} A) is beyond "
                                  f"float64")
        # potential at the breakpoints, P(v_0) = 0
        self.pk = np.concatenate([[0.0], np.cumsum(0.5 * (self.ik[1:] + self.ik[:-1]) * np.diff(self.vk))])

    def to_meta(self):
        return {"kind": self.kind, "table": np.column_stack([self.vk, self.ik]).tolist()}

    def _segment(self, v):
        return np.clip(np.searchsorted(self.vk, v, side="right") - 1, 0, len(self.vk) - 2)

    def solve_reference(self, a, c, lo, hi):
        a = np.asarray(a, dtype=float)
        g = a[..., None] * self.vk + self.ik  # (n, K)
        k = np.clip(np.count_nonzero(c[..., None] >= g, axis=-1) - 1, 0, len(self.vk) - 2)
        s = self.sk[k]
        return (c - self.ik[k] + s * self.vk[k]) / (a + s)

    def current(self, v, lo, hi):
        k = self._segment(v)
        return self.ik[k] + self.sk[k] * (v - self.vk[k])

    def spice(self, name, node, lo, hi, builtin_diode=False):
        """A ``B`` source with ngspice's ``pwl()``, which extrapolates the end segments linearly (measured)."""
        pts = ", ".join(f"{spice_number(v)}, {spice_number(i)}" for v, i in zip(self.vk, self.ik))
        return [f"B{name} {node} 0 I=pwl(V({node}), {pts})"]

    def conductance(self, v, lo, hi):
        return self.sk[self._segment(v)]

    def potential(self, v, lo, hi):
        k = self._segment(v)
        d = v - self.vk[k]
        return self.pk[k] + self.ik[k] * d + 0.5 * self.sk[k] * d * d


KINDS = {cls.kind: cls for cls in (Linear, Ideal, Shockley, Pwl)}


def rail_node(v: float) -> str:
    """Name of the node held at rail voltage ``v`` by a source (built-in diode option)."""
    return "rail_" + spice_number(v).replace("-", "m").replace(".", "p").replace("+", "")


def element_from_meta(meta: Any) -> Element:
    """Build an element from the network file's ``meta["element"]``; errors name the offending key."""
    if not isinstance(meta, dict):
        raise ValidationError(f"meta.element must be an object, got {type(meta).__name__}")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValidationError(f"meta.element.kind must be one of {sorted(KINDS)}, got {kind!r}")
    if kind == "shockley":
        for key in ("Is", "Vd"):
            val = meta.get(key)
            if not isinstance(val, (int, float)) or isinstance(val, bool) or not (math.isfinite(val) and val > 0):
                raise ValidationError(f"meta.element.{key} must be a positive finite number, got {val!r}")
        return Shockley(meta["Is"], meta["Vd"])
    if kind == "pwl":
        if "table" not in meta:
            raise ValidationError("meta.element.table is missing (a list of [v, i] pairs)")
        try:
            return Pwl(meta["table"])
        except (ValueError, TypeError) as e:
            raise ValidationError(f"meta.element.table: {e}") from None
    return KINDS[kind]()
