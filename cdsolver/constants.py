"""Physics constants and defaults shared by the CD solver and the ngspice decks (SI units)."""

#: Thermal voltage ngspice uses (T = 300.15 K, CODATA 2014 k and q), V.
VT = 0.025864917007157463

#: ngspice's default epsmin, A: it silently raises a diode model's IS below it to it (``.options epsmin=`` lowers it).
EPSMIN = 1e-28

#: Switch on-resistance of the nudging branch, Ω.
R_ON = 1.0
#: Switch off-resistance of the nudging branch in the free phase, Ω (``inf`` drops the branch).
R_OFF = 1e12

#: Default tolerance of ``solver.solve``: converged when max|KCL| <= tol * I_ref and the step a further sweep would
#: make is max|Δv| <= STEP_PER_TOL * tol * max|v| (even layers). 1e-14: voltages within 1e-13 (relative L1) of the
#: exact steady state on every network measured in docs/solver.md#stopping-test.
TOL = 1e-14
#: The step test's tolerance per unit of ``tol``.
STEP_PER_TOL = 10.0
#: Default sweep cap per sample of ``solver.solve`` (``drn solve --max-iter``).
MAX_SWEEPS = 1000
#: Default Anderson history depth (sweeps) of both solvers; 0 is plain block CD.
ANDERSON = 5
#: The largest amplifier gain A or C accepted (beyond it the node conductances C·A·ΣG leave float64's useful range).
MAX_GAIN = 1e6
#: The deepest Anderson history a solve accepts (each level keeps two arrays of the whole batch's state).
MAX_ANDERSON = 100

#: EP gradient estimators (``ep.ep_phases``): the nudged phases they take.
ESTIMATORS = ("positive", "negative", "centered")

#: Osana et al.'s double-Shockley element: saturation current (A), Vd = n*Vt (V), rails (V).
OSANA_IS = 1e-6
OSANA_VD = 0.05
OSANA_VOFF = 0.8

#: Default KCL tolerance of general circuits (``graph.solve_circuit``, ``drn circuit``): at 1e-12 the voltages of
#: random graphs and grids were 5e-12 (relative L1) from ngspice's; at 1e-14, <= 4e-13 (docs/circuits.md).
CIRCUIT_TOL = 1e-14
#: Default sweep cap of a general circuit (``graph.solve_circuit``, ``drn circuit --max-iter``).
CIRCUIT_MAX_SWEEPS = 10000

#: Sweeps of a general circuit before its two-level (aggregation) correction joins every sweep
#: (``graph.solve_circuit``): networks that converge in fewer sweeps never pay for it (docs/circuits.md).
CIRCUIT_COARSE_AFTER = 20
