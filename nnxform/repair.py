"""Repair of a compressed network (paper 000, Algorithm 1): retrain it toward the original until the sound
discrepancy over a domain is small enough.

Each round bounds ``f1 − f2`` per output over every box of the domain by the difference analysis
(``discrepancy.Pair``, sound for the float32 networks as onnxruntime runs them), draws samples of the domain
(half uniform, half random vertices of its boxes), builds targets for f2 and retrains it a few epochs on mean squared error (``training.train``), then bounds the
discrepancy again; it stops when the bound lies in the target set (``‖f1 − f2‖∞ <= target``) or after ``rounds``.
With ``prove`` seconds, a box whose bound misses the target also gets ``equiv``'s search (input halving for few
inputs, LP/MILP otherwise): what it proves is the box's bound, so a round it proves ends the repair.
The network written is the round's with the smallest sound bound (round 0, the compressed network as given, when no
round improves on it), so a repair never gives a network with a larger bound than the one it was given.
Targets (``update``):

- ``paper``: ``ŷ2 = f2(x) + δ̃/α`` with ``δ̃`` the per-output upper bound of ``f1 − f2`` over the domain
  (eq. 16 and 20 of the paper): one shift of every sample by the worst case;
- ``pointwise``: ``ŷ2 = f2(x) + (f1(x) − f2(x))/α`` on the samples plus each round's witnesses (the witness
  search's best input in the boxes with the largest bounds, and in every box the vertices where the analysis's
  linear bound of each output is worst): f2 moves toward f1 where they differ. It is the default: on the
  benchmarks (``bench/repair.py``) it reduces the sound bound several times where the paper's shift does not.

Repair keeps the compression (``keep_grid``, ``keep_zeros``): a compressed network whose weights sit on a
quantisation grid (``grid.detect``) is retrained on that grid with straight-through gradients, its steps searched in
round 1 (``scales`` "searched": ``rescale``, the original's weights rounded onto them) or kept as they came, and
written on it (same bits and layout, same size), in the form it came in (float values on the grid, or weight-only QDQ); weights exactly 0 stay 0
(pruned units and weights stay removed), and every layer keeps its shape.

Off a grid, round 1 refits instead of retraining (``refit``): the first and last Dense layers are fitted by ridge
least squares on the round's samples, the first to the original's first pre-activations, the last to its outputs
(zeros kept). On a pruned 784-input network retraining lowers the real difference but raises the sound bound (Adam
moves every weight of the wide first layer, and the analysis pays the L1 norm of the change per unit); the refit
moves each first-layer unit to the original on the domain at the least change, and lowers the bound.

``train_points`` (outside the domain, e.g. the training data) are retrained with the same rule, as the paper adds
images outside its boxes, so that the network is not repaired on the boxes at the cost of accuracy elsewhere.
Every bound reported is sound: each round's is checked against the largest difference sampled in onnxruntime
(a sampled difference beyond a bound is an error, never a report), and the final one is recomputed on the network
as written, which must load and evaluate in onnxruntime.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from .accuracy import Dataset
from .analyzers import bounds as output_bounds
from .discrepancy import DIFFERENCE_METHODS, Pair
from .domain import Box
from .equiv import equivalence
from .errors import NnxformError
from .grid import Grid, LayerGrid, detect, qdq_model
from .interpreter import run
from .ir import Model, from_proto
from .layered import Dense, Network, model_size
from .runtime import OnnxRunner
from .training import TrainOptions, check_common, train, trainable

UPDATES = ("pointwise", "paper")
SCALES = ("fixed", "searched")
#: The steps the scale search tries, as shares of the largest latent weight per tensor or channel over the levels.
STEP_SHARES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
#: How round 1 with searched steps rounds the original's weights (``rescale``): each is tried, the better kept.
ROUNDINGS = ("gptq", "nearest")
#: GPTQ's damping of the inputs' second moment, as a share of its mean diagonal (the usual 1 %).
GPTQ_DAMPING = 0.01
#: Boxes whose witnesses join the pointwise rule's samples each round (those with the largest bounds).
WITNESS_BOXES = 4
#: The refit's ridge toward the current weights, in units of the mean squared input per feature and sample (measured
#: on mnist-net_256x2 pruned: 1 to 10 give nearly the same bound; 0.01 overfits the samples of a 784-input box).
REFIT_RIDGE = 3.0


@dataclass(frozen=True)
class RepairOptions:
    """Algorithm 1's knobs: the step ``alpha`` (>= 1), the update rule, at most ``rounds`` rounds of ``epochs``
    epochs on ``samples`` samples of the domain, the target (``target`` on ``‖f1 − f2‖∞``, or ``target_ratio`` of
    the initial bound; neither: run every round), the training's ``lr`` and ``batch_size``, the discrepancy
    ``method``, the ``seed`` of the samples and the shuffling, whether to retrain on the compressed network's
    quantisation grid (``keep_grid``; None: when it has one) and to keep its zero weights at 0 (``keep_zeros``;
    None: off a grid, where zeros can only be pruning; on a grid a zero is one of its levels), and the seconds
    ``equiv``'s search may take per analysis to prove the target where the ``method``'s bound misses it (``prove``;
    0: never), and whether round 1 refits the first and last layers by least squares instead of retraining
    (``refit``; off a grid only), and on a grid whether round 1 searches new steps (``scales``: ``fixed`` or
    ``searched``); the report gives the values used."""

    alpha: float = 2.0
    update: str = "pointwise"
    rounds: int = 10
    epochs: int = 3
    samples: int = 1000
    target: float | None = None
    target_ratio: float | None = None
    lr: float = 1e-3
    batch_size: int = 64
    method: str = "symbolic"
    seed: int = 0
    keep_grid: bool | None = None
    keep_zeros: bool | None = None
    prove: float = 0.0
    refit: bool = True
    scales: str = "searched"

    def check(self) -> "RepairOptions":
        """Refuse values no repair can use, in one line naming the option."""
        if self.update not in UPDATES:
            raise NnxformError(f"update must be one of {', '.join(UPDATES)}, got '{self.update}'")
        if self.scales not in SCALES:
            raise NnxformError(f"scales must be one of {', '.join(SCALES)}, got '{self.scales}'")
        if self.method not in DIFFERENCE_METHODS:
            raise NnxformError(f"method must be one of {', '.join(DIFFERENCE_METHODS)}, got '{self.method}'")
        check_common(self, ("rounds", "epochs", "samples", "batch_size"))
        if not (np.isfinite(self.alpha) and self.alpha >= 1):
            raise NnxformError(f"alpha must be a number >= 1 (the paper's step 1/alpha), got {self.alpha}")
        if self.target is not None and self.target_ratio is not None:
            raise NnxformError("give one target: target (a bound on ‖f1 − f2‖∞) or target_ratio (a share of the "
                               "initial bound)")
        if self.target is not None and not (np.isfinite(self.target) and self.target > 0):
            raise NnxformError(f"target must be a positive number, got {self.target}")
        if self.target_ratio is not None and not (np.isfinite(self.target_ratio) and 0 < self.target_ratio < 1):
            raise NnxformError(f"target ratio must be in (0, 1), got {self.target_ratio}")
        if not (np.isfinite(self.prove) and self.prove >= 0):
            raise NnxformError(f"prove must be a number of seconds >= 0, got {self.prove}")
        if self.prove and self.target is None and self.target_ratio is None:
            raise NnxformError("prove needs a target (target or target_ratio): it proves the bound below it")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DomainBound:
    """Sound bounds of ``f1 − f2`` over a domain of boxes: per output over all boxes, ``δ_max`` per box, and the
    largest ``|f1 − f2|`` found in onnxruntime (which never exceeds them)."""

    lower: np.ndarray
    upper: np.ndarray
    per_box: np.ndarray  # sound ‖f1 − f2‖∞ bound per box
    per_box_outputs: np.ndarray  # per box, the mean over outputs of the sound max |f1,i − f2,i|
    sampled_max: float
    seconds: float

    @property
    def delta_max(self) -> float:
        return float(self.per_box.max())

    @property
    def mean(self) -> float:
        """The mean over the boxes of their sound ``δ_max``."""
        return float(self.per_box.mean())

    def to_json(self) -> dict[str, Any]:
        return {"bound": self.delta_max, "mean_box_bound": self.mean, "sampled_max": self.sampled_max,
                "lower": self.lower.tolist(), "upper": self.upper.tolist(), "per_box": self.per_box.tolist(),
                "per_box_mean_over_outputs": self.per_box_outputs.tolist(), "seconds": self.seconds}


@dataclass
class RoundRecord:
    """One round: the sound bound after it (round 0: before any training), the mean over boxes, the largest
    difference sampled, accuracy on the test data (None without), the training's last loss and the time taken."""

    round: int
    bound: float
    mean_box_bound: float
    sampled_max: float
    accuracy: float | None
    loss: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RepairResult:
    """The repaired network (as written and reloaded) and what the repair did: the bounds before and after (the
    final one recomputed on the written network), every round, the round whose network is written (``kept``, the
    smallest sound bound; 0: the compressed network unchanged), why it stopped, accuracies, sizes, and the
    guaranteed output range of the compressed network on the first box before and after (paper 000's Fig. 2)."""

    model: Model
    options: RepairOptions
    boxes: int
    train_points: int
    initial: DomainBound
    final: DomainBound
    rounds: list[RoundRecord]
    kept: int
    target: float | None
    reached: bool | None  # None without a target
    accuracy: dict[str, float | None]
    output_ranges: dict[str, Any]
    seconds: float
    data: bytes  # the ONNX file to write (``model`` is it as loaded)
    grid: Grid | None  # the grid kept (None: retrained in float)
    sizes: dict[str, dict[str, Any]]  # compressed and repaired: stored KB, non-zero weights
    notes: list[str] = field(default_factory=list)

    @property
    def reduction(self) -> float:
        """How many times smaller the sound bound is after repair."""
        return self.initial.delta_max / self.final.delta_max if self.final.delta_max > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {"options": self.options.to_json(), "boxes": self.boxes, "train_points": self.train_points,
                "initial_bound": self.initial.delta_max, "final_bound": self.final.delta_max,
                "reduction": self.reduction if np.isfinite(self.reduction) else None,
                "kept_round": self.kept, "target": self.target, "reached": self.reached,
                "before": self.initial.to_json(), "after": self.final.to_json(),
                "accuracy": self.accuracy, "rounds": [r.to_json() for r in self.rounds],
                "output_ranges": self.output_ranges, "size": model_size(self.model).totals(),
                "grid": None if self.grid is None else self.grid.to_json(), "sizes": self.sizes,
                "seconds": self.seconds, "notes": list(self.notes)}


