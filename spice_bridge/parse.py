"""The DC subset of SPICE (ngspice dialect) → ``cdsolver.circuit.Circuit``.

Read: ``R``, ``D`` (``.model NAME D(IS= N= RS=)``; capacitance-only parameters ignored; ``D(IDEAL=1)``: an ideal
diode, our flag, which ngspice ignores with a warning), ``V``/``I`` (``[DC] value``,
an ``AC`` part ignored), ``C`` (open at DC: left out), ``L`` (a short), ``X`` instances of ``.subckt`` (flattened:
inner nodes ``x1.n``, nested ``x1.x2.n``; ``params:`` defaults, ``.param`` and ``.model`` in the body, instance
overrides, scoped as ngspice), ``.param`` (numbers and ``{expr}``: ngspice's arithmetic on parameters, read by
``_evaluate`` — never ``eval``), ``.include``/``.inc`` (relative to the including file), ``.options gmin= epsmin=``
(tolerance options accepted), ``.op`` and other analysis/output cards (ignored), ``.control`` … ``.endc``
(skipped), ``.end``; ``*`` comment lines, ngspice's inline comments (``;``, ``//``, ``$`` after a space, tab or
comma), ``+`` continuations, case-insensitive names, magnitude suffixes ``f p n u m k meg g t mil`` with trailing
units ignored (``10kohm`` = 1e4). The first line of the deck is its title. Anything else that would change the DC
solution is a ``DeckError``: ``FILE:LINE: message: 'text'``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cdsolver.circuit import Circuit, CircuitError
from cdsolver.validation import ValidationError

__all__ = ["DeckError", "parse_deck", "parse_text", "spice_value"]


class DeckError(ValidationError):
    """A deck that is not in the DC subset, or malformed: ``FILE:LINE: message: 'text'``."""


@dataclass
class _Line:
    file: str
    no: int
    text: str  # lower case, comments and continuations resolved

    def error(self, msg: str) -> DeckError:
        return DeckError(f"{self.file}:{self.no}: {msg}: '{self.text}'")


_COMMENT = re.compile(r";|//|(?<=[ \t,])\$")  # ngspice 39's inp_stripcomments_line (outside .control)
_SUFFIX = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "g": 1e9, "t": 1e12}
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)([a-z_]*)$")


def _scale(unit: str) -> float:
    if unit.startswith("meg"):
        return 1e6
    if unit.startswith("mil"):
        return 25.4e-6
    return _SUFFIX.get(unit[:1], 1.0)


def spice_value(token: str) -> float:
    """A SPICE number: ``1k`` = 1000, ``2.5meg`` = 2.5e6, ``10uF`` = 1e-5 (units after the suffix ignored)."""
    m = _NUMBER.match(token.lower())
    if not m:
        raise ValueError(f"not a number: {token!r}")
    return float(m.group(1)) * _scale(m.group(2))


_FUNCS = {"sqrt": (1, math.sqrt), "exp": (1, math.exp), "ln": (1, math.log), "log": (1, math.log),
          "log10": (1, math.log10), "abs": (1, abs), "min": (2, min), "max": (2, max), "pow": (2, math.pow),
          "pwr": (2, lambda x, y: math.pow(abs(x), y))}
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(?P<unit>[a-z_]+)?|(?P<name>[a-z_]\w*)"
                    r"|(?P<op>\*\*|[-+*/^(),]))")
_NAME = re.compile(r"(?<![\w.])[a-z_]\w*")


class _Unreadable(ValueError):
    """An expression that is not ngspice's arithmetic on known parameters."""


def _power(x: float, y: float) -> float:
    if x < 0:
        raise ValueError(f"{x:g}^{y:g}: a negative number to a power, which ngspice computes as |x|^y (and "
                         f"otherwise in its hs and lt modes); write pwr(x, y) for |x|^y or pow(x, y) for x^y")
    return math.pow(x, y)


