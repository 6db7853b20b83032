"""MILP solvers other than HiGHS, through pulp: the same model the encoder builds, for users who pick one.

HiGHS, driven through its own matrices, stays the default: it gives a proven dual bound at every
stop. Through pulp the model is rebuilt as Python objects (measured in ``bench/RESULTS.md``) and a
solver reports an optimum and a status, not a dual bound, so a bound is taken only from a solve the
solver proved optimal (less its gap and integrality tolerances), and one that is not keeps the
cheaper method's bound. CBC ships with pulp; Gurobi and CPLEX need their own installation and licence.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pulp

from ..errors import NnxformError

if TYPE_CHECKING:
    from .encoding import Encoder

#: Solvers by the name users give, and pulp's name for each (None: HiGHS through its own matrices). CBC is the
#: binary pulp 3 bundles (pulp 4 drops it: hence the pin below 4).
SOLVERS: dict[str, str | None] = {"highs": None, "cbc": "PULP_CBC_CMD", "gurobi": "GUROBI", "cplex": "CPLEX_CMD"}
#: Relative optimality gap asked of the solver, and the integrality tolerance its optimum is taken to have.
GAP, INTEGRALITY = 1e-6, 1e-6


def check_solver(name: str) -> None:
    """Refuse an unknown solver, or one pulp cannot run here, in one line."""
    if name not in SOLVERS:
        raise NnxformError(f"unknown MILP solver '{name}'; choose one of {', '.join(SOLVERS)}")
    if SOLVERS[name] is not None and not pulp.getSolver(SOLVERS[name], msg=False).available():
        raise NnxformError(f"the MILP solver '{name}' is not available here (not installed, or no licence); "
                           "use --solver highs or cbc")


def _solve(problem: pulp.LpProblem, solver: pulp.LpSolver) -> int:
    """``problem.solve(solver)`` with the solver's files (the model, tens of MB) in a directory of their own,
    removed however the solve ends; on Ctrl-C the solver's process is ended too (pulp leaves it and its files),
    then the interrupt goes on."""
    with tempfile.TemporaryDirectory(prefix="nnxform-pulp-") as folder:
        solver.tmpDir = folder
        try:
            return problem.solve(solver)
        except KeyboardInterrupt:
            _end_children()
            raise


def _end_children() -> None:
    """Send SIGTERM to every child process of this one (Linux lists them under /proc; elsewhere nothing is done and
    a solver started through pulp ends at its own time limit)."""
    for listing in Path("/proc/self/task").glob("*/children"):
        try:
            children = listing.read_text().split()
        except OSError:
            continue
        for pid in children:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except OSError:  # ended meanwhile
                pass


class PulpModel:
    """An encoder's MILP as a pulp problem, rebuilt when the encoder grew, minimised column by column."""

    def __init__(self, name: str):
        check_solver(name)
        self.name = name
        self.size = (-1, -1)
        self.problem: pulp.LpProblem | None = None
        self.variables: list[pulp.LpVariable] = []
        self.values: np.ndarray | None = None  # the last solve's column values

    def minimize(self, enc: "Encoder", col: int, sign: float, seconds: float | None) -> tuple[float, bool]:
        """A lower bound of ``sign · column`` (``-inf`` unless the solver proved its optimum) and whether it is exact."""
        self._build(enc)
        assert self.problem is not None
        self.problem.setObjective(pulp.LpAffineExpression([(self.variables[col], sign)]))
        options = {"msg": False, "gapRel": GAP}
        if seconds is not None:
            options["timeLimit"] = max(1.0, float(seconds))
        _solve(self.problem, pulp.getSolver(SOLVERS[self.name], **options))
        optimal = self.problem.sol_status == pulp.LpSolutionOptimal
        values = [v.varValue for v in self.variables]
        self.values = None if any(v is None for v in values) else np.array(values, dtype=np.float64)
        if not optimal:
            return -np.inf, False
        best = float(pulp.value(self.problem.objective))
        big = float(np.max(np.maximum(np.abs(enc.col_lo), np.abs(enc.col_hi)), initial=0.0))
        return best - GAP * (1.0 + abs(best)) - INTEGRALITY * (1.0 + abs(best) + big), True

    def feasible(self, enc: "Encoder", col: int, lo: float, hi: float, sign: float, seconds: float | None
                 ) -> tuple[str, np.ndarray | None]:
        """Is there a point of the model with column ``col`` in ``[lo, hi]``? 'infeasible' (the solver's proof),
        'solution' with every column's value, or 'unknown' (stopped first); the search pushes ``sign · column`` down."""
        self._build(enc)
        assert self.problem is not None
        var = self.variables[col]
        var.lowBound, var.upBound = float(lo), float(hi)
        self.problem.setObjective(pulp.LpAffineExpression([(var, sign)]))
        options = {"msg": False} if seconds is None else {"msg": False, "timeLimit": max(1.0, float(seconds))}
        status = _solve(self.problem, pulp.getSolver(SOLVERS[self.name], **options))
        values = [v.varValue for v in self.variables]
        var.lowBound, var.upBound = float(enc.col_lo[col]), float(enc.col_hi[col])
        if status == pulp.LpStatusInfeasible:
            return "infeasible", None
        if self.problem.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) and None not in values:
            return "solution", np.array(values, dtype=np.float64)
        return "unknown", None

    def _build(self, enc: "Encoder") -> None:
        """The pulp problem of the encoder's current columns and rows (column bounds refreshed every time)."""
        size = (enc.col_lo.size, enc.row_lo.size)
        if size != self.size:
            self.size = size
            integer = set(enc.integer_cols)
            problem = pulp.LpProblem("nnxform", pulp.LpMinimize)
            self.variables = [problem.add_variable(f"c{j}", cat=pulp.LpInteger if j in integer else pulp.LpContinuous)
                              for j in range(size[0])]
            r, c, v = (np.concatenate(p) for p in zip(*enc._coo))
            order = np.argsort(r, kind="stable")
            r, c, v = r[order], c[order], v[order]
            starts = np.searchsorted(r, np.arange(size[1] + 1))
            for i in range(size[1]):
                terms = pulp.LpAffineExpression(
                    [(self.variables[j], float(a)) for j, a in zip(c[starts[i]:starts[i + 1]], v[starts[i]:starts[i + 1]])])
                lo, hi = enc.row_lo[i], enc.row_hi[i]
                if lo == hi:
                    problem += terms == float(lo)
                    continue
                if np.isfinite(lo):
                    problem += terms >= float(lo)
                if np.isfinite(hi):
                    problem += terms <= float(hi)
            self.problem = problem
        for var, lo, hi in zip(self.variables, enc.col_lo, enc.col_hi):
            var.lowBound, var.upBound = float(lo), float(hi)