#: Called after every round with its record and the number of rounds asked for.
Progress = Callable[[RoundRecord, int], None]


def boxes_around(points: np.ndarray, eps: float, clip: tuple[float | None, float | None] = (None, None)
                 ) -> list[Box]:
    """The L∞ boxes of radius ``eps`` around each point (flat rows), clipped to ``clip`` (e.g. pixels in [0, 1])."""
    if not (np.isfinite(eps) and eps >= 0):
        raise NnxformError(f"eps must be a finite number >= 0, got {eps}")
    points = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    if not np.all(np.isfinite(points)):
        raise NnxformError("the points contain NaN or infinite values")
    lo = points - eps if clip[0] is None else np.maximum(points - eps, clip[0])
    hi = points + eps if clip[1] is None else np.minimum(points + eps, clip[1])
    return [Box(a, b) for a, b in zip(lo, hi)]


def repair(original: Model, compressed: Model, boxes: list[Box], options: RepairOptions = RepairOptions(), *,
           train_points: np.ndarray | None = None, test: Dataset | None = None, progress: Progress | None = None,
           form: str = "float") -> RepairResult:
    """``compressed`` retrained until its sound discrepancy to ``original`` over the union of ``boxes`` lies in
    the target set or ``options.rounds`` have passed, the round with the smallest bound kept (see the module's
    docstring); ``train_points`` are retrained too, ``test`` (labelled) measures accuracy after every round;
    ``form`` is how the compressed file stores a grid (``grid.file_form``: ``float`` or ``qdq``), kept on writing."""
    options.check()
    started = time.perf_counter()
    _check_pair(original, compressed)
    if not boxes:
        raise NnxformError("the domain holds no box")
    for box in boxes:
        box.fit(original.input_size)
    extra = _points(train_points, original.input_size)
    if test is not None:
        test.fit(original)
        test.fit(compressed)
    net, notes = trainable(compressed)
    grid = _grid(net, form, options, notes)
    options = dataclasses.replace(options, keep_grid=grid is not None,
                                  keep_zeros=grid is None if options.keep_zeros is None else options.keep_zeros)
    rng = np.random.default_rng(options.seed)
    lowers, uppers = np.stack([b.lower for b in boxes]), np.stack([b.upper for b in boxes])
    centres = 0.5 * (lowers + uppers)

    t0 = time.perf_counter()
    start = compressed if grid is None else _written(net)  # on a grid: its layers, as every round writes them
    first = net  # start's layers: read once (``_size`` does not read start again)
    initial, witnesses = _analyse(Pair(original, start), boxes, options, rng, options.target)
    accuracy = _accuracy(start, test)
    rounds = [RoundRecord(0, initial.delta_max, initial.mean, initial.sampled_max, accuracy, None,
                          time.perf_counter() - t0)]
    if progress is not None:
        progress(rounds[0], options.rounds)
    target = options.target if options.target_ratio is None else options.target_ratio * initial.delta_max
    current, model, latent = initial, start, net
    refitting = options.refit and grid is None
    if options.refit and grid is not None:
        notes.append("no refit on a grid (least squares would leave it)")
    searching = grid is not None and options.scales == "searched"
    reference = trainable(original)[0] if refitting or searching else None  # the original's layers, read once
    rescaling = searching and _aligned(reference, grid, notes)
    grids, kept_grid = [grid], grid  # per round, the grid its network sits on
    kept, best = 0, start  # the round with the smallest sound bound so far, and its network
    for k in range(1, options.rounds + 1):
        if target is not None and current.delta_max <= target:
            break
        t0 = time.perf_counter()
        xs, _ = _sample(lowers, uppers, options.samples, rng)
        xs = np.vstack([xs, centres] + ([witnesses] if options.update == "pointwise" else []) + [extra])
        if k == 1 and refitting:
            net, loss = refit(reference, net, xs, options.keep_zeros)
            latent = net
        elif k == 1 and rescaling:
            net, latent, grid, model, (current, witnesses) = _rescaled(original, reference, net, grid, xs, boxes,
                                                                       options, rng, target, notes)
            loss = None
        else:
            y2 = net.forward(xs).reshape(len(xs), -1)
            if options.update == "paper":
                targets = y2 + current.upper / options.alpha
            else:
                y1 = run(original, xs).reshape(len(xs), -1)
                targets = y2 + (y1 - y2) / options.alpha
            train_options = TrainOptions(epochs=options.epochs, lr=options.lr, batch_size=options.batch_size,
                                         seed=options.seed + k, keep_zeros=options.keep_zeros)
            net, trained = train(latent, xs, targets=targets, options=train_options, grid=grid)
            latent, loss = net if trained.latent is None else trained.latent, trained.epochs[-1].data_loss
        if not (k == 1 and rescaling):
            model = _written(net)
            current, witnesses = _analyse(Pair(original, model), boxes, options, rng, target)
        rounds.append(RoundRecord(k, current.delta_max, current.mean, current.sampled_max, _accuracy(model, test),
                                  loss, time.perf_counter() - t0))
        grids.append(grid)
        if current.delta_max < rounds[kept].bound:
            kept, best, kept_grid = k, model, grid
        if progress is not None:
            progress(rounds[-1], options.rounds)

    given, grid = grids[0], kept_grid
    best = best.copy().with_provenance("repair", {
        **options.to_json(), "boxes": len(boxes), "train_points": len(extra), "kept_round": kept,
        "grid": None if grid is None else grid.to_json(), "original_sha256": original.source.get("sha256", "")})
    best.metadata["nnxform.source_sha256"] = compressed.source.get("sha256", "")
    proto = best.to_onnx() if grid is None or grid.form == "float" else qdq_model(best.to_onnx(), net, grid)
    data = proto.SerializeToString(deterministic=True)
    final_model = _reloaded(data, centres)
    sizes = {"compressed": _size(start, given, "compressed", first),
             "repaired": _size(final_model, grid, "repaired", trainable(final_model)[0] if grid else None)}
    final, _ = _analyse(Pair(original, final_model), boxes, options, np.random.default_rng(options.seed), target)
    reached = None if target is None else final.delta_max <= target
    accuracy_summary = {"original": _accuracy(original, test), "compressed": rounds[0].accuracy,
                        "repaired": _accuracy(final_model, test)}
    ranges = _output_ranges(original, start, final_model, boxes[0], options.method)
    return RepairResult(final_model, options, len(boxes), len(extra), initial, final, rounds, kept, target, reached,
                        accuracy_summary, ranges, time.perf_counter() - started, data, grid, sizes, notes)


