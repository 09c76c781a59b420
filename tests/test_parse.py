"""The SPICE DC-subset parser: every card, suffixes, continuations, parameters, subcircuits, includes, and
every error with its file and line number."""

import os

import pytest

from cdsolver.circuit import Circuit
from spice_bridge.parse import DeckError, parse_deck, parse_text, spice_value


@pytest.mark.parametrize("tok, val", [("1k", 1e3), ("2.5MEG", 2.5e6), ("10uF", 1e-5), ("3n", 3e-9), ("4p", 4e-12),
                                      ("5f", 5e-15), ("1g", 1e9), ("2t", 2e12), ("7m", 7e-3), ("1mil", 25.4e-6),
                                      ("1e3", 1e3), (".5", 0.5), ("-2.5e-3v", -2.5e-3), ("10kohm", 1e4),
                                      ("1amp", 1.0)])
def test_suffixes(tok, val):
    assert spice_value(tok) == pytest.approx(val, rel=1e-15)


def test_cards_comments_continuation_case():
    c = parse_text("""title line: R1 is not an element
* a comment
R1 IN mid 1K ; inline comment
r2 mid 0
+ 2k
D1 mid 0 DMOD
.MODEL dmod D (IS=1e-14 n=1.5 CJO=1p)
V1 in 0 DC 2 AC 1
I1 0 mid 1m
C1 mid 0 1u
L1 mid out 1n
R3 out gnd 3k
.options reltol=1e-6 gmin=1e-10
.op
.control
bogus command
.endc
.end
R9 out 0 9k
""")
    assert c.nodes == ["in", "mid", "out"] and c.gmin == 1e-10
    assert c.resistors == [("r1", 0, 1, 1e-3), ("r2", 1, -1, 5e-4), ("r3", 2, -1, 1 / 3e3), ("r9", 2, -1, 1 / 9e3)]
    # (ngspice 39 reads past .end: its listing holds R9)
    assert c.diodes == [("d1", 1, -1, 1e-14, 1.5)]
    assert c.vsources == [("v1", 0, -1, 2.0)] and c.isources == [("i1", -1, 1, 1e-3)]
    assert c.shorts == [("l1", 1, 2)]



def test_inline_comments_as_ngspice():
    """``$comment`` (no space after ``$``) and ``//`` were refused ("resistor parameters $comment"). ngspice 39
    (``inp_stripcomments_line``): ``;`` and ``//`` anywhere, ``$`` after a space, tab or comma; ``a$b`` is a name."""
    c = parse_text("""t
$ a comment line
V1 in 0 1 $comment
R1 in a$b 1k//c
R2 a$b 0 1k // c
R3 in c 1k\t$tab
R4 c 0 3k ;x
""")
    assert c.nodes == ["in", "a$b", "c"]
    assert [1 / g for *_, g in c.resistors] == [1e3, 1e3, 1e3, 3e3]

def test_params_and_expressions():
    c = parse_text("""t
.param r0=1k gain = {2*r0} half={gain/4}
.param p2={ (r0 + 1k)**2 / 1meg + sqrt(4) }
R1 a 0 {gain}
R2 a b {half}
R3 b 0 '2^3'
R4 b 0 {p2}
V1 a 0 1
""")
    assert [1 / g for *_, g in c.resistors] == pytest.approx([2000.0, 500.0, 8.0, 6.0], rel=1e-15)


def _current(expr: str, params: str = "") -> float:
    """The value of ``I1 0 a {expr}``."""
    return parse_text(f"t\n{params}\nR1 a 0 1\nI1 0 a {{{expr}}}\n").isources[0][3]


@pytest.mark.parametrize("expr, val", [  # ngspice 39 (.param y={expr}, op, print all) gives these values
    ("2^3^2", 64.0), ("2**3**2", 64.0), ("2**3^2", 64.0), ("(2^3)^2", 64.0), ("2^(3^2)", 512.0),
    ("2^-3^2", 1 / 64), ("-2^2", -4.0), ("-(2)^2", -4.0), ("2*3^2", 18.0), ("--2", 2.0), ("2*(-x)", -4.0),
    ("pwr(-8, 1/3)", 2.0), ("pow(-2, 3)", -8.0), ("log(exp(1))", 1.0),
    ("3mil*1", 3e-3), ("1.5e3mil", 1.5)])  # (numparam: 'mil' is milli inside an expression, 25.4e-6 outside)
def test_expressions_evaluate_as_ngspice_left_associative_powers(expr, val):
    """``^`` and ``**`` were right-associative (Python's): 2^3^2 gave 512, ngspice's numparam gives 64."""
    assert _current(expr, ".param x=2") == pytest.approx(val, rel=1e-15)


