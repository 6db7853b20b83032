"""Pruning: the requested share is removed exactly, ratio 0 keeps the function, BN ranking, saliency's
reproducibility and pieces, the sound impact bound against sampling, ``nnxform prune``."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper
from typer.testing import CliRunner

import nnxform.cli.prune  # noqa: F401  (registers the command)
from conftest import MODELS, ROOT
from test_bounds import mlp
from nnxform.cli import app
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.exactness import compare
from nnxform.gradient import gradient
from nnxform.ir import Model, from_proto, load
from nnxform.pruning import SaliencyOptions, prune
from nnxform.layered import aligned, dense
from nnxform.pruning.chain import dense_chain, prunable_layers, quota, remove_dead_units, remove_units
from nnxform.pruning.impact import impact_bound
from nnxform.pruning.saliency import energy, interval_bounds, output_impact, saliency_matrix
from nnxform.pruning.weight import zero_smallest
from nnxform.runtime import OnnxRunner
from nnxform.vnnlib import read_box

_spec = importlib.util.spec_from_file_location("models_generate", ROOT / "models" / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

CHAIN_OPS = {"Flatten", "Gemm", "Relu", "Reshape"}
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


def bn_net(seed: int, after_relu: bool, zero_gamma: int) -> tuple[Model, list[np.ndarray]]:
    """[1,6] → Gemm(10) → BN/Relu → Gemm(8) → BN/Relu → Gemm(3), the first ``zero_gamma`` units of each BN at γ = 0."""
    net = generate.NetBuilder(np.random.default_rng(seed), [1, 6])
    for width in (10, 8):
        net = net.gemm(width).relu().bn() if after_relu else net.gemm(width).bn().relu()
    proto = net.gemm(3).build("bn")
    gammas = []
    for init in proto.graph.initializer:
        if init.name.endswith("_scale"):
            g = numpy_helper.to_array(init).copy()
            g[:zero_gamma] = 0.0
            init.CopyFrom(numpy_helper.from_array(g.astype(np.float32), init.name))
            gammas.append(np.abs(g))
    return from_proto(proto), gammas


def chain_outputs(layers, xs: np.ndarray) -> np.ndarray:
    """A dense ReLU chain evaluated in float64 numpy on flat inputs."""
    a = np.asarray(xs, dtype=np.float64)
    for k, layer in enumerate(layers):
        a = a @ layer.W.T + layer.b
        a = np.maximum(a, 0.0) if k < len(layers) - 1 else a
    return a


def assert_chain(result: Model, original: Model) -> None:
    """A verifier-friendly chain on the original input that survives ONNX export and the checker."""
    assert set(result.op_counts()) <= CHAIN_OPS
    assert result.input_name == original.input_name and result.input_dims == original.input_dims
    assert result.shapes()[result.output_name] == original.shapes()[original.output_name]
    onnx.checker.check_model(result.to_onnx(), full_check=True)


# --- the requested share ------------------------------------------------------------------------


def test_quota_rounds_down_and_absorbs_decimal_error():
    assert quota(0.3, 10) == 3 and quota(0.29, 10) == 2 and quota(0.7, 10) == 7 and quota(0.1, 3) == 0
    assert quota(1.0, 7) == 7 and quota(0.0, 7) == 0 and quota(0.025, 256) == 6


@SETTINGS
@given(seed=st.integers(0, 10_000), sizes=st.lists(st.integers(2, 12), min_size=2, max_size=4),
       ratio=st.floats(0.0, 1.0), scope=st.sampled_from(["layer", "global"]),
       method=st.sampled_from(["neuron", "saliency"]))
def test_unit_methods_remove_the_requested_share(seed, sizes, ratio, scope, method):
    model = mlp(seed, [3] + sizes + [2])
    widths = sizes
    res = prune(model, method, ratio, scope=scope, box=Box.default(3), options=SaliencyOptions(seed=seed))
    after = res.after.widths
    assert res.before.widths == widths and all(w >= 1 for w in after)
    if scope == "layer":
        assert after == [n - min(quota(ratio, n), n - 1) for n in widths]
    else:
        assert sum(widths) - sum(after) == min(quota(ratio, sum(widths)), sum(widths) - len(widths))
    assert res.details["units_removed"] == sum(widths) - sum(after)
    assert res.after.neurons == sum(after) and res.scope == scope
    asked_too_much = (any(quota(ratio, n) == n for n in widths) if scope == "layer"
                      else quota(ratio, sum(widths)) > sum(widths) - len(widths))
    assert bool(res.notes) == asked_too_much


@SETTINGS
@given(seed=st.integers(0, 10_000), sizes=st.lists(st.integers(2, 12), min_size=2, max_size=4),
       ratio=st.floats(0.0, 1.0), scope=st.sampled_from(["layer", "global"]))
def test_weight_pruning_zeroes_the_smallest_share_and_removal_is_exact(seed, sizes, ratio, scope):
    model = mlp(seed, [3] + sizes + [2])
    layers = dense_chain(model)
    zeroed, count = zero_smallest(layers, ratio, scope)
    weights = [layer.W for layer in layers]
    if scope == "layer":
        assert count == sum(quota(ratio, W.size) for W in weights)
        for W, Z in zip(weights, zeroed):
            assert (Z.W == 0).sum() == quota(ratio, W.size)
            if 0 < quota(ratio, W.size) < W.size:
                assert np.abs(W[Z.W == 0]).max() <= np.abs(W[Z.W != 0]).min()
    else:
        total = sum(W.size for W in weights)
        assert count == quota(ratio, total) == sum((Z.W == 0).sum() for Z in zeroed)
        cut = np.concatenate([np.abs(W[Z.W == 0]) for W, Z in zip(weights, zeroed)])
        kept = np.concatenate([np.abs(W[Z.W != 0]) for W, Z in zip(weights, zeroed)])
        if cut.size and kept.size:
            assert cut.max() <= kept.min()
    res = prune(model, "weight", ratio, scope=scope)
    assert res.details["weights_zeroed"] == count and res.after.connections <= res.before.connections - count
    xs = Box.default(3).points(300, np.random.default_rng(seed))
    # the physical removal keeps the zeroed network's function (float32 export)
    np.testing.assert_allclose(OnnxRunner(res.model)(xs), chain_outputs(zeroed, xs), rtol=1e-5, atol=1e-5)
    assert sum(res.after.widths) == sum(sizes) - res.details["units_removed"]


def test_dead_units_are_removed_with_their_constant_folded():
    W1 = np.array([[1.0, -1.0], [0.0, 0.0], [2.0, 1.0], [0.5, 0.5]])
    b1 = np.array([0.1, 0.7, -0.2, 0.3])  # unit 1: no input, outputs relu(0.7)
    W2 = np.array([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 0.0, 2.0]])  # unit 2: no output
    b2 = np.array([0.0, 1.0])
    W3, b3 = np.array([[1.0, 1.0]]), np.array([0.0])
    layers = [dense(W1, b1), dense(W2, b2), dense(W3, b3)]
    out, removed, notes = remove_dead_units(layers, [0, 1])
    assert removed == 2 and [layer.W.shape[0] for layer in out[:-1]] == [2, 2] and not notes
    assert [layer.ids.tolist() for layer in out[:-1]] == [[0, 3], [0, 1]]
    xs = np.random.default_rng(0).uniform(-3, 3, (200, 2))
    np.testing.assert_allclose(chain_outputs(out, xs), chain_outputs(layers, xs))
    realigned = aligned(out, layers)
    assert [layer.W.shape for layer in realigned] == [(4, 2), (2, 4), (1, 2)]
    np.testing.assert_allclose(chain_outputs(realigned, xs), chain_outputs(out, xs))


def test_a_layer_with_no_weights_left_keeps_one_placeholder():
    model = mlp(1, [3, 5, 4, 2])
    res = prune(model, "weight", 1.0)
    assert res.after.widths == [1, 1] and res.after.connections == 0 and len(res.notes) >= 1
    xs = Box.default(3).points(50, np.random.default_rng(0))
    y = OnnxRunner(res.model)(xs)
    np.testing.assert_allclose(y, np.broadcast_to(y[0], y.shape))  # a constant network


def test_output_units_of_a_relu_output_network_are_never_pruned():
    model = load(MODELS / "dnnv_mnist_relu_3_50.onnx")
    assert prunable_layers(dense_chain(model)) == [0, 1]
    for method in ("neuron", "saliency"):
        res = prune(model, method, 0.5, scope="layer", box=Box(np.zeros(784), np.ones(784)))
        assert res.after.widths == [25, 25] and res.before.neurons == 100
        assert [layer.W.shape[0] for layer in dense_chain(res.model)] == [25, 25, 10, 10]
        assert_chain(res.model, model)
        assert compare(res.model, res.aligned, Box(np.zeros(784), np.ones(784)), samples=200).within
    res = prune(model, "weight", 0.5)
    assert res.details["weights"] == 784 * 50 + 50 * 50 + 50 * 10  # not the identity standing for the output ReLU


# --- function kept at ratio 0, BN ranking --------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist-net_256x2", "ACASXU_run2a_1_1_batch_2000", "bn_mlp", "bn_after_relu",
                                  "marabou_fc1", "dnnv_mnist_relu_3_50"])
@pytest.mark.parametrize("method", ["weight", "neuron"])
def test_ratio_zero_keeps_the_function(name, method):
    model = load(MODELS / f"{name}.onnx")
    res = prune(model, method, 0.0)
    assert res.after.neurons == res.before.neurons and res.after.connections <= res.before.connections
    assert compare(model, res.model, Box.default(model.input_size), samples=300).within
    assert_chain(res.model, model)
    assert res.model.metadata["nnxform.pass"] == "prune"


@pytest.mark.parametrize("after_relu", [False, True])
def test_bn_units_are_ranked_by_gamma_and_zero_gamma_units_go_exactly(after_relu):
    model, gammas = bn_net(3, after_relu, zero_gamma=3)
    res = prune(model, "neuron", 6 / 18)  # exactly the six units with γ = 0
    assert res.details["criterion"] == "bn-gamma" and res.scope == "global"
    assert res.details["removed_units"] == {"1": [0, 1, 2], "2": [0, 1, 2]}
    assert res.after.widths == [7, 5] and "BatchNormalization" not in res.model.op_counts()
    assert compare(model, res.model, Box.default(6), samples=500, atol=1e-4, rtol=1e-4).within


def test_bn_ranking_removes_the_smallest_gammas():
    model = load(MODELS / "bn_mlp.onnx")
    g = [np.abs(model.constants[n.inputs[1]]).ravel() for n in model.nodes if n.op == "BatchNormalization"]
    res = prune(model, "neuron", 0.5)
    removed = np.concatenate([g[0][res.details["removed_units"]["1"]], g[1][res.details["removed_units"]["2"]]])
    kept = np.concatenate([np.delete(g[0], res.details["removed_units"]["1"]),
                           np.delete(g[1], res.details["removed_units"]["2"])])
    assert removed.size == 14 and removed.max() <= kept.min()


def test_without_bn_the_weight_norm_ranks_within_each_layer():
    res = prune(load(MODELS / "cartpole.onnx"), "neuron", 0.25)
    assert res.details["criterion"] == "weight-norm" and res.scope == "layer" and res.after.widths == [48, 48]


def test_convolutional_networks_are_pruned_by_channel():  # tests/test_prune_cnn.py has the rest
    res = prune(load(MODELS / "cifar_base_kw.onnx"), "neuron", 0.5, samples=100)
    assert res.model.op_counts()["Conv"] == 2 and res.details["channels_removed"] == 4 + 8


def test_bad_arguments_are_user_errors():
    model = load(MODELS / "cartpole.onnx")
    for kwargs, text in [({"method": "random"}, "random"), ({"ratio": 1.5}, "ratio"), ({"scope": "all"}, "scope")]:
        args = {"method": "neuron", "ratio": 0.5, **kwargs}
        with pytest.raises(NnxformError, match=text):
            prune(model, args.pop("method"), args.pop("ratio"), **args)
    with pytest.raises(NnxformError, match="step"):
        prune(model, "saliency", 0.5, options=SaliencyOptions(step=0))


# --- saliency ------------------------------------------------------------------------------------


def test_saliency_is_reproducible_for_a_seed():
    model = load(MODELS / "cartpole.onnx")
    box = Box(np.full(4, -2.0), np.full(4, 2.0))
    runs = [prune(model, "saliency", 0.6, box=box, options=SaliencyOptions(seed=s)) for s in (7, 7, 8)]
    assert runs[0].model.to_bytes() == runs[1].model.to_bytes()
    assert runs[0].details["pairs"] == runs[1].details["pairs"]
    assert runs[0].after.widths == runs[2].after.widths == [26, 26]


def test_saliency_matrix_guards_the_bias_ratio():
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    b = np.array([0.5, -0.5, 0.0, 0.0])  # b_0 + b_1 = 0, b_2 = b_3 = 0
    S = saliency_matrix(W, b, np.ones((3, 4)))
    assert np.isinf(np.diag(S)).all() and np.isfinite(S[~np.eye(4, dtype=bool)]).all()
    assert S[2, 3] == pytest.approx(1.0 * np.sqrt(3))  # ‖W_2 − W_3‖ = 1, bias term 0 (0/0 guarded)
    assert S[0, 1] > 1e9  # |b_0 − b_1| / floor(|b_0 + b_1|)


def test_energy_of_no_impact_and_of_equal_impacts():
    m = 4
    zero = energy(np.zeros((1, m)), np.zeros((1, m)), 0.75, 0.25, 0.9)
    rho = (m - 1) / m  # every interval is similar to every other one
    assert zero[0] == pytest.approx(0.75 * 0.5 + 0.25 / (1 + np.exp(m * rho * np.log(rho))))
    spread = energy(np.array([[0.0, -1.0, -5.0, 0.0]]), np.array([[1.0, 2.0, 0.0, 9.0]]), 0.75, 0.25, 0.9)
    assert spread[0] > zero[0]


def test_the_search_estimate_contains_each_operation_sampled():
    """The interval impact of one delegate operation contains the output change seen on samples."""
    layers = dense_chain(load(MODELS / "cartpole.onnx"))
    box = Box(np.full(4, -1.0), np.full(4, 1.0))
    xs = box.points(2000, np.random.default_rng(0))
    bounds = interval_bounds(layers, box)
    for layer, (i, j) in [(0, (3, 5)), (1, (10, 2))]:
        lo, hi = output_impact(layers, bounds, layer, np.array([i]), np.array([j]))
        changed = list(layers)
        Wn = changed[layer + 1].W.copy()
        Wn[:, j] += Wn[:, i]
        changed[layer + 1] = changed[layer + 1].replace(W=Wn)
        changed = remove_units(changed, layer, np.array([i]))
        delta = chain_outputs(changed, xs) - chain_outputs(layers, xs)
        assert (delta >= lo - 1e-9).all() and (delta <= hi + 1e-9).all()


# --- the sound impact bound ----------------------------------------------------------------------


@pytest.mark.parametrize("method, ratio", [("weight", 0.6), ("neuron", 0.3), ("saliency", 0.3)])
def test_impact_bound_contains_the_sampled_drift(method, ratio):
    model = load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx")
    box = read_box(MODELS / "vnnlib" / "acasxu_prop_1.vnnlib")
    res = prune(model, method, ratio, box=box)
    report = impact_bound(model, res, box)
    impact = report["impact"]
    lower, upper = np.array(impact["lower"]), np.array(impact["upper"])
    xs = box.points(5000, np.random.default_rng(1))
    drift = OnnxRunner(res.model)(xs).astype(np.float64) - OnnxRunner(model)(xs).astype(np.float64)
    assert (drift >= lower).all() and (drift <= upper).all()
    assert np.abs(drift).max() <= report["impact_bound"] and impact["found"] <= report["impact_bound"]
    assert report["impact_method"] == "symbolic" and report["impact_bound"] == pytest.approx(
        np.maximum(np.abs(lower), np.abs(upper)).max())


def test_impact_bound_survives_a_gradient_attack_on_the_drift():
    model = load(MODELS / "mnist-net_256x2.onnx")
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    res = prune(model, "neuron", 0.7)
    report = impact_bound(model, res, box)
    rng = np.random.default_rng(3)
    outputs = np.repeat(np.vstack([np.eye(10), -np.eye(10)]), 3, axis=0)  # ±e_i, three starts each
    x = rng.uniform(box.lower, box.upper, (len(outputs), box.size))
    for t in range(15):  # signed-gradient ascent on ±(f_pruned − f)_i, projected on the box
        _, g_pruned = gradient(res.model, x, outputs)
        _, g_orig = gradient(model, x, outputs)
        x = np.clip(x + 0.3 * 0.8**t * (box.upper - box.lower) * np.sign(g_pruned - g_orig), box.lower, box.upper)
    drift = OnnxRunner(res.model)(x).astype(np.float64) - OnnxRunner(model)(x).astype(np.float64)
    assert 0.1 < np.abs(drift).max() <= report["impact_bound"]
    assert (drift >= np.array(report["impact"]["lower"])).all() and (drift <= np.array(report["impact"]["upper"])).all()


@pytest.mark.parametrize("method", ["weight", "neuron", "saliency"])
def test_the_aligned_form_is_the_pruned_function_at_the_original_widths(method):
    model = load(MODELS / "cartpole.onnx")
    res = prune(model, method, 0.8 if method == "weight" else 0.5, box=Box(np.full(4, -2.0), np.full(4, 2.0)))
    assert [layer.W.shape[0] for layer in dense_chain(res.aligned)[:-1]] == res.before.widths == [64, 64]
    assert res.after.widths != res.before.widths
    assert compare(res.model, res.aligned, Box(np.full(4, -3.0), np.full(4, 3.0)), samples=500).within


def test_units_paired_with_their_originals_give_a_tight_bound():
    model = load(MODELS / "mnist-net_256x2.onnx")
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    res = prune(model, "neuron", 0.1)
    assert impact_bound(model, res, box)["impact_bound"] < 0.01  # 0.44 with units paired by position


@pytest.mark.parametrize("method", ["weight", "neuron", "saliency"])
def test_a_verifier_reads_the_pruned_network(tmp_path, method):
    import warnings

    with warnings.catch_warnings():  # maraboupy warns that its TensorFlow parser is unavailable
        warnings.simplefilter("ignore")
        Marabou = pytest.importorskip("maraboupy.Marabou", reason="maraboupy (the 'test' extra) is not installed")
    model = load(MODELS / "mnist-net_256x2.onnx")
    box = Box(np.zeros(784), np.ones(784))
    res = prune(model, method, 0.5, box=box)
    res.model.save(tmp_path / "p.onnx")
    net = Marabou.read_onnx(str(tmp_path / "p.onnx"))
    assert net.outputVars[0].size == 10 and len(net.inputVars[0].ravel()) == 784
    xs = box.points(2, np.random.default_rng(0))[:2].astype(np.float32)
    for x, want in zip(xs, OnnxRunner(res.model)(xs)):
        got = net.evaluateWithMarabou([x.reshape(model.input_shape)], filename=str(tmp_path / "eval.log"))[0]
        np.testing.assert_allclose(got.ravel(), want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))


# --- the command ---------------------------------------------------------------------------------


def _run(*args):
    return CliRunner().invoke(app, ["prune", *map(str, args)])


def test_cli_writes_a_smaller_onnx_and_the_report(tmp_path):
    out, report = tmp_path / "p.onnx", tmp_path / "p.json"
    r = _run(MODELS / "mnist-net_256x2.onnx", "--method", "neuron", "--ratio", "0.5", "-o", out,
             "--vnnlib", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib", "--json", report,
             "--data", MODELS / "data" / "mnist_test_100.csv", "--scale", "255", "--fgsm-eps", "0.02")
    assert r.exit_code == 0, r.output
    assert "impact" in r.output and "weight" in r.output and "hidden units" in r.output
    doc = json.loads(report.read_text())
    assert {"method", "ratio", "seconds", "before", "after", "impact_bound"} <= set(doc)
    for side in ("before", "after"):
        assert {"neurons", "connections", "parameters", "accuracy", "robustness"} <= set(doc[side])
        assert set(doc[side]["robustness"]) == {"0.02"}
        assert doc[side]["robustness"]["0.02"] <= doc[side]["accuracy"]
    assert doc["before"]["neurons"] == 512 and doc["after"]["neurons"] == 256
    pruned = load(out)
    assert pruned.op_counts()["Gemm"] == 3 and doc["after"]["parameters"] < doc["before"]["parameters"]
    assert doc["impact_bound"] >= doc["impact"]["found"] >= 0


def test_cli_without_domain_gives_no_bound_and_json_to_stdout(tmp_path):
    r = _run(MODELS / "cartpole.onnx", "-m", "weight", "-r", "0.5", "-o", tmp_path / "w.onnx", "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert "impact_bound" not in doc and doc["details"]["weights_zeroed"] == quota(0.5, 4 * 64 + 64 * 64 + 64 * 2)


def test_cli_errors_write_nothing(tmp_path):
    out = tmp_path / "x.onnx"
    r = _run(MODELS / "cartpole.onnx", "-m", "magic", "-r", "0.5", "-o", out)
    assert isinstance(r.exception, NnxformError) and "magic" in str(r.exception)
    r = _run(MODELS / "torch_resnet.onnx", "-m", "saliency", "-r", "0.5", "-o", out)
    assert isinstance(r.exception, NnxformError) and "skip connection" in str(r.exception)
    r = _run(MODELS / "cartpole.onnx", "-m", "neuron", "-r", "0.5", "-o", out, "--scale", "255")
    assert isinstance(r.exception, NnxformError) and "--data" in str(r.exception)
    assert not out.exists()
