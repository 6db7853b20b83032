"""``repair`` (paper 000, Algorithm 1): every bound it reports contains the sampled difference, it reduces the bound
of a quantised network, the same seed gives the same network, and bad input ends in one line, exit 2, no file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import outcome, run_cli, trained_digits
from nnxform.cli import main
from nnxform.errors import NnxformError
from nnxform.ir import Model
from nnxform.passes.quantize import quantize
from nnxform.repair import RepairOptions, RepairResult, boxes_around, repair
from nnxform.runtime import OnnxRunner
from nnxform.training import init_network

FAST = dict(rounds=3, epochs=2, samples=200, keep_grid=False)  # float repair; on a grid: test_repair_grid.py


@pytest.fixture(scope="module")
def digits() -> tuple:
    """300 digits training points, 20 test points, a 64-32-10 network trained on them and its 3-bit copy."""
    original, train_set, test_set = trained_digits()
    compressed, _ = quantize(original, bits=3)
    return original, compressed, train_set, test_set


def _sampled_max(a: Model, b: Model, boxes: list, n: int = 2000) -> np.ndarray:
    """The largest |f_a − f_b| over n uniform points of each box, in onnxruntime, per box."""
    rng = np.random.default_rng(123)
    ra, rb = OnnxRunner(a), OnnxRunner(b)
    out = []
    for box in boxes:
        xs = np.vstack([box.sample(n, rng), box.lower[None], box.upper[None]])
        out.append(float(np.abs(ra(xs).astype(np.float64) - rb(xs).astype(np.float64)).max()))
    return np.array(out)


def _repair(digits: tuple, **options: object) -> tuple[RepairResult, list]:
    original, compressed, train_set, test_set = digits
    boxes = boxes_around(test_set.x[:3], 0.02, (0.0, 1.0))
    result = repair(original, compressed, boxes, RepairOptions(**{**FAST, **options}), train_points=train_set.x,
                    test=test_set)
    return result, boxes


@pytest.mark.parametrize("update", ["pointwise", "paper"])
def test_no_reported_bound_is_exceeded_by_sampling(digits, update):
    original, compressed, *_ = digits
    result, boxes = _repair(digits, update=update, alpha=2.0)
    for record in result.rounds:
        assert record.sampled_max <= record.bound
    assert np.all(_sampled_max(original, compressed, boxes) <= result.initial.per_box)
    assert np.all(_sampled_max(original, result.model, boxes) <= result.final.per_box)
    assert result.final.delta_max == result.final.per_box.max() and result.final.sampled_max <= result.final.delta_max


def test_repair_reduces_the_bound_and_keeps_the_accuracy(digits):
    result, _ = _repair(digits, alpha=2.0)
    assert result.final.delta_max < 0.6 * result.initial.delta_max
    assert result.final.mean < 0.6 * result.initial.mean
    assert result.accuracy["repaired"] >= result.accuracy["compressed"]
    assert [r.round for r in result.rounds] == [0, 1, 2, 3]
    doc = result.to_json()
    assert doc["initial_bound"] == result.initial.delta_max and doc["final_bound"] == result.final.delta_max
    assert {"bound", "sampled_max", "accuracy", "seconds"} <= set(doc["rounds"][1])


def test_the_target_ratio_stops_the_rounds(digits):
    result, _ = _repair(digits, alpha=2.0, rounds=10, target_ratio=0.8)
    assert result.reached and len(result.rounds) < 11
    assert result.rounds[-1].bound <= 0.8 * result.initial.delta_max == result.target


def test_the_same_seed_gives_the_same_network(digits):
    a, _ = _repair(digits, rounds=2, seed=4)
    b, _ = _repair(digits, rounds=2, seed=4)
    assert a.model.to_bytes() == b.model.to_bytes()
    assert [r.bound for r in a.rounds] == [r.bound for r in b.rounds]


# --- the command -----------------------------------------------------------------------------------




@pytest.fixture(scope="module")
def files(digits, tmp_path_factory) -> dict[str, Path]:
    original, compressed, train_set, test_set = digits
    folder = tmp_path_factory.mktemp("repair")
    paths = {"original": folder / "f1.onnx", "compressed": folder / "f2.onnx", "points": folder / "points.csv",
             "test": folder / "test.csv", "wide": folder / "wide.onnx", "narrow": folder / "narrow.onnx",
             "nan": folder / "nan.csv"}
    original.save(paths["original"])
    compressed.save(paths["compressed"])
    rows = np.column_stack([test_set.y[:2], 16 * test_set.x[:2]])
    np.savetxt(paths["points"], rows, delimiter=",", fmt="%g")
    np.savetxt(paths["test"], np.column_stack([test_set.y, 16 * test_set.x]), delimiter=",", fmt="%g")
    rows[1, 5] = np.nan
    np.savetxt(paths["nan"], rows, delimiter=",", fmt="%g")
    init_network([64, 16, 12], seed=0).to_model().save(paths["wide"])
    init_network([32, 16, 10], seed=0).to_model().save(paths["narrow"])
    return paths


def test_cli_writes_the_network_the_report_and_the_plot(files, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out, plot = tmp_path / "r.onnx", tmp_path / "r.png"
    monkeypatch.setattr(sys, "argv", ["nnxform", "repair", str(files["original"]), str(files["compressed"]), "-o",
                                      str(out), "--data", str(files["points"]), "--eps", "0.02", "--clip-lower", "0",
                                      "--clip-upper", "1", "--scale", "16", "--test-data", str(files["test"]),
                                      "--rounds", "2", "--samples", "200", "--json", "-", "--plot", str(plot)])
    main()
    doc = json.loads(capsys.readouterr().out)
    assert doc["boxes"] == 2 and len(doc["rounds"]) == 3 and doc["final_bound"] < doc["initial_bound"]
    assert all(r["sampled_max"] <= r["bound"] and r["accuracy"] is not None for r in doc["rounds"])
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["nnxform.pass"] == "repair"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", [
    ("wide", "--data", "points", "--eps", "0.02", "--scale", "16"),  # 12 outputs against 10
    ("narrow", "--lower", "0", "--upper", "1"),  # 32 inputs against 64
    ("compressed", "--data", "nan", "--eps", "0.02", "--scale", "16"),  # NaN in the data
    ("compressed", "--data", "points", "--scale", "16"),  # no --eps
    ("compressed",),  # no domain
    ("compressed", "--lower", "0", "--upper", "1", "--lr", "0"),
    ("compressed", "--lower", "0", "--upper", "1", "--epochs", "0"),
    ("compressed", "--lower", "0", "--upper", "1", "--rounds", "-1"),
    ("compressed", "--lower", "0", "--upper", "1", "--alpha", "0.5"),
    ("compressed", "--lower", "0", "--upper", "1", "--update", "sideways"),
    ("compressed", "--lower", "0", "--upper", "1", "--target", "0.1", "--target-ratio", "0.5"),
])
def test_bad_input_exits_2_and_writes_nothing(files, tmp_path, case):
    out = tmp_path / "r.onnx"
    args = [files.get(a, a) for a in case]
    code, _, err = outcome(run_cli("repair", files["original"], args[0], "-o", out, *args[1:]))
    assert code == 2 and not out.exists(), err
    assert len(err.strip().splitlines()) == 1


def test_prove_ends_the_repair_where_equiv_proves_the_target(digits):
    """On a box where the symbolic bound (1.23) misses the target but the exact difference (1.15) meets it, ``prove``
    lets equiv's search prove it in round 0: no training, the target reached; without a target it is refused."""
    original, compressed, train_set, test_set = digits
    box = boxes_around(test_set.x[:1], 0.02, (0.0, 1.0))
    symbolic = repair(original, compressed, box, RepairOptions(**{**FAST, "rounds": 1})).initial.delta_max
    target = 1.19
    assert symbolic > target  # (the premise: the bound of --method alone misses it)
    proved = repair(original, compressed, box, RepairOptions(**{**FAST, "rounds": 1, "target": target, "prove": 30.0}))
    assert proved.reached and [r.round for r in proved.rounds] == [0]
    assert proved.initial.delta_max < target < symbolic and proved.final.delta_max < target
    with pytest.raises(NnxformError, match="needs a target"):
        RepairOptions(prove=1.0).check()
