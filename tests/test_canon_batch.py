"""``canon`` keeps a symbolic batch dimension where the source declares one (issue 19): the written model's input and
output lead with the same symbolic dimension and it runs in onnxruntime on a batch of 3 as the source does. A
Transpose or a Reshape folded from ``Shape`` at a batch of 1 (the DNNV dronet model's one-channel NHWC Transpose)
becomes a Reshape whose target starts with -1; a model of batch 1 keeps its concrete targets."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnxform.cli import main

rng = np.random.default_rng(19)
UNSET = None  # a batch dimension with neither dim_param nor dim_value


def w(*shape: int) -> np.ndarray:
    return rng.normal(0, 0.5, shape).astype(np.float32)


def _model(nodes: list, weights: dict[str, np.ndarray], in_shape: list, out_shape: list, batch: str | int | None
           ) -> onnx.ModelProto:
    """An opset-13 model whose input and output lead with ``batch`` (a name, 1, or ``UNSET``)."""
    lead = "N" if batch is UNSET else batch
    values = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [lead, *shape])
              for name, shape in (("x", in_shape), ("y", out_shape))]
    if batch is UNSET:
        for value in values:
            value.type.tensor_type.shape.dim[0].Clear()
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    model = helper.make_model(helper.make_graph(nodes, "g", values[:1], values[1:], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def mlp(batch: str | int | None) -> onnx.ModelProto:
    """MatMul+Add → Relu → Gemm on 4 inputs."""
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r"]), helper.make_node("Gemm", ["r", "W2", "b2"], ["y"])]
    return _model(nodes, {"W1": w(4, 8), "b1": w(8), "W2": w(8, 3), "b2": w(3)}, [4], [3], batch)


def cnn(batch: str | int | None) -> onnx.ModelProto:
    """Sub (normalisation) → Conv → BatchNormalization → Relu → Flatten → Gemm on 3×6×6 images."""
    nodes = [helper.make_node("Sub", ["x", "mean"], ["xs"]),
             helper.make_node("Conv", ["xs", "K", "kb"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    weights = {"mean": np.full((1, 3, 1, 1), 0.5, np.float32), "K": w(4, 3, 3, 3), "kb": w(4),
               "g": np.abs(w(4)) + 0.5, "be": w(4), "mu": w(4), "var": np.abs(w(4)) + 0.5, "W": w(5, 144), "b": w(5)}
    return _model(nodes, weights, [3, 6, 6], [5], batch)


def nhwc_cnn(batch: str | int | None) -> onnx.ModelProto:
    """Keras's one-channel NHWC input (as the DNNV dronet model): Transpose to NCHW → Conv → Relu → Flatten → Gemm."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "K", "kb"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    return _model(nodes, {"K": w(2, 1, 3, 3), "kb": w(2), "W": w(2, 18), "b": w(2)}, [6, 6, 1], [2], batch)


def shape_reshape(batch: str | int | None) -> onnx.ModelProto:
    """``x.view(x.size(0), 4, 2, 2)`` → Conv → Relu → ``view(x.size(0), -1)`` → MatMul: the loader folds the Shape
    computations at a batch of 1."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"]),
             helper.make_node("Unsqueeze", ["n", "axis"], ["n1"]),
             helper.make_node("Concat", ["n1", "chw"], ["t"], axis=0), helper.make_node("Reshape", ["x", "t"], ["img"]),
             helper.make_node("Conv", ["img", "K"], ["c"], pads=[0, 0, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Concat", ["n1", "rest"], ["t2"], axis=0), helper.make_node("Reshape", ["r", "t2"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["y"])]
    weights = {"zero": np.array(0, np.int64), "axis": np.array([0], np.int64), "chw": np.array([4, 2, 2], np.int64),
               "rest": np.array([-1], np.int64), "K": w(2, 4, 2, 2), "W": w(8, 3)}
    return _model(nodes, weights, [16], [3], batch)


def _canon(model: onnx.ModelProto, tmp_path: Path, monkeypatch, capsys) -> onnx.ModelProto:
    """``nnxform canon`` on ``model``; the written model."""
    src, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(src))
    monkeypatch.setattr(sys, "argv", ["nnxform", "canon", str(src), "-o", str(out)])
    main()
    assert capsys.readouterr().err == ""
    return onnx.load(str(out))


def _lead(value: onnx.ValueInfoProto) -> onnx.TensorShapeProto.Dimension:
    return value.type.tensor_type.shape.dim[0]


def _targets(model: onnx.ModelProto) -> list[list[int]]:
    """The target of every Reshape node."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[1]].tolist() for n in model.graph.node if n.op_type == "Reshape"]


@pytest.mark.parametrize("build", [mlp, cnn, nhwc_cnn, shape_reshape])
@pytest.mark.parametrize("batch", ["N", UNSET])
def test_canon_keeps_the_symbolic_batch_and_runs_on_a_batch_of_three(build, batch, tmp_path, monkeypatch, capsys):
    source = build(batch)
    result = _canon(source, tmp_path, monkeypatch, capsys)
    lead_in, lead_out = _lead(result.graph.input[0]), _lead(result.graph.output[0])
    assert lead_in.dim_param and lead_in.dim_param == lead_out.dim_param
    assert not lead_in.HasField("dim_value") and not lead_out.HasField("dim_value")
    assert all(target[0] == -1 for target in _targets(result))
    shape = [3] + [d.dim_value for d in source.graph.input[0].type.tensor_type.shape.dim[1:]]
    xs = rng.uniform(0, 1, shape).astype(np.float32)
    want = ort.InferenceSession(source.SerializeToString()).run(None, {"x": xs})[0]
    got = ort.InferenceSession(result.SerializeToString()).run(None, {"x": xs})[0]
    assert got.shape == want.shape == (3, want.shape[1])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", [nhwc_cnn, shape_reshape])
def test_a_batch_of_one_keeps_its_concrete_shapes(build, tmp_path, monkeypatch, capsys):
    result = _canon(build(1), tmp_path, monkeypatch, capsys)
    assert _lead(result.graph.input[0]).dim_value == 1 == _lead(result.graph.output[0]).dim_value
    assert all(target[0] == 1 for target in _targets(result))


def test_a_transpose_without_perm_is_no_reshape(tmp_path, monkeypatch, capsys):
    """Without ``perm`` a Transpose reverses the axes: (1, 3, 4) → (4, 3, 1) moves values, it is kept."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"]), helper.make_node("Flatten", ["t"], ["f"], axis=0),
             helper.make_node("Gemm", ["f", "W"], ["y"])]
    source = _model(nodes, {"W": w(12, 2)}, [3, 4], [2], 1)
    result = _canon(source, tmp_path, monkeypatch, capsys)
    xs = rng.uniform(0, 1, (1, 3, 4)).astype(np.float32)
    want = ort.InferenceSession(source.SerializeToString()).run(None, {"x": xs})[0]
    got = ort.InferenceSession(result.SerializeToString()).run(None, {"x": xs})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
