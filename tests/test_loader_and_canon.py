"""The loader reads what real exporters write, and ``canon`` keeps the function while leaving only
verifier-friendly operators. Every case is checked against onnxruntime on the original file."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import MODELS, make_model
from onnx import TensorProto, helper

from nnxform import interpreter, load
from nnxform.domain import Box
from nnxform.errors import NnxformError, UnsupportedOperator
from nnxform.exactness import compare
from nnxform.ir import from_proto
from nnxform.passes import PASSES
from nnxform.operators import CANONICAL_OPS

FORBIDDEN = {"BatchNormalization", "Sub", "Div", "Constant", "Identity", "Dropout", "Shape", "Gather"}
rng = np.random.default_rng(7)


def w(*shape, scale=0.5):
    return rng.normal(0, scale, shape).astype(np.float32)


def mlp_tail(prefix: str, n_in: int, n_out: int = 3):
    """Nodes and weights of Gemm(n_in→6)→Relu→Gemm(6→n_out) reading ``prefix``."""
    nodes = [
        helper.make_node("Gemm", [prefix, "tW1", "tb1"], ["t1"], transB=1),
        helper.make_node("Relu", ["t1"], ["t2"]),
        helper.make_node("Gemm", ["t2", "tW2", "tb2"], ["y"], transB=1),
    ]
    return nodes, {"tW1": w(6, n_in), "tb1": w(6), "tW2": w(n_out, 6), "tb2": w(n_out)}


def case_shape_chain():
    """PyTorch's x.view(x.size(0), -1): Shape→Gather→Unsqueeze→Concat→Reshape, with Constant nodes."""
    tail, ws = mlp_tail("flat", 2 * 3 * 3)
    nodes = [
        helper.make_node("Conv", ["x", "cW", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
        helper.make_node("Constant", [], ["minus1"], value=helper.make_tensor("m", TensorProto.INT64, [1], [-1])),
        helper.make_node("Concat", ["bu", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["flat"]),
    ] + tail
    ws.update(cW=w(2, 1, 3, 3), cb=w(2), ax0=np.array([0], np.int64))
    return make_model(nodes, [1, 1, 3, 3], weights=ws)


def case_normalised_conv():
    """(x − mean) / std per channel before a padding-free Conv, Identity and Dropout in between."""
    tail, ws = mlp_tail("f", 4 * 2 * 2)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]),
        helper.make_node("Div", ["a", "std"], ["b"]),
        helper.make_node("Identity", ["b"], ["b2"]),
        helper.make_node("Conv", ["b2", "cW", "cb"], ["c"], strides=[2, 2]),
        helper.make_node("Dropout", ["c"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
    ] + tail
    ws.update(mean=w(1, 3, 1, 1), std=np.abs(w(1, 3, 1, 1)) + 0.5, cW=w(4, 3, 2, 2), cb=w(4))
    return make_model(nodes, [1, 3, 4, 4], weights=ws)


def case_normalised_padded_conv():
    """Normalisation before a padded, dilated, grouped Conv: the shift cannot fold (padding), the scale can."""
    tail, ws = mlp_tail("f", 4 * 5 * 5)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]),
        helper.make_node("Mul", ["a", "scale"], ["b"]),
        helper.make_node("Conv", ["b", "cW", "cb"], ["c"], pads=[2, 2, 2, 2], dilations=[2, 2], group=2),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
    ] + tail
    ws.update(mean=w(1, 4, 1, 1), scale=np.abs(w(1, 4, 1, 1)) + 0.5, cW=w(4, 2, 3, 3), cb=w(4))
    return make_model(nodes, [1, 4, 5, 5], weights=ws)


