"""``merge``: f_A − f_B on one shared input as a single Gemm/Relu chain, checked in onnxruntime."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MODELS, assert_clean_error, run_cli
from test_pad import linear_model

import nnxform
from nnxform.domain import Box
from nnxform.ir import Node
from nnxform.layered import dense, model_size
from nnxform.runtime import OnnxRunner
from nnxform.merge import OUTPUT, merge, merge_layers
from nnxform.summary import verifier_blockers
from nnxform.vnnlib import read_box

ACAS = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"


def copy_with(tmp_path: Path, name: str, change: Callable[[np.ndarray], np.ndarray], stem: str) -> Path:
    """A copy of bundled model ``name`` with ``change`` applied to every float weight (constants of > 1 value)."""
    model = nnxform.load(MODELS / f"{name}.onnx")
    for key, value in model.constants.items():
        if value.dtype.kind == "f" and value.size > 1:
            model.constants[key] = change(value).astype(value.dtype)
    path = tmp_path / f"{stem}.onnx"
    model.save(path)
    return path


def perturbed(tmp_path: Path, name: str, scale: float = 0.01, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return copy_with(tmp_path, name, lambda v: v * (1 + scale * rng.standard_normal(v.shape)), f"{name}_perturbed")


def float16_copy(tmp_path: Path, name: str) -> Path:
    return copy_with(tmp_path, name, lambda v: v.astype(np.float16), f"{name}_f16")


def run_file(path: Path, xs: np.ndarray) -> np.ndarray:
    """Outputs of the ONNX file at ``path`` in a fresh onnxruntime session, one sample at a time."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if isinstance(d, str) else d for d in inp.shape]
    return np.stack([sess.run(None, {inp.name: x.reshape(shape).astype(np.float32)})[0].ravel() for x in xs])


def assert_merged(a: Path, b: Path, merged: Path, box: Box, keep_outputs: bool = False, samples: int = 100) -> np.ndarray:
    """The merged file is one Flatten/Gemm/Relu chain (Conv too, for two CNNs) computing f_A − f_B (then f_A, f_B);
    returns f_A − f_B."""
    model = nnxform.load(merged)
    assert verifier_blockers(model) == []
    assert set(model.op_counts()) <= {"Flatten", "Gemm", "Relu", "Conv"}
    assert model.output_names == [OUTPUT]
    xs = box.points(samples, np.random.default_rng(1))
    ya, yb, ym = run_file(a, xs), run_file(b, xs), run_file(merged, xs)
    want = np.hstack([ya - yb, ya, yb]) if keep_outputs else ya - yb
    scale = 1 + np.abs(np.hstack([ya, yb])).max()
    np.testing.assert_allclose(ym, want, rtol=0, atol=1e-5 * scale)
    return ya - yb


@pytest.mark.parametrize("a, make_b, box", [
    ("mnist-net_256x2", float16_copy, Box(np.zeros(784), np.ones(784))),
    ("cartpole", perturbed, Box.default(4)),
    ("cifar_base_kw", perturbed, Box(np.zeros(3072), np.ones(3072))),
], ids=["mnist-float16", "cartpole-perturbed", "cifar-conv-perturbed"])
def test_merge_bundled_pairs(tmp_path, a, make_b, box):
    path_a, path_b = MODELS / f"{a}.onnx", make_b(tmp_path, a)
    merged, report, cmp = merge(nnxform.load(path_a), nnxform.load(path_b), box=box, samples=100)
    merged.save(tmp_path / "ab.onnx")
    delta = assert_merged(path_a, path_b, tmp_path / "ab.onnx", box)
    assert np.abs(delta).max() > 0  # the copies really differ
    assert report.depth == report.depth_a == report.depth_b and not report.shapes_differ
    counts = merged.op_counts()
    assert counts["Gemm"] + counts.get("Conv", 0) == report.depth and cmp.within
    assert (counts.get("Conv", 0) > 0) == (a == "cifar_base_kw")  # convolutions stay convolutions


