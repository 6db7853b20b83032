"""``pad``: exact identity layers up to a requested depth, checked in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import MODELS, assert_clean_error, make_model, run_cli, save
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import nnxform
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.exactness import compare
from nnxform.passes import PASSES
from nnxform.layered import dense
from nnxform.passes.pad import pad, pad_layers, relu_layers

CHAIN_OPS = {"Flatten", "Gemm", "Relu", "Reshape"}


def linear_model(tmp_path, n_in: int, n_out: int, seed: int = 0):
    """A single Gemm (no ReLU): values before the output can be negative."""
    rng = np.random.default_rng(seed)
    node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)
    proto = make_model([node], [1, n_in], weights={"W": rng.normal(size=(n_out, n_in)), "b": rng.normal(size=n_out)})
    return nnxform.load(save(proto, tmp_path / f"linear_{n_in}_{n_out}.onnx"))


@pytest.mark.parametrize("name, depth", [("cartpole", 3), ("mnist-net_256x2", 3), ("bn_cnn", 3),
                                         ("dnnv_mnist_relu_3_50", 4), ("marabou_linear2-3_bn1-linear3-1", 1),
                                         ("test_nano", 2)])
def test_pad_keeps_the_function_and_reaches_the_depth(name, depth):
    model = nnxform.load(MODELS / f"{name}.onnx")
    assert len(relu_layers(model, "pad")) == depth
    for target in (depth, depth + 1, depth + 3):
        padded, report = pad(model, target)
        ops = padded.op_counts()
        assert ops["Gemm"] + ops.get("Conv", 0) == target and ops.get("Relu", 0) == target - 1
        assert set(ops) <= CHAIN_OPS | {"Conv"} and ("Conv" in ops) == (name == "bn_cnn")  # CNNs stay CNNs
        assert report.counts["layers_after"] == target and report.counts.get("inserted", 0) == target - depth
        assert padded.input_name == model.input_name and padded.input_dims == model.input_dims
        assert padded.shapes()[padded.output_name] == model.shapes()[model.output_name]
        assert compare(model, padded, Box.default(model.input_size), samples=300).within


@pytest.mark.parametrize("n_in, n_out", [(2, 5), (5, 2)])
def test_pad_without_relu_splits_the_smaller_side(tmp_path, n_in, n_out):
    model = linear_model(tmp_path, n_in, n_out)
    padded, report = pad(model, 3)
    assert padded.op_counts() == {"Gemm": 3, "Relu": 2}
    assert ("input split" if n_in < n_out else "layer 1 split") in report.changes[0]
    widths = [padded.constants[n.inputs[1]].shape[0] for n in padded.nodes if n.op == "Gemm"]
    assert widths == [2 * min(n_in, n_out)] * 2 + [n_out]
    wide = Box(np.full(n_in, -50.0), np.full(n_in, 50.0))  # negative values must pass exactly
    assert compare(model, padded, wide, samples=300, atol=1e-4, rtol=1e-5).within


@settings(max_examples=40, deadline=None, derandomize=True)
@given(widths=st.lists(st.integers(1, 6), min_size=2, max_size=5), extra=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_padded_layers_compute_the_same_function(widths, extra, seed):
    rng = np.random.default_rng(seed)
    layers = [dense(rng.normal(size=(o, i)), rng.normal(size=o)) for i, o in zip(widths, widths[1:])]

    def run(ls, x):
        for k, layer in enumerate(ls):
            x = x @ layer.W.T + layer.b
            x = np.maximum(x, 0) if k < len(ls) - 1 else x
        return x

    padded, notes = pad_layers(layers, len(layers) + extra)
    assert len(padded) == len(layers) + extra and len(notes) == extra
    x = rng.uniform(-10, 10, size=(50, widths[0]))
    np.testing.assert_allclose(run(padded, x), run(layers, x), rtol=1e-12, atol=1e-9)


def test_pad_is_registered_and_refuses_a_smaller_depth():
    model = nnxform.load(MODELS / "cartpole.onnx")
    assert PASSES["pad"] is pad
    with pytest.raises(NnxformError, match="already has 3 affine layers; cannot pad it to 2"):
        pad(model, 2)


@pytest.mark.parametrize("name, fragments", [("torch_nhwc_mlp", ("supports ReLU chains", "is a Tanh")),
                                             ("torch_resnet", ("supports ReLU chains", "skip connection"))])
def test_pad_names_what_is_unsupported(name, fragments):
    with pytest.raises(NnxformError) as info:
        pad(nnxform.load(MODELS / f"{name}.onnx"), 9)
    assert all(f in str(info.value) for f in fragments)


def test_pad_command(tmp_path):
    out = tmp_path / "acas_like.onnx"
    r = run_cli("pad", MODELS / "cartpole.onnx", "--like", MODELS / "ACASXU_run2a_1_1_batch_2000.onnx", "-o", out,
                "--json", tmp_path / "r.json", "--lower", "-2", "--upper", "2")
    assert r.returncode == 0, r.stderr
    assert "affine layers: 3 -> 7" in r.stdout and "same function" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["layers_after"] == 7 and report["operators_after"] == {"Gemm": 7, "Relu": 6}
    padded = nnxform.load(out)
    assert compare(nnxform.load(MODELS / "cartpole.onnx"), padded, Box.default(4), samples=200).within
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["nnxform.pass"] == "pad" and json.loads(meta["nnxform.parameters"])["depth"] == 7


def test_pad_command_errors(tmp_path):
    out = tmp_path / "out.onnx"
    assert_clean_error(run_cli("pad", MODELS / "cartpole.onnx", "--depth", "2", "-o", out), "cannot pad it to 2")
    assert_clean_error(run_cli("pad", MODELS / "cartpole.onnx", "-o", out), "--depth N or --like")
    assert_clean_error(run_cli("pad", MODELS / "torch_nhwc_mlp.onnx", "--depth", "5", "-o", out), "Tanh")
    assert not out.exists()
