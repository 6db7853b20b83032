"""Convolutions kept as operators in the analyzers (``analyzers.conv.ConvMap``): the same matrix as the dense
form in every use the analyzers make of it, the same bounds, and bounds on networks whose dense form would not fit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from conftest import MODELS, make_model
from nnxform.analyzers import bounds, network, symbolic
from nnxform.analyzers.conv import ConvMap
from nnxform.domain import Box
from nnxform.ir import Node, from_proto, load
from nnxform.operators import OPERATORS
from nnxform.passes import PASSES
from nnxform.runtime import OnnxRunner

RNG = np.random.default_rng(0)
CONVS = [  # attributes, weight shape, input shape
    ({"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2], "group": 1, "kernel_shape": [3, 2]}, (4, 3, 3, 2),
     (1, 3, 7, 6)),
    ({"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 2, "kernel_shape": [3, 3]}, (6, 2, 3, 3),
     (1, 4, 5, 5)),
    ({"strides": [2], "pads": [0, 1], "dilations": [1], "group": 1, "kernel_shape": [3]}, (2, 3, 3), (1, 3, 9)),
]


@pytest.mark.parametrize("attrs, wshape, ishape", CONVS, ids=["strided-padded-dilated", "grouped", "1d"])
def test_the_operator_is_its_dense_matrix(attrs, wshape, ishape):
    w = RNG.normal(size=wshape)
    w.reshape(-1)[::5] = 0.0
    node = Node("Conv", "c", ["x", "W"], ["y"], attrs)
    out = OPERATORS["Conv"].evaluate(node, [np.zeros((1,) + ishape), w], [True, False]).shape[1:]
    conv = ConvMap(node, w, ishape, out)
    D = np.asarray(conv)
    assert D.shape == conv.shape
    x, X = RNG.normal(size=conv.shape[1]), RNG.normal(size=(conv.shape[1], 4))
    L, G = RNG.normal(size=(3, conv.shape[0])), RNG.normal(size=(2, conv.shape[1]))
    np.testing.assert_allclose(conv @ x, D @ x, atol=1e-12)
    np.testing.assert_allclose(conv @ X, D @ X, atol=1e-12)
    np.testing.assert_allclose(L @ conv, L @ D, atol=1e-12)
    np.testing.assert_allclose(G @ conv.T, G @ D.T, atol=1e-12)
    np.testing.assert_allclose(conv[np.array([0, 5, 2])], D[[0, 5, 2]], atol=1e-12)
    np.testing.assert_allclose(np.asarray(conv.abs()), np.abs(D), atol=1e-12)
    r, c, v = conv.entries()
    S = np.zeros(conv.shape)
    np.add.at(S, (r, c), v)
    np.testing.assert_array_equal(S, D)
    assert r.size == np.count_nonzero(D)


def dense_forms(monkeypatch) -> None:
    """Every step compiled as a dense matrix (the reference the operators must equal), its products in float64."""
    monkeypatch.setattr(symbolic, "FLOAT32", False)
    monkeypatch.setattr(network, "DENSE_CONV_LIMIT", 2**40)
    monkeypatch.setattr(network, "CONV_MAP_LIMIT", 2**40)


def operator_forms(monkeypatch) -> None:
    """Every step kept as an operator (``ConvMap`` or ``SubgraphMap``), the products with dense weights in float64."""
    monkeypatch.setattr(symbolic, "FLOAT32", False)
    monkeypatch.setattr(network, "DENSE_CONV_LIMIT", 0)
    monkeypatch.setattr(network, "CONV_MAP_LIMIT", 0)


@pytest.mark.parametrize("name, method", [("bn_cnn", "symbolic"), ("bn_cnn", "milp"), ("cifar_base_kw", "interval"),
                                          ("cifar_base_kw", "symbolic"), ("bn_after_relu_conv", "lp")])
def test_bounds_with_convolution_operators_equal_the_dense_ones(monkeypatch, name, method):
    model, _ = PASSES["canon"](load(MODELS / f"{name}.onnx"))  # BN folded: each Conv feeds its ReLU
    r = 0.05 if method == "milp" else 0.1  # bn_cnn's MILP: 36 unstable ReLUs at ±0.05 (4 s), 50 at ±0.1 (15 s)
    box = Box(np.full(model.input_size, 0.5 - r), np.full(model.input_size, 0.5 + r))
    dense_forms(monkeypatch)
    dense = bounds(model, box, method, time_limit=30)
    operator_forms(monkeypatch)
    kept = bounds(model, box, method, time_limit=30)
    assert any(isinstance(w, ConvMap) for s in kept.state.net.steps for w in getattr(s, "weights", []))
    tol = 1e-5 if method == "milp" else 1e-9  # a MILP bound is exact up to the solver's gap, reached another way
    np.testing.assert_allclose(kept.output_lower, dense.output_lower, rtol=tol, atol=tol)
    np.testing.assert_allclose(kept.output_upper, dense.output_upper, rtol=tol, atol=tol)
    assert kept.exact == dense.exact


def test_a_network_too_large_for_dense_matrices_gets_sound_bounds():
    """3×48×48 → Conv 8 → Relu → Conv 8 (stride 2) → Relu → Flatten → Gemm: its two convolutions as dense matrices
    hold 212 M entries (3.4 GB with their absolute chains); as operators, a few hundred weights."""
    ws = {"W1": RNG.normal(0, 0.3, (8, 3, 3, 3)), "b1": RNG.normal(0, 0.1, 8),
          "W2": RNG.normal(0, 0.2, (8, 8, 3, 3)), "b2": RNG.normal(0, 0.1, 8),
          "W3": RNG.normal(0, 0.02, (10, 8 * 24 * 24)), "b3": RNG.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "W3", "b3"], ["y"], transB=1)]
    model = from_proto(make_model(nodes, [1, 3, 48, 48], weights=ws))
    centre = RNG.uniform(0.2, 0.8, model.input_size)
    box = Box(centre - 0.01, centre + 0.01)
    steps = network.compile_model(model).steps
    assert sum(isinstance(w, ConvMap) for s in steps for w in getattr(s, "weights", [])) == 2
    xs = box.points(500, RNG)
    ys = OnnxRunner(model)(xs).astype(np.float64)
    for method in ("interval", "symbolic"):
        b = bounds(model, box, method)
        assert np.all(ys >= b.output_lower) and np.all(ys <= b.output_upper), method
    assert np.all(b.output_upper - b.output_lower < 10)


def test_stable_and_compress_with_convolution_operators(monkeypatch):
    """The classification's stages (dead-row thinning skips operator steps) and compress work on ConvMap steps, with
    the same statuses as on the dense matrices."""
    from nnxform.exactness import compare
    from nnxform.passes.compress import compress_aligned
    from nnxform.stable import classify

    model, _ = PASSES["canon"](load(MODELS / "bn_cnn.onnx"))
    box = Box.default(model.input_size)
    dense_forms(monkeypatch)
    dense = classify(model, box, time_limit=60, seed=0)
    operator_forms(monkeypatch)
    kept = classify(model, box, time_limit=60, seed=0)
    assert [layer.status.tolist() for layer in kept.layers] == [layer.status.tolist() for layer in dense.layers]
    small = compress_aligned(model, kept).model
    assert compare(model, small, box, samples=2000).within


def test_the_dense_tools_refuse_a_convolution_too_large_for_memory(monkeypatch):
    """pad, merge, discrepancy and pruning need dense layers: a convolution kept as an operator that would not fit
    that way is refused in one line, not attempted."""
    from nnxform.errors import NnxformError
    from nnxform.passes.pad import relu_layers

    model, _ = PASSES["canon"](load(MODELS / "cifar_base_kw.onnx"))
    operator_forms(monkeypatch)
    monkeypatch.setattr(network, "_available_memory", lambda: 20 * 2**20)  # the Gemms fit, the convolutions not
    with pytest.raises(NnxformError, match="the difference analysis: a convolution over 3072 inputs .* GiB"):
        relu_layers(model, "the difference analysis")


def _segment_network():
    """Conv → BatchNormalization → Relu → AveragePool → Conv → Relu → (+ skip through a 1×1 Conv) → Relu → Flatten →
    Gemm: steps made of several affine nodes, one of them adding two anchors' branches."""
    ws = {"W1": RNG.normal(0, 0.4, (4, 2, 3, 3)), "b1": RNG.normal(0, 0.1, 4),
          "g": RNG.uniform(0.5, 1.5, 4), "be": RNG.normal(0, 0.1, 4), "mu": RNG.normal(0, 0.1, 4),
          "var": RNG.uniform(0.5, 1.5, 4),
          "W2": RNG.normal(0, 0.3, (4, 4, 3, 3)), "b2": RNG.normal(0, 0.1, 4),
          "Ws": RNG.normal(0, 0.3, (4, 4, 1, 1)),
          "W3": RNG.normal(0, 0.1, (3, 4 * 4 * 4)), "b3": RNG.normal(0, 0.1, 3)}
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "W2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["p1", "Ws"], ["s"]),
             helper.make_node("Add", ["r2", "s"], ["a"]),
             helper.make_node("Relu", ["a"], ["r3"]),
             helper.make_node("Flatten", ["r3"], ["f"]),
             helper.make_node("Gemm", ["f", "W3", "b3"], ["y"], transB=1)]
    return from_proto(make_model(nodes, [1, 2, 8, 8], weights=ws))


