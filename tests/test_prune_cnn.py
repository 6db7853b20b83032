"""Pruning convolutional networks: channels removed physically (conv, BN, the next layer's input slice), the
requested share exactly, BN-γ ranking with the γ = 0 fill, weight pruning of kernels, the sound impact bound
against sampled drift, and the refusals (saliency, residual networks)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from onnx import numpy_helper

from conftest import MODELS, ROOT, run_cli
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.ir import Model, from_proto, load

from nnxform.passes import PASSES
from nnxform.pruning import prune
from nnxform.pruning.chain import quota
from nnxform.pruning.channel import conv_network, sites, weight_norm_scores
from nnxform.runtime import OnnxRunner
from nnxform.workflows import prune_with_impact

_spec = importlib.util.spec_from_file_location("models_generate", ROOT / "models" / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def with_gamma_zero(proto, zero: dict[str, list[int]]):
    """``proto`` with γ = 0 for the given channels of each named BatchNormalization."""
    for init in proto.graph.initializer:
        bn = init.name.removesuffix("_scale")
        if init.name.endswith("_scale") and bn in zero:
            g = numpy_helper.to_array(init).copy()
            g[zero[bn]] = 0.0
            init.CopyFrom(numpy_helper.from_array(g, init.name))
    return proto


def maxpool_cnn(seed: int = 7, pad: int = 0, bn: bool = False) -> Model:
    """[1,2,10,10] → Conv(6, pads 1)[→BN]→Relu→MaxPool 2×2→Conv(5, pads ``pad``)[→BN]→Relu→Flatten→Gemm(12)→Relu
    →Gemm(3)."""
    net = generate.NetBuilder(np.random.default_rng(seed), [1, 2, 10, 10]).conv(6, 3, pad=1)
    net = (net.bn() if bn else net).relu()
    net._node("MaxPool", net._name("pool"), [], kernel_shape=[2, 2], strides=[2, 2])
    net.shape = net.shape[:2] + [5, 5]
    net = net.conv(5, 3, pad=pad)
    net = (net.bn() if bn else net).relu()
    return from_proto(net.flatten().gemm(12).relu().gemm(3).build("maxpool_cnn"))


def outputs(model: Model, xs: np.ndarray) -> np.ndarray:
    return OnnxRunner(model)(xs.astype(np.float32)).reshape(len(xs), -1).astype(np.float64)


def samples(model: Model, n: int = 200, seed: int = 0, box: Box | None = None) -> np.ndarray:
    box = box or Box.default(model.input_size)
    return np.random.default_rng(seed).uniform(box.lower, box.upper, (n, model.input_size))


def conv_shapes(model: Model) -> list[tuple[int, ...]]:
    return [tuple(model.constants[n.inputs[1]].shape) for n in model.nodes if n.op in ("Conv", "Gemm")]


# --- physical removal and the share -------------------------------------------------------------------


def test_bn_cnn_channels_are_removed_physically_by_bn_gamma():
    model = load(MODELS / "bn_cnn.onnx")
    res = prune(model, "neuron", 0.5)
    assert res.details["criterion"] == "bn-gamma" and res.scope == "global"
    assert res.details["channels_removed"] == quota(0.5, 8) == 4
    kept = {name: 4 - len(ids) for name, ids in res.details["removed_channels"].items()}
    assert set(kept) == {"conv1", "conv2"} and min(kept.values()) >= 1
    c1, c2 = kept["conv1"], kept["conv2"]
    assert conv_shapes(res.model) == [(c1, 2, 3, 3), (c2, c1, 3, 3), (5, c2 * 9)]
    gammas = {n.name: np.abs(model.constants[n.inputs[1]]) for n in model.nodes if n.op == "BatchNormalization"}
    removed = np.concatenate([gammas["bn1"][res.details["removed_channels"]["conv1"]],
                              gammas["bn2"][res.details["removed_channels"]["conv2"]]])
    kept_g = np.concatenate([np.delete(gammas["bn1"], res.details["removed_channels"]["conv1"]),
                             np.delete(gammas["bn2"], res.details["removed_channels"]["conv2"])])
    assert removed.max() <= kept_g.min()
    for node in res.model.nodes:  # verifier-friendly: explicit attributes, no BatchNormalization
        assert node.op != "BatchNormalization"
        if node.op == "Conv":
            assert {"kernel_shape", "pads", "strides", "dilations", "group"} <= set(node.attrs)
    assert res.check.max_abs <= 1e-5 and res.after.parameters < res.before.parameters


def test_cifar_base_kw_half_of_every_layer_by_weight_norm():
    model = load(MODELS / "cifar_base_kw.onnx")
    res = prune(model, "neuron", 0.5, samples=200)
    assert res.details["criterion"] == "weight-norm" and res.scope == "layer"
    assert conv_shapes(res.model) == [(4, 3, 4, 4), (8, 4, 4, 4), (50, 8 * 64), (10, 50)]
    assert (res.before.parameters, res.after.parameters) == (105966, 26876)
    net = conv_network(model)
    for site in sites(net):
        name = net.layers[site.layer].name
        removed = res.details["removed_channels"].get(name, res.details["removed_units"].get(name))
        scores = weight_norm_scores(net.layers, site)
        assert np.sort(scores[removed]).max() <= np.delete(scores, removed).min()
    assert res.check.max_abs <= 1e-5


def test_global_scope_counts_channels_and_units_together():
    res = prune(load(MODELS / "cifar_base_kw.onnx"), "neuron", 0.3, scope="global", samples=100)
    assert res.details["channels_removed"] + res.details["units_removed"] == quota(0.3, 8 + 16 + 100)


def test_every_conv_keeps_one_channel():
    res = prune(maxpool_cnn(), "neuron", 1.0, scope="layer")
    assert conv_shapes(res.model)[:2] == [(1, 2, 3, 3), (1, 1, 3, 3)] and any("keeps" in n or "1 kept" in n
                                                                            for n in res.notes)


def test_maxpool_cnn_removes_channels_through_the_pool():
    model = maxpool_cnn()
    res = prune(model, "neuron", 0.5)
    assert conv_shapes(res.model) == [(3, 2, 3, 3), (3, 3, 3, 3), (6, 27), (3, 6)]
    assert "MaxPool" in res.model.op_counts() and res.check.max_abs <= 1e-5


def test_ratio_zero_keeps_the_function():
    for model in (load(MODELS / "bn_cnn.onnx"), maxpool_cnn(bn=True)):
        res = prune(model, "neuron", 0.0)
        xs = samples(model)
        assert np.allclose(outputs(res.model, xs), outputs(model, xs), atol=1e-5)


# --- BN γ = 0: removed with the fill -------------------------------------------------------------------


def test_zero_gamma_channels_go_first_and_keep_the_function():
    # bn1 channel 2 and bn2 channel 0 have β > 0: their constant relu(β) moves into the next Conv's (unpadded)
    # bias and the Gemm's bias
    proto = with_gamma_zero(generate.build_bn_cnn(np.random.default_rng(2)), {"bn1": [0, 2], "bn2": [0]})
    model = from_proto(proto)
    res = prune(model, "neuron", 3 / 8)
    assert res.details["removed_channels"] == {"conv1": [0, 2], "conv2": [0]} and not res.notes
    xs = samples(model)
    assert np.allclose(outputs(res.model, xs), outputs(model, xs), atol=1e-5)


def test_zero_gamma_before_a_padded_conv_is_removed_without_its_constant():
    proto = generate.NetBuilder(np.random.default_rng(5), [1, 2, 6, 6]).conv(4, 3, pad=1).bn().relu()
    proto = proto.conv(3, 3, pad=1).bn().relu().flatten().gemm(2).build("padded")
    model = from_proto(with_gamma_zero(proto, {"bn1": [2]}))  # β = 0.42: relu(β) > 0
    res = prune(model, "neuron", 1 / 7)
    assert res.details["removed_channels"] == {"conv1": [2], "conv2": []}
    assert any("zero padding" in note and note.startswith("conv1") for note in res.notes)


def test_bn_after_the_relu_ranks_its_conv_and_an_unfoldable_bn_is_sliced_with_it():
    # bn1 stays a per-channel 1×1 Conv (the next Conv pads); bn2 folds forward into conv3 (unpadded): its γ = 0
    # channel 1 is removed exactly
    proto = with_gamma_zero(generate.build_bn_after_relu_conv(np.random.default_rng(4)), {"bn2": [1]})
    model = from_proto(proto)
    res = prune(model, "neuron", 1 / 14, scope="global")
    assert res.details["criterion"] == "bn-gamma" and res.details["removed_channels"]["conv2"] == [1]
    xs = samples(model)
    assert np.allclose(outputs(res.model, xs), outputs(model, xs), atol=1e-5)
    res = prune(model, "neuron", 0.5, scope="layer")
    assert conv_shapes(res.model)[:3] == [(2, 2, 3, 3), (2, 2, 1, 1), (2, 2, 3, 3)] and res.check.max_abs <= 1e-5


# --- weight pruning ---------------------------------------------------------------------------------------------


def test_weight_pruning_zeroes_conv_kernels_and_keeps_them_convolutional():
    model = maxpool_cnn()
    res = prune(model, "weight", 0.6)
    weights = [model.constants[n.inputs[1]] for n in model.nodes if n.op in ("Conv", "Gemm")]
    assert res.details["weights"] == sum(w.size for w in weights)
    assert res.details["weights_zeroed"] == quota(0.6, res.details["weights"])
    shapes = conv_shapes(res.model)
    assert shapes[:2] == [(6, 2, 3, 3), (5, 6, 3, 3)] and shapes[2][1] == 45
    assert res.after.connections <= res.before.connections - res.details["weights_zeroed"] + 1
    assert res.check.max_abs <= 1e-5


# --- the sound impact bound -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, method, ratio", [(load(MODELS / "bn_cnn.onnx"), "neuron", 0.25),
                                                  (maxpool_cnn(), "neuron", 0.3),
                                                  (maxpool_cnn(), "weight", 0.5)])
def test_sampled_drift_lies_within_the_impact_bound(model, method, ratio):
    centre = samples(model, 1, seed=3)[0]
    box = Box(centre - 0.02, centre + 0.02)
    report = prune_with_impact(model, box, method, ratio)
    xs = np.vstack([samples(model, 300, seed=4, box=box), box.lower, box.upper])
    drift = np.abs(outputs(report.model, xs) - outputs(model, xs)).max()
    assert drift <= report.impact["impact_bound"] + 1e-5
    assert report.impact["impact"]["found"] <= report.impact["impact_bound"] + 1e-9


def test_the_aligned_form_is_the_pruned_function_at_the_original_widths():
    model = maxpool_cnn(bn=True)
    res = prune(model, "neuron", 0.5)
    xs = samples(model)
    assert np.allclose(outputs(res.aligned, xs), outputs(res.model, xs), atol=1e-5)
    assert conv_shapes(res.aligned) == conv_shapes(PASSES["canon"](model)[0])


# --- refusals -------------------------------------------------------------------------------------------------


def test_saliency_on_a_cnn_merges_channel_pairs():
    """Data-free saliency pairs channels (tests/test_prune_cnn_saliency.py has the details); on bn_cnn it removes
    the share asked for and the written network is what its report says."""
    res = prune(load(MODELS / "bn_cnn.onnx"), "saliency", 0.5)
    assert res.details["channels_removed"] == quota(0.5, 8) == 4
    assert res.check.within


def test_cli_refuses_saliency_on_a_residual_network_naming_the_add(tmp_path):
    out = tmp_path / "r.onnx"
    r = run_cli("prune", MODELS / "torch_resnet.onnx", "-m", "saliency", "-r", "0.5", "-o", out)
    assert r.returncode == 2 and "Add" in r.stderr and "skip connection" in r.stderr and not out.exists()


def test_cli_prints_the_channels_and_writes_the_report(tmp_path):
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    r = run_cli("prune", MODELS / "bn_cnn.onnx", "-m", "neuron", "-r", "0.5", "-o", out, "--json", report)
    assert r.returncode == 0, r.stderr
    doc = json.loads(report.read_text())
    assert doc["details"]["channels_removed"] == 4 and set(doc["details"]["removed_channels"]) == {"conv1", "conv2"}
    assert "conv1:" in r.stdout and load(out).op_counts()["Conv"] == 2


def test_prune_names_the_layer_a_generator_cannot_keep_channels_through():
    """A generator's Reshape sits between its dense head and its ConvTransposes: the refusal says where it is
    without calling that part the convolutions' dense tail."""
    from test_convtranspose_forms import generator

    with pytest.raises(NnxformError, match=r"layer '.*' \(Reshape\) between the first and the last weighted layer"):
        prune(generator(), "weight", 0.3)
