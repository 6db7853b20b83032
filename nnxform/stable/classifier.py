"""The classification itself: ``classify`` and ``reprove`` run the stages cheapest first (sampling, gradient,
interval, symbolic, alpha, search, milp) on a ``_Classifier``; see the package docstring for what each proves.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np

from ..attack import ascend
from ..analyzers import bounds as analyze
from ..analyzers.boxes import FEW_INPUTS, DenseNetwork, analyse
from ..analyzers.branching import Slots, prove_signs
from ..analyzers.conv import MATRIX_FREE, zero_rows
from ..analyzers.encoding import Encoder
from ..analyzers.network import Activation, Linear, CompiledNetwork, compile_model
from ..analyzers.result import ACTIVE, INACTIVE, UNSTABLE, Bounds, State
from ..analyzers.milp import beyond_solver
from ..analyzers.rounding import Rounding, gamma
from ..analyzers.solvers import check_solver
from ..analyzers.symbolic import alpha, alpha_step
from .. import stopping
from ..domain import Box
from ..errors import NnxformError
from ..interpreter import points_per_pass, run
from ..gradient import gradient
from ..ir import Model
from ..runtime import OnnxRunner
from .rescaling import RESOLVED, _margin, _needs_rescaling, _reach, _rescaled, _unresolved
from .results import UNDECIDED, LayerStability, Stability, Stage, Witnesses

#: A sampled pre-activation counts as a sign only beyond this (float64) distance from 0, or beyond this share of
#: the neuron's spread of values when that is smaller (a network whose values are all tiny), and only if onnxruntime
#: shows the same sign at the same point (``confirm_unstable``).
WITNESS_MARGIN, WITNESS_SHARE = 1e-7, 1e-3
#: The share of the time left that sampling may spend: the bounds, which prove stability, get the rest.
SAMPLING_SHARE = 0.25
#: Points per forward pass at most (fewer where the network's tensors are large: ``interpreter.points_per_pass``).
_CHUNK = 1024
#: Signed-gradient search: starts per candidate, steps per round, rounds at most.
GRADIENT_STARTS, GRADIENT_STEPS, GRADIENT_ROUNDS = 4, 10, 3
#: Shortest time a MILP solve is given before a candidate is put back for the retry pass.
MIN_SOLVE_SECONDS = 1.0
#: HiGHS options for the feasibility solves: the sub-MIP heuristics only look for solutions, and
#: most candidates are stable (infeasible), so they cost up to 10× the proof itself.
_MIP_OPTIONS = {"mip_heuristic_effort": 0.0, "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                "mip_heuristic_run_root_reduced_cost": False, "mip_heuristic_run_feasibility_jump": False,
                "mip_max_improving_sols": 1, "presolve": "off"}
#: Said when the time limit left neurons undecided.
_TIME_BOUND_NOTE = ("the time limit bound, so which neurons are settled can differ between runs; a node limit per MILP "
                    "solve (with a time limit that does not bind) gives the same result every run")
#: Search stage: branches a neuron may take in each pass over the layers before it is given up (for that pass).
SEARCH_LIMITS = (16, 128, 1024)
#: The share of the time left that the search stage may take: the milp stage gets the rest.
SEARCH_SHARE = 0.7

#: ``progress(stage, done, total)``: layers done by the alpha stage, candidates settled by the search stage and
#: decided by the milp stage.
Progress = Callable[[str, int, int], None]
#: One candidate of the milp stage: Linear step, ReLU layer, neuron, row in the solver's network, whether to prove
#: it inactive (else active), and the solver's tolerance slack of that row (``_Classifier._settle``).
Task = tuple[int, int, int, int, bool, float]

def classify(model: Model, box: Box, *, time_limit: float = 300.0, samples: int = 4096, seed: int = 0,
             progress: Progress | None = None, node_limit: int | None = None, solver: str = "highs") -> Stability:
    """Classify every ReLU of ``model`` on ``box`` (see the module docstring).

    ``time_limit``: seconds for the whole classification; the first stage always runs, later
    ones stop when it is spent and leave their neurons undecided (which then depends on the
    machine's speed: the result says so). ``node_limit``: branch-and-bound nodes per MILP solve
    instead of a share of the time, a limit of work that gives the same result on every run as
    long as ``time_limit`` does not bind (HiGHS only). ``solver``: the MILP stage's solver
    (``analyzers.solvers``). ``progress(stage, done, total)`` is called as the alpha stage works
    through the layers and the milp stage through its candidates.
    """
    if samples < 1:
        raise NnxformError("the number of samples must be >= 1")
    _check_limits(time_limit, node_limit, solver)
    with stopping.honoured():  # SIGTERM ends it as its time limit
        return _Classifier(model, box, time_limit, samples, seed, progress, node_limit, solver).run()


def reprove(model: Model, box: Box, claims: Stability, *, time_limit: float = 300.0, progress: Progress | None = None,
            node_limit: int | None = None, solver: str = "highs") -> Stability:
    """The stable claims of ``claims`` (a classification read from a file) proved again on ``model`` and ``box``.

    Each claimed active or inactive neuron is proved by the classifier's bound stages (interval, symbolic, alpha:
    the same bounds and float margins as ``classify``), those they leave by its search and milp stages aimed at the
    claimed sign, within ``time_limit`` (``node_limit``, ``solver`` as ``classify``); sampling, which only proves
    instability, is skipped. A claim proved keeps its status; any other neuron ends unstable, kept by compress,
    which is always exact (the file's undecided ones stay undecided). ``reproof`` counts the claims and how many
    were proved again; the result is ``proven``.
    """
    _check_limits(time_limit, node_limit, solver)
    classifier = _Classifier(model, box, time_limit, 1, 0, progress, node_limit, solver)
    nodes = [classifier.net.steps[k].node for k in classifier.relus]
    sizes = [st.size for st in classifier.status]
    if [layer.node for layer in claims.layers] != nodes or [layer.size for layer in claims.layers] != sizes:
        raise NnxformError("the stability file's ReLU layers are not this model's; run 'nnxform stable' on it")
    with stopping.honoured():
        return classifier.recheck([layer.status for layer in claims.layers])


def _check_limits(time_limit: float, node_limit: int | None, solver: str) -> None:
    """Refuse a negative time limit, a node limit below 1 or for a solver other than HiGHS, an unknown solver."""
    if time_limit < 0:
        raise NnxformError("the time limit must be >= 0")
    if node_limit is not None and node_limit < 1:
        raise NnxformError("the node limit must be >= 1")
    check_solver(solver)
    if node_limit is not None and solver != "highs":
        raise NnxformError("a node limit needs the highs solver (the others are not given one through pulp)")


class _Classifier:
    """The state of one classification: statuses, the best witnesses seen, the bounds so far."""

    def __init__(self, model: Model, box: Box, time_limit: float, samples: int, seed: int, progress: Progress | None,
                 node_limit: int | None = None, solver: str = "highs"):
        self.t0 = time.perf_counter()
        self.model, self.time_limit, self.samples, self.progress = model, time_limit, samples, progress
        self.node_limit, self.solver = node_limit, solver
        self.time_bound = False  # the time limit cut some work short: the result depends on the machine's speed
        self.box = box.fit(model.input_size)
        self.rng = np.random.default_rng(seed)
        self.stages: list[Stage] = []
        self.notes: list[str] = []
        self.net: CompiledNetwork = compile_model(model)
        self.relus = [k for k, s in enumerate(self.net.steps) if isinstance(s, Activation) and s.slopes is not None]
        self.sources = [self.net.steps[k].source for k in self.relus]
        self.tensors = [self.net.steps[i].tensor for i in self.sources]
        self.status = [np.full(self.net.steps[k].size, UNDECIDED, np.int8) for k in self.relus]
        self.pos_val, self.neg_val = [np.full(s.size, -np.inf) for s in self.status], [np.full(s.size, np.inf) for s in self.status]
        self.pos_at, self.neg_at = [np.full(s.size, -1) for s in self.status], [np.full(s.size, -1) for s in self.status]
        self.points = np.zeros((0, self.box.size))
        self.bounds: Bounds | None = None
        self.state: State | None = None
        self._probe: tuple[OnnxRunner | None, dict[str, tuple[int, int]]] | None = None
        self.claims: list[np.ndarray] | None = None  # with ``recheck``: the statuses to prove again
        self.chunk = points_per_pass(model, _CHUNK)
        self._stage("compile", self.undecided())

    # --- driver -----------------------------------------------------------------------------

    def run(self) -> Stability:
        self.sampling()
        stages = {"interval": self.interval, "symbolic": self.symbolic, "gradient": self.gradient_search,
                  "alpha": self.alpha, "search": self.search, "milp": self.milp}
        self._stages(stages)
        left = self.undecided()
        if left:
            self.notes.append(f"{left} neurons undecided: no evidence settled them; treat them as unstable")
        if left and self.time_bound:
            self.notes.append(_TIME_BOUND_NOTE)
        return self._result()

    def recheck(self, claims: list[np.ndarray]) -> Stability:
        """Prove the stable statuses ``claims`` again (see ``reprove``): the bound stages, then the search and milp
        stages on the claimed-stable neurons they leave, pushed towards the claimed sign; a claim not proved ends
        unstable."""
        self.claims = claims
        stable = [np.isin(c, (ACTIVE, INACTIVE)) for c in claims]
        self._stages({"interval": self.interval, "symbolic": self.symbolic, "alpha": self.alpha},
                     lambda: any((st[c] == UNDECIDED).any() for st, c in zip(self.status, stable)))
        for st, c in zip(self.status, stable):  # only claims need a proof: the others are kept
            st[(st == UNDECIDED) & ~c] = UNSTABLE
        if not self.time_bound:
            self._stages({"search": self.search, "milp": self.milp})
        proved = [c & (st == claim) for st, c, claim in zip(self.status, stable, claims)]
        for st, c, p, claim in zip(self.status, stable, proved, claims):
            st[:] = np.where(p, claim, np.where(c | (claim == UNSTABLE), UNSTABLE, UNDECIDED))
        total, done = sum(int(c.sum()) for c in stable), sum(int(p.sum()) for p in proved)
        self.notes.append(f"classification read from a 'nnxform stable --json' file: its {total} stable claims proved "
                          f"again in this run, {done} re-proved, {total - done} not re-proved (kept as unstable)")
        if total > done and self.time_bound:
            self.notes.append(_TIME_BOUND_NOTE)
        result = self._result()
        result.reproof = {"claims": total, "reproved": done, "not_reproved": total - done}
        return result

    def _stages(self, stages: dict[str, Callable[[], None]], open_work: Callable[[], bool] | None = None) -> None:
        """Run ``stages`` in order while ``open_work()`` (default: some neuron is undecided) and time is left."""
        for name, stage in stages.items():
            if not (open_work or self.undecided)():
                break
            if self.remaining() <= 0:
                why = "stopped (SIGTERM)" if stopping.requested() else f"time limit of {self.time_limit:g} s reached"
                self.notes.append(f"{why} before the {name} stage")
                self.time_bound = True
                break
            stage()

    def _result(self) -> Stability:
        """The statuses so far as a Stability."""
        if stopping.requested():
            self.time_bound = True
            self.notes.append("stopped early by SIGTERM: what was proved until then")
        shapes, nodes = self.model.shapes(), {n.name: n for n in self.model.nodes}
        layers = []
        for k, st in zip(self.relus, self.status):
            shape = shapes[nodes[self.net.steps[k].node].outputs[0]]
            layers.append(LayerStability(self.net.steps[k].node, st, int(shape[1]) if len(shape) > 2 else 0))
        return Stability(layers, self.stages, time.perf_counter() - self.t0, self.box, self.time_limit,
                         self._witnesses(), self.notes, self.time_bound, self.node_limit, self.model.source.get("sha256", ""))

    def remaining(self) -> float:
        """Seconds left of the time limit (none once a stop is requested: ``stopping``)."""
        return 0.0 if stopping.requested() else self.time_limit - (time.perf_counter() - self.t0)

    def undecided(self) -> int:
        return int(sum((st == UNDECIDED).sum() for st in self.status))

    def _stage(self, name: str, before: int, note: str = "") -> None:
        """Record a stage that started when ``before`` neurons were undecided (times are consecutive)."""
        end = time.perf_counter() - self.t0
        start = sum(s.seconds for s in self.stages)
        self.stages.append(Stage(name, end - start, before - self.undecided(), note))

    # --- instability: sampling and gradient steps -------------------------------------------

    def sampling(self) -> None:
        before = self.undecided()
        budget = time.perf_counter() + SAMPLING_SHARE * self.remaining()
        whole = True
        for xs in self._sample_chunks():
            self.observe(xs)
            if time.perf_counter() > budget:
                whole = False
                break
        self.confirm_unstable()
        self._stage("sampling", before, "" if whole else f"stopped at {SAMPLING_SHARE:.0%} of the time left")

    def _sample_chunks(self) -> Iterator[np.ndarray]:
        """The sampling stage's points, a forward pass at a time (never all at once: on a 200×200 input they alone
        take gigabytes): vertices drawn with a random density of upper bounds, uniform samples, corners, the centre."""
        box, n = self.box, self.chunk
        density = self.rng.uniform(0, 1, (max(1, self.samples // 4), 1))
        for start in range(0, density.size, n):
            part = density[start:start + n]
            yield np.where(self.rng.uniform(size=(part.size, box.size)) < part, box.upper, box.lower)
        for start in range(0, self.samples, n):
            yield box.sample(min(n, self.samples - start), self.rng)
        yield np.vstack([box.corners(min(self.samples, 256), self.rng), 0.5 * (box.lower + box.upper)[None]])

    def observe(self, xs: np.ndarray) -> None:
        """Evaluate every ReLU input at ``xs`` (float64, a forward pass at a time) and keep, per neuron, the most
        positive and most negative point."""
        for start in range(0, len(xs), self.chunk):
            chunk = xs[start:start + self.chunk]
            values = run(self.model, chunk.reshape((-1,) + tuple(self.model.input_shape)), keep=True)
            keep = np.full(len(chunk), -1)
            updates = []
            for L, t in enumerate(self.tensors):
                z = values[t].reshape(len(chunk), -1)
                cols = np.arange(z.shape[1])
                hi_row, lo_row = z.argmax(axis=0), z.argmin(axis=0)
                hi, lo = z[hi_row, cols], z[lo_row, cols]
                up, down = hi > self.pos_val[L], lo < self.neg_val[L]
                keep[hi_row[up]] = 0
                keep[lo_row[down]] = 0
                updates.append((L, up, hi, hi_row, down, lo, lo_row))
            rows = np.flatnonzero(keep == 0)
            keep[rows] = len(self.points) + np.arange(rows.size)
            self.points = np.vstack([self.points, chunk[rows]])
            for L, up, hi, hi_row, down, lo, lo_row in updates:
                self.pos_val[L][up], self.pos_at[L][up] = hi[up], keep[hi_row[up]]
                self.neg_val[L][down], self.neg_at[L][down] = lo[down], keep[lo_row[down]]
        self._compact()

    def _compact(self) -> None:
        """Drop stored points no neuron refers to any more."""
        used = np.unique(np.concatenate([a[a >= 0] for a in self.pos_at + self.neg_at] or [np.zeros(0, int)]))
        if used.size == len(self.points):
            return
        new = np.full(len(self.points), -1)
        new[used] = np.arange(used.size)
        self.points = self.points[used]
        for arrays in (self.pos_at, self.neg_at):
            for a in arrays:
                a[a >= 0] = new[a[a >= 0]]

    def confirm_unstable(self) -> None:
        """Mark UNSTABLE every undecided neuron whose two witnesses show both signs in float64 and in onnxruntime."""
        margins = [self._witness_margin(L) for L in range(len(self.status))]
        seen = [(st == UNDECIDED) & (p > m) & (n < -m) for st, p, n, m in zip(self.status, self.pos_val, self.neg_val, margins)]
        if not any(s.any() for s in seen):
            return
        rows = np.unique(np.concatenate([np.concatenate([self.pos_at[L][s], self.neg_at[L][s]]) for L, s in enumerate(seen)]))
        neurons = [np.flatnonzero(s) for s in seen]
        pos_ok, neg_ok = [np.zeros(j.size, bool) for j in neurons], [np.zeros(j.size, bool) for j in neurons]
        for start in range(0, rows.size, self.chunk):  # a forward pass at a time
            part = rows[start:start + self.chunk]
            where = np.full(len(self.points), -1)
            where[part] = np.arange(part.size)
            replay = self._replay(self.points[part])
            for L, j in enumerate(neurons):
                wp, wn = where[self.pos_at[L][j]], where[self.neg_at[L][j]]
                pos_ok[L] |= (wp >= 0) & (replay[L][np.maximum(wp, 0), j] > 0)
                neg_ok[L] |= (wn >= 0) & (replay[L][np.maximum(wn, 0), j] < 0)
        for L, j in enumerate(neurons):
            self.status[L][j[pos_ok[L] & neg_ok[L]]] = UNSTABLE

    def _witness_margin(self, L: int) -> np.ndarray:
        """Per neuron of ReLU layer ``L``: how far from 0 a seen value must be to count as a sign (``WITNESS_MARGIN``)."""
        return np.minimum(WITNESS_MARGIN, WITNESS_SHARE * np.maximum(self.pos_val[L] - self.neg_val[L], 0.0))

    def _replay(self, xs: np.ndarray) -> list[np.ndarray]:
        """Every ReLU input at ``xs`` computed by onnxruntime (float32), per layer ``(len(xs), size)``."""
        if self._probe is None:
            probe = self.model.copy()
            probe.output_names = list(dict.fromkeys(t for t in self.tensors if t != self.model.input_name))
            shapes = probe.shapes()
            offsets, at = {}, 0
            for t in probe.output_names:
                size = int(np.prod(shapes[t]))
                offsets[t] = (at, at + size)
                at += size
            self._probe = (OnnxRunner(probe) if probe.output_names else None, offsets)
        runner, offsets = self._probe
        flat = runner(xs).astype(np.float64) if runner is not None else None
        x32 = xs.astype(self.model.dtype).astype(np.float64)
        return [x32 if t == self.model.input_name else flat[:, offsets[t][0]:offsets[t][1]] for t in self.tensors]

    def gradient_search(self) -> None:
        """Signed-gradient steps from the best witness and random points, pushing each candidate towards its other sign."""
        before = self.undecided()
        for _ in range(GRADIENT_ROUNDS):
            found = self.undecided()
            for L in range(len(self.tensors)):
                cand = np.flatnonzero(self.status[L] == UNDECIDED)
                batch = max(1, self.chunk // GRADIENT_STARTS)  # candidates per gradient call: a pass of points
                for part in np.array_split(cand, -(-cand.size // batch)) if cand.size else []:
                    if self.remaining() <= 0:
                        break
                    self._push(L, part)
            self.confirm_unstable()
            if self.undecided() == found or self.remaining() <= 0:
                break
        self._stage("gradient", before)

    def _push(self, L: int, cand: np.ndarray) -> None:
        """Projected signed-gradient ascent of each candidate's pre-activation (descent when it was seen > 0)."""
        box, starts = self.box, GRADIENT_STARTS
        up = self.pos_val[L][cand] <= self._witness_margin(L)[cand]  # never seen positive: push up
        best = np.where(up, self.pos_at[L][cand], self.neg_at[L][cand])
        x = np.concatenate([self.points[best][:, None, :],
                            box.sample(cand.size * (starts - 1), self.rng).reshape(cand.size, starts - 1, -1)],
                           axis=1).reshape(-1, box.size)
        w = np.zeros((cand.size, starts, self.status[L].size))
        w[np.arange(cand.size), :, cand] = np.where(up, 1.0, -1.0)[:, None]
        w = w.reshape(len(x), -1)

        def value_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            v, g = gradient(self.model, x, w, tensor=self.tensors[L])
            return (w * v).sum(axis=1), g

        width = box.upper - box.lower
        ascend(value_grad, x, box.lower, box.upper, lambda k: width / (1 + k), GRADIENT_STEPS,
               stop=lambda: self.remaining() <= 0, observe=self.observe)  # observe replays each step's points

    # --- stability: bounds --------------------------------------------------------------------

    def _apply_bounds(self, lo: list[np.ndarray], hi: list[np.ndarray]) -> None:
        """Mark undecided neurons stable where the (widened) bounds prove it; a proven-unstable one is an internal error."""
        for L, (l, h) in enumerate(zip(lo, hi)):
            st = self.status[L]
            stable = np.where(l >= 0, ACTIVE, np.where(h <= 0, INACTIVE, UNSTABLE))
            clash = (st == UNSTABLE) & (stable != UNSTABLE)
            if clash.any():
                raise RuntimeError(f"internal error: neuron {int(np.flatnonzero(clash)[0])} of ReLU "
                                   f"'{self.net.steps[self.relus[L]].node}' is bounded stable but was seen with both signs")
            settle = (st == UNDECIDED) & (stable != UNSTABLE)
            st[settle] = stable[settle]

    def _bounds_stage(self, method: str) -> None:
        before = self.undecided()
        self.bounds = analyze(self.net, self.box, method, seed=self.bounds, total_time=max(self.remaining(), 0.0))
        self.state = self.bounds.state
        self._apply_bounds([self.state.lo[i] for i in self.sources], [self.state.hi[i] for i in self.sources])
        if method == "interval":
            self._constant_rows()
        self._stage(method, before)

    def interval(self) -> None:
        self._bounds_stage("interval")

    def symbolic(self) -> None:
        self._bounds_stage("symbolic")

    def _constant_rows(self) -> None:
        """A pre-activation no input reaches (its absolute chain, ``rounding``, is all zero: no path, not even
        cancelling ones) is its bias as the float network computes it, within the rounding of the bias chain:
        stable when that rounding cannot reach 0, even when the bias is 0 and nothing is added to it (exactly 0)."""
        for L, i in enumerate(self.sources):
            s = self.net.steps[i]
            r = s.float_rounding
            zero = np.all(np.stack([zero_rows(w) for w in r.weights]), axis=0)
            noise = gamma(r.depth, self.net.unit_roundoff) * r.bias
            settle = zero & (self.status[L] == UNDECIDED) & ((np.abs(s.bias) > noise) | (r.bias == 0))
            self.status[L][settle] = np.where(s.bias[settle] > 0, ACTIVE, INACTIVE)

    def _candidates(self, i: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """For Linear step ``i``: (layer, undecided neurons, True where the neuron is to be proved inactive: it has not
        been seen > 0, or, re-proving, it is claimed inactive)."""
        out = []
        for L, src in enumerate(self.sources):
            if src == i:
                cand = np.flatnonzero(self.status[L] == UNDECIDED)
                if cand.size:
                    up = self.pos_val[L][cand] <= self._witness_margin(L)[cand] if self.claims is None else \
                        self.claims[L][cand] == INACTIVE
                    out.append((L, cand, up))
        return out

    def _without_dead(self) -> tuple[State, list[np.ndarray]]:
        """The bounds on a copy of the network without its stably inactive ReLUs (they output 0 on the box, so
        the MILP is the same without them, only smaller), and per layer each neuron's row in the copy (-1: removed).

        A ReLU layer (a LeakyRelu's inactive neurons are not 0: it is kept whole) is thinned only when its Linear
        step feeds nothing else and only Linear steps read it, and
        neither is a matrix kept as an operator (``analyzers.conv``: its rows cannot be picked out).
        """
        net, steps = self.net, self.net.steps
        operator = {i for i, s in enumerate(steps) if isinstance(s, Linear) and any(isinstance(w, MATRIX_FREE)
                                                                                  for w in s.weights)}
        readers: dict[int, list] = {}
        for s in steps:
            for src in (s.sources if isinstance(s, Linear) else [getattr(s, "source", None)]):
                readers.setdefault(src, []).append(s)
        rows: dict[int, np.ndarray] = {}  # step -> kept entries (Linear rows, Activation neurons)
        for L, (k, src) in enumerate(zip(self.relus, self.sources)):
            if steps[k].slopes[0] == 0 and len(readers.get(src, [])) == 1 and net.piecewise_only[src] and \
                    src not in operator and \
                    all(isinstance(r, Linear) and steps.index(r) not in operator for r in readers.get(k, [])):
                rows[src] = rows[k] = self.status[L] != INACTIVE
        new: list = []
        for i, s in enumerate(steps):
            if isinstance(s, Linear) and i in operator:
                new.append(s)
            elif isinstance(s, Linear):
                keep = rows.get(i, slice(None))
                r = s.float_rounding
                cols = [rows.get(src, slice(None)) for src in s.sources]
                rounding = Rounding([a[keep][:, c] for a, c in zip(r.weights, cols)], r.bias[keep], r.depth[keep])
                weights = [w[keep][:, c] for w, c in zip(s.weights, cols)]
                new.append(Linear(s.tensor, list(s.sources), weights, s.bias[keep], rounding))
            elif isinstance(s, Activation) and i in rows:
                new.append(Activation(s.op, s.node, s.source, int(rows[i].sum()), s.attrs))
            else:
                new.append(s)
        reduced = CompiledNetwork(new, net.output, net.output_shape, net.dtype)

        def thinned(values: list[np.ndarray | None]) -> list[np.ndarray | None]:
            return [None if a is None else a[rows.get(i, slice(None))].copy() for i, a in enumerate(values)]

        state = State(reduced, self.box, thinned(self.state.lo), thinned(self.state.hi), thinned(self.state.noise))
        kept = []
        for L, src in enumerate(self.sources):
            mask = rows.get(src, np.ones(self.status[L].size, dtype=bool))
            kept.append(np.where(mask, np.cumsum(mask) - 1, -1))
        return state, kept

    def alpha(self) -> None:
        """α-CROWN bounds of every neuron the bounds leave unstable, layer by layer (``symbolic.alpha``). Tightens
        the intermediate bounds too, which the MILP's big-M constants come from."""
        before = self.undecided()
        layers = [i for i in range(len(self.net.steps)) if self.net.piecewise_only[i] and not self.net.first_layer(i)]

        def done(i: int) -> None:
            self._apply_bounds([self.state.lo[src] for src in self.sources], [self.state.hi[src] for src in self.sources])
            if self.progress:
                self.progress("alpha", layers.index(i) + 1, len(layers))

        stopped = not alpha(self.state, until=lambda: self.remaining() <= 0, step_done=done)
        self.time_bound |= stopped
        self._stage("alpha", before, "stopped by the time limit" if stopped else "")

    # --- stability: branch and bound over earlier ReLUs -------------------------------------------

    def search(self) -> None:
        """Per layer, first to last, the undecided neurons proved stable by one shared branch and bound over the
        signs of the ReLUs before them (``analyzers.branching.prove_signs``), starting from the signs proved so far:
        a neuron is proved when the bound of its pending sign holds on every branch; the minimising corners of the
        bounds that fail are replayed as witnesses of instability. Each layer first gets bounds on the whole box from
        the proved signs (which tighten the state the milp stage starts from), then an equal share among the layers
        left (the later ones depend on its signs) of ``SEARCH_SHARE`` of the time left. In a layer, a neuron is given
        up after ``SEARCH_LIMITS[p]`` branches in pass ``p`` (one that cannot be proved, or only by a large tree, does
        not hold up the others); each pass allows more. The first layer searched skips the last pass: what it leaves,
        the milp stage decides faster (its MILP has one layer of binaries). Skipped for networks with few inputs,
        whose searches split the input box (``verify``), which this one does not."""
        before = self.undecided()
        if self.state is None:
            return self._stage("search", before, "no bounds to start from")
        if self.box.size <= FEW_INPUTS:  # (there the inputs are to be split, as verify does; the milp decides)
            return self._stage("search", before, f"skipped: {self.box.size} inputs, too few for ReLU splits to pay")
        try:
            dense = DenseNetwork(self.net, "stable")
        except NnxformError as exc:
            return self._stage("search", before, f"not supported on this network: {exc}")
        slots = Slots(dense)
        order = [i for i in sorted(set(self.sources)) if not self.net.first_layer(i)]
        branches, stops = 0, time.perf_counter() + SEARCH_SHARE * self.remaining()
        for n, i in enumerate(order):
            ends = time.perf_counter() + (stops - time.perf_counter()) / (len(order) - n)
            for limit in SEARCH_LIMITS[:-1] if n == 0 else SEARCH_LIMITS:
                if self.remaining() <= 0 or time.perf_counter() > ends or not self._candidates(i):
                    break
                branches += self._search_layer(dense, slots, i, limit,
                                               lambda ends=ends: time.perf_counter() > ends or self.remaining() <= 0)
            if self.progress and self.undecided() < before:
                self.progress("search", before - self.undecided(), before)
        self.time_bound |= self.remaining() <= 0 and self.undecided() > 0
        self._stage("search", before, f"{branches} branches")

    def _search_layer(self, dense: DenseNetwork, slots: Slots, i: int, limit: int, until: Callable[[], bool]) -> int:
        """One search over the undecided neurons fed by Linear step ``i`` (see ``search``), each given up after
        ``limit`` branches, until ``until()``; the branches bounded."""
        box = self.box
        root = self._proved_signs(slots)
        state = analyse(dense, box.lower[None], box.upper[None], slots.split(root[None]),
                        prior=(self.state.lo, self.state.hi))
        self._tighten_state(len(self.net.steps) - 1, ([a[0] for a in state.lo], [a[0] for a in state.hi]))
        cands = self._candidates(i)
        if not cands:
            return 1
        layers = np.concatenate([np.full(c.size, L) for L, c, _ in cands])
        rows = np.concatenate([c for _, c, _ in cands])
        want = np.concatenate([np.where(up, -1, 1) for _, _, up in cands])

        def refute(points: np.ndarray) -> np.ndarray:
            self.observe(points)
            self.confirm_unstable()
            return self._status_of(layers, rows) == UNSTABLE

        proved, branches = prove_signs(dense, slots, box.lower, box.upper, i, rows, want, root,
                                       (self.state.lo, self.state.hi), until, refute, limit)
        proved &= self._status_of(layers, rows) == UNDECIDED
        for L in np.unique(layers[proved]):
            mine = proved & (layers == L)
            self.status[L][rows[mine]] = np.where(want[mine] > 0, ACTIVE, INACTIVE)
        self._tighten_state(i)
        return branches + 1

    def _proved_signs(self, slots: Slots) -> np.ndarray:
        """The signs proved so far as a branch's sign vector: +1 stably active, −1 stably inactive, 0 otherwise."""
        sg = np.zeros(slots.total, np.int8)
        for L, src in enumerate(self.sources):
            o = slots.offsets[src]
            sg[o: o + slots.sizes[src]] = np.where(self.status[L] == ACTIVE, 1, np.where(self.status[L] == INACTIVE,
                                                                                        -1, 0))
        return sg

    def _status_of(self, layers: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The status of neuron ``rows[m]`` of ReLU layer ``layers[m]``, per ``m``."""
        out = np.full(rows.size, UNDECIDED, np.int8)
        for L in np.unique(layers):
            out[layers == L] = self.status[L][rows[layers == L]]
        return out

    def _tighten_state(self, last: int, bounds: tuple[list, list] | None = None) -> None:
        """The state's bounds of the steps up to ``last`` intersected with ``bounds`` (per step, bounds on the whole
        box) and with the signs proved; the undecided neurons they prove stable settled."""
        state = self.state
        for k, s in enumerate(self.net.steps[1: last + 1], start=1):
            if isinstance(s, Linear):
                if bounds is not None:
                    state.lo[k] = np.maximum(state.lo[k], bounds[0][k])
                    state.hi[k] = np.minimum(state.hi[k], bounds[1][k])
                for L in np.flatnonzero(np.array(self.sources) == k):
                    st = self.status[L]
                    state.lo[k] = np.where(st == ACTIVE, np.maximum(state.lo[k], 0.0), state.lo[k])
                    state.hi[k] = np.where(st == INACTIVE, np.minimum(state.hi[k], 0.0), state.hi[k])
            else:
                state.propagate_nonlinear(k)
        self._apply_bounds([state.lo[src] for src in self.sources], [state.hi[src] for src in self.sources])

    # --- stability: MILP ------------------------------------------------------------------------

    def milp(self) -> None:
        """Per candidate, one feasibility solve on the shared big-M model: infeasible proves stability.

        Each solve gets a fair share of the time left (at least ``MIN_SOLVE_SECONDS``); candidates
        whose solve ran out are retried once every layer is encoded, with 4× the time each round.
        """
        before = self.undecided()
        state, kept = self._without_dead()
        if _needs_rescaling(state):
            state, input_exp, unscaled = _rescaled(state)
        else:  # rescaled, HiGHS takes a third longer on mnist 256x2: only where its tolerances need it
            input_exp, unscaled = np.zeros(state.box.size, np.int64), set(range(len(state.net.steps)))
        too_large = beyond_solver(state)
        if too_large:  # the solver's infeasibility proofs are not to be trusted there
            self.notes.append(f"milp stage skipped: {too_large}")
            return self._stage("milp", before, "values too large for the solver")
        try:
            enc = Encoder(state, integer=True, solver=self.solver)
        except NnxformError as exc:
            self.notes.append(f"milp stage skipped: {exc}")
            return self._stage("milp", before, "not supported on this network")
        enc.set_options(_MIP_OPTIONS)
        tol = enc.tolerance()
        counts = {"done": 0, "unreplayed": 0, "unresolved": 0}
        pending: list[tuple[Task, float]] = []  # (task, seconds it was given)
        for i, s in enumerate(self.net.steps):
            if self.remaining() <= 0:
                break
            if i and not isinstance(s, Linear):
                state.propagate_nonlinear(i)
            elif self.net.piecewise_only[i] and not self.net.first_layer(i) and self._candidates(i):
                alpha_step(state, i, until=lambda: self.remaining() <= 0)  # again: the neurons the MILP proved stable below are linear now
                self._settle_rows(state, i, kept)
            if i in unscaled and _unresolved(state, i, tol):
                self.notes.append(f"milp stage stopped at '{s.tensor}': unstable values below {RESOLVED * tol:g} in a "
                                  "step kept as an operator, which the solver's absolute tolerances do not resolve")
                break
            enc.add(i)
            if not isinstance(s, Linear):
                continue
            slack = _reach(state, i, tol)  # in the row's scaled units, see _settle
            for L, cand, up in self._candidates(i):
                for j, push_up in zip(cand, up):
                    r = int(kept[L][j])
                    task = (i, L, int(j), r, bool(push_up), float(slack[r]))
                    seconds = max(MIN_SOLVE_SECONDS, self.remaining() / max(1, self.undecided() - len(pending)))
                    if self.remaining() <= 0 or not self._settle(enc, state, task, seconds, counts, before, input_exp):
                        pending.append((task, seconds))
            enc.set_bounds(i)
        while pending and self.remaining() > 0 and self.node_limit is None:  # a node limit gives the same answer again
            retry, pending = pending, []
            for task, seconds in retry:
                if self.remaining() <= 0 or not self._settle(enc, state, task, 4 * seconds, counts, before, input_exp):
                    pending.append((task, 4 * seconds))
        self.time_bound |= self.remaining() <= 0 and bool(pending)
        limit = "their node limit" if self.node_limit is not None else "time"
        notes = [f"{len(pending)} solves ran out of {limit}"] if pending else []
        if counts["unreplayed"]:
            notes.append(f"{counts['unreplayed']} solver solutions did not replay as flips (float margin): left undecided")
        if counts["unresolved"]:
            notes.append(f"{counts['unresolved']} within the solver's tolerances of 0: left undecided")
        self._stage("milp", before, "; ".join(notes))

    def _settle_rows(self, state: State, i: int, kept: list[np.ndarray]) -> None:
        """Mark undecided neurons fed by Linear step ``i`` stable where ``state`` (rows ``kept``) proves it."""
        for L, src in enumerate(self.sources):
            if src == i:
                j = np.flatnonzero((kept[L] >= 0) & (self.status[L] == UNDECIDED))
                lo, hi = state.lo[i][kept[L][j]], state.hi[i][kept[L][j]]
                self.status[L][j[lo >= 0]] = ACTIVE
                self.status[L][j[hi <= 0]] = INACTIVE

    def _settle(self, enc: Encoder, state: State, task: Task, seconds: float, counts: dict[str, int],
                total: int, input_exp: np.ndarray) -> bool:
        """One candidate's feasibility solve (neuron ``j`` of ReLU layer ``L``, row ``r`` of Linear step ``i`` of the
        solver's network, whose inputs are the box's divided by ``2**input_exp``); False when the solver could not
        decide within ``seconds``.

        The solver's answer holds only up to its tolerances, so a sign is proven only beyond ``gap``: the
        analyzers' float margin plus ``slack`` (``_reach``: how far the row's value moves when it and each of its
        sources are off by the tolerance, which the rescaling makes relative to each value: ``_rescaled``). An
        infeasible "z >= -gap" then still excludes every input with z >= 0, whatever the solver's errors within
        its tolerances; a neuron whose bounds leave no room beyond ``gap`` cannot be resolved by the solver and
        stays undecided. The float32 rounding of the network is in the model itself (each row's noise,
        ``Encoder._linear``)."""
        i, L, j, r, push_up, slack = task
        if self.status[L][j] == UNDECIDED:  # else settled meanwhile by another solution's replay
            lo, hi = state.lo[i][r], state.hi[i][r]
            gap = _margin(lo, hi) + slack  # prove z < -gap (inactive) or z > gap (active)
            if (lo >= -gap) if push_up else (hi <= gap):
                counts["unresolved"] += 1
            else:
                verdict, x = self._feasible(enc, enc.col[i] + r, -gap if push_up else gap, push_up, seconds, input_exp)
                if verdict == "unknown":
                    return False
                if verdict == "infeasible":
                    self.status[L][j] = INACTIVE if push_up else ACTIVE
                    if push_up:
                        state.hi[i][r] = min(hi, -slack)
                    else:
                        state.lo[i][r] = max(lo, slack)
                else:
                    self.observe(x[None])
                    self.confirm_unstable()
                    counts["unreplayed"] += int(self.status[L][j] == UNDECIDED)
        counts["done"] += 1
        if self.progress:
            self.progress("milp", counts["done"], total)
        return True

    def _feasible(self, enc: Encoder, col: int, threshold: float, push_up: bool, seconds: float,
                  input_exp: np.ndarray) -> tuple[str, np.ndarray | None]:
        """``Encoder.feasible`` within the time left (or the node limit), the solution's input as a point of the box:
        its columns times ``2**input_exp`` (the rescaling), clipped to the box."""
        by_nodes = self.node_limit is not None and enc.external is None  # HiGHS only: then the time does not bind
        seconds = self.remaining() if by_nodes else min(seconds, self.remaining())
        verdict, x = enc.feasible(col, threshold, push_up, seconds, self.node_limit)
        if x is not None:
            x = np.clip(np.ldexp(x, input_exp), self.box.lower, self.box.upper)
        return verdict, x

    def _witnesses(self) -> Witnesses:
        self._compact()
        pos = [np.where(st == UNSTABLE, p, -1) for st, p in zip(self.status, self.pos_at)]
        neg = [np.where(st == UNSTABLE, n, -1) for st, n in zip(self.status, self.neg_at)]
        return Witnesses(self.points, pos, neg)
