"""The numpy evaluator computes what onnxruntime computes, operator by operator.

Every bound nnxform proves rests on the evaluator (the analyzers read the network's affine maps off
it), so each operator of ``interpreter.OPS`` is run here as a one-operator model over broadcast ranks
and attributes, on random points, against onnxruntime: same values (float64 against onnxruntime's
float32) and exactly the same shapes, for the evaluated tensor and for ``Model.shapes()``.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import make_model
from onnx import TensorProto, helper

from nnxform import interpreter
from nnxform.analyzers import bounds
from nnxform.domain import Box
from nnxform.errors import UnsupportedOperator
from nnxform.gradient import gradient
from nnxform.ir import from_proto

SAMPLES = 16
RTOL = ATOL = 1e-5


def _weights(seed: int, **shapes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


def _data(name: str, shape: list[int], out: str) -> tuple[list, list[int], dict]:
    """Nodes making data tensor ``out`` of ``shape`` from the input ``name``: the input itself when an
    input may have that shape (batch 1, or rank 1), else a Reshape of a ``[1, size]`` input."""
    if len(shape) == 1 or (shape and shape[0] == 1):
        return [helper.make_node("Identity", [name], [out])], list(shape), {}
    size = int(np.prod(shape))
    target = f"{out}_shape"
    return [helper.make_node("Reshape", [name, target], [out])], [1, size], {target: np.array(shape, np.int64)}


def check(proto: onnx.ModelProto, low: float = -2.0, high: float = 2.0, away_from_zero: bool = False) -> None:
    """``interpreter.run`` on random points equals onnxruntime's output, values and shape."""
    model = from_proto(proto)
    rng = np.random.default_rng(0)
    xs = rng.uniform(low, high, (SAMPLES,) + model.input_shape).astype(np.float32)
    if away_from_zero:
        xs = np.where(xs < 0, xs - 0.5, xs + 0.5).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = proto.graph.output[0].name
    ref = np.stack([sess.run([out], {model.input_name: x})[0] for x in xs])
    got = interpreter.run(model, xs.astype(np.float64), keep=True)[out]
    assert got.shape == ref.shape, f"evaluator shape {got.shape[1:]}, onnxruntime {ref.shape[1:]}"
    assert model.shapes()[out] == ref.shape[1:]
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL * scale)


def one_op(op: str, data_shape: list[int], weights: dict | None = None, inputs: list[str] | None = None,
           opset: int = 13, **attrs) -> onnx.ModelProto:
    """A model ``y = op(inputs)`` where ``"d"`` in ``inputs`` is data of ``data_shape`` made from the input."""
    nodes, in_shape, ws = _data("x", data_shape, "d")
    ws.update(weights or {})
    nodes.append(helper.make_node(op, inputs or ["d"], ["y"], **attrs))
    return make_model(nodes, in_shape, weights=ws, opset=opset)


# --- element-wise: Add, Sub, Mul, Div over broadcast ranks ----------------------------------------

# (data shape, constant shape): constants of rank 0..4, smaller and larger than the data
BROADCAST = [([1, 3, 4, 5], c) for c in ([], [5], [4, 1], [3, 1, 5], [1, 3, 4, 1], [2, 1, 1, 1, 5])] + [
    ([5], [3, 4, 5]), ([5], [2, 3, 1, 1]), ([1, 5], [2, 3, 4, 5]), ([1, 4, 1], [3, 1, 6]), ([1], [2, 3]),
    ([2, 3, 4], [1]), ([2, 1, 4], [3, 1]),
]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("data_left", [True, False], ids=["data-left", "constant-left"])
@pytest.mark.parametrize("shapes", BROADCAST, ids=lambda s: f"{s[0]}x{s[1]}")
def test_elementwise_with_a_constant(op, data_left, shapes):
    data_shape, const_shape = shapes
    c = _weights(1, c=const_shape)["c"]
    if op == "Div" and data_left:
        c = np.where(np.abs(c) < 0.5, 0.5, c).astype(np.float32)
    proto = one_op(op, data_shape, {"c": c}, ["d", "c"] if data_left else ["c", "d"])
    check(proto, away_from_zero=op == "Div" and not data_left)


# two data operands of different ranks, both reshapes of one input
DATA_PAIRS = [([3, 4], [1, 3, 1, 4]), ([12], [12, 1]), ([1, 12], [12, 1]), ([2, 1, 6], [2, 6, 1]), ([4, 3], [2, 2, 1, 3])]


