"""Soundness under numerical stress: large-magnitude networks, where a solver's bound is not to be trusted blindly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import extremes, make_model, random_chain
from onnx import helper

from nnxform.analyzers import bounds, compile_model
from nnxform.domain import Box
from nnxform.ir import from_proto
from nnxform.runtime import OnnxRunner


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e4])
@pytest.mark.parametrize("seed", range(4))
def test_milp_bounds_contain_onnxruntime_at_every_scale(seed, scale):
    rng = np.random.default_rng(seed)
    widths = [3] + list(rng.integers(3, 8, size=int(rng.integers(2, 4)))) + [2]
    model = random_chain(5 + seed, widths, scale)
    box = Box(-np.ones(3), np.ones(3))
    lo, hi = extremes(model, box)
    for method in ("symbolic", "lp", "milp"):
        b = bounds(compile_model(model), box, method, time_limit=10.0)
        assert np.all(b.output_lower <= lo) and np.all(b.output_upper >= hi), (method, b.output_lower, lo, b.output_upper, hi)


def test_the_campaigns_network_is_bounded_soundly():
    """3 → 7 → 3 → 7 → 2 at scale 1e3: the MILP claimed y0 >= -3.9e10 (exact) while onnxruntime reaches -3.49e11."""
    model = random_chain(5, [3, 7, 3, 7, 2], 1e3)
    box = Box(-np.ones(3), np.ones(3))
    x = np.array([[-0.6061, -0.9821, 0.9986]])
    y = OnnxRunner(model)(x).astype(np.float64)[0]
    b = bounds(compile_model(model), box, "milp", time_limit=10.0)
    assert np.all(b.output_lower <= y) and np.all(b.output_upper >= y)


@pytest.mark.parametrize("method", ["lp", "milp"])
def test_a_total_time_limit_bounds_the_whole_analysis(method):
    """Every limit bounds the whole command: past ``total_time`` no solve starts, the rest keep sound bounds."""
    import time

    from conftest import MODELS

    from nnxform.ir import load

    model = load(MODELS / "mnist-net_256x2.onnx")
    box = Box(np.zeros(784), np.ones(784))  # every ReLU unstable: hundreds of solves
    t = time.perf_counter()
    b = bounds(model, box, method, time_limit=5.0, total_time=1.0)
    assert time.perf_counter() - t < 30.0  # hundreds of 5 s solves without it; headroom for a loaded machine
    assert b.details["time_limit_reached"] and not b.exact
    lo, hi = extremes(model, box, 2000)
    assert np.all(b.output_lower <= lo) and np.all(b.output_upper >= hi)


def test_memory_is_estimated_before_compiling(monkeypatch):
    """An affine map over a large image (here a transposition feeding a ReLU) is kept as an operator (``analyzers.conv``:
    ``SubgraphMap``); forced into a dense matrix it would need terabytes: refused at once, with the estimate. A
    convolution of the same size, and the identity between a ReLU and the output, are operators too."""
    from nnxform.analyzers import network
    from nnxform.analyzers.conv import MATRIX_FREE, SubgraphMap
    from nnxform.errors import NnxformError

    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), helper.make_node("Relu", ["t"], ["y"])]
    model = from_proto(make_model(nodes, [1, 3, 512, 512]))
    assert isinstance(compile_model(model).steps[1].weights[0], SubgraphMap)
    monkeypatch.setattr(network, "DENSE_CONV_LIMIT", 2**62)
    with pytest.raises(NnxformError, match="GiB"):
        compile_model(model)
    monkeypatch.undo()
    w = np.random.default_rng(0).normal(size=(16, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    net = compile_model(from_proto(make_model(nodes, [1, 3, 512, 512], weights={"w": w})))
    assert all(isinstance(s.weights[0], MATRIX_FREE) for s in net.steps if hasattr(s, "weights"))


def test_a_node_limit_makes_the_classification_repeatable_and_a_binding_time_limit_is_said():
    """Under a time limit the MILP stage's outcome depends on the machine's speed; a node limit does not."""
    from conftest import MODELS

    from nnxform.ir import load
    from nnxform.stable import classify
    from nnxform.vnnlib import read_box

    model = load(MODELS / "mnist-net_256x2.onnx")
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    runs = [classify(model, box, time_limit=120, node_limit=50, seed=0) for _ in range(2)]
    assert [l.status.tolist() for l in runs[0].layers] == [l.status.tolist() for l in runs[1].layers]
    assert not runs[0].time_limit_reached and runs[0].to_json()["node_limit"] == 50
    cut = classify(model, box, time_limit=0.0, seed=0)  # sampling only: the stable neurons stay undecided
    assert cut.time_limit_reached and any("differ between runs" in n for n in cut.notes)


def test_a_total_time_limit_bounds_the_discrepancy_solves():
    from conftest import MODELS

    from nnxform.discrepancy import Pair
    from nnxform.ir import load

    a = load(MODELS / "mnist-net_256x2.onnx")
    b = a.copy()
    b.constants = {k: (v * np.float32(0.999) if v.dtype.kind == "f" and v.ndim == 2 else v) for k, v in b.constants.items()}
    box = Box(np.zeros(784), np.ones(784))
    import time

    for method in ("lp", "merged-symbolic"):
        t = time.perf_counter()
        r = Pair(a, b).bound(box, method, time_limit=5.0, total_time=1.0)
        assert time.perf_counter() - t < 30.0, method  # minutes without it; headroom for a loaded machine
        cut = r.details.get("time_limit_reached", False)
        assert cut == (method == "lp") and not r.exact, method  # symbolic methods have no solves to cut


def test_cbc_through_pulp_gives_the_same_exact_bounds_as_highs():
    """--solver cbc: the same model through pulp; bounds only from proven optima, replayed like HiGHS's."""
    model = random_chain(11, [3, 8, 8, 2], 1.0)
    box = Box(-np.ones(3), np.ones(3))
    lo, hi = extremes(model, box)
    ref = bounds(model, box, "milp", time_limit=10.0)
    cbc = bounds(model, box, "milp", time_limit=10.0, solver="cbc")
    assert ref.exact and cbc.exact
    assert np.all(cbc.output_lower <= lo) and np.all(cbc.output_upper >= hi)
    np.testing.assert_allclose(cbc.output_lower, ref.output_lower, atol=1e-4)
    np.testing.assert_allclose(cbc.output_upper, ref.output_upper, atol=1e-4)


def test_an_unknown_or_missing_solver_is_a_clear_error():
    from nnxform.errors import NnxformError

    model = random_chain(11, [3, 4, 2], 1.0)
    box = Box(-np.ones(3), np.ones(3))
    with pytest.raises(NnxformError, match="unknown MILP solver 'glpk'"):
        bounds(model, box, "milp", solver="glpk")
    import pulp

    if not pulp.getSolver("CPLEX_CMD", msg=False).available():
        with pytest.raises(NnxformError, match="not available here"):
            bounds(model, box, "milp", solver="cplex")


def test_discrepancy_milp_through_cbc_is_sound():
    from nnxform.discrepancy import Pair

    a = random_chain(12, [3, 6, 6, 2], 1.0)
    b = a.copy()
    b.constants = {k: (v * np.float32(1.01) if k == "W1" else v) for k, v in b.constants.items()}
    box = Box(-np.ones(3), np.ones(3))
    d = Pair(a, b).analyse(box, "milp", time_limit=10.0, solver="cbc")
    assert d.found <= d.delta_max
