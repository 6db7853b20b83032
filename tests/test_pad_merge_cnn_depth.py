"""CNNs of different head depths: ``merge`` aligns them with exact identity layers (Conv of the other's geometry with
one non-zero tap, Relu after a Relu, 1×1 pooling) and keeps the convolutions; ``pad`` pads a CNN with 1×1 identity
Convs when its dense tail has no hidden layer, and never writes a dense identity over a large feature map."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import make_model, run_cli
from onnx import helper

import nnxform
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.ir import Model, from_proto
from nnxform.merge import merge
from nnxform.passes.pad import MAX_DENSE_IDENTITY, affine_depth, pad

SHAPE = (1, 3, 12, 12)
BOX = Box(np.zeros(int(np.prod(SHAPE))), np.ones(int(np.prod(SHAPE))))
#: No weight tensor of a merged or padded CNN may be this large (the dense form of their first Conv is ~14× that).
MAX_ENTRIES = 10**5


def cnn(head: list[tuple], hidden: tuple[int, ...] = (), seed: int = 0, shape: tuple[int, ...] = SHAPE) -> Model:
    """A seeded CNN: ``head`` of ("conv", channels, kernel, stride, pad), ("relu",), ("maxpool"|"avgpool", kernel,
    stride), then Flatten → Gemm (→ Relu → Gemm per ``hidden`` width) → 4 outputs."""
    rng = np.random.default_rng(seed)
    nodes, weights, src, c, side = [], {}, "x", shape[1], shape[2]
    for k, (kind, *args) in enumerate(head):
        out = f"h{k}"
        if kind == "conv":
            width, kernel, stride, p = args
            weights[f"W{k}"] = rng.normal(0, 1 / np.sqrt(c * kernel * kernel), (width, c, kernel, kernel))
            weights[f"b{k}"] = rng.normal(0, 0.1, width)
            nodes.append(helper.make_node("Conv", [src, f"W{k}", f"b{k}"], [out], kernel_shape=[kernel, kernel],
                                          strides=[stride, stride], pads=[p] * 4))
            c, side = width, (side + 2 * p - kernel) // stride + 1
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [src], [out]))
        else:
            kernel, stride = args
            op = "MaxPool" if kind == "maxpool" else "AveragePool"
            nodes.append(helper.make_node(op, [src], [out], kernel_shape=[kernel, kernel], strides=[stride, stride]))
            side = (side - kernel) // stride + 1
        src = out
    nodes.append(helper.make_node("Flatten", [src], ["f0"]))
    widths = (c * side * side, *hidden, 4)
    for k, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        weights[f"G{k}"], weights[f"g{k}"] = rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), rng.normal(0, 0.1, n_out)
        last = k == len(widths) - 2
        nodes.append(helper.make_node("Gemm", [f"f{k}", f"G{k}", f"g{k}"], ["y" if last else f"z{k}"], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{k}"], [f"f{k + 1}"]))
    return from_proto(make_model(nodes, list(shape), weights=weights))


def run(model: Model, xs: np.ndarray, path) -> np.ndarray:
    """``model`` written to ``path`` and run in onnxruntime on every sample of ``xs``."""
    model.save(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name, shape = sess.get_inputs()[0].name, model.input_shape
    return np.stack([sess.run(None, {name: x.reshape(shape).astype(np.float32)})[0].ravel() for x in xs])


def largest_weight(model: Model) -> int:
    return max(model.constants[n.inputs[1]].size for n in model.nodes if n.op in ("Conv", "Gemm"))


C8, C8S2, C1 = ("conv", 8, 3, 1, 1), ("conv", 8, 3, 2, 1), ("conv", 6, 1, 1, 0)
R, MP, AP, MP1, AP1 = ("relu",), ("maxpool", 2, 2), ("avgpool", 2, 2), ("maxpool", 1, 1), ("avgpool", 1, 1)

DEPTHS = {  # head of the first, head of the second, Conv nodes merged, identity layers inserted
    "conv-relu-conv-relu vs conv-relu": ([C8, R, C8, R], [C8, R], 2, 2),
    "conv-relu vs conv-relu-conv-relu": ([C8, R], [C8, R, C8, R], 2, 2),
    "three convs vs one": ([C8, R, C8, R, C8, R], [C8, R], 3, 4),
    "maxpool, then a conv only in the first": ([C8, R, MP, C8, R], [C8, R, MP], 2, 2),
    "avgpool, then a conv only in the first": ([C8S2, R, AP, C8, R, C1, R], [C8S2, R, AP], 3, 4),
    "strided first conv, 1×1 conv only in the first": ([C8S2, R, C1, R], [C8S2, R], 2, 2),
    "a conv without relu in the second": ([C8, R, C8, R], [C8, C8, R], 3, 3),
    "1×1 maxpool only in the second": ([C8, R, C8S2, R], [C8, R, MP1, C8S2, R], 2, 1),
    "1×1 avgpool only in the first": ([C8, R, AP1, C8, R], [C8, R], 2, 3),
}


@pytest.mark.parametrize("hidden_a, hidden_b", [((), (16,)), ((12, 10), ())], ids=["tail-1-2", "tail-3-1"])
@pytest.mark.parametrize("case", DEPTHS)
def test_heads_of_different_depths_merge_with_their_convolutions_kept(tmp_path, case, hidden_a, hidden_b):
    head_a, head_b, convs, identities = DEPTHS[case]
    a, b = cnn(head_a, hidden_a, seed=1), cnn(head_b, hidden_b, seed=2)
    merged, report, cmp = merge(a, b, box=BOX, samples=200)
    assert cmp.within and report.form.startswith(f"convolutions kept: {convs} Conv")
    assert merged.op_counts()["Conv"] == convs and largest_weight(merged) <= MAX_ENTRIES
    inserted = [line for line in report.padding if " at head layer " in line]
    assert len(inserted) == identities and all(line.startswith(("first: identity", "second: identity"))
                                               for line in inserted)
    assert report.depth == convs + max(len(hidden_a), len(hidden_b)) + 1
    xs = np.random.default_rng(3).uniform(0, 1, (64, BOX.size))
    want = run(a, xs, tmp_path / "a.onnx").astype(np.float64) - run(b, xs, tmp_path / "b.onnx")
    np.testing.assert_allclose(run(merged, xs, tmp_path / "m.onnx"), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head_a, head_b, fragments", [
    ([C8S2, R, C8S2, R], [C8S2, R], ("after 2 layers of the first head and 2 of the second", "(Flatten)",
                                      "no Conv of its geometry (kernel [3, 3], strides [2, 2]")),
    ([C8, R, MP], [C8, R], ("(MaxPool) and the second's", "a 2×2 pooling window is no identity")),
    ([C8S2, R], [R, C8S2, R], ("after 0 layers", "(Relu) (beside", "the other's values there can be negative")),
    ([("conv", 8, 5, 1, 2), R], [("conv", 8, 5, 1, 1), R], ("after 0 layers", "pads [1, 1, 1, 1]")),
], ids=["strided-conv", "pool", "relu-on-negative-values", "kernel-pads"])
def test_heads_that_cannot_align_fall_back_to_dense_gemms_and_say_why(head_a, head_b, fragments):
    """Dense Gemms, or (a MaxPool has no dense form) both graphs side by side; the reason is stated either way."""
    a, b = cnn(head_a, seed=4, shape=(1, 2, 6, 6)), cnn(head_b, seed=5, shape=(1, 2, 6, 6))
    merged, report, cmp = merge(a, b, samples=200)
    assert cmp.within and ("Conv" not in merged.op_counts() or report.form.startswith("graph: "))
    assert report.form.startswith(("convolutions merged as dense Gemms: ", "graph: convolutions merged as dense"))
    assert "their layers before the dense tail do not align" in report.form
    assert all(f in report.form for f in fragments), report.form


def test_a_relu_on_the_input_aligns_through_a_linear_identity_conv(tmp_path):
    """[C, R] against [R, C, R]: no identity Relu can read the input (negative on this box), so the second gets an
    identity Conv beside the first's Conv, the Relus match, and the first gets identity Conv → Relu after its Relu."""
    a, b = cnn([C8, R], seed=6), cnn([R, C8, R], seed=7)
    box = Box(BOX.lower - 1, BOX.upper)
    merged, report, cmp = merge(a, b, box=box, samples=200)
    assert cmp.within and merged.op_counts()["Conv"] == 2
    assert [line.split(" at ")[0] for line in report.padding] == [
        "second: identity Conv (3 channels, 3×3 kernel with one non-zero tap)",
        "first: identity Conv (8 channels, 3×3 kernel with one non-zero tap)",
        "first: identity Relu (its input is ≥ 0)"]
    xs = np.random.default_rng(3).uniform(-1, 1, (64, BOX.size))
    want = run(a, xs, tmp_path / "a.onnx").astype(np.float64) - run(b, xs, tmp_path / "b.onnx")
    np.testing.assert_allclose(run(merged, xs, tmp_path / "m.onnx"), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head, hidden, convs_added", [
    ([C8, R, C8S2, R], (), 3),  # no hidden dense layer: 1×1 identity Convs before the Flatten
    ([C8, R, MP, C8, R, AP], (), 3),
    ([C8, R, C8S2, R], (16,), 0),  # a hidden dense layer: the dense identity goes there
    ([C8S2, R, C8], (), 3),  # no Relu after the last Conv: identity Convs after the last Relu
    ([C8S2, C8], (), 0),  # no Relu in the head: the tail is split (relu(y) − relu(−y)), 8 units wide
])
def test_pad_keeps_the_convolutions_and_the_function(tmp_path, head, hidden, convs_added):
    model = cnn(head, hidden, seed=8)
    depth = affine_depth(model)
    padded, report = pad(model, depth + 3)
    counts, before = padded.op_counts(), model.op_counts()
    assert counts["Conv"] == before["Conv"] + convs_added and counts["Conv"] + counts["Gemm"] == depth + 3
    assert report.counts["layers_after"] == depth + 3 and report.counts["inserted"] == 3
    assert largest_weight(padded) <= max(MAX_ENTRIES, largest_weight(model))
    xs = np.random.default_rng(9).uniform(0, 1, (64, model.input_size))
    np.testing.assert_allclose(run(padded, xs, tmp_path / "p.onnx"), run(model, xs, tmp_path / "m.onnx"), rtol=0,
                               atol=1e-5)


