"""``quantize``: weights on the symmetric grid (or float16), biases unchanged, a sound drift bound; weight-only QDQ
models folded at load, activation QDQ refused; the bundled digits data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import outcome, run_cli
from nnxform.accuracy import load_data
from nnxform.cli import main
from nnxform.domain import Box
from nnxform.interpreter import run
from nnxform.ir import Model, from_proto, load
from nnxform.passes import PASSES
from nnxform.passes.quantize import quantize
from nnxform.workflows import quantize_with_drift
from nnxform.runtime import OnnxRunner
from nnxform.vnnlib import read_box

MODELS = Path(__file__).resolve().parent.parent / "models"
MNIST = MODELS / "mnist-net_256x2.onnx"
MNIST_BOX = MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"


def _proto(nodes: list, inits: dict[str, np.ndarray], shape: list[int], opset: int = 13) -> onnx.ModelProto:
    """A single-input float32 ONNX model of ``nodes`` with initializers ``inits`` (kept in their dtypes)."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def _f32(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return rng.normal(0, scale, shape).astype(np.float32)


def _layers_net(seed: int = 0) -> Model:
    """Grouped Conv, grouped ConvTranspose, MatMul + Add, Gemm (transB=0), with Relu between: each weighted op."""
    rng = np.random.default_rng(seed)
    inits = {"Wc": _f32(rng, 6, 2, 3, 3), "bc": _f32(rng, 6), "Wt": _f32(rng, 6, 2, 2, 2), "bt": _f32(rng, 4),
             "Wm": _f32(rng, 64, 5, scale=0.2), "bm": _f32(rng, 5), "Wg": _f32(rng, 5, 3), "bg": _f32(rng, 3)}
    nodes = [helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], group=2, name="conv"),
             helper.make_node("Relu", ["c"], ["r1"]),
             helper.make_node("ConvTranspose", ["r1", "Wt", "bt"], ["t"], group=2, name="convt"),
             helper.make_node("Relu", ["t"], ["r2"]), helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("MatMul", ["f", "Wm"], ["m"], name="matmul"), helper.make_node("Add", ["m", "bm"], ["a"]),
             helper.make_node("Gemm", ["a", "Wg", "bg"], ["y"], name="gemm")]
    return from_proto(_proto(nodes, inits, [1, 4, 5, 5]))


def _output_channels(op: str, w: np.ndarray) -> list[np.ndarray]:
    """The weights of each output channel (independent of the pass's own view of the axes)."""
    if op == "Conv":
        return list(w)
    if op == "ConvTranspose":  # [in, out/g, k…] with 2 groups: output i·out/g + j reads rows of group i, column j
        half = w.shape[0] // 2
        return [w[i * half:(i + 1) * half, j] for i in range(2) for j in range(w.shape[1])]
    return list(w.T) if op in ("MatMul", "Gemm") else list(w)  # MatMul x·W and Gemm transB=0: outputs on columns


@pytest.fixture(scope="module")
def mnist() -> Model:
    return load(MNIST)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_every_weight_is_on_the_grid(mnist, bits, per_channel):
    levels = 2 ** (bits - 1) - 1
    for net in (mnist, _layers_net()):
        result, report = quantize(net, bits=bits, per_channel=per_channel)
        assert len(report.layers) == (3 if net is mnist else 4)
        for layer in report.layers:
            node = next(n for n in result.nodes if n.name == layer.node)
            w, wq = net.constants[layer.weight], result.constants[layer.weight]
            assert wq.dtype == np.float32 and wq.shape == w.shape
            groups = _output_channels(node.op, w) if per_channel else [w]
            if node.op == "Gemm" and net is mnist and per_channel:  # transB=1: outputs on rows
                groups = list(w)
            assert len(groups) == layer.scales.size
            for g, step in zip(groups, layer.scales):
                assert np.float32(step) == np.float32(np.abs(g).max() / levels)
            steps = _broadcast_steps(node.op, w, layer.scales, per_channel, transposed=net is mnist)
            q = np.round(wq.astype(np.float64) / steps)
            assert np.abs(q).max() == levels  # the largest weight sits on the outermost level
            np.testing.assert_array_equal(q.astype(np.float32) * steps.astype(np.float32), wq)  # on the grid, exactly
            assert np.all(np.abs(wq.astype(np.float64) - w) <= steps / 2 * (1 + 1e-6))  # the nearest grid point
            assert layer.max_error == pytest.approx(np.abs(wq.astype(np.float64) - w).max())