def test_two_cnns_merge_channel_wise_within_twice_the_parameters(tmp_path):
    """cifar_base_kw with itself: first Conv stacked, second block-diagonal over channels, dense tail block-diagonal;
    the merged network holds at most 2 × the two networks' parameters (the dense merge held 80 ×)."""
    model = nnxform.load(MODELS / "cifar_base_kw.onnx")
    box = Box(np.zeros(3072), np.ones(3072))
    merged, report, cmp = merge(model, model, box=box, samples=200)
    assert cmp.within and report.form.startswith("convolutions kept: 2 Conv")
    assert model_size(merged).parameters <= 2 * 2 * model_size(model).parameters
    first, second = (merged.constants[n.inputs[1]] for n in merged.nodes if n.op == "Conv")
    assert first.shape == (16, 3, 4, 4) and second.shape == (32, 16, 4, 4)
    assert not second[:16, 8:].any() and not second[16:, :8].any()  # zero cross blocks
    merged.save(tmp_path / "aa.onnx")
    assert np.abs(assert_merged(MODELS / "cifar_base_kw.onnx", MODELS / "cifar_base_kw.onnx", tmp_path / "aa.onnx",
                                box)).max() == 0


def test_cnns_whose_heads_differ_by_an_identity_pooling_keep_their_convolutions():
    """A 1×1 AveragePool in one head is matched by an identity pooling in the other (tests/test_pad_merge_cnn_depth.py
    has the alignment's other cases and its dense fallback)."""
    a = nnxform.load(MODELS / "bn_cnn.onnx")
    b = a.copy()
    relu = next(n for n in b.nodes if n.op == "Relu")
    b.rename_uses(relu.outputs[0], "pooled")
    b.nodes.insert(b.nodes.index(relu) + 1, Node("AveragePool", "pool", [relu.outputs[0]], ["pooled"],
                                                 {"kernel_shape": [1, 1]}))  # the same function, one more layer
    merged, report, cmp = merge(a, b, samples=200)
    assert cmp.within and merged.op_counts()["Conv"] == 2
    assert report.form.startswith("convolutions kept: 2 Conv")
    assert any("identity AveragePool" in line and "'pool'" in line for line in report.padding)


def test_acasxu_against_itself_is_zero(tmp_path):
    box = read_box(MODELS / "vnnlib" / "acasxu_prop_1.vnnlib")
    merged, report, _ = merge(nnxform.load(ACAS), nnxform.load(ACAS), box=box, samples=100)
    merged.save(tmp_path / "aa.onnx")
    delta = assert_merged(ACAS, ACAS, tmp_path / "aa.onnx", box)
    assert np.abs(delta).max() == 0
    assert report.widths == [100] * 6 + [5]


def test_different_depths_widths_and_input_shapes(tmp_path):
    a, b = MODELS / "mnist-net_256x2.onnx", MODELS / "dnnv_mnist_relu_3_50.onnx"
    box = Box(np.zeros(784), np.ones(784))
    merged, report, _ = merge(nnxform.load(a), nnxform.load(b), box=box, samples=100)
    assert (report.depth_a, report.depth_b, report.depth) == (3, 4, 4)
    assert report.widths == [256 + 50, 256 + 50, 256 + 10, 10]
    assert report.shapes_differ and len(report.padding) == 1 and report.padding[0].startswith("first: identity")
    assert merged.input_dims == (1, 784, 1)  # the first network's input
    merged.save(tmp_path / "ab.onnx")
    assert_merged(a, b, tmp_path / "ab.onnx", box)


def test_keep_outputs_order_and_single_affine_layers(tmp_path):
    fc = MODELS / "marabou_fc_2-2-3.onnx"
    linear = linear_model(tmp_path, 2, 3)
    linear_path = tmp_path / "lin.onnx"
    linear.save(linear_path)
    box = Box.default(2)
    merged, report, _ = merge(linear, nnxform.load(fc), keep_outputs=True, box=box, samples=100)
    assert (report.depth_a, report.depth_b, report.depth) == (1, 2, 2) and report.widths == [4 + 2, 9]
    merged.save(tmp_path / "lf.onnx")
    assert_merged(linear_path, fc, tmp_path / "lf.onnx", box, keep_outputs=True)
    both_linear, report, _ = merge(linear, linear_model(tmp_path, 2, 3, seed=1), box=box, samples=100)
    assert both_linear.op_counts() == {"Gemm": 1} and report.depth == 1