def refit(original: Network, net: Network, xs: np.ndarray, keep_zeros: bool | None) -> tuple[Network, float]:
    """``net`` with its first and last Dense layers refitted by ridge least squares on the points ``xs`` (the
    domain's samples): the first to the original's first pre-activations (where both networks begin alike: the
    same parameter-free layers, then a Dense of the same shape), the last to the original's outputs, each on the
    inputs ``net`` gives it; weights toward their current values (``REFIT_RIDGE``), biases free, zero weights kept
    with ``keep_zeros``. It moves every unit of the first layer toward the original on the domain in one step (the
    pruned weights' share of each pre-activation, which retraining spreads over epochs), and the output exactly to
    what the hidden units can give. Returns the network and the mean squared output difference on ``xs``."""
    layers = list(net.layers)
    dense = [k for k, layer in enumerate(layers) if isinstance(layer, Dense)]
    first_ok = bool(dense) and len(original.layers) > dense[0] and all(
        type(a) is type(b) and not b.PARAMS for a, b in zip(original.layers[:dense[0]], layers[:dense[0]])) and \
        isinstance(original.layers[dense[0]], Dense) and np.shape(original.layers[dense[0]].W) == np.shape(
            layers[dense[0]].W)
    last = dense[-1] if dense and dense[-1] == len(layers) - 1 else None
    values = original.forward(xs, keep=True)
    y1 = values[-1].reshape(len(xs), -1)
    h = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(net.input_shape))
    for k, layer in enumerate(layers):
        if (k == dense[0] and first_ok) or k == last:
            target = values[k + 1].reshape(len(xs), -1) if k != last else y1
            layers[k] = _least_squares(layer, h.reshape(len(h), -1), target, keep_zeros)
        h = layers[k].forward(h)
    fitted = dataclasses.replace(net, layers=layers)
    return fitted, float(np.mean((h.reshape(len(xs), -1) - y1) ** 2))


