"""``compress``: stable neurons are removed (LEO++) and the result equals the input on the box, in onnxruntime."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from typer.testing import CliRunner

import nnxform.cli.compress  # noqa: F401  (registers the command)
from conftest import MODELS, make_model
from nnxform.cli import app
from nnxform.discrepancy import Pair
from nnxform.domain import Box
from nnxform.errors import NnxformError, NotExact
from nnxform.interpreter import run
from nnxform.exactness import compare
from nnxform.ir import from_proto, load
from nnxform.passes import PASSES
from nnxform.layered import dense
from nnxform.layered import model_size as network_size
from nnxform.passes.compress import compress, compress_aligned, independent_rows, leo
from nnxform.stable import ACTIVE, INACTIVE, UNSTABLE, LayerStability, classify
from nnxform.vnnlib import read_box
from nnxform.workflows import certify
from test_stable import ACAS, MNIST, MNIST_BOX, mnist_stability, planted


def assert_exact(a, b, box: Box, samples: int = 10000) -> None:
    """Same outputs within 1e-5 (absolute + relative) on 10,000 samples, corners and the centre, in onnxruntime."""
    cmp = compare(a, b, box, samples=samples, seed=3)
    assert cmp.within, f"max |difference| {cmp.max_abs:g}"


@settings(deadline=None, derandomize=True, max_examples=10)
@given(seed=st.integers(0, 2**16), depth=st.integers(1, 3), width=st.integers(6, 14))
def test_planted_neurons_are_removed_and_the_function_kept(seed, depth, width):
    model, box, plan = planted(seed, [3] + [width] * depth + [2], copies=2)
    result = classify(model, box, time_limit=60)
    small, report = compress(model, result)
    assert report.counts["removed_inactive"] >= 2 * depth
    if "merged" not in report.counts:
        assert report.counts["folded_active"] >= 2 * depth  # the scaled copies of an alive unit
    assert network_size(small).neurons <= network_size(model).neurons - 4 * depth
    assert_exact(model, small, box)


def test_a_layer_of_active_neurons_is_merged():
    model, box, _ = planted(5, [3, 4, 2], dead=0, alive=4, copies=0)
    result = classify(model, box)
    assert (result.layers[0].status == ACTIVE).all()
    small, report = compress(model, result)
    assert report.counts["merged"] == 1
    assert [n.op for n in small.nodes] == ["Gemm"]  # the network is affine on the box
    assert_exact(model, small, box)
    aligned = compress_aligned(model, result).aligned  # the layer kept, unmerged, for the unit-by-unit pairing
    assert [n.op for n in aligned.nodes] == ["Gemm", "Relu", "Gemm"]
    assert_exact(model, aligned, box, samples=2000)


def test_a_dead_layer_makes_the_network_constant():
    model, box, _ = planted(6, [3, 5, 4, 2], dead=4, alive=0, copies=0)
    result = classify(model, box)
    assert (result.layers[1].status == INACTIVE).all()
    small, report = compress(model, result)
    assert report.counts["constant"] == 1 and network_size(small).connections == 0
    assert [n.op for n in small.nodes] == ["Gemm"]
    assert_exact(model, small, box)


def test_unstable_and_undecided_neurons_are_kept():
    model, box, _ = planted(8, [3, 10, 10, 2])
    result = classify(model, box, time_limit=0)  # sampling only: nothing stable, everything else undecided
    small, report = compress(model, result)
    assert network_size(small).neurons == network_size(model).neurons
    assert report.counts.get("removed_inactive", 0) == 0
    assert_exact(model, small, box, samples=2000)


def test_independent_rows_rank_and_residual():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(4, 9))
    M = np.vstack([B, rng.normal(size=(3, 4)) @ B, 3 * B[:1]])
    basis, K = independent_rows(M, 1e-9)
    rest = np.setdiff1d(np.arange(8), basis)
    assert basis.size == 4 and np.allclose(K @ M[basis], M[rest], atol=1e-9)
    basis, K = independent_rows(M + 1e-3 * rng.normal(size=M.shape), 1e-9)
    assert basis.size == 8 and K.shape == (0, 8)


def test_leo_folds_dependent_active_rows_into_the_next_layer():
    rng = np.random.default_rng(1)
    W0 = rng.normal(size=(2, 3))
    W = np.vstack([W0, W0[0] + 2 * W0[1], rng.normal(size=(1, 3))])
    layers = [dense(W, np.array([5.0, 6.0, 17.0, 0.1])), dense(rng.normal(size=(2, 4)), rng.normal(size=2))]
    status = np.array([ACTIVE, ACTIVE, ACTIVE, UNSTABLE])
    result = leo(layers, [status], ["r"])
    out = result.layers
    assert not result.constant and result.kept == ["r"] and out[0].W.shape == (3, 3)
    pos = out[0].ids.tolist()  # row 2 = row 0 + 2·row 1: one of the three is folded
    assert len(pos) == 3 and pos[-1] == 3 and set(pos[:2]) < {0, 1, 2}
    x = rng.uniform(-0.1, 0.1, (100, 3))  # a box where the first three rows are active
    ref = np.maximum(x @ W.T + layers[0].b, 0) @ layers[1].W.T + layers[1].b
    got = np.maximum(x @ out[0].W.T + out[0].b, 0) @ out[1].W.T + out[1].b
    assert np.allclose(ref, got, atol=1e-12)


def test_mnist_256x2_compresses_on_the_vnncomp_box():
    model, box, result = mnist_stability()
    small, report = compress(model, result)
    before, after = network_size(model), network_size(small)
    kept = result.counts()["unstable"] + result.counts()["undecided"] + result.counts()["active"]
    assert after.neurons <= kept and after.neurons < 40
    assert after.connections < before.connections / 20
    assert [n.op for n in small.nodes] == ["Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    assert small.input_shape == model.input_shape and small.output_names == model.output_names
    assert_exact(model, small, box)
    aligned = compress_aligned(model, result).aligned  # dead units where neurons were removed: same widths
    assert network_size(aligned).neurons == 512 and network_size(aligned).connections == after.connections
    assert_exact(small, aligned, box, samples=2000)


@pytest.mark.parametrize("prop", ["acasxu_prop_1.vnnlib", "acasxu_prop_3.vnnlib"])
def test_acas_xu_compresses_on_its_properties(prop):
    model, box = load(ACAS), read_box(MODELS / "vnnlib" / prop)
    result = classify(model, box, time_limit=2)
    small, _ = compress(model, result)
    assert network_size(small).neurons < network_size(model).neurons
    assert_exact(model, small, box)


def test_a_relu_on_the_output_layer():
    """Kept as the last node when its neurons are unstable; folded into the last Gemm when some are stable."""
    model = load(MODELS / "dnnv_mnist_relu_3_50.onnx")
    wide = Box.default(784)
    small, _ = compress(model, classify(model, wide, time_limit=10))
    assert small.nodes[-1].op == "Relu" and network_size(small) == network_size(model)
    assert_exact(model, small, wide, samples=2000)
    row = np.loadtxt(MODELS / "data" / "mnist_test_100.csv", delimiter=",", max_rows=1)[1:] / 255.0
    box = Box(np.clip(row - 0.02, 0, 1), np.clip(row + 0.02, 0, 1))
    result = classify(model, box, time_limit=3)
    small, _ = compress(model, result)
    assert network_size(small).neurons < 110
    assert_exact(model, small, box)


def convnet_with_dense_tail(seed: int):
    """Conv → Relu → Flatten → Gemm → Relu → Gemm with two dead dense units."""
    rng = np.random.default_rng(seed)
    w = {"K": rng.normal(0, 0.5, (2, 1, 3, 3)), "k": rng.normal(0, 0.2, 2),
         "W": rng.normal(0, 0.3, (6, 32)), "b": rng.normal(0, 0.2, 6), "V": rng.normal(size=(2, 6)), "v": np.zeros(2)}
    w["b"][:2] = -100.0
    nodes = [helper.make_node("Conv", ["x", "K", "k"], ["c"], pads=[0, 0, 0, 0], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="conv_relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W", "b"], ["z"], transB=1, name="fc"),
             helper.make_node("Relu", ["z"], ["h"], name="fc_relu"),
             helper.make_node("Gemm", ["h", "V", "v"], ["y"], transB=1, name="out")]
    return from_proto(make_model(nodes, [1, 1, 6, 6], weights=w))


def test_conv_layers_are_left_and_the_dense_tail_compressed():
    model = convnet_with_dense_tail(0)
    box = Box(np.full(36, -0.5), np.full(36, 0.5))
    result = classify(model, box, time_limit=30)
    small, report = compress(model, result)
    assert [n.op for n in small.nodes][:2] == ["Conv", "Relu"]
    assert any("conv_relu" in line and "left as they are" in line for line in report.changes)
    assert small.constants[small.nodes[3].inputs[1]].shape[0] <= 4  # the two dead units are gone
    assert_exact(model, small, box)


def test_a_network_ending_in_a_convolution_is_refused():
    model = load(MODELS / "marabou_layerzoo_batchnorm.onnx")
    with pytest.raises(NnxformError, match="no dense .Gemm.MatMul. layer"):
        compress(model, classify(model, Box.default(model.input_size)))


def test_a_gemm_on_several_rows_is_not_a_dense_tail():
    """Conv → Relu → Flatten(axis=2) → Gemm: the Gemm multiplies a 4×16 tensor, its weights shared by the rows as a
    convolution's are; compress refuses in one line (it used to write a Gemm on 64 inputs and fail inside)."""
    from test_prune_cnn_saliency import flatten_axis_two

    model = flatten_axis_two()
    box = Box(np.full(model.input_size, -0.5), np.full(model.input_size, 0.5))
    with pytest.raises(NnxformError, match="on one row of values"):
        compress(model, classify(model, box, time_limit=10))


