"""Adversarial soundness campaign (issue 13): random networks whose bounds are attacked in onnxruntime.

``python bench/campaign.py [--quick] [--family NAME ...] [--seeds S ...] [--samples N]``.

The original campaign's code is lost; this rebuilds it from the issue's description, with its counts (nothing
scaled down). The networks are those of ``campaign_nets.FAMILIES``: 155 in the full run (dense Gemm/ReLU chains,
the issue's 3-input chains at weight scales 1e2, 1e3 and 1e4 (the same 15 chains at each scale), conv+BN nets, float64 models,
12–20-layer chains, boxes of width 1e-6, boxes with lower == upper on some or all inputs, among them the issue's
64-input cancellation net), plus one network per operator shape (``op shapes``: broadcast MatMul with rank-3
constants, normalisation, reshapes, pools, a skip connection), two boxes each. ``--quick`` runs 2–3 networks per
family and every operator shape. Per network and box:

- ``bounds(model, box, m)`` for m in interval, symbolic, lp, and milp (networks of at most ``MILP_RELUS`` ReLUs,
  ``time_limit=10, total_time=30``): a violation is an output bound some point's onnxruntime output lies outside
  of, or a ReLU input bound its pre-activation in onnxruntime passes (which covers a ReLU reported stably active
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

Measured on the shared 2-core machine (with a test suite running beside it): ``--quick`` 30 s, the full run 3 min
(the estimate is printed before it starts); most of it is the milp solves and the float64 and dense families.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
from nnxform.gradient import gradient  # noqa: E402
from nnxform.ir import Model, from_proto  # noqa: E402
from nnxform.runtime import session_options  # noqa: E402

BOUND_METHODS = ("interval", "symbolic", "lp", "milp")
DISCREPANCY_METHODS = ("interval", "symbolic", "merged-symbolic")
MILP_RELUS = 64  # milp only on networks with at most this many ReLUs
NEURONS, STARTS, STEPS, MAX_TARGETS = 32, 4, 30, 96  # gradient search: neurons per layer, starts, steps, targets
#: Seconds per network of each family in the full run, measured on the shared 2-core machine (for the estimate).
SECONDS_PER_NETWORK = {"dense": 2.1, "scale 1e2": 0.55, "scale 1e3": 0.55, "scale 1e4": 0.55, "conv+BN": 1.0,
                       "float64": 2.3, "deep 12-20": 1.4, "tiny boxes": 0.5, "degenerate boxes": 0.35, "op shapes": 0.6}

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
    """onnxruntime on a generated proto with extra tensors as graph outputs, batched when the graph allows it."""

    def __init__(self, proto: onnx.ModelProto, tensors: list[str]):
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        p.graph.output.extend([onnx.ValueInfoProto(name=t) for t in tensors])
        self.names = ["y", *tensors]
        inp = p.graph.input[0]
        self.shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
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
        outs = self.batched.run(self.names, {"x": xs.reshape([-1] + self.shape[1:])})
        return {k: o.reshape(len(xs), -1).astype(np.float64) for k, o in zip(self.names, outs)}

    def _single(self, xs: np.ndarray) -> dict[str, np.ndarray]:
        runs = [self.single.run(self.names, {"x": x}) for x in xs]
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
    """One row of the table: a family and a method."""

    networks: set[int] = field(default_factory=set)
    boxes: int = 0
    points: int = 0
    violations: int = 0
    worst: float = 0.0
    seconds: float = 0.0
    errors: int = 0


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


class Campaign:
    """Runs the families, keeps the tallies, the violations and the errors."""

    def __init__(self, samples: int):
        self.samples = samples
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.violations: list[Violation] = []
        self.errors: list[str] = []

    def tally(self, family: str, method: str) -> Tally:
        return self.tallies.setdefault((family, method), Tally())

    def network(self, family: str, seed: int, case: Case) -> None:
        """Every box and method on one generated network."""
        try:
            model = from_proto(case.proto)
        except Exception as exc:
            self.errors.append(f"{family} seed {seed} ({case.description}): load: {type(exc).__name__}: {exc}")
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
                self.errors.append(f"{family} seed {seed} box {box_name}: gradient search: {type(exc).__name__}: {exc}")
            where: Where = (family, seed, case.description, box_name, box)
            small = sum(values[t].shape[1] for t in ref.names[1:]) <= MILP_RELUS
            for method in BOUND_METHODS if small else BOUND_METHODS[:-1]:
                self.check_bounds(where, model, method, xs, values, pre)
            if pair is not None:
                self.check_discrepancy(where, *pair, ref, xs, values)

    def check_bounds(self, where: Where, model: Model, method: str, xs: np.ndarray, values: dict[str, np.ndarray],
                     pre: dict[str, str]) -> None:
        """One bounds analysis against the points: output bounds and ReLU input bounds (stable signs among them)."""
        family, seed, description, box_name, box = where
        tally = self.tally(family, method)
        tally.networks.add(seed)
        t = time.perf_counter()
        try:
            r = bounds(model, box, method, **({"time_limit": 10.0, "total_time": 30.0} if method == "milp" else {}))
        except Exception as exc:
            tally.errors += 1
            self.errors.append(f"{family} seed {seed} box {box_name} {method}: {type(exc).__name__}: {exc}")
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
        self.record(where, method, tally, xs, claims, note)

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
            self.errors.append(f"{family} seed {seed} box {box_name}: discrepancy gradient search: {type(exc).__name__}: {exc}")
            extra = np.zeros((0, box.size))
        for method in DISCREPANCY_METHODS:
            tally = self.tally(family, f"discrepancy {method}")
            tally.networks.add(seed)
            t = time.perf_counter()
            try:
                r = pair.analyse(box, method, seed=seed)
            except Exception as exc:
                tally.errors += 1
                self.errors.append(f"{family} seed {seed} box {box_name} discrepancy {method}: {type(exc).__name__}: {exc}")
                continue
            tally.seconds += time.perf_counter() - t
            pts = np.vstack([xs, extra, r.witness_input[None]])
            dd = np.vstack([d, ref_a(pts[len(xs):])["y"] - ref_b(pts[len(xs):])["y"]])
            tally.boxes += 1
            tally.points += len(pts)
            claims = [(f"f_A-f_B output {j} lower", r.lower[j] - dd[:, j], r.lower[j], dd[:, j]) for j in range(dd.shape[1])]
            claims += [(f"f_A-f_B output {j} upper", dd[:, j] - r.upper[j], r.upper[j], dd[:, j]) for j in range(dd.shape[1])]
            self.record(where, f"discrepancy {method}", tally, pts, claims, f"delta_max={r.delta_max:.6g} found={r.found:.6g}")

    def record(self, where: Where, method: str, tally: Tally, xs: np.ndarray,
               claims: list[tuple[str, np.ndarray, float, np.ndarray]], note: str) -> None:
        """Count the claims some point contradicts (``excess > 0``) and keep the worst as a Violation."""
        broken = [(float(ex.max()), name, int(ex.argmax()), bound, vals) for name, ex, bound, vals in claims if ex.max() > 0]
        if not broken:
            return
        excess, name, i, bound, vals = max(broken, key=lambda c: c[0])
        tally.violations += len(broken)
        tally.worst = max(tally.worst, excess)
        self.violations.append(Violation(*where, method, len(broken), name, xs[i], float(vals[i]), float(bound), excess, note))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few networks per family (under 2 minutes)")
    parser.add_argument("--family", action="append", choices=list(FAMILIES), help="only these families")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these generator seeds (see the violation list)")
    parser.add_argument("--samples", type=int, default=20000, help="uniform samples per box (plus corners, centre)")
    args = parser.parse_args()
    families = args.family or list(FAMILIES)
    plan = [(f, FAMILIES[f][3] + k) for f in families for k in range(FAMILIES[f][2 if args.quick else 1])
            if args.seeds is None or FAMILIES[f][3] + k in args.seeds]
    estimate = sum(SECONDS_PER_NETWORK[f] for f, _ in plan) * args.samples / 20000
    print(f"# adversarial campaign: {len(plan)} networks, {args.samples} samples per box; estimated {estimate / 60:.1f} min")
    campaign, t0 = Campaign(args.samples), time.perf_counter()
    for n, (family, seed) in enumerate(plan):
        case = FAMILIES[family][0](seed)
        campaign.network(family, seed, case)
        print(f"  [{time.perf_counter() - t0:6.0f} s] {n + 1}/{len(plan)} {family} seed {seed}: {case.description}",
              file=sys.stderr, flush=True)
    methods = [*BOUND_METHODS, *(f"discrepancy {m}" for m in DISCREPANCY_METHODS)]
    order = sorted(campaign.tallies, key=lambda k: (families.index(k[0]), methods.index(k[1])))
    rows = [[family, method, len(t.networks), t.boxes, t.points, t.violations, t.worst, t.seconds, t.errors]
            for (family, method), t in ((k, campaign.tallies[k]) for k in order)]
    print_table("Adversarial soundness campaign: onnxruntime outputs outside the reported bounds",
                ["family", "method", "networks", "boxes", "points", "violations", "worst excess", "time s", "errors"], rows)
    if campaign.violations:
        print("\n## Violations (worst claim per network, box and method)\n")
    for v in campaign.violations:
        print(f"- {v.family} seed {v.seed} ({v.description}), box {v.box_name}, {v.method} [{v.note}]: {v.claims} claim(s); "
              f"worst: {v.claim}: bound {v.bound:.9g}, onnxruntime {v.value:.9g}, excess {v.excess:.3g}\n"
              f"    rerun: python bench/campaign.py --family {v.family!r} --seeds {v.seed}; network: "
              f"campaign_nets.FAMILIES[{v.family!r}][0]({v.seed}), box {v.box_name!r} of its .boxes; x = "
              f"{np.array2string(v.x, precision=17, separator=', ', max_line_width=10**6)}")
        if v.box.size <= 8:
            print(f"    box lower = {v.box.lower.tolist()}, upper = {v.box.upper.tolist()}")
    if campaign.errors:
        print("\n## Errors\n")
        print("\n".join(f"- {e}" for e in campaign.errors))
    total = sum(t.violations for t in campaign.tallies.values())
    print(f"\nTotal: {total} violations, {len(campaign.errors)} errors over {len(plan)} networks "
          f"in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
