"""Papers 001 and 002 on the bundled digits data (issue 11), with the toolkit's own commands.

**Paper 001** (sparse training, neuron / weight pruning, fine-tuning; verifiers solve more queries): ``nnxform
init`` 64-256-64-10 with BatchNormalization; ``nnxform train`` without a penalty (Baseline) and with L1 on the BN γ
(Sparse); ``nnxform prune -m neuron`` of Sparse at 50 % and 75 % by |γ| then ``train`` (fine-tune) (NP); ``prune -m
weight`` of Baseline at 50 % and 90 % then ``train --keep-zeros`` (WP); ``fold-bn`` of every network. Accuracy and
FGSM robustness on the test split (``nnxform evaluate``), hidden neurons and non-zero connections, and paper 001's
question: how many robustness queries are proved before and after pruning, decided by ``nnxform verify`` (the
library function ``nnxform.verify.verify`` on the VNN-LIB property ``nnxform.vnnlib.robustness_property`` writes,
read by ``read_specification`` as the command reads it; ``TIMEOUT`` s per query): **robust** = ``unsat``, **not
robust** = ``sat`` (its counterexample, which verify replayed in onnxruntime, is replayed here once more: inside the
box, some ``y_j >= y_label``; one that is not counts as "sat not replayed", a wrong answer), and timeout / unknown.
Each call is timed (wall seconds of the call; loading the network and the property is not counted). Queries: L∞
boxes of radius ``EPS`` (clipped to [0, 1]) around the first ``QUERIES`` test images that every network classifies
correctly (rows 0–19 with the defaults: the rows ``examples/papers.mk`` queries).

Other deciders on the same queries, for comparison (``PAPERS_ALSO``, space-separated): ``milp``, the MILP this
script used before ``verify`` existed (the analyzers of ``nnxform bounds --method milp``: interval, symbolic, LP,
then HiGHS big-M MILP, on the network followed by one comparison layer ``y_label − y_j``; robust when every lower
bound is > 0, a counterexample when a MILP solution, replayed in onnxruntime, changes the argmax; see
``milp_query``), and ``marabou``, Marabou 2.0.0 (maraboupy, the same VNN-LIB file, ``timeoutInSeconds``; ``sat``
counts only when its input, replayed in onnxruntime, is misclassified: Marabou stops on the boundary
``y_j = y_label``, where float32 rounding decides). Their answers are compared with verify's query by query; a
proof against a replayed counterexample is printed as a contradiction.

**Paper 002** (exact compression on the whole input domain of l1-trained networks): ``init`` 64-100-100-10,
``train --l1 L`` for several L, ``nnxform compress --lower 0 --upper 1``: neurons and connections removed, stable and
undecided ReLUs, accuracy before / after, classification time per image in onnxruntime (one image per run).

The pipeline runs through the CLI (``python -m nnxform``), as ``examples/papers.mk`` does; files go to
``build/papers-bench/``. Environment: ``PAPERS_EPS`` (default 0.05), ``PAPERS_TIMEOUT`` (default 60 s per query),
``PAPERS_QUERIES`` (default 20), ``PAPERS_ALSO`` (default none: ``milp``, ``marabou`` or both). ``python
bench/papers.py 001`` runs paper 001 only (``002`` paper 002 only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from common import MODELS, ROOT, print_table

from nnxform.accuracy import load_data
from nnxform.analyzers import interval, lp, symbolic
from nnxform.analyzers.encoding import Encoder
from nnxform.stopping import Deadline
from nnxform.analyzers.network import Linear, compile_model
from nnxform.analyzers.result import State
from nnxform.domain import Box
from nnxform.ir import Model, load
from nnxform.layered import Network, chain_layers, dense, model_size
from nnxform.pruning.chain import dense_chain
from nnxform.runtime import OnnxRunner, session_options
from nnxform.verify import verify
from nnxform.vnnlib import read_specification, robustness_property

WORK = ROOT / "build" / "papers-bench"
TRAIN = MODELS / "data" / "digits_train.csv"
TEST = MODELS / "data" / "digits_test.csv"
SCALE = "16"
EPS = float(os.environ.get("PAPERS_EPS", "0.05"))
TIMEOUT = float(os.environ.get("PAPERS_TIMEOUT", "60"))
QUERIES = int(os.environ.get("PAPERS_QUERIES", "20"))
ALSO = os.environ.get("PAPERS_ALSO", "").split()
if set(ALSO) - {"milp", "marabou"}:
    raise SystemExit(f"PAPERS_ALSO: milp and/or marabou, not {' '.join(sorted(set(ALSO) - {'milp', 'marabou'}))}")

# paper 001 hyper-parameters (ours; the paper's are for PyTorch SGD on MNIST, see bench/RESULTS.md)
EPOCHS, FINE_TUNE_EPOCHS, BN_L1 = 40, 20, 1e-2
# paper 002
L1_STRENGTHS, EPOCHS_002 = (0.0, 1e-4, 3e-4, 1e-3, 2e-3), 100


def nnx(*args: str) -> None:
    """One nnxform command (quiet unless it fails)."""
    cmd = [sys.executable, "-m", "nnxform", *map(str, args)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")


def path(name: str) -> Path:
    return WORK / name


def evaluate(onnx: Path) -> dict:
    js = onnx.with_suffix(".eval.json")
    nnx("evaluate", onnx, "--data", TEST, "--scale", SCALE, "--eps", EPS, "--json", js)
    return json.loads(js.read_text())


# --- robustness queries -----------------------------------------------------------------------------------------


def box_around(x: np.ndarray) -> Box:
    return Box(np.clip(x - EPS, 0.0, 1.0), np.clip(x + EPS, 0.0, 1.0))


def with_comparison(model: Model, label: int) -> Model:
    """``model`` followed by one Gemm computing ``y_label − y_j`` for every ``j ≠ label`` (±1 weights: in float32
    its sign is the sign of the difference of the network's outputs, so lower bounds > 0 prove the argmax)."""
    chain = dense_chain(model, "papers")
    n = chain[-1].units
    C = np.zeros((n - 1, n))
    for row, j in enumerate(j for j in range(n) if j != label):
        C[row, label], C[row, j] = 1.0, -1.0
    layers = chain_layers(chain, len(model.input_shape)) + [dense(C, np.zeros(n - 1), name="comparison")]
    return Network.like(model, layers).to_model()


def milp_query(model: Model, x: np.ndarray, label: int) -> tuple[str, float]:
    """'robust', 'counterexample' or 'unknown' within TIMEOUT seconds in all, and the seconds.

    The analyzers' own pieces, cheapest first, on the network followed by the comparison layer: interval and
    symbolic bounds, then LP bounds of the unstable ReLUs, then one MILP (big-M on HiGHS) per comparison
    ``y_label − y_j`` not yet proven positive, lowest first: a solver-proven lower bound > 0 settles it; an
    optimum (or incumbent) <= 0 is replayed in onnxruntime on the original network and is a counterexample when
    the argmax changes there. ``bounds(…, "milp")`` would do the same work but also maximise every output and
    tighten every output to the end, which a robustness query does not need."""
    spec = with_comparison(model, label)
    box = box_around(x)
    t = time.perf_counter()
    deadline = Deadline(TIMEOUT)
    net = compile_model(spec)
    state = State.start(net, box)
    interval.interval(state)
    symbolic.symbolic(state)
    out = net.output

    def done() -> bool:
        return bool(np.all(state.lo[out] > 0))

    if not done():
        lp.lp(state, time_limit=TIMEOUT, deadline=deadline)
    if done():
        return "robust", time.perf_counter() - t
    enc = Encoder(state, integer=True, time_limit=TIMEOUT, deadline=deadline)
    for i, s in enumerate(net.steps):
        if i and not isinstance(s, Linear):
            state.propagate_nonlinear(i)
        enc.add(i)
    runner = OnnxRunner(model)
    for j in np.argsort(state.lo[out]):
        if state.lo[out][j] > 0:
            continue
        if deadline.passed():
            return "unknown", time.perf_counter() - t
        bound, _ = enc.mip_min(enc.col[out] + int(j), 1.0)
        if bound > 0:
            state.lo[out][j] = bound
            continue
        point = enc.input_solution()
        if point is not None:
            y = runner(np.clip(np.array(point), box.lower, box.upper)[None])[0]
            if np.any(np.delete(y, label) >= y[label]):
                return "counterexample", time.perf_counter() - t
        return "unknown", time.perf_counter() - t
    return ("robust" if done() else "unknown"), time.perf_counter() - t


def verify_query(model: Model, prop: Path, runner: OnnxRunner, label: int) -> tuple[str, float]:
    """``nnxform verify``'s answer (the library function, as the command calls it) on the property file ``prop``:
    'robust' (unsat), 'counterexample' (sat, its input replayed here once more in onnxruntime: inside the case's
    box and some ``y_j >= y_label``), 'sat, not replayed' (a sat whose input fails that check: a wrong answer),
    'timeout' or 'unknown'; and the seconds of the call."""
    cases = read_specification(prop, (model.input_size, 10))
    t = time.perf_counter()
    verdict = verify(model, cases, TIMEOUT)
    seconds = time.perf_counter() - t
    if verdict.answer == "unsat":
        return "robust", seconds
    if verdict.answer != "sat":
        return verdict.answer, seconds
    x = np.asarray(verdict.counterexample, dtype=np.float64)
    box = cases[verdict.case].box
    y = runner(x.astype(np.float32)[None])[0]
    inside = bool(np.all(x >= box.lower) and np.all(x <= box.upper))
    if inside and np.any(np.delete(y, label) >= y[label]):
        return "counterexample", seconds
    return "sat, not replayed", seconds


def marabou_query(onnx: Path, prop: Path, runner: OnnxRunner, x: np.ndarray, label: int) -> tuple[str, float]:
    """Marabou's answer on the same query (timeout TIMEOUT s), its counterexample replayed in onnxruntime."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from maraboupy import Marabou
    net = Marabou.read_onnx(str(onnx))
    options = Marabou.createOptions(timeoutInSeconds=int(TIMEOUT), verbosity=0)
    t = time.perf_counter()
    answer, values, _ = net.solve(propertyFilename=str(prop), options=options, verbose=False)
    seconds = time.perf_counter() - t
    if answer == "unsat":
        return "robust", seconds
    if answer == "sat":
        cex = np.array([values[v] for v in net.inputVars[0].ravel()])
        box = box_around(x)
        y = runner(np.clip(cex, box.lower, box.upper)[None])[0]
        if np.any(np.delete(y, label) >= y[label]):
            return "counterexample", seconds
        return "sat, not replayed", seconds
    return "unknown", seconds


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else 0.0


def paper_001() -> None:
    nnx("init", "--layers", "64,256,64,10", "--batchnorm", "--seed", 0, "-o", path("p1_init.onnx"))
    common = ["--data", TRAIN, "--scale", SCALE, "--seed", 0]
    nnx("train", path("p1_init.onnx"), *common, "--epochs", EPOCHS, "-o", path("p1_baseline_bn.onnx"))
    nnx("train", path("p1_init.onnx"), *common, "--epochs", EPOCHS, "--l1-bn-gamma", BN_L1,
        "-o", path("p1_sparse_bn.onnx"))
    nets: dict[str, Path] = {}
    pruned: dict[str, Path] = {}
    parents: dict[str, str] = {}  # a pruned network's tag -> the tag of the network it was pruned from
    for name in ("baseline", "sparse"):
        nnx("fold-bn", path(f"p1_{name}_bn.onnx"), "-o", path(f"p1_{name}.onnx"))
        nets[name.capitalize()] = path(f"p1_{name}.onnx")
    for method, source, ratios, extra in (("neuron", "sparse", (0.5, 0.75), []),
                                           ("weight", "baseline", (0.5, 0.9), ["--keep-zeros"])):
        for r in ratios:
            tag = f"{'NP' if method == 'neuron' else 'WP'} {r:.0%}"
            stem = f"p1_{method}{int(round(100 * r))}"
            nnx("prune", path(f"p1_{source}_bn.onnx"), "-m", method, "-r", r, "-o", path(f"{stem}_pruned.onnx"))
            nnx("train", path(f"{stem}_pruned.onnx"), *common, "--epochs", FINE_TUNE_EPOCHS, *extra,
                "-o", path(f"{stem}_ft.onnx"))
            nnx("fold-bn", path(f"{stem}_ft.onnx"), "-o", path(f"{stem}.onnx"))
            pruned[tag] = path(f"{stem}_pruned.onnx")
            nets[tag] = path(f"{stem}.onnx")
            parents[tag] = source.capitalize()

    base_acc = None
    rows = []
    for tag, onnx in nets.items():
        ev = evaluate(onnx)
        size = model_size(load(onnx))
        before = evaluate(pruned[tag])["accuracy"] if tag in pruned else None
        base_acc = ev["accuracy"] if base_acc is None else base_acc
        rows.append([tag, "-" if before is None else f"{before:.3f}", f"{ev['accuracy']:.3f}",
                     f"{100 * (ev['accuracy'] - base_acc):+.1f}", f"{ev['robustness'][str(EPS)]:.3f}",
                     size.neurons, size.connections])
    print_table(f"Paper 001 on digits: accuracy, FGSM robustness (ε = {EPS:g}), size (test split, 360 points)",
                ["network", "acc. pruned", "acc. final", "Δ vs Baseline (pts)", f"FGSM robust ε={EPS:g}",
                 "hidden neurons", "connections ≠ 0"], rows)

    # 20 queries: the first test images every network classifies correctly
    data = load_data(TEST, 16.0)
    models = {tag: load(onnx) for tag, onnx in nets.items()}
    runners = {tag: OnnxRunner(m) for tag, m in models.items()}
    ok = np.ones(len(data.y), dtype=bool)
    for r in runners.values():
        ok &= np.argmax(r(data.x), axis=1) == data.y
    picked = np.flatnonzero(ok)[:QUERIES]
    queries = WORK / "queries"
    queries.mkdir(exist_ok=True)
    deciders = ["verify", *ALSO]
    answers: dict[str, dict[str, dict[int, tuple[str, float]]]] = {v: {} for v in deciders}
    for tag, m in models.items():
        stem = nets[tag].stem
        for v in deciders:
            answers[v][tag] = {}
        for i in picked:
            x, label = data.x[i].ravel(), int(data.y[i])
            prop = queries / f"{stem}_{i}.vnnlib"
            prop.write_text(robustness_property(box_around(x), 10, label))
            answers["verify"][tag][i] = verify_query(m, prop, runners[tag], label)
            if "milp" in ALSO:
                answers["milp"][tag][i] = milp_query(m, x, label)
            if "marabou" in ALSO:
                answers["marabou"][tag][i] = marabou_query(nets[tag], prop, runners[tag], x, label)
        line = ", ".join(f"{v}: {dict(sorted(_count(answers[v][tag]).items()))}" for v in deciders)
        print(f"  {tag}: {line}", flush=True)

    rows = []
    for tag in models:
        got = answers["verify"][tag]
        c = _count(got)
        secs = [s for _, s in got.values()]
        solved = c.get("robust", 0) + c.get("counterexample", 0)
        not_robust = " ".join(str(i) for i, (a, _) in got.items() if a != "robust" and a not in ("timeout", "unknown"))
        open_ = " ".join(str(i) for i, (a, _) in got.items() if a in ("timeout", "unknown"))
        rows.append([tag, parents.get(tag, "– (before pruning)"), len(got), f"{solved}/{len(got)}", c.get("robust", 0),
                     c.get("counterexample", 0), f"{c.get('timeout', 0)} / {c.get('unknown', 0)}",
                     c.get("sat, not replayed", 0), f"{_median(secs):.2f}", f"{sum(secs):.1f}", f"{max(secs):.2f}",
                     not_robust or "–", open_ or "–"])
    print_table(f"Paper 001 on digits, decided by nnxform verify: {len(picked)} robustness queries (L∞ ε = {EPS:g} "
                f"around test images {', '.join(map(str, picked))}), {TIMEOUT:g} s each, before and after pruning",
                ["network", "pruned from", "queries", "solved", "robust (unsat)", "not robust (sat)",
                 "timeout / unknown", "sat not replayed", "median s", "total s", "max s", "sat rows",
                 "unsolved rows"], rows)

    if ALSO:
        rows = []
        for tag in models:
            row = [tag]
            for v in deciders:
                c = _count(answers[v][tag])
                secs = [s for _, s in answers[v][tag].values()]
                row += [f"{c.get('robust', 0) + c.get('counterexample', 0)}/{len(picked)}",
                        f"{c.get('robust', 0)} / {c.get('counterexample', 0)}", f"{_median(secs):.2f}",
                        f"{sum(secs):.1f}"]
            rows.append(row)
        print_table(f"The same queries, {TIMEOUT:g} s each: verify beside {' and '.join(ALSO)}",
                    ["network"] + [f"{v} {h}" for v in deciders
                                   for h in ("solved", "robust / cex", "median s", "total s")], rows)
        for v in ALSO:
            for tag in models:
                for i, (a, _) in answers[v][tag].items():
                    b = answers["verify"][tag][i][0]
                    if {a, b} == {"robust", "counterexample"}:
                        print(f"  CONTRADICTION: {tag}, image {i}: verify {b}, {v} {a}", flush=True)
                    elif a != b and "sat, not replayed" in (a, b):
                        print(f"  {tag}, image {i}: verify {b}, {v} {a}", flush=True)


def _count(answers: dict[int, tuple[str, float]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a, _ in answers.values():
        out[a] = out.get(a, 0) + 1
    return out


def per_image_seconds(onnx: Path, xs: np.ndarray) -> float:
    """Seconds per image classified one at a time in onnxruntime (best of 3 passes over ``xs``)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), session_options(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    xs = xs.astype(np.float32).reshape(len(xs), 1, -1)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for x in xs:
            session.run(None, {name: x})
        best = min(best, time.perf_counter() - t)
    return best / len(xs)


def paper_002() -> None:
    nnx("init", "--layers", "64,100,100,10", "--seed", 0, "-o", path("p2_init.onnx"))
    data = load_data(TEST, 16.0)
    rows = []
    for l1 in L1_STRENGTHS:
        stem = f"p2_l1_{l1:g}"
        nnx("train", path("p2_init.onnx"), "--data", TRAIN, "--scale", SCALE, "--seed", 0, "--epochs", EPOCHS_002,
            "--l1", l1, "-o", path(f"{stem}.onnx"))
        t = time.perf_counter()
        nnx("compress", path(f"{stem}.onnx"), "--lower", 0, "--upper", 1, "--time-limit", 300, "--seed", 0,
            "-o", path(f"{stem}_compressed.onnx"), "--json", path(f"{stem}_compressed.json"))
        wall = time.perf_counter() - t
        rep = json.loads(path(f"{stem}_compressed.json").read_text())
        st = rep["stable"]["totals"]
        b, a = rep["before"], rep["after"]
        acc = evaluate(path(f"{stem}.onnx"))["accuracy"]
        acc_c = evaluate(path(f"{stem}_compressed.onnx"))["accuracy"]
        t_b = per_image_seconds(path(f"{stem}.onnx"), data.x)
        t_a = per_image_seconds(path(f"{stem}_compressed.onnx"), data.x)
        rows.append([f"{l1:g}", f"{acc:.3f}", f"{acc_c:.3f}", f"{st['active']} / {st['inactive']}", st["unstable"],
                     st["undecided"], f"{b['neurons']} → {a['neurons']}",
                     f"{100 * (1 - a['neurons'] / b['neurons']):.1f} %", f"{b['connections']} → {a['connections']}",
                     f"{100 * (1 - a['connections'] / b['connections']):.1f} %", f"{wall:.1f}",
                     f"{1e6 * t_b:.1f} → {1e6 * t_a:.1f}"])
    print_table("Paper 002 on digits: exact compression of 64-100-100-10 on the whole domain [0, 1]^64 "
                f"({EPOCHS_002} epochs of Adam, lr 1e-3, --l1 as given; test split, 360 points)",
                ["l1", "accuracy", "acc. compressed", "stable active / inactive", "unstable", "undecided",
                 "neurons", "neurons removed", "connections", "connections removed", "compress s",
                 "µs / image before → after"], rows)


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    which = sys.argv[1:] or ["002", "001"]
    t = time.perf_counter()
    if "002" in which:
        paper_002()
    if "001" in which:
        paper_001()
    print(f"\n(papers.py: {time.perf_counter() - t:.0f} s in all)")


if __name__ == "__main__":
    main()
