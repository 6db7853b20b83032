"""Decide a VNN-LIB property of a network: sound bounds, an attack, then branch and bound.

A property is a list of cases (``vnnlib.Case``): an input box and output regions; a point of the box whose output
lies in a region is a counterexample. ``verify`` answers ``sat`` (a counterexample, replayed in onnxruntime: only
a point that onnxruntime confirms counts), ``unsat`` (every branch proved by sound bounds of the float network, or
by a MILP), ``timeout`` or ``unknown`` (branches left that cannot be split further).

A branch is a sub-box and signs fixed for some ReLUs; branches are bounded many at a time (``analyzers.boxes``). A
branch is proved when, for every region, some row of the region (or a sum of its rows) is positive on all of it.
Otherwise it is split, strong-branching style: both children of every candidate split are bounded and the split
whose children are left with the least to prove is kept. Candidates are every input of networks with few inputs
(nnenum's and α,β-CROWN's input splitting for ACAS Xu) and, for networks with many inputs, the unstable ReLUs the
bound loses most on (BaBSR's score). A branch the plain bound does not prove gets optimised slopes (and split
multipliers); one that still stays open (many inputs, after the first seconds) gets its hidden bounds optimised
under its signs too, which its children inherit; a branch with few unstable ReLUs left is decided by one MILP
(few-input networks: once the input splits alone have run a while). The lower bound's minimising corners and the
branch centres are tried as counterexamples all along. With several workers, a property not decided in its first
second goes on in forked processes: slices of the box (few inputs) or shares of the open branches (many inputs).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import stopping
from .analyzers.boxes import (FEW_INPUTS, BoxBounds, DenseNetwork, analyse, objective, optimized_hidden,
                              optimized_objective)
from .analyzers.branching import Slots, child_branches
from .analyzers.interval import interval
from .analyzers.network import Linear, compile_model
from .analyzers.result import State
from .analyzers.rounding import cast_box
from .analyzers.symbolic import alpha, symbolic
from .domain import Box
from .errors import NnxformError
from .attack import ascend
from .gradient import gradient
from .interpreter import run
from .ir import Model
from .processes import in_processes
from .runtime import OnnxRunner
from .vnnlib import Case

#: Branches bounded together (at most; fewer where bounding one takes long: about ``ROUND_SECONDS`` a part, so the
#: timeout is kept), and the relative width below which an input is not split further.
BATCH, ROUND_SECONDS, SMALLEST = 256, 0.5, 1e-7
#: Unstable ReLUs tried as splits per branch (the ones the bound loses most on): both children of each are bounded.
RELU_CANDIDATES = 3
#: Seconds after which a few-input network's search also decides branches by MILP (``escalated``), and after which
#: it optimises the slopes of the branches the plain bound does not prove (``optimize``).
ESCALATE_SECONDS, OPTIMIZE_AFTER = 5.0, 1.0
#: Adam steps on the slopes and split multipliers of a branch the plain bound does not prove.
OPTIMIZE_STEPS = 10
#: Adam steps on the hidden bounds of a branch the optimised objective leaves open (many-input networks, after
#: ``REFINE_AFTER`` seconds: properties decided sooner stay as fast): the multipliers of its signs tighten them, a
#: branch whose signs contradict one another comes out empty, and its children inherit them (``_refine``).
REFINE_STEPS, REFINE_AFTER = 5, 5.0
#: The share of the time left that a many-input network's root bounds may take (``_root_bounds``).
ROOT_SHARE = 0.1
#: A branch with at most this many unstable ReLUs left is decided by one MILP (few-input networks: once escalated),
#: given at most ``LEAF_SHARE`` of the timeout (at least a second); a leaf it leaves undecided is split further (one
#: with nothing left to split is tried again once the other branches are done, with the time left).
LEAF_RELUS, LEAF_SHARE = 24, 0.05
#: The attack: starts per region (at least; more for few inputs: as many as ``START_NUMBERS`` input values), steps;
#: it stops at the first step where a start reaches the unsafe region. (On ACAS Xu 204 starts find 34 of the 47
#: counterexamples, 819 find 39, and the search finds the rest within 2 s; 819 cost each unsat row 0.05 s more.)
STARTS, START_NUMBERS, STEPS = 32, 1024, 40
#: During branch and bound, every ``ATTACK_EVERY`` seconds the attack runs inside the ``ATTACK_BRANCHES`` open
#: branches nearest a counterexample (the least proved), taking at most ``ATTACK_SHARE`` of the search's time.
ATTACK_EVERY, ATTACK_BRANCHES, ATTACK_SHARE = 1.0, 8, 0.2
#: The attack's share where only ReLUs are split: every branch is the whole box, which the attack has tried already
#: (new random starts find less and less).
RELU_ATTACK_SHARE = 0.05

#: With several workers: seconds one process searches before the rest is searched in parallel (few-input networks:
#: slices of the box; many-input networks: shares of the open branches, in rounds of ``SHARE_SECONDS`` (the shortest
#: once a worker's share is done, the longest), after which what is left open is shared again).
PARALLEL_AFTER = 1.0
SHARE_SECONDS = (2.0, 30.0)

#: ``progress(proved per mille, open branches, seconds)``.
Progress = Callable[[int, int, float], None]


@dataclass
class Verdict:
    """The answer to a property, its counterexample (input and onnxruntime's output) when ``sat``, and the search's
    figures: sub-boxes bounded, the share of the input volume proved, seconds."""

    answer: str
    seconds: float
    branches: int = 0
    proved: float = 0.0
    case: int | None = None
    counterexample: np.ndarray | None = None
    outputs: np.ndarray | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"answer": self.answer, "seconds": self.seconds, "branches": self.branches,
                               "proved_share": self.proved}
        if self.counterexample is not None:
            out.update(case=self.case, counterexample=self.counterexample.tolist(), outputs=self.outputs.tolist())
        if self.note:
            out["note"] = self.note
        return out

    def result_text(self) -> str:
        """The VNN-COMP result file: the answer, and for ``sat`` the assignment ``((X_0 v) … (Y_0 v))``."""
        if self.counterexample is None:
            return self.answer + "\n"
        pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(self.counterexample)]
        pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(self.outputs)]
        return "sat\n(" + "\n".join(pairs) + ")\n"


def verify(model: Model, cases: list[Case], timeout: float, progress: Progress | None = None,
           seed: int = 0, workers: int = 1) -> Verdict:
    """Decide the property ``cases`` on ``model`` within ``timeout`` seconds (see the module's docstring). With
    ``workers`` > 1, a property not decided in its first ``PARALLEL_AFTER`` seconds is searched on in ``workers``
    processes: with few inputs each on a slice of every case's box (their progress is not reported), with many each on
    a share of the open branches (``_Search.in_workers``)."""
    if model.input_size > FEW_INPUTS:
        return _verify(model, cases, timeout, progress, seed, workers)
    if workers <= 1 or timeout <= PARALLEL_AFTER:
        return _verify(model, cases, timeout, progress, seed)
    first = _verify(model, cases, PARALLEL_AFTER, progress, seed)
    if first.answer != "timeout":
        return first
    rest = _in_parallel(model, cases, timeout - first.seconds, seed, workers)
    return dataclasses.replace(rest, seconds=first.seconds + rest.seconds, branches=first.branches + rest.branches)


def _verify(model: Model, cases: list[Case], timeout: float, progress: Progress | None, seed: int,
            workers: int = 1) -> Verdict:
    """``verify`` in this process (its branch and bound in ``workers`` once it has run ``PARALLEL_AFTER`` seconds)."""
    started = time.monotonic()
    deadline = started + timeout
    search = _Search(model, started, deadline, progress, np.random.default_rng(seed), workers)
    answers = []
    with stopping.honoured():
        open_cases = [k for k, case in enumerate(cases) if not search.proved_by_bounds(case, len(cases))]
        for k in open_cases:
            found = search.attack(cases[k])
            if found is not None:
                return search.verdict("sat", case=k, witness=found)
        for k in open_cases:
            answer = search.branch_and_bound(cases[k], len(cases))
            if isinstance(answer, tuple):
                return search.verdict("sat", case=k, witness=answer)
            answers.append(answer)
            if answer != "unsat":
                break
    final = "unsat" if all(a == "unsat" for a in answers) else answers[-1]
    return search.verdict(final)


def _in_parallel(model: Model, cases: list[Case], timeout: float, seed: int, workers: int) -> Verdict:
    """``verify`` on ``workers`` slices of every case's box (cut along its widest input), one process each: ``sat``
    as soon as one finds a counterexample (replayed here once more; the others stopped), ``unsat`` when every slice is,
    else the first ``timeout`` or ``unknown``."""
    started = time.monotonic()
    cut = [_slice_box(case.box, workers) for case in cases]
    slices = [[Case(parts[w], case.regions) for case, parts in zip(cases, cut)] for w in range(workers)]
    verdicts = in_processes(lambda w: _verify(model, slices[w], timeout, None, seed + w), list(range(workers)),
                            timeout, lambda v: v.answer == "sat")
    seconds = time.monotonic() - started
    done = [v for v in verdicts if v is not None]
    branches, proved = sum(v.branches for v in done), sum(v.proved for v in done) / workers
    sat = next((v for v in done if v.answer == "sat"), None)
    if sat is not None:
        if not cases[sat.case].violated(OnnxRunner(model)(sat.counterexample[None]).astype(np.float64))[0]:
            raise NnxformError("a worker's counterexample did not replay in onnxruntime (please report it)")
        return Verdict("sat", seconds, branches, proved, sat.case, sat.counterexample, sat.outputs)
    if len(done) == workers and all(v.answer == "unsat" for v in done):
        return Verdict("unsat", seconds, branches, 1.0)
    other = next((v for v in done if v.answer != "unsat"), None)
    return Verdict("timeout" if other is None else other.answer, seconds, branches, proved,
                   note="" if other is None else other.note)


def _slice_box(box: Box, parts: int) -> list[Box]:
    """``box`` cut into ``parts`` equal slices along its widest input."""
    j = int(np.argmax(box.upper - box.lower))
    edges = np.linspace(box.lower[j], box.upper[j], parts + 1)
    out = []
    for w in range(parts):
        lo, hi = box.lower.copy(), box.upper.copy()
        lo[j], hi[j] = edges[w], edges[w + 1]
        out.append(Box(lo, hi))
    return out


class _Search:
    """The state of one property's search: the network in its forms, the clock, the counts."""

    def __init__(self, model: Model, started: float, deadline: float, progress: Progress | None,
                 rng: np.random.Generator, workers: int = 1) -> None:
        self.model, self.started, self.deadline, self.progress, self.rng = model, started, deadline, progress, rng
        self.workers = workers
        self.dense = DenseNetwork(compile_model(model), "verify")
        self.slots = Slots(self.dense)
        self.box_seconds = 1e-3  # seconds one branch takes to bound (measured as the search goes)
        self.refine_seconds = 1e-2  # and to refine (``_refine``)
        self.next_attack = started + ATTACK_EVERY
        self.runner = OnnxRunner(model)
        self.branches = 0
        self.proved = 0.0
        self.open_branches = 0  # as the progress line shows them (the batch being bounded included)
        self.pause: Callable[[], bool] | None = None  # (a worker's: when its round is over, ``in_workers``)
        self.note = ""
        self.leaf_seconds = max(1.0, LEAF_SHARE * (deadline - started))
        #: the hidden Linear steps whose bounds a branch inherits (the first layer's are exact per box already)
        self.inherited = [i for i, s in enumerate(self.dense.steps) if isinstance(s, Linear) and i != self.dense.output
                          and not self.dense.net.first_layer(i)]
        #: ``_Branches.settled`` of a branch whose bounds are its own: every step's
        self.own = len(self.dense.steps)

    def verdict(self, answer: str, case: int | None = None,
                witness: tuple[np.ndarray, np.ndarray] | None = None) -> Verdict:
        x, y = witness if witness is not None else (None, None)
        return Verdict(answer, time.monotonic() - self.started, self.branches, self.proved, case, x, y,
                       self.note if answer != "sat" else "")

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline or stopping.requested()

    def confirmed(self, case: Case, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The first of the candidate inputs ``xs`` (in the box) that onnxruntime confirms as a counterexample."""
        x32 = case.box.float32_points(xs)
        x32 = x32[((x32 >= case.box.lower) & (x32 <= case.box.upper)).all(axis=1)]  # (a box thinner than a float32 gap)
        if not len(x32):
            return None
        ys = self.runner(x32)
        hit = np.flatnonzero(case.violated(ys.astype(np.float64)))
        return (x32[hit[0]], ys[hit[0]]) if hit.size else None

    def promising(self, case: Case, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``confirmed`` on the candidates the interpreter finds within a small margin of a region."""
        ys = run(self.model, xs.reshape((-1,) + tuple(self.model.input_shape[1:]))).reshape(len(xs), -1)
        near = np.min([_violation(r, ys) for r in case.regions], axis=0) <= 1e-4 * (1 + np.abs(ys).max(axis=1))
        return self.confirmed(case, xs[near]) if near.any() else None

    def proved_by_bounds(self, case: Case, n_cases: int) -> bool:
        """Whether the bounds of the whole box prove ``case`` (one of ``n_cases``) at once: then neither the attack
        nor the search runs on it (which makes easy properties take milliseconds)."""
        if self.out_of_time() or not np.vstack([r.coef for r in case.regions]).any(axis=1).all():
            return False  # (a region without rows holds everywhere)
        spec = _Objective(case)
        low, _ = objective(analyse(self.dense, case.box.lower[None], case.box.upper[None]), spec.coef, spec.bound)
        self.branches += 1
        if np.maximum.reduceat(low, spec.starts, axis=1).min() <= 0:
            return False
        self.proved += 1.0 / n_cases
        return True

    def attack(self, case: Case, count: int | None = None, at: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """Projected-gradient search for a counterexample from many starts (``count``, else as many as the input's
        size allows; ``at``: these starts instead), per region."""
        box = case.box
        shape = (-1,) + tuple(self.model.input_shape[1:])
        count = count or max(STARTS, START_NUMBERS // box.size)
        for region in case.regions:
            if self.out_of_time():
                return None
            starts = np.vstack([0.5 * (box.lower + box.upper), box.sample(count - 1, self.rng)]) if at is None else at
            if not region.coef.any():  # no output condition: any point is a counterexample
                found = self.confirmed(case, starts[:1])
                if found is not None:
                    return found
                continue

            def value_grad(x: np.ndarray, region=region) -> tuple[np.ndarray, np.ndarray]:
                ys, g = gradient(self.model, x.reshape(shape),
                                 lambda ys: -region.coef[np.argmax(ys @ region.coef.T - region.bound, axis=1)])
                return -_violation(region, ys), g

            width = box.upper - box.lower
            result = ascend(value_grad, starts, box.lower, box.upper, lambda k: width * (0.1 * 0.93 ** k), STEPS,
                            stop=self.out_of_time, goal=0.0)
            found = self.promising(case, np.vstack([result.best_x, result.x]))
            if found is not None:
                return found
        return None

    def branch_and_bound(self, case: Case, n_cases: int) -> str | tuple[np.ndarray, np.ndarray]:
        """Split ``case``'s box and its ReLUs until every branch is proved (``unsat``), a counterexample is confirmed,
        the time ends (``timeout``) or a branch cannot be split further (``unknown``)."""
        if not np.vstack([r.coef for r in case.regions]).any(axis=1).all():
            self.note = "a region holds everywhere but no point of the box replayed as a counterexample"
            return "unknown"  # (a region without rows: the attack has tried the box's points)
        self.log_volume = _log_volume(case.box.lower[None], case.box.upper[None])[0] + np.log(n_cases)
        spec = _Objective(case)
        n = case.box.size
        branches = self._root(case.box, None if self.input_candidates(n) else self._root_bounds(case.box))
        self.stuck, self.gave_up = [], 0
        answer = self._explore(spec, branches)
        return self._finish(spec) if answer is None else answer

    def _explore(self, spec: "_Objective", branches: "_Branches"
                 ) -> str | tuple[np.ndarray, np.ndarray] | "_Branches" | None:
        """``branch_and_bound``'s loop from the open ``branches``: ``timeout``, a counterexample, None once no branch is
        open (the leaves the MILP left undecided with nothing to split wait in ``stuck``, the branches given up are
        counted in ``gave_up``), or the branches still open once ``pause()`` (a worker's round is over). Past
        ``PARALLEL_AFTER`` seconds the open branches are shared among ``workers`` processes (``in_workers``)."""
        case, n = spec.case, spec.case.box.size
        self.open_branches = len(branches)
        self._report()
        while len(branches):
            if self.out_of_time():
                return "timeout"
            if self.pause is not None and self.pause():
                return branches
            if self.workers > 1 and len(branches) >= self.workers and \
                    time.monotonic() - self.started >= PARALLEL_AFTER:
                left = self.in_workers(spec, branches)
                if not isinstance(left, _Branches):
                    return left
                branches = left
                continue
            take = max(1, BATCH // (2 * (self.input_candidates(n) + self.relu_candidates(n))))
            cut = max(0, len(branches) - take)
            batch, branches = branches.take(slice(cut, None)), branches.take(slice(0, cut))
            self.open_branches = len(branches) + len(batch)
            bounded = self._bound(spec, batch, scores=True)
            if bounded.found is not None:
                return bounded.found
            done = bounded.progress > 0
            self._count(batch.take(done))
            batch = batch.with_bounds(bounded.bounds, self.own, bounded.refined).take(~done)
            scores = bounded.scores[~done]
            parent, spread = bounded.progress[~done], bounded.spread[~done]
            if self.slots.piecewise_only and (not self.input_candidates(n) or self.escalated()):
                leaf = (scores > 0).sum(axis=1) <= LEAF_RELUS  # few left unstable: one MILP decides
                for b in np.flatnonzero(leaf):
                    answer = self._exact(spec, batch.take(slice(b, b + 1)), self.leaf_seconds)
                    self._report()  # (a leaf may take seconds)
                    if isinstance(answer, tuple):
                        return answer
                    if answer == "unsat":
                        self._count(batch.take(slice(b, b + 1)))
                    elif self.out_of_time():
                        return "timeout"
                    elif self.input_candidates(n) or (scores[b] > 0).any():
                        leaf[b] = False  # undecided (the leaf's time ran out): it is split further
                    else:
                        self.stuck.append(batch.take(slice(b, b + 1)))  # nothing to split: tried at the end
                batch, scores, parent, spread = batch.take(~leaf), scores[~leaf], parent[~leaf], spread[~leaf]
            candidates = self._candidates(batch.lower, batch.upper, scores)  # an input (< n) or a neuron (n + j)
            ok = (candidates >= 0).any(axis=1)
            self.gave_up += int((~ok).sum())
            batch, candidates, parent, spread = batch.take(ok), candidates[ok], parent[ok], spread[ok]
            if not len(batch):
                continue
            P, c = candidates.shape
            split = np.repeat(self.split_step(candidates, n), 2)
            children = _Branches(*child_branches(batch.lower, batch.upper, batch.signs, candidates),
                                 {i: (np.repeat(a, 2 * c, axis=0), np.repeat(b, 2 * c, axis=0))
                                  for i, (a, b) in batch.bounds.items()},
                                 split, np.minimum(np.repeat(batch.refined, 2 * c), split))
            bounded = self._bound(spec, children)
            if bounded.found is not None:
                return bounded.found
            # a child's part lies in its parent's: the parent's bound holds on it too
            progress = np.maximum(bounded.progress, np.repeat(parent, 2 * c))
            best = _best_split(progress, candidates, spread)
            chosen = (((np.arange(P) * c + best) * 2)[:, None] + np.arange(2)[None]).ravel()
            proved = progress[chosen] > 0
            picked = children.take(chosen).with_bounds({i: (a[chosen], b[chosen])
                                                        for i, (a, b) in bounded.bounds.items()}, self.own,
                                                       bounded.refined[chosen])
            self._count(picked.take(proved))
            kept, progress = picked.take(~proved), progress[chosen][~proved]
            branches = _Branches.stack([branches, kept])
            self.open_branches = len(branches)
            self._report()
            if len(kept) and time.monotonic() >= self.next_attack:  # the attack again, inside the least proved boxes
                found = self._attack_inside(case, kept.take(np.argsort(progress)[:ATTACK_BRANCHES]),
                                            ATTACK_SHARE if self.input_candidates(n) else RELU_ATTACK_SHARE)
                if found is not None:
                    return found
        return None

    def _finish(self, spec: "_Objective") -> str | tuple[np.ndarray, np.ndarray]:
        """Once no branch is open: the ``stuck`` leaves by MILP with the time left, shared among them; ``unsat`` when
        nothing was given up, else ``unknown`` (or ``timeout``, or a counterexample)."""
        for k, branch in enumerate(self.stuck):
            answer = self._exact(spec, branch, (self.deadline - time.monotonic()) / (len(self.stuck) - k))
            if isinstance(answer, tuple):
                return answer
            if answer == "unsat":
                self._count(branch)
            elif self.out_of_time():
                return "timeout"
            else:
                self.gave_up += 1
        if self.gave_up:
            self.note = f"{self.gave_up} branches could not be split further (inputs narrower than {SMALLEST:g} " \
                        "relative, every ReLU fixed) and were not proved"
            return "unknown"
        return "unsat"

    def in_workers(self, spec: "_Objective", branches: "_Branches"
                   ) -> str | tuple[np.ndarray, np.ndarray] | "_Branches":
        """``_explore`` of the open ``branches`` shared among ``workers`` forked processes, in rounds: each worker
        takes every ``workers``-th branch (and its own attack starts) and searches it until one worker's share is done
        (after at least ``SHARE_SECONDS[0]``) or ``SHARE_SECONDS[1]`` have passed; what they leave open is shared again,
        so no core idles long. Their proved shares and open branches are reported here as they go. Returns a worker's
        counterexample once it replays here, ``timeout``, or the branches left once fewer than the workers."""
        k = self.workers
        while len(branches) >= k:
            proved, bounded, started = self.proved, self.branches, time.monotonic()
            seed = int(self.rng.integers(2 ** 32))  # (new attack starts every round)
            shares = [branches.take(np.arange(w, len(branches), k)) for w in range(k)]
            # per worker its proved share and open branches, then whether a worker's share is done
            board = multiprocessing.get_context("fork").RawArray(
                "d", [v for part in shares for v in (proved, len(part))] + [0.0])

            def work(w: int) -> tuple:
                self.workers, self.stuck, self.gave_up = 1, [], 0
                self.rng = np.random.default_rng([seed, w])

                def tell(*_: Any) -> None:
                    board[2 * w], board[2 * w + 1] = self.proved, self.open_branches
                self.progress = tell
                self.pause = lambda: time.monotonic() - started >= SHARE_SECONDS[1] or (
                    board[-1] > 0 and time.monotonic() - started >= SHARE_SECONDS[0])
                left = self._explore(spec, shares[w])
                board[-1] = 1.0
                return (left, self.stuck, self.gave_up, self.proved - proved, self.branches - bounded,
                        self.box_seconds, self.refine_seconds)

            def poll() -> None:
                self.proved = proved + sum(board[2 * w] - proved for w in range(k))
                self.open_branches = int(sum(board[1:-1:2]))
                self._report()

            results = in_processes(work, list(range(k)), self.deadline - time.monotonic(),
                                   lambda r: isinstance(r[0], tuple), poll)
            done = [r for r in results if r is not None]
            self.proved = proved + sum(r[3] for r in done)
            self.branches = bounded + sum(r[4] for r in done)
            for left, *_ in done:
                if isinstance(left, tuple):
                    found = self.confirmed(spec.case, left[0][None])
                    if found is None:
                        raise NnxformError("a worker's counterexample did not replay in onnxruntime (please report it)")
                    return found
            if len(done) < k or any(isinstance(r[0], str) for r in done):
                return "timeout"  # (a worker that gave no answer in the time and its grace was stopped)
            for r in done:
                self.stuck += r[1]
                self.gave_up += r[2]
            self.box_seconds, self.refine_seconds = done[0][5], done[0][6]
            left = [r[0] for r in done if r[0] is not None and len(r[0])]
            branches = _Branches.stack(left) if left else branches.take(np.arange(0))
        return branches

    def _attack_inside(self, case: Case, least: "_Branches", share: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The attack inside each distinct box of the ``least`` proved branches (branches that only split ReLUs share
        their box: it is attacked once), then paced so that it takes at most ``share`` of the time."""
        started = time.monotonic()
        boxes = np.unique(np.hstack([least.lower, least.upper]), axis=0)
        for lo, hi in zip(boxes[:, :boxes.shape[1] // 2], boxes[:, boxes.shape[1] // 2:]):
            found = self.attack(Case(Box(lo, hi), case.regions), STARTS)
            if found is not None:
                return found
        took = time.monotonic() - started
        self.next_attack = time.monotonic() + max(ATTACK_EVERY, (1 - share) / share * took)
        return None

    def split_step(self, candidates: np.ndarray, n: int) -> np.ndarray:
        """Per child of each candidate (in ``child_branches``' order, one per candidate here): the last step whose
        bounds it shares with its parent, the Linear step of a split ReLU (a split there changes only the steps
        after it), or -1 for an input split (a new box: none)."""
        slot = np.maximum(candidates.ravel() - n, 0)
        step = np.array(self.slots.steps)[np.searchsorted(self.slots.starts, slot, side="right") - 1]
        return np.where(candidates.ravel() >= n, step, -1)

    def input_candidates(self, n: int) -> int:
        """How many inputs a branch may split: all of them for networks with few inputs, else none."""
        return n if n <= FEW_INPUTS else 0

    def relu_candidates(self, n: int) -> int:
        """How many ReLUs a branch may split: ``RELU_CANDIDATES``, none where the inputs are split (measured on ACAS
        Xu, 116 s: ReLU splits after the first quarter of the time left 4_2 prop_2 a timeout with a third of the
        volume proved; input splits with optimised slopes prove it in 85 s, 1_1 prop_5 in 5 s instead of 29)."""
        return 0 if self.input_candidates(n) else RELU_CANDIDATES

    def escalated(self) -> bool:
        """Past a quarter of the time (at least ``ESCALATE_SECONDS``): the few-input search's second phase, where
        branches with few unstable ReLUs left are decided by MILP (properties whose margin is thin near a point)."""
        return time.monotonic() - self.started > max(ESCALATE_SECONDS, 0.25 * (self.deadline - self.started))

    @property
    def refining(self) -> bool:
        """Whether open branches get their hidden bounds optimised (``_refine``): many inputs, after ``REFINE_AFTER``
        seconds."""
        return self.dense.steps[0].size > FEW_INPUTS and time.monotonic() - self.started > REFINE_AFTER

    @property
    def optimize(self) -> bool:
        """Whether branches the plain bound does not prove get optimised slopes and split multipliers: always with many
        inputs, after ``OPTIMIZE_AFTER`` seconds with few (properties the plain bounds decide at once stay fast)."""
        return self.dense.steps[0].size > FEW_INPUTS or time.monotonic() - self.started > OPTIMIZE_AFTER

    def _root(self, box: Box, prior: tuple[list, list] | None) -> "_Branches":
        """The branch of the whole box, inheriting ``prior`` (else nothing: infinite bounds)."""
        bounds = {i: (np.full((1, self.dense.steps[i].size), -np.inf), np.full((1, self.dense.steps[i].size), np.inf))
                  if prior is None else (prior[0][i][None], prior[1][i][None]) for i in self.inherited}
        return _Branches(box.lower[None], box.upper[None], np.zeros((1, self.slots.total), np.int8),
                         {}, np.full(1, -1), np.full(1, self.own)).with_bounds(bounds, -1)

    def _root_bounds(self, box: Box) -> tuple[list, list]:
        """Bounds of every step on the whole box with the hidden neurons' slopes optimised (α-CROWN, at most
        ``ROOT_SHARE`` of the time left): every branch inherits them, so a split never has to win back what the
        root's intermediate bounds give away."""
        stop = time.monotonic() + ROOT_SHARE * (self.deadline - time.monotonic())
        state = symbolic(interval(State.start(self.dense.net, box)))
        alpha(state, until=lambda: time.monotonic() >= stop or self.out_of_time())
        return state.lo, state.hi

    def _exact(self, spec: "_Objective", branch: "_Branches", seconds: float
               ) -> str | tuple[np.ndarray, np.ndarray]:
        """Decide one branch by MILP (big-M on its remaining unstable ReLUs, its fixed signs as bounds) in at most
        ``seconds``: ``unsat`` when the solver proves every region infeasible on it, a replayed counterexample, or
        ``unknown``."""
        from .analyzers.encoding import Encoder  # HiGHS and pulp load with the first leaf that needs them
        from .analyzers.milp import beyond_solver

        lo, hi = branch.lower, branch.upper
        state = analyse(self.dense, lo, hi, self.slots.split(branch.signs), prior=branch.prior(self.dense),
                        settled=branch.settled)
        if state.empty[0]:
            return "unsat"
        single = State.start(self.dense.net, Box(lo[0], hi[0]))
        for i in range(len(single.lo)):
            single.lo[i], single.hi[i] = state.lo[i][0], state.hi[i][0]
            single.noise[i] = None if state.noise[i] is None else state.noise[i][0]
        if beyond_solver(single):
            return "unknown"
        ends = min(self.deadline, time.monotonic() + seconds)  # (the leaf's time, shared by its regions)
        for region in spec.case.regions:
            enc = Encoder(single, integer=True)
            for i in range(len(single.lo)):
                enc.add(i)
            verdict, x = enc.region_feasible(self.dense.output, region.coef, region.bound,
                                             ends - time.monotonic())
            self.branches += 1
            if verdict == "solution":  # (on the rows as the solver's tolerances relax them: the attack from there)
                x = np.clip(x, lo[0], hi[0])[None]
                found = self.confirmed(spec.case, x)
                found = found if found is not None else self.attack(spec.case, at=x)
                return found if found is not None else "unknown"
            if verdict != "infeasible":
                return "unknown"
        return "unsat"

    def _candidates(self, lo: np.ndarray, hi: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per branch, the splits to try: every input wider than ``SMALLEST`` (few-input networks) and the
        ``RELU_CANDIDATES`` free unstable neurons the bound loses most on; ``-1`` pads."""
        n = lo.shape[1]
        parts = []
        if self.input_candidates(n):
            wide = (hi - lo) > SMALLEST * np.maximum(1.0, np.abs(lo))
            parts.append(np.where(wide, np.arange(n)[None], -1))
        k = min(self.relu_candidates(n), scores.shape[1])
        if k:
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            parts.append(np.where(np.take_along_axis(scores, top, axis=1) > 0, n + top, -1))
        return np.hstack(parts) if parts else np.full((len(lo), 1), -1)

    def _bound(self, spec: "_Objective", branches: "_Branches", scores: bool = False) -> "_Bounded":
        """Per branch, how far it is from proved (the least over regions of the region's best row's lower bound:
        proved when positive), a counterexample among the bounds' minimising corners and the boxes' centres, and
        (``scores``) per free unstable neuron what the bound loses on it (the split heuristic)."""
        lo, hi, sg = branches.lower, branches.upper, branches.signs
        progress = np.full(len(lo), -np.inf)  # (branches not bounded before the time ran out stay open)
        bounds = {i: (a.astype(np.float64), b.astype(np.float64)) for i, (a, b) in branches.bounds.items()}
        loss = np.zeros((len(lo), self.slots.total)) if scores else None
        spread = np.zeros(lo.shape) if scores else None
        refined = branches.refined.copy()  # per branch, the last step ``_refine`` optimised (all of them: ``own``)
        part = 0
        while part < len(lo) and not self.out_of_time():
            size = int(np.clip(ROUND_SECONDS / self.box_seconds, 4, BATCH))  # parts of about ROUND_SECONDS each
            cut = slice(part, part + size)
            part += size
            started = time.monotonic()
            record: dict[int, np.ndarray] | None = {} if scores else None
            signs = self.slots.split(sg[cut])
            state = analyse(self.dense, lo[cut], hi[cut], signs, prior=branches.take(cut).prior(self.dense),
                            settled=branches.settled[cut])
            for i, (a, b) in bounds.items():
                a[cut], b[cut] = state.lo[i], state.hi[i]
            low, A = objective(state, spec.coef, spec.bound, record)
            region_best = np.maximum.reduceat(low, spec.starts, axis=1)
            hard = np.flatnonzero(region_best.min(axis=1) <= 0)
            replaced = np.zeros(len(low), bool)  # boxes whose bound the optimised one replaced on some row
            if self.optimize and hard.size:  # slopes and split multipliers optimised where the plain bound fails
                plain_A = A.copy()
                better, better_A = optimized_objective(state.boxes(hard), spec.coef, spec.bound,
                                                       {i: v[hard] for i, v in signs.items()}, OPTIMIZE_STEPS,
                                                       until=self.out_of_time)
                improved = better > low[hard]
                low[hard] = np.where(improved, better, low[hard])
                A[hard] = np.where(improved[:, :, None], better_A, A[hard])
                replaced[hard] = improved.any(axis=1)
                region_best = np.maximum.reduceat(low, spec.starts, axis=1)
            still = hard[region_best[hard].min(axis=1) <= 0] if hard.size and self.refining else hard[:0]
            if still.size and not self.out_of_time():  # about ROUND_SECONDS of them, the nearest to proved first
                nearest = np.argsort(-region_best[still].min(axis=1), kind="stable")
                still = np.sort(still[nearest[:max(1, int(ROUND_SECONDS / self.refine_seconds))]])
                sub, improved = self._refine(spec, state.boxes(still), {i: v[still] for i, v in signs.items()},
                                             branches.refined[cut][still], still, low, A)
                replaced[still] |= improved
                refined[cut][still] = self.own
                for i, (a, b) in bounds.items():
                    a[cut][still], b[cut][still] = sub.lo[i], sub.hi[i]
                region_best = np.maximum.reduceat(low, spec.starts, axis=1)
            progress[cut] = region_best.min(axis=1)
            self.branches += len(low)
            self._report()  # (a batch's parts take about ROUND_SECONDS each)
            open_ = progress[cut] <= 0
            if not open_.any():
                self.box_seconds = (time.monotonic() - started) / len(low)
                continue
            rows = _best_rows(low, spec.starts)  # (boxes, regions)
            picked = np.take_along_axis(A, rows[:, :, None], axis=1)
            l, h = lo[cut][open_], hi[cut][open_]
            corners = _corners(picked[open_], l, h)
            again = replaced[open_]  # the plain bound's corners too there (ACAS 1_9 prop_7: sat in 2.4 s, not 40)
            if again.any():
                plain = np.take_along_axis(plain_A, rows[:, :, None], axis=1)[open_][again]
                corners = np.vstack([corners, _corners(plain, l[again], h[again])])
            found = self.promising(spec.case, np.vstack([corners, 0.5 * (l + h)]))
            if found is not None:
                return _Bounded(progress, found, None, bounds)
            if scores:
                loss[cut] = self.slots.losses(state, record, rows, region_best <= 0, sg[cut])
                spread[cut] = (np.abs(picked) * (region_best <= 0)[:, :, None]).sum(axis=1) * (hi[cut] - lo[cut])
            self.box_seconds = (time.monotonic() - started) / len(low)
        return _Bounded(progress, None, loss, bounds, spread, refined)

    def _refine(self, spec: "_Objective", state: BoxBounds, signs: dict[int, np.ndarray], after: np.ndarray,
                rows: np.ndarray, low: np.ndarray, A: np.ndarray) -> tuple[BoxBounds, np.ndarray]:
        """Open branches (``state``, rows ``rows`` of ``low`` and ``A``) bounded again with their hidden bounds
        optimised under their signs (``optimized_hidden``; the steps up to ``after`` are optimised already):
        ``low`` and ``A`` take the better bound in place; returns the tighter bounds and which branches improved."""
        started = time.monotonic()
        refined = optimized_hidden(state, signs, REFINE_STEPS, self.inherited, after, self.out_of_time)
        better, better_A = optimized_objective(refined, spec.coef, spec.bound, signs, OPTIMIZE_STEPS,
                                               until=self.out_of_time)
        improved = better > low[rows]
        low[rows] = np.where(improved, better, low[rows])
        A[rows] = np.where(improved[:, :, None], better_A, A[rows])
        self.refine_seconds = (time.monotonic() - started) / len(rows)
        return refined, improved.any(axis=1)

    def _count(self, proved: "_Branches") -> None:
        """Add the share of the input the proved branches stand for (a box's volume, halved per fixed ReLU)."""
        fixed = (proved.signs != 0).sum(axis=1)
        self.proved += np.exp(_log_volume(proved.lower, proved.upper) - fixed * np.log(2.0) - self.log_volume).sum()

    def _report(self) -> None:
        """Tell ``progress`` the proved share, the open branches and the seconds so far."""
        if self.progress is not None:
            self.progress(int(1000 * min(self.proved, 1.0)), self.open_branches, time.monotonic() - self.started)


def _best_split(progress: np.ndarray, candidates: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Per branch, the candidate whose two children (``progress`` in order branch, candidate, side) are left with the
    least to prove; among candidates that tie (children no better than their parent, which a split along an input
    already narrow gives), the input the parent's lower bound spreads most over (``spread``: ``|A|·width``)."""
    P, c = candidates.shape
    gap = np.minimum(progress, 0.0)  # what is left to prove (0: proved)
    both = (gap[0::2] + gap[1::2]).reshape(P, c)
    both[candidates < 0] = -np.inf
    top = both.max(axis=1, keepdims=True)
    tied = both >= top - 1e-9 * (1.0 + np.abs(top))
    inputs = (candidates >= 0) & (candidates < spread.shape[1])
    tie = np.where(inputs, np.take_along_axis(spread, np.where(inputs, candidates, 0), axis=1), 0.0)
    return np.argmax(np.where(tied, tie, -np.inf), axis=1)


def _corners(A: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The corners of each box ``[lo, hi]`` minimising each of its linear bounds ``A`` ``(boxes, rows, inputs)``."""
    return np.where(A > 0, lo[:, None, :], hi[:, None, :]).reshape(-1, lo.shape[1])


def _violation(region: Any, ys: np.ndarray) -> np.ndarray:
    """How far each output is from the region: the largest of its rows' ``coef @ y − bound`` (<= 0 inside)."""
    return np.max(ys @ region.coef.T - region.bound, axis=1)


@dataclass
class _Bounded:
    progress: np.ndarray
    found: tuple[np.ndarray, np.ndarray] | None
    scores: np.ndarray | None
    bounds: "_Bounds | None" = None
    spread: np.ndarray | None = None
    refined: np.ndarray | None = None


#: Per hidden Linear step, bounds ``(branches, size)`` of the float network that hold on each branch's part.
_Bounds = dict[int, tuple[np.ndarray, np.ndarray]]


@dataclass
class _Branches:
    """Branches: sub-boxes, ReLU signs, and the hidden steps' bounds each inherited from its parent (intersected with
    its own, so a branch never loses what its ancestors proved; kept in float32, rounded outwards); ``settled``: per
    branch, the last step whose bounds are its own already (``analyse`` does not back-substitute them again);
    ``refined``: the last step whose bounds are optimised under its signs already (``_refine``; a split at a step
    changes what the signs give only after it)."""

    lower: np.ndarray
    upper: np.ndarray
    signs: np.ndarray
    bounds: _Bounds
    settled: np.ndarray
    refined: np.ndarray

    def __len__(self) -> int:
        return len(self.lower)

    def take(self, rows: slice | np.ndarray) -> "_Branches":
        return _Branches(self.lower[rows], self.upper[rows], self.signs[rows],
                         {i: (lo[rows], hi[rows]) for i, (lo, hi) in self.bounds.items()}, self.settled[rows],
                         self.refined[rows])

    def prior(self, dense: DenseNetwork) -> tuple[list, list]:
        """The bounds as ``analyse`` takes them (None for steps not kept)."""
        lo: list = [None] * len(dense.steps)
        hi: list = [None] * len(dense.steps)
        for i, (a, b) in self.bounds.items():
            lo[i], hi[i] = a.astype(np.float64), b.astype(np.float64)
        return lo, hi

    def with_bounds(self, bounds: _Bounds, settled: int, refined: np.ndarray | None = None) -> "_Branches":
        """These branches with ``bounds`` (float64, one row per branch) as what they inherit, their own up to step
        ``settled`` (-1: none of them), optimised under their signs up to ``refined`` (default: as they were)."""
        return _Branches(self.lower, self.upper, self.signs, {i: _outward32(a, b) for i, (a, b) in bounds.items()},
                         np.full(len(self), settled), self.refined if refined is None else refined)

    @staticmethod
    def stack(parts: list["_Branches"]) -> "_Branches":
        first = parts[0]
        return _Branches(np.vstack([p.lower for p in parts]), np.vstack([p.upper for p in parts]),
                         np.vstack([p.signs for p in parts]),
                         {i: (np.vstack([p.bounds[i][0] for p in parts]), np.vstack([p.bounds[i][1] for p in parts]))
                          for i in first.bounds}, np.concatenate([p.settled for p in parts]),
                         np.concatenate([p.refined for p in parts]))


def _outward32(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``[lo, hi]`` in float32, rounded outwards (``cast_box``: a bound stays one)."""
    lo32, hi32 = cast_box(lo, hi, np.float32)
    return lo32.astype(np.float32), hi32.astype(np.float32)


class _Objective:
    """A case's regions as the rows the bound engine takes: each region's rows and their sums (``_with_sums``),
    stacked, with where each region starts."""

    def __init__(self, case: Case) -> None:
        rows = [_with_sums(r.coef, r.bound) for r in case.regions]
        self.case = case
        self.starts = np.cumsum([0] + [len(b) for _, b in rows])[:-1]
        self.coef, self.bound = np.vstack([c for c, _ in rows]), np.concatenate([b for _, b in rows])


def _with_sums(coef: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A region's rows and the sums of every two and of all of them: a point in the region makes each sum <= 0 too,
    and a sum can be positive on a whole box where no single row is (rows that refute the region on different
    parts of it)."""
    m = len(bound)
    if m < 2:
        return coef, bound
    i, j = np.triu_indices(m, 1)
    extra_c, extra_b = [coef[i] + coef[j]], [bound[i] + bound[j]]
    if m > 2:
        extra_c.append(coef.sum(axis=0, keepdims=True))
        extra_b.append(bound.sum(keepdims=True))
    return np.vstack([coef, *extra_c]), np.concatenate([bound, *extra_b])


def _log_volume(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per box, the logarithm of its volume (a box of many narrow inputs has a volume below float's range)."""
    return np.log(np.maximum(hi - lo, 1e-300)).sum(axis=1)


def _best_rows(low: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per box and region, the index (in ``low``'s columns) of the region's row with the largest lower bound."""
    ends = np.append(starts[1:], low.shape[1])
    return np.stack([s + np.argmax(low[:, s:e], axis=1) for s, e in zip(starts, ends)], axis=1)