def _least_squares(layer: Dense, inputs: np.ndarray, target: np.ndarray, keep_zeros: bool | None) -> Dense:
    """``layer`` with ``W, b`` minimising ``‖inputs·Wᵀ + b − target‖² + λ‖W − W₀‖²`` (``λ``: ``REFIT_RIDGE`` times
    the inputs' mean square per feature times the samples), each row over its non-zero weights with
    ``keep_zeros``."""
    n = len(inputs)
    X = np.hstack([inputs, np.ones((n, 1))])
    W0 = np.hstack([layer.W, layer.b[:, None]])
    ridge = np.full(X.shape[1], REFIT_RIDGE * float(np.mean(inputs * inputs)) * n)
    ridge[-1] = 0.0  # the bias is free
    G, R = X.T @ X, X.T @ target + ridge[:, None] * W0.T
    if not keep_zeros or np.all(layer.W != 0):
        solved = np.linalg.solve(G + np.diag(ridge), R).T
    else:
        solved = np.zeros_like(W0)
        for j, row in enumerate(np.append(layer.W != 0, np.ones((len(W0), 1), bool), axis=1)):
            idx = np.flatnonzero(row)
            solved[j, idx] = np.linalg.solve(G[np.ix_(idx, idx)] + np.diag(ridge[idx]), R[idx, j])
    return layer.replace(W=solved[:, :-1], b=solved[:, -1])


