"""Bound analyzers: soundness of interval and symbolic on random and bundled networks, the API, the JSON."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from conftest import MODELS, make_model
from nnxform.analyzers import bounds, compile_model
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.interpreter import run
from nnxform.gradient import gradient
from nnxform.ir import from_proto, load
from nnxform.runtime import OnnxRunner
from nnxform.vnnlib import read_box

# --- random networks -------------------------------------------------------------------------


def mlp(seed: int, sizes: list[int], act: str = "Relu", out_act: bool = False):
    """A Gemm/activation chain with random weights (float32 ONNX, then the IR)."""
    rng = np.random.default_rng(seed)
    nodes, weights, cur = [], {}, "x"
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        weights[f"W{k}"] = rng.normal(0, 1 / np.sqrt(a), (b, a))
        weights[f"b{k}"] = rng.normal(0, 0.3, b)
        last = k == len(sizes) - 2
        out = "y" if last and not out_act else f"z{k}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{k}", f"b{k}"], [out], transB=1, name=f"gemm{k}"))
        if not last or out_act:
            nodes.append(helper.make_node(act, [out], ["y" if last else f"a{k}"], name=f"act{k}"))
        cur = f"a{k}"
    return from_proto(make_model(nodes, [1, sizes[0]], weights=weights))


def residual(seed: int):
    """A DAG: a skip connection (residual Add of two data tensors), Concat, Sub/Mul by constants."""
    rng = np.random.default_rng(seed)
    w = {
        "A": rng.normal(0, 0.7, (6, 4)), "a": rng.normal(0, 0.3, 6),
        "B": rng.normal(0, 0.5, (6, 6)), "b": rng.normal(0, 0.3, 6),
        "S": rng.normal(0, 0.5, (6, 4)), "s": np.zeros(6),
        "C": rng.normal(0, 0.5, (3, 12)), "c": rng.normal(0, 0.3, 3),
        "m": rng.uniform(0.5, 1.5, (1, 4)), "o": rng.normal(0, 0.2, (1, 4)),
    }
    nodes = [
        helper.make_node("Sub", ["x", "o"], ["x0"], name="sub"),
        helper.make_node("Mul", ["x0", "m"], ["x1"], name="mul"),
        helper.make_node("Gemm", ["x1", "A", "a"], ["h1"], transB=1, name="gA"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "B", "b"], ["h2"], transB=1, name="gB"),
        helper.make_node("Gemm", ["x1", "S", "s"], ["skip"], transB=1, name="gS"),
        helper.make_node("Add", ["h2", "skip"], ["h3"], name="res"),
        helper.make_node("Relu", ["h3"], ["r2"], name="relu2"),
        helper.make_node("Concat", ["r2", "r1"], ["cat"], axis=1, name="cat"),
        helper.make_node("Gemm", ["cat", "C", "c"], ["y"], transB=1, name="gC"),
    ]
    return from_proto(make_model(nodes, [1, 4], weights=w))


def convnet(seed: int):
    """Conv + BatchNormalization + Relu + MaxPool + AveragePool + Flatten + Gemm on a 1×6×6 input."""
    rng = np.random.default_rng(seed)
    w = {
        "K1": rng.normal(0, 0.5, (2, 1, 3, 3)), "k1": rng.normal(0, 0.2, 2),
        "g": rng.uniform(0.5, 1.5, 2), "be": rng.normal(0, 0.2, 2), "mu": rng.normal(0, 0.2, 2), "var": rng.uniform(0.5, 2, 2),
        "K2": rng.normal(0, 0.5, (3, 2, 2, 2)), "k2": rng.normal(0, 0.2, 3),
        "W": rng.normal(0, 0.5, (2, 18)), "b": rng.normal(0, 0.2, 2),
    }
    nodes = [
        helper.make_node("Conv", ["x", "K1", "k1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
        helper.make_node("Conv", ["p1", "K2", "k2"], ["c2"], pads=[1, 1, 0, 0], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 0], name="avgpool"),
        helper.make_node("Flatten", ["p2"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1, name="fc"),
    ]
    return from_proto(make_model(nodes, [1, 1, 6, 6], weights=w))


def random_box(seed: int, size: int, width: float = 1.0) -> Box:
    rng = np.random.default_rng(seed + 1)
    c = rng.uniform(-1, 1, size)
    r = rng.uniform(0.05, width, size)
    return Box(c - r, c + r)


# --- the soundness check ---------------------------------------------------------------------


def attack_points(model, box: Box, targets: list[tuple[str, int]], starts: int = 8, steps: int = 8, seed: int = 0) -> np.ndarray:
    """Projected-gradient (signed) ascent and descent on each (tensor, index) from random starts."""
    rng = np.random.default_rng(seed)
    pts = []
    size = {t: int(np.prod(s)) for t, s in model.shapes().items()}
    step = (box.upper - box.lower) / 4
    for tensor, j in targets:
        for sign in (1.0, -1.0):
            x = box.sample(starts, rng)
            w = np.zeros(size[tensor])
            w[j] = sign
            for k in range(steps):
                _, g = gradient(model, x, w, tensor=tensor)
                x = np.clip(x + step / (1 + k) * np.sign(g), box.lower, box.upper)
            pts.append(x)
    return np.vstack(pts)


def assert_sound(model, box: Box, b, samples: int = 10000, targets_per_layer: int = 3, seed: int = 0) -> None:
    """Outputs (numpy and onnxruntime float32) and nonlinear inputs at samples, corners, PGD points lie in ``b``."""
    rng = np.random.default_rng(seed)
    out = model.output_name
    targets = [(out, j) for j in range(b.output_lower.size)]
    layer_inputs = [n.inputs[0] for n in model.nodes if n.op in ("Relu", "Sigmoid", "Tanh", "MaxPool")]
    for t, layer in zip(layer_inputs, b.layers):
        targets += [(t, int(j)) for j in rng.choice(layer.lower.size, min(targets_per_layer, layer.lower.size), replace=False)]
    xs = np.vstack([box.points(samples, rng), attack_points(model, box, targets, seed=seed)])
    values = run(model, xs.reshape((-1,) + model.input_shape), keep=True)
    for t, layer in zip(layer_inputs, b.layers):
        v = values[t].reshape(len(xs), -1)
        assert np.all(v >= layer.lower) and np.all(v <= layer.upper), f"{b.method}: {layer.node} input escapes its bounds"
    for y in (values[out].reshape(len(xs), -1), OnnxRunner(model)(xs).astype(np.float64)):
        lo_gap, hi_gap = (b.output_lower - y).max(), (y - b.output_upper).max()
        assert lo_gap <= 0 and hi_gap <= 0, f"{b.method}: output escapes its bounds by {max(lo_gap, hi_gap):g}"


def assert_nested(loose, tight) -> None:
    """Each method is at least as tight as the one it starts from."""
    assert np.all(tight.output_lower >= loose.output_lower) and np.all(tight.output_upper <= loose.output_upper)
    for a, b in zip(loose.layers, tight.layers):
        assert np.all(b.lower >= a.lower) and np.all(b.upper <= a.upper)


# --- tests -----------------------------------------------------------------------------------


@settings(deadline=None, derandomize=True, max_examples=12)
@given(seed=st.integers(0, 2**16), depth=st.integers(1, 4), width=st.integers(2, 12),
       act=st.sampled_from(["Relu", "Relu", "Sigmoid", "Tanh"]))
def test_random_mlps_are_sound(seed, depth, width, act):
    model = mlp(seed, [3] + [width] * depth + [2], act=act, out_act=seed % 3 == 0)
    box = random_box(seed, 3)
    net = compile_model(model)
    prev = None
    for method in ("interval", "symbolic"):
        b = bounds(net, box, method)
        assert_sound(model, box, b, samples=2000)
        if prev is not None:
            assert_nested(prev, b)
        prev = b


@pytest.mark.parametrize("build", [residual, convnet])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dags_and_conv_are_sound(build, seed):
    model = build(seed)
    box = random_box(seed, model.input_size, width=0.5)
    interval_b = bounds(model, box, "interval")
    symbolic_b = bounds(model, box, "symbolic")
    for b in (interval_b, symbolic_b):
        assert_sound(model, box, b)
    assert_nested(interval_b, symbolic_b)
    assert symbolic_b.width_sum < interval_b.width_sum


BUNDLED = [
    ("mnist-net_256x2.onnx", "mnist_prop_0_0.03.vnnlib"),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "acasxu_prop_1.vnnlib"),
    ("ACASXU_run2a_1_1_batch_2000.onnx", "acasxu_prop_3.vnnlib"),
    ("test_small.onnx", "test_small.vnnlib"),
    ("test_nano.onnx", None),
    ("dnnv_mnist_relu_3_50.onnx", 0.02),
    ("marabou_mnist2x10.onnx", 0.02),
    ("marabou_fc_2-2-3.onnx", None),
    ("marabou_fc1.onnx", None),
    ("cartpole.onnx", None),
    ("marabou_linear2-3_bn1-linear3-1.onnx", None),
    ("bn_cnn.onnx", None),
]


def bundled_box(model, spec) -> Box:
    """The VNN-LIB box, an ε-ball around an MNIST test image, or the default [-1, 1] box."""
    if isinstance(spec, str):
        return read_box(MODELS / "vnnlib" / spec)
    if isinstance(spec, float):
        row = np.loadtxt(MODELS / "data" / "mnist_test_100.csv", delimiter=",", max_rows=1)[1:] / 255.0
        return Box(np.clip(row - spec, 0, 1), np.clip(row + spec, 0, 1))
    return Box.default(model.input_size)


@pytest.mark.parametrize("name,spec", BUNDLED, ids=[f"{n}-{s}" for n, s in BUNDLED])
def test_bundled_networks_are_sound(name, spec):
    if not (MODELS / name).exists():
        pytest.skip(f"{name} not bundled")
    model = load(MODELS / name)
    box = bundled_box(model, spec)
    net = compile_model(model)
    i = bounds(net, box, "interval")
    s = bounds(net, box, "symbolic")
    for b in (i, s):
        assert_sound(model, box, b, samples=3000)
    assert_nested(i, s)


def test_cifar_conv_network_is_sound():
    model = load(MODELS / "cifar_base_kw.onnx")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, model.input_size)
    box = Box(x - 2 / 255, x + 2 / 255)
    b = bounds(model, box, "symbolic")
    assert b.stable_counts()["unstable"] < sum(l.lower.size for l in b.relu_layers)
    assert_sound(model, box, b, samples=300, targets_per_layer=1)


def test_mnist_256x2_symbolic_matches_crown_scale():
    """Symbolic proves far more than interval on the VNN-COMP property (CROWN: widths ~2.1 here)."""
    model = load(MODELS / "mnist-net_256x2.onnx")
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    net = compile_model(model)
    i, s = bounds(net, box, "interval"), bounds(net, box, "symbolic")
    assert s.width_sum < 0.1 * i.width_sum
    assert s.stable_counts()["unstable"] < i.stable_counts()["unstable"]
    assert [l.node for l in s.relu_layers] == [n.name for n in model.nodes if n.op == "Relu"]


def test_json_schema():
    model = mlp(3, [3, 5, 4, 2])
    b = bounds(model, random_box(3, 3), "symbolic")
    doc = b.to_json()
    assert doc["method"] == "symbolic" and doc["seconds"] >= 0 and doc["exact"] is False
    assert len(doc["output"]["lower"]) == len(doc["output"]["upper"]) == 2
    assert [l["node"] for l in doc["relu_layers"]] == ["act0", "act1"]
    assert all(len(l["lower"]) == len(l["upper"]) for l in doc["relu_layers"])
    st_ = doc["stable"]
    assert st_["active"] + st_["inactive"] + st_["unstable"] == 9


def test_stability_statuses():
    model = mlp(4, [2, 6, 1])
    b = bounds(model, Box(np.array([0.1, 0.2]), np.array([0.1, 0.2])), "symbolic")  # a point: all stable
    assert b.stable_counts()["unstable"] == 0
    assert set(b.relu_layers[0].status.tolist()) <= {1, -1}


def test_two_data_matmul_is_refused():
    w = {"W": np.ones((2, 2))}
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="g"),
             helper.make_node("MatMul", ["h", "x_t"], ["y"], name="product"),
             ]
    nodes.insert(1, helper.make_node("Transpose", ["x"], ["x_t"], name="t"))
    model = from_proto(make_model(nodes, [1, 2], weights=w))
    with pytest.raises(NnxformError, match="product"):
        bounds(model, Box.default(2), "interval")


def test_errors_are_one_line():
    model = mlp(5, [2, 3, 1])
    with pytest.raises(NnxformError, match="unknown bounds method"):
        bounds(model, Box.default(2), "magic")
    with pytest.raises(NnxformError, match="3 elements"):
        bounds(model, Box.default(3), "interval")


def test_output_slope_gradient_matches_finite_differences():
    """The adjoint of the back-substitution (used to optimise ReLU lower slopes) is its derivative (the bound is
    piecewise linear in one slope: a step of 1e-3 stays on one piece and dwarfs the float32 products' rounding)."""
    from nnxform.analyzers.network import Activation
    from nnxform.analyzers.symbolic import _slope_gradients, _stacked, lower_bound

    checked = 0

    for build, seed in ((lambda s: mlp(s, [3, 8, 8, 8, 2]), 5), (residual, 1), (convnet, 2)):
        model = build(seed)
        net = compile_model(model)
        state = bounds(net, random_box(seed, model.input_size, width=0.5), "symbolic").state
        out = net.steps[net.output]
        coef, const = _stacked(out, np.arange(out.size))
        relus = [k for k, s in enumerate(net.steps) if isinstance(s, Activation) and s.op == "Relu"]
        rng = np.random.default_rng(seed)
        slopes = {k: rng.uniform(0, 1, (2 * out.size, net.steps[k].size)) for k in relus}
        tape: list = []
        base = lower_bound(state, net.output - 1, coef, const, slopes, tape)
        grads = _slope_gradients(state, tape, slopes)
        for k in relus:
            lo, hi = state.lo[net.steps[k].source], state.hi[net.steps[k].source]
            free = np.flatnonzero((lo < 0) & (hi > 0))
            for j in free[:3]:
                bumped = {q: v.copy() for q, v in slopes.items()}
                bumped[k][:, j] += 1e-3
                fd = (lower_bound(state, net.output - 1, coef, const, bumped) - base) / 1e-3
                assert np.allclose(fd, grads[k][:, j], rtol=1e-3, atol=1e-4), (k, j)
                checked += 1
    assert checked >= 10


def test_the_solver_time_limit_holds_for_every_solve():
    """HiGHS counts a MIP's ``time_limit`` per run: a limit set as "run time so far + limit" doubled every solve."""
    import time

    from nnxform.analyzers.encoding import Encoder

    net = compile_model(load(MODELS / "mnist-net_256x2.onnx"))
    box = Box(np.zeros(784), np.ones(784))  # every ReLU unstable: no solve closes in 0.3 s
    enc = Encoder(bounds(net, box, "symbolic").state, integer=True, time_limit=0.3)
    enc.h.setOptionValue("presolve", "off")  # HiGHS's presolve does not check the limit (8 s here)
    for i in range(len(net.steps)):
        enc.add(i)
    for k in range(4):
        t = time.perf_counter()
        bound, closed = enc.mip_min(enc.col[net.output] + k, 1.0)
        assert time.perf_counter() - t < 30.0 and not closed  # minutes without the limit; headroom for a loaded machine