def test_a_classification_of_another_model_is_refused():
    model, box, _ = planted(2, [3, 6, 2])
    other, _, _ = planted(2, [3, 7, 2])
    with pytest.raises(NnxformError, match="6 neurons"):
        compress(model, classify(other, box))
    assert "compress" in PASSES


# --- the command -----------------------------------------------------------------------------


def _cli(*args):
    return CliRunner().invoke(app, ["compress", *map(str, args)])


def test_cli_writes_a_checked_smaller_network(tmp_path):
    out, doc_path = tmp_path / "small.onnx", tmp_path / "c.json"
    r = _cli(MNIST, "--vnnlib", MNIST_BOX, "-o", out, "--json", doc_path)
    assert r.exit_code == 0, r.output
    for word in ("stably inactive removed", "neurons", "connections", "parameters", "checked on"):
        assert word in r.output
    doc = json.loads(doc_path.read_text())
    for side in ("before", "after"):
        assert set(doc[side]) == {"neurons", "connections", "parameters"}
    assert doc["before"]["neurons"] == 512 and doc["after"]["neurons"] < 40
    assert doc["check"]["samples"] >= 10000 and doc["check"]["max_abs"] <= 1e-5
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["nnxform.pass"] == "compress" and json.loads(meta["nnxform.parameters"])["stable"]["undecided"] == 0
    assert_exact(load(MNIST), load(out), read_box(MNIST_BOX))


