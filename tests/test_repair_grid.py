"""Repair and training that keep the compression (issue 23): a quantisation grid is detected (float values on it or
weight-only QDQ), training stays on it with straight-through gradients, the written network is on the same grid in
the same form and as small, zeros stay zeros, and the bound reported is recomputed on the network as written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import outcome, run_cli, trained_digits
from nnxform.cli import main
from nnxform.discrepancy import Pair
from nnxform.grid import detect, file_form, qdq_model
from nnxform.ir import Model, from_proto, load
from nnxform.passes.quantize import quantize
from nnxform.errors import NnxformError
from nnxform.repair import RepairOptions, boxes_around, refit, repair, rescale
from nnxform.runtime import OnnxRunner
from nnxform.training import TrainOptions, train, trainable

FAST = dict(rounds=2, epochs=2, samples=200)


@pytest.fixture(scope="module")
def digits() -> tuple:
    """300 digits training points, 40 test points and a 64-32-10 network trained on them."""
    return trained_digits()


def _weights(model: Model) -> list[np.ndarray]:
    """The weight matrices of a model's Gemm nodes, in order."""
    return [model.constants[n.inputs[1]] for n in model.nodes if n.op == "Gemm"]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_the_grid_quantize_writes_is_detected_with_its_steps(digits, bits, per_channel):
    original, *_ = digits
    compressed, report = quantize(original, bits=bits, per_channel=per_channel)
    net, _ = trainable(compressed)
    grid = detect(net)
    assert grid is not None and not grid.off_grid and len(grid.layers) == len(report.layers)
    for g, layer in zip(grid.layers.values(), report.layers):
        assert g.bits == bits and (g.axis is not None) == per_channel
        assert np.array_equal(g.step.ravel().astype(np.float64), layer.scales)
    assert grid.holds(net)
    assert detect(trainable(original)[0]) is None


def test_training_on_the_grid_stays_on_it_keeps_zeros_and_learns(digits):
    original, train_set, _ = digits
    compressed, _ = quantize(original, bits=2, per_channel=True)
    net, _ = trainable(compressed)
    grid = detect(net)
    options = TrainOptions(epochs=12, lr=1e-2, keep_zeros=True, seed=0)
    trained, result = train(net, train_set.x, train_set.y, options=options, grid=grid)
    assert grid.holds(trained) and result.latent is not None and not grid.holds(result.latent)
    correct = [np.mean(n.forward(train_set.x).reshape(300, -1).argmax(axis=1) == train_set.y) for n in (net, trained)]
    assert correct[1] > correct[0] + 0.05
    for before, after in zip(net.layers, trained.layers):
        if hasattr(before, "W"):
            assert after.W.shape == before.W.shape and np.all(after.W[before.W == 0] == 0)
    assert any(not np.array_equal(a.W, b.W) for a, b in zip(net.layers, trained.layers) if hasattr(a, "W"))


def test_repair_on_the_grid_writes_the_same_grid_and_recomputes_the_bound(digits):
    original, train_set, test_set = digits
    compressed, _ = quantize(original, bits=4, per_channel=True)
    boxes = boxes_around(test_set.x[:2], 0.02, (0.0, 1.0))
    result = repair(original, compressed, boxes, RepairOptions(rounds=2, epochs=6, samples=200),
                    train_points=train_set.x)
    assert result.grid is not None and result.options.keep_grid
    written = from_proto(onnx.load_from_string(result.data))
    grid = detect(trainable(written)[0])
    assert grid is not None and grid.kinds == "int4 per channel" and result.grid.holds(trainable(written)[0])
    assert result.sizes["repaired"]["kb"] == result.sizes["compressed"]["kb"]
    assert result.final.delta_max < result.initial.delta_max
    bound = [Pair(original, written).bound(box, "symbolic") for box in boxes]
    assert [float(np.maximum(np.abs(b.lower), np.abs(b.upper)).max()) for b in bound] == result.final.per_box.tolist()


def _half_pruned(model):
    """``model`` with each weight tensor's smaller half (by magnitude) set to zero."""
    pruned = model.copy()
    for w in _weights(pruned):
        w[np.abs(w) < np.median(np.abs(w))] = 0.0
    return pruned


def test_a_pruned_network_keeps_its_zeros_and_shape(digits):
    original, train_set, test_set = digits
    pruned = _half_pruned(original)
    boxes = boxes_around(test_set.x[:2], 0.02, (0.0, 1.0))
    result = repair(original, pruned, boxes, RepairOptions(**FAST), train_points=train_set.x)
    assert result.grid is None and result.options.keep_zeros and result.kept > 0
    for before, after in zip(_weights(pruned), _weights(result.model)):
        assert after.shape == before.shape and np.all(after[before == 0] == 0)
    assert result.sizes["repaired"]["nonzero_weights"] <= result.sizes["compressed"]["nonzero_weights"]


def _succeeds(monkeypatch, capsys, *args: object) -> str:
    """Run a command that succeeds in this process: what it printed on stdout (nothing on stderr)."""
    monkeypatch.setattr(sys, "argv", ["nnxform", *map(str, args)])
    main()
    printed = capsys.readouterr()
    assert printed.err == ""
    return printed.out


