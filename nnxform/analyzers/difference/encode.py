"""The LP and MILP of the pair in difference variables: the merged network's encoding with the relaxation rows as
valid inequalities (``DifferenceEncoder``, ``solve``).
"""

from __future__ import annotations

import highspy
import numpy as np

from ...domain import Box
from ...stopping import Deadline
from ..encoding import INF, Encoder
from ..result import Progress, State
from .pairing import PairLayer
from .relax import LayerDelta, candidate_lines


class DifferenceEncoder(Encoder):
    """The pair as one HiGHS model in difference variables: per layer ``z_B, Δz``, per activation ``a_B, Δa``.

    ``z_A = z_B + Δz`` and ``a_A = a_B + Δa`` never get columns: this is the merged network's
    encoding after a change of variables (the same LP or MILP), but the small differences are
    solved for directly instead of as the cancellation of two large values. Each network's ReLUs
    get the triangle (``lp``) or big-M (``milp``) rows from its tightened bounds, and NeuroDiff's
    lines of ``Δa`` are added as cuts (valid for the exact ReLUs, so the MILP stays exact). Every
    row the ``symbolic`` analysis relaxes with is here, so the LP is never looser than it. The
    ``Δ`` columns are scaled per layer to values of order one: HiGHS's MIP treats a column whose
    range is below its feasibility tolerance as fixed, and then wrongly finds the model infeasible.
    """

    def __init__(self, layers: list[PairLayer], deltas: list[LayerDelta], state_b: State,
                 integer: bool, time_limit: float | None = None, deadline: Deadline | None = None,
                 solver: str = "highs"):
        super().__init__(state_b, integer, time_limit, deadline, solver)
        if not integer:  # simplex (primal or dual) can stall for minutes on these tiny differences
            self.h.setOptionValue("presolve", "on")
            self.h.setOptionValue("solver", "ipm")
            self.h.setOptionValue("run_crossover", "off")  # the dual bound needs duals only, not a vertex
        self.layers, self.deltas = layers, deltas
        self.x = self._cols(state_b.lo[0].copy(), state_b.hi[0].copy())  # the box as the float network reads it
        self.zb: dict[int, int] = {}
        self.dz: dict[int, int] = {}
        self.ab: dict[int, int] = {}
        self.da: dict[int, int] = {}
        self.dz_scale: dict[int, float] = {}  # column value = Δz / scale
        self.da_scale: dict[int, float] = {}

    def add_layer(self, k: int) -> None:
        """Columns and rows of affine layer ``k``: ``Δz = W_A Δa + (W_A − W_B) a_B + Δb`` and, if hidden,
        ``z_B = W_B a_B + b_B``."""
        L, D = self.layers[k], self.deltas[k]
        src_b = self.x if k == 0 else self.ab[k - 1]
        self.dz_scale[k] = sd = _scale(D.lo_d, D.hi_d)
        self.dz[k] = self._cols(D.lo_d / sd, D.hi_d / sd)
        terms = [(L.d, 1.0, src_b)] + ([] if k == 0 else [(L.wa, self.da_scale[k - 1], self.da[k - 1])])
        self.affine_rows(self.dz[k], sd, terms, L.db, D.noise_a + D.noise_b)
        if k < len(self.layers) - 1:
            self.zb[k] = self._cols(D.lo_b.copy(), D.hi_b.copy())
            self.affine_rows(self.zb[k], 1.0, [(L.wb, 1.0, src_b)], L.bb, D.noise_b)

    def update_layer(self, k: int) -> None:
        """Copy the (tightened) bounds of hidden layer ``k`` onto its columns."""
        D, sd = self.deltas[k], self.dz_scale[k]
        for first, lo, hi in ((self.dz[k], D.lo_d / sd, D.hi_d / sd), (self.zb[k], D.lo_b, D.hi_b)):
            idx = first + np.arange(lo.size)
            self.col_lo[idx], self.col_hi[idx] = lo, hi
            self.h.changeColsBounds(idx.size, idx.astype(np.int32), lo, hi)

    def add_relus(self, k: int) -> None:
        """Columns ``a_B``, ``Δa`` after hidden layer ``k``; both networks' activations (the encoder's
        ``kinked_rows`` with their slopes, each widened by its float margin); the cuts where one is unstable."""
        D = self.deltas[k]
        c_lo, c_hi = D.const
        self.da_scale[k] = sa = _scale(c_lo, c_hi)
        sd = self.dz_scale[k]
        self.ab[k] = ab = self._cols(*D.outputs("b"))
        self.da[k] = da = self._cols(c_lo / sa, c_hi / sa)
        zb, dz = self.zb[k], self.dz[k]
        err_a, err_b = (np.broadcast_to(e, D.lo_a.shape) for e in D.margins)
        self.kinked_rows(D.lo_b, D.hi_b, [(ab, 1.0)], [(zb, 1.0)], D.slopes, err_b)
        self.kinked_rows(D.lo_a, D.hi_a, [(ab, 1.0), (da, sa)], [(zb, 1.0), (dz, sd)], D.slopes, err_a)
        rows = np.flatnonzero(D.unsettled)
        if rows.size:
            lowers, uppers = candidate_lines(D.lo_a, D.hi_a, D.lo_b, D.hi_b, D.lo_d, D.hi_d, *D.relu_const())
            # N, mapped to Δa: Δa − p Δz >= r (lower), <= r (upper)
            (p_lo, _, r_lo), (p_up, _, r_up) = D.of_relu(lowers[1], -1.0), D.of_relu(uppers[1], 1.0)
            free = np.full(rows.size, INF)
            self.combination_rows(rows, [(da, sa), (dz, -sd * p_lo[rows])], r_lo[rows], free)
            self.combination_rows(rows, [(da, sa), (dz, -sd * p_up[rows])], -free, r_up[rows])

    def delta_min(self, k: int, j: int, sign: float) -> tuple[float, bool]:
        """Sound lower bound of ``sign · Δz_k[j]`` (LP or MILP dual bound); whether the MILP closed its gap."""
        col, sd = self.dz[k] + j, self.dz_scale[k]
        if not self.integer:
            return sd * self.lp_min(col, sign), False
        if not self.integers:  # HiGHS solves it as an LP and leaves the MIP dual bound at 0: take the LP's
            bound = self.lp_min(col, sign)
            return sd * bound, self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        bound, closed = self.mip_min(col, sign)
        return sd * bound, closed

    @property
    def inputs(self) -> slice:
        """The input's columns: the box as the float network reads it."""
        return slice(self.x, self.x + self.layers[0].wa.shape[1])


