"""The float32 products of ``symbolic``'s back-substitution: their rounding is bounded and subtracted, never ignored."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_model
from onnx import helper

from nnxform.analyzers import compile_model, rounding, symbolic
from nnxform.analyzers.interval import interval
from nnxform.analyzers.result import State
from nnxform.domain import Box
from nnxform.interpreter import run
from nnxform.ir import from_proto


def cancelling_chain(seed: int):
    """Two hidden layers of 32 active ReLUs (values ≈ 1) and an output whose weights, ±1e4, cancel to ≈ 0: the
    output's coefficients on the input are sums of products ~1e8 that cancel, which float32 rounds by units."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, 48)
    W1 = rng.normal(0, 1, (32, 48)).astype(np.float32)
    b1 = (1.0 - W1.astype(np.float64) @ x0).astype(np.float32)
    W2 = (rng.choice([-1.0, 1.0], (32, 32)) * rng.uniform(0.5, 1.5, (32, 32)) * 1e2).astype(np.float32)
    b2 = (1.0 - W2.astype(np.float64) @ np.ones(32)).astype(np.float32)
    W3 = (rng.choice([-1.0, 1.0], (2, 32)) * 1e4).astype(np.float32)
    b3 = np.zeros(2, np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1), helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Gemm", ["r1", "W2", "b2"], ["h2"], transB=1), helper.make_node("Relu", ["h2"], ["r2"]),
             helper.make_node("Gemm", ["r2", "W3", "b3"], ["y"], transB=1)]
    weights = {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "W3": W3, "b3": b3}
    return from_proto(make_model(nodes, [1, 48], weights=weights)), x0


def real_bounds(model, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """``symbolic`` output bounds of the real-valued network (no float network rounding: only the analysis's own)."""
    net = compile_model(model)
    state = symbolic.symbolic(interval(State.start(net, box, real=True)))
    return state.lo[net.output], state.hi[net.output]


@pytest.mark.parametrize("seed", range(6))
def test_float32_products_keep_real_bounds_sound_under_cancellation(seed):
    model, x0 = cancelling_chain(seed)
    box = Box(x0 - 1e-9, x0 + 1e-9)
    y = run(model, x0[None]).reshape(-1)  # float64: the real network up to ~1e-16 relative
    lo, hi = real_bounds(model, box)
    assert np.all(lo <= y) and np.all(y <= hi), (lo, y, hi)


def test_the_float32_slack_is_what_keeps_them_sound(monkeypatch):
    """With float32's rounding taken as zero, the same bounds exclude the network's value: the slack is needed."""
    monkeypatch.setitem(rounding.UNIT_ROUNDOFF, np.dtype(np.float32), 0.0)
    missed = 0
    for seed in range(6):
        model, x0 = cancelling_chain(seed)
        y = run(model, x0[None]).reshape(-1)
        lo, hi = real_bounds(model, Box(x0 - 1e-9, x0 + 1e-9))
        missed += int(np.any(lo > y) or np.any(y > hi))
    assert missed > 0


def test_coefficients_beyond_float32_range_fall_back_to_float64():
    """Weights of 1e15 on every layer (every ReLU active on the box): the output's coefficients on the input (~1e45)
    do not fit float32, so those products run in float64; the bounds stay finite and contain the network's value."""
    rng = np.random.default_rng(3)
    x0 = rng.uniform(1, 2, 8)
    weights = {"W1": rng.uniform(0, 1, (6, 8)) * 1e15, "W2": rng.uniform(0, 1, (6, 6)) * 1e15,
               "W3": rng.normal(0, 1, (2, 6)) * 1e15, "b1": np.zeros(6), "b2": np.zeros(6), "b3": np.zeros(2)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1), helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Gemm", ["r1", "W2", "b2"], ["h2"], transB=1), helper.make_node("Relu", ["h2"], ["r2"]),
             helper.make_node("Gemm", ["r2", "W3", "b3"], ["y"], transB=1)]
    model = from_proto(make_model(nodes, [1, 8], weights=weights))
    y = run(model, x0[None]).reshape(-1)
    lo, hi = real_bounds(model, Box(x0 - 1e-3, x0 + 1e-3))
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert np.all(lo <= y) and np.all(y <= hi), (lo, y, hi)
