"""Branch and bound over ReLU signs with the batched engine (``boxes``): where a branch's signs sit, its children,
and ``prove_signs``, the search that proves the sign of many neurons of one layer at once (``stable``'s search).

A branch fixes the signs of some ReLU inputs; ``boxes.analyse`` bounds it on the part of the box where they hold, so
a bound proved on both children of every split holds on the whole box. ``verify`` splits to prove a property of the
output; ``prove_signs`` splits the ReLUs before one layer to prove, per neuron of that layer, ``z >= 0`` or
``z <= 0``: the branches are shared by all the layer's neurons, each branch carrying the neurons it has left to prove.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .boxes import BoxBounds, DenseNetwork, analyse, objective, optimized_objective
from .network import Activation

#: ``prove_signs``: Adam steps on the slopes and split multipliers of a row the plain bound does not prove; rows
#: (branch × neuron) and branches bounded per batch at most; candidate witnesses replayed per batch at most.
SEARCH_STEPS, SEARCH_PAIRS, SEARCH_BRANCHES, SEARCH_WITNESSES = 10, 1024, 64, 256


class Slots:
    """Where the neurons of each Linear step read by a piecewise-linear activation (ReLU, LeakyRelu) sit in a
    branch's sign vector (one int8 per neuron)."""

    def __init__(self, dense: DenseNetwork) -> None:
        net = dense.net
        kinked = {s.source: i for i, s in enumerate(net.steps) if isinstance(s, Activation) and s.slopes is not None}
        self.steps = sorted(kinked)
        self.after = kinked
        sizes = [net.steps[i].size for i in self.steps]
        self.starts = np.cumsum([0] + sizes)[:-1]  # where each step's block starts, in ``steps``' order
        self.offsets = dict(zip(self.steps, self.starts.tolist()))
        self.sizes = dict(zip(self.steps, sizes))
        self.total = int(sum(sizes))
        # (MILP leaves need every activation piecewise linear)
        self.piecewise_only = all(s.slopes is not None for s in net.steps if isinstance(s, Activation))

    def split(self, sg: np.ndarray) -> dict[int, np.ndarray]:
        """The sign vectors as ``analyse`` takes them: per step, its block."""
        return {i: sg[:, o: o + self.sizes[i]] for i, o in self.offsets.items()}

    def losses(self, state: BoxBounds, record: dict[int, np.ndarray], rows: np.ndarray, open_: np.ndarray,
               sg: np.ndarray) -> np.ndarray:
        """Per branch and free unstable neuron, what the bound of the open regions' best rows loses on its ReLU's
        relaxation: ``|coefficient| · (−l·u / (u − l))`` (BaBSR's intercept score)."""
        out = np.zeros((state.size, self.total))
        for i, k, gap in self._gaps(state, record, sg):
            L = np.take_along_axis(record[k], rows[:, :, None], axis=1)  # (boxes, regions, size)
            weight = (np.abs(L) * open_[:, :, None]).sum(axis=1)
            out[:, self.offsets[i]: self.offsets[i] + self.sizes[i]] = weight * gap
        return out

    def row_losses(self, state: BoxBounds, record: dict[int, np.ndarray], sg: np.ndarray) -> np.ndarray:
        """``losses`` of each row of the bound on its own: ``(branches, rows, total)``."""
        rows = next(iter(record.values())).shape[1] if record else 0
        out = np.zeros((state.size, rows, self.total))
        for i, k, gap in self._gaps(state, record, sg):
            out[:, :, self.offsets[i]: self.offsets[i] + self.sizes[i]] = np.abs(record[k]) * gap[:, None, :]
        return out

    def _gaps(self, state: BoxBounds, record: dict[int, np.ndarray], sg: np.ndarray
              ) -> list[tuple[int, int, np.ndarray]]:
        """Per step ``i`` whose activation ``k`` the bound went through: ``(i, k, gap)``, ``gap`` ``(B, size)`` the
        intercept of each free unstable neuron's upper relaxation at 0, ``−(q − p)·l·u / (u − l)`` for slopes
        ``(p, q)`` (ReLU: ``−l·u / (u − l)``; 0 elsewhere)."""
        out = []
        for i in self.steps:
            k = self.after[i]
            if k in record:
                lo, hi = state.lo[i], state.hi[i]
                below, above = state.net.steps[k].slopes
                free = (lo < 0) & (hi > 0) & (sg[:, self.offsets[i]: self.offsets[i] + self.sizes[i]] == 0)
                out.append((i, k, np.where(free, -(above - below) * lo * hi / np.where(free, hi - lo, 1.0), 0.0)))
        return out