def _qdq_file(model: Model, path: Path) -> None:
    """``model`` (on a grid) written as a weight-only QDQ file."""
    net, _ = trainable(model)
    path.write_bytes(qdq_model(net.to_model().to_onnx(), net, detect(net, "qdq")).SerializeToString())


def test_the_cli_keeps_a_qdq_network_in_qdq_form(digits, tmp_path, monkeypatch, capsys):
    original, train_set, test_set = digits
    f1, f2, out = tmp_path / "f1.onnx", tmp_path / "f2.onnx", tmp_path / "r.onnx"
    original.save(f1)
    compressed, _ = quantize(original, bits=4, per_channel=True)
    _qdq_file(compressed, f2)
    assert file_form(f2) == "qdq"
    xs = test_set.x[:20]
    assert np.array_equal(OnnxRunner(load(f2))(xs), OnnxRunner(compressed)(xs))  # the QDQ file is the same network
    doc = json.loads(_succeeds(monkeypatch, capsys, "repair", f1, f2, "-o", out, "--center", "0.5", "--eps", "0.05",
                               "--rounds", "2", "--epochs", "1", "--samples", "200", "--scales", "fixed", "--json",
                               "-"))
    assert doc["grid"]["form"] == "qdq" and doc["grid"]["scales"] == "fixed"
    given = detect(trainable(compressed)[0]).to_json()["layers"]
    assert [g["step"] for g in doc["grid"]["layers"]] == [g["step"] for g in given]  # fixed: the steps it came with
    assert doc["sizes"]["repaired"]["kb"] == doc["sizes"]["compressed"]["kb"]
    proto = onnx.load(str(out))
    dequantize = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert len(dequantize) == 2 and all(inits[n.input[0]].dtype == np.int8 for n in dequantize)
    assert all(np.abs(inits[n.input[0]]).max() <= 7 for n in dequantize)
    written = load(out)
    box = boxes_around(np.full((1, 64), 0.5), 0.05)[0]
    assert Pair(load(f1), written).bound(box, "symbolic").delta_max == doc["final_bound"]


def test_train_keeps_the_grid_and_keep_grid_without_one_is_refused(digits, tmp_path, monkeypatch, capsys):
    original, train_set, _ = digits
    data, f, q, out = tmp_path / "d.csv", tmp_path / "f.onnx", tmp_path / "q.onnx", tmp_path / "t.onnx"
    np.savetxt(data, np.column_stack([train_set.y, 16 * train_set.x]), delimiter=",", fmt="%g")
    original.save(f)
    compressed, _ = quantize(original, bits=2, per_channel=True)
    compressed.save(q)
    stdout = _succeeds(monkeypatch, capsys, "train", q, "--data", data, "--scale", "16", "--epochs", "2", "--lr", "1e-2",
                       "-o", out)
    assert "int2 per channel on 2 layer(s)" in stdout
    net, _ = trainable(load(out))
    assert detect(net).kinds == "int2 per channel" and detect(trainable(compressed)[0]).holds(net)
    for command in (("train", f, "--data", data, "--scale", "16", "--keep-grid"),
                    ("repair", f, f, "--center", "0.5", "--eps", "0.05", "--keep-grid")):
        out.unlink(missing_ok=True)
        code, _, err = outcome(run_cli(*command, "-o", out))
        assert code == 2 and not out.exists() and len(err.strip().splitlines()) == 1 and "grid" in err


def test_the_refit_keeps_zeros_and_shapes_and_moves_the_pruned_network_toward_the_original(digits):
    original, train_set, test_set = digits
    pruned = _half_pruned(original)
    boxes = boxes_around(test_set.x[:3], 0.02, (0.0, 1.0))
    xs = np.vstack([b.lower + (b.upper - b.lower) * np.random.default_rng(i).random((100, 64))
                    for i, b in enumerate(boxes)])
    net, reference = trainable(pruned)[0], trainable(original)[0]
    fitted, loss = refit(reference, net, xs, keep_zeros=True)
    dense = [k for k, layer in enumerate(net.layers) if hasattr(layer, "W")]
    for k in dense:
        before, after = net.layers[k].W, fitted.layers[k].W
        assert after.shape == before.shape and np.all(after[before == 0] == 0)
    assert not np.array_equal(fitted.layers[dense[0]].W, net.layers[dense[0]].W)
    assert not np.array_equal(fitted.layers[dense[-1]].W, net.layers[dense[-1]].W)
    assert all(np.array_equal(fitted.layers[k].W, net.layers[k].W) for k in dense[1:-1])  # the middle is retrained
    y1 = reference.forward(xs).reshape(len(xs), -1)
    error = [float(np.mean((n.forward(xs).reshape(len(xs), -1) - y1) ** 2)) for n in (net, fitted)]
    assert loss == pytest.approx(error[1]) and error[1] < 0.5 * error[0]
    free, _ = refit(reference, net, xs, keep_zeros=False)
    assert np.count_nonzero(free.layers[dense[0]].W) > np.count_nonzero(net.layers[dense[0]].W)