def _two_reshapes(a: list[int], b: list[int], op: str) -> onnx.ModelProto:
    """``y = op(reshape(x, a), reshape(x, b))`` on one input ``x`` of ``[1, size]``."""
    nodes = [helper.make_node("Reshape", ["x", "sa"], ["a"]), helper.make_node("Reshape", ["x", "sb"], ["b"]),
             helper.make_node(op, ["a", "b"], ["y"])]
    return make_model(nodes, [1, int(np.prod(a))], weights={"sa": np.array(a), "sb": np.array(b)})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shapes", DATA_PAIRS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_elementwise_of_two_data_tensors(op, shapes):
    check(_two_reshapes(*shapes, op), away_from_zero=op == "Div")


def test_elementwise_of_a_rank_0_data_tensor():
    nodes = [helper.make_node("Reshape", ["x", "s0"], ["a"]), helper.make_node("Reshape", ["x", "s3"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["ab"]), helper.make_node("Add", ["ab", "c"], ["y"])]
    check(make_model(nodes, [1, 1], weights={"s0": np.zeros(0, np.int64), "s3": np.array([1, 1, 1]),
                                             "c": _weights(2, c=[2, 1, 3])["c"]}))


# --- Gemm ----------------------------------------------------------------------------------------

GEMM = [dict(transA=ta, transB=tb, alpha=al, beta=be, bias=bias)
        for ta, tb in itertools.product([0, 1], [0, 1])
        for al, be in [(1.0, 1.0), (0.7, -1.3)]
        for bias in (None, [4], [1, 4], [], [1], [1, 1])]


@pytest.mark.parametrize("case", GEMM, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gemm(case):
    attrs = {k: case[k] for k in ("transA", "transB", "alpha", "beta")}
    ws = _weights(3, B=[4, 3] if case["transB"] else [3, 4])
    inputs = ["d", "B"]
    if case["bias"] is not None:
        ws.update(_weights(4, C=case["bias"]))
        inputs.append("C")
    check(one_op("Gemm", [3, 1] if case["transA"] else [1, 3], ws, inputs, **attrs))


@pytest.mark.parametrize("bias", [[2, 4], [2, 1], [4]])
def test_gemm_of_several_rows_and_a_constant_left(bias):
    ws = _weights(5, B=[3, 4], C=bias)
    check(one_op("Gemm", [2, 3], ws, ["d", "B", "C"], alpha=0.5))
    ws = _weights(6, A=[2, 3], C=bias)
    check(one_op("Gemm", [3, 4], ws, ["A", "d", "C"], beta=2.0))
    check(one_op("Gemm", [4, 3], ws, ["A", "d", "C"], transB=1))


@pytest.mark.parametrize("c_shape", [[1, 4], [4]])
def test_gemm_with_data_as_its_bias(c_shape):
    nodes, in_shape, ws = _data("x", c_shape, "c")
    nodes.append(helper.make_node("Reshape", ["x", "s"], ["a"]))
    nodes.append(helper.make_node("Gemm", ["a", "B", "c"], ["y"], beta=0.5))
    ws.update(_weights(7, B=[4, 4]), s=np.array([1, 4], np.int64))
    check(make_model(nodes, in_shape, weights=ws))


# --- MatMul: every rank pair, data on either side --------------------------------------------------

K, M, N = 3, 2, 4
LEFT = {1: [K], 2: [M, K], 3: [2, M, K], 4: [3, 1, M, K]}
RIGHT = {1: [K], 2: [K, N], 3: [2, K, N], 4: [1, 2, K, N]}
RANKS = list(itertools.product(range(1, 5), range(1, 5)))


@pytest.mark.parametrize("data_left", [True, False], ids=["data-left", "constant-left"])
@pytest.mark.parametrize("ranks", RANKS, ids=lambda r: f"{r[0]}x{r[1]}")
def test_matmul(ranks, data_left):
    left, right = LEFT[ranks[0]], RIGHT[ranks[1]]
    if data_left:
        check(one_op("MatMul", left, _weights(8, W=right), ["d", "W"]))
    else:
        check(one_op("MatMul", right, _weights(8, W=left), ["W", "d"]))


@pytest.mark.parametrize("shapes", [([2, 6], [6, 2]), ([12], [12]), ([3, 2, 2], [1, 2, 6]), ([2, 6], [1, 2, 6, 1]),
                                    ([12], [1, 12, 1]), ([1, 1, 12], [12]), ([1, 3, 4], [1, 4, 3]), ([2, 1, 6], [6, 2])],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_matmul_of_two_data_tensors(shapes):
    check(_two_reshapes(*shapes, "MatMul"))


# --- Conv and pooling -----------------------------------------------------------------------------


def _spatial(attrs: dict, nd: int) -> dict:
    """2-D attributes for ``nd`` spatial axes: lists cut or cycled to length nd (pads: begins, then ends)."""
    def fit(v: list) -> list:
        return [v[i % len(v)] for i in range(nd)]

    return {k: (fit(v[:len(v) // 2]) + fit(v[len(v) // 2:]) if k == "pads" else fit(v)) if isinstance(v, list) else v
            for k, v in attrs.items()}


CONV = [
    dict(),
    dict(pads=[1, 0, 2, 1]),
    dict(strides=[2, 1], pads=[1, 1, 1, 1]),
    dict(dilations=[2, 1], pads=[2, 0, 1, 1]),
    dict(group=2),
    dict(group=4, strides=[2, 2]),
    dict(auto_pad="SAME_UPPER", strides=[2, 1]),
    dict(auto_pad="SAME_LOWER", strides=[2, 3]),  # onnxruntime refuses dilations with SAME_*
    dict(auto_pad="VALID", strides=[1, 2]),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("attrs", CONV, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()) or "plain")
def test_conv(attrs, nd, bias):
    attrs = _spatial(attrs, nd)
    group = attrs.get("group", 1)
    kernel = [3, 2, 2][:nd]
    ws = _weights(9, W=[4, 4 // group] + kernel, b=[4])
    inputs = ["d", "W", "b"] if bias else ["d", "W"]
    if not bias:  # the kernel shape is optional: it is the weights' shape
        check(one_op("Conv", [1, 4] + [7, 6, 5][:nd], {"W": ws["W"]}, inputs, **attrs))
    else:
        check(one_op("Conv", [1, 4] + [7, 6, 5][:nd], ws, inputs, kernel_shape=kernel, **attrs))


POOL = [
    dict(),
    dict(strides=[2, 2]),
    dict(strides=[2, 3], pads=[1, 0, 1, 1]),
    dict(strides=[2, 2], ceil_mode=1),
    dict(strides=[2, 3], pads=[1, 0, 1, 1], ceil_mode=1),
    dict(strides=[3, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 3]),
    dict(auto_pad="VALID", strides=[2, 1]),
    dict(auto_pad="SAME_UPPER", strides=[2, 3], ceil_mode=1),
    dict(auto_pad="SAME_LOWER", strides=[2, 2], ceil_mode=1),  # stride > kernel: onnxruntime fails (negative pads)
]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("variant", ["MaxPool", "MaxPool-dilated", "AveragePool", "AveragePool-include-pad"])
@pytest.mark.parametrize("attrs", POOL, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()) or "plain")
def test_pooling(attrs, variant, nd):
    attrs = _spatial(attrs, nd)
    op = variant.split("-")[0]
    if variant.endswith("include-pad"):
        attrs["count_include_pad"] = 1
    if variant.endswith("dilated"):
        attrs["dilations"] = [2, 1, 2][:nd]
    proto = one_op(op, [1, 2] + [7, 8, 6][:nd], kernel_shape=[3, 2, 2][:nd], **attrs)
    if "dilations" in attrs and attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER"):
        with pytest.raises(UnsupportedOperator, match="onnxruntime and the ONNX specification pad differently"):
            from_proto(proto)  # onnxruntime pads for the undilated kernel, against the specification
    else:
        check(proto)


@pytest.mark.parametrize("rank", [2, 3, 4, 5])
def test_batch_normalization(rank):
    ws = _weights(10, s=[3], b=[3], m=[3], v=[3])
    ws["v"] = np.abs(ws["v"]) + 0.1
    check(one_op("BatchNormalization", [1, 3] + [4, 3, 2][:rank - 2], ws, ["d", "s", "b", "m", "v"], epsilon=0.01))


# --- shape operators ------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2, 3, 4, -1, -2, -4])
def test_flatten(axis):
    check(one_op("Flatten", [1, 2, 3, 4], axis=axis))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_flatten_of_a_vector(axis):
    check(one_op("Flatten", [5], axis=axis))


@pytest.mark.parametrize("data_shape,target", [
    ([1, 2, 3, 4], [0, -1]), ([1, 2, 3, 4], [0, 0, 12]), ([1, 2, 3, 4], [-1]), ([1, 2, 3, 4], [4, 0, -1]),
    ([1, 6], [2, 3]), ([1, 6], [1, 1, 6, 1]), ([6], [3, -1]), ([1, 1], []), ([1, 2, 3, 4], [0, 4, 0, -1]),
])
@pytest.mark.parametrize("allowzero", [None, 1])
def test_reshape(data_shape, target, allowzero):
    attrs = {} if allowzero is None else {"allowzero": allowzero}
    proto = one_op("Reshape", data_shape, {"t": np.array(target, np.int64)}, ["d", "t"], opset=14, **attrs)
    if allowzero and 0 in target:  # a zero dimension: an empty tensor
        with pytest.raises(UnsupportedOperator, match="allowzero=1 with a zero"):
            from_proto(proto)
    else:
        check(proto)


@pytest.mark.parametrize("perm", [None, [0, 1, 2, 3], [0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1]])
def test_transpose(perm):
    check(one_op("Transpose", [1, 2, 3, 4], **({} if perm is None else {"perm": perm})))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [2], [-1], [-3], [0, 3], [1, -1], [-5, 4]])
def test_unsqueeze(axes, opset):
    if opset >= 13:
        check(one_op("Unsqueeze", [1, 2, 3], {"a": np.array(axes, np.int64)}, ["d", "a"], opset=opset))
    else:
        check(one_op("Unsqueeze", [1, 2, 3], opset=opset, axes=axes))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [0], [2], [-1], [-3], [0, 2], [0, -1]])
def test_squeeze(axes, opset):
    data = [1, 3, 1, 2, 1]
    if axes is None:
        check(one_op("Squeeze", data, opset=opset))
    elif opset >= 13:
        check(one_op("Squeeze", data, {"a": np.array(axes, np.int64)}, ["d", "a"], opset=opset))
    else:
        check(one_op("Squeeze", data, opset=opset, axes=axes))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("parts", ["data", "data+constant", "constant+data+data"])
def test_concat(axis, parts):
    shape = [1, 2, 3]
    grown = list(shape)
    grown[axis] = 2
    ws = _weights(11, c=grown)
    inputs = {"data": ["d", "d"], "data+constant": ["d", "c"], "constant+data+data": ["c", "d", "d"]}[parts]
    check(one_op("Concat", shape, ws if "c" in inputs else {}, inputs, axis=axis))


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Identity", "Dropout"])
@pytest.mark.parametrize("shape", [[5], [1, 4], [1, 2, 3, 2]])
def test_unary(op, shape):
    check(one_op(op, shape), low=-6.0, high=6.0)


@pytest.mark.parametrize("alpha", [None, 0.0, 0.2, 1.0])
@pytest.mark.parametrize("shape", [[5], [1, 2, 3, 2]])
def test_leaky_relu(alpha, shape):
    check(one_op("LeakyRelu", shape, **({} if alpha is None else {"alpha": alpha})), low=-6.0, high=6.0)


def test_dropout_with_a_ratio_and_inference_mode():
    proto = one_op("Dropout", [1, 4], {"r": np.array(0.3, np.float32)}, ["d", "r", "t"])
    proto.graph.initializer.append(helper.make_tensor("t", TensorProto.BOOL, [], [False]))
    check(proto)


def test_every_operator_is_covered():
    """Adding an operator to the evaluator needs a case here."""
    covered = {"Add", "Sub", "Mul", "Div", "Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "BatchNormalization",
               "Flatten", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Concat", "Relu", "LeakyRelu", "Sigmoid",
               "Tanh", "Identity", "Dropout",
               "ConvTranspose"}  # its cases: tests/test_operators.py
    assert set(interpreter.OPS) == covered


# --- what rests on the evaluator: input gradients and the analyzers' bounds -------------------------


def _gradient_cases() -> dict[str, onnx.ModelProto]:
    """Affine and bilinear one-operator models (central differences are exact for them): MatMul of every
    rank pair, two data tensors multiplied, Gemm with data as its bias, and the shape, convolution and
    averaging operators with their less common attributes."""
    cases = {
        "Concat-constant-negative-axis": one_op("Concat", [1, 2, 3], _weights(11, c=[1, 2, 2]), ["c", "d", "d"], axis=-1),
        "Transpose": one_op("Transpose", [1, 2, 3, 4], perm=[2, 0, 3, 1]),
        "Flatten-axis-0": one_op("Flatten", [1, 2, 3], axis=0),
        "Unsqueeze-negative": one_op("Unsqueeze", [1, 2, 3], {"a": np.array([-1, 1])}, ["d", "a"]),
        "Conv-grouped-strided": one_op("Conv", [1, 4, 7, 6], _weights(9, W=[4, 2, 3, 2], b=[4]), ["d", "W", "b"],
                                       group=2, strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2]),
        "AveragePool-ceil": one_op("AveragePool", [1, 2, 7, 8], kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1],
                                   ceil_mode=1),
        "BatchNormalization-rank-3": one_op("BatchNormalization", [1, 3, 4], dict(_weights(10, s=[3], b=[3], m=[3]),
                                            v=np.ones(3, np.float32)), ["d", "s", "b", "m", "v"]),
    }
    for ra, rb in RANKS:
        cases[f"MatMul-{ra}x{rb}-data-left"] = one_op("MatMul", LEFT[ra], _weights(8, W=RIGHT[rb]), ["d", "W"])
        cases[f"MatMul-{ra}x{rb}-constant-left"] = one_op("MatMul", RIGHT[rb], _weights(8, W=LEFT[ra]), ["W", "d"])
    for a, b in [([2, 6], [6, 2]), ([12], [12]), ([2, 6], [1, 2, 6, 1]), ([12], [1, 12, 1])]:
        cases[f"MatMul-{a}x{b}-data"] = _two_reshapes(a, b, "MatMul")
    for a, b in DATA_PAIRS:
        cases[f"Mul-{a}x{b}-data"] = _two_reshapes(a, b, "Mul")
    nodes = [helper.make_node("Reshape", ["x", "s"], ["c"]), helper.make_node("Gemm", ["x", "B", "c"], ["y"], beta=0.5)]
    cases["Gemm-data-bias"] = make_model(nodes, [1, 4], weights=dict(_weights(7, B=[4, 4]), s=np.array([4])))
    return cases


GRADIENT_CASES = _gradient_cases()


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_gradient(case):
    """The reverse-mode rules agree with central differences of the (checked) evaluator."""
    model = from_proto(GRADIENT_CASES[case])
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, model.input_size))
    w = rng.normal(size=(3, int(np.prod(model.shapes()["y"]))))
    _, g = gradient(model, x, w)
    d = rng.normal(size=x.shape)

    def f(z):
        return (interpreter.run(model, z).reshape(3, -1) * w).sum(axis=1)

    np.testing.assert_allclose((g * d).sum(axis=1), (f(x + d) - f(x - d)) / 2, rtol=1e-9, atol=1e-9)