def _evaluate(expr: str, params: dict[str, float]) -> float:
    """ngspice's arithmetic (numparam): ``+ - * / ^ **`` left-associative (``2^3^2`` = 64), ``-`` after an
    operator only before a number, parentheses, numbers with suffixes, parameters, ``_FUNCS``."""
    toks: list[tuple[str, object]] = []
    pos, end = 0, len(expr.rstrip())
    while pos < end:
        m = _TOKEN.match(expr, pos)
        if not m:
            raise _Unreadable(f"cannot read expression {{{expr}}} at {expr[pos:].strip()!r}")
        pos = m.end()
        if m["num"]:  # (numparam reads 'mil' as milli: 3mil is 3e-3 in an expression, 7.62e-5 outside)
            unit = m["unit"] or ""
            toks.append(("num", float(m["num"]) * (1e-3 if unit.startswith("mil") else _scale(unit))))
        else:
            toks.append(("name", m["name"]) if m["name"] else (m["op"].replace("**", "^"), None))
    toks.append(("end", None))
    at = 0

    def take(*kinds: str) -> str | None:
        nonlocal at
        if toks[at][0] in kinds:
            at += 1
            return toks[at - 1][0]
        return None

    def fail(why: str) -> _Unreadable:
        return _Unreadable(f"cannot read expression {{{expr}}}: {why}")

    def total() -> float:  # a leading sign is ngspice's 0 + ... or 0 - ...: -2^2 = -4
        val = 0.0 if toks[at][0] in ("+", "-") else product()
        while op := take("+", "-"):
            val = val + product() if op == "+" else val - product()
        return val

    def product() -> float:
        val = power()
        while op := take("*", "/"):
            val = val * power() if op == "*" else val / power()
        return val

    def power() -> float:
        val = atom()
        while take("^"):
            val = _power(val, atom())
        return val

    def atom() -> float:
        kind, v = toks[at]
        if kind == "end":
            raise fail("it ends too early")
        take(kind)
        if kind == "num":
            return v
        if kind == "-" and toks[at][0] == "num":  # ngspice negates a number after an operator: 2*-3^2 = (-3)^2
            return -atom()
        if kind == "(":
            val = total()
            if not take(")"):
                raise fail("expected )")
            return val
        if kind == "name" and v in _FUNCS:
            n, f = _FUNCS[v]
            if not take("("):
                raise fail(f"function {v} needs (arguments)")
            args = [total()]
            while take(","):
                args.append(total())
            if not take(")"):
                raise fail("expected )")
            if len(args) != n:
                raise fail(f"{v} takes {n} argument{'s' * (n > 1)}")
            return float(f(*args))
        if kind == "name":
            if toks[at][0] == "(" and v not in params:
                raise _Unreadable(f"function {v}() in {{{expr}}} is not supported (drn reads {', '.join(_FUNCS)})")
            if v not in params:
                raise _Unreadable(f"unknown parameter {v!r} in {{{expr}}}")
            return params[v]
        if kind in ("+", "-"):
            raise fail(f"{kind} after an operator: ngspice reads only a number there (write 2*(-x), not 2*-x)")
        raise fail("expected a number, a parameter, a function or (")

    try:
        val = total()
        if toks[at][0] != "end":
            raise fail(f"unexpected {toks[at][1] or toks[at][0]!r}")
    except RecursionError:
        raise ValueError(f"expression {{{expr[:40]}...}} is nested too deeply") from None
    except _Unreadable:
        raise
    except (ZeroDivisionError, OverflowError, ValueError) as e:  # 1/0, exp(1000), sqrt(-1), (-8)^(1/3)
        raise ValueError(f"cannot evaluate {{{expr}}}: {e}") from None
    if not math.isfinite(val):
        raise ValueError(f"{{{expr}}} is not finite")
    return val


