"""A compiled network (the analysis form) as one HiGHS model, built step by step with matrix calls (shared by ``lp`` and ``milp``).

Columns: the box inputs, every Linear step's values ``z`` (rows ``z − Σ W x = b``) and every
nonlinear step's outputs. A piecewise-linear activation (ReLU, LeakyRelu: the table's ``slopes``) is exact when
stable; when unstable it is its convex hull, the triangle for ReLU (``lp``), or the big-M encoding with one binary
(``milp``). MaxPool uses ``y >= x_i``
plus ``y <= Σ (x_i − l_i) + max l`` (``lp``) or one binary per candidate (``milp``). Every
column has finite bounds, which makes the LP dual bound of any dual vector rigorous.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

import highspy
import numpy as np

from .. import stopping
from ..stopping import Deadline
from ..errors import NnxformError
from .conv import MATRIX_FREE, ConvMap, IdentityMap, SubgraphMap
from .network import Activation, Input, Linear, Pool
from .result import State
from .solvers import INTEGRALITY, SOLVERS, PulpModel

INF = highspy.kHighsInf
#: Statuses after which HiGHS's MIP dual bound is a proven bound (an interrupted solve never returns: see ``solve``).
_PROVEN = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit,
           highspy.HighsModelStatus.kSolutionLimit)


def quiet_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing on stdout: the banner HiGHS writes there (once per process, from
    C++, when the first instance is made) goes to stderr, so ``--json -`` stays parseable."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        ctypes.CDLL(None).fflush(None)  # C's stdout buffer, before fd 1 is given back
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return h


def solve(h: highspy.Highs) -> None:
    """``h.run()``, ended at once by Ctrl-C, which is then raised here: an interrupted solve is never taken for a
    finished one. A stop requested by SIGTERM (``stopping``) ends it as its time limit would.

    Python runs its SIGINT handler only between bytecodes of the main thread, so a solve run there would finish
    (up to its time limit) before Ctrl-C is seen. The solve runs in a worker thread instead (HiGHS releases the
    GIL) while this thread waits; on Ctrl-C HiGHS is asked to stop through its interrupt callbacks, subscribed
    only then so that a normal solve pays nothing, and waited for, since the process may not exit while HiGHS
    still runs.
    """
    done = threading.Event()
    failure: list[BaseException] = []
    threading.Thread(target=_run_then_set, args=(h, done, failure), name="highs", daemon=True).start()
    try:
        while not done.wait(_POLL):
            if stopping.requested():  # SIGTERM: the solve ends as at its time limit (callers read the status)
                _cancel(h, done)
    except KeyboardInterrupt:
        _cancel(h, done)
        raise
    if failure:
        raise failure[0]
    if h.getModelStatus() == highspy.HighsModelStatus.kInterrupt and not stopping.requested():
        raise KeyboardInterrupt


#: Seconds between two looks at ``stopping.requested`` while a solve runs.
_POLL = 0.25


def _cancel(h: highspy.Highs, done: threading.Event) -> None:
    """Stop the running solve through HiGHS's interrupt callbacks and wait until it has stopped."""
    h.HandleUserInterrupt = True
    h.cancelSolve()
    while not done.is_set():
        try:
            done.wait()
        except KeyboardInterrupt:  # pressed again while HiGHS stops: it is stopping already
            pass
    h.HandleUserInterrupt = False  # the model may be solved again (the cancel request is forgotten)


def _run_then_set(h: highspy.Highs, done: threading.Event, failure: list[BaseException]) -> None:
    """The worker of ``solve``: run, keep what it raised, then say it is done."""
    try:
        h.run()
    except BaseException as exc:  # handed to the waiting thread, which raises it
        failure.append(exc)
    finally:
        done.set()


