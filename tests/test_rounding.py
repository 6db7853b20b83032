"""The float rounding of onnxruntime is inside every bound: cancellation, large weights, the rigorous margin's formula."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_model
from onnx import helper

from nnxform.analyzers import bounds, compile_model
from nnxform.analyzers.rounding import Rounding, cast_box, gamma, roundings
from nnxform.discrepancy import Pair
from nnxform.domain import Box
from nnxform.ir import Node, from_proto
from nnxform.runtime import OnnxRunner


def cancelling_network(seed: int = 0):
    """64 inputs, first-layer weights ~1e4 whose products cancel to hidden values ~1, an output ~0 (the campaign's case)."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, 64).astype(np.float32)
    W1 = (rng.choice([-1.0, 1.0], (8, 64)) * rng.uniform(0.9, 1.1, (8, 64)) * 1e4).astype(np.float32)
    b1 = (1.0 - W1.astype(np.float64) @ x0.astype(np.float64)).astype(np.float32)  # hidden ≈ 1
    W2 = np.ones((1, 8), np.float32)
    b2 = np.array([-8.0], np.float32)  # output ≈ 0
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
    model = from_proto(make_model(nodes, [1, 64], weights={"W1": W1, "b1": b1, "W2": W2, "b2": b2}))
    return model, x0.astype(np.float64)


@pytest.mark.parametrize("method", ["interval", "symbolic", "lp", "milp"])
def test_bounds_cover_onnxruntime_under_cancellation(method):
    model, x0 = cancelling_network()
    y = OnnxRunner(model)(x0[None]).astype(np.float64)[0]
    point = Box(x0, x0.copy())
    b = bounds(compile_model(model), point, method, time_limit=10)
    assert np.all(b.output_lower <= y) and np.all(b.output_upper >= y), (b.output_lower, y, b.output_upper)
    tiny = Box(x0 - 1e-6, x0 + 1e-6)
    ys = OnnxRunner(model)(tiny.points(2000, np.random.default_rng(0))).astype(np.float64)
    b = bounds(compile_model(model), tiny, method, time_limit=10)
    assert np.all(b.output_lower <= ys.min(axis=0)) and np.all(b.output_upper >= ys.max(axis=0))


def test_merged_discrepancy_covers_its_own_witness():
    """merged-symbolic once printed δ_max <= 4.3e-6 next to its own witness of 0.00966."""
    model, x0 = cancelling_network(1)
    other = model.copy()
    other.constants = {k: (v * np.float32(1 + 1e-6) if k == "W2" else v) for k, v in other.constants.items()}
    pair = Pair(model, other)
    box = Box(x0 - 1e-7, x0 + 1e-7)
    for method in ("interval", "symbolic", "merged-interval", "merged-symbolic"):
        d = pair.analyse(box, method)
        assert d.found <= d.delta_max, (method, d.found, d.delta_max)


def test_gamma_and_the_roundings_of_operators():
    u = 2.0 ** -24
    assert gamma(1, u) == pytest.approx(u / (1 - u))
    assert gamma(3, u) >= gamma(1, u) + gamma(2, u) + gamma(1, u) * gamma(2, u)  # chains of operators add up
    assert np.isinf(gamma(2 ** 25, u))
    shapes = {"x": (1, 10), "W": (4, 10), "b": (4,), "c": (4, 3, 2, 2)}
    assert roundings(Node("Gemm", "g", ["x", "W", "b"], ["y"], {"transB": 1}), shapes) == 10 + 2 + 1
    assert roundings(Node("Conv", "c", ["x", "c"], ["y"], {}), shapes) == 12 + 1
    assert roundings(Node("Reshape", "r", ["x", "s"], ["y"], {}), shapes) == 0
    r = Rounding.of_gemm([np.array([[2.0, 0.0, -1.0]])], np.array([0.5]))
    assert r.depth.tolist() == [2 + 2 + 1]  # two products, the bias, the constants' casts
    assert r.noise([np.array([1.0, 5.0, 3.0])], u)[0] == pytest.approx(gamma(5, u) * (2 + 3 + 0.5))


def test_the_input_cast_widens_the_box_outward():
    lo, hi = np.array([0.1, -0.3, 1.0]), np.array([0.2, 0.7, 1.0])
    clo, chi = cast_box(lo, hi, np.float32)
    assert np.all(clo <= lo) and np.all(chi >= hi)
    assert np.all(clo.astype(np.float32) <= lo.astype(np.float32)) and np.all(chi.astype(np.float32) >= hi.astype(np.float32))
    assert clo[2] == 1.0 and chi[2] == 1.0  # representable bounds stay
    assert np.array_equal(cast_box(lo, hi, np.float64)[0], lo)


def test_the_margin_costs_little_on_an_mnist_box():
    """The rigorous margin is noise in the analysis, not added at the end: it widens symbolic bounds by < 10 %."""
    from conftest import MODELS

    from nnxform.ir import load
    from nnxform.vnnlib import read_box

    net = compile_model(load(MODELS / "mnist-net_256x2.onnx"))
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    float_width = bounds(net, box, "symbolic").width_sum
    from nnxform.analyzers import symbolic as sym
    from nnxform.analyzers.interval import interval
    from nnxform.analyzers.result import State

    state = sym.symbolic(interval(State.start(net, box, real=True)))
    real_width = float(np.sum(state.hi[net.output] - state.lo[net.output]))
    assert real_width < float_width < 1.1 * real_width
