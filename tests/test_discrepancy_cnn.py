"""The difference analysis of two CNNs with their convolutions kept as operators (``analyzers.difference``'s analysis
form): channels aligned, identity layers padded, bounds that contain every sampled difference, no dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from conftest import make_model
from nnxform.analyzers import network
from nnxform.analyzers.conv import ConvMap
from nnxform.analyzers.difference import ChainLayer, NotAligned, Placement, aligned_chains, widen
from nnxform.discrepancy import Pair
from nnxform.domain import Box
from nnxform.gradient import gradient
from nnxform.ir import from_proto
from nnxform.runtime import OnnxRunner

RNG = np.random.default_rng(7)


def cnn(channels=(6, 8), hidden=(12,), size=8, drop=((), ()), avgpool=False, seed=0, scale=1.0):
    """Conv(3×3, pad 1) → Relu → [AveragePool 2×2] → Conv(3×3, stride 2, pad 1) → Relu → Flatten → Gemm… → Gemm(4);
    ``drop``: channels of each Conv removed (a physically pruned copy of the same weights)."""
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    W1, b1 = rng.normal(0, 0.4, (c1, 2, 3, 3)), rng.normal(0, 0.1, c1)
    W2, b2 = rng.normal(0, 0.3, (c2, c1, 3, 3)), rng.normal(0, 0.1, c2)
    side = (size // 2 if avgpool else size) // 2
    dense = [(rng.normal(0, 0.1, (n, m)), rng.normal(0, 0.1, n))
             for m, n in zip((c2 * side * side,) + tuple(hidden), tuple(hidden) + (4,))]
    keep1, keep2 = (np.setdiff1d(np.arange(c), d) for c, d in zip(channels, drop))
    W1, b1 = W1[keep1], b1[keep1]
    W2, b2 = W2[np.ix_(keep2, keep1)] * scale, b2[keep2]
    cols = (keep2[:, None] * side * side + np.arange(side * side)).reshape(-1)
    dense[0] = (dense[0][0][:, cols], dense[0][1])
    ws = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"])]
    src = "r1"
    if avgpool:
        nodes.append(helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]))
        src = "p1"
    nodes += [helper.make_node("Conv", [src, "W2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
              helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("Flatten", ["r2"], ["h0"])]
    for k, (W, b) in enumerate(dense):
        ws[f"G{k}"], ws[f"g{k}"] = W, b
        out = "y" if k == len(dense) - 1 else f"z{k}"
        nodes.append(helper.make_node("Gemm", [f"h{k}", f"G{k}", f"g{k}"], [out], transB=1))
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"h{k + 1}"]))
    return from_proto(make_model(nodes, [1, 2, size, size], weights=ws))


def sampled(a, b, box, n=3000):
    xs = np.vstack([box.points(n, RNG), box.lower[None], box.upper[None]])
    return OnnxRunner(a)(xs).astype(np.float64) - OnnxRunner(b)(xs).astype(np.float64)


def contains(bounds, deltas):
    return np.all(deltas >= bounds.lower - 1e-9) and np.all(deltas <= bounds.upper + 1e-9)


@pytest.mark.parametrize("avgpool", [False, True], ids=["conv-conv", "conv-avgpool-conv"])
def test_a_channel_pruned_copy_is_bounded_with_its_convolutions_kept(avgpool):
    a = cnn(avgpool=avgpool)
    b = cnn(drop=((1, 4), (0, 5, 6)), avgpool=avgpool)
    pair = Pair(a, b)
    assert pair.chains and isinstance(pair.layers[0].wa, ConvMap) and isinstance(pair.layers[0].d, ConvMap)
    assert any("widened from 4 to 6 channels" in n for n in pair.notes)
    assert any("widened from 5 to 8 channels" in n for n in pair.notes)
    centre = RNG.uniform(0.2, 0.8, a.input_size)
    box = Box(centre - 0.05, centre + 0.05)
    deltas = sampled(a, b, box)
    widths = {}
    for method in ("interval", "symbolic", "lp"):
        r = pair.bound(box, method)
        assert contains(r, deltas), method
        widths[method] = float((r.upper - r.lower).sum())
    assert widths["lp"] <= widths["symbolic"] * (1 + 1e-6) <= widths["interval"] * (1 + 1e-6)


def test_the_milp_on_a_cnn_pair_is_exact_and_its_witness_replays():
    a, b = cnn(channels=(3, 4), hidden=(6,), size=4), cnn(channels=(3, 4), hidden=(6,), size=4, scale=0.9)
    centre = RNG.uniform(0.3, 0.7, a.input_size)
    box = Box(centre - 0.05, centre + 0.05)
    d = Pair(a, b).analyse(box, "milp", time_limit=30)
    assert d.exact and d.analysis == "difference"
    assert contains(d, sampled(a, b, box))
    assert d.found == pytest.approx(d.delta_max, rel=1e-3, abs=1e-5)


def test_a_network_with_the_same_weights_differs_by_rounding_only():
    a = cnn()
    r = Pair(a, a).bound(Box(np.full(a.input_size, 0.4), np.full(a.input_size, 0.6)), "symbolic", real=True)
    assert r.delta_max == 0.0


def test_a_shallower_dense_tail_is_padded_with_identity_layers():
    a, b = cnn(hidden=(12, 10)), cnn(hidden=(12,), seed=1)
    pair = Pair(a, b)
    assert pair.chains and any("identity layer" in n for n in pair.notes)
    box = Box(np.full(a.input_size, 0.3), np.full(a.input_size, 0.7))
    assert contains(pair.bound(box, "symbolic"), sampled(a, b, box))


def test_a_cnn_pair_too_large_for_dense_matrices_is_analysed_as_convolutions(monkeypatch):
    """2×32×32 inputs, 16 and 24 channels: the first convolution's dense matrix (and its copies) would take over
    700 MB; with 128 MiB "available" the dense path would refuse it, the analysis never forms it."""
    a = cnn(channels=(16, 24), hidden=(16,), size=32)
    b = cnn(channels=(16, 24), hidden=(16,), size=32, drop=((3, 9), (1, 2, 17)))
    monkeypatch.setattr(network, "_available_memory", lambda: 2**27)
    pair = Pair(a, b)
    assert pair.chains and all(isinstance(L.wa, ConvMap) for L in pair.layers[:2])
    centre = RNG.uniform(0.2, 0.8, a.input_size)
    box = Box(centre - 0.01, centre + 0.01)
    r = pair.bound(box, "symbolic")
    assert contains(r, sampled(a, b, box, n=300))


def test_widening_keeps_the_function_of_dense_and_convolution_layers():
    """``widen`` puts rows and columns at their places: on the units that exist, the same products."""
    a = cnn()
    step = network.compile_model(a, keep_convs=True).steps[3]  # the second Conv, read from the first ReLU
    w = step.weights[0]
    assert isinstance(w, ConvMap)
    rows, cols = Placement(np.array([0, 2, 3, 5, 6, 7, 9, 11]), 12, 16), Placement(np.array([1, 2, 4, 5, 6, 7]), 8, 64)
    wide = widen(w, rows, cols)
    x = RNG.normal(size=w.shape[1])
    x_wide = np.zeros(wide.shape[1])
    x_wide[cols.units] = x
    np.testing.assert_allclose((wide @ x_wide)[rows.units], w @ x, atol=1e-12)
    assert not np.any(np.delete(wide @ x_wide, rows.units))
    dense = np.asarray(w)
    np.testing.assert_allclose(widen(dense, rows, cols), np.asarray(wide), atol=1e-12)


def test_convolutions_of_different_geometry_are_not_aligned():
    a = network.compile_model(cnn(), keep_convs=True)
    b = network.compile_model(cnn(size=10), keep_convs=True)
    from nnxform.analyzers.difference import analysis_chain
    ca = analysis_chain(a, cnn().shapes(), "first")
    cb = analysis_chain(b, cnn(size=10).shapes(), "second")
    with pytest.raises(NotAligned):
        aligned_chains(ca, cb)
    assert isinstance(ca[0], ChainLayer) and ca[0].channels == 6 and ca[0].positions == 64


@pytest.mark.parametrize("b", [cnn(drop=((1, 4), (2, 5))), cnn(hidden=(12,), seed=1)], ids=["pruned", "shallower"])
def test_the_witness_search_runs_each_network_as_read(b):
    """The witness search evaluates the chains the pairing read (convolutions as operators, each network at its own
    widths): their values and input gradients are the models' own (the evaluator's reverse mode)."""
    a = cnn(hidden=(12, 10))
    pair = Pair(a, b)
    xs = Box(np.full(a.input_size, 0.2), np.full(a.input_size, 0.8)).points(20, RNG)
    weights = RNG.normal(size=(len(xs), 4))
    values, grads = pair._delta_fn.value_grad(xs, weights)
    va, ga = gradient(a, xs, weights)
    vb, gb = gradient(b, xs, weights)
    np.testing.assert_allclose(values, va - vb, atol=1e-9)
    np.testing.assert_allclose(grads, ga - gb, atol=1e-9)
    np.testing.assert_allclose(pair._delta_fn.values(xs), va - vb, atol=1e-9)