def test_cli_certify_prints_a_sound_bound(tmp_path):
    model, box, _ = planted(4, [3, 8, 8, 2])
    src = tmp_path / "p.onnx"
    model.save(src)
    lo, hi = tmp_path / "lo.npy", tmp_path / "hi.npy"
    np.save(lo, box.lower)
    np.save(hi, box.upper)
    r = _cli(src, "--lower", lo, "--upper", hi, "-o", tmp_path / "s.onnx", "--certify", "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    cert = doc["certificate"]
    assert cert is not None and cert["delta_max"] >= 0 and cert["delta_max"] < 1e-3


def test_cli_certifies_mnist_on_the_vnncomp_box_to_the_float_margin(tmp_path):
    r = _cli(MNIST, "--vnnlib", MNIST_BOX, "-o", tmp_path / "s.onnx", "--samples", "1000", "--certify")
    assert r.exit_code == 0, r.output
    assert "from the proven signs" in r.output and "worst-case float32 rounding" in r.output
    r = _cli(MNIST, "--vnnlib", MNIST_BOX, "-o", tmp_path / "s.onnx", "--samples", "1000", "--certify", "--json", "-")
    cert = json.loads(r.output)["certificate"]
    assert cert["proven_signs"] and cert["analysis"] == "difference"
    assert cert["real_delta_max"] < 1e-4  # in real arithmetic the same function (without the signs: 0.096)
    assert cert["found"] <= cert["delta_max"] <= cert["real_delta_max"] + cert["float_margin"] + 1e-12


def test_certify_bounds_a_wrong_compression_soundly():
    """The certificate pairs the original with the result, so a wrong result shows: the bound covers every sample."""
    model, box, result = mnist_stability()
    wrong = dataclasses.replace(result, layers=[LayerStability(l.node, np.where(l.status == UNSTABLE, INACTIVE, l.status))
                                                for l in result.layers])  # unstable neurons treated as dead
    compression = compress_aligned(model, wrong)
    cert = certify(model, compression, result, box, 1e-5, time_limit=5)
    xs = box.points(2000, np.random.default_rng(0))
    diff = np.abs(run(model, xs) - run(compression.model, xs)).max()
    assert diff > 1e-2 and cert.delta_max >= diff and cert.found <= cert.delta_max


def test_signs_that_do_not_fit_the_first_network_are_refused():
    model, box, result = mnist_stability()
    with pytest.raises(NnxformError, match="do not fit"):
        Pair(model, model).bound(box, signs_a=[layer.status for layer in result.layers][:1])


def test_cli_refuses_a_wrong_result_and_writes_nothing(tmp_path, monkeypatch):
    import nnxform.passes.compress as pc

    real = pc.leo

    def wrong(layers, statuses, names, *args, **kwargs):  # treat unstable neurons as dead
        return real(layers, [np.where(s == UNSTABLE, INACTIVE, s) for s in statuses], names, *args, **kwargs)

    monkeypatch.setattr(pc, "leo", wrong)
    out = tmp_path / "bad.onnx"
    r = _cli(MNIST, "--vnnlib", MNIST_BOX, "-o", out, "--samples", "1000")
    assert isinstance(r.exception, NotExact) and "nothing written" in str(r.exception)
    assert not out.exists()


@functools.cache
def bn_cnn_stability():
    """bn_cnn.onnx classified on its default box (seeded, within its time limit): what the two tests below read."""
    model = load(MODELS / "bn_cnn.onnx")
    return model, classify(model, Box.default(model.input_size), time_limit=60, seed=0)


def test_dead_conv_channels_are_removed_and_the_function_kept_on_the_box():
    """A channel stably inactive at every position goes from its Conv and from the layer reading it (here the Gemm
    after the Flatten); stably active positions stay; the result and its aligned form equal the original on the box."""
    model, result = bn_cnn_stability()
    box = Box.default(model.input_size)
    spatial = [layer for layer in result.layers if layer.channels]
    dead = [int((layer.channel_status() == INACTIVE).sum()) for layer in spatial]
    assert sum(dead) > 0
    c = compress_aligned(model, result)
    assert c.counts["removed_channels"] == sum(min(d, layer.channels - 1) for d, layer in zip(dead, spatial))

    def channels(m):
        return sum(m.constants[n.inputs[1]].shape[0] for n in m.nodes if n.op == "Conv")

    assert channels(c.model) == channels(PASSES["canon"](model)[0]) - c.counts["removed_channels"]
    assert_exact(model, c.model, box)
    assert_exact(c.model, c.aligned, box, samples=2000)
    assert network_size(c.model).parameters < network_size(model).parameters


def test_stable_reports_channels_of_convolutional_relus(tmp_path):
    model, result = bn_cnn_stability()
    doc = result.to_json()
    spatial = [entry for entry in doc["layers"] if "channels" in entry]
    assert [entry["channels"] for entry in spatial] == [4, 4]
    for entry, layer in zip(spatial, [layer for layer in result.layers if layer.channels]):
        per = layer.status.reshape(layer.channels, -1)
        assert entry["inactive_channels"] == np.flatnonzero((per == INACTIVE).all(axis=1)).tolist()
    again = type(result).from_json(json.loads(json.dumps(doc)), model, Box.default(model.input_size))
    assert [layer.channels for layer in again.layers] == [layer.channels for layer in result.layers]