def test_repair_refits_round_1_off_a_grid_only_and_never_writes_a_worse_network(digits):
    original, train_set, test_set = digits
    pruned = _half_pruned(original)
    boxes = boxes_around(test_set.x[:2], 0.02, (0.0, 1.0))
    runs = {refit_on: repair(original, pruned, boxes, RepairOptions(rounds=1, epochs=1, samples=200, refit=refit_on))
            for refit_on in (True, False)}
    assert runs[True].options.refit and runs[True].rounds[1].bound != runs[False].rounds[1].bound
    for r in runs.values():
        assert r.final.delta_max <= r.initial.delta_max and r.final.delta_max == r.rounds[r.kept].bound
        for before, after in zip(_weights(pruned), _weights(r.model)):
            assert np.all(after[before == 0] == 0)
    compressed, _ = quantize(original, bits=4, per_channel=True)
    on_grid = repair(original, compressed, boxes, RepairOptions(rounds=1, epochs=1, samples=200))
    assert any("no refit on a grid" in note for note in on_grid.notes)
    assert on_grid.grid is not None and on_grid.grid.holds(trainable(on_grid.model)[0])


@pytest.mark.parametrize("rounding", ["nearest", "gptq"])
def test_searched_scales_keep_bits_layout_and_size_and_change_the_layers_less_than_the_given_grid(digits, rounding):
    original, train_set, _ = digits
    for per_channel in (False, True):
        compressed, _ = quantize(original, bits=2, per_channel=per_channel)
        net, reference = trainable(compressed)[0], trainable(original)[0]
        grid = detect(net)
        xs = train_set.x[:200]
        on_grid, latent, found = rescale(reference, net, grid, xs, False, rounding)
        assert found.scales == "searched" and found.holds(on_grid) and found.kinds == grid.kinds
        assert found.storage_bytes(on_grid) == grid.storage_bytes(net)
        assert any(not np.array_equal(found.layers[k].step, g.step) for k, g in grid.layers.items())
        values = reference.forward(xs, keep=True)
        for n, (k, g) in enumerate(grid.layers.items()):
            inputs, wanted = values[k].reshape(len(xs), -1), reference.layers[k].W
            # retraining starts from latent weights that round to the network: the original's, or GPTQ's rounding
            assert np.array_equal(latent.layers[k].W, wanted if rounding == "nearest" else on_grid.layers[k].W)
            assert np.array_equal(found.layers[k].project(latent.layers[k].W), on_grid.layers[k].W)
            error = [float(np.sum((inputs @ (wanted - W).T) ** 2)) for W in (net.layers[k].W, on_grid.layers[k].W)]
            if rounding == "nearest":  # the given step is one of those searched
                assert error[1] <= error[0] * (1 + 1e-9) and np.array_equal(on_grid.layers[k].b, net.layers[k].b)
            elif n == 0:  # GPTQ on the first layer, whose inputs both networks share
                assert error[1] < 0.5 * error[0]
        y1 = reference.forward(xs).reshape(len(xs), -1)
        assert np.mean((on_grid.forward(xs).reshape(len(xs), -1) - y1) ** 2) < np.mean(
            (net.forward(xs).reshape(len(xs), -1) - y1) ** 2)


def test_repair_with_searched_scales_writes_the_grid_it_kept_and_its_bound(digits, tmp_path, monkeypatch, capsys):
    original, train_set, test_set = digits
    compressed, _ = quantize(original, bits=2, per_channel=True)
    boxes = boxes_around(test_set.x[:2], 0.02, (0.0, 1.0))
    result = repair(original, compressed, boxes, RepairOptions(rounds=2, epochs=2, samples=200, scales="searched"),
                    train_points=train_set.x)
    assert result.kept > 0 and result.grid.scales == "searched" and result.to_json()["grid"]["scales"] == "searched"
    assert any(note.startswith("round 1 searched the grid's steps") for note in result.notes)
    written = trainable(from_proto(onnx.load_from_string(result.data)))[0]
    assert result.grid.holds(written) and detect(written).kinds == "int2 per channel"
    assert result.sizes["repaired"]["kb"] == result.sizes["compressed"]["kb"]
    assert result.final.delta_max == result.rounds[result.kept].bound <= result.initial.delta_max
    f1, f2, out = tmp_path / "f1.onnx", tmp_path / "f2.onnx", tmp_path / "r.onnx"
    original.save(f1)
    _qdq_file(compressed, f2)
    stdout = _succeeds(monkeypatch, capsys, "repair", f1, f2, "-o", out, "--center", "0.5", "--eps", "0.05",
                       "--rounds", "1", "--epochs", "1", "--samples", "200", "--scales", "searched")
    assert "scales searched in round 1" in stdout and file_form(out) == "qdq"
    assert detect(trainable(load(out))[0], "qdq").kinds == "int2 per channel"
    with pytest.raises(NnxformError, match="scales must be one of fixed, searched"):
        RepairOptions(scales="learned").check()
