"""``nnxform verify``: every answer checked — a sat's counterexample replayed in onnxruntime, an unsat never
contradicted by sampling or by the exact (MILP) bounds of small networks — and bad properties refused in one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import MODELS, assert_clean_error, random_chain, run_cli
from test_bounds import mlp

from nnxform.analyzers import bounds
from nnxform.domain import Box
from nnxform.interpreter import run
from nnxform.ir import load
from nnxform.runtime import OnnxRunner
from nnxform.verify import verify
from nnxform.vnnlib import Case, Region, read_specification

TEST = MODELS / "vnncomp_test"
#: VNN-COMP's answers for its tool-interface test instances.
EXPECTED = {"test_nano.onnx": "unsat", "test_tiny.onnx": "unsat", "test_small.onnx": "unsat", "test_sat.onnx": "sat",
            "test_unsat.onnx": "unsat"}


def _cases(model, prop) -> list[Case]:
    n_out = int(np.prod(model.shapes()[model.output_name]))
    return read_specification(prop, (model.input_size, n_out))


def _replayed(model, cases: list[Case], verdict) -> None:
    """The counterexample lies in its case's box (as float32) and onnxruntime's output on it is in a region."""
    case = cases[verdict.case]
    x = np.asarray(verdict.counterexample, np.float32)
    assert np.all(x >= case.box.lower) and np.all(x <= case.box.upper)
    y = OnnxRunner(model)(x[None])
    assert case.violated(y.astype(np.float64))[0]
    assert np.array_equal(y[0], np.asarray(verdict.outputs, np.float32))


@pytest.mark.parametrize("row", list(csv.reader(open(TEST / "instances.csv"))), ids=lambda r: r[0])
def test_vnncomp_test_instances_come_out_right(row):
    model = load(TEST / row[0])
    cases = _cases(model, TEST / row[1])
    verdict = verify(model, cases, timeout=30)
    assert verdict.answer == EXPECTED[row[0]]
    if verdict.answer == "sat":
        _replayed(model, cases, verdict)


def _threshold_case(box: Box, n_out: int, j: int, t: float) -> Case:
    """The unsafe region ``Y_j >= t``."""
    coef = np.zeros((1, n_out))
    coef[0, j] = -1.0
    return Case(box, [Region(coef, np.array([-t]), np.array([False]))])


@pytest.mark.parametrize("seed, activation", [(s, "Relu") for s in range(6)] + [(s, "LeakyRelu") for s in range(4)])
def test_answers_agree_with_exact_milp_bounds(seed, activation):
    """Random ReLU and LeakyRelu networks (3 inputs: input splitting; 20 inputs: sign splitting): just above the exact
    maximum the property is unsat, just below it sat with a replayed counterexample; sampling never contradicts an
    unsat."""
    rng = np.random.default_rng(seed)
    n_in = 3 if seed % 2 == 0 else 20
    model = mlp(seed, [n_in, 12, 12, 2]) if activation == "Relu" else \
        random_chain(50 + seed, [n_in, 12, 12, 2], activation="LeakyRelu", alpha=[0.1, 0.03])
    centre = rng.uniform(-1, 1, n_in)
    box = Box(centre - 0.5, centre + 0.5)
    exact = bounds(model, box, "milp")
    assert exact.exact
    lo, hi = exact.output_lower[0], exact.output_upper[0]
    above = _threshold_case(box, 2, 0, hi + 0.02 * (hi - lo) + 1e-4)
    below = _threshold_case(box, 2, 0, hi - 0.05 * (hi - lo))
    proved = verify(model, [above], timeout=60)
    assert proved.answer == "unsat", proved.to_json()
    xs = box.sample(20_000, rng)
    assert not above.violated(run(model, xs.reshape(-1, n_in)).reshape(len(xs), -1)).any()
    found = verify(model, [below], timeout=60)
    assert found.answer == "sat", found.to_json()
    _replayed(model, [below], found)


def _deep_network_and_its_range(model_seed: int, rng: np.random.Generator, radius: float) -> tuple:
    """A 20-input network with three hidden layers, a box of ``radius`` around a random centre, and its first
    output's exact range there (MILP)."""
    model = mlp(model_seed, [20, 12, 12, 12, 2])
    centre = rng.uniform(-1, 1, 20)
    box = Box(centre - radius, centre + radius)
    exact = bounds(model, box, "milp")
    assert exact.exact
    return model, box, exact.output_lower[0], exact.output_upper[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_branches_refined_under_their_signs_agree_with_exact_milp_bounds(monkeypatch, seed):
    """With every open branch's hidden bounds optimised under its signs from the start (``_refine``), the answers
    around the exact maximum of a 20-input, three-hidden-layer network stay right: unsat just above it (sampling
    agrees), sat just below with a replayed counterexample; and the refinement did run."""
    import nnxform.verify as verify_module

    monkeypatch.setattr(verify_module, "REFINE_AFTER", 0.0)
    calls = []
    refine = verify_module._Search._refine
    monkeypatch.setattr(verify_module._Search, "_refine", lambda self, *a: calls.append(1) or refine(self, *a))
    rng = np.random.default_rng(seed)
    model, box, lo, hi = _deep_network_and_its_range(10 + seed, rng, 0.2)
    above = _threshold_case(box, 2, 0, hi + 0.02 * (hi - lo) + 1e-4)
    assert verify(model, [above], timeout=60).answer == "unsat"
    xs = box.sample(20_000, rng)
    assert not above.violated(run(model, xs).reshape(len(xs), -1)).any()
    below = _threshold_case(box, 2, 0, hi - 0.02 * (hi - lo))
    found = verify(model, [below], timeout=60)
    assert found.answer == "sat", found.to_json()
    _replayed(model, [below], found)
    assert calls


def test_conjunctions_and_disjunctions_of_regions():
    """ACAS Xu property 3 on network 1_1 (a conjunction of four comparisons; VNN-COMP 2022: unsat) and a
    disjunction of two regions, one of them reachable."""
    model = load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx")
    cases = _cases(model, MODELS / "vnnlib" / "acasxu_prop_3.vnnlib")
    verdict = verify(model, cases, timeout=60)
    assert verdict.answer == "unsat", verdict.to_json()
    box = cases[0].box
    y = OnnxRunner(model)(np.asarray(0.5 * (box.lower + box.upper), np.float32)[None])[0]
    reachable = Region(np.eye(5)[:1], np.array([float(y[0]) + 1e-3]), np.array([False]))  # Y_0 <= y_0 + 0.001
    two = [Case(box, [cases[0].regions[0], reachable])]
    verdict = verify(model, two, timeout=60)
    assert verdict.answer == "sat"
    _replayed(model, two, verdict)


def test_cli_result_file_json_and_exit_status(tmp_path):
    result, report = tmp_path / "result.txt", tmp_path / "report.json"
    r = run_cli("verify", TEST / "test_sat.onnx", TEST / "test_prop.vnnlib", "--result", result, "--json", report)
    assert r.returncode == 1, r.stderr
    lines = result.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and lines[-1].endswith("))")
    model = load(TEST / "test_sat.onnx")
    values = dict(pair.strip("()").split() for pair in lines[1:])
    x = np.array([float(values[f"X_{i}"]) for i in range(model.input_size)], np.float32)
    cases = _cases(model, TEST / "test_prop.vnnlib")
    assert cases[0].violated(OnnxRunner(model)(x[None]).astype(np.float64))[0]
    assert json.loads(report.read_text())["answer"] == "sat"
    r = run_cli("verify", TEST / "test_unsat.onnx", TEST / "test_prop.vnnlib", "--result", result, "--json", "-")
    assert r.returncode == 0 and json.loads(r.stdout)["answer"] == "unsat"
    assert result.read_text() == "unsat\n"


def test_timeout_is_an_answer(tmp_path):
    result = tmp_path / "result.txt"
    r = run_cli("verify", MODELS / "mnist-net_256x2.onnx", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib",
                "--timeout", "0.001", "--result", result)
    assert r.returncode == 3, r.stdout + r.stderr
    assert result.read_text() == "timeout\n"


PROPERTY = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const X_3 Real)
(declare-const X_4 Real)
{outputs}
(assert (>= X_0 0.0))
(assert (<= X_0 0.1))
(assert (>= X_1 0.0))
(assert (<= X_1 0.1))
(assert (>= X_2 0.0))
(assert (<= X_2 0.1))
(assert (>= X_3 0.0))
(assert (<= X_3 0.1))
(assert (>= X_4 {low}))
(assert (<= X_4 0.1))
{condition}
"""
FIVE = "".join(f"(declare-const Y_{j} Real)\n" for j in range(5))


@pytest.mark.parametrize("outputs, low, condition, fragments", [
    (FIVE, "0.0", "(assert (<= (* Y_0 Y_1) 0.0))", ["line 22, column 13", "only linear expressions"]),
    (FIVE, "0.0", "(assert (= Y_0 0.5))", ["line 22", "equalities on outputs are not supported"]),
    (FIVE, "0.0", "(assert (<= Y_7 0.5))", ["Y_7 is not declared"]),
    (FIVE + "(declare-const Y_5 Real)\n", "0.0", "(assert (<= Y_5 0.5))", ["declares 6 outputs", "has 5"]),
    (FIVE, "0.2", "(assert (<= Y_0 0.5))", ["the input box is empty", "X_4"]),
])
def test_bad_properties_are_refused_in_one_line(tmp_path, outputs, low, condition, fragments):
    prop = tmp_path / "bad.vnnlib"
    prop.write_text(PROPERTY.format(outputs=outputs, low=low, condition=condition))
    result = tmp_path / "result.txt"
    r = run_cli("verify", MODELS / "ACASXU_run2a_1_1_batch_2000.onnx", prop, "--result", result)
    assert_clean_error(r, *fragments)
    assert not result.exists()


def test_property_of_another_network_is_refused():
    r = run_cli("verify", MODELS / "mnist-net_256x2.onnx", MODELS / "vnnlib" / "acasxu_prop_2.vnnlib")
    assert_clean_error(r, "5 inputs", "784")


def _sampled_network(seed: int, sizes: list[int], radius: float) -> tuple:
    """A random ReLU chain, its bound engine, a random box of ``radius`` and 40,000 points of it with every tensor's
    values, and the hidden Linear steps: what the branch soundness tests below sample."""
    from nnxform.analyzers.boxes import DenseNetwork
    from nnxform.analyzers.network import Linear, compile_model

    rng = np.random.default_rng(seed)
    model = mlp(seed, sizes)
    net = compile_model(model)
    centre = rng.uniform(-1, 1, sizes[0])
    lo, hi = centre - radius, centre + radius
    xs = rng.uniform(lo, hi, (40_000, sizes[0]))
    hidden = [i for i, s in enumerate(net.steps) if isinstance(s, Linear) and i != net.output]
    return rng, model, net, DenseNetwork(net, "test"), lo, hi, xs, run(model, xs, keep=True), hidden


@pytest.mark.parametrize("seed", range(4))
def test_optimized_bounds_hold_on_their_branch(seed):
    """The bound engine with split signs, optimised slopes and split multipliers (β-CROWN) is never above the
    objective at sampled points of the branch (the box's points whose ReLU inputs have the fixed signs)."""
    from nnxform.analyzers.boxes import analyse, objective, optimized_objective

    rng, model, net, dense, lo, hi, xs, values, hidden = _sampled_network(seed, [20, 16, 16, 3], 0.3)
    anchor = xs[0]
    signs, inside = {}, np.ones(len(xs), bool)
    for i in hidden:  # fix the signs of four neurons per layer as the first sample has them
        z = values[net.steps[i].tensor].reshape(len(xs), -1)
        sg = np.zeros((1, z.shape[1]), np.int8)
        picked = rng.choice(z.shape[1], 4, replace=False)
        sg[0, picked] = np.where(z[0, picked] >= 0, 1, -1)
        signs[i] = sg
        inside &= np.all((z[:, picked] >= 0) == (sg[0, picked] > 0), axis=1)
    assert inside.sum() > 100 and np.array_equal(xs[0], anchor)
    coef = rng.normal(size=(4, 3))
    bound = rng.normal(size=4)
    state = analyse(dense, lo[None], hi[None], signs)
    plain, _ = objective(state, coef, bound)
    best, _ = optimized_objective(state, coef, bound, signs, 20)
    y = values[model.output_name].reshape(len(xs), -1)[inside]
    seen = (y @ coef.T - bound).min(axis=0)
    # (the optimised bound starts from the plain slopes; the float32 rounding terms of free slopes differ a little)
    assert np.all(best[0] <= seen) and np.all(best[0] >= plain[0] - 1e-6 * (1 + np.abs(plain[0])))
    stopped, _ = optimized_objective(state, coef, bound, signs, 20, until=lambda: True)  # (a deadline passed)
    assert np.array_equal(stopped, optimized_objective(state, coef, bound, signs, 0)[0]) and np.all(stopped <= best)


@pytest.mark.parametrize("seed", range(3))
def test_hidden_bounds_under_signs_hold_on_their_branch(seed):
    """The hidden bounds optimised under a branch's signs (``optimized_hidden``) contain the values of every sampled
    point of the branch, tighten the plain ones somewhere, and call a branch empty only where no sample has its
    signs (32 branches of random signs, some contradictory)."""
    from nnxform.analyzers.boxes import analyse, optimized_hidden

    rng, model, net, dense, lo, hi, xs, values, hidden = _sampled_network(seed, [20, 16, 16, 16, 3], 0.4)
    z = {i: values[net.steps[i].tensor].reshape(len(xs), -1) for i in hidden}
    B = 32
    signs = {i: np.zeros((B, 16), np.int8) for i in hidden}
    for i in hidden[:-1]:  # two random neurons of each layer but the last, each with a random sign
        for b in range(B):
            signs[i][b, rng.choice(16, 2, replace=False)] = rng.choice([-1, 1], 2)
    inside = np.ones((B, len(xs)), bool)
    for i, sg in signs.items():
        inside &= np.all((sg[:, None, :] == 0) | ((z[i][None] >= 0) == (sg[:, None, :] > 0)), axis=2)
    state = analyse(dense, np.repeat(lo[None], B, axis=0), np.repeat(hi[None], B, axis=0), signs)
    refined = optimized_hidden(state, signs, 10, hidden[1:], np.full(B, -1))
    tighter = False
    for i in hidden[1:]:
        for b in np.flatnonzero(inside.any(axis=1)):
            seen = z[i][inside[b]]
            assert np.all(refined.lo[i][b] <= seen.min(axis=0)) and np.all(seen.max(axis=0) <= refined.hi[i][b])
        tighter |= bool(np.any(refined.hi[i] - refined.lo[i] < state.hi[i] - state.lo[i] - 1e-6))
    assert tighter
    assert not np.any(refined.empty & inside.any(axis=1))


def test_sigmoid_networks_get_an_answer_not_an_error():
    """A network with many inputs and Sigmoid activations: bounds and splits, no MILP leaves (the encoder has no
    Sigmoid rows), so an answer, never a refusal mid-search."""
    model = mlp(3, [20, 8, 8, 2], act="Sigmoid")
    box = Box(np.full(20, -0.5), np.full(20, 0.5))
    exact_hi = run(model, box.sample(5000, np.random.default_rng(0))).reshape(5000, -1)[:, 0].max()
    far = _threshold_case(box, 2, 0, exact_hi + 10.0)
    assert verify(model, [far], timeout=20).answer == "unsat"
    near = _threshold_case(box, 2, 0, exact_hi - 1e-3)
    found = verify(model, [near], timeout=20)
    assert found.answer == "sat"
    _replayed(model, [near], found)


def test_workers_search_slices_of_the_box_in_parallel_and_agree():
    """Two processes on two slices of ACAS Xu's box give the answers one gives: unsat for property 3 on network 1_1,
    sat with a counterexample replayed in onnxruntime for a property that the network breaks."""
    from nnxform.verify import _in_parallel

    net = load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx")
    cases = read_specification(MODELS / "vnnlib" / "acasxu_prop_3.vnnlib", (5, 5))
    assert _in_parallel(net, cases, 60, 0, 2).answer == "unsat"
    box = cases[0].box
    y = OnnxRunner(net)(np.asarray(0.5 * (box.lower + box.upper), np.float32)[None])[0]
    broken = [Case(box, [Region(np.eye(5)[:1], np.array([float(y[0]) + 1.0]), np.zeros(1, bool))])]  # y_0 <= y_0 + 1
    v = _in_parallel(net, broken, 60, 0, 2)
    assert v.answer == "sat" and broken[0].violated(OnnxRunner(net)(v.counterexample[None]).astype(np.float64))[0]


def test_workers_share_the_open_branches_of_a_many_input_network_and_agree(monkeypatch):
    """Past ``PARALLEL_AFTER`` (here at once) a 20-input network's open branches are shared between two processes in
    rounds (here short ones, so what is left open is shared again): unsat just above the exact maximum with the whole
    volume proved (the workers' shares add up), sat just below with a counterexample replayed in onnxruntime."""
    import nnxform.verify as verify_module

    monkeypatch.setattr(verify_module, "PARALLEL_AFTER", 0.0)
    monkeypatch.setattr(verify_module, "SHARE_SECONDS", (0.1, 0.5))
    rounds = []
    forked = verify_module.in_processes
    monkeypatch.setattr(verify_module, "in_processes", lambda *a, **k: rounds.append(1) or forked(*a, **k))
    model, box, lo, hi = _deep_network_and_its_range(13, np.random.default_rng(3), 0.3)
    above = _threshold_case(box, 2, 0, hi + 0.01 * (hi - lo) + 1e-4)
    proved = verify(model, [above], timeout=60, workers=2)
    assert proved.answer == "unsat" and abs(proved.proved - 1.0) < 1e-9, proved.to_json()
    assert len(rounds) > 1, "the open branches were not shared again"
    below = _threshold_case(box, 2, 0, hi - 0.05 * (hi - lo))
    found = verify(model, [below], timeout=60, workers=2)
    assert found.answer == "sat", found.to_json()
    _replayed(model, [below], found)


def test_inherited_bounds_hold_on_each_branch():
    """What a branch keeps of its hidden bounds (its own intersected with its parent's, in float32 rounded outwards)
    contains the hidden values of sampled points of its part of the box, two generations down (input halvings and
    ReLU sign splits)."""
    import time

    from nnxform.analyzers.branching import child_branches
    from nnxform.verify import _Branches, _Objective, _outward32, _Search

    v = np.array([0.1, 1 / 3, -2 / 3, 1e-40, -1e30])
    lo32, hi32 = _outward32(v, v)
    assert np.all(lo32 <= v) and np.all(hi32 >= v) and lo32.dtype == np.float32
    rng = np.random.default_rng(5)
    model = mlp(3, [5, 12, 12, 12, 2])
    lo, hi = -0.3 * np.ones(5), 0.3 * np.ones(5)
    search = _Search(model, time.monotonic(), time.monotonic() + 600, None, rng)
    spec = _Objective(Case(Box(lo, hi), [Region(np.array([[1.0, -1.0]]), np.array([-50.0]), np.array([False]))]))
    branches = search._root(Box(lo, hi), None)
    for generation in range(2):
        split = rng.integers(0, 12, len(branches))  # an input halving and a first-layer ReLU per branch
        candidates = np.stack([np.full(len(branches), generation), 5 + split], axis=1)
        children = _Branches(*child_branches(branches.lower, branches.upper, branches.signs, candidates),
                             {i: (np.repeat(a, 4, axis=0), np.repeat(b, 4, axis=0))
                              for i, (a, b) in branches.bounds.items()},
                             np.repeat(search.split_step(candidates, 5), 2), np.full(4 * len(branches), -1))
        branches = children.with_bounds(search._bound(spec, children).bounds, search.own)
    values_at = search.dense.net.steps
    assert len(branches) == 16 and search.inherited
    checked = 0
    for b in range(len(branches)):
        xs = rng.uniform(branches.lower[b], branches.upper[b], (20_000, 5))
        values = run(model, xs, keep=True)
        first = search.slots.steps[0]
        z = values[values_at[first].tensor].reshape(len(xs), -1)
        sg = branches.signs[b, :12]
        inside = np.all((z >= 0) | (sg <= 0), axis=1) & np.all((z <= 0) | (sg >= 0), axis=1)
        if inside.sum() < 10:  # (a branch whose signs hold on little or none of its box)
            continue
        checked += 1
        for i, (a, c) in branches.bounds.items():
            seen = values[values_at[i].tensor].reshape(len(xs), -1)[inside]
            assert np.all(a[b] <= seen.min(axis=0)) and np.all(seen.max(axis=0) <= c[b])
    assert checked >= 8


def test_a_relu_split_reuses_its_parents_bounds_up_to_the_split(monkeypatch):
    """A child of a ReLU split keeps its parent's bounds up to the split's step without back-substituting them again
    (``settled``), and bounds every step as a full recomputation does (to float32's rounding of what it kept); a
    popped branch bounded again keeps all of its own."""
    import time

    from nnxform.analyzers import boxes
    from nnxform.analyzers.branching import child_branches
    from nnxform.verify import _Branches, _Objective, _Search

    fresh_boxes: dict[int, np.ndarray] = {}
    tighten = boxes._tighten

    def recording(state, i, a, b, fresh=None):
        fresh_boxes[i] = np.ones(state.size, bool) if fresh is None else fresh.copy()
        return tighten(state, i, a, b, fresh)

    monkeypatch.setattr(boxes, "_tighten", recording)

    rng = np.random.default_rng(11)
    model = mlp(4, [6, 16, 16, 16, 3])
    lo, hi = -0.4 * np.ones(6), 0.4 * np.ones(6)
    search = _Search(model, time.monotonic(), time.monotonic() + 600, None, rng)
    spec = _Objective(Case(Box(lo, hi), [Region(np.array([[1.0, -1.0, 0.0]]), np.array([-50.0]), np.array([False]))]))
    root = search._root(Box(lo, hi), None)
    parent = root.with_bounds(search._bound(spec, root).bounds, search.own)
    unstable = np.flatnonzero(np.concatenate([(parent.bounds[i][0][0] < 0) & (parent.bounds[i][1][0] > 0)
                                              if i in parent.bounds else np.zeros(search.slots.sizes[i], bool)
                                              for i in search.slots.steps]))
    assert len({int(search.split_step(np.array([[6 + j]]), 6)[0]) for j in unstable}) >= 2  # splits at two steps
    candidates = np.array([6 + unstable])
    kids = _Branches(*child_branches(parent.lower, parent.upper, parent.signs, candidates),
                     {i: (np.repeat(a, 2 * len(unstable), axis=0), np.repeat(b, 2 * len(unstable), axis=0))
                      for i, (a, b) in parent.bounds.items()}, np.repeat(search.split_step(candidates, 6), 2),
                     np.full(2 * len(unstable), search.own))
    assert (kids.settled >= 0).all()
    fresh = _Branches(kids.lower, kids.upper, kids.signs, kids.bounds, np.full(len(kids), -1), kids.refined)
    search.box_seconds = 1e-9  # (all branches in one part, however long the root took: the records are per call)
    reused = search._bound(spec, kids)
    for i in search.inherited:
        assert np.array_equal(fresh_boxes[i], kids.settled < i)  # back-substituted only after the split
    search.box_seconds = 1e-9
    full = search._bound(spec, fresh)
    for i in search.inherited:
        lower, upper = reused.bounds[i]
        assert np.all(lower >= kids.bounds[i][0]) and np.all(upper <= kids.bounds[i][1])  # (within the parent's)
        np.testing.assert_allclose(lower, full.bounds[i][0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(upper, full.bounds[i][1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(reused.progress, full.progress, rtol=1e-6, atol=1e-6)
    fresh_boxes.clear()
    search._bound(spec, parent)  # its own bounds already: none back-substituted
    assert set(search.inherited) <= set(fresh_boxes) and not any(fresh_boxes[i].any() for i in search.inherited)


def test_tied_splits_go_to_the_input_the_bound_spreads_over():
    """A split whose children gain nothing over their parent (an already narrow input) ties with others that gain
    nothing either: the tie goes to the input with the largest ``|A|·width``; a split that gains wins outright, and
    a padding candidate (-1) never does."""
    from nnxform.verify import _best_split
    candidates = np.array([[0, 1, 2], [0, 1, -1]])
    progress = np.array([-1.0, -1.0, -1.0, -1.0, -1.0, -1.0,    # branch 0: no split gains (its parent: -1)
                         -1.0, -1.0, -0.2, 0.3, 5.0, 5.0])      # branch 1: input 1 gains; the padding looks best
    spread = np.array([[1.0, 9.0, 3.0], [50.0, 1.0, 0.0]])
    assert _best_split(progress, candidates, spread).tolist() == [1, 1]


def test_a_leaf_left_with_nothing_to_split_is_tried_again_with_the_time_left(monkeypatch):
    """A MILP leaf its share of the time leaves undecided is split further; a branch with no ReLU left to split is
    tried again once the other branches are done, with the time left, instead of ending the search as ``unknown``
    (here the bounds are made to prove no branch, and the solver to give up on any solve given no more than a leaf's
    share, 3 s of the 60)."""
    import dataclasses

    import nnxform.verify as verify_module
    from nnxform.analyzers.encoding import Encoder
    plain = verify_module._Search._bound
    monkeypatch.setattr(verify_module._Search, "_bound", lambda self, *a, **k: dataclasses.replace(
        found := plain(self, *a, **k), progress=np.minimum(found.progress, -1.0)))
    given = []
    feasible = Encoder.region_feasible

    def slow_solver(self, step, coef, bound, seconds):
        given.append(seconds)
        return ("unknown", None) if seconds <= 3.0 else feasible(self, step, coef, bound, seconds)

    monkeypatch.setattr(Encoder, "region_feasible", slow_solver)
    rng = np.random.default_rng(3)
    model = mlp(10, [20, 5, 2])  # (many inputs: ReLU splits only; few ReLUs: every branch splits down to none)
    box = Box(rng.uniform(-1, 0, 20), rng.uniform(0.2, 1, 20))
    exact = bounds(model, box, "milp")
    lo, hi = exact.output_lower[0], exact.output_upper[0]
    verdict = verify(model, [_threshold_case(box, 2, 0, hi + 1e-3 * (hi - lo) + 1e-5)], timeout=60)
    assert verdict.answer == "unsat", verdict.to_json()
    assert min(given) <= 3.0 < max(given)  # leaves that were split further, and the ones tried again


def test_few_input_milp_leaves_after_escalation(monkeypatch):
    """Past the input splits' phase, branches of a few-input network with few unstable ReLUs left are decided by one
    MILP each (counted here), and the answers still match the exact maximum on both sides."""
    import nnxform.verify as verify_module
    monkeypatch.setattr(verify_module._Search, "escalated", lambda self: True)
    calls = []
    exact_leaf = verify_module._Search._exact
    monkeypatch.setattr(verify_module._Search, "_exact", lambda self, *a: calls.append(1) or exact_leaf(self, *a))
    rng = np.random.default_rng(3)
    model = mlp(10, [3, 12, 12, 2])
    box = Box(rng.uniform(-1, 0, 3), rng.uniform(0.2, 1, 3))
    exact = bounds(model, box, "milp")
    lo, hi = exact.output_lower[0], exact.output_upper[0]
    above = _threshold_case(box, 2, 0, hi + 1e-3 * (hi - lo) + 1e-5)
    assert verify(model, [above], timeout=60).answer == "unsat"
    assert calls, "no branch was decided by a MILP"
    below = _threshold_case(box, 2, 0, hi - 1e-3 * (hi - lo))
    found = verify(model, [below], timeout=60)
    assert found.answer == "sat", found.to_json()
    _replayed(model, [below], found)


def test_progress_is_reported_from_the_start_and_after_every_leaf(monkeypatch):
    """The progress line opens before the first branch is bounded (nothing proved, the root open) and is told after
    every MILP leaf (a leaf may take seconds) and every part of a batch; the proved share never goes down."""
    import nnxform.verify as verify_module
    monkeypatch.setattr(verify_module._Search, "escalated", lambda self: True)
    events = []
    exact_leaf = verify_module._Search._exact
    monkeypatch.setattr(verify_module._Search, "_exact",
                        lambda self, *a: events.append("leaf") or exact_leaf(self, *a))
    rng = np.random.default_rng(3)
    model = mlp(10, [3, 12, 12, 2])
    box = Box(rng.uniform(-1, 0, 3), rng.uniform(0.2, 1, 3))
    exact = bounds(model, box, "milp")
    hi = exact.output_upper[0]
    case = _threshold_case(box, 2, 0, hi + 1e-3 * (hi - exact.output_lower[0]) + 1e-5)
    verdict = verify(model, [case], timeout=60, progress=lambda done, open_, seconds: events.append((done, open_)))
    assert verdict.answer == "unsat"
    assert events[0] == (0, 1)
    leaves = [k for k, e in enumerate(events) if e == "leaf"]
    assert leaves and all(isinstance(events[k + 1], tuple) for k in leaves)
    proved = [e[0] for e in events if isinstance(e, tuple)]
    assert proved == sorted(proved) and len(proved) > len(leaves)
