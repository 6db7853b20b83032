"""The operator table is the one place an operator is described, and ConvTranspose, added there, works everywhere.

ConvTranspose is run against onnxruntime as a one-operator model over its attributes (the differential
test's style), its input gradient against finite differences, and a seeded Conv → Relu → ConvTranspose
→ Relu → Flatten → Gemm network through the analyzers, ``info`` and ``canon``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import make_model, run_cli
from onnx import helper
from test_evaluator_vs_onnxruntime import _weights, check, one_op

from nnxform import interpreter, operators
from nnxform.analyzers import bounds
from nnxform.analyzers.network import Activation, compile_model
from nnxform.domain import Box
from nnxform.errors import NnxformError, UnsupportedOperator
from nnxform.gradient import gradient
from nnxform.ir import from_proto

# --- ConvTranspose against onnxruntime ---------------------------------------------------------------

# attributes for one spatial dimension, repeated per dimension (pads: begin, end)
CONV_TRANSPOSE = [
    {}, {"strides": [2]}, {"strides": [3], "pads": [1, 2]}, {"dilations": [2]}, {"strides": [2], "output_padding": [1]},
    {"group": 2}, {"strides": [2], "dilations": [2], "pads": [0, 1], "output_padding": [1], "group": 2},
    {"auto_pad": "VALID", "strides": [2]}, {"auto_pad": "SAME_UPPER", "strides": [2]},
    {"auto_pad": "SAME_LOWER", "strides": [2]}, {"auto_pad": "SAME_UPPER", "strides": [3]},
    {"output_shape": [6], "strides": [2]}, {"output_shape": [8], "strides": [3]},
    {"output_shape": [6], "strides": [2], "auto_pad": "SAME_UPPER"}, {"output_shape": [6], "strides": [2], "output_padding": [1]},
]


def _spatial(attrs: dict, nd: int) -> dict:
    out = {k: v * nd if isinstance(v, list) and k != "pads" else v for k, v in attrs.items()}
    if "pads" in attrs:
        out["pads"] = [attrs["pads"][0]] * nd + [attrs["pads"][1]] * nd
    return out


def _conv_transpose(nd: int, attrs: dict, bias: bool, seed: int = 3) -> onnx.ModelProto:
    group = attrs.get("group", 1)
    ws = _weights(seed, W=[4, 3] + [3, 2, 2][:nd], b=[3 * group])
    if not bias:
        del ws["b"]
    return one_op("ConvTranspose", [1, 4] + [4, 5, 3][:nd], ws, ["d", "W", "b"] if bias else ["d", "W"],
                  **_spatial(attrs, nd))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("attrs", CONV_TRANSPOSE, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()) or "plain")
def test_conv_transpose(attrs, nd, bias):
    check(_conv_transpose(nd, attrs, bias))


def test_conv_transpose_keeps_its_form_when_exported():
    """auto_pad and output_shape become the explicit pads onnxruntime resolves them to; the export runs the same."""
    proto = _conv_transpose(2, {"output_shape": [7], "strides": [2], "auto_pad": "SAME_LOWER"}, True)
    model = from_proto(proto)
    node = model.nodes[-1]
    assert node.op == "ConvTranspose" and "auto_pad" not in node.attrs and "output_shape" not in node.attrs
    check(model.to_onnx())


def test_conv_transpose_beyond_its_reach_is_refused_naming_the_node():
    proto = _conv_transpose(1, {"output_shape": [12], "strides": [2]}, True)
    with pytest.raises(NnxformError, match="ConvTranspose node .*output_shape"):
        from_proto(proto)


def test_conv_transpose_with_data_weights_is_refused():
    nodes = [helper.make_node("ConvTranspose", ["x", "x"], ["y"])]
    with pytest.raises(UnsupportedOperator, match="ConvTranspose node .* takes its input 1"):
        from_proto(make_model(nodes, [1, 1, 1, 1]))


@pytest.mark.parametrize("attrs", [{}, {"strides": [2], "dilations": [2], "pads": [0, 1], "output_padding": [1], "group": 2},
                                   {"output_shape": [7], "strides": [2]}], ids=["plain", "all-attributes", "output-shape"])
def test_conv_transpose_gradient_by_finite_differences(attrs):
    model = from_proto(_conv_transpose(2, attrs, True))
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(3,) + model.input_shape)
    out_size = interpreter.run(model, xs[:1]).size
    w = rng.normal(size=out_size)
    _, grads = gradient(model, xs, w)
    h = 1e-3
    for k in rng.choice(model.input_size, 12, replace=False):
        e = np.zeros(model.input_size)
        e[k] = h
        plus = interpreter.run(model, xs + e.reshape(model.input_shape)).reshape(3, -1) @ w
        minus = interpreter.run(model, xs - e.reshape(model.input_shape)).reshape(3, -1) @ w
        np.testing.assert_allclose(grads[:, k], (plus - minus) / (2 * h), rtol=1e-6, atol=1e-8)


# --- a ConvTranspose network through the analyzers and the command line ---------------------------------


def conv_transpose_network(seed: int = 0) -> onnx.ModelProto:
    """Sub (input normalisation) → Conv → Relu → ConvTranspose (stride 2) → Relu → Flatten → Gemm, seeded."""
    rng = np.random.default_rng(seed)
    ws = {"mean": rng.uniform(0, 0.5, (1, 2, 1, 1)), "W1": rng.normal(0, 0.5, (3, 2, 3, 3)), "b1": rng.normal(0, 0.1, 3),
          "W2": rng.normal(0, 0.5, (3, 2, 3, 3)), "b2": rng.normal(0, 0.1, 2), "W3": rng.normal(0, 0.1, (5, 2 * 8 * 8)),
          "b3": rng.normal(0, 0.1, 5)}
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["n"], name="normalise"),
        helper.make_node("Conv", ["n", "W1", "b1"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("ConvTranspose", ["r", "W2", "b2"], ["t"], name="up", strides=[2, 2], pads=[1, 1, 1, 1],
                         output_padding=[1, 1]),
        helper.make_node("Relu", ["t"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W3", "b3"], ["y"], name="head", transB=1),
    ]
    return make_model(nodes, [1, 2, 6, 6], weights=ws)


@pytest.fixture(scope="module")
def network_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("convtranspose") / "up.onnx"
    onnx.save(conv_transpose_network(), str(path))
    return path


@pytest.mark.parametrize("method", ["interval", "symbolic"])
def test_bounds_of_a_conv_transpose_network_contain_onnxruntime(network_file, method):
    model = from_proto(onnx.load(str(network_file)))
    box = Box(np.full(model.input_size, -0.5), np.full(model.input_size, 0.5))
    b = bounds(model, box, method)
    rng = np.random.default_rng(2)
    xs = np.vstack([rng.uniform(-0.5, 0.5, (200, model.input_size)), rng.choice([-0.5, 0.5], (50, model.input_size))])
    sess = ort.InferenceSession(str(network_file), providers=["CPUExecutionProvider"])
    ys = np.vstack([sess.run(None, {"x": x.reshape(model.input_shape).astype(np.float32)})[0] for x in xs])
    assert np.all(ys >= b.output_lower) and np.all(ys <= b.output_upper)
    assert [layer.node for layer in b.layers] == ["relu1", "relu2"]
    assert np.all(np.isfinite(b.output_upper - b.output_lower))


def test_info_and_canon_on_a_conv_transpose_network(network_file, tmp_path):
    r = run_cli("info", network_file, "--json", "-")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["operators"]["ConvTranspose"] == 1
    up = next(layer for layer in info["layers"] if layer["op"] == "ConvTranspose")
    assert up["output_shape"] == [1, 2, 8, 8] and up["neurons"] == 2 * 8 * 8 and up["parameters"] == 3 * 2 * 9 + 2
    up_blockers = [b for b in info["blockers"] if "ConvTranspose" in b]  # its implicit attributes, which canon writes
    assert up_blockers and all("run `nnxform canon`" in b for b in up_blockers)
    out = tmp_path / "up.canon.onnx"
    r = run_cli("canon", network_file, "-o", out)
    assert r.returncode == 0, r.stderr
    canon = from_proto(onnx.load(str(out)))
    assert canon.op_counts() == {"Conv": 1, "ConvTranspose": 1, "Flatten": 1, "Gemm": 1, "Relu": 2}
    r = run_cli("info", out, "--json", "-")
    assert json.loads(r.stdout)["verifier_friendly"] is True


# --- the table is the one place ---------------------------------------------------------------------------


def test_evaluation_and_gradients_come_from_the_table():
    assert set(interpreter.OPS) == set(operators.OPERATORS)
    assert all(interpreter.OPS[op] is spec.evaluate for op, spec in operators.OPERATORS.items())


def test_every_nonlinear_entry_has_a_relaxation():
    for op, spec in operators.OPERATORS.items():
        if spec.nonlinear:
            assert spec.window_max or (spec.activation is not None and callable(spec.activation.relax)), op
            lo, hi = np.array([-2.0, -1.0, 0.5]), np.array([-1.0, 1.0, 3.0])
            if spec.activation is not None:
                a_lo, b_lo, a_up, b_up = spec.activation.relax(lo, hi)
                for x in np.linspace(lo, hi, 11):
                    y = spec.activation.function(x)
                    assert np.all(a_lo * x + b_lo <= y + 1e-12) and np.all(y <= a_up * x + b_up + 1e-12), op


def test_an_activation_cannot_be_declared_or_analysed_without_its_relaxation():
    with pytest.raises(ValueError, match="relaxation"):
        operators.Operator(interpreter.OPS["Relu"], operators.OPERATORS["Relu"].vjp, None)
    with pytest.raises(NnxformError, match="Elu node 'e' is not an activation with a declared relaxation"):
        Activation("Elu", "e", 0, 1)


def test_an_operator_not_in_the_table_is_refused_naming_it_and_its_node():
    nodes = [helper.make_node("Elu", ["x"], ["y"], name="smooth")]
    with pytest.raises(UnsupportedOperator, match="operator Elu \\(node 'smooth'\\) is not supported.*supported: Add"):
        from_proto(make_model(nodes, [1, 4]))


def test_conv_transpose_compiles_to_exact_affine_steps():
    model = from_proto(conv_transpose_network())
    net = compile_model(model)
    assert [type(s).__name__ for s in net.steps] == ["Input", "Linear", "Activation", "Linear", "Activation", "Linear"]


def test_the_table_imports_nothing_above_it():
    """``nnxform.operators`` sits under the IR: its modules import only each other (and types when checking)."""
    for path in Path(operators.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                    for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 1 and id(node) not in checking:
                pytest.fail(f"{path.name} imports {'.' * node.level}{node.module} from above the operator table")


# --- facts other modules ask the table (issue 20, item 5) ----------------------------------------------------------

_CHANNELWISE_CASES = {  # a model of one operator on 3 channels, for each channelwise operator
    "MaxPool": lambda: one_op("MaxPool", [1, 3, 4, 4], kernel_shape=[2, 2]),
    "AveragePool": lambda: one_op("AveragePool", [1, 3, 4, 4], kernel_shape=[2, 2]),
    "BatchNormalization": lambda: one_op("BatchNormalization", [1, 3, 4, 4],
                                         {**_weights(1, g=(3,), b=(3,), m=(3,)), "v": np.ones(3, np.float32)},
                                         ["d", "g", "b", "m", "v"]),
}


def test_transparent_operators_compute_their_input():
    transparent = sorted(op for op, spec in operators.OPERATORS.items() if spec.transparent)
    assert transparent == ["Dropout", "Identity"]
    for op in transparent:
        model = from_proto(one_op(op, [1, 3, 4]))
        xs = np.random.default_rng(0).normal(size=(5,) + model.input_shape)
        np.testing.assert_array_equal(interpreter.run(model, xs), xs)


def test_channelwise_operators_keep_each_channel_apart():
    """Output channel c changes only when input channel c does."""
    for op, spec in operators.OPERATORS.items():
        if not spec.channelwise or spec.transparent:
            continue
        model = from_proto(_CHANNELWISE_CASES[op]() if op in _CHANNELWISE_CASES else one_op(op, [1, 3, 4, 4]))
        x = np.random.default_rng(1).normal(size=(1,) + model.input_shape)
        moved = x.copy()
        moved.reshape(1, 1, 3, -1)[:, :, 1] += 1.0  # channel 1 only
        y, z = (interpreter.run(model, v)[0, 0] for v in (x, moved))
        assert y.shape[0] == 3, op
        np.testing.assert_array_equal(y[[0, 2]], z[[0, 2]], err_msg=op)
        assert not np.array_equal(y[1], z[1]), op


def test_the_quantised_layers_are_the_tables_linear_layers():
    from nnxform.passes.quantize import LAYERS

    assert sorted(LAYERS) == ["Conv", "ConvTranspose", "Gemm", "MatMul"]
    assert operators.CONVOLUTIONS == {"Conv", "ConvTranspose"}


def test_every_pass_is_registered_or_named_in_the_readme():
    """PASSES holds every graph rewrite as soon as nnxform.passes is imported; the only Pass objects elsewhere are
    the two the README names (merge.MERGE, pruning.PRUNE)."""
    import importlib
    import pkgutil
    import subprocess
    import sys

    import nnxform
    from nnxform import merge, pruning
    from nnxform.passes import PASSES, Pass

    alone = subprocess.run([sys.executable, "-c", "from nnxform.passes import PASSES; print(' '.join(sorted(PASSES)))"],
                           capture_output=True, text=True, check=True).stdout.split()
    found = {}
    for info in pkgutil.walk_packages(nnxform.__path__, "nnxform."):
        if info.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        found.update({id(v): v for v in vars(module).values() if isinstance(v, Pass)})
    outside = {p.name for p in found.values() if PASSES.get(p.name) is not p}
    assert sorted(PASSES) == alone  # nothing joins later, by some other module's import
    assert outside == {"merge", "prune"} and merge.MERGE.name == "merge" and pruning.PRUNE.name == "prune"