def test_an_affine_segment_is_its_dense_matrix_and_gives_the_same_bounds(monkeypatch):
    """Steps of several affine nodes (Conv+BN, AvgPool+Conv, a residual Add of two branches) kept as ``SubgraphMap``s:
    products, rows, entries and the absolute form equal the dense matrices read off basis vectors, and every
    bound is the same."""
    from nnxform.analyzers.conv import SubgraphMap
    model = _segment_network()
    dense_forms(monkeypatch)
    dense_net = network.compile_model(model)
    operator_forms(monkeypatch)
    kept_net = network.compile_model(model)
    maps = 0
    for d, k in zip(dense_net.steps, kept_net.steps):
        for wd, wk, ad, ak in zip(getattr(d, "weights", []), getattr(k, "weights", []),
                                  getattr(d, "rounding", None) and d.rounding.weights or [],
                                  getattr(k, "rounding", None) and k.rounding.weights or []):
            if not isinstance(wk, SubgraphMap):
                continue
            maps += 1
            x, L = RNG.normal(size=wk.shape[1]), RNG.normal(size=(3, wk.shape[0]))
            np.testing.assert_allclose(wk @ x, wd @ x, atol=1e-12)
            np.testing.assert_allclose(L @ wk, L @ wd, atol=1e-12)
            np.testing.assert_allclose(np.asarray(wk), wd, atol=1e-12)
            np.testing.assert_allclose(np.asarray(ak), ad, atol=1e-12)  # the absolute chain, for the rounding
            r, c, v = wk.entries()
            S = np.zeros(wk.shape)
            S[r, c] = v
            np.testing.assert_allclose(S, wd, atol=1e-12)
    assert maps >= 4  # BN after Conv, AvgPool before Conv, the skip branch, the Gemm after the Flatten
    box = Box(np.full(model.input_size, 0.3), np.full(model.input_size, 0.7))
    for method in ("interval", "symbolic", "lp"):
        dense_forms(monkeypatch)
        dense = bounds(model, box, method, time_limit=30)
        operator_forms(monkeypatch)
        kept = bounds(model, box, method, time_limit=30)
        np.testing.assert_allclose(kept.output_lower, dense.output_lower, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(kept.output_upper, dense.output_upper, rtol=1e-9, atol=1e-9)


def test_symbolic_past_its_time_limit_still_bounds_the_output():
    """A deadline stops the hidden layers' back-substitution (they keep interval bounds) but not the output's: the
    bounds stay sound, at least as tight as interval, and say the limit was reached."""
    model = _segment_network()
    box = Box(np.full(model.input_size, 0.3), np.full(model.input_size, 0.7))
    full = bounds(model, box, "symbolic")
    cut = bounds(model, box, "symbolic", total_time=1e-9)
    coarse = bounds(model, box, "interval")
    assert cut.details["time_limit_reached"] and not full.details.get("time_limit_reached")
    assert np.all(cut.output_lower >= coarse.output_lower - 1e-12) and np.all(cut.output_upper <= coarse.output_upper + 1e-12)
    assert np.all(cut.output_lower <= full.output_lower + 1e-12) and np.all(cut.output_upper >= full.output_upper - 1e-12)
    xs = box.points(2000, RNG)
    ys = OnnxRunner(model)(xs).astype(np.float64)
    assert np.all(ys >= cut.output_lower) and np.all(ys <= cut.output_upper)


def _biased_network(scale: float) -> "Model":
    """Conv → BatchNormalization → ReLU → Flatten → Sub from a constant → Concat with a constant → Gemm → ReLU →
    Gemm, every bias, mean and constant term multiplied by ``scale`` and the weights of order 1."""
    rng = np.random.default_rng(7)
    ws = {"K": rng.normal(size=(2, 2, 3, 3)), "bk": scale * rng.normal(size=2),
          "g": rng.uniform(0.5, 2, 2), "beta": scale * rng.normal(size=2), "mean": scale * rng.normal(size=2),
          "var": rng.uniform(0.5, 2, 2), "c": scale * rng.normal(size=(1, 32)), "pad": scale * rng.normal(size=(1, 3)),
          "W1": rng.normal(size=(6, 35)), "b1": scale * rng.normal(size=6),
          "W2": rng.normal(size=(3, 6)), "b2": scale * rng.normal(size=3)}
    nodes = [helper.make_node("Conv", ["x", "K", "bk"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Flatten", ["r1"], ["f"]),
             helper.make_node("Sub", ["c", "f"], ["s"]),
             helper.make_node("Concat", ["s", "pad"], ["j"], axis=1),
             helper.make_node("Gemm", ["j", "W1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r2"]),
             helper.make_node("Gemm", ["r2", "W2", "b2"], ["y"], transB=1)]
    return from_proto(make_model(nodes, [1, 2, 4, 4], weights=ws))


@pytest.mark.parametrize("forms", [dense_forms, operator_forms])
def test_weights_are_read_exactly_under_biases_that_dwarf_them(monkeypatch, forms):
    """Biases of 1e20 beside weights of order 1: every step's matrix (dense or ``SubgraphMap``) equals the one read
    off the same network without biases, where nothing can swamp it, and its bias is the network's value at zero.
    Reading ``f(e_i) − f(0)`` gave zero matrices here (1e20 + 1 − 1e20 = 0 in float64)."""
    forms(monkeypatch)
    huge, clean = network.compile_model(_biased_network(1e20)), network.compile_model(_biased_network(0.0))
    assert len(huge.steps) == len(clean.steps)
    for h, c in zip(huge.steps, clean.steps):
        for wh, wc in zip(getattr(h, "weights", []), getattr(c, "weights", [])):
            np.testing.assert_allclose(np.asarray(wh), np.asarray(wc), rtol=1e-12, atol=1e-12)
            x = RNG.normal(size=wc.shape[1])
            np.testing.assert_allclose(wh @ x, wc @ x, rtol=1e-12, atol=1e-12)  # an operator's product runs its nodes
            assert np.abs(np.asarray(wc)).max() > 0.1
        if hasattr(h, "rounding"):
            for ah, ac in zip(h.rounding.weights, c.rounding.weights):
                np.testing.assert_allclose(np.asarray(ah), np.asarray(ac), rtol=1e-12, atol=1e-12)
    first = next(s for s in huge.steps if hasattr(s, "bias") and s.bias.size == 2 * 16)
    assert np.abs(first.bias).max() > 1e19  # the bias read at zero