# (data shape, constant shape, data on the left): the first layer of a MatMul → Relu → MatMul network
MIXED = [([4], [2, 4, 3], True), ([1, 4], [2, 4, 3], True), ([2, 1, 4], [4, 3], True), ([4], [3, 4], False),
         ([4], [2, 3, 4], False)]


@pytest.mark.parametrize("case", MIXED, ids=lambda c: f"{c[0]}@{c[1]}" if c[2] else f"{c[1]}@{c[0]}")
@pytest.mark.parametrize("method", ["interval", "symbolic"])
def test_bounds_of_rank_mixing_matmuls_contain_onnxruntime(case, method):
    """The analyzers read the network off the evaluator: with MatMuls of mixed ranks they stay sound."""
    data, const, data_left = case
    nodes, in_shape, ws = _data("x", data, "d")
    ws.update(_weights(12, W=const, V=[3, 5]))
    nodes += [helper.make_node("MatMul", ["d", "W"] if data_left else ["W", "d"], ["m"]),
              helper.make_node("Relu", ["m"], ["r"]), helper.make_node("MatMul", ["r", "V"], ["y"])]
    proto = make_model(nodes, in_shape, weights=ws)
    model = from_proto(proto)
    box = Box(np.full(model.input_size, -1.0), np.full(model.input_size, 1.0))
    result = bounds(model, box, method)
    xs = box.points(300, np.random.default_rng(0)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ys = np.stack([sess.run(None, {"x": x.reshape(model.input_shape)})[0].ravel() for x in xs])
    assert result.output_lower.size == ys.shape[1]
    assert np.all(ys >= result.output_lower) and np.all(ys <= result.output_upper)