class Encoder:
    """One HiGHS model that grows by whole steps; ``lp_min``/``mip_min`` bound one column soundly."""

    def __init__(self, state: State, integer: bool, time_limit: float | None = None, deadline: Deadline | None = None,
                 solver: str = "highs"):
        for s in state.net.steps:
            if isinstance(s, Activation) and s.slopes is None:
                method = "milp" if integer else "lp"
                raise NnxformError(f"{s.op} node '{s.node}' is not supported by '{method}'; use interval or symbolic")
        self.state, self.integer = state, integer
        h = quiet_highs()
        h.setOptionValue("threads", 1)
        if integer:
            h.setOptionValue("mip_rel_gap", 1e-6)
            h.setOptionValue("mip_abs_gap", 1e-6)
        else:
            h.setOptionValue("presolve", "off")  # keep the basis between objectives (warm start)
            h.setOptionValue("simplex_strategy", 4)  # a new objective keeps the basis primal feasible
        self.h, self.time_limit, self.deadline = h, time_limit, deadline
        self.integers = 0  # integer columns so far; without any, HiGHS solves an LP and has no MIP dual bound
        self.integer_cols: list[int] = []
        self.external = None if SOLVERS.get(solver, "?") is None else PulpModel(solver)  # --solver other than highs
        self.col: dict[int, int] = {}
        self.col_lo, self.col_hi = np.zeros(0), np.zeros(0)
        self.row_lo, self.row_hi = np.zeros(0), np.zeros(0)
        self._coo: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._matrix: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._cost_col: int | None = None

    # --- building ---------------------------------------------------------------------------

    def add(self, i: int) -> None:
        """Encode step ``i`` (its sources must be encoded, with final bounds on the state)."""
        s = self.state.net.steps[i]
        if isinstance(s, Input):
            self.col[i] = self._cols(self.state.lo[i], self.state.hi[i])
        elif isinstance(s, Linear):
            self._linear(i, s)
        elif isinstance(s, Pool):
            self._pool(i, s)
        else:
            self._kinked(i, s)

    def set_bounds(self, i: int) -> None:
        """Copy the state's (tightened) bounds of step ``i`` onto its columns."""
        lo, hi = self.state.lo[i], self.state.hi[i]
        idx = self.col[i] + np.arange(lo.size)
        self.col_lo[idx], self.col_hi[idx] = lo, hi
        self.h.changeColsBounds(idx.size, idx.astype(np.int32), lo, hi)

    def _cols(self, lo: np.ndarray, hi: np.ndarray, integer: bool = False) -> int:
        start = self.col_lo.size
        n = lo.size
        self.h.addCols(n, np.zeros(n), lo, hi, 0, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
        if integer:
            self.integers += n
            self.integer_cols += range(start, start + n)
            idx = np.arange(start, start + n, dtype=np.int32)
            self.h.changeColsIntegrality(n, idx, np.full(n, highspy.HighsVarType.kInteger))
        self.col_lo = np.concatenate([self.col_lo, lo])
        self.col_hi = np.concatenate([self.col_hi, hi])
        return start

    def _rows(self, r: np.ndarray, c: np.ndarray, v: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Add rows ``lower <= A x <= upper`` given A's entries (local row r, global column c, value v)."""
        n = lower.size
        keep = v != 0
        r, c, v = r[keep], c[keep], v[keep]
        order = np.argsort(r, kind="stable")
        r, c, v = r[order], c[order], v[order]
        starts = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))[:-1]]).astype(np.int32)
        self.h.addRows(n, lower, upper, v.size, starts, c.astype(np.int32), v)
        self._coo.append((r + self.row_lo.size, c, v))
        self._matrix = None
        self.row_lo = np.concatenate([self.row_lo, lower])
        self.row_hi = np.concatenate([self.row_hi, upper])

    def _linear(self, i: int, s: Linear) -> None:
        self.col[i] = self._cols(self.state.lo[i], self.state.hi[i])
        m = self.state.linear_noise(i)  # the float network's rounding of this step
        terms = [(w, 1.0, self.col[src]) for src, w in zip(s.sources, s.weights)]
        self.affine_rows(self.col[i], 1.0, terms, s.bias, m)

    def affine_rows(self, out: int, out_coef: float,
                    terms: list[tuple[np.ndarray | ConvMap | IdentityMap | SubgraphMap, float, int]],
                    bias: np.ndarray, noise: np.ndarray | float) -> None:
        """Rows ``|out_coef · out − Σ scale·W·src − bias| <= noise`` (``out``, ``src``: first columns of blocks;
        ``W`` a dense matrix or an operator's entries)."""
        n = bias.size
        rs, cs, vs = [np.arange(n)], [out + np.arange(n)], [np.full(n, out_coef)]
        for W, scale, src in terms:
            if isinstance(W, MATRIX_FREE):
                r, c, v = W.entries()
            else:
                r, c = np.nonzero(W)
                v = W[r, c]
            rs.append(r)
            cs.append(src + c)
            vs.append(-scale * v)
        self._rows(np.concatenate(rs), np.concatenate(cs), np.concatenate(vs), bias - noise, bias + noise)

    def _kinked(self, i: int, s: Activation) -> None:
        lo, hi = self.state.lo[s.source], self.state.hi[s.source]
        kind = s.kind
        err = np.broadcast_to(kind.margin(lo, hi), lo.shape)
        self.col[i] = y = self._cols(kind.function(lo) - err, kind.function(hi) + err)
        self.kinked_rows(lo, hi, [(y, 1.0)], [(self.col[s.source], 1.0)], s.slopes, err)

    def kinked_rows(self, lo: np.ndarray, hi: np.ndarray, y: list[tuple[int, float]], z: list[tuple[int, float]],
                    slopes: tuple[float, float] = (0.0, 1.0), err: np.ndarray | None = None) -> None:
        """``Σ c·y = f(Σ c·z)`` neuron by neuron over column blocks (first column, coefficient), ``z`` within
        ``[lo, hi]``, for ``f(x) = (p if x < 0 else q)·x`` with ``(p, q) = slopes``, ``0 <= p <= q`` (ReLU: (0, 1),
        LeakyRelu: (α, 1)), each row widened by ``err`` (onnxruntime's rounding of ``f``): exact rows where stable,
        else the convex hull (LP: ``y >= p·z``, ``y >= q·z``, below the chord) or big-M rows with a binary (MILP).
        One block ``y`` is pinned at 0 by its own bounds where ``f`` is 0 there; otherwise a row says so."""
        p, q = slopes
        e = np.zeros(lo.size) if err is None else err

        def minus(k: float) -> list[tuple[int, float | np.ndarray]]:
            return [(col, -c * k) for col, c in z]

        for idx, k in ((np.flatnonzero(lo >= 0), q), (np.flatnonzero(hi <= 0), p)):
            if idx.size and (k != 0 or len(y) > 1):  # y = k·z
                self.combination_rows(idx, y + minus(k), -e[idx], e[idx])
        u = np.flatnonzero((lo < 0) & (hi > 0))
        if u.size == 0:
            return
        m, l, h, eu = u.size, lo[u], hi[u], e[u]
        free = np.full(m, INF)
        if p != 0 or len(y) > 1:  # y >= p·z (a single ReLU block: its column bounds say y >= 0)
            self.combination_rows(u, y + minus(p), -eu, free)
        self.combination_rows(u, y + minus(q), -eu, free)  # y >= q·z
        if not self.integer:
            s = (q * h - p * l) / (h - l)  # y <= p·l + s·(z − l): the chord
            self.combination_rows(u, y + [(col, -c * s) for col, c in z], -free, (p - s) * l + eu)
            return
        d = self._cols(np.zeros(m), np.ones(m), integer=True)
        # y <= q·z − (q − p)·l·(1 − d);  y <= p·z + (q − p)·h·d
        self.combination_rows(u, y + minus(q), -free, -(q - p) * l + eu, extra=(d, -(q - p) * l))
        self.combination_rows(u, y + minus(p), -free, eu, extra=(d, -(q - p) * h))

    def combination_rows(self, idx: np.ndarray, terms: list[tuple[int, float | np.ndarray]], lower: np.ndarray,
                         upper: np.ndarray, extra: tuple[int, np.ndarray] | None = None) -> None:
        """Rows ``lower <= Σ coef · block[idx] (+ coef · extra[row]) <= upper``, one per neuron in ``idx``."""
        m = idx.size
        r = np.arange(m)
        cs = [first + idx for first, _ in terms]
        vs = [np.broadcast_to(np.asarray(c, dtype=np.float64), (m,)) for _, c in terms]
        if extra is not None:
            cs.append(extra[0] + r)
            vs.append(extra[1])
        self._rows(np.concatenate([r] * len(cs)), np.concatenate(cs), np.concatenate(vs), lower, upper)

    def _pool(self, i: int, s: Pool) -> None:
        lo, hi = self.state.lo[s.source], self.state.hi[s.source]
        w = s.windows
        valid = w >= 0
        wlo = np.where(valid, lo[np.maximum(w, 0)], -np.inf)
        whi = np.where(valid, hi[np.maximum(w, 0)], -np.inf)
        top_lo = wlo.max(axis=1)
        top_hi = whi.max(axis=1)
        cand = valid & (whi >= top_lo[:, None])  # inputs that can be the maximum
        self.col[i] = y = self._cols(top_lo, top_hi)
        x = self.col[s.source]
        j, k = np.nonzero(cand)
        src = w[j, k]
        e = np.arange(j.size)
        # y_j - x_i >= 0 for every candidate
        self._rows(np.concatenate([e, e]), np.concatenate([y + j, x + src]),
                   np.concatenate([np.ones(j.size), -np.ones(j.size)]), np.zeros(j.size), np.full(j.size, INF))
        n = w.shape[0]
        if not self.integer:
            # y_j - Σ x_i <= max l - Σ l_i
            rhs = top_lo - np.bincount(j, weights=lo[src], minlength=n)
            self._rows(np.concatenate([np.arange(n), j]), np.concatenate([y + np.arange(n), x + src]),
                       np.concatenate([np.ones(n), -np.ones(j.size)]), np.full(n, -INF), rhs)
            return
        d = self._cols(np.zeros(j.size), np.ones(j.size), integer=True)
        big = top_hi[j] - lo[src]
        # y_j - x_i + big d_i <= big;  Σ_i d_i = 1
        self._rows(np.concatenate([e, e, e]), np.concatenate([y + j, x + src, d + e]),
                   np.concatenate([np.ones(j.size), -np.ones(j.size), big]), np.full(j.size, -INF), big)
        self._rows(j, d + e, np.ones(j.size), np.ones(n), np.ones(n))

    # --- solving ----------------------------------------------------------------------------

    def _objective(self, col: int, sign: float) -> None:
        if self._cost_col is not None and self._cost_col != col:
            self.h.changeColCost(self._cost_col, 0.0)
        self.h.changeColCost(col, sign)
        self._cost_col = col

    def _limit(self) -> float | None:
        """Seconds the next solve may take: the time limit, within what the deadline leaves."""
        limit = self.time_limit
        if self.deadline is not None:
            limit = max(min(self.deadline.left(), limit if limit is not None else np.inf), 1e-3)
        return limit

    def _run(self) -> None:
        """Solve with ``time_limit`` seconds for this run.

        HiGHS (measured with 1.15) checks an LP against the run time of all runs of the model so far, but a
        MIP against the time of the current run: the limit is set so that either gives ``time_limit`` seconds.
        """
        limit = self._limit()
        if limit is not None:
            spent = 0.0 if self.integers else self.h.getRunTime()
            self.h.setOptionValue("time_limit", spent + float(limit))
        solve(self.h)

    def lp_min(self, col: int, sign: float = 1.0) -> float:
        """Rigorous lower bound of ``sign · column`` over the LP (from the dual, never the primal)."""
        self._objective(col, sign)
        self._run()
        y = np.asarray(self.h.getSolution().row_dual, dtype=np.float64)
        if y.size != self.row_lo.size or not np.all(np.isfinite(y)):
            y = np.zeros(self.row_lo.size)  # still a valid (interval-like) bound
        return self._dual_bound(col, sign, y)

    def _dual_bound(self, col: int, sign: float, y: np.ndarray) -> float:
        """Weak duality for ``min c·v`` with any ``y``: ``Σ y_i·side_i + Σ_j min(r_j l_j, r_j u_j)``, ``r = c − Aᵀy``."""
        y = np.where((y > 0) & ~np.isfinite(self.row_lo), 0.0, y)
        y = np.where((y < 0) & ~np.isfinite(self.row_hi), 0.0, y)
        if self._matrix is None:
            self._matrix = tuple(np.concatenate(p) for p in zip(*self._coo))
        r, c, v = self._matrix
        red = -np.bincount(c, weights=v * y[r], minlength=self.col_lo.size)
        red[col] += sign
        rows = np.where(y > 0, y * np.where(y > 0, self.row_lo, 0.0), y * np.where(y < 0, self.row_hi, 0.0))
        return float(rows.sum() + np.minimum(red * self.col_lo, red * self.col_hi).sum())

    def mip_min(self, col: int, sign: float = 1.0) -> tuple[float, bool]:
        """Solver-proven (dual) lower bound of ``sign · column`` over the MILP and whether the gap closed."""
        if not self.integers:  # an LP: HiGHS reports optimal and leaves mip_dual_bound at 0
            bound = self.lp_min(col, sign)
            optimum = float(self.h.getInfo().objective_function_value)
            closed = (self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
                      and abs(bound - optimum) <= 1e-6 * (1.0 + abs(optimum)))
            return bound, closed
        if self.external is not None:
            return self.external.minimize(self, col, sign, self._limit())
        self._objective(col, sign)
        self._run()
        info = self.h.getInfo()
        status = self.h.getModelStatus()
        bound = float(info.mip_dual_bound)
        closed = status == highspy.HighsModelStatus.kOptimal
        if not np.isfinite(bound) or status not in _PROVEN:
            return -np.inf, False
        tol = self.h.getOptionValue("mip_feasibility_tolerance")
        tol = tol[1] if isinstance(tol, tuple) else tol
        return bound - tol * (1.0 + abs(bound) + self._big), closed

    def feasible(self, col: int, threshold: float, up: bool, seconds: float, node_limit: int | None = None
                 ) -> tuple[str, np.ndarray | None]:
        """Can column ``col`` reach ``threshold`` (at least it when ``up``, at most otherwise)? ``"infeasible"`` (the
        solver's proof, up to its tolerances: the caller keeps a margin beyond them), ``"solution"`` with the input
        columns of a point the solver found, or ``"unknown"`` when ``seconds`` (or ``node_limit`` nodes, then the
        time does not bind) ran out. The column's bounds and cost are restored after."""
        lo, hi = self.col_lo[col], self.col_hi[col]
        if (up and threshold > hi) or (not up and threshold < lo):
            return "infeasible", None
        low, high, cost = (max(lo, threshold), hi, -1.0) if up else (lo, min(hi, threshold), 1.0)
        inputs = self.inputs
        if self.external is not None:  # a solver through pulp
            verdict, values = self.external.feasible(self, col, low, high, cost, max(seconds, 1e-3))
            return verdict, None if values is None else np.asarray(values[inputs], dtype=np.float64)
        h = self.h
        h.changeColBounds(col, low, high)
        h.changeColCost(col, cost)
        if node_limit is not None:  # a limit of work: the same answer on every run
            h.setOptionValue("mip_max_nodes", int(node_limit))
        h.setOptionValue("time_limit", max(seconds, 1e-3))  # HiGHS 1.15: per run
        try:
            solve(h)  # Ctrl-C stops it and is raised, never read as an answer
            infeasible = h.getModelStatus() == highspy.HighsModelStatus.kInfeasible  # read before the model changes
            x = None
            if h.getInfo().primal_solution_status == 2:  # kSolutionStatusFeasible
                x = np.asarray(h.getSolution().col_value[inputs], dtype=np.float64)
        finally:
            h.changeColCost(col, 0.0)
            h.changeColBounds(col, lo, hi)
        if infeasible:
            return "infeasible", None
        return ("solution", x) if x is not None else ("unknown", None)

    def tolerance(self) -> float:
        """The largest absolute tolerance the MILP solver applies to bounds, rows and integrality (HiGHS's options; the
        same values stand for a solver through pulp, ``solvers.INTEGRALITY``)."""
        values = [self.h.getOptionValue(k) for k in ("mip_feasibility_tolerance", "primal_feasibility_tolerance")]
        return max([v[1] if isinstance(v, tuple) else v for v in values] + [INTEGRALITY])

    def set_options(self, options: dict[str, Any]) -> None:
        """Set solver options (HiGHS's names) for the solves to come, e.g. ``stable``'s feasibility-only search."""
        for key, value in options.items():
            self.h.setOptionValue(key, value)

    def region_feasible(self, step: int, coef: np.ndarray, bound: np.ndarray, seconds: float
                        ) -> tuple[str, np.ndarray | None]:
        """Can step ``step``'s values ``v`` meet every row ``coef @ v <= bound``? Each row is relaxed by the solver's
        tolerances at its scale, so that ``"infeasible"`` is a proof for the rows as given; ``"solution"`` comes with
        the input columns of the point found; ``"unknown"`` when ``seconds`` ran out. HiGHS only; the rows stay."""
        m = bound.size
        g = self._cols(np.full(m, -INF), np.full(m, INF))
        self.affine_rows(g, 1.0, [(coef, 1.0, self.col[step])], np.zeros(m), 0.0)
        lo, hi = self.state.lo[step], self.state.hi[step]
        scale = 1.0 + np.abs(bound) + np.abs(coef) @ np.maximum(np.abs(lo), np.abs(hi))
        upper = bound + 10.0 * self.tolerance() * scale
        idx = (g + np.arange(m)).astype(np.int32)
        self.h.changeColsBounds(m, idx, np.full(m, -INF), upper)
        self.col_hi[idx] = upper
        self.h.setOptionValue("time_limit", max(seconds, 1e-3))
        solve(self.h)
        if self.h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
            return "infeasible", None
        if self.h.getInfo().primal_solution_status == 2:  # kSolutionStatusFeasible
            return "solution", np.asarray(self.h.getSolution().col_value[self.inputs], dtype=np.float64)
        return "unknown", None

    def solution(self) -> np.ndarray | None:
        """Every column's value in the last solve's solution, from whichever solver ran it (None without one)."""
        if self.external is not None and self.integers:
            return self.external.values
        sol = self.h.getSolution()
        return np.asarray(sol.col_value, dtype=np.float64) if sol.value_valid else None

    @property
    def inputs(self) -> slice:
        """The input's columns."""
        return slice(self.col[0], self.col[0] + self.state.net.input_size)

    def input_solution(self) -> list[float] | None:
        """The input part of the last solve's solution (None without one)."""
        values = self.solution()
        return None if values is None else [float(v) for v in values[self.inputs]]

    @property
    def _big(self) -> float:
        """Largest column bound magnitude: scales the error that integrality tolerance allows."""
        return float(np.max(np.maximum(np.abs(self.col_lo), np.abs(self.col_hi)), initial=0.0))