def conv_only(side: int, extra: int = 0, seed: int = 11) -> Model:
    """Conv(3×3) → Relu (→ 1×1 Conv → Relu, ``extra`` times) → Conv over the whole map, no Flatten: not head + tail,
    so pad and merge densify its convolutions."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"])]
    weights = {"W1": rng.normal(0, 0.3, (8, 2, 3, 3)), "b1": rng.normal(0, 0.1, 8),
               "W2": rng.normal(0, 0.05, (4, 8, side, side)), "b2": rng.normal(0, 0.1, 4)}
    for k in range(extra):
        weights[f"E{k}"], weights[f"e{k}"] = rng.normal(0, 0.3, (8, 8, 1, 1)), rng.normal(0, 0.1, 8)
        nodes += [helper.make_node("Conv", [f"r{k + 1}", f"E{k}", f"e{k}"], [f"d{k}"], kernel_shape=[1, 1]),
                  helper.make_node("Relu", [f"d{k}"], [f"r{k + 2}"])]
    nodes.append(helper.make_node("Conv", [f"r{extra + 1}", "W2", "b2"], ["y"], kernel_shape=[side, side]))
    return from_proto(make_model(nodes, [1, 2, side, side], weights=weights))


def test_pad_refuses_a_dense_identity_over_a_large_feature_map():
    small = conv_only(8)  # 8 × 8 × 8 = 512 units: a dense identity over them is written
    padded, report = pad(small, 4)
    assert "densified" in report.counts and padded.op_counts()["Gemm"] == 4
    big = conv_only(24)  # 8 × 24 × 24 = 4608 units
    assert 8 * 24 * 24 > MAX_DENSE_IDENTITY
    with pytest.raises(NnxformError, match=r"dense 4608×4608 Gemms .* identity Convs need group-1 Conv"):
        pad(big, 3)


def test_pad_command_like_a_cnn_with_maxpool(tmp_path):
    model = cnn([C8, R, C8S2, R], seed=12)
    deeper = cnn([C8, R, MP, C8, R, C8, R], (16,), seed=13)  # MaxPool: --like counts its layers without densifying
    model.save(tmp_path / "cnn.onnx")
    deeper.save(tmp_path / "deeper.onnx")
    out = tmp_path / "padded.onnx"
    r = run_cli("pad", tmp_path / "cnn.onnx", "--like", tmp_path / "deeper.onnx", "-o", out, "--lower", "0",
                "--upper", "1")
    assert r.returncode == 0, r.stderr
    assert "affine layers: 3 -> 5" in r.stdout and "identity Conv 1×1 (8 → 8 channels" in r.stdout
    assert nnxform.load(out).op_counts()["Conv"] == 4


def test_merge_of_densified_cnns_needing_a_wide_identity_is_a_graph():
    """Heads that are no head + tail (no Flatten) are densified; padding the shallower one would need an identity over
    its 4608-unit feature map, so the two graphs go side by side instead."""
    a, b = conv_only(24, extra=1), conv_only(24, seed=12)
    merged, report, cmp = merge(a, b, samples=100)
    assert cmp.within and report.form.startswith("graph: ") and "identity layers over 4608 units" in report.form
    assert largest_weight(merged) <= 4 * 8 * 24 * 24
