"""Decide ε-equivalence of two networks on a box: ``max_x ‖f_A(x) − f_B(x)‖∞ < ε``, or a replayed counterexample.

The difference analysis (``discrepancy``) bounds ``f_A − f_B`` as a difference, not as two copies; its witness
search finds inputs where they differ most, each replayed in onnxruntime. ``equivalence`` runs that first, then
refines until one side wins: for networks with few inputs, best-first halving of the input box (many leaves bounded
at once by ``Pair.bound_inherited``, each starting from the hidden bounds its parent proved, each halved along the
input that spreads its worst bound most, the corners its linear bounds point to replayed as counterexamples); for
networks with many, the LP and then the MILP difference analysis. ``equivalent`` is proved when every leaf's bound
is below ε; ``not equivalent`` comes with an input whose replayed difference reaches ε; otherwise ``unknown`` with
both figures.

By default the networks are the float32 ones onnxruntime runs, so both networks' rounding is bounded too and can
keep a tight ε open (a note says so when the real-valued networks are within ε); ``real`` decides the real-valued
networks instead, as NeuroDiff and the VNN-COMP verifiers read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import stopping
from .analyzers.boxes import FEW_INPUTS, DenseNetwork, analyse, objective
from .analyzers.network import compile_model
from .stopping import Deadline
from .discrepancy import Pair
from .domain import Box
from .errors import NnxformError
from .ir import Model, Node
from .merge import side_by_side
from .runtime import OnnxRunner
from .verify import verify
from .vnnlib import Case, Region

#: Leaves halved per round of the search (their halves are bounded together).
BATCH = 128
#: Share of the search's time the witness search on the worst leaf may take.
WITNESS_SHARE = 0.2

#: ``progress(seconds, proved bound, largest difference found, sub-boxes)``, after every round of the search.
Progress = Callable[[float, float, float, int], None]


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
    real: bool = False  # decided for the real-valued networks (--real), not the float32 ones

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "eps": self.eps, "delta_max_bound": self.bound, "largest_found": self.found,
                "witness_input": self.witness.tolist(), "witness_delta": self.delta.tolist(), "leaves": self.leaves,
                "seconds": self.seconds, "analysis": self.analysis, "notes": self.notes,
                "semantics": "real" if self.real else "float32"}


def equivalence(a: Model, b: Model, box: Box, eps: float, timeout: float = 60.0, real: bool = False,
                progress: Progress | None = None) -> Equivalence:
    """Decide whether ``‖f_A − f_B‖∞ < eps`` everywhere on ``box`` within ``timeout`` seconds: for the float32
    networks as onnxruntime runs them, or (``real``) for the real-valued networks, as NeuroDiff and the VNN-COMP
    verifiers read them (then a counterexample must reach ``eps`` in float64 arithmetic and in onnxruntime).
    ``progress`` hears of the search after every round."""
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
    if real and not pair.chains:
        raise NnxformError("--real needs the difference analysis, which these networks do not fit (see the note of "
                           "nnxform discrepancy); drop --real to decide the float32 networks")
    notes = list(pair.notes)
    with stopping.honoured():
        first = pair.analyse(box, "symbolic", total_time=max(left(), 1e-3))
        state = _State(eps, first.delta_max, 0.0, first.witness_input, first.witness_delta,
                       pair.real_delta if real else None, progress, started)
        state.take(first.witness_input, first.witness_delta)
        floor = first.details.get("real_delta_max")  # the real-valued networks' bound, when it had the time
        if real:
            state.bound = floor if floor is not None else pair.bound(box, "symbolic", real=True).delta_max
        if state.open and first.analysis == "difference":
            if box.size <= FEW_INPUTS:
                _split(pair, box, state, left, real)
            else:
                _solve(pair, box, state, left, real)
        state.report()
    answer = ("not equivalent" if state.found >= eps else "equivalent" if state.bound < eps else "unknown")
    if answer == "unknown" and not real and floor is not None and floor < eps:
        notes.append(f"the real-valued networks are within {floor:.3g} of each other on the box, below E; what stays "
                     "open is the float32 rounding (bounded for both networks), which --real leaves out")
    return Equivalence(answer, eps, state.bound, state.found, state.witness, state.delta, state.leaves,
                       time.monotonic() - started, first.analysis, notes, real)


@dataclass
class TopOne:
    """The answer to "do both networks pick the same class everywhere on the box?", a counterexample's input and
    classes when not, and the search's figures (``verify``'s)."""

    answer: str  # "equivalent", "not equivalent" or "unknown"
    witness: np.ndarray | None
    classes: tuple[int, int] | None
    seconds: float
    branches: int
    proved: float
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "criterion": "top-1",
                "witness_input": None if self.witness is None else self.witness.tolist(),
                "witness_classes": None if self.classes is None else list(self.classes), "seconds": self.seconds,
                "branches": self.branches, "proved_share": self.proved, "notes": self.notes}


def top1_equivalence(a: Model, b: Model, box: Box, timeout: float = 60.0) -> TopOne:
    """Decide whether ``argmax f_A(x) = argmax f_B(x)`` for every ``x`` of ``box`` (onnxruntime's float32 networks,
    ties to the lowest index as ``numpy.argmax``) within ``timeout`` seconds.

    Both graphs, as they are, run side by side on one input with their outputs concatenated (``merge.side_by_side``),
    and ``verify`` decides the property whose counterexamples are the points where A picks class ``c`` and B class
    ``k ≠ c``: one region per ``(c, k)``, ``A_j ≤ A_c`` for every ``j`` and ``B_c ≤ B_k`` (ties included, so a proof
    covers them). A counterexample is replayed on each network on its own.
    """
    started = time.monotonic()
    if a.input_size != b.input_size:
        raise NnxformError(f"the inputs differ in size: the first network takes {a.input_size} values, the second "
                           f"{b.input_size}")
    both, y_a, y_b = side_by_side(a, b)
    m = int(np.prod(a.shapes()[a.output_name]))
    flat = both.add_constant("top1/flat", np.array([1, m], np.int64))
    both.nodes += [Node("Reshape", "top1/flat_a", [y_a, flat], ["top1/a"]),
                   Node("Reshape", "top1/flat_b", [y_b, flat], ["top1/b"]),
                   Node("Concat", "top1/outputs", ["top1/a", "top1/b"], [both.output_name], {"axis": 1})]
    # which class can beat which on the box: A_j − A_c and B_c − B_k bounded once (a region with a row positive
    # everywhere is empty), so the search gets only the pairs (c, k) both networks' bounds leave possible
    eye = np.eye(m)
    beats = (eye[:, None, :] - eye[None, :, :]).reshape(m * m, m)  # row i·m + j: y_i − y_j
    rows = np.hstack([np.vstack([beats, np.zeros_like(beats)]), np.vstack([np.zeros_like(beats), beats])])
    state = analyse(DenseNetwork(compile_model(both), "equiv --top1"), box.lower[None], box.upper[None])
    low = objective(state, rows, np.zeros(len(rows)))[0][0]
    a_over, b_over = low[: m * m].reshape(m, m) > 0, low[m * m:].reshape(m, m) > 0  # [i, j]: y_i > y_j everywhere
    regions = []
    for c, k in zip(*np.nonzero(~eye.astype(bool))):
        if a_over[:, c].any() or b_over[c, k]:
            continue  # A never picks c on the box, or B's c always beats its k
        coef = np.zeros((m, 2 * m))
        coef[: m - 1, :m] = beats[c * m: (c + 1) * m][np.arange(m) != c] * -1.0  # A_j − A_c <= 0
        coef[m - 1, m + c], coef[m - 1, m + k] = 1.0, -1.0  # B_c − B_k <= 0
        regions.append(Region(coef, np.zeros(m), np.zeros(m, bool)))
    if not regions:
        return TopOne("equivalent", None, None, time.monotonic() - started, 1, 1.0, [])
    v = verify(both, [Case(box, regions)], max(timeout - (time.monotonic() - started), 1e-3))
    notes = [f"{len(regions)} of {m * (m - 1)} class pairs left open by the bounds of both networks"]
    notes += [v.note] if v.note else []
    answer, classes = {"unsat": "equivalent"}.get(v.answer, "unknown"), None
    if v.answer == "sat":
        x = v.counterexample[None]
        classes = int(np.argmax(OnnxRunner(a)(x))), int(np.argmax(OnnxRunner(b)(x)))
        if classes[0] != classes[1]:
            answer = "not equivalent"
        else:
            notes.append("the counterexample found lies on a tie of two classes, where both networks pick the same")
    return TopOne(answer, v.counterexample, classes, time.monotonic() - started, v.branches, v.proved, notes)


@dataclass
class _State:
    """What is proved (``bound``) and found (``found`` at ``witness``) so far; ``real_delta``: the real-valued
    difference, which a counterexample must also reach (``--real``)."""

    eps: float
    bound: float
    found: float
    witness: np.ndarray
    delta: np.ndarray
    real_delta: Callable[[np.ndarray], np.ndarray] | None = None
    progress: Progress | None = None
    started: float = 0.0
    leaves: int = 1

    @property
    def open(self) -> bool:
        return self.found < self.eps <= self.bound

    def report(self) -> None:
        if self.progress is not None:
            self.progress(time.monotonic() - self.started, self.bound, self.found, self.leaves)

    def take(self, x: np.ndarray, delta: np.ndarray) -> None:
        """Keep ``x`` (``f_A − f_B`` there in onnxruntime: ``delta``) if its difference is the largest so far."""
        value = float(np.abs(delta).max())
        if self.real_delta is not None and value > self.found:
            value = min(value, float(np.abs(self.real_delta(x[None])).max()))
        if value > self.found:
            self.found, self.witness, self.delta = value, x, delta


def _split(pair: Pair, box: Box, state: _State, left: Callable[[], float], real: bool) -> None:
    """Best-first halving of the box, ``BATCH`` worst leaves per round bounded together, until every leaf is below
    ε, a counterexample reaches it, or the time is up. A leaf is halved along the input that spreads its worst
    bound most, and its halves inherit its bounds (batched pairs: ``Pair.bound_inherited``); each sub-box's corner
    that minimises its worst linear bound is replayed as a candidate counterexample, and now and then the witness
    search runs on the worst leaf."""
    lo, hi = box.lower[None].astype(np.float64), box.upper[None].astype(np.float64)
    worst, spread, _, kept = _bounded(pair, lo, hi, box, real, None)
    proved, searched = 0.0, 0.0  # the largest bound among the leaves below ε; seconds of witness search
    started = time.monotonic()
    while worst.size and state.open and left() > 0:
        take = np.argsort(-worst, kind="stable")[:BATCH]
        j = np.argmax(spread[take], axis=1)
        splittable = spread[take, j] > 0
        if not splittable.all():
            break  # one of the worst leaves cannot be split: its bound stands
        mid = 0.5 * (lo[take, j] + hi[take, j])
        left_hi, right_lo = hi[take].copy(), lo[take].copy()
        rows = np.arange(take.size)
        left_hi[rows, j], right_lo[rows, j] = mid, mid
        c_lo, c_hi = np.vstack([lo[take], right_lo]), np.vstack([left_hi, hi[take]])
        c_worst, c_spread, c_corners, c_kept = _bounded(pair, c_lo, c_hi, box, real,
                                                        None if kept is None else np.vstack([kept[take]] * 2))
        state.leaves += c_lo.shape[0]
        state.take(*pair.replayed(box, c_corners))
        done = c_worst < state.eps
        proved = max(proved, float(c_worst[done].max(initial=0.0)))
        keep = np.ones(worst.size, bool)
        keep[take] = False
        lo, hi = np.vstack([lo[keep], c_lo[~done]]), np.vstack([hi[keep], c_hi[~done]])
        worst, spread = np.concatenate([worst[keep], c_worst[~done]]), np.vstack([spread[keep], c_spread[~done]])
        if kept is not None:
            kept = np.concatenate([kept[keep], c_kept[~done]])
        state.bound = max(proved, float(worst.max(initial=0.0)))
        state.report()
        if worst.size and state.open and searched < WITNESS_SHARE * (time.monotonic() - started):
            t = time.monotonic()
            w = int(np.argmax(worst))
            state.take(*pair.witness(Box(lo[w], hi[w]), deadline=Deadline(max(min(left(), 1.0), 1e-3))))
            searched += time.monotonic() - t


def _bounded(pair: Pair, lo: np.ndarray, hi: np.ndarray, box: Box, real: bool, prior: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per sub-box: the bound on ``‖f_A − f_B‖∞``, how much each input spreads its worst row (coefficient × width,
    else the width relative to ``box``), the corner minimising that row's linear bound (else the centre), and the
    bounds its parts inherit (batched pairs; ``prior``: those it inherited, else None)."""
    kept = None
    if pair.batched:
        lower, upper, coef, kept = pair.bound_inherited(lo, hi, prior, real)
    else:
        results = [pair.leaf(Box(a, b), box, real=real)[0] for a, b in zip(lo, hi)]
        lower, upper = np.array([r.lower for r in results]), np.array([r.upper for r in results])
        coef = np.array([r.input_coef for r in results]) if all(r.input_coef is not None for r in results) else None
    rows = np.concatenate([-lower, upper], axis=1)
    width = hi - lo
    relative = width / np.where(box.upper > box.lower, box.upper - box.lower, 1.0)
    if coef is None:
        return rows.max(axis=1), relative, 0.5 * (lo + hi), kept
    c = coef[np.arange(len(lo)), np.argmax(rows, axis=1)]  # the worst row's coefficients (a lower bound's)
    spread = np.abs(c) * width
    spread = np.where(spread.any(axis=1, keepdims=True), spread, relative)  # (a bound of rounding alone)
    return rows.max(axis=1), spread, np.where(c > 0, lo, hi), kept


def _solve(pair: Pair, box: Box, state: _State, left: Callable[[], float], real: bool) -> None:
    """The LP, then the MILP difference analysis on the whole box, within the time left, each solving only the output
    bounds not yet below ε."""
    for method in ("lp", "milp"):
        if not state.open or left() <= 1.0:
            return
        r = pair.bound(box, method, time_limit=left(), total_time=left(), real=real, below=state.eps)
        state.bound = min(state.bound, r.delta_max)
        state.report()
        if r.points:  # the solver's solutions, replayed
            state.take(*pair.replayed(box, np.vstack(r.points)))
