"""LP and MILP bounds: soundness, nesting, exactness against dense grids, time-outs, refusals."""

from __future__ import annotations

import highspy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from conftest import MODELS, make_model
from nnxform.analyzers import bounds, compile_model
from nnxform.analyzers.encoding import Encoder
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.interpreter import run
from nnxform.gradient import gradient
from nnxform.ir import from_proto, load
from nnxform.vnnlib import read_box
from test_bounds import assert_nested, assert_sound, convnet, mlp, random_box, residual


def maxpool_net(seed: int):
    """Two inputs → Gemm(8) → Reshape 2×2×2 → MaxPool 2×2 → Flatten → Gemm(2): MaxPool on a grid-sized input."""
    rng = np.random.default_rng(seed)
    w = {"A": rng.normal(0, 1, (8, 2)), "a": rng.normal(0, 0.5, 8), "s": np.array([1, 2, 2, 2]),
         "B": rng.normal(0, 1, (2, 2)), "b": rng.normal(0, 0.5, 2)}
    nodes = [
        helper.make_node("Gemm", ["x", "A", "a"], ["h"], transB=1, name="g1"),
        helper.make_node("Reshape", ["h", "s"], ["h4"], name="reshape"),
        helper.make_node("MaxPool", ["h4"], ["p"], kernel_shape=[2, 2], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "B", "b"], ["y"], transB=1, name="g2"),
    ]
    return from_proto(make_model(nodes, [1, 2], weights=w))