def _scale(lo: np.ndarray, hi: np.ndarray) -> float:
    """A column scale that makes ``[lo, hi]`` of order one (1 when both are zero)."""
    s = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
    return s if s > 0 else 1.0


def solve(layers: list[PairLayer], deltas: list[LayerDelta], box: Box, state_b: State, integer: bool,
          time_limit: float, progress: Progress | None = None, deadline: Deadline | None = None,
          solver: str = "highs", below: float | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """LP (tightening every unsettled hidden ``Δz`` first) or MILP bounds of the output ``Δz`` (every layer's
    rounding noise is in the rows).

    Returns lower, upper, per side and output whether the solver closed its gap (MILP), and the
    input points of the MILP's solutions (witness candidates). Past ``deadline`` no solve starts: the
    bounds not tightened yet keep the symbolic ones; so do the output bounds already within ``±below``.
    """
    enc = DifferenceEncoder(layers, deltas, state_b, integer, time_limit, deadline, solver)

    def late() -> bool:
        return deadline is not None and deadline.passed()

    last = len(layers) - 1
    work = 0 if integer else sum(int(D.unsettled.sum()) for D in deltas[1:last])
    total = 2 * (work + layers[-1].size)
    done = 0
    for k in range(last):
        enc.add_layer(k)
        D = deltas[k]
        if not integer and k > 0:
            for j in np.flatnonzero(D.unsettled):
                if late():
                    break
                D.lo_d[j] = max(D.lo_d[j], enc.delta_min(k, int(j), 1.0)[0])
                D.hi_d[j] = min(D.hi_d[j], -enc.delta_min(k, int(j), -1.0)[0])
                done += 2
                if progress:
                    progress(done, total)
            D.tighten()
            D.relax()
            enc.update_layer(k)
        enc.add_relus(k)
    enc.add_layer(last)
    out = deltas[last]
    lo, hi = out.lo_d.copy(), out.hi_d.copy()
    closed = np.zeros((2, lo.size), dtype=bool)
    points: list[np.ndarray] = []
    for j in range(lo.size):
        for side, sign in ((0, 1.0), (1, -1.0)):
            if late() or (below is not None and (lo[j] > -below if side == 0 else hi[j] < below)):
                continue
            bound, closed[side, j] = enc.delta_min(last, j, sign)
            x = enc.input_solution() if integer else None
            if x is not None:
                points.append(np.clip(np.asarray(x), box.lower, box.upper))
            if side == 0:
                lo[j] = max(lo[j], bound)
            else:
                hi[j] = min(hi[j], -bound)
            done += 1
            if progress:
                progress(done, total)
    return lo, hi, closed, points
