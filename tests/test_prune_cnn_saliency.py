"""Saliency pruning of convolutional networks (paper 003 on channels): exact at ratio 0, the requested share of
channels, the merge rule exact for duplicate filters, sites behind a per-channel scale skipped with a note, the
sound impact bound against sampled drift, and the refusals (one line, exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper, numpy_helper

from conftest import MODELS, run_cli
from nnxform.domain import Box
from nnxform.ir import Model, from_proto, load
from nnxform.pruning import prune
from nnxform.pruning.chain import quota
from nnxform.pruning.channel import conv_network
from nnxform.workflows import prune_with_impact
from test_prune_cnn import generate, outputs, samples


def pooled_cnn(seed: int = 0, group: int = 1) -> generate.NetBuilder:
    """[1,3,12,12] → Conv(6, pads 1)→BN→Relu→MaxPool 2×2→Conv(8, stride 2, pads 1, ``group``)→BN→Relu→AveragePool
    3×3 (pads 1)→Conv(5, 1×1)→Relu→Flatten→Gemm(10)→Relu→Gemm(4), unbuilt."""
    net = generate.NetBuilder(np.random.default_rng(seed), [1, 3, 12, 12]).conv(6, 3, pad=1).bn().relu()
    net._node("MaxPool", net._name("maxpool"), [], kernel_shape=[2, 2], strides=[2, 2])
    net.shape = net.shape[:2] + [6, 6]
    net = net.conv(8, 3, stride=2, pad=1, group=group).bn().relu()
    net._node("AveragePool", net._name("avgpool"), [], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    return net.conv(5, 1).relu().flatten().gemm(10).relu().gemm(4)


def cnn(seed: int = 0, group: int = 1) -> Model:
    return from_proto(pooled_cnn(seed, group).build("pooled_cnn"))


def with_duplicates(proto, copies: dict[str, tuple[int, int]]):
    """``proto`` with channel (row) b of each named Conv or Gemm, and of the BatchNormalization after it, set equal to
    channel a: two channels that compute the same function."""
    for init in proto.graph.initializer:
        stem = init.name.rsplit("_", 1)[0]
        layer = stem.replace("bn", "conv") if stem.startswith("bn") else stem
        if layer in copies:
            a, b = copies[layer]
            value = numpy_helper.to_array(init).copy()
            value[b] = value[a]
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    return proto


def channels(model: Model) -> list[int]:
    return [int(model.constants[n.inputs[1]].shape[0]) for n in model.nodes if n.op in ("Conv", "Gemm")]


# --- exactness and the share ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_ratio_zero_keeps_the_function(seed):
    model = cnn(seed)
    res = prune(model, "saliency", 0.0)
    xs = samples(model)
    assert np.allclose(outputs(res.model, xs), outputs(model, xs), atol=1e-5, rtol=0)
    assert res.details["channels_removed"] == res.details["units_removed"] == 0 and res.after == res.before


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_layer_scope_removes_the_share_of_every_layer(ratio):
    model = cnn()
    res = prune(model, "saliency", ratio)
    assert res.scope == "layer" and res.details["layers"] == ["conv1", "conv2", "conv3", "fc1"]
    want = [min(quota(ratio, n), n - 1) for n in (6, 8, 5, 10)]
    assert channels(res.model) == [n - w for n, w in zip((6, 8, 5, 10), want)] + [4]
    removed = {**res.details["removed_channels"], **res.details["removed_units"]}
    assert [len(removed[name]) for name in res.details["layers"]] == want
    assert len(res.details["pairs"]) == sum(want) and res.check.max_abs <= 1e-5
    nominees = {name: sorted(p["nominee"] for p in res.details["pairs"] if p["layer"] == name) for name in removed}
    assert nominees == removed  # every removed channel went into a delegate (kept then, or removed in a later round)


def test_global_scope_counts_channels_and_units_together():
    res = prune(cnn(), "saliency", 0.4, scope="global")
    assert res.scope == "global"
    assert res.details["channels_removed"] + res.details["units_removed"] == quota(0.4, 6 + 8 + 5 + 10)
    assert min(channels(res.model)) >= 1 and res.check.max_abs <= 1e-5


def test_every_layer_keeps_one_channel():
    res = prune(cnn(), "saliency", 1.0, scope="global")
    assert channels(res.model) == [1, 1, 1, 1, 4] and any("every layer keeps one" in n for n in res.notes)


def test_step_sets_the_rounds():
    from nnxform.pruning import SaliencyOptions

    res = prune(cnn(), "saliency", 0.5, options=SaliencyOptions(step=0.1))
    assert res.details["rounds"] >= 3 and channels(res.model) == [3, 4, 3, 5, 4]
    res = prune(cnn(), "saliency", 0.5, options=SaliencyOptions(step=0.1, seed=3))
    assert any("do not apply" in n for n in res.notes)


def test_the_merge_rule_is_exact_for_duplicate_filters():
    # conv1 channel 4 = channel 1 (with its BN), conv3 channel 3 = channel 0 and fc1 unit 7 = unit 2: pruning one
    # of each pair first, its outgoing weights added to the twin's, keeps the function
    copies = {"conv1": (1, 4), "conv3": (0, 3), "fc1": (2, 7)}
    model = from_proto(with_duplicates(pooled_cnn(3).build("twins"), copies))
    xs = samples(model)
    assert not np.allclose(outputs(model, xs), outputs(cnn(3), xs), atol=1e-3)
    res = prune(model, "saliency", 3 / 29, scope="global")
    pairs = {p["layer"]: {p["nominee"], p["delegate"]} for p in res.details["pairs"]}
    assert pairs == {name: set(pair) for name, pair in copies.items()}
    assert channels(res.model) == [5, 8, 4, 9, 4]
    assert np.allclose(outputs(res.model, xs), outputs(model, xs), atol=1e-5, rtol=0)


def test_a_grouped_conv_is_pruned_as_its_block_diagonal_form():
    model = cnn(2, group=2)  # canon writes conv2's two groups as one block-diagonal group
    res = prune(model, "saliency", 0.5)
    assert all(n.attrs["group"] == 1 for n in res.model.nodes if n.op == "Conv")
    assert channels(res.model) == [3, 4, 3, 5, 4] and res.check.max_abs <= 1e-5
    xs = samples(model)
    zero = prune(model, "saliency", 0.0)
    assert np.allclose(outputs(zero.model, xs), outputs(model, xs), atol=1e-5, rtol=0)


def test_a_site_behind_a_per_channel_affine_is_skipped_with_a_note():
    # bn1 follows conv1's ReLU and the next Conv pads: canon keeps it as a per-channel 1×1 Conv
    model = load(MODELS / "bn_after_relu_conv.onnx")
    res = prune(model, "saliency", 0.5)
    assert "conv1" in res.details["skipped"] and "conv1" not in res.details["removed_channels"]
    assert any(n.startswith("skipped") and "conv1 (through bn1" in n for n in res.notes)
    assert res.details["removed_channels"]["conv2"] and res.check.max_abs <= 1e-5


def test_the_aligned_form_is_the_pruned_function_at_the_original_widths():
    model = cnn(4)
    res = prune(model, "saliency", 0.5)
    xs = samples(model)
    assert np.allclose(outputs(res.aligned, xs), outputs(res.model, xs), atol=1e-5)
    widths = [layer.units for layer in conv_network(model).layers if hasattr(layer, "units")]
    assert channels(res.aligned) == widths[:len(channels(res.aligned))]


# --- the sound impact bound -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, ratio, scope", [(0, 0.25, "layer"), (5, 0.3, "global")])
def test_sampled_drift_lies_within_the_impact_bound(seed, ratio, scope):
    model = cnn(seed)
    centre = samples(model, 1, seed=3)[0]
    box = Box(centre - 0.02, centre + 0.02)
    report = prune_with_impact(model, box, "saliency", ratio, scope=scope)
    xs = np.vstack([samples(model, 300, seed=4, box=box), box.lower, box.upper])
    drift = np.abs(outputs(report.model, xs) - outputs(model, xs)).max()
    assert 0 < drift <= report.impact["impact_bound"] + 1e-5
    assert report.impact["impact"]["found"] <= report.impact["impact_bound"] + 1e-9


# --- the command and its refusals -------------------------------------------------------------------------------


def test_cli_prunes_a_cnn_by_saliency(tmp_path):
    src, out, report = tmp_path / "c.onnx", tmp_path / "p.onnx", tmp_path / "p.json"
    src.write_bytes(cnn().to_bytes())
    r = run_cli("prune", src, "-m", "saliency", "-r", "0.5", "-o", out, "--json", report,
                "--lower", "-1", "--upper", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(report.read_text())
    assert doc["details"]["channels_removed"] == 3 + 4 + 2 and doc["impact_bound"] >= 0
    assert "conv1: 3 channel(s) removed" in r.stdout and load(out).op_counts()["Conv"] == 3


def chain_with(op: str, **attrs) -> Model:
    """Conv → ``op`` → Conv → Flatten → Gemm: ``op`` between the convolutions."""
    net = generate.NetBuilder(np.random.default_rng(0), [1, 2, 6, 6]).conv(4, 3, pad=1)
    net._node(op, net._name(op.lower()), [], **attrs)
    return from_proto(net.conv(3, 3).relu().flatten().gemm(2).build("odd"))


def flatten_axis_two() -> Model:
    net = generate.NetBuilder(np.random.default_rng(0), [1, 2, 6, 6]).conv(4, 3).relu()
    net._node("Flatten", net._name("flatten"), [], axis=2)
    net.shape = [4, 16]
    return from_proto(net.gemm(3).build("axis2"))


def residual() -> Model:
    """Conv → Relu → Conv, added to the first Conv's output (an identity skip), → Flatten → Gemm."""
    net = generate.NetBuilder(np.random.default_rng(0), [1, 2, 6, 6]).conv(4, 3, pad=1).relu()
    skip = net.current
    net = net.conv(4, 3, pad=1)
    net.nodes.append(helper.make_node("Add", [skip, net.current], ["sum"], name="skip_add"))
    net.current = "sum"
    return from_proto(net.relu().flatten().gemm(2).build("residual"))


@pytest.mark.parametrize("model, names, method", [
    (lambda: chain_with("Tanh"), ["tanh1", "Tanh", "replace it"], "saliency"),
    (lambda: chain_with("Tanh"), ["tanh1", "Tanh", "replace it"], "neuron"),
    (flatten_axis_two, ["flatten1", "axis 2", "Flatten(axis=1)"], "saliency"),
    (flatten_axis_two, ["flatten1", "axis 2", "Flatten(axis=1)"], "neuron"),
    (residual, ["skip_add", "Add", "skip connection", "--method neuron"], "saliency"),
    (lambda: load(MODELS / "torch_resnet.onnx"), ["Add", "skip connection"], "saliency"),
])
def test_cli_refuses_what_it_cannot_follow_in_one_line(tmp_path, model, names, method):
    src, out = tmp_path / "m.onnx", tmp_path / "p.onnx"
    src.write_bytes(model().to_bytes())
    r = run_cli("prune", src, "-m", method, "-r", "0.5", "-o", out)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    assert all(name in r.stderr for name in names), r.stderr