def _value(token: str, params: dict[str, float]) -> float:
    if token.startswith("{") and token.endswith("}"):
        return _evaluate(token[1:-1], params)
    if token.startswith("'") and token.endswith("'"):
        return _evaluate(token[1:-1], params)
    return spice_value(token)


# ---------------------------------------------------------------- reading lines
def _read(path: Path, title: bool, seen: tuple[Path, ...], origin: _Line | None) -> list[_Line]:
    """Logical lines of a deck file (comments, continuations, control blocks and includes resolved)."""
    if path.resolve() in seen:
        raise origin.error(f"{path} includes itself")
    if origin is not None and path.exists() and not path.is_file():  # (a FIFO would block the read)
        raise origin.error(f"included file {path} is not a regular file (a folder, device, FIFO or socket)")
    try:
        raw = path.read_text(errors="replace").splitlines()
    except OSError as e:
        if origin is None:
            raise
        raise origin.error(f"cannot read included file {path} ({e.strerror})") from None
    return _logical(raw, path, title, seen + (path.resolve(),))


def _logical(raw: list[str], path: Path, title: bool, seen: tuple[Path, ...]) -> list[_Line]:
    out: list[_Line] = []
    control = False
    for no, text in enumerate(raw, 1):
        if title and no == 1:
            continue
        s = _COMMENT.split(text.strip(), maxsplit=1)[0].rstrip()
        if not s or s[0] in "*$":
            continue
        case_kept, s = s, s.lower()
        if control:
            control = not s.startswith(".endc")
            continue
        if s.startswith(".control"):
            control = True
            continue
        if s.startswith("+"):
            if not out and title:  # (it continues the title, as in ngspice)
                continue
            if not out:
                raise DeckError(f"{path}:{no}: continuation line with nothing to continue: '{s}'")
            out[-1].text += " " + s[1:].strip()
            continue
        line = _Line(str(path), no, s)
        if s.split()[0] in (".include", ".inc"):
            parts = s.split(None, 1)
            if len(parts) < 2:
                raise line.error(".include needs a file name")
            name = case_kept.split(None, 1)[1].strip("'\"")  # keep the case of the path
            inc = (path.parent / name)
            out += _read(inc, False, seen, line)
            continue
        if s.split()[0] == ".end":  # (ngspice 39 reads past .end, in the deck as in an included file)
            continue
        out.append(line)
    return out


# ---------------------------------------------------------------- the deck
_Model = tuple[str, dict[str, str], _Line]  # type, parameter → value text, the .model line
_Scope = tuple[tuple[dict[str, _Model], dict[str, float]], ...]  # models visible, innermost first, with their params


@dataclass
class _Subckt:
    name: str
    ports: list[str]
    params: dict[str, tuple[str, _Line]]  # name → (value, its line): params: defaults, then the body's .param
    line: _Line
    models: dict[str, _Model] = field(default_factory=dict)
    body: list[_Line] = field(default_factory=list)


_IGNORED_CARDS = {".op", ".tran", ".ac", ".dc", ".noise", ".save", ".print", ".plot", ".probe", ".width",
                  ".four", ".meas", ".measure", ".title"}
_TOLERANCE_OPTIONS = {"reltol", "abstol", "vntol", "chgtol", "trtol", "itl1", "itl2", "itl3", "itl4", "itl5",
                      "itl6", "gminsteps", "srcsteps", "method", "numdgt", "acct", "noacct", "noinit", "norefvalue",
                      "klu", "sparse", "pivtol", "pivrel", "nopage", "keepopinfo", "savecurrents"}
_DIODE_DC = {"is", "n", "rs", "ideal"}
_DIODE_IGNORED = {"cjo", "cj0", "cj", "vj", "pb", "m", "mj", "tt", "fc", "eg", "xti", "kf", "af", "level"}
_ELEMENT_KIND = {"e": "voltage-controlled voltage source", "f": "current-controlled current source",
                 "g": "voltage-controlled current source", "h": "current-controlled voltage source",
                 "b": "behavioural source", "q": "bipolar transistor", "m": "MOSFET", "j": "JFET",
                 "k": "coupled inductors", "s": "voltage-controlled switch", "w": "current-controlled switch",
                 "t": "transmission line", "o": "lossy transmission line", "u": "RC line", "a": "XSPICE code model",
                 "z": "MESFET", "y": "transmission line", "n": "OSDI/Verilog-A device", "p": "coupled line"}


