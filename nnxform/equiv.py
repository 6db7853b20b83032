"""Decide ε-equivalence of two networks on a box: ``max_x ‖f_A(x) − f_B(x)‖∞ < ε``, or a replayed counterexample.

The difference analysis (``discrepancy``) bounds ``f_A − f_B`` as a difference, not as two copies; its witness
search finds inputs where they differ most, each replayed in onnxruntime. ``equivalence`` runs that first, then
refines until one side wins: best-first halving of the input box (the leaf with the largest bound first, split
along the input that spreads it most) for networks with few inputs, the LP and then the MILP difference analysis
for networks with many. ``equivalent`` is proved when every leaf's bound is below ε; ``not equivalent`` comes with
an input whose replayed difference reaches ε; otherwise ``unknown`` with both figures.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import stopping
from .analyzers.boxes import FEW_INPUTS
from .analyzers.encoding import Deadline
from .discrepancy import Pair, halves
from .domain import Box
from .errors import NnxformError
from .ir import Model

#: Leaves bounded between two witness searches on the worst leaf.
LEAVES_PER_SEARCH = 64


@dataclass
class Equivalence:
    """The answer, the threshold, the best proved bound on ``δ_max`` and the largest replayed difference, its
    input and ``f_A − f_B`` there, and the search's figures."""

    answer: str  # "equivalent", "not equivalent" or "unknown"
    eps: float
    bound: float
    found: float
    witness: np.ndarray
    delta: np.ndarray
    leaves: int
    seconds: float
    analysis: str
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "eps": self.eps, "delta_max_bound": self.bound, "largest_found": self.found,
                "witness_input": self.witness.tolist(), "witness_delta": self.delta.tolist(), "leaves": self.leaves,
                "seconds": self.seconds, "analysis": self.analysis, "notes": self.notes}


def equivalence(a: Model, b: Model, box: Box, eps: float, timeout: float = 60.0) -> Equivalence:
    """Decide whether ``‖f_A − f_B‖∞ < eps`` everywhere on ``box`` within ``timeout`` seconds."""
    if not (np.isfinite(eps) and eps > 0):
        raise NnxformError(f"the equivalence threshold must be a positive number, got {eps!r}")
    started = time.monotonic()
    deadline = started + timeout

    def left() -> float:
        return deadline - time.monotonic()

    pair = Pair(a, b)
    if pair.outputs != int(np.prod(a.shapes()[a.output_name])) or pair.outputs != int(
            np.prod(b.shapes()[b.output_name])):
        raise NnxformError("the two networks' outputs differ in size; equivalence compares them element by element")
    with stopping.honoured():
        first = pair.analyse(box, "symbolic", total_time=max(left(), 1e-3))
        state = _State(eps, first.delta_max, first.found, first.witness_input, first.witness_delta)
        if state.open and first.analysis == "difference":
            if box.size <= FEW_INPUTS:
                _split(pair, box, state, left)
            else:
                _solve(pair, box, state, left)
    answer = ("not equivalent" if state.found >= eps else "equivalent" if state.bound < eps else "unknown")
    return Equivalence(answer, eps, state.bound, state.found, state.witness, state.delta, state.leaves,
                       time.monotonic() - started, first.analysis, list(pair.notes))


@dataclass
class _State:
    """What is proved (``bound``) and found (``found`` at ``witness``) so far."""

    eps: float
    bound: float
    found: float
    witness: np.ndarray
    delta: np.ndarray
    leaves: int = 1

    @property
    def open(self) -> bool:
        return self.found < self.eps <= self.bound

    def take(self, x: np.ndarray, delta: np.ndarray) -> None:
        value = float(np.abs(delta).max())
        if value > self.found:
            self.found, self.witness, self.delta = value, x, delta


def _split(pair: Pair, box: Box, state: _State, left: Callable[[], float]) -> None:
    """Best-first halving of the box until every leaf is below ε, a witness reaches it, or the time is up."""
    r, spread = pair.leaf(box, box)
    heap = [(-r.delta_max, 0, box, spread)]
    proved = 0.0  # the largest bound among the leaves below ε
    while heap and state.open and left() > 0:
        parts = halves(heap[0][2], heap[0][3])
        if parts is None:
            break  # the worst leaf cannot be split: its bound stands
        heapq.heappop(heap)
        for part in parts:
            r, spread = pair.leaf(part, box)
            state.leaves += 1
            if r.delta_max < state.eps:
                proved = max(proved, r.delta_max)
            else:
                heapq.heappush(heap, (-r.delta_max, state.leaves, part, spread))
        if heap and state.leaves % LEAVES_PER_SEARCH < 2:  # now and then, a witness search where the bound is worst
            state.take(*pair.witness(heap[0][2], deadline=Deadline(max(left(), 1e-3))))
        state.bound = max(proved, -heap[0][0] if heap else 0.0)


def _solve(pair: Pair, box: Box, state: _State, left: Callable[[], float]) -> None:
    """The LP, then the MILP difference analysis on the whole box, within the time left."""
    for method in ("lp", "milp"):
        if not state.open or left() <= 1.0:
            return
        r = pair.bound(box, method, time_limit=left(), total_time=left())
        state.bound = min(state.bound, r.delta_max)
        if r.points:  # the solver's solutions, replayed
            xs = box.float32_points(np.vstack(r.points)).astype(np.float64)
            ra, rb = pair.runners
            deltas = ra(xs).astype(np.float64) - rb(xs).astype(np.float64)
            best = int(np.argmax(np.abs(deltas).max(axis=1)))
            state.take(xs[best], deltas[best])