def case_gemm_attributes():
    """Gemm with alpha, beta, transA (one column) and transB=0, then a MatMul+Add with the bias first."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
        helper.make_node("Gemm", ["xt", "B1", "C1"], ["g"], alpha=0.7, beta=1.3, transA=1, transB=0),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("MatMul", ["r", "M2"], ["m"]),
        helper.make_node("Add", ["c2", "m"], ["y"]),
    ]
    return make_model(nodes, [1, 4], weights={"B1": w(4, 5), "C1": w(1, 5), "M2": w(5, 3), "c2": w(3)})


def case_nhwc_transpose():
    """A TensorFlow-style NHWC input transposed to NCHW, reshaped, and fed to Gemm (Transpose absorbed)."""
    tail, ws = mlp_tail("f", 2 * 3 * 4)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Reshape", ["t", "shape"], ["f"]),
    ] + tail
    ws.update(shape=np.array([1, 24], np.int64))
    return make_model(nodes, [1, 3, 4, 2], weights=ws)


def case_bn_pool_residual_concat():
    """BatchNormalization, MaxPool, AveragePool (ceil mode), a residual Add and a Concat, Sigmoid and Tanh."""
    tail, ws = mlp_tail("f", 8 * 2 * 2)
    nodes = [
        helper.make_node("Conv", ["x", "cW", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"], epsilon=0.8),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Conv", ["r", "cW2", "cb2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r"], ["res"]),
        helper.make_node("Sigmoid", ["res"], ["s"]),
        helper.make_node("Tanh", ["res"], ["t"]),
        helper.make_node("Concat", ["s", "t"], ["cat"], axis=1),
        helper.make_node("MaxPool", ["cat"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Flatten", ["ap"], ["f"]),
    ] + tail
    ws.update(cW=w(4, 2, 3, 3), cb=w(4), g=w(4), be=w(4), mu=w(4), var=np.abs(w(4)) + 0.1,
              cW2=w(4, 4, 3, 3), cb2=w(4))
    return make_model(nodes, [1, 2, 7, 7], weights=ws)


def case_opset8_axes_attributes():
    """An IR v3 / opset 8 graph: Unsqueeze/Squeeze with ``axes`` attributes (inputs since opset 13)."""
    tail, ws = mlp_tail("sq", 6)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Unsqueeze", ["r"], ["u"], axes=[2]),
        helper.make_node("Squeeze", ["u"], ["sq"], axes=[2]),
    ] + tail
    ws.update(shape=np.array([1, 6], np.int64))
    return make_model(nodes, [1, 2, 3], weights=ws, opset=8, ir_version=3)


CASES = [case_shape_chain, case_normalised_conv, case_normalised_padded_conv, case_gemm_attributes,
         case_nhwc_transpose, case_bn_pool_residual_concat, case_opset8_axes_attributes]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_loader_matches_onnxruntime_and_canon_is_exact(case):
    proto = case()
    model = from_proto(proto)
    xs = np.random.default_rng(1).uniform(-1, 1, (50,) + model.input_shape)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.stack([sess.run(None, {model.input_name: x.astype(np.float32)})[0].ravel() for x in xs])
    np.testing.assert_allclose(interpreter.run(model, xs).reshape(50, -1), ref, rtol=1e-4, atol=1e-5)

    canon, report = PASSES["canon"](model)
    assert not {n.op for n in canon.nodes} & FORBIDDEN
    assert {n.op for n in canon.nodes} <= CANONICAL_OPS
    cmp = compare(model, canon, Box.default(model.input_size), samples=500)
    assert cmp.within, cmp.max_abs


def test_canon_folds_normalisation_and_transpose_away():
    assert PASSES["canon"](from_proto(case_normalised_conv()))[0].op_counts() == {"Conv": 1, "Flatten": 1, "Gemm": 2, "Relu": 2}
    assert PASSES["canon"](from_proto(case_nhwc_transpose()))[0].op_counts() == {"Flatten": 1, "Gemm": 2, "Relu": 1}
    # the padded conv keeps the shift explicit (an Add), the scale folds into the weights
    padded = PASSES["canon"](from_proto(case_normalised_padded_conv()))[0].op_counts()
    assert padded.get("Add") == 1 and "Mul" not in padded


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.onnx")), ids=lambda p: p.name)
def test_bundled_models_load_canonicalise_and_round_trip(path, tmp_path):
    model = load(path)
    canon, _ = PASSES["canon"](model)
    assert {n.op for n in canon.nodes} <= CANONICAL_OPS
    out = tmp_path / "c.onnx"
    canon.save(out)
    again = load(out)
    assert again.op_counts() == canon.op_counts()
    lo = 0.0 if model.input_size == 784 else -1.0
    box = Box(np.full(model.input_size, lo), np.full(model.input_size, 1.0))
    assert compare(model, again, box, samples=300).within


def test_round_trip_is_byte_identical(tmp_path):
    model = load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx")
    first = PASSES["canon"](model)[0].to_bytes()
    second = PASSES["canon"](load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"))[0].to_bytes()
    assert first == second


def test_ir_v3_weights_listed_as_inputs_are_constants():
    model = load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx")
    assert model.source["ir_version"] == 3 and model.source["opset"] == 8
    assert model.input_name == "input" and model.input_shape == (1, 1, 1, 5)


def test_nodes_out_of_topological_order_load():
    model = load(MODELS / "marabou_layerzoo_batchnorm.onnx")
    assert [n.op for n in model.nodes] == ["BatchNormalization"]


def test_symbolic_batch_becomes_one_and_is_kept_on_export():
    model = load(MODELS / "marabou_mnist2x10.onnx")
    assert model.input_shape == (1, 1, 28, 28) and model.input_dims[0] == "batch_size"
    exported = model.to_onnx()
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch_size"


def test_two_inputs_are_refused():
    extra = helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 2])
    proto = make_model([helper.make_node("Add", ["x", "x2"], ["y"])], [1, 2], extra_inputs=[extra])
    with pytest.raises(NnxformError, match="2 non-constant inputs .*x, x2.* exactly one"):
        from_proto(proto)


def test_unsupported_operator_is_named_with_its_node():
    proto = make_model([helper.make_node("Softmax", ["x"], ["y"], name="probabilities")], [1, 3])
    with pytest.raises(UnsupportedOperator, match="Softmax .*'probabilities'"):
        from_proto(proto)


def test_batch_dimension_other_than_one_is_refused():
    proto = make_model([helper.make_node("Relu", ["x"], ["y"])], [4, 3])
    with pytest.raises(NnxformError, match="batch dimension is 4"):
        from_proto(proto)


def test_external_weights_must_be_beside_the_model(tmp_path):
    import shutil

    shutil.copy(MODELS / "torch_dynamo_resnet.onnx", tmp_path / "net.onnx")
    with pytest.raises(NnxformError, match="torch_dynamo_resnet.onnx.data.* not beside it"):
        load(tmp_path / "net.onnx")
    shutil.copy(MODELS / "torch_dynamo_resnet.onnx.data", tmp_path)
    assert load(tmp_path / "net.onnx").op_counts()["Conv"] == 5


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("ceil_mode", [0, 1])
@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize("pads,strides", [([0, 0, 0, 0], [2, 2]), ([1, 0, 1, 1], [2, 3]), ([1, 1, 1, 1], [1, 1])])
def test_pooling_matches_onnxruntime(op, ceil_mode, include_pad, pads, strides):
    attrs = {"kernel_shape": [3, 2], "pads": pads, "strides": strides, "ceil_mode": ceil_mode}
    if op == "AveragePool":
        attrs["count_include_pad"] = include_pad
    elif include_pad:
        attrs["dilations"] = [1, 2]  # MaxPool has no count_include_pad: vary its dilation instead
    proto = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [1, 2, 7, 8])
    model = from_proto(proto)
    xs = np.random.default_rng(3).normal(size=(5,) + model.input_shape)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.stack([sess.run(None, {"x": x.astype(np.float32)})[0] for x in xs])
    np.testing.assert_allclose(interpreter.run(model, xs), ref, rtol=1e-5, atol=1e-6)