def child_branches(lo: np.ndarray, hi: np.ndarray, sg: np.ndarray, candidates: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two children per branch and candidate, in order (branch, candidate, side): an input candidate halves the box
    along that input, a neuron candidate fixes its sign (+1 for side 0, −1 for side 1); ``-1`` candidates repeat
    the parent (their children are never chosen)."""
    P, c = candidates.shape
    n = lo.shape[1]
    c_lo = np.repeat(lo, 2 * c, axis=0).reshape(P, c, 2, n)
    c_hi = np.repeat(hi, 2 * c, axis=0).reshape(P, c, 2, n)
    c_sg = np.repeat(sg, 2 * c, axis=0).reshape(P, c, 2, -1)
    p, j = np.nonzero((candidates >= 0) & (candidates < n))
    dim = candidates[p, j]
    mid = 0.5 * (lo[p, dim] + hi[p, dim])
    c_hi[p, j, 0, dim] = mid
    c_lo[p, j, 1, dim] = mid
    p, j = np.nonzero(candidates >= n)
    neuron = candidates[p, j] - n
    c_sg[p, j, 0, neuron] = 1
    c_sg[p, j, 1, neuron] = -1
    return c_lo.reshape(-1, n), c_hi.reshape(-1, n), c_sg.reshape(P * c * 2, -1)


def prove_signs(dense: DenseNetwork, slots: Slots, lower: np.ndarray, upper: np.ndarray, step: int,
                rows: np.ndarray, want: np.ndarray, root: np.ndarray,
                prior: tuple[list[np.ndarray | None], list[np.ndarray | None]] | None,
                until: Callable[[], bool], refute: Callable[[np.ndarray], np.ndarray], limit: int,
                steps: int = SEARCH_STEPS) -> tuple[np.ndarray, int]:
    """Per neuron ``rows[m]`` of Linear step ``step``: whether ``want[m]·z >= 0`` (``want`` ±1) is proved on the box
    ``[lower, upper]``, and how many branches were bounded.

    Branch and bound over the signs of the ReLUs before ``step``, starting from ``root`` (signs that hold on the
    whole box: proven stable neurons); a branch carries the rows it has left. Per batch of branches: their bounds
    (``analyse``, intersected with ``prior``, bounds that hold on the whole box), then per open row the plain bound
    and, where it fails, the optimised one (slopes and split multipliers); a row proved on a branch leaves it. The
    minimising corners of the rows left are handed to ``refute(points)``, which answers the rows (``(M,)`` bool)
    known to be wrong now (a witness): their search stops. Each row left on a branch picks the free unstable ReLU
    its own bound loses most on (BaBSR); the rows that pick the same one share that split's two children. A row
    with none to pick, or on more than ``limit`` branches, is given up. A row is proved when no branch has it left,
    none gave it up and it is not refuted; the search stops when ``until()``, its open rows unproved. Every bound is
    the engine's (the float network's rounding and the analysis margin included).
    """
    M, size = len(rows), dense.steps[step].size
    queue_sg, queue_open = root[None].astype(np.int8), np.ones((1, M), bool)
    dropped = np.zeros(M, bool)  # refuted, or given up
    seen = np.zeros(M, np.int64)  # branches each row was bounded on
    bounded = 0
    while True:
        queue_open &= ~dropped
        live = queue_open.any(axis=1)
        queue_sg, queue_open = queue_sg[live], queue_open[live]
        if not len(queue_sg) or until():
            break
        counts = queue_open.sum(axis=1)[::-1]  # the last branches first (depth first: the queue stays short)
        widest = np.maximum.accumulate(counts)
        take = int(np.clip(np.searchsorted(widest * np.arange(1, len(counts) + 1), SEARCH_PAIRS, side="right"),
                           1, SEARCH_BRANCHES))
        sg, op = queue_sg[-take:], queue_open[-take:]
        queue_sg, queue_open = queue_sg[:-take], queue_open[:-take]
        seen += op.sum(axis=0)
        dropped |= seen > limit
        op &= ~dropped
        signs = slots.split(sg)
        state = analyse(dense, np.repeat(lower[None], take, axis=0), np.repeat(upper[None], take, axis=0), signs,
                        last=step, prior=prior)
        bounded += take
        z_lo, z_hi = state.lo[step][:, rows], state.hi[step][:, rows]
        op = op & ~(np.where(want > 0, z_lo >= 0, z_hi <= 0) | state.empty[:, None])
        live = np.flatnonzero(op.any(axis=1))
        if not live.size:
            continue
        sub, op, sg = state.boxes(live), op[live], sg[live]
        signs = {i: v[live] for i, v in signs.items()}
        R = int(op.sum(axis=1).max())
        idx = np.argsort(~op, axis=1, kind="stable")[:, :R]  # per branch its open rows first, padded by others
        valid = np.take_along_axis(op, idx, axis=1)
        coef = np.zeros((len(live), R, size))
        b, r = np.nonzero(valid)
        coef[b, r, rows[idx[b, r]]] = want[idx[b, r]]
        record: dict[int, np.ndarray] = {}
        low, A = objective(sub, coef, np.zeros(R), record, start=step)
        hard = np.flatnonzero((valid & (low < 0)).any(axis=1))
        if hard.size and steps:
            better, better_A = optimized_objective(sub.boxes(hard), coef[hard], np.zeros(R),
                                                   {i: v[hard] for i, v in signs.items()}, steps, start=step)
            improved = better > low[hard]
            low[hard] = np.where(improved, better, low[hard])
            A[hard] = np.where(improved[:, :, None], better_A, A[hard])
        still = valid & (low < 0)
        b, r = np.nonzero(still)
        worst = np.argsort(low[b, r], kind="stable")[:SEARCH_WITNESSES]
        if worst.size:  # the corners minimising the open rows' linear lower bounds
            dropped |= refute(np.where(A[b[worst], r[worst]] > 0, lower, upper))
        still &= ~dropped[idx]
        scores = slots.row_losses(sub, record, sg)
        pick = np.argmax(scores, axis=2)  # (branches, rows): each row's split
        can = still & (np.take_along_axis(scores, pick[:, :, None], axis=2)[:, :, 0] > 0)
        dropped[idx[still & ~can]] = True
        b, r = np.nonzero(can)
        groups, first, which = np.unique(b * slots.total + pick[b, r], return_index=True, return_inverse=True)
        child_sg = np.repeat(sg[b[first]], 2, axis=0)
        child_sg[np.arange(2 * groups.size), np.repeat(pick[b, r][first], 2)] = np.tile(np.array([1, -1], np.int8),
                                                                                          groups.size)
        child_open = np.zeros((groups.size, M), bool)
        child_open[which, idx[b, r]] = True
        queue_sg = np.vstack([queue_sg, child_sg])
        queue_open = np.vstack([queue_open, np.repeat(child_open, 2, axis=0)])
    return ~(dropped | queue_open.any(axis=0)), bounded