def _aligned(reference: Network, grid: Grid, notes: list[str]) -> bool:
    """Whether the original's layers (``reference``) match the grid's layers (same index, same shape), as the scale
    search needs (it rounds the original's weights); a note says why not."""
    if all(k < len(reference.layers) and np.shape(getattr(reference.layers[k], "W", None)) == g.shape
           for k, g in grid.layers.items()):
        return True
    notes.append("scales kept fixed: the original's layers do not match the compressed network's grid layers")
    return False


def _rescaled(original: Model, reference: Network, net: Network, grid: Grid, xs: np.ndarray, boxes: list[Box],
              options: RepairOptions, rng: np.random.Generator, target: float | None, notes: list[str]
              ) -> tuple[Network, Network, Grid, Model, tuple[DomainBound, np.ndarray]]:
    """Round 1 with searched steps: ``rescale`` with each rounding of ``ROUNDINGS``, the one with the smallest sound
    bound kept (neither wins everywhere: GPTQ on the digits, nearest on mnist-net_256x2's 784 inputs); its network,
    latent network, grid, written model and analysis; a note says which (``reference``: the original's layers)."""
    tried = []
    for rounding in ROUNDINGS:
        fitted, latent, found = rescale(reference, net, grid, xs, options.keep_zeros, rounding)
        model = _written(fitted)
        tried.append((rounding, fitted, latent, found, model, _analyse(Pair(original, model), boxes, options, rng,
                                                                        target)))
    best = min(tried, key=lambda t: t[5][0].delta_max)
    others = ", ".join(f"{t[0]} {t[5][0].delta_max:.5g}" for t in tried if t is not best)
    notes.append(f"round 1 searched the grid's steps and rounded the original's weights onto them, {best[0]} "
                 f"rounding (sound bound {best[5][0].delta_max:.5g}; {others})")
    return best[1], best[2], best[3], best[4], best[5]