def _assignments(tokens: list[str], line: _Line) -> list[tuple[str, str]]:
    """``a=1 b = {x*2}`` → [(a, 1), (b, {x*2})] (spaces around ``=`` allowed)."""
    text = re.sub(r"\s*=\s*", "=", " ".join(tokens))
    out = []
    for tok in _split(text):
        if "=" not in tok:
            raise line.error(f"expected name=value, got {tok!r}")
        k, v = tok.split("=", 1)
        if not k or not v:
            raise line.error(f"expected name=value, got {tok!r}")
        out.append((k, v))
    return out


def _split(text: str) -> list[str]:
    """Tokens, keeping ``{...}`` and ``'...'`` expressions whole."""
    if "{" not in text and "'" not in text:
        return text.split()
    return re.findall(r"[^\s{']*(?:\{[^}]*\}|'[^']*')[^\s]*|[^\s]+", text)


class _Deck:
    def __init__(self, lines: list[_Line]):
        self.params: dict[str, float] = {}
        self.models: dict[str, _Model] = {}
        self.subckts: dict[str, _Subckt] = {}
        self.circuit = Circuit()
        self.elements: list[_Line] = []
        self.names: set[str] = set()
        sub: _Subckt | None = None
        defs: dict[str, tuple[str, _Line]] = {}
        options: list[tuple[list[str], _Line]] = []
        for ln in lines:
            tok = _split(ln.text)
            card = tok[0]
            if sub is not None:
                if card == ".ends":
                    sub = None
                elif card == ".subckt":
                    raise ln.error(f"nested .subckt definitions are not supported (inside .subckt {sub.name})")
                elif card == ".param":  # ngspice moves it onto the .subckt line: an instance may override it
                    sub.params.update((k, (v, ln)) for k, v in _assignments(tok[1:], ln))
                elif card == ".model":
                    self._model(ln, sub.models)
                elif card.startswith("."):
                    raise ln.error(f"card {card} inside .subckt {sub.name} is not in the DC subset drn circuit reads")
                else:
                    sub.body.append(ln)
                continue
            if card == ".subckt":
                sub = self._subckt(ln)
            elif card == ".ends":
                raise ln.error(".ends without .subckt")
            elif card == ".param":  # (ngspice: the last definition of a name holds for every use)
                defs.update((k, (v, ln)) for k, v in _assignments(tok[1:], ln))
            elif card == ".model":
                self._model(ln, self.models)
            elif card in (".options", ".option", ".opt"):
                options.append((tok, ln))
            elif card in _IGNORED_CARDS:
                continue
            elif card.startswith("."):
                raise ln.error(f"card {card} is not in the DC subset drn circuit reads")
            else:
                self.elements.append(ln)
        if sub is not None:
            raise sub.line.error(f".subckt {sub.name} has no .ends")
        self._in_order(defs, self.params, "parameters")
        for tok, ln in options:
            self._options(tok, ln)
        for ln in self.elements:
            try:
                self._element(ln, "", {}, self.params, ((self.models, self.params),), ())
            except RecursionError:
                raise ln.error("subcircuits nested too deeply (ngspice itself stops at about 20 levels)") from None

    def _in_order(self, defs: dict[str, tuple[str, _Line]], into: dict[str, float], what: str) -> None:
        """Evaluate parameter definitions ``defs`` (name → value text, its line) into ``into`` in the order of
        their dependencies, as ngspice sorts them (a definition may use one that comes later)."""
        needs = {k: {n for n in _NAME.findall(v) if n in defs and n != k} for k, (v, _) in defs.items()}  # (k: outer)
        users: dict[str, list[str]] = {}
        for k, ns in needs.items():
            for n in ns:
                users.setdefault(n, []).append(k)
        ready = [k for k in defs if not needs[k]]
        for k in ready:  # (grows while it is walked: Kahn's order, each definition once)
            v, vln = defs[k]
            into[k] = self._param(v, into, vln)
            for u in users.get(k, ()):
                needs[u].discard(k)
                if not needs[u]:
                    ready.append(u)
        if len(ready) < len(defs):
            left = [k for k in defs if needs[k]]
            raise defs[left[0]][1].error(f"{what} {', '.join(left)} depend on each other")

    def _param(self, token: str, params: dict[str, float], ln: _Line) -> float:
        """A parameter's value as ngspice's numparam reads it: an expression, braces or quotes optional
        (``.param a=1+2``; ``1mil`` is milli there)."""
        inner = token[1:-1] if token[:1] + token[-1:] in ("{}", "''") else token
        try:
            return _evaluate(inner, params)
        except ValueError as e:
            raise ln.error(str(e)) from None

    def _num(self, token: str, params: dict[str, float], ln: _Line) -> float:
        try:
            return _value(token, params)
        except ValueError as e:
            raise ln.error(str(e)) from None

    def _subckt(self, ln: _Line) -> _Subckt:
        ports, params = _positional(ln)
        if len(ports) < 2:
            raise ln.error(".subckt needs a name")
        s = _Subckt(ports[1], ports[2:], {k: (v, ln) for k, v in params}, ln)
        if s.name in self.subckts:
            raise ln.error(f".subckt {s.name} is defined twice")
        self.subckts[s.name] = s
        return s

    def _model(self, ln: _Line, models: dict[str, _Model]) -> None:
        parts = _split(_unparen(ln.text))
        if len(parts) < 3:
            raise ln.error(".model needs a name and a type")
        name, kind = parts[1], parts[2]
        if name in models:
            first = models[name][2]
            raise ln.error(f".model {name} is defined twice (first at {first.file}:{first.no}, which ngspice uses)")
        models[name] = (kind, dict(_assignments(parts[3:], ln)), ln)

    def _options(self, tok: list[str], ln: _Line) -> None:
        for t in _split(re.sub(r"\s*=\s*", "=", " ".join(tok[1:]))):
            k, _, v = t.partition("=")
            if k == "gmin":
                g = self._num(v, self.params, ln)
                if not (0 <= g < math.inf):
                    raise ln.error(f"gmin must be finite and >= 0 S, got {g}")
                self.circuit.gmin = g
            elif k == "epsmin":
                e = self._num(v, self.params, ln)
                if not (0 < e < math.inf):
                    raise ln.error(f"epsmin must be > 0 A, got {e}")
                self.circuit.epsmin = e
            elif k not in _TOLERANCE_OPTIONS:
                raise ln.error(f"option {k} is not supported (it may change the DC solution); "
                               f"drn circuit reads gmin, epsmin and the tolerance options")

    def _diode_model(self, name: str, ln: _Line, scope: _Scope) -> tuple[float, float, float, bool]:
        found = [(models[name], params) for models, params in scope if name in models]
        if not found:
            raise ln.error(f"diode model {name} is not defined (.model {name} D(...))")
        (kind, values, mln), params = found[0]
        if kind != "d":
            raise ln.error(f"model {name} is of type {kind}, a diode needs type D")
        got = {"is": 1e-14, "n": 1.0, "rs": 0.0, "ideal": 0.0}
        for k, v in values.items():
            if k in _DIODE_DC:
                got[k] = self._num(v, params, mln)
            elif k not in _DIODE_IGNORED:
                raise mln.error(f"diode parameter {k.upper()} is not supported (it changes the DC law ngspice "
                                f"uses; drn circuit reads IS, N, RS, and IDEAL=1)")
        if got["ideal"] not in (0.0, 1.0):
            raise mln.error(f"IDEAL must be 0 or 1, got {got['ideal']:g}")
        if got["ideal"] and set(values) & {"is", "n", "rs"}:
            raise mln.error("an ideal diode (IDEAL=1) takes no IS, N or RS")
        return got["is"], got["n"], got["rs"], bool(got["ideal"])

    def _element(self, ln: _Line, prefix: str, ports: dict[str, str], params: dict[str, float], scope: _Scope,
                 stack: tuple[str, ...]) -> None:
        tok = _split(re.sub(r"(?<=\s)(r|dc)\s*=\s*", r"\1=", ln.text))  # (R1 a b r = 3k, V1 a 0 dc = 2)
        name = tok[0]
        full = f"{name[0]}.{prefix}{name}" if prefix else name
        if full in self.names:
            raise ln.error(f"element {full} is defined twice")
        self.names.add(full)
        kind = name[0]

        def node(t: str) -> str:
            if "=" in t:  # (ngspice reads 'V1 a =0 2' as another circuit than a node named '=0')
                raise ln.error(f"{name}: node name {t!r} holds '=' (parameters go after the nodes and value)")
            if t in ("0", "gnd"):
                return "0"
            return ports.get(t, prefix + t)

        def need(n: int, form: str) -> None:
            if len(tok) < n:
                raise ln.error(f"{name}: expected {form}")

        ckt = self.circuit
        try:
            if kind == "r":
                need(4, "R<name> n1 n2 value")
                args = tok[3:]
                if args[0].startswith("r="):
                    args = [args[0][2:]] + args[1:]
                if len(args) > 1:
                    raise ln.error(f"{name}: resistor parameters {' '.join(args[1:])} are not supported")
                ckt.add_resistor(full, node(tok[1]), node(tok[2]), self._num(args[0], params, ln))
            elif kind == "d":
                need(4, "D<name> anode cathode model")
                if len(tok) > 4:
                    raise ln.error(f"{name}: diode instance parameters {' '.join(tok[4:])} are not supported")
                Is, N, RS, ideal = self._diode_model(tok[3], ln, scope)
                if ideal:
                    ckt.add_ideal_diode(full, node(tok[1]), node(tok[2]))
                else:
                    ckt.add_diode(full, node(tok[1]), node(tok[2]), Is, N, RS)
            elif kind in "vi":
                need(3, f"{name[0].upper()}<name> n+ n- [DC] value")
                val = self._source_value(tok[3:], name, ln, params)
                add = ckt.add_vsource if kind == "v" else ckt.add_isource
                add(full, node(tok[1]), node(tok[2]), val)
            elif kind == "c":
                need(4, "C<name> n1 n2 value")  # open at DC; its nodes exist (one with no DC path is floating)
                for t in tok[1:3]:
                    ckt.node(node(t))
            elif kind == "l":
                need(4, "L<name> n1 n2 value")
                ckt.add_short(full, node(tok[1]), node(tok[2]))
            elif kind == "x":
                self._instance(ln, prefix, node, params, stack)
            else:
                what = _ELEMENT_KIND.get(kind, "unknown element type")
                raise ln.error(f"element {name} ({what}) is not supported: drn circuit reads R, D, V, I, C, L, X")
        except CircuitError as e:
            raise ln.error(str(e)) from None

    def _source_value(self, args: list[str], name: str, ln: _Line, params: dict[str, float]) -> float:
        """The DC value of a source's words after its nodes, as ngspice 39 reads them: a value right after the
        nodes holds whatever follows; else the last ``DC v`` (or ``DC=v``); an ``AC [mag [phase]]`` part anywhere
        is skipped; 0 without a value. Anything else (a transient function, a stray word) is refused."""
        words = [w for a in args for w in (a.split("=", 1) if a.startswith(("dc=", "ac=")) else [a])]
        value, first, i = None, False, 0
        while i < len(words):
            w = words[i]
            if "(" in w and w[0] not in "{'":  # (a transient or AC function: PULSE(...), SIN(...))
                raise ln.error(f"{name}: only a DC value (and an AC part) is supported, got {' '.join(args)}")
            if w == "dc":
                given = i + 1 < len(words) and words[i + 1] not in ("dc", "ac")
                if given and not first:
                    value = words[i + 1]
                i += 2 if given else 1
            elif w == "ac":  # magnitude and phase, where given
                i += 1
                for _ in range(2):
                    if i < len(words) and words[i] not in ("dc", "ac"):
                        i += 1
            elif i == 0:
                value, first, i = w, True, 1
            else:
                raise ln.error(f"{name}: only a DC value (and an AC part) is supported, got {' '.join(args)}")
        return 0.0 if value is None else self._num(value, params, ln)

    def _instance(self, ln, prefix, node, params, stack) -> None:
        pos, over = _positional(ln)
        name = pos[0] if pos else ln.text.split()[0]
        if len(pos) < 2:
            raise ln.error(f"{name}: expected X<name> nodes... subckt")
        sub_name, actual = pos[-1], pos[1:-1]
        if sub_name not in self.subckts:
            raise ln.error(f"{name}: subcircuit {sub_name} is not defined")
        if sub_name in stack:
            raise ln.error(f"{name}: subcircuit {sub_name} instantiates itself")
        sub = self.subckts[sub_name]
        if len(actual) != len(sub.ports):
            raise ln.error(f"{name}: subcircuit {sub_name} has {len(sub.ports)} ports, got {len(actual)} nodes")
        inner = dict(params)  # ngspice's lookup goes up the chain of instances: X2 in X1 sees X1's parameters
        for k, v in over:
            if k not in sub.params:
                raise ln.error(f"{name}: subcircuit {sub_name} has no parameter {k}")
            inner[k] = self._param(v, params, ln)
        self._in_order({k: v for k, v in sub.params.items() if k not in {k for k, _ in over}}, inner,
                       f".subckt {sub_name}: parameters")
        ports = {p: node(a) for p, a in zip(sub.ports, actual)}
        for body in sub.body:
            self._element(body, f"{prefix}{name}.", ports, inner, ((sub.models, inner), (self.models, self.params)),
                          stack + (sub_name,))


