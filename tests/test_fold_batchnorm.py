"""fold-bn (and canon on the same networks): every BatchNormalization disappears, the function stays the
same, and the fold kinds are as expected."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from nnxform.domain import Box
from nnxform.exactness import compare
from nnxform.ir import Model, from_proto, load
from nnxform.passes import PASSES
from nnxform.operators import CANONICAL_OPS
from nnxform.passes.fold_batchnorm import fold_batchnorm

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("models_generate", ROOT / "models" / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)
NetBuilder = generate.NetBuilder

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
EPS = st.floats(-5.0, 0.0).map(lambda e: 10.0**e)  # 1e-5 … 1
SCALE = st.floats(0.25, 2.0) | st.floats(-2.0, -0.25)
PLACEMENT = st.sampled_from(["none", "before-relu", "after-relu"])


def _fold_and_check(model: Model, expected: dict[str, int]) -> Model:
    """Fold, then check: no BN left, counts as expected, same outputs (names and values) as the original."""
    folded, report = fold_batchnorm(model)
    assert "BatchNormalization" not in folded.op_counts()
    assert report.counts == expected
    assert len(report.changes) == model.op_counts().get("BatchNormalization", 0)
    assert folded.output_names == model.output_names
    cmp = compare(model, folded, Box.default(model.input_size), samples=200)
    assert cmp.within, (cmp.max_abs, cmp.max_rel)
    # canon on the same network: exact too, and only verifier-friendly operators left
    canon, _ = PASSES["canon"](model)
    assert {n.op for n in canon.nodes} <= CANONICAL_OPS
    cmp = compare(model, canon, Box.default(model.input_size), samples=200)
    assert cmp.within, ("canon", cmp.max_abs, cmp.max_rel)
    return folded


def _counts(backward: int = 0, forward: int = 0, explicit: int = 0) -> dict[str, int]:
    return {"backward": backward, "forward": forward, "explicit": explicit}


# --- random networks ------------------------------------------------------------------------


@st.composite
def mlp_specs(draw: st.DrawFn) -> dict:
    """Dense layers (Gemm with random alpha/beta/transB, MatMul+Add, MatMul) with BN in various places."""
    layer = st.fixed_dictionaries({
        "kind": st.sampled_from(["gemm", "matmul-add", "matmul"]),
        "width": st.integers(1, 8),
        "alpha": SCALE, "beta": SCALE, "trans_b": st.sampled_from([0, 1]),
        "bn": PLACEMENT, "eps": EPS,
    })
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "inputs": draw(st.integers(1, 6)),
        "bn_on_input": draw(st.booleans()),
        "input_eps": draw(EPS),
        "hidden": draw(st.lists(layer, min_size=1, max_size=3)),
        "last": draw(layer),
        "tail": draw(st.sampled_from(["none", "bn", "relu-bn"])),
    }


def _dense(net: NetBuilder, layer: dict, width: int) -> None:
    if layer["kind"] == "gemm":
        net.gemm(width, layer["alpha"], layer["beta"], layer["trans_b"])
    else:
        net.matmul(width, bias=layer["kind"] == "matmul-add")


@SETTINGS
@given(mlp_specs())
def test_random_mlps_fold_exactly(spec: dict) -> None:
    net = NetBuilder(np.random.default_rng(spec["seed"]), [1, spec["inputs"]])
    expected = _counts()
    if spec["bn_on_input"]:
        net.bn(spec["input_eps"])
        expected["forward"] += 1
    for layer in spec["hidden"]:
        _dense(net, layer, layer["width"])
        if layer["bn"] == "before-relu":
            net.bn(layer["eps"])
            expected["backward"] += 1
        net.relu()
        if layer["bn"] == "after-relu":
            net.bn(layer["eps"])
            expected["forward"] += 1
    _dense(net, spec["last"], 3)
    if spec["tail"] == "bn":
        net.bn(spec["last"]["eps"])
        expected["backward"] += 1
    elif spec["tail"] == "relu-bn":
        net.relu().bn(spec["last"]["eps"])
        expected["explicit"] += 1
    _fold_and_check(from_proto(net.build()), expected)


@st.composite
def cnn_specs(draw: st.DrawFn) -> dict:
    """Conv layers with random padding, strides and groups, BN in various places, then Flatten → Gemm."""
    channels, spatial = draw(st.integers(1, 3)), [draw(st.integers(4, 7)), draw(st.integers(4, 7))]
    spec = {"seed": draw(st.integers(0, 2**32 - 1)), "shape": [1, channels] + spatial,
            "bn_on_input": draw(st.booleans()), "input_eps": draw(EPS), "convs": []}
    for _ in range(draw(st.integers(1, 2))):
        group = draw(st.sampled_from([g for g in (1, 2, 3) if channels % g == 0]))
        pad, stride = draw(st.integers(0, 1)), draw(st.integers(1, 2))
        kernel = draw(st.integers(1, min(3, min(spatial) + 2 * pad)))
        channels = group * draw(st.integers(1, 3))
        spatial = [(d + 2 * pad - kernel) // stride + 1 for d in spatial]
        spec["convs"].append({"out": channels, "kernel": kernel, "stride": stride, "pad": pad, "group": group,
                              "bn": draw(PLACEMENT), "eps": draw(EPS)})
    return spec


@SETTINGS
@given(cnn_specs())
def test_random_cnns_fold_exactly(spec: dict) -> None:
    net = NetBuilder(np.random.default_rng(spec["seed"]), spec["shape"])
    convs = spec["convs"]
    # a BN followed by a Conv folds forward only when that Conv has no padding
    following = [c["pad"] == 0 for c in convs[1:]] + [True]  # the last one feeds Flatten → Gemm
    expected = _counts()
    if spec["bn_on_input"]:
        net.bn(spec["input_eps"])
        expected["forward" if convs[0]["pad"] == 0 else "explicit"] += 1
    for conv, exact_forward in zip(convs, following):
        net.conv(conv["out"], conv["kernel"], conv["stride"], conv["pad"], conv["group"])
        if conv["bn"] == "before-relu":
            net.bn(conv["eps"])
            expected["backward"] += 1
        net.relu()
        if conv["bn"] == "after-relu":
            net.bn(conv["eps"])
            expected["forward" if exact_forward else "explicit"] += 1
    net.flatten().gemm(3)
    _fold_and_check(from_proto(net.build()), expected)


# --- bundled and generated networks ---------------------------------------------------------


def test_marabou_gemm_bn_gemm_folds_backward() -> None:
    folded = _fold_and_check(load(ROOT / "models/marabou_linear2-3_bn1-linear3-1.onnx"), _counts(backward=1))
    assert folded.op_counts() == {"Gemm": 2}


def test_marabou_lone_bn_becomes_a_diagonal_conv_every_verifier_reads() -> None:
    """Issue 14: the depthwise form (group = C, weight [C,1,1,1], no pads) made Marabou's parser assert and pynever
    fail; a group=1 diagonal Conv with every attribute written out is read by all of them."""
    folded = _fold_and_check(load(ROOT / "models/marabou_layerzoo_batchnorm.onnx"), _counts(explicit=1))
    (conv,) = folded.nodes
    assert conv.op == "Conv" and conv.attrs == {"kernel_shape": [1, 1], "strides": [1, 1], "dilations": [1, 1],
                                                "pads": [0, 0, 0, 0]}
    weight = folded.constants[conv.inputs[1]]
    assert weight.shape == (3, 3, 1, 1) and np.count_nonzero(weight[:, :, 0, 0] - np.diag(np.diag(weight[:, :, 0, 0]))) == 0


GENERATED = {
    "bn_mlp.onnx": _counts(backward=2),
    "bn_cnn.onnx": _counts(backward=2),
    "bn_after_relu.onnx": _counts(forward=2),
    "bn_after_relu_conv.onnx": _counts(forward=2, explicit=1),  # the BN before the padded Conv stays
    "bn_on_input.onnx": _counts(forward=1),
}


@pytest.mark.parametrize("filename", sorted(GENERATED))
def test_generated_models_fold_exactly(filename: str) -> None:
    _fold_and_check(load(ROOT / "models" / filename), GENERATED[filename])


def test_generate_reproduces_the_committed_files(tmp_path: Path) -> None:
    assert sorted(GENERATED) == sorted(generate.MODELS)
    for path in generate.generate(tmp_path):
        assert path.read_bytes() == (ROOT / "models" / path.name).read_bytes(), path.name


# --- particular cases -----------------------------------------------------------------------


def test_registered_and_argument_untouched() -> None:
    model = from_proto(generate.build_bn_mlp(np.random.default_rng(0)))
    before = model.copy()
    PASSES["fold-bn"](model)
    assert [(n.op, n.inputs, n.outputs) for n in model.nodes] == [(n.op, n.inputs, n.outputs) for n in before.nodes]
    assert model.constants.keys() == before.constants.keys()
    assert all(np.array_equal(model.constants[k], before.constants[k]) for k in model.constants)


@pytest.mark.parametrize("shape", [[1, 4], [1, 2, 5], [1, 2, 3, 3], [1, 2, 2, 2, 2]])
def test_lone_bn_becomes_explicit_affine_of_its_rank(shape: list[int]) -> None:
    model = from_proto(NetBuilder(np.random.default_rng(1), shape).bn(0.8).build())
    folded = _fold_and_check(model, _counts(explicit=1))
    (node,) = folded.nodes
    if len(shape) == 2:
        assert node.op == "Gemm" and node.attrs == {"transB": 1}
    else:
        nd = len(shape) - 2  # group=1, every attribute written out (issue 14: what Marabou and pynever read)
        assert node.op == "Conv" and node.attrs == {"kernel_shape": [1] * nd, "strides": [1] * nd,
                                                    "dilations": [1] * nd, "pads": [0] * 2 * nd}


def _proto(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
           in_shape: list[int], out_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def _bn_stats(rng: np.random.Generator, c: int) -> dict[str, np.ndarray]:
    return {"g": rng.normal(size=c), "be": rng.normal(size=c), "mu": rng.normal(size=c), "var": rng.uniform(0.1, 2, c)}


def test_affine_output_read_twice_is_not_folded_backward() -> None:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="fc", transB=1),
        helper.make_node("BatchNormalization", ["z", "g", "be", "mu", "var"], ["n"], name="bn", epsilon=0.5),
        helper.make_node("Add", ["n", "z"], ["y"], name="skip"),
    ]
    consts = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=3), **_bn_stats(rng, 3)}
    folded = _fold_and_check(from_proto(_proto(nodes, consts, [1, 4], [1, 3])), _counts(explicit=1))
    assert folded.op_counts() == {"Add": 1, "Gemm": 2}


def test_bn_folds_forward_through_reshape() -> None:
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("BatchNormalization", ["r", "g", "be", "mu", "var"], ["n"], name="bn", epsilon=1e-3),
        helper.make_node("Reshape", ["n", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "W"], ["y"], name="fc", alpha=0.5),
    ]
    consts = {"W": rng.normal(size=(18, 2)), **_bn_stats(rng, 2)}
    proto = _proto(nodes, consts, [1, 2, 3, 3], [1, 2])
    proto.graph.initializer.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))
    folded = _fold_and_check(from_proto(proto), _counts(forward=1))
    assert folded.op_counts() == {"Gemm": 1, "Relu": 1, "Reshape": 1}
