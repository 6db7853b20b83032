"""How far apart two networks can be on an input box: sound bounds of ``f_A − f_B`` and a witness.

``discrepancy(a, b, box, method)`` bounds, for every output ``i``, ``min`` and ``max`` of
``f_A,i(x) − f_B,i(x)`` over the box, and ``δ_max = max ‖f_A − f_B‖∞``. Chains of any depth and
width, dense or convolutional, whose activations are two-piece piecewise linear (the table's ``slopes``:
ReLU, LeakyRelu; the same in both networks layer by layer) are analysed as a *difference*
(``analyzers.difference``): both
are paired in one form (``difference.pair_chains``: padded with exact identity layers, widened with
dead units to the same shape), a dense layer being channels of one position. Convolutions stay
operators: a channel-pruned copy is widened channel by channel (zero filters), so memory grows with
parameters × positions, never with inputs × outputs.

- ``interval``: ``Δ`` propagated as intervals (per-network bounds symbolic);
- ``symbolic``: ``Δ`` back-substituted to the input through NeuroDiff-style relaxations;
- ``lp``: the merged network's triangle LP with the difference analysis as extra rows
  (every unsettled hidden ``Δz`` tightened too) — never looser than ``symbolic``;
- ``milp``: the merged network's exact big-M MILP with the same rows as cuts; ``exact`` when every
  output's gap closed.

``merged-interval`` / ``merged-symbolic`` bound the merged network as one (each copy's relaxation
error adds up: kept for comparison). Networks that are not such chains (skip connections,
MaxPool, Sigmoid, a LeakyRelu layer against a ReLU one) fall back to the merged network for every
method, and the result says so.
Every method also searches a witness (the best of sampling and projected signed-gradient steps
on ``±(f_A,i − f_B,i)``, plus the MILP's solutions) and replays it in onnxruntime: the true
``δ_max`` lies in ``[found, delta_max]``. The bounds hold for the float networks as onnxruntime
runs them: every layer's rounding in either network is bounded as noise (``analyzers.rounding``).

``Pair(a, b)`` prepares a pair once for many boxes; ``Pair.bound`` gives the bounds alone (no
witness, no onnxruntime), and its ``splits`` refine interval/symbolic bounds by best-first input
bisection, which pays off for networks with few inputs (ACAS Xu).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from . import stopping
from .analyzers import Bounds, bounds, compile_model, interval, symbolic
from .stopping import Deadline, time_left
from .analyzers.milp import beyond_solver
from .analyzers.solvers import check_solver
from .analyzers.boxes import BoxBounds, DenseNetwork, analyse
from .analyzers.conv import MATRIX_FREE, zero_rows
from .analyzers.difference import (ChainBounds, ChainLayer, NotAligned, joint_network, layers_network, pair_chains,
                                   propagate, solve)
from .analyzers.network import CompiledNetwork, Pool
from .analyzers.result import INACTIVE, State
from .analyzers.rounding import cast_box
from .attack import ascend
from .domain import Box
from .errors import NnxformError
from .interpreter import in_passes, points_per_pass, points_within, run
from .gradient import gradient
from .ir import Model
from .runtime import OnnxRunner

DIFFERENCE_METHODS = ("interval", "symbolic", "lp", "milp")
MERGED_METHODS = ("merged-interval", "merged-symbolic")
METHODS = DIFFERENCE_METHODS + MERGED_METHODS

#: Witness search: uniform samples (plus corners and centre), starts per output and sign, gradient steps.
SAMPLES, STARTS, STEPS = 1000, 4, 20
#: The share of a whole-analysis time limit (``total_time``) the bound leaves to the witness search at least.
WITNESS_SHARE = 0.15


@dataclass
class Discrepancy:
    """Sound bounds of ``f_A − f_B`` over a box, and the worst input found (replayed in onnxruntime)."""

    method: str
    seconds: float
    lower: np.ndarray  # per output i: sound lower bound of min_x (f_A,i − f_B,i)
    upper: np.ndarray  # per output i: sound upper bound of max_x (f_A,i − f_B,i)
    delta_max: float  # sound upper bound of max_x ‖f_A(x) − f_B(x)‖∞
    exact: bool  # lower/upper are the exact min/max (milp that closed every gap)
    witness_input: np.ndarray  # flat input in the box with the largest |f_A − f_B|∞ found
    witness_delta: np.ndarray  # f_A − f_B at the witness, computed in onnxruntime
    found: float  # ‖witness_delta‖∞: a proven lower bound of the true δ_max
    analysis: str = "difference"  # "difference" or "merged" (the merged network analysed as one)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """``delta_max / found``: how far the bound can be from the truth (1 = tight); inf when nothing was found."""
        return self.delta_max / self.found if self.found > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        """The ``nnxform discrepancy --json`` document."""
        return {
            "method": self.method,
            "analysis": self.analysis,
            "seconds": self.seconds,
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "delta_max": self.delta_max,
            "exact": self.exact,
            "witness": {"input": self.witness_input.tolist(), "difference": self.witness_delta.tolist(),
                        "found": self.found},
            "found": self.found,
            "ratio": self.ratio if np.isfinite(self.ratio) else None,
            "notes": list(self.notes),
            **self.details,
        }


@dataclass
class DeltaBounds:
    """Sound bounds of ``f_A − f_B`` per output over one box (no witness): what ``Pair.bound`` gives."""

    lower: np.ndarray
    upper: np.ndarray
    exact: bool = False
    points: list[np.ndarray] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    input_coef: np.ndarray | None = None  # symbolic: the output rows' coefficients on the input (for splitting)

    @property
    def delta_max(self) -> float:
        return float(np.maximum(np.abs(self.lower), np.abs(self.upper)).max())


class Pair:
    """Two networks prepared once for discrepancy analyses over many boxes (pairing, compiled forms, runners)."""

    def __init__(self, a: Model, b: Model):
        if a.input_size != b.input_size:
            raise NnxformError(f"the inputs differ in size: the first network takes {a.input_size} values, the "
                               f"second {b.input_size}; a discrepancy needs the same number of input elements")
        self.a, self.b = a, b
        self._runners: tuple[OnnxRunner, OnnxRunner] | None = None
        nets = compile_model(a, keep_convs=True), compile_model(b, keep_convs=True)
        self._joint = joint_network(*nets)
        try:
            pair = pair_chains(*nets, a.shapes(), b.shapes())
        except NotAligned as exc:
            self.chains = False
            self.notes = [f"{exc}: every method analyses the merged network instead (each copy bounded separately, "
                          "expect loose bounds)"]
            self._delta_fn: _Delta = _ModelDelta(a, b)
            return
        self.chains = True
        self._dense: dict[bool, tuple[DenseNetwork, DenseNetwork]] = {}  # per ``real``
        self.notes, self.reshaped_a, self.layers = pair.notes, pair.reshaped_a, pair.layers
        self.net_a = layers_network(pair.a, a.dtype, probe=True)
        self.net_b = layers_network(pair.b, b.dtype, probe=True)
        self.dead_a, self.dead_b = _dead_units(pair.a), _dead_units(pair.b)
        self._delta_fn = _ChainDelta(pair.read_a, pair.read_b)

    @property
    def outputs(self) -> int:
        return self.joint.steps[self.joint.output].size

    @property
    def joint(self) -> CompiledNetwork:
        """The merged network as one CompiledNetwork (both copies' steps, then ``out_A − out_B``)."""
        return self._joint

    @property
    def runners(self) -> tuple[OnnxRunner, OnnxRunner]:
        if self._runners is None:
            self._runners = (OnnxRunner(self.a), OnnxRunner(self.b))
        return self._runners

    def analyse(self, box: Box, method: str = "symbolic", *, time_limit: float = 60.0,
                progress: Callable[[int, int], None] | None = None, splits: int = 0, witness_effort: int = 1,
                seed: int = 0, signs_a: list[np.ndarray] | None = None, total_time: float | None = None,
                solver: str = "highs") -> Discrepancy:
        """The discrepancy over ``box`` (see ``discrepancy``): ``bound`` and ``witness``.

        ``witness_effort`` multiplies the witness search (samples, starts and gradient steps). ``total_time`` bounds
        all of it: the bound takes up to ``1 − WITNESS_SHARE`` of it, the witness search what is left (at least its
        first samples), the bound in real arithmetic only if time is left.
        """
        t0 = time.perf_counter()
        deadline = None if total_time is None else Deadline(total_time)
        r = self.bound(box, method, time_limit=time_limit, progress=progress, splits=splits, signs_a=signs_a,
                       total_time=None if total_time is None else total_time * (1 - WITNESS_SHARE), solver=solver)
        if self.chains and method in DIFFERENCE_METHODS and not splits and not (deadline and deadline.passed()):
            real = self.bound(box, "interval" if method == "interval" else "symbolic", signs_a=signs_a, real=True)
            r.details["real_delta_max"] = min(real.delta_max, r.delta_max)
        t1 = time.perf_counter()
        x, delta = self.witness(box, r.points, effort=witness_effort, seed=seed, deadline=deadline)
        t2 = time.perf_counter()
        analysis = "difference" if self.chains and method in DIFFERENCE_METHODS else "merged"
        details = dict(r.details, bound_seconds=t1 - t0, witness_seconds=t2 - t1)
        return Discrepancy(method, t2 - t0, r.lower, r.upper, r.delta_max, r.exact, x, delta,
                           float(np.abs(delta).max()), analysis, list(self.notes), details)

    def bound(self, box: Box, method: str = "symbolic", *, time_limit: float = 60.0,
              progress: Callable[[int, int], None] | None = None, splits: int = 0,
              signs_a: list[np.ndarray] | None = None, real: bool = False, total_time: float | None = None,
              solver: str = "highs", below: float | None = None) -> DeltaBounds:
        """Sound bounds of ``f_A − f_B`` per output over ``box`` by ``method``, without a witness.

        ``splits``: refine an interval or symbolic analysis by that many bisections of the input box
        (worth it for few inputs, e.g. ACAS Xu's 5). ``time_limit``: seconds per LP/MILP solve.
        ``signs_a``: per ReLU layer of the first network, the neurons proven stably ACTIVE / INACTIVE on
        ``box`` by other means (``nnxform.stable``): the per-network bounds start from them, which makes
        the analysis tight where they are the bottleneck (certifying a compression). Only sound if they are.
        ``real``: bounds of the real-valued networks (no rounding), for telling the float part of a bound apart.
        ``total_time``: seconds for all LP/MILP solves together (past it, the rest keep the symbolic bounds).
        ``solver``: the MILP solver (``analyzers.solvers``). ``below``: the LP/MILP solves only the output bounds
        not already within ``±below`` (a threshold to decide, as ``equiv``'s ε: the time goes where it is open).
        """
        if signs_a is not None:
            self._check_signs(signs_a)
            if splits:
                raise NnxformError("proven signs hold on the whole box only: they cannot be combined with splits")
        if method not in METHODS:
            raise NnxformError(f"unknown discrepancy method '{method}'; choose one of {', '.join(METHODS)}")
        if time_limit <= 0:
            raise NnxformError("the time limit must be positive")
        if splits < 0 or (splits and method in ("lp", "milp")):
            raise NnxformError("input splitting takes a count >= 0 and refines interval and symbolic methods only")
        box.fit(self.a.input_size)
        if real and not (self.chains and method in DIFFERENCE_METHODS):
            raise NnxformError("real-valued bounds are given by the difference analysis of two ReLU chains only")
        if splits:
            return self._split(box, method, splits, time_limit, progress)
        check_solver(solver)
        if total_time is None:
            return self._bound(box, method, time_limit, progress, signs_a, real, None, solver, below)
        with stopping.honoured():  # SIGTERM ends it as its time limit
            return self._bound(box, method, time_limit, progress, signs_a, real, Deadline(total_time), solver,
                               below)

    def witness(self, box: Box, points: list[np.ndarray] | tuple = (), *, effort: int = 1, seed: int = 0,
                deadline: Deadline | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The input with the largest ``|f_A − f_B|∞`` in onnxruntime among ``search_witness``'s (stopped at
        ``deadline``) and ``points``, and ``f_A − f_B`` there."""
        candidates = search_witness(self._delta_fn, box, self.outputs, effort=effort, seed=seed, deadline=deadline)
        if len(points):
            candidates = np.vstack([candidates] + [p[None] for p in points])
        return self.replayed(box, candidates)

    def replayed(self, box: Box, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of the points ``xs`` (moved to the float32 points of ``box`` onnxruntime runs), the one with the largest
        ``|f_A − f_B|∞`` in onnxruntime, and ``f_A − f_B`` there."""
        xs = box.float32_points(xs).astype(np.float64)
        ra, rb = self.runners
        deltas = ra(xs).astype(np.float64) - rb(xs).astype(np.float64)
        best = int(np.argmax(np.abs(deltas).max(axis=1)))
        return xs[best], deltas[best]

    @property
    def batched(self) -> bool:
        """Whether ``bound_boxes`` can bound many boxes at once: a difference analysis of dense layers."""
        return self.chains and not any(isinstance(w, MATRIX_FREE) for L in self.layers for w in (L.wa, L.wb))

    def bound_boxes(self, lower: np.ndarray, upper: np.ndarray, real: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Symbolic bounds of ``f_A − f_B`` over each box ``[lower[b], upper[b]]`` at once (``batched`` pairs): lower
        and upper ``(B, outputs)``, and the rows ``[lower; −upper]``'s coefficients on the input ``(B, 2·outputs,
        inputs)``. Each network's hidden bounds come from the batched engine (``analyzers.boxes``). ``real``: of the
        real-valued networks (no rounding)."""
        return self.bound_inherited(lower, upper, None, real)[:3]

    def bound_inherited(self, lower: np.ndarray, upper: np.ndarray, prior: np.ndarray | None, real: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``bound_boxes``, each box starting from ``prior[b]``: what a larger box around it proved (every
        hidden layer's ``z_A``, ``z_B`` and ``Δz``, and the output's ``Δ``; the last value returned, for the
        boxes' own parts), intersected with its own bounds, so that a sub-box is never bounded looser than its
        parent and rows the prior settles are not back-substituted. Kept as ``(B, 2, n)`` float32 (lower, upper),
        rounded outwards."""
        if real not in self._dense:
            self._dense[real] = (DenseNetwork(self.net_a, "first network", real),
                                 DenseNetwork(self.net_b, "second network", real))
        lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
        hidden = [L.size for L in self.layers[:-1]]
        cuts = np.cumsum([0] + hidden * 3 + [self.layers[-1].size])
        parts = None
        if prior is not None:
            wide = prior.astype(np.float64)
            parts = [(wide[:, 0, s:e], wide[:, 1, s:e]) for s, e in zip(cuts[:-1], cuts[1:])]
        chains: list[BoxBounds] = []
        for side, (dense, dead) in enumerate(zip(self._dense[real], (self.dead_a, self.dead_b))):
            steps = dense.net.linear_steps
            signs = {steps[k]: np.broadcast_to(d, (len(lower), d.size)) for k, d in enumerate(dead) if d.any()}
            known = None
            if parts is not None:
                known = [None] * len(dense.steps), [None] * len(dense.steps)
                for k, (lo, hi) in enumerate(parts[side * len(hidden): (side + 1) * len(hidden)]):
                    if side:  # z_B = z_A − Δz: the first network's new bounds and the inherited Δz settle most rows
                        a_lo, a_hi = chains[0].lo[self.net_a.linear_steps[k]], chains[0].hi[self.net_a.linear_steps[k]]
                        d_lo, d_hi = parts[2 * len(hidden) + k]
                        lo, hi = np.maximum(lo, a_lo - d_hi), np.minimum(hi, a_hi - d_lo)
                    known[0][steps[k]], known[1][steps[k]] = lo, hi
            chains.append(analyse(dense, lower, upper, signs, prior=known))
        deltas = propagate(self.layers, *map(ChainBounds.of, chains), symbolic=True,
                           prior=None if parts is None else parts[2 * len(hidden):])
        out = deltas[-1]
        kept = [(d.lo_a, d.hi_a) for d in deltas[:-1]] + [(d.lo_b, d.hi_b) for d in deltas[:-1]]
        kept += [(d.lo_d, d.hi_d) for d in deltas]
        lo32, hi32 = cast_box(np.hstack([k[0] for k in kept]), np.hstack([k[1] for k in kept]), np.float32)
        return out.lo_d, out.hi_d, out.input_coef, np.stack([lo32, hi32], axis=1).astype(np.float32)

    def real_delta(self, xs: np.ndarray) -> np.ndarray:
        """``f_A − f_B`` of the real-valued networks at the points ``xs`` (float64 arithmetic; ReLU chains only)."""
        if not self.chains:
            raise NnxformError("the real-valued difference is evaluated for two ReLU chains only")
        return self._delta_fn.values(np.asarray(xs, np.float64))

    def _check_signs(self, signs_a: list[np.ndarray]) -> None:
        """Refuse proven signs that do not fit the first network's ReLU layers as the difference analysis sees them."""
        if not self.chains or self.reshaped_a:
            raise NnxformError("proven signs need the difference analysis of the first network as it is (a ReLU "
                               "chain at least as deep and wide as the second)")
        sizes = [L.size for L in self.layers[:-1]]
        if [np.size(s) for s in signs_a] != sizes:
            raise NnxformError(f"proven signs for ReLU layers of sizes {[np.size(s) for s in signs_a]} do not fit the "
                               f"first network's {sizes}")

    def _bound(self, box: Box, method: str, time_limit: float, progress: Callable[[int, int], None] | None,
               signs_a: list[np.ndarray] | None = None, real: bool = False, deadline: Deadline | None = None,
               solver: str = "highs", below: float | None = None) -> DeltaBounds:
        """The bounds of ``f_A − f_B`` over one box."""
        if self.chains and method in DIFFERENCE_METHODS:
            r = self._difference(box, method, time_limit, progress, signs_a, real, deadline, solver, below)
        else:
            total = None if deadline is None else max(deadline.left(), 0.0)
            b = self._merged(box, method.removeprefix("merged-"), time_limit, progress, total, solver)
            r = DeltaBounds(b.output_lower, b.output_upper, b.exact, details=dict(b.details))
        if deadline is not None and deadline.passed():
            r.exact = False
            r.details["time_limit_reached"] = True
        return r

    def _split(self, box: Box, method: str, splits: int, time_limit: float,
               progress: Callable[[int, int], None] | None) -> DeltaBounds:
        """Best-first bisection: ``splits`` times, halve the leaf with the largest ``δ_max`` bound (``leaf`` and
        ``halves``); the bounds are the min and max over the leaves."""
        first = self.leaf(box, box, method, time_limit)
        heap = [(-first[0].delta_max, 0, box, *first)]
        for n in range(splits):
            _, _, leaf, _, spread = heap[0]
            parts = halves(leaf, spread)
            if parts is None:
                break  # nothing left to split in the worst leaf
            heapq.heappop(heap)
            for k, part in enumerate(parts):
                r, spread = self.leaf(part, box, method, time_limit)
                heapq.heappush(heap, (-r.delta_max, 2 * n + 1 + k, part, r, spread))
            if progress:
                progress(n + 1, splits)
        lo = np.min([e[3].lower for e in heap], axis=0)
        hi = np.max([e[3].upper for e in heap], axis=0)
        return DeltaBounds(lo, hi, details={"splits": len(heap) - 1, "leaves": len(heap)})

    def leaf(self, leaf: Box, box: Box, method: str = "symbolic", time_limit: float = 60.0, real: bool = False
             ) -> tuple[DeltaBounds, np.ndarray]:
        """The bounds over ``leaf`` (a part of ``box``; ``real``: of the real-valued networks) and, per input, how
        much of its worst bound that input spreads: its coefficient in the symbolic bound times its width, else its
        width relative to ``box``."""
        r = self._bound(leaf, method, time_limit, None, real=real)
        worst = np.concatenate([-r.lower, r.upper])
        width = leaf.upper - leaf.lower
        spread = None if r.input_coef is None else np.abs(r.input_coef[np.argmax(worst)]) * width
        if spread is None or not spread.any():  # (a bound of rounding alone spreads on no input)
            return r, width / np.where(box.upper > box.lower, box.upper - box.lower, 1.0)
        return r, spread

    def _difference(self, box: Box, method: str, time_limit: float, progress: Callable[[int, int], None] | None,
                    signs_a: list[np.ndarray] | None, real: bool, deadline: Deadline | None,
                    solver: str = "highs", below: float | None = None) -> DeltaBounds:
        """The difference analysis of the aligned chains."""
        if signs_a is not None:
            signs_a = [np.where(dead == INACTIVE, INACTIVE, s) for dead, s in zip(self.dead_a, signs_a)]
        sa = _chain_bounds(self.net_a, box, signs_a or self.dead_a, real)
        sb = _chain_bounds(self.net_b, box, self.dead_b, real)
        deltas = propagate(self.layers, ChainBounds.of(sa), ChainBounds.of(sb), symbolic=method != "interval")
        out = deltas[-1]
        r = DeltaBounds(out.lo_d.copy(), out.hi_d.copy(), input_coef=out.input_coef)
        too_large = beyond_solver(sa, sb) if method == "milp" else ""
        if too_large:
            method = "lp"
            r.details["note"] = f"{too_large}: LP bounds instead, not exact"
        if method in ("lp", "milp"):
            lo, hi, closed, r.points = solve(self.layers, deltas, box, sb, method == "milp", time_limit, progress, deadline,
                                             solver, below)
            r.lower, r.upper = np.maximum(r.lower, lo), np.minimum(r.upper, hi)
            if method == "milp":
                r.exact = bool(closed.all())
                r.details["exact_outputs"] = {"lower": closed[0].tolist(), "upper": closed[1].tolist()}
        r.details["hidden_delta_max"] = [float(np.maximum(np.abs(d.lo_d), np.abs(d.hi_d)).max()) for d in deltas[:-1]]
        r.details["unsettled_relus"] = [int(d.unsettled.sum()) for d in deltas[:-1]]
        return r

    def _merged(self, box: Box, method: str, time_limit: float, progress: Callable[[int, int], None] | None,
                total_time: float | None = None, solver: str = "highs") -> Bounds:
        """Bounds of the merged network's output (both original networks compiled as they are, with their rounding)."""
        net = self.joint
        if method == "milp" and not any(isinstance(s, Pool) for s in net.steps):
            seed = bounds(net, box, "symbolic")
            if seed.stable_counts()["unstable"] == 0:  # a linear program: HiGHS's MILP path would return 0
                b = bounds(net, box, "lp", seed=seed, time_limit=time_limit, progress=progress, total_time=total_time)
                b.exact = not b.details.get("time_limit_reached", False)
                return b
        return bounds(net, box, method, time_limit=time_limit, progress=progress, total_time=total_time, solver=solver)


def halves(leaf: Box, spread: np.ndarray) -> tuple[Box, Box] | None:
    """``leaf`` cut in two at the middle of the input that spreads its bound most (None when none does)."""
    j = int(np.argmax(spread))
    if spread[j] <= 0:
        return None
    mid = 0.5 * (leaf.lower[j] + leaf.upper[j])
    upper, lower = leaf.upper.copy(), leaf.lower.copy()
    upper[j], lower[j] = mid, mid
    return Box(leaf.lower, upper), Box(lower, leaf.upper)


def _dead_units(layers: list[ChainLayer]) -> list[np.ndarray]:
    """Per hidden layer of a chain, INACTIVE where a unit has zero weights and bias, else 0: its pre-activation is
    exactly 0 (in float32 too), so its activation is too, whichever the slopes (``f(0) = 0``; a LeakyRelu unit
    that is merely below 0 is ``α·z``, not 0, and is not marked here).

    The analyzers' slack would otherwise make such a unit (alignment pads with them) unstable.
    """
    return [np.where(zero_rows(layer.W) & (layer.b == 0), INACTIVE, 0) for layer in layers[:-1]]


def _chain_bounds(net: CompiledNetwork, box: Box, signs: list[np.ndarray], real: bool = False) -> State:
    """Symbolic bounds of a chain's ``layers_network(..., probe=True)``, starting from the signs its ReLU layers are known to have."""
    state = State.start(net, box, real)
    for k, s in enumerate(signs):
        state.assume_signs(net.linear_steps[k], s)
    return symbolic.symbolic(interval.interval(state))


def discrepancy(a: Model, b: Model, box: Box, method: str = "symbolic", *, time_limit: float = 60.0,
                progress: Callable[[int, int], None] | None = None, total_time: float | None = None,
                splits: int = 0, solver: str = "highs", started: float | None = None) -> Discrepancy:
    """Sound bounds of ``f_A − f_B`` per output over ``box``, ``δ_max``, and a witness replayed in onnxruntime
    (``time_limit`` per solve, ``total_time`` for all of it, pairing the networks included, counted from
    ``started`` (``time.monotonic()``; default: now); the rest as ``Pair.analyse``)."""
    started = time.monotonic() if started is None else started
    pair = Pair(a, b)
    left = None if total_time is None else time_left(total_time, started)
    return pair.analyse(box, method, time_limit=time_limit, progress=progress, total_time=left, splits=splits,
                        solver=solver)


# --- witness search ------------------------------------------------------------------------------


class _Delta(Protocol):
    """``f_A − f_B`` in float64 with input gradients, for the witness search; ``step`` points per evaluation pass."""

    step: int

    def values(self, xs: np.ndarray) -> np.ndarray: ...

    def value_grad(self, xs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def _sampled(fn: _Delta, xs: np.ndarray, deadline: Deadline | None) -> np.ndarray:
    """``fn.values`` on the points ``xs``, a tenth at a time (or a pass of the evaluator, if fewer) when a
    ``deadline`` is set, stopping once it has passed (the first part always): the values of the points reached."""
    if deadline is None:
        return fn.values(xs)
    step = max(min(len(xs) // 10, fn.step), 1)
    parts = []
    for i in range(0, len(xs), step):
        parts.append(fn.values(xs[i:i + step]))
        if deadline.passed():
            break
    return np.concatenate(parts)


class _ChainDelta:
    """Two chains as read (``ChainLayer``s, dense or convolutional, each network's own widths, each layer with its
    piecewise-linear activation): forward and reverse passes, a few products per layer."""

    def __init__(self, a: list[ChainLayer], b: list[ChainLayer]):
        self.chains = a, b
        # per point: its input, and each unit's pre-activation and activation output in both chains
        self.step = points_within(a[0].W.shape[1] + 2 * sum(layer.b.size for layer in a + b), SAMPLES)

    def _pre_activations(self, xs: np.ndarray, side: int) -> list[np.ndarray]:
        """Every layer's pre-activations of chain A (``side`` 0) or B (1) at the points ``xs``."""
        zs, a = [], xs
        for layer in self.chains[side]:
            zs.append(a @ layer.W.T + layer.b)
            a = layer.kind.function(zs[-1])
        return zs

    def values(self, xs: np.ndarray) -> np.ndarray:
        return in_passes(lambda c: self._pre_activations(c, 0)[-1] - self._pre_activations(c, 1)[-1], xs, self.step)

    def value_grad(self, xs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.broadcast_to(weights, (len(xs), np.shape(weights)[-1]))
        parts = [self._value_grad(xs[i:i + self.step], w[i:i + self.step]) for i in range(0, len(xs), self.step)]
        return np.concatenate([v for v, _ in parts]), np.concatenate([g for _, g in parts])

    def _value_grad(self, xs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``f_A − f_B`` at ``xs`` and the input gradient of ``weights · (f_A − f_B)`` (reverse mode, per point)."""
        value, grad = 0.0, 0.0
        for side, sign in ((0, 1.0), (1, -1.0)):
            zs = self._pre_activations(xs, side)
            g = weights
            for k in range(len(zs) - 1, -1, -1):
                g = g @ self.chains[side][k].W
                if k:  # the activation's slope: q above 0, p below (a LeakyRelu unit below 0 still passes α)
                    kind = self.chains[side][k - 1].kind
                    g = g * kind.derivative(zs[k - 1], kind.function(zs[k - 1]))
            value, grad = value + sign * zs[-1], grad + sign * g
        return value, grad


class _ModelDelta:
    """Any two models the evaluator runs: numpy forward and reverse mode (``gradient``)."""

    def __init__(self, a: Model, b: Model):
        self.a, self.b = a, b
        self.step = min(points_per_pass(a, SAMPLES), points_per_pass(b, SAMPLES))  # a reverse pass keeps twice

    def values(self, xs: np.ndarray) -> np.ndarray:
        return in_passes(lambda c: run(self.a, c).reshape(len(c), -1) - run(self.b, c).reshape(len(c), -1), xs,
                         self.step)

    def value_grad(self, xs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.broadcast_to(weights, (len(xs), np.shape(weights)[-1]))
        step = max(self.step // 2, 1)
        parts = [self._value_grad(xs[i:i + step], w[i:i + step]) for i in range(0, len(xs), step)]
        return np.concatenate([v for v, _ in parts]), np.concatenate([g for _, g in parts])

    def _value_grad(self, xs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        va, ga = gradient(self.a, xs, weights)
        vb, gb = gradient(self.b, xs, weights)
        return va - vb, ga - gb


def search_witness(fn: _Delta, box: Box, outputs: int, *, effort: int = 1, seed: int = 0,
                   deadline: Deadline | None = None) -> np.ndarray:
    """Candidate inputs with a large ``|f_A,i − f_B,i|``: for each output and sign the best samples, then
    projected signed-gradient ascent from them; returns the best point of each search and the best sample.
    Past ``deadline`` no more samples are drawn (beyond a first batch) and no more steps taken."""
    rng = np.random.default_rng(seed)
    xs = box.points(SAMPLES * effort, rng)
    d = _sampled(fn, xs, deadline)
    xs = xs[:len(d)]
    starts = min(STARTS * effort, len(xs))
    idx = np.concatenate([np.argsort(-s * d[:, i], kind="stable")[:starts]
                          for i in range(outputs) for s in (1.0, -1.0)])
    w = np.repeat(np.concatenate([s * np.eye(outputs)[i][None] for i in range(outputs) for s in (1.0, -1.0)]),
                  starts, axis=0)

    def value_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v, g = fn.value_grad(x, w)
        return (w * v).sum(axis=1), g

    width, steps = box.upper - box.lower, STEPS * effort
    a = ascend(value_grad, xs[idx], box.lower, box.upper, lambda k: 0.25 * 0.85 ** (k * 20 / steps) * width, steps,
               value=lambda x: (w * fn.values(x)).sum(axis=1), stop=None if deadline is None else deadline.passed)
    per_target = a.best_value.reshape(-1, starts).argmax(axis=1) + np.arange(2 * outputs) * starts
    top = int(np.argmax(np.abs(d).max(axis=1)))
    return np.vstack([a.best_x[per_target], xs[top][None]])