def _positional(ln: _Line) -> tuple[list[str], list[tuple[str, str]]]:
    """A ``.subckt`` or ``X`` line's words before its first ``k=v`` and its ``k=v`` (``params:`` dropped, as
    ngspice does)."""
    tok = _split(re.sub(r"\s*=\s*", "=", ln.text.replace("params:", " ", 1)))
    n = next((i for i, t in enumerate(tok) if "=" in t), len(tok))
    return tok[:n], _assignments(tok[n:], ln)


def _unparen(text: str) -> str:
    """``text`` with its parentheses and commas outside ``{...}`` and ``'...'`` made spaces: ``D(N={2*(a+b)},
    RS=1)`` → ``D N={2*(a+b)}  RS=1 ``."""
    out, depth, quoted = [], 0, False
    for ch in text:
        if ch == "'" and not depth:
            quoted = not quoted
        elif ch in "{}" and not quoted:
            depth += 1 if ch == "{" else -1
        elif ch in "()," and not depth and not quoted:
            ch = " "
        out.append(ch)
    return "".join(out)


def parse_deck(path: str | Path) -> Circuit:
    """The circuit of a deck file (its first line is the title); errors are ``DeckError``."""
    path = Path(path)
    return _Deck(_read(path, True, (), None)).circuit


def parse_text(text: str, name: str = "<deck>", directory: str | Path = ".") -> Circuit:
    """The circuit of deck text (first line = title); ``.include`` is relative to ``directory``."""
    return _Deck(_logical(text.splitlines(), Path(directory) / name, True, ())).circuit
