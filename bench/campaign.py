"""Adversarial soundness campaign (issue 13): random networks whose bounds are attacked in onnxruntime.

``python bench/campaign.py [--quick] [--family NAME ...] [--seeds S ...] [--samples N]``.

The original campaign's code is lost; this rebuilds it from the issue's description, with its counts (nothing
scaled down). The networks are those of ``campaign_nets.FAMILIES``: 155 in the full run (dense Gemm/ReLU chains,
the issue's 3-input chains at weight scales 1e2, 1e3 and 1e4 (the same 15 chains at each scale), conv+BN nets, float64 models,
12–20-layer chains, boxes of width 1e-6, boxes with lower == upper on some or all inputs, among them the issue's
64-input cancellation net), plus one network per operator shape (``op shapes``: broadcast MatMul with rank-3
constants, normalisation, reshapes, pools, a skip connection), two boxes each. ``--quick`` runs 2–3 networks per
family and every operator shape. Per network and box:

- ``bounds(model, box, m)`` for m in interval, symbolic, lp (``total_time=60``; networks of at most ``LP_RELUS``
  ReLUs), and milp (at most ``MILP_RELUS`` ReLUs, ``time_limit=10, total_time=30``): a violation is an output bound
  some point's onnxruntime output lies outside of, or a ReLU input bound its pre-activation in onnxruntime passes (which covers a ReLU reported stably active
  or inactive whose pre-activation has the wrong sign: its bound is then 0, and the claim is labelled so);
- on dense chains, ``Pair(a, b).analyse(box, m)`` for m in interval, symbolic, merged-symbolic with ``b`` the
  network with every weight and bias × (1 + 1e-3·N(0,1)): a violation is an output ``i`` whose ``f_A,i − f_B,i``
  (both in onnxruntime, difference in float64) lies outside ``[lower_i, upper_i]`` (which covers ``|f_A − f_B| >
  δ_max``).

The points: ``--samples`` uniform samples plus up to 256 box corners and the centre, plus projected
signed-gradient ascent (``nnxform.gradient``) on every output (both signs; for discrepancy on ``±(f_A,i − f_B,i)``)
and on up to ``NEURONS`` ReLU pre-activations per layer that never changed sign on the samples, pushed towards the
other sign (at most ``MAX_TARGETS`` targets per box). Every point is evaluated in onnxruntime on the generated ONNX itself (not nnxform's export), with the
ReLU inputs as extra graph outputs: onnxruntime is the reference. ``violations`` counts contradicted claims (an
output's or a ReLU input's lower or upper bound); ``worst excess`` is the largest amount by which a point
passes a claimed bound; ``time s`` the analyses' own time. Every violation is listed after the table with what reproduces it. Everything is seeded.

Round three (issue 19) adds the families of ``campaign_nets`` after ``op shapes``: dense chains and CNNs at weight scale
1e-3 (pre-activations down to 1e-6 and below) and 1e3 (CNNs with strides, asymmetric pads, dilations, groups, BN,
pooling), cGAN-generator look-alikes with ConvTranspose, residual CNNs, and small dense chains for repair; on them,
besides the bounds (and the discrepancy on the dense chains), each box checks the claims of the commands that rest
on an analysis, every one against onnxruntime at the same points (samples, corners, centre, gradient ascent):

- ``stable``: ``nnxform.stable.classify``; each neuron claimed stably active (inactive) must have a pre-activation
  >= 0 (<= 0) at every point, the points including gradient ascent pushing each claimed neuron to the other sign;
- ``compress``: ``workflows.compress_checked`` with that classification and ``certify_box``; the written network
  must equal the input at every point within the project's rule (``exactness.allowed``: ``tol·(1 + |y| + |W|·|x|)``),
  and ``compress --certify``: the certificate's per-output bounds of ``f − f_compressed`` and its ``δ_max`` must hold
  at every point and at its witness;
- ``prune``: ``workflows.prune_with_impact`` (weight / neuron / saliency by seed, ratio 0.3): the impact bounds of
  ``f_pruned − f`` (the written network) and ``impact_bound`` must hold at every point, plus the analysis's witness
  and gradient ascent on ``±(f_pruned − f)`` per output (at most ``DIFFERENCE_TARGETS`` of them);
- ``quantize``: ``workflows.quantize_with_drift`` (8 bits, 4 bits per channel, float16 by seed): the drift bounds of
  ``f_q − f`` and ``δ_max``, the same way;
- ``canon`` and ``fold-bn`` (``passes.apply_checked``): the written network equals the input within the rule;
- ``repair`` (family ``repair``): ``nnxform.repair.repair`` of a 4-bit quantised copy (3 rounds): the bounds of
  ``f1 − f2`` it reports before (on the copy) and after (on the written network) must hold.

Any exception other than ``NnxformError`` is an internal error; an ``NnxformError`` is a refusal (counted, its
message listed); a ``NotExact`` from a function-preserving pass (canon, fold-bn, compress) on these networks (weight
scales up to 1e3), or any refusal asking to be reported (an analysis contradicted by its own samples), is also a
false refusal. ``--quick`` runs 1–2 networks of each round-three family.

Measured on the shared 2-core machine (with a test suite running beside it): ``--quick`` 30 s, the full run 3 min
before round three (the estimate is printed before it starts); most of it is the milp solves and the float64 and
dense families. Round three's figures are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/discrepancy.py: a second BLAS thread slows this 5-10x

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from campaign_nets import FAMILIES, Case, perturbed  # noqa: E402
from common import print_table  # noqa: E402

from nnxform.analyzers import bounds  # noqa: E402
from nnxform.analyzers.result import ACTIVE, INACTIVE  # noqa: E402
from nnxform.discrepancy import Pair  # noqa: E402
from nnxform.domain import Box  # noqa: E402
from nnxform.errors import NnxformError, NotExact  # noqa: E402
from nnxform.exactness import ATOL, allowed, magnitudes  # noqa: E402
from nnxform.gradient import gradient  # noqa: E402
from nnxform.ir import Model, from_proto  # noqa: E402
from nnxform.passes import apply_checked  # noqa: E402
from nnxform.passes.quantize import quantize  # noqa: E402
from nnxform.repair import RepairOptions, repair  # noqa: E402
from nnxform.runtime import session_options  # noqa: E402
from nnxform.stable import classify  # noqa: E402
from nnxform.workflows import compress_checked, prune_with_impact, quantize_with_drift  # noqa: E402

BOUND_METHODS = ("interval", "symbolic", "lp", "milp")
DISCREPANCY_METHODS = ("interval", "symbolic", "merged-symbolic")
MILP_RELUS = 64  # milp only on networks with at most this many ReLUs
LP_RELUS = 128  # lp (one LP per neuron) only on networks with at most this many (round three's residual CNNs)
#: Keyword arguments of ``bounds`` per method: milp's limits, and lp's whole-analysis limit (past it the neurons left
#: keep their symbolic bounds; on round three's tiny-scale residual CNNs single HiGHS LP solves take minutes).
LIMITS = {"milp": {"time_limit": 10.0, "total_time": 30.0}, "lp": {"total_time": 60.0}}
NEURONS, STARTS, STEPS, MAX_TARGETS = 32, 4, 30, 96  # gradient search: neurons per layer, starts, steps, targets
DIFFERENCE_TARGETS = 32  # round three: at most this many ±outputs of a difference f_other − f ascended per claim
#: Round three: ``stable`` (per box: seconds, MILP nodes per solve), the samples of the checks inside the workflows,
#: their solvers' time limits, prune's ratio, the variants cycled by seed, repair's options.
STABLE_TIME, STABLE_NODES, CHECK_SAMPLES, SOLVE_TIME, PRUNE_RATIO = 20.0, 200, 2000, 5.0, 0.3
PRUNE_METHODS = ("weight", "neuron", "saliency")
QUANTIZE_GRIDS = ((8, False, False), (4, True, False), (None, False, True))  # bits, per channel, float16
REPAIR = RepairOptions(rounds=3, epochs=3, samples=500)
PRESERVING = ("canon", "fold-bn", "compress")  # function-preserving passes: a NotExact from one is a false refusal
#: Seconds per network of each family in the full run, measured on the shared 2-core machine (for the estimate).
SECONDS_PER_NETWORK = {"dense": 2.1, "scale 1e2": 0.55, "scale 1e3": 0.55, "scale 1e4": 0.55, "conv+BN": 1.0,
                       "float64": 2.3, "deep 12-20": 1.4, "tiny boxes": 0.5, "degenerate boxes": 0.35, "op shapes": 0.6,
                       "dense x1e-3": 1.6, "dense x1e3": 1.6, "CNN x1e-3": 3.0, "CNN x1e3": 3.9, "ConvTranspose": 4.5,
                       "Conv-ConvTranspose": 3.0, "residual CNN": 25.0, "repair": 0.7}
#: The rows of the summary table: claim kinds, each the methods it gathers.
KINDS = {"bounds": BOUND_METHODS, "discrepancy": tuple(f"discrepancy {m}" for m in DISCREPANCY_METHODS),
         "stable": ("stable",), "compress": ("compress",), "compress --certify": ("compress --certify",),
         "prune impact": ("prune impact",), "quantize drift": ("quantize drift",), "canon / fold-bn": ("canon", "fold-bn"),
         "repair": ("repair before", "repair after")}

Grad = Callable[[np.ndarray, str, np.ndarray], np.ndarray]  # (points, tensor, weights) -> input gradients
Where = tuple[str, int, str, str, Box]  # family, seed, network description, box name, box


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def _batch_session(proto: onnx.ModelProto) -> ort.InferenceSession | None:
    """A session on ``proto`` (modified) with a symbolic first input dimension, or None if onnxruntime refuses it."""
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "N"
    try:
        return _session(proto)
    except Exception:
        return None


class Reference:
    """onnxruntime on a generated proto with extra tensors as graph outputs, batched when the graph allows it (a
    written network too: its first output is called ``y`` here, its input is fed whatever its name)."""

    def __init__(self, proto: onnx.ModelProto, tensors: list[str]):
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        p.graph.output.extend([onnx.ValueInfoProto(name=t) for t in tensors])
        self.output = p.graph.output[0].name
        self.names = ["y", *tensors]
        constants = {i.name for i in p.graph.initializer}
        inp = next(i for i in p.graph.input if i.name not in constants)
        self.input = inp.name
        self.shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        self.dtype = np.float64 if inp.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE else np.float32
        self.single = _session(p)
        self.batched = _batch_session(p) if len(self.shape) >= 2 and self.shape[0] == 1 else None
        self.checked = False

    def __call__(self, xs: np.ndarray) -> dict[str, np.ndarray]:
        """Every named tensor per point, flattened, in float64 (the points cast to the model's type first)."""
        xs = np.asarray(xs).astype(self.dtype).reshape([-1] + self.shape)
        if self.batched is not None and not self.checked:
            try:
                same = all(np.array_equal(a, b) for a, b in zip(self._batched(xs[:2]).values(), self._single(xs[:2]).values()))
            except Exception:  # a graph that hard-codes the batch of 1
                same = False
            self.batched, self.checked = (self.batched if same else None), True
        if self.batched is None:
            return self._single(xs)
        parts = [self._batched(xs[i:i + 4096]) for i in range(0, len(xs), 4096)]
        return {k: np.vstack([p[k] for p in parts]) for k in self.names}

    def _batched(self, xs: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.batched.run([self.output, *self.names[1:]], {self.input: xs.reshape([-1] + self.shape[1:])})
        return {k: o.reshape(len(xs), -1).astype(np.float64) for k, o in zip(self.names, outs)}

    def _single(self, xs: np.ndarray) -> dict[str, np.ndarray]:
        runs = [self.single.run([self.output, *self.names[1:]], {self.input: x}) for x in xs]
        return {k: np.stack([r[i].ravel() for r in runs]).astype(np.float64) for i, k in enumerate(self.names)}


def ascend(grad: Grad, box: Box, xs: np.ndarray, values: dict[str, np.ndarray], targets: list[tuple[str, np.ndarray]]
           ) -> np.ndarray:
    """Projected signed-gradient ascent on ``w · tensor`` for every target, from its best ``STARTS`` points among
    ``xs`` (``values``: the tensors there); returns every iterate."""
    if not targets:
        return np.zeros((0, box.size))
    starts = min(STARTS, len(xs))
    x = np.vstack([xs[np.argsort(-(values[t] @ w), kind="stable")[:starts]] for t, w in targets])
    width, path = box.upper - box.lower, []
    for step in range(STEPS):
        path.append(x.copy())
        g = np.zeros_like(x)
        for tensor in dict.fromkeys(t for t, _ in targets):
            rows = np.concatenate([np.arange(k * starts, (k + 1) * starts) for k, (t, _) in enumerate(targets) if t == tensor])
            weights = np.vstack([np.repeat(w[None], starts, axis=0) for t, w in targets if t == tensor])
            g[rows] = grad(x[rows], tensor, weights)
        x = np.clip(x + 0.25 * 0.85 ** (step * 20 / STEPS) * width * np.sign(g), box.lower, box.upper)
    path.append(x)
    return np.vstack(path)


@dataclass
class Tally:
    """One row of the table: a family and a method (or claim kind)."""

    networks: set[int] = field(default_factory=set)
    boxes: int = 0
    points: int = 0
    claims: int = 0
    violations: int = 0
    worst: float = 0.0
    seconds: float = 0.0
    errors: int = 0  # internal errors: exceptions other than NnxformError
    refused: int = 0  # NnxformError: the user-facing refusals
    false_refusals: int = 0  # NotExact from a function-preserving pass, or a refusal asking to be reported


@dataclass
class Violation:
    """The worst contradicted claim of one (network, box, method), with what reproduces it."""

    family: str
    seed: int
    description: str
    box_name: str
    box: Box
    method: str
    claims: int  # contradicted claims of this (network, box, method)
    claim: str
    x: np.ndarray
    value: float
    bound: float
    excess: float
    note: str = ""
    call: str = ""  # the library call that made the claim


Claims = list[tuple[str, np.ndarray, float, np.ndarray]]  # (claim, excess per point, bound, value per point)


class Campaign:
    """Runs the families, keeps the tallies, the violations, the internal errors and the refusals."""

    def __init__(self, samples: int):
        self.samples = samples
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.violations: list[Violation] = []
        self.errors: list[str] = []
        self.refusals: list[str] = []
        self.false_refusals: list[str] = []

    def tally(self, family: str, method: str) -> Tally:
        return self.tallies.setdefault((family, method), Tally())

    def failed(self, exc: Exception, where: str, tally: Tally | None, call: str = "", preserving: bool = False,
               scale: float = 1.0) -> None:
        """Sort an exception: an NnxformError is a refusal (a false one when it is a NotExact of a function-preserving
        pass at a weight scale up to 1e3, or asks to be reported), anything else an internal error."""
        text = f"{where}: {type(exc).__name__}: {exc}" + (f"\n    call: {call}" if call else "")
        if isinstance(exc, NnxformError):
            self.refusals.append(text)
            if tally is not None:
                tally.refused += 1
            if (isinstance(exc, NotExact) and preserving and scale <= 1e3) or "please report" in str(exc):
                self.false_refusals.append(text)
                if tally is not None:
                    tally.false_refusals += 1
            return
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        self.errors.append(f"{text}\n    at {frame.filename}:{frame.lineno} ({frame.name})")
        if tally is not None:
            tally.errors += 1

    def network(self, family: str, seed: int, case: Case) -> None:
        """Every box and claim kind on one generated network."""
        try:
            model = from_proto(case.proto)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} ({case.description}): load", None)
            return
        pre = {n.name: n.inputs[0] for n in model.nodes if n.op == "Relu"}  # ReLU node -> its input tensor
        ref = Reference(case.proto, list(dict.fromkeys(pre.values())))
        pair = None
        if case.dense:
            b_proto = perturbed(case.proto, seed)
            model_b = from_proto(b_proto)
            pair = (Pair(model, model_b), Reference(b_proto, []), model_b)
        for b, (box_name, box) in enumerate(case.boxes):
            rng = np.random.default_rng([seed, b])
            xs = box.points(self.samples, rng)
            values = ref(xs)
            targets = [("y", s * e) for e in np.eye(values["y"].shape[1]) for s in (1.0, -1.0)]
            for tensor in dict.fromkeys(pre.values()):
                v = values[tensor]
                steady = np.flatnonzero((v.min(axis=0) > 0) | (v.max(axis=0) < 0))
                for i in rng.permutation(steady)[:NEURONS]:
                    targets.append((tensor, -np.sign(v[0, i]) * np.eye(v.shape[1])[i]))
            if len(targets) > MAX_TARGETS:
                targets = [targets[i] for i in sorted(rng.choice(len(targets), MAX_TARGETS, replace=False))]
            grad: Grad = lambda x, t, w: gradient(model, x, w, t)[1]
            try:
                xs = np.vstack([xs, ascend(grad, box, xs, values, targets)])
                values = ref(xs)
            except Exception as exc:  # nnxform's evaluator failed: the samples alone are checked
                self.failed(exc, f"{family} seed {seed} box {box_name}: gradient search", None)
            where: Where = (family, seed, case.description, box_name, box)
            if "bounds" in case.checks:
                relus = sum(values[t].shape[1] for t in ref.names[1:])
                for method in BOUND_METHODS[:2 if relus > LP_RELUS else 3 if relus > MILP_RELUS else 4]:
                    self.check_bounds(where, model, method, xs, values, pre)
            if pair is not None:
                self.check_discrepancy(where, *pair, ref, xs, values)
            stability = None
            if "stable" in case.checks:
                stability, xs, values = self.check_stable(where, model, ref, xs, values, pre, grad, b)
            if "compress" in case.checks:
                self.check_compress(where, model, stability, ref, xs, values, case.scale)
            if "prune" in case.checks:
                self.check_prune(where, model, ref, xs, values, b)
            if "quantize" in case.checks:
                self.check_quantize(where, model, ref, xs, values, b)
            if "passes" in case.checks:
                for name in ("canon", "fold-bn"):
                    self.check_pass(where, model, name, xs, values, case.scale)
            if "repair" in case.checks:
                self.check_repair(where, model, ref, xs, values)

    def check_bounds(self, where: Where, model: Model, method: str, xs: np.ndarray, values: dict[str, np.ndarray],
                     pre: dict[str, str]) -> None:
        """One bounds analysis against the points: output bounds and ReLU input bounds (stable signs among them)."""
        family, seed, description, box_name, box = where
        tally = self.tally(family, method)
        tally.networks.add(seed)
        t = time.perf_counter()
        limits = LIMITS.get(method, {})
        call = f"nnxform.analyzers.bounds(model, box, {method!r}{''.join(f', {k}={v}' for k, v in limits.items())})"
        try:
            r = bounds(model, box, method, **limits)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} {method}", tally, call)
            return
        tally.seconds += time.perf_counter() - t
        tally.boxes += 1
        tally.points += len(xs)
        y = values["y"]
        claims = [(f"output {j} lower", r.output_lower[j] - y[:, j], r.output_lower[j], y[:, j]) for j in range(y.shape[1])]
        claims += [(f"output {j} upper", y[:, j] - r.output_upper[j], r.output_upper[j], y[:, j]) for j in range(y.shape[1])]
        for k, layer in enumerate(r.relu_layers):
            z, status = values[pre[layer.node]], layer.status
            for i in range(z.shape[1]):
                name = f"ReLU layer {k} ({layer.node}) neuron {i}"
                claims.append((name + " lower" + (" (reported stably active)" if status[i] == ACTIVE else ""),
                               layer.lower[i] - z[:, i], layer.lower[i], z[:, i]))
                claims.append((name + " upper" + (" (reported stably inactive)" if status[i] == INACTIVE else ""),
                               z[:, i] - layer.upper[i], layer.upper[i], z[:, i]))
        note = f"exact={r.exact}" + (" time_limit_reached" if r.details.get("time_limit_reached") else "")
        self.record(where, method, tally, xs, claims, note, call)

    def check_discrepancy(self, where: Where, pair: Pair, ref_b: Reference, model_b: Model, ref_a: Reference,
                          xs: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """The three discrepancy analyses of a dense chain and its perturbed copy against the points."""
        family, seed, description, box_name, box = where
        model_a = pair.a
        d = values["y"] - ref_b(xs)["y"]
        targets = [("y", s * e) for e in np.eye(d.shape[1]) for s in (1.0, -1.0)]
        grad: Grad = lambda x, t, w: gradient(model_a, x, w)[1] - gradient(model_b, x, w)[1]
        try:
            extra = ascend(grad, box, xs, {"y": d}, targets)
        except Exception as exc:  # nnxform's evaluator failed: the samples alone are checked
            self.failed(exc, f"{family} seed {seed} box {box_name}: discrepancy gradient search", None)
            extra = np.zeros((0, box.size))
        for method in DISCREPANCY_METHODS:
            tally = self.tally(family, f"discrepancy {method}")
            tally.networks.add(seed)
            t = time.perf_counter()
            call = f"Pair(model, from_proto(perturbed(proto, {seed}))).analyse(box, {method!r}, seed={seed})"
            try:
                r = pair.analyse(box, method, seed=seed)
            except Exception as exc:
                self.failed(exc, f"{family} seed {seed} box {box_name} discrepancy {method}", tally, call)
                continue
            tally.seconds += time.perf_counter() - t
            pts = np.vstack([xs, extra, r.witness_input[None]])
            dd = np.vstack([d, ref_a(pts[len(xs):])["y"] - ref_b(pts[len(xs):])["y"]])
            tally.boxes += 1
            tally.points += len(pts)
            claims = [(f"f_A-f_B output {j} lower", r.lower[j] - dd[:, j], r.lower[j], dd[:, j]) for j in range(dd.shape[1])]
            claims += [(f"f_A-f_B output {j} upper", dd[:, j] - r.upper[j], r.upper[j], dd[:, j]) for j in range(dd.shape[1])]
            self.record(where, f"discrepancy {method}", tally, pts, claims,
                        f"delta_max={r.delta_max:.6g} found={r.found:.6g}", call)

    # --- round three (issue 19) ------------------------------------------------------------------------------

    def check_stable(self, where: Where, model: Model, ref: Reference, xs: np.ndarray, values: dict[str, np.ndarray],
                     pre: dict[str, str], grad: Grad, b: int):
        """``classify`` against the points: a neuron claimed stably active must be >= 0, inactive <= 0, at every point,
        among them gradient ascent pushing every claimed neuron towards the other sign. Returns the classification
        (None when refused or failed) and the points and values with the ascent's added."""
        family, seed, description, box_name, box = where
        tally = self.tally(family, "stable")
        tally.networks.add(seed)
        call = (f"nnxform.stable.classify(model, box, time_limit={STABLE_TIME}, samples=4096, seed={seed}, "
                f"node_limit={STABLE_NODES})")
        t = time.perf_counter()
        try:
            st = classify(model, box, time_limit=STABLE_TIME, samples=4096, seed=seed, node_limit=STABLE_NODES)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} stable", tally, call)
            return None, xs, values
        tally.seconds += time.perf_counter() - t
        claimed = [(pre[layer.node], i, int(layer.status[i])) for layer in st.layers
                   for i in np.flatnonzero((layer.status == ACTIVE) | (layer.status == INACTIVE))]
        targets = [(tensor, (-1.0 if status == ACTIVE else 1.0) * np.eye(values[tensor].shape[1])[i])
                   for tensor, i, status in claimed]
        if len(targets) > MAX_TARGETS:
            rng = np.random.default_rng([seed, b, 1])
            targets = [targets[i] for i in sorted(rng.choice(len(targets), MAX_TARGETS, replace=False))]
        try:
            xs = np.vstack([xs, ascend(grad, box, xs, values, targets)])
            values = ref(xs)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name}: stable gradient search", None)
        tally.boxes += 1
        tally.points += len(xs)
        claims: Claims = []
        for layer in st.layers:
            z = values[pre[layer.node]]
            for i in np.flatnonzero(layer.status == ACTIVE):
                claims.append((f"{layer.node} neuron {i} stably active (pre-activation >= 0)", -z[:, i], 0.0, z[:, i]))
            for i in np.flatnonzero(layer.status == INACTIVE):
                claims.append((f"{layer.node} neuron {i} stably inactive (pre-activation <= 0)", z[:, i], 0.0, z[:, i]))
        counts = st.counts()
        self.record(where, "stable", tally, xs, claims, " ".join(f"{k}={v}" for k, v in counts.items()) +
                    (" time_limit_reached" if st.time_limit_reached else ""), call)
        return st, xs, values

    def check_compress(self, where: Where, model: Model, stability, ref: Reference, xs: np.ndarray,
                       values: dict[str, np.ndarray], scale: float) -> None:
        """``compress_checked(certify_box=True)`` with the classification: the written network equals the input at
        every point within ``exactness.allowed``, and the certificate's bounds of ``f − f_compressed`` hold."""
        family, seed, description, box_name, box = where
        tally, cert_tally = self.tally(family, "compress"), self.tally(family, "compress --certify")
        tally.networks.add(seed)
        cert_tally.networks.add(seed)
        given = "stability=classify(...) above" if stability is not None else f"seed={seed}"
        call = (f"nnxform.workflows.compress_checked(model, box, {given}, time_limit={STABLE_TIME}, "
                f"node_limit={STABLE_NODES}, samples={CHECK_SAMPLES}, certify_box=True, certify_time_limit={SOLVE_TIME})")
        t = time.perf_counter()
        try:
            r = compress_checked(model, box, stability=stability, time_limit=STABLE_TIME, node_limit=STABLE_NODES,
                                 seed=seed, samples=CHECK_SAMPLES, certify_box=True, certify_time_limit=SOLVE_TIME)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} compress", tally, call, "compress" in PRESERVING, scale)
            return
        seconds = time.perf_counter() - t
        tally.seconds += seconds
        written = self.written(r.model, f"{family} seed {seed} box {box_name} compress", tally)
        if written is None:
            return
        cert = r.certificate
        pts = np.vstack([xs, cert.witness_input[None]])
        y = np.vstack([values["y"], ref(cert.witness_input[None])["y"]])
        yc = written[0](pts)["y"]
        tally.boxes += 1
        tally.points += len(pts)
        excess = self.rule_excess(model, written[1], y, yc, pts)
        claims = [(f"output {j} equal within the rule", excess[:, j], 0.0, yc[:, j] - y[:, j]) for j in range(y.shape[1])]
        counts = r.compression.counts
        self.record(where, "compress", tally, pts, claims, f"counts={counts} check.max_abs={r.check.max_abs:.3g}", call)
        cert_tally.boxes += 1
        cert_tally.points += len(pts)
        cert_tally.seconds += cert.seconds  # (inside compress's time above too)
        self.record(where, "compress --certify", cert_tally, pts, self.difference_claims(cert, y - yc, "f-f_compressed"),
                    f"delta_max={cert.delta_max:.6g} found={cert.found:.6g}", call)

    def check_prune(self, where: Where, model: Model, ref: Reference, xs: np.ndarray, values: dict[str, np.ndarray],
                    b: int) -> None:
        """``prune_with_impact``: the impact bounds of ``f_pruned − f`` (the written network) hold at every point."""
        family, seed, description, box_name, box = where
        methods = PRUNE_METHODS if "Add" not in model.op_counts() else PRUNE_METHODS[:2]  # saliency refuses skips
        method = methods[(seed + b) % len(methods)]
        call = (f"nnxform.workflows.prune_with_impact(model, box, {method!r}, {PRUNE_RATIO}, impact_method='symbolic', "
                f"time_limit={SOLVE_TIME})")
        tally = self.tally(family, "prune impact")
        tally.networks.add(seed)
        t = time.perf_counter()
        try:
            r = prune_with_impact(model, box, method, PRUNE_RATIO, impact_method="symbolic", time_limit=SOLVE_TIME)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} prune {method}", tally, call)
            return
        tally.seconds += time.perf_counter() - t
        d = r.impact["impact"]
        bound = _Bound(np.array(d["lower"]), np.array(d["upper"]), r.impact["impact_bound"], np.array(d["witness"]["input"]))
        self.check_difference(where, "prune impact", tally, model, r.model, ref, xs, values, bound, "f_pruned-f", call,
                              f"{method}: delta_max={bound.delta_max:.6g} found={d['found']:.6g}")

    def check_quantize(self, where: Where, model: Model, ref: Reference, xs: np.ndarray, values: dict[str, np.ndarray],
                       b: int) -> None:
        """``quantize_with_drift``: the drift bounds of ``f_q − f`` hold at every point."""
        family, seed, description, box_name, box = where
        bits, per_channel, float16 = QUANTIZE_GRIDS[(seed + b) % len(QUANTIZE_GRIDS)]
        call = (f"nnxform.workflows.quantize_with_drift(model, {bits}, {per_channel}, {float16}, box=box, "
                f"method='symbolic', time_limit={SOLVE_TIME}, samples={CHECK_SAMPLES}, seed={seed})")
        tally = self.tally(family, "quantize drift")
        tally.networks.add(seed)
        t = time.perf_counter()
        try:
            r = quantize_with_drift(model, bits, per_channel, float16, box=box, method="symbolic", time_limit=SOLVE_TIME,
                                    samples=CHECK_SAMPLES, seed=seed)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} quantize {r_grid(bits, per_channel)}", tally, call)
            return
        tally.seconds += time.perf_counter() - t
        d = r.drift
        self.check_difference(where, "quantize drift", tally, model, r.model, ref, xs, values,
                              _Bound(d.lower, d.upper, d.delta_max, d.witness_input), "f_q-f", call,
                              f"{r.grid}: delta_max={d.delta_max:.6g} found={d.found:.6g}")

    def check_pass(self, where: Where, model: Model, name: str, xs: np.ndarray, values: dict[str, np.ndarray],
                   scale: float) -> None:
        """``apply_checked(name)``: the written network equals the input at every point within the rule."""
        family, seed, description, box_name, box = where
        call = f"nnxform.passes.apply_checked({name!r}, model, box, samples={CHECK_SAMPLES})"
        tally = self.tally(family, name)
        tally.networks.add(seed)
        t = time.perf_counter()
        try:
            result, _, _ = apply_checked(name, model, box, samples=CHECK_SAMPLES)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} {name}", tally, call, name in PRESERVING, scale)
            return
        tally.seconds += time.perf_counter() - t
        written = self.written(result, f"{family} seed {seed} box {box_name} {name}", tally)
        if written is None:
            return
        y, yw = values["y"], written[0](xs)["y"]
        tally.boxes += 1
        tally.points += len(xs)
        excess = self.rule_excess(model, written[1], y, yw, xs)
        self.record(where, name, tally, xs,
                    [(f"output {j} equal within the rule", excess[:, j], 0.0, yw[:, j] - y[:, j]) for j in range(y.shape[1])],
                    "", call)

    def check_repair(self, where: Where, model: Model, ref: Reference, xs: np.ndarray,
                     values: dict[str, np.ndarray]) -> None:
        """``repair`` of a 4-bit quantised copy on the box: the bounds of ``f1 − f2`` it reports before (the copy) and
        after (the network it writes) hold at every point."""
        family, seed, description, box_name, box = where
        options = RepairOptions(**{**REPAIR.to_json(), "seed": seed})
        call = (f"nnxform.repair.repair(model, quantize(model, bits=4)[0], [box], RepairOptions(rounds={options.rounds}, "
                f"epochs={options.epochs}, samples={options.samples}, seed={seed}))")
        tallies = {k: self.tally(family, f"repair {k}") for k in ("before", "after")}
        for tally in tallies.values():
            tally.networks.add(seed)
        t = time.perf_counter()
        try:
            compressed = quantize(model, bits=4)[0]
            r = repair(model, compressed, [box], options)
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name} repair", tallies["after"], call)
            return
        tallies["after"].seconds += time.perf_counter() - t
        for k, net, bound in (("before", compressed, r.initial), ("after", r.model, r.final)):
            self.check_difference(where, f"repair {k}", tallies[k], model, net, ref, xs, values,
                                  _Bound(bound.lower, bound.upper, bound.delta_max, None), "f1-f2", call,
                                  f"kept round {r.kept}: delta_max={bound.delta_max:.6g} sampled={bound.sampled_max:.6g}",
                                  reverse=True)

    def check_difference(self, where: Where, method: str, tally: Tally, model: Model, other: Model, ref: Reference,
                         xs: np.ndarray, values: dict[str, np.ndarray], bound: "_Bound", label: str, call: str,
                         note: str, reverse: bool = False) -> None:
        """Bounds of ``f_other − f`` (``reverse``: of ``f − f_other``) against the points, the bound's witness and
        projected gradient ascent on ``±`` each output of the difference; ``other`` in onnxruntime as written."""
        family, seed, description, box_name, box = where
        written = self.written(other, f"{family} seed {seed} box {box_name} {method}", tally)
        if written is None:
            return
        sign = -1.0 if reverse else 1.0
        d = sign * (written[0](xs)["y"] - values["y"])
        targets = [("y", s * e) for e in np.eye(d.shape[1]) for s in (1.0, -1.0)]
        if len(targets) > DIFFERENCE_TARGETS:
            rng = np.random.default_rng([seed, len(method)])
            targets = [targets[i] for i in sorted(rng.choice(len(targets), DIFFERENCE_TARGETS, replace=False))]
        grad: Grad = lambda x, t, w: sign * (gradient(written[1], x, w)[1] - gradient(model, x, w)[1])
        extra = [bound.witness[None]] if bound.witness is not None else []
        try:
            extra.append(ascend(grad, box, xs, {"y": d}, targets))
        except Exception as exc:
            self.failed(exc, f"{family} seed {seed} box {box_name}: {method} gradient search", None)
        if extra:
            more = np.vstack(extra)
            d = np.vstack([d, sign * (written[0](more)["y"] - ref(more)["y"])])
            xs = np.vstack([xs, more])
        tally.boxes += 1
        tally.points += len(xs)
        self.record(where, method, tally, xs, self.difference_claims(bound, d, label), note, call)

    @staticmethod
    def difference_claims(bound, d: np.ndarray, label: str) -> Claims:
        """Per output: lower and upper bound of the difference ``d`` (points × outputs); and ``δ_max`` >= ``|d|``."""
        lower, upper = np.asarray(bound.lower, dtype=np.float64), np.asarray(bound.upper, dtype=np.float64)
        claims = [(f"{label} output {j} lower", lower[j] - d[:, j], lower[j], d[:, j]) for j in range(d.shape[1])]
        claims += [(f"{label} output {j} upper", d[:, j] - upper[j], upper[j], d[:, j]) for j in range(d.shape[1])]
        top = np.abs(d).max(axis=1)
        claims.append((f"delta_max >= max |{label}|", top - bound.delta_max, float(bound.delta_max), top))
        return claims

    def written(self, model: Model, where: str, tally: Tally) -> tuple[Reference, Model] | None:
        """A written network as its ONNX bytes run in onnxruntime, and as nnxform reads those bytes back."""
        try:
            proto = onnx.load_from_string(model.to_bytes())
            return Reference(proto, []), from_proto(proto)
        except Exception as exc:
            self.failed(exc, f"{where}: the written network", tally)
            return None

    @staticmethod
    def rule_excess(a: Model, b: Model, ya: np.ndarray, yb: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """How far ``|ya − yb|`` passes the project's tolerance ``allowed(ATOL, s)`` at each point and output, ``s`` =
        ``|ya|`` plus, where that alone does not cover the difference, the larger absolute chain of the two networks
        (``exactness.magnitudes``, as ``exactness.compare_with``)."""
        diff, scale = np.abs(ya - yb), np.abs(ya)
        rows = np.flatnonzero((diff > allowed(ATOL, scale)).any(axis=1))
        if rows.size:
            chain = np.maximum(magnitudes(a, xs[rows], ATOL), magnitudes(b, xs[rows], ATOL))
            scale[rows] += chain
        return diff - allowed(ATOL, scale)

    def record(self, where: Where, method: str, tally: Tally, xs: np.ndarray, claims: Claims, note: str,
               call: str = "") -> None:
        """Count the claims, and those some point contradicts (``excess > 0``); keep the worst as a Violation."""
        tally.claims += len(claims)
        broken = [(float(ex.max()), name, int(ex.argmax()), bound, vals) for name, ex, bound, vals in claims if ex.max() > 0]
        if not broken:
            return
        excess, name, i, bound, vals = max(broken, key=lambda c: c[0])
        tally.violations += len(broken)
        tally.worst = max(tally.worst, excess)
        self.violations.append(Violation(*where, method, len(broken), name, xs[i], float(vals[i]), float(bound), excess,
                                         note, call))


@dataclass
class _Bound:
    """Bounds of a difference of two networks: per output, ``δ_max``, and the analysis's witness input (or None)."""

    lower: np.ndarray
    upper: np.ndarray
    delta_max: float
    witness: np.ndarray | None


def r_grid(bits: int | None, per_channel: bool) -> str:
    return "float16" if bits is None else f"{bits} bits{' per channel' if per_channel else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few networks per family")
    parser.add_argument("--family", action="append", choices=list(FAMILIES), help="only these families")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these generator seeds (see the violation list)")
    parser.add_argument("--samples", type=int, default=20000, help="uniform samples per box (plus corners, centre)")
    args = parser.parse_args()
    families = args.family or list(FAMILIES)
    plan = [(f, FAMILIES[f][3] + k) for f in families for k in range(FAMILIES[f][2 if args.quick else 1])
            if args.seeds is None or FAMILIES[f][3] + k in args.seeds]
    estimate = sum(SECONDS_PER_NETWORK.get(f, 8.0) for f, _ in plan) * args.samples / 20000
    print(f"# adversarial campaign: {len(plan)} networks, {args.samples} samples per box; estimated {estimate / 60:.1f} min")
    campaign, t0 = Campaign(args.samples), time.perf_counter()
    wall: dict[str, float] = {}
    for n, (family, seed) in enumerate(plan):
        t = time.perf_counter()
        case = FAMILIES[family][0](seed)
        campaign.network(family, seed, case)
        wall[family] = wall.get(family, 0.0) + time.perf_counter() - t
        print(f"  [{time.perf_counter() - t0:6.0f} s] {n + 1}/{len(plan)} {family} seed {seed}: {case.description}",
              file=sys.stderr, flush=True)
    methods = [m for kind in KINDS.values() for m in kind]
    order = sorted(campaign.tallies, key=lambda k: (families.index(k[0]), methods.index(k[1])))
    rows = [[family, method, len(t.networks), t.boxes, t.points, t.claims, t.violations, t.worst, t.seconds, t.errors,
             t.refused, t.false_refusals] for (family, method), t in ((k, campaign.tallies[k]) for k in order)]
    print_table("Adversarial soundness campaign: onnxruntime outputs outside the reported bounds",
                ["family", "method", "networks", "boxes", "points", "claims", "violations", "worst excess", "time s",
                 "internal errors", "refused", "false refusals"], rows)
    summary = []
    for family in families:
        for kind, members in KINDS.items():
            ts = [campaign.tallies[(family, m)] for m in members if (family, m) in campaign.tallies]
            if not ts:
                continue
            nets = set().union(*(t.networks for t in ts))
            summary.append([family, kind, len(nets), sum(t.claims for t in ts), sum(t.violations for t in ts),
                            sum(t.errors for t in ts), sum(t.refused for t in ts), sum(t.false_refusals for t in ts),
                            sum(t.seconds for t in ts)])
    print_table("Families × claim kinds", ["family", "claims of", "networks", "claims checked", "violations",
                                           "internal errors", "refused", "false refusals", "analysis s"], summary)
    print_table("Wall time per family (generation, onnxruntime, attacks and analyses)", ["family", "networks", "s"],
                [[f, sum(1 for g, _ in plan if g == f), wall.get(f, 0.0)] for f in families])
    if campaign.violations:
        print("\n## Violations (worst claim per network, box and method)\n")
    for v in campaign.violations:
        print(f"- {v.family} seed {v.seed} ({v.description}), box {v.box_name}, {v.method} [{v.note}]: {v.claims} claim(s); "
              f"worst: {v.claim}: bound {v.bound:.9g}, onnxruntime {v.value:.9g}, excess {v.excess:.3g}\n"
              f"    rerun: python bench/campaign.py --family {v.family!r} --seeds {v.seed}; network: "
              f"campaign_nets.FAMILIES[{v.family!r}][0]({v.seed}), box {v.box_name!r} of its .boxes"
              + (f"; call: {v.call}" if v.call else "") + "; x = "
              f"{np.array2string(v.x, precision=17, separator=', ', max_line_width=10**6)}")
        if v.box.size <= 8:
            print(f"    box lower = {v.box.lower.tolist()}, upper = {v.box.upper.tolist()}")
    for title, entries in (("Internal errors", campaign.errors), ("False refusals", campaign.false_refusals)):
        if entries:
            print(f"\n## {title}\n")
            print("\n".join(f"- {e}" for e in entries))
    if campaign.refusals:  # grouped by message: where each was refused, and one call that reproduces it
        print("\n## Refusals (NnxformError), by message\n")
        groups: dict[str, list[tuple[str, str]]] = {}
        for text in campaign.refusals:
            head, _, call = text.partition("\n    call: ")
            where, _, message = head.partition(": ")
            groups.setdefault(message, []).append((where, call))
        for message, entries in groups.items():
            print(f"- {len(entries)}x {message}\n    at: {'; '.join(w for w, _ in entries)}\n    call: {entries[0][1]}")
    total = sum(t.violations for t in campaign.tallies.values())
    claims = sum(t.claims for t in campaign.tallies.values())
    print(f"\nTotal: {claims} claims checked, {total} violations, {len(campaign.errors)} internal errors, "
          f"{len(campaign.refusals)} refusals ({len(campaign.false_refusals)} false) over {len(plan)} networks "
          f"in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