def test_merge_layers_stack_then_block_diagonal_then_comparison():
    rng = np.random.default_rng(0)
    a = [dense(rng.normal(size=(3, 2)), rng.normal(size=3)), dense(rng.normal(size=(4, 3)), rng.normal(size=4)),
         dense(rng.normal(size=(2, 4)), rng.normal(size=2))]
    b = [dense(rng.normal(size=(5, 2)), rng.normal(size=5)), dense(rng.normal(size=(1, 5)), rng.normal(size=1)),
         dense(rng.normal(size=(2, 1)), rng.normal(size=2))]
    (W1, b1), (W2, b2), (W3, b3) = ((layer.W, layer.b) for layer in merge_layers(a, b))
    np.testing.assert_array_equal(W1, np.vstack([a[0].W, b[0].W]))
    np.testing.assert_array_equal(W2[:4, 3:], 0)
    np.testing.assert_array_equal(W2[4:, :3], 0)
    np.testing.assert_array_equal(W3, np.hstack([a[2].W, -b[2].W]))
    np.testing.assert_array_equal(b3, a[2].b - b[2].b)
    last = merge_layers(a, b, keep_outputs=True)[-1]
    W3k, b3k = last.W, last.b
    assert W3k.shape == (6, 5)
    np.testing.assert_array_equal(W3k[2:4], np.hstack([a[2].W, np.zeros((2, 1))]))
    np.testing.assert_array_equal(b3k[4:], b[2].b)


def test_merge_command_pairs_reshaped_inputs_and_records_provenance(tmp_path):
    mnist = MODELS / "mnist-net_256x2.onnx"
    model = nnxform.load(mnist)
    model.input_shape = model.input_dims = (1, 1, 28, 28)  # the Flatten after it gives the same [1, 784]
    image = tmp_path / "mnist_image_input.onnx"
    model.save(image)
    out = tmp_path / "ab.onnx"
    r = run_cli("merge", mnist, image, "-o", out, "--lower", "0", "--upper", "1", "--samples", "200",
                "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "[1,784,1] and [1,1,28,28], paired element by element in row-major order" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["shapes_differ"] and report["input_shapes"] == [[1, 784, 1], [1, 1, 28, 28]]
    delta = assert_merged(mnist, image, out, Box(np.zeros(784), np.ones(784)))
    assert np.abs(delta).max() == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["nnxform.pass"] == "merge"
    assert meta["nnxform.source_sha256"] == hashlib.sha256(mnist.read_bytes()).hexdigest()
    assert json.loads(meta["nnxform.parameters"])["second_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()


@pytest.mark.parametrize("a, b, fragments", [
    ("mnist-net_256x2", "cartpole", ("inputs differ in size", "784", "4")),
    ("marabou_fc_2-2-3", "marabou_linear2-3_bn1-linear3-1", ("outputs differ in size", "3", "1")),
    ("torch_nhwc_mlp", "torch_nhwc_mlp", ("merge supports ReLU chains", "is a Tanh")),
])
def test_merge_command_errors(tmp_path, a, b, fragments):
    out = tmp_path / "ab.onnx"
    assert_clean_error(run_cli("merge", MODELS / f"{a}.onnx", MODELS / f"{b}.onnx", "-o", out), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_networks_with_skip_connections_merge_as_one_graph(tmp_path):
    """Residual networks are no chain: both graphs side by side on one input, f_A − f_B = Add(f_A, −f_B), checked
    like any merge, and the report says which verifiers read the result."""
    a = nnxform.load(MODELS / "torch_resnet.onnx")
    b = nnxform.load(perturbed(tmp_path, "torch_resnet"))
    box = Box(np.zeros(a.input_size), np.ones(a.input_size))
    merged, report, cmp = merge(a, b, keep_outputs=True, box=box, samples=200)
    assert cmp.within and report.form.startswith("graph: ") and "skip connection" in report.form
    assert "Marabou" in report.form and merged.output_names == [OUTPUT]
    xs = box.points(50, np.random.default_rng(0))
    ya, yb = OnnxRunner(a)(xs), OnnxRunner(b)(xs)
    np.testing.assert_allclose(OnnxRunner(merged)(xs), np.hstack([ya - yb, ya, yb]), atol=1e-5)
