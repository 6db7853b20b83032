"""``repair`` (issue 19, items 8 and 9): data files whose labels are no class of the networks are refused as
``train`` and ``evaluate`` refuse them, and the network written is the round with the smallest sound bound (the
compressed network unchanged when no round improves on it), its bound recomputed on it and never above the start."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import outcome, run_cli
from nnxform.cli import main
from nnxform.discrepancy import Pair
from nnxform.domain import Box
from nnxform.ir import Model, load
from nnxform.runtime import OnnxRunner

DATA = Path(__file__).resolve().parent / "data" / "round3" / "repair"
# tr.onnx: 64 inputs, 10 outputs; label_oor.csv has label 10 and bad2.npz label 99 (copied from the repro).
# mlp_t0.onnx and its compressed copy mlp_pn.onnx: 64 inputs, 10 outputs.
BOX = ("--center", "0.5", "--eps", "0.05")
LOWER, UPPER = np.full(64, 0.45), np.full(64, 0.55)


def _sound_bound(original: Model, written: Model) -> float:
    """The sound ``‖f1 − f2‖∞`` over the issue's box, as repair computes it (symbolic difference analysis)."""
    found = Pair(original, written).bound(Box(LOWER, UPPER), "symbolic")
    return float(np.maximum(np.abs(found.lower), np.abs(found.upper)).max())


# --- item 8: labels out of range ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option, data, label", [
    ("--data", "label_oor.csv", 10), ("--data", "bad2.npz", 99),
    ("--train-data", "label_oor.csv", 10), ("--test-data", "bad2.npz", 99)])
def test_labels_that_are_no_class_are_refused(option, data, label, tmp_path):
    out = tmp_path / "r.onnx"
    domain = ("--eps", "0.01") if option == "--data" else BOX
    code, stdout, err = outcome(run_cli("repair", DATA / "tr.onnx", DATA / "tr.onnx", option,
                                 DATA / data, *domain, "-o", out, "--rounds", "1", "--epochs", "1"))
    assert code == 2 and stdout == "" and not out.exists()
    assert err.strip().splitlines() == [f"nnxform: error: {DATA / data}: label {label} but the network has 10 outputs"]


@pytest.mark.parametrize("command", [("train", "-o", "t.onnx", "--epochs", "1"), ("evaluate",)])
def test_train_and_evaluate_refuse_the_same_file_with_the_same_line(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = outcome(run_cli(command[0], DATA / "tr.onnx", "--data", DATA / "label_oor.csv",
                            *command[1:]))
    assert code == 2
    assert err.strip() == f"nnxform: error: {DATA / 'label_oor.csv'}: label 10 but the network has 10 outputs"


# --- item 9: the best round is written, never a worse network --------------------------------------------------------


def _repair(tmp_path: Path, monkeypatch, capsys, rounds: int, *extra: str) -> tuple[dict, str, Path]:
    """The issue's command with ``rounds`` rounds, every one retraining (``--no-refit``: the issue's rounds): the JSON
    report, what was printed and the written network."""
    out, report = tmp_path / "rep.onnx", tmp_path / "rep.json"
    monkeypatch.setattr(sys, "argv", ["nnxform", "repair", str(DATA / "mlp_t0.onnx"), str(DATA / "mlp_pn.onnx"), *BOX,
                                      "-o", str(out), "--rounds", str(rounds), "--epochs", "1", "--samples", "300",
                                      "--seed", "1", "--no-refit", "--json", str(report), *extra])
    main()
    printed = capsys.readouterr()
    assert printed.err == ""
    return json.loads(report.read_text()), printed.out, out


def test_no_round_improves_and_the_given_network_is_written_unchanged(tmp_path, monkeypatch, capsys):
    doc, stdout, out = _repair(tmp_path, monkeypatch, capsys, 2)
    bounds = [r["bound"] for r in doc["rounds"]]
    assert len(bounds) == 3 and min(bounds[1:]) > bounds[0]  # the case: both rounds are worse
    assert doc["kept_round"] == 0 and doc["final_bound"] == doc["initial_bound"] and doc["reduction"] == 1.0
    original, written = load(DATA / "mlp_t0.onnx"), load(out)
    assert _sound_bound(original, written) == doc["final_bound"] <= doc["initial_bound"]
    given = onnx.load(str(DATA / "mlp_pn.onnx"))
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == [n.op_type for n in given.graph.node]
    xs = np.random.default_rng(0).uniform(LOWER, UPPER, (50, 64))
    assert np.array_equal(OnnxRunner(written)(xs), OnnxRunner(load(DATA / "mlp_pn.onnx"))(xs))
    assert "no round improved the bound; the given network is written unchanged" in stdout
    assert "x smaller" not in stdout
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["nnxform.parameters"])["kept_round"] == 0


def test_the_round_with_the_smallest_bound_is_written_not_the_last(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "rep.png"
    doc, stdout, out = _repair(tmp_path, monkeypatch, capsys, 4, "--plot", str(plot))
    bounds = [r["bound"] for r in doc["rounds"]]
    kept = doc["kept_round"]
    assert kept == int(np.argmin(bounds)) and 0 < kept < len(bounds) - 1  # a later round was worse
    assert _sound_bound(load(DATA / "mlp_t0.onnx"), load(out)) == doc["final_bound"] == bounds[kept]
    assert doc["final_bound"] < doc["initial_bound"] and doc["reduction"] > 1
    assert doc["after"]["bound"] == doc["final_bound"]
    assert f"kept round {kept}, the smallest sound bound: {bounds[0]:.5g} -> {bounds[kept]:.5g}" in stdout
    assert f"written (round {kept})" in stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