@pytest.mark.parametrize("expr, words", [
    ("(-8)**(1/3)", "a negative number to a power"),  # a TypeError traceback; ngspice: 2 (|x|^y)
    ("(-2)^3", "a negative number to a power"),  # -8; ngspice: 8
    ("2*-3^2", "a negative number to a power"),  # -18; ngspice: 18 (it negates the 3)
    ("2*-x+3", "ngspice reads only a number there"),  # 7; ngspice: 1 (2*x + -3)
    ("2*+3", "ngspice reads only a number there"),  # ngspice: Misplaced operator
    ("1/0", "division by zero"), ("10^400", "range error"), ("exp(1000)", "range error"),
    ("sqrt(-1)", "domain error"), ("ln(0)", "domain error"), ("pow(-8, 1/3)", "domain error"),
    ("1e308*10", "is not finite"), ("max(1)", "max takes 2 arguments"), ("2 3", "unexpected"),
    ("(" * 500 + "1" + ")" * 500, "nested too deeply")])
def test_expressions_ngspice_refuses_or_reads_otherwise_are_one_line_errors(expr, words):
    with pytest.raises(DeckError, match=r"^<deck>:4: ") as e:
        _current(expr, ".param x=2")
    assert words in str(e.value)

def test_subcircuits_nested_with_params(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cells.inc").write_text("""* library
.subckt div top bot params: r=1k
R1 top m {r}
R2 m bot {2*r}
D1 m bot dm
.ends
.subckt two a b
X1 a mid div r=2k
X2 mid b div
.ends div
""")
    (tmp_path / "top.cir").write_text("""top
.include lib/cells.inc
.model dm D(IS=1e-15 RS=5)
V1 in 0 3
Xa in 0 two
""")
    c = parse_deck(tmp_path / "top.cir")
    assert c.node_names() == ["in", "xa.x1.m", "xa.mid", "xa.x2.m"]
    r = {n: 1 / g for n, a, b, g in c.resistors}
    assert r["r.xa.x1.r1"] == 2e3 and r["r.xa.x1.r2"] == 4e3 and r["r.xa.x2.r1"] == 1e3
    assert c.series["d.xa.x1.d1"] == ("xa.x1.m", 5.0)



def test_model_expressions_keep_their_parentheses():
    """``( )`` were made spaces before ``.model`` was read: ``N={2*(0.5+0.25)}`` gave 1.25 (ngspice: 1.5) and
    ``IS={1e-14*(1+1)}`` 1.00000000000001 A."""
    c = parse_text("t\nV1 a 0 1\nD1 a 0 dm\n.model dm D(IS={1e-14*(1+1)} N={2*(0.5+0.25)} RS='2*(1+1)')\n")
    assert c.diodes == [("d1", 1, -1, 2e-14, 1.5)] and c.series["d1"] == ("a", 4.0)


def test_subcircuit_params_models_and_instance_params_as_ngspice():
    """``.param``/``.model`` inside ``.subckt`` and ``X ... params:`` were refused; a default depending on an
    overridden parameter kept the default's value; a nested instance saw only the global parameters. The values
    are those ngspice 39 solves (``test_circuit.py`` compares the operating point)."""
    c = parse_text("""t
.param g=1k r2=500 q=1k
.model dm D(IS=1e-14)
.subckt s a b params: r=1k r2={2*r}
.param r3={r2+g}
.model dm D(IS=1e-10)
R1 a b {r3}
D1 a b dm
.ends
.subckt inner a b
R1 a b {q*2}
.ends
.subckt outer a b params: q=3k
X1 a b inner
.ends
X1 m1 0 s r=5k
X2 m2 0 s
X3 m3 0 s params: r3=7k
X4 m4 0 s r={r2}
X5 m5 0 outer
D6 m6 0 dm
""")
    r = {n: 1 / g for n, a, b, g in c.resistors}
    assert r == pytest.approx({"r.x1.r1": 11e3, "r.x2.r1": 3e3, "r.x3.r1": 7e3, "r.x4.r1": 2e3, "r.x5.x1.r1": 6e3},
                              rel=1e-15)
    assert [d[3] for d in c.diodes] == [1e-10] * 4 + [1e-14]

ERRORS = [  # (deck body after the title, line number, words in the message)
    ("R1 a 0 1k\nE1 a 0 b 0 2\n", 3, "e1 (voltage-controlled voltage source) is not supported"),
    ("R1 a 0 1k\nB1 a 0 I=1\n", 3, "behavioural source"),
    ("R1 a 0 1k\nQ1 a b 0 npn\n", 3, "bipolar transistor"),
    ("D1 a 0 dz\n.model dz D(IS=1e-14 BV=5)\nV1 a 0 1\n", 3, "BV is not supported"),
    ("D1 a 0 nomodel\nV1 a 0 1\n", 2, "diode model nomodel is not defined"),
    ("R1 a 0 1k\n.temp 50\n", 3, "card .temp is not in the DC subset"),
    ("R1 a 0 1k\n.options temp=50\n", 3, "option temp is not supported"),
    ("R1 a 0 {unknown*2}\n", 2, "unknown parameter 'unknown'"),
    ("V1 a =0 2\nR1 a 0 1\n", 2, "node name '=0' holds '='"),  # (was solved as a node '=0': a = 0 V, ngspice 2 V)
    ("V1 a 0 = 1\nR1 a 0 1\n", 2, "only a DC value (and an AC part) is supported, got = 1"),  # (node '0=1': 0 V)
    ("V1 a 0 ac 1 2 3\nR1 a 0 1\n", 2, "only a DC value (and an AC part) is supported"),  # (ngspice: Error on line)
    ("R1 a 0 {sin(1)}\n", 2, "function sin() in {{sin(1)}} is not supported (drn reads sqrt"),  # (was: unknown param.)
    ("R1 a 0 {__import__('os')}\n", 2, "cannot read expression"),
    ("R1 a 0 1k\nR2 a 0 abc\n", 3, "not a number"),
    ("R1 a 0 -5\n", 2, "resistance must be a positive"),
    ("V1 a 0 PULSE(0 1 1n)\nR1 a 0 1\n", 2, "only a DC value"),
    ("X1 a 0 nosub\n", 2, "subcircuit nosub is not defined"),
    ("R1 a 0 1k\nR1 a 0 2k\n", 3, "defined twice"),
    (".subckt s a\nR1 a 0 1\n", 2, "has no .ends"),
    ("R1 a 0 1k\n.include missing.inc\n", 3, "cannot read included file"),
    ("R1 a 0 1k tc1=0.1\n", 2, "resistor parameters"),
    ("D1 a 0 dm 2\n.model dm D\n", 2, "diode instance parameters"),
    ("R1 a 0 1k\n.options epsmin=0\n", 3, "epsmin must be > 0 A"),
    ("D1 a 0 dm\n.model dm D(IS=1e-29)\n", 2, "below epsmin 1e-28 A"),
    ("D1 a 0 dm\n.model dm D(IS=1e-14)\n.MODEL DM D(IS=1e-10)\n", 4,
     ".model dm is defined twice (first at {deck}:3, which ngspice uses)"),
    (".subckt s a\n.model dm D\n.model dm D\n.ends\n", 4, ".model dm is defined twice (first at {deck}:3"),
    (".subckt s a\n.options gmin=1\n.ends\n", 3, "card .options inside .subckt s is not in the DC subset"),
    (".subckt s a params: p={q} q={p}\nR1 a 0 {p}\n.ends\nX1 b s\n", 2, "parameters p, q depend on each other"),
    ("X1 b s q=1\n.subckt s a params: p=1\n.ends\n", 2, "subcircuit s has no parameter q"),
]


@pytest.mark.parametrize("body, line, words", ERRORS)
def test_errors_name_file_line_and_text(tmp_path, body, line, words):
    deck = tmp_path / "bad.cir"
    deck.write_text("title\n" + body)
    with pytest.raises(DeckError) as e:
        parse_deck(deck)
    msg = str(e.value)
    assert msg.startswith(f"{deck}:{line}: ") and words.format(deck=deck) in msg, msg
    assert "'" in msg  # the offending text is quoted


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_an_include_that_is_no_regular_file_is_refused_not_read(tmp_path, kind):
    """Reading a FIFO blocks until something writes to it: the parser waited for ever."""
    (os.mkfifo if kind == "fifo" else os.mkdir)(tmp_path / "inc")
    (tmp_path / "top.cir").write_text("t\nR1 a 0 1k\n.include inc\n")
    with pytest.raises(DeckError, match=r":3: included file .*inc is not a regular file"):
        parse_deck(tmp_path / "top.cir")


@pytest.mark.parametrize("body, source", [  # the value ngspice 39 solves (helper-50's decks, 2026-12-01)
    (".param x=1\n.param y={x}\n.param x=2\nV1 a 0 {y}\n", 2.0),  # the last definition holds for every use
    (".param x=1 y={x} x=2\nV1 a 0 {y*10+x}\n", 22.0),
    (".param b={a*2}\n.param a=1\nV1 a 0 {b}\n", 2.0),  # definitions sorted by their dependencies
    (".param a=1+2\nV1 a 0 {a}\n", 3.0),  # a .param value is an expression, braces or not
    (".param w=1mil\nV1 a 0 {w*1k}\n", 1.0),  # (numparam: milli)
    ("V1 a 0 AC 1 0 DC 2\n", 2.0), ("V1 a 0 ac 1 dc 2\n", 2.0), ("V1 a 0 dc=2\n", 2.0),
    ("V1 a 0 DC 2 DC 3\n", 3.0), ("V1 a 0 2 AC 1\n", 2.0), ("V1 a 0 dc = 2\n", 2.0),
    ("V1 a 0 4 dc 1\n", 4.0), ("V1 a 0 4 ac 1 dc=1\n", 4.0),  # (a value right after the nodes holds: helper-52)
    ("V1 a 0 dc 4 dc=1\n", 1.0), ("V1 a 0 dc ac 1\n", 0.0)])
def test_parameters_and_source_values_as_ngspice(body, source):
    """Parameters were evaluated line by line (a later redefinition ignored, a forward reference refused, a value
    without braces 'not a number'), and a source's DC value after its AC part was dropped (0 V): silently wrong."""
    assert parse_text("t\n" + body + "R1 a 0 1\n").vsources[0][3] == pytest.approx(source, rel=1e-15)


def test_model_parameters_separated_by_commas():
    """``.model dm D(IS=1e-12, N=1.5, RS=10)`` (ngspice reads it) was refused: not a number: '1e-12,'."""
    c = parse_text("t\nV1 a 0 1\nD1 a 0 dm\n.model dm D(IS=1e-12, N={max(1.5, 1)}, RS=10)\n")
    assert c.diodes[0][3] == 1e-12 and c.diodes[0][4] == 1.5 and c.series["d1"][1] == 10.0


def test_a_continuation_of_the_title():
    """``+ more title`` on line 2 continues the title in ngspice; it was refused (nothing to continue)."""
    assert parse_text("a title\n+ more of it\nV1 a 0 1\nR1 a 0 1\n").vsources[0][3] == 1.0


def test_spaces_around_an_elements_equals_sign():
    """``R1 a b r = 3k`` (ngspice: 3 kΩ) was refused: resistor parameters = 3k are not supported."""
    assert parse_text("t\nV1 a 0 1\nR1 a 0 r = 3k\n").resistors[0][3] == pytest.approx(1 / 3e3, rel=1e-15)


def test_an_included_files_end_is_read_past(tmp_path):
    """ngspice 39 reads past ``.end``, in an included file as in the deck; the parser stopped reading there."""
    (tmp_path / "end.inc").write_text("R1 a b 3k\n.end\nR9 b 0 1k\n")
    c = parse_text("t\nV1 a 0 1\n.include end.inc\nR2 b 0 1k\n", directory=tmp_path)
    assert sorted(r[0] for r in c.resistors) == ["r1", "r2", "r9"]


@pytest.mark.parametrize("body, words", [
    ("x=1\n", "x=1: expected X<name> nodes... subckt"),  # (an IndexError traceback)
    ("R1 a 0 1\n.options gmin=1e400\n", "gmin must be finite"),  # (an IndexError in the solver)
    ("".join(f".subckt s{i} a b\nX1 a b s{i - 1}\n.ends\n" for i in range(1, 600))
     + ".subckt s0 a b\nR1 a b 1\n.ends\nV1 a 0 1\nX1 a 0 s599\n", "nested too deeply")])  # (RecursionError)
def test_decks_that_raised_a_traceback_are_one_line_errors(body, words):
    with pytest.raises(DeckError, match=words):
        parse_text("t\n" + body)


def test_error_inside_include_names_the_included_file(tmp_path):
    (tmp_path / "inc.cir").write_text("R1 a 0 1k\nG1 a 0 a 0 1\n")
    (tmp_path / "top.cir").write_text("t\n.include inc.cir\n")
    with pytest.raises(DeckError, match=rf"^{tmp_path / 'inc.cir'}:2: element g1"):
        parse_deck(tmp_path / "top.cir")


def test_circuit_deck_round_trip():
    from cdsolver.circuit import random_circuit
    from spice_bridge.netlist import circuit_deck

    c = random_circuit("bridge", 8, seed=3, rs=True)
    back = parse_text(circuit_deck(c))
    assert back.node_names() == c.node_names() and back.series == c.series
    assert [d[3:] for d in back.diodes] == [d[3:] for d in c.diodes]
    assert {r[0]: r[3] for r in back.resistors} == {r[0]: r[3] for r in c.resistors}
    assert isinstance(back, Circuit) and back.gmin == c.gmin