def rescale(original: Network, net: Network, grid: Grid, xs: np.ndarray, keep_zeros: bool | None,
            rounding: str = "gptq") -> tuple[Network, Network, Grid]:
    """New steps for ``net``'s grid (same layers, widths and step counts: the same storage) and the original's weights
    rounded onto them, layer by layer: per tensor or channel, the step among ``STEP_SHARES`` of the largest weight
    over the levels whose rounding changes the layer's output least on the points ``xs`` (``d·H·dᵀ`` per output row,
    ``H`` the second moment of the layer's inputs there). ``nearest``: the original's weights rounded to nearest, ``H``
    of the original's inputs, biases kept. ``gptq`` (dense layers; a convolution is rounded to nearest): the weights
    and bias that best map the rounded network's own inputs to the original's pre-activations (ridge least squares,
    as ``refit``), then rounded column by column with each column's error compensated on the columns left (GPTQ,
    Frantar et al. 2023, ``H`` of those inputs). Weights 0 in ``net`` stay 0 with ``keep_zeros``. Returns the network
    on the new grid, the latent network to retrain from (``nearest``: the original's weights, which round to it;
    ``gptq``: the rounded weights themselves), and the grid (``scales`` "searched")."""
    values = original.forward(xs, keep=True)
    layers, latent, found = list(net.layers), list(net.layers), {}
    h = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(net.input_shape))
    for k in range(len(layers)):
        if k not in grid.layers:
            h = layers[k].forward(h)
            continue
        g = grid.layers[k]
        W = np.array(original.layers[k].W, dtype=np.float64)
        free = np.ones(W.shape, bool) if not keep_zeros else np.asarray(net.layers[k].W) != 0
        W[~free] = 0.0
        axis = 0 if g.axis is None else g.axis
        reduce = tuple(a for a in range(W.ndim) if a != g.axis)
        dense = isinstance(net.layers[k], Dense)
        inputs = values[k].reshape(len(xs), -1)
        bias = None
        if rounding == "gptq" and dense:
            inputs = h.reshape(len(xs), -1)
            fitted = _least_squares(original.layers[k], inputs, values[k + 1].reshape(len(xs), -1), False)
            W, bias = np.where(free, fitted.W, 0.0), fitted.b
        largest = np.abs(W).max(axis=reduce, keepdims=True)
        H = inputs.T @ inputs / len(xs) if dense else None
        U = _inverse_factor(H) if dense and rounding == "gptq" else None
        best_error, best_step, best_W = None, None, None
        for share in STEP_SHARES:
            step = (share * largest / g.levels).astype(np.float32)
            on = dataclasses.replace(g, step=step)
            Wq = on.project(W) if U is None else _gptq(W, on, U, free)
            d = np.moveaxis(W - Wq, axis, 0).reshape(W.shape[axis], -1)
            error = np.sum((d @ H) * d, axis=1) if dense else np.sum(d * d, axis=1)
            if best_error is None:
                best_error, best_step, best_W = error, step, Wq
            elif g.axis is None:
                if error.sum() < best_error.sum():
                    best_error, best_step, best_W = error, step, Wq
            else:  # per channel: each output channel keeps its best step
                better = np.moveaxis((error < best_error).reshape((-1,) + (1,) * (W.ndim - 1)), 0, axis)
                best_error = np.minimum(error, best_error)
                best_step, best_W = np.where(better, step, best_step), np.where(better, Wq, best_W)
        found[k] = dataclasses.replace(g, step=np.asarray(best_step, dtype=np.float32))
        layers[k] = net.layers[k].replace(W=best_W) if bias is None else net.layers[k].replace(W=best_W, b=bias)
        latent[k] = layers[k] if rounding == "gptq" else layers[k].replace(W=W)
        h = layers[k].forward(h)
    new = dataclasses.replace(grid, layers=found, scales="searched")
    return dataclasses.replace(net, layers=layers), dataclasses.replace(net, layers=latent), new