def grid_extremes(model, box: Box, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min and max of every output over a dense grid, and a per-output slack (max |∇| × grid step)."""
    axes = [np.linspace(lo, hi, n) for lo, hi in zip(box.lower, box.upper)]
    xs = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    ys = run(model, xs.reshape((-1,) + model.input_shape)).reshape(len(xs), -1)
    step = np.linalg.norm((box.upper - box.lower) / (n - 1))
    slack = np.array([np.abs(gradient(model, xs, np.eye(ys.shape[1])[j])[1]).sum(axis=1).max() * step
                      for j in range(ys.shape[1])])
    return ys.min(axis=0), ys.max(axis=0), slack + 1e-5


@settings(deadline=None, derandomize=True, max_examples=10)
@given(seed=st.integers(0, 2**16), depth=st.integers(1, 3), width=st.integers(2, 8))
def test_random_mlps_lp_and_milp_are_sound_and_nested(seed, depth, width):
    model = mlp(seed, [3] + [width] * depth + [2], out_act=seed % 2 == 0)
    box = random_box(seed, 3)
    net = compile_model(model)
    s = bounds(net, box, "symbolic")
    lp = bounds(net, box, "lp", seed=s)
    milp = bounds(net, box, "milp", seed=lp, time_limit=20, neurons=True)
    for b in (lp, milp):
        assert_sound(model, box, b, samples=2000)
    assert_nested(s, lp)
    assert_nested(lp, milp)
    assert milp.exact


@pytest.mark.parametrize("build", [residual, convnet])
def test_dags_and_maxpool_lp_milp_sound(build):
    model = build(0)
    # convnet at 0.2: 24 + 6 unstable ReLUs, the MILP's width 25 % under the LP's, 9 s (at 0.3: 32 + 14, 17 s)
    box = random_box(0, model.input_size, width=0.2 if build is convnet else 0.3)
    lp = bounds(model, box, "lp")
    assert_sound(model, box, lp)
    milp = bounds(compile_model(model), box, "milp", time_limit=20)
    assert_sound(model, box, milp)
    assert milp.exact and milp.width_sum <= lp.width_sum + 1e-9


@pytest.mark.parametrize("case", ["fc_2-2-3", "mlp2", "maxpool0", "maxpool1", "residual1d"])
def test_milp_equals_grid_extremes(case):
    if case == "fc_2-2-3":
        model, box = load(MODELS / "marabou_fc_2-2-3.onnx"), Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    elif case == "mlp2":
        model, box = mlp(7, [2, 10, 10, 3]), Box(np.array([-1.0, -0.5]), np.array([1.0, 1.5]))
    elif case.startswith("maxpool"):
        model, box = maxpool_net(int(case[-1])), Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    else:
        model, box = mlp(8, [1, 12, 12, 2], out_act=True), Box(np.array([-2.0]), np.array([2.0]))
    b = bounds(model, box, "milp", time_limit=30)
    assert b.exact
    lo, hi, slack = grid_extremes(model, box, 10001 if model.input_size == 1 else 301)
    assert np.all(b.output_lower <= lo) and np.all(b.output_upper >= hi)
    assert np.all(b.output_lower >= lo - slack) and np.all(b.output_upper <= hi + slack)


def test_lp_is_never_looser_than_symbolic_from_the_same_intermediate_bounds():
    """Raw LP optima over symbolic's own intermediate bounds, before any intersection."""
    for seed in range(4):
        model = mlp(seed, [4, 10, 10, 10, 3])
        box = random_box(seed, 4, width=0.8)
        net = compile_model(model)
        s = bounds(net, box, "symbolic")
        state = s.state.copy()
        enc = Encoder(state, integer=False)
        for i in range(net.output + 1):
            enc.add(i)
        for j in range(3):
            col = enc.col[net.output] + j
            assert enc.lp_min(col, 1.0) >= s.output_lower[j] - 1e-7
            assert -enc.lp_min(col, -1.0) <= s.output_upper[j] + 1e-7


def test_mnist_256x2_lp_on_a_small_box():
    model = load(MODELS / "mnist-net_256x2.onnx")
    full = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    mid = 0.5 * (full.lower + full.upper)
    box = Box(np.maximum(mid - 0.012, full.lower), np.minimum(mid + 0.012, full.upper))
    net = compile_model(model)
    s = bounds(net, box, "symbolic")
    calls = []
    lp = bounds(net, box, "lp", seed=s, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert lp.stable_counts()["unstable"] <= s.stable_counts()["unstable"]
    assert lp.width_sum < s.width_sum
    assert_sound(model, box, lp, samples=2000, targets_per_layer=2)


def test_milp_time_out_is_sound_and_not_exact():
    model = mlp(11, [6, 40, 40, 40, 3])
    box = random_box(11, 6, width=1.0)
    net = compile_model(model)
    lp = bounds(net, box, "lp")
    b = bounds(net, box, "milp", seed=lp, time_limit=1e-3)
    assert not b.exact and b.details["exact_outputs"]["lower"].count(False) >= 1
    assert_nested(lp, b)
    assert_sound(model, box, b, samples=2000)


@pytest.mark.parametrize("method", ["lp", "milp"])
def test_sigmoid_is_refused_by_solvers(method):
    model = mlp(1, [2, 3, 1], act="Sigmoid")
    with pytest.raises(NnxformError, match="Sigmoid node 'act0'.*interval or symbolic"):
        bounds(model, Box.default(2), method)


def test_seed_checks():
    model = mlp(2, [2, 3, 1])
    net = compile_model(model)
    s = bounds(net, Box.default(2), "symbolic")
    with pytest.raises(NnxformError, match="another network"):
        bounds(compile_model(model), Box.default(2), "lp", seed=s)
    with pytest.raises(NnxformError, match="cannot seed"):
        bounds(net, Box.default(2), "interval", seed=s)


def test_time_limit_is_per_solve():
    """HiGHS counts its time limit over all runs of a model; ours applies to each solve."""
    model = load(MODELS / "mnist-net_256x2.onnx")
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    net = compile_model(model)
    state = bounds(net, box, "symbolic").state.copy()
    enc = Encoder(state, integer=False, time_limit=2.0)  # one solve takes milliseconds; under load 7, up to a second
    for i in range(net.output + 1):
        enc.add(i)
    solves = 0
    while enc.h.getRunTime() < 2.5 and solves < 5000:  # past one limit in total
        j, sign = (solves // 2) % 10, (1.0, -1.0)[solves % 2]
        enc.lp_min(enc.col[net.output] + j, sign)
        assert enc.h.getModelStatus() != highspy.HighsModelStatus.kTimeLimit, solves
        solves += 1
    assert enc.h.getRunTime() >= 2.5