def _broadcast_steps(op: str, w: np.ndarray, scales: np.ndarray, per_channel: bool, transposed: bool) -> np.ndarray:
    """The grid step of every weight, from the per-channel scales in output-channel order."""
    if not per_channel:
        return np.full(w.shape, scales[0])
    if op == "Conv" or (op == "Gemm" and transposed):
        return np.broadcast_to(scales.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape)
    if op == "ConvTranspose":
        per = scales.reshape(2, 1, w.shape[1], *(1,) * (w.ndim - 2))
        return np.broadcast_to(per, (2, w.shape[0] // 2) + w.shape[1:]).reshape(w.shape)
    return np.broadcast_to(scales, w.shape)


def test_float16_round_trip_is_exact_and_biases_stay(mnist):
    for net in (mnist, _layers_net()):
        result, report = quantize(net, float16=True)
        weights = {layer.weight for layer in report.layers}
        for name, w in net.constants.items():
            wq = result.constants[name]
            if name in weights:
                assert wq.dtype == np.float32 and np.array_equal(wq.astype(np.float16).astype(np.float32), wq)
                np.testing.assert_array_equal(wq, w.astype(np.float16).astype(np.float32))
            else:  # biases (Gemm C, Conv B, the Add after MatMul) and shapes: the very same values
                assert wq.dtype == w.dtype and np.array_equal(wq, w)
        assert all(layer.scales is None for layer in report.layers)


def test_integer_grid_leaves_biases_and_the_graph_alone(mnist):
    result, report = quantize(mnist, bits=4, per_channel=True)
    weights = {layer.weight for layer in report.layers}
    assert weights == {"layers.0.weight", "layers.2.weight", "layers.4.weight"}
    for name in set(mnist.constants) - weights:
        assert np.array_equal(result.constants[name], mnist.constants[name])
    assert [(n.op, n.inputs) for n in result.nodes] == [(n.op, n.inputs) for n in mnist.nodes]
    assert PASSES["quantize"].preserves is False


def test_a_weight_shared_by_two_layers_is_quantised_for_each():
    w = np.random.default_rng(4).normal(size=(3, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W"], ["y"])]
    result, report = quantize(from_proto(_proto(nodes, {"W": w}, [1, 3])), bits=2, per_channel=True)
    assert [n.inputs[1] for n in result.nodes if n.op == "MatMul"] == ["W_quantized", "W"]
    assert len(report.layers) == 2 and np.array_equal(result.constants["W_quantized"], result.constants["W"])
    assert set(np.unique(np.round(result.constants["W"] / report.layers[0].scales))) <= {-1.0, 0.0, 1.0}
    assert not np.signbit(result.constants["W"][result.constants["W"] == 0]).any()  # no negative zeros


def test_quantized_weights_are_what_a_weight_only_qdq_model_computes(tmp_path):
    """The written weights equal DequantizeLinear of the same integers and scales, folded by the loader."""
    net = _layers_net(3)
    result, report = quantize(net, bits=8, per_channel=True)
    layer = next(q for q in report.layers if q.op == "MatMul")
    w, wq = net.constants[layer.weight], result.constants[layer.weight]
    q = np.round(wq.astype(np.float64) / layer.scales).astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["q", "s"], ["W"], axis=1),
             helper.make_node("MatMul", ["x", "W"], ["y"])]
    path = tmp_path / "qdq.onnx"
    onnx.save(_proto(nodes, {"q": q, "s": layer.scales.astype(np.float32)}, [1, w.shape[0]]), path)
    np.testing.assert_array_equal(load(path).constants["W"], wq)


def _qdq_model(seed: int) -> onnx.ModelProto:
    """Weight-only QDQ, as onnxruntime's quantizer writes it: int8 per-axis MatMul weights, uint8 per-tensor Gemm
    weights with a zero point, int8 per-channel Conv weights with an int32 bias (scale = input · weight scale)."""
    rng = np.random.default_rng(seed)
    inits = {
        "cq": rng.integers(-127, 128, (3, 2, 3, 3)).astype(np.int8),
        "cs": rng.uniform(0.01, 0.05, 3).astype(np.float32),
        "cz": np.zeros(3, np.int8), "bq": rng.integers(-2000, 2000, 3).astype(np.int32),
        "bs": rng.uniform(1e-4, 1e-3, 3).astype(np.float32), "bz": np.zeros(3, np.int32),
        "shape": np.array([1, 27], np.int64),
        "mq": rng.integers(-127, 128, (27, 6)).astype(np.int8), "ms": rng.uniform(0.005, 0.02, 6).astype(np.float32),
        "mz": rng.integers(-3, 4, 6).astype(np.int8),
        "gq": rng.integers(0, 256, (4, 6)).astype(np.uint8), "gs": np.array(0.013, np.float32),
        "gz": np.array(128, np.uint8), "gb": rng.normal(0, 0.1, 4).astype(np.float32),
    }
    nodes = [helper.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cw"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["cb"], axis=0),
             helper.make_node("Conv", ["x", "cw", "cb"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("DequantizeLinear", ["mq", "ms", "mz"], ["mw"], axis=1),
             helper.make_node("MatMul", ["f", "mw"], ["m"]), helper.make_node("Relu", ["m"], ["h"]),
             helper.make_node("DequantizeLinear", ["gq", "gs", "gz"], ["gw"]),
             helper.make_node("Gemm", ["h", "gw", "gb"], ["y"], transB=1)]
    return _proto(nodes, inits, [1, 2, 5, 5])


def test_weight_only_qdq_model_loads_and_evaluates_like_onnxruntime(tmp_path):
    proto = _qdq_model(7)
    path = tmp_path / "qdq.onnx"
    onnx.save(proto, path)
    net = load(path)
    assert "DequantizeLinear" not in net.op_counts()
    given = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for weight, (q, s, z, axis) in {"cw": ("cq", "cs", "cz", 0), "cb": ("bq", "bs", "bz", 0),
                                    "mw": ("mq", "ms", "mz", 1), "gw": ("gq", "gs", "gz", None)}.items():
        qv, sv, zv = given[q], given[s], given[z]
        shape = [-1 if k == axis else 1 for k in range(qv.ndim)] if axis is not None else []
        want = (qv.astype(np.int64) - zv.reshape(shape)).astype(np.float32) * sv.reshape(shape)  # y = (q − zp)·scale
        assert net.constants[weight].dtype == np.float32
        np.testing.assert_array_equal(net.constants[weight], want)
    xs = np.random.default_rng(1).uniform(-1, 1, (200, 1, 2, 5, 5)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.vstack([session.run(["y"], {"x": x})[0] for x in xs])
    tol = 1e-5 * (1 + np.abs(expected))  # the folded weights are equal; onnxruntime sums prepacked weights otherwise
    assert np.all(np.abs(OnnxRunner(net)(xs) - expected) <= tol)
    assert np.all(np.abs(run(net, xs).reshape(len(xs), -1) - expected) <= tol)


def test_int4_block_wise_dequantize_is_folded(tmp_path):
    """Opset 21: int4 weights, one scale per block of 4 rows (what block-wise weight-only quantisers write)."""
    rng = np.random.default_rng(5)
    q, scale = rng.integers(-8, 8, (8, 3)), rng.uniform(0.01, 0.1, (2, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s"], ["W"], axis=0, block_size=4),
         helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor("q", TensorProto.INT4, [8, 3], q.ravel().tolist()), numpy_helper.from_array(scale, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, tmp_path / "int4.onnx")
    net = load(tmp_path / "int4.onnx")
    assert net.op_counts() == {"MatMul": 1}
    np.testing.assert_array_equal(net.constants["W"], q.astype(np.float32) * np.repeat(scale, 4, axis=0))


def test_drift_bound_contains_the_sampled_difference(mnist):
    box = read_box(MNIST_BOX)
    for bits, per_channel in ((4, False), (8, True)):
        result = quantize_with_drift(mnist, bits, per_channel, box=box, samples=10000)
        bound = result.drift.delta_max
        assert result.sampled.samples >= 10000 and 0 < result.sampled_max <= bound
        xs = np.random.default_rng(11).uniform(box.lower, box.upper, (10000, box.size))
        shaped = xs.reshape((-1,) + mnist.input_shape)
        diff = np.abs(OnnxRunner(result.model)(shaped).astype(np.float64) - OnnxRunner(mnist)(shaped)).max()
        assert diff <= bound
    assert result.model.metadata["nnxform.pass"] == "quantize"
    assert json.loads(result.model.metadata["nnxform.parameters"])["bits"] == 8


def test_drift_bound_on_a_network_with_convolutions():
    net = _layers_net(5)
    box = Box(np.full(net.input_size, -1.0), np.full(net.input_size, 1.0))
    result = quantize_with_drift(net, 3, True, box=box, samples=10000)
    assert 0 < result.sampled_max <= result.drift.delta_max


# --- the command -----------------------------------------------------------------------------------




def test_cli_writes_the_network_and_the_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "q.onnx"
    monkeypatch.setattr(sys, "argv", ["nnxform", "quantize", str(MNIST), "-o", str(out), "--bits", "4",
                                      "--per-channel", "--vnnlib", str(MNIST_BOX), "--samples", "500", "--json", "-"])
    main()  # a command that succeeds returns
    doc = json.loads(capsys.readouterr().out)
    assert doc["grid"] == "int4 per channel" and doc["biases"] == "unchanged (float32)"
    assert [layer["node"] for layer in doc["layers"]] == ["Gemm_1", "Gemm_3", "Gemm_5"]
    assert len(doc["layers"][0]["scale"]) == 256
    assert 0 < doc["sampled_max"] <= doc["drift_bound"] == doc["drift"]["delta_max"]
    written = onnx.load(str(out))
    assert {i.data_type for i in written.graph.initializer} == {TensorProto.FLOAT}
    meta = {p.key: p.value for p in written.metadata_props}
    assert meta["nnxform.pass"] == "quantize"
    assert json.loads(meta["nnxform.parameters"])["domain"]["vnnlib"] == MNIST_BOX.name


def test_activation_qdq_is_refused_with_the_reason(tmp_path):
    rng = np.random.default_rng(2)
    inits = {"s": np.array(0.02, np.float32), "z": np.array(0, np.int8),
             "wq": rng.integers(-127, 128, (4, 3)).astype(np.int8), "ws": np.array(0.01, np.float32)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"]), helper.make_node("MatMul", ["xd", "w"], ["y"])]
    path, out = tmp_path / "act.onnx", tmp_path / "q.onnx"
    onnx.save(_proto(nodes, inits, [1, 4]), path)
    code, _, err = outcome(run_cli("quantize", path, "-o", out, "--bits", "8"))
    assert code == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1
    assert "QuantizeLinear" in err and "activation quantisation" in err and "not piecewise linear" in err


@pytest.mark.parametrize("args", [("--bits", "0"), ("--bits", "1"), ("--bits", "33"), (), ("--bits", "8", "--float16"),
                                  ("--float16", "--per-channel")])
def test_bad_options_exit_2_and_write_nothing(tmp_path, args):
    out = tmp_path / "q.onnx"
    code, _, err = outcome(run_cli("quantize", MODELS / "cartpole.onnx", "-o", out, *args))
    assert code == 2 and not out.exists() and len(err.strip().splitlines()) == 1
    assert "--bits" in err or "--per-channel" in err


# --- the digits data -------------------------------------------------------------------------------


def test_digits_csvs_load_with_the_right_counts():
    train = load_data(MODELS / "data" / "digits_train.csv", scale=16)
    test = load_data(MODELS / "data" / "digits_test.csv", scale=16)
    assert train.x.shape == (1437, 64) and test.x.shape == (360, 64)
    for data in (train, test):
        assert data.x.min() == 0 and data.x.max() == 1
        assert set(np.unique(data.y)) == set(range(10))
        assert np.array_equal(data.x * 16, np.round(data.x * 16))  # the integers 0..16 scikit-learn holds
    assert np.bincount(np.concatenate([train.y, test.y])).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