def _inverse_factor(H: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor ``U`` of ``H⁻¹ = Uᵀ·U``, ``H`` damped by ``GPTQ_DAMPING`` of its mean diagonal."""
    n = len(H)
    damped = H + (GPTQ_DAMPING * float(np.mean(np.diag(H))) + 1e-12) * np.eye(n)
    return np.linalg.cholesky(np.linalg.inv(damped)).T


def _gptq(W: np.ndarray, grid: LayerGrid, U: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``W`` (dense, ``[out, in]``) on ``grid``, column by column, each column's rounding error spread over the
    columns after it through ``U`` (``_inverse_factor`` of the inputs' second moment ``H``), so that
    ``(W − Wq)·H·(W − Wq)ᵀ`` stays small; weights not ``free`` are 0."""
    W = W.copy()
    n = W.shape[1]
    step = np.broadcast_to(grid.step.astype(np.float64), (W.shape[0], 1))[:, 0]
    divisor = np.where(step > 0, step, 1.0)
    out = np.zeros_like(W)
    for i in range(n):
        q = np.clip(np.round(W[:, i] / divisor), -grid.levels, grid.levels)
        q = np.where(free[:, i], (q.astype(np.float32) * step.astype(np.float32)).astype(np.float64), 0.0)
        out[:, i] = q
        W[:, i + 1:] -= np.outer((W[:, i] - q) / U[i, i], U[i, i + 1:])
    return out


def _grid(net: Network, form: str, options: RepairOptions, notes: list[str]) -> Grid | None:
    """The grid the repair keeps: the one ``net`` sits on unless ``keep_grid`` is False (a note says it is lost);
    ``keep_grid`` True on a network on no grid is an error."""
    found = detect(net, form)
    if found is None and options.keep_grid:
        raise NnxformError("keep-grid: the compressed network's weights sit on no symmetric integer grid (per tensor "
                           "or per output channel, 2 to 16 bits)")
    if found is not None and options.keep_grid is False:
        notes.append(f"retrained in float: the {found.kinds} grid is not kept")
        return None
    return found


def _size(model: Model, grid: Grid | None, which: str, net: Network | None) -> dict[str, Any]:
    """Storage of ``model`` in KB (on ``grid``: its layers ``net`` at the grid's width; else float32 parameters) and
    its non-zero weights; on a grid, a network off it is an error (the repair would have lost the compression)."""
    size = model_size(model)
    if grid is None or net is None:
        return {"kb": 4 * size.parameters / 1024, "nonzero_weights": size.connections}
    if not grid.holds(net):
        raise NnxformError(f"the {which} network is not on the grid it was given; nothing written (please report it)")
    return {"kb": grid.storage_bytes(net) / 1024, "nonzero_weights": size.connections}


def _check_pair(original: Model, compressed: Model) -> None:
    """Refuse two networks that do not take and give the same number of values (Assumption 1 (i)-(ii))."""
    if original.input_size != compressed.input_size:
        raise NnxformError(f"the inputs differ in size: the original takes {original.input_size} values, the "
                           f"compressed network {compressed.input_size}")
    sizes = [int(np.prod(m.shapes()[m.output_name], dtype=np.int64)) for m in (original, compressed)]
    if sizes[0] != sizes[1]:
        raise NnxformError(f"the outputs differ in size: the original gives {sizes[0]} values, the compressed "
                           f"network {sizes[1]}")


def _points(points: np.ndarray | None, size: int) -> np.ndarray:
    """Extra retraining points as flat float64 rows (none: an empty array); one-line errors for bad ones."""
    if points is None:
        return np.empty((0, size))
    points = np.asarray(points, dtype=np.float64)
    points = points.reshape(len(points), -1) if points.ndim else points.reshape(0, size)
    if points.shape[1] != size:
        raise NnxformError(f"the retraining points have {points.shape[1]} features but the network input has {size}")
    if not np.all(np.isfinite(points)):
        raise NnxformError("the retraining points contain NaN or infinite values")
    return points


def _written(net: Network) -> Model:
    """The network as the ONNX file it would be written as (float32 weights), read back."""
    return from_proto(onnx.load_from_string(net.to_model().to_bytes()))


def _reloaded(data: bytes, xs: np.ndarray) -> Model:
    """The ONNX ``data`` loaded, after checking onnxruntime loads it and gives finite outputs on ``xs``."""
    loaded = from_proto(onnx.load_from_string(data))
    try:
        out = OnnxRunner(loaded)(xs)
    except Exception as exc:  # onnxruntime's own error types
        raise NnxformError(f"the repaired network does not run in onnxruntime ({exc}); nothing written") from None
    if not np.all(np.isfinite(out)):
        raise NnxformError("the repaired network gives non-finite outputs in onnxruntime; nothing written")
    return loaded


def _analyse(pair: Pair, boxes: list[Box], options: RepairOptions, rng: np.random.Generator,
             target: float | None = None) -> tuple[DomainBound, np.ndarray]:
    """Sound bounds over every box, the largest difference seen in onnxruntime, and the witnesses: the witness
    search's best input in the boxes with the largest bounds, and in every box the vertices where the analysis's
    linear bounds of each output are worst (plus an LP's solutions). With ``options.prove`` and a ``target``, the
    boxes whose bound misses it get ``equiv``'s search (its proved bound replaces theirs; its counterexample joins
    the witnesses). The difference is seen at the witnesses and at samples of the domain; one beyond a bound is
    refused (it would be a bug of the analysis)."""
    t0 = time.perf_counter()
    found = [pair.bound(box, options.method) for box in boxes]
    lower, upper = np.stack([r.lower for r in found]), np.stack([r.upper for r in found])
    magnitude = np.maximum(np.abs(lower), np.abs(upper))
    per_box = magnitude.max(axis=1)
    worst = np.argsort(-per_box, kind="stable")[:WITNESS_BOXES]
    points = [(int(i), pair.witness(boxes[i], seed=options.seed)[0][None]) for i in worst]
    missed = np.flatnonzero(per_box > target) if options.prove and target is not None else np.array([], int)
    for i in missed:
        r = equivalence(pair.a, pair.b, boxes[i], target, timeout=options.prove / missed.size)
        per_box[i] = min(per_box[i], r.bound)
        points.append((int(i), r.witness[None]))
        if r.answer == "not equivalent":
            break  # the target is missed on this box: the rest cannot change that
    for i, (box, r) in enumerate(zip(boxes, found)):
        if r.input_coef is not None:  # rows [lower; −upper]: each row's linear bound is least at this vertex
            points.append((i, np.where(r.input_coef > 0, box.lower, box.upper)))
        if r.points:
            points.append((i, np.stack(r.points)))
    witnesses = np.vstack([p for _, p in points])
    xs, which = _sample(np.stack([b.lower for b in boxes]), np.stack([b.upper for b in boxes]), options.samples, rng)
    xs = np.vstack([xs, witnesses])
    box_of = np.concatenate([which] + [np.full(len(p), i) for i, p in points])
    ra, rb = pair.runners
    seen = np.abs(ra(xs).astype(np.float64) - rb(xs).astype(np.float64)).max(axis=1)
    beyond = seen > per_box[box_of]
    if beyond.any():
        i = int(np.argmax(beyond))
        raise NnxformError(f"a sampled difference {seen[i]:.6g} exceeds the sound bound {per_box[box_of[i]]:.6g} of "
                           f"box {box_of[i]}; nothing written (please report these networks)")
    bound = DomainBound(lower.min(axis=0), upper.max(axis=0), per_box, magnitude.mean(axis=1), float(seen.max()),
                        time.perf_counter() - t0)
    return bound, witnesses


def _accuracy(model: Model, test: Dataset | None) -> float | None:
    """Accuracy of ``model`` on ``test`` in onnxruntime (None without test data)."""
    if test is None:
        return None
    return float(np.mean(OnnxRunner(model)(test.x).argmax(axis=1) == test.y))


def _output_ranges(original: Model, before: Model, after: Model, box: Box, method: str) -> dict[str, Any]:
    """Paper 000's Fig. 2 on ``box``: the original's outputs at its centre, and the sound output range of the
    compressed network over the box before and after repair (interval or symbolic bounds)."""
    centre = 0.5 * (box.lower + box.upper)
    kind = "interval" if method == "interval" else "symbolic"
    ranges = {}
    for name, m in (("before", before), ("after", after)):
        b = output_bounds(m, box, kind)
        ranges[name] = {"lower": b.output_lower.tolist(), "upper": b.output_upper.tolist()}
    return {"box": 0, "original": OnnxRunner(original)(centre[None])[0].astype(np.float64).tolist(), **ranges}


def _sample(lowers: np.ndarray, uppers: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of the union of the boxes, each in a box chosen uniformly: half uniform in it, half random
    vertices of it (where a difference of two nearly linear maps is largest), and their boxes."""
    which = rng.integers(0, len(lowers), n)
    u = rng.random((n, lowers.shape[1]))
    u[n // 2:] = np.round(u[n // 2:])
    return lowers[which] + (uppers[which] - lowers[which]) * u, which
