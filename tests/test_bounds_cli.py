"""``nnxform bounds``: the table, the JSON document, errors."""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from nnxform.cli.common import Progress
from conftest import MODELS
from nnxform.cli import app
from nnxform.errors import NnxformError
from nnxform.ir import load


def _run(*args: str):
    return CliRunner().invoke(app, ["bounds", *map(str, args)])


def test_table_and_counts():
    r = _run(MODELS / "mnist-net_256x2.onnx", "--vnnlib", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    assert r.exit_code == 0, r.output
    assert "output" in r.output and "Relu_2" in r.output and "unstable" in r.output and "width sum" in r.output


def test_json_to_stdout_has_the_schema():
    r = _run(MODELS / "marabou_fc_2-2-3.onnx", "--method", "milp", "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["method"] == "milp" and doc["exact"] is True and doc["seconds"] >= 0
    assert len(doc["output"]["lower"]) == len(doc["output"]["upper"]) == 3
    relus = [n.name for n in load(MODELS / "marabou_fc_2-2-3.onnx").nodes if n.op == "Relu"]
    assert [l["node"] for l in doc["relu_layers"]] == relus
    assert set(doc["stable"]) >= {"active", "inactive", "unstable"}


def test_json_file_and_lp(tmp_path):
    out = tmp_path / "b.json"
    r = _run(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx", "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib",
             "-m", "lp", "--json", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert len(doc["relu_layers"]) == 6 and all(len(l["lower"]) == 50 for l in doc["relu_layers"])
    assert all(lo <= hi for lo, hi in zip(doc["output"]["lower"], doc["output"]["upper"]))


def test_progress_bar_reaches_the_total(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar is drawn on a terminal only
    with Progress("lp solves") as bar:
        for done in (2, 4, 10):
            bar(done, 10)
    err = capsys.readouterr().err
    assert "lp solves" in err and "10/10" in err


def test_unknown_method_is_a_user_error():
    r = _run(MODELS / "test_nano.onnx", "--method", "magic")
    assert isinstance(r.exception, NnxformError) and "magic" in str(r.exception)


def test_slope_steps_trade_tightness_for_time():
    """``--slope-steps 0`` gives CROWN's bounds: never tighter than the default's optimised ones, and still sound on
    samples run in onnxruntime; a negative count is refused before any work."""
    import numpy as np

    from nnxform.runtime import OnnxRunner
    from nnxform.vnnlib import read_box

    model, prop = MODELS / "mnist-net_256x2.onnx", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"
    docs = {}
    for steps in ("0", "10"):
        r = _run(model, "--vnnlib", prop, "--slope-steps", steps, "--json", "-")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["slope_steps"] == int(steps)
        docs[steps] = json.loads(r.output)["output"]
    crown, optimised = docs["0"], docs["10"]
    assert np.all(np.array(crown["lower"]) <= np.array(optimised["lower"]))
    assert np.all(np.array(crown["upper"]) >= np.array(optimised["upper"]))
    assert np.sum(np.array(crown["upper"]) - crown["lower"]) > np.sum(np.array(optimised["upper"]) - optimised["lower"])
    box = read_box(prop)
    xs = np.random.default_rng(0).uniform(box.lower, box.upper, (500, box.size)).astype(np.float32)
    ys = OnnxRunner(load(model))(xs)
    assert np.all(ys >= np.array(optimised["lower"])) and np.all(ys <= np.array(optimised["upper"]))
    bad = _run(model, "--vnnlib", prop, "--slope-steps", "-1")
    assert isinstance(bad.exception, NnxformError) and "--slope-steps" in str(bad.exception)


def test_hidden_steps_tighten_every_layer_soundly():
    """``--hidden-steps`` (α-CROWN on the hidden layers, then the output again) never loosens a bound, tightens the
    output here, and every onnxruntime sample stays inside; stopped by its time limit it keeps the bounds it has."""
    import numpy as np

    from nnxform.analyzers import bounds
    from nnxform.runtime import OnnxRunner
    from nnxform.vnnlib import read_box

    model = load(MODELS / "mnist-net_256x2.onnx")
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    plain, tight = bounds(model, box, "symbolic"), bounds(model, box, "symbolic", hidden_steps=5)
    for a, b in zip(plain.relu_layers, tight.relu_layers):
        assert np.all(b.lower >= a.lower) and np.all(b.upper <= a.upper)
    assert tight.width_sum < plain.width_sum
    xs = np.random.default_rng(1).uniform(box.lower, box.upper, (500, box.size)).astype(np.float32)
    ys = OnnxRunner(model)(xs)
    assert np.all(ys >= tight.output_lower) and np.all(ys <= tight.output_upper)
    cut = bounds(model, box, "symbolic", hidden_steps=5, total_time=1e-6)
    assert np.all(ys >= cut.output_lower) and np.all(ys <= cut.output_upper)
    r = _run(MODELS / "mnist-net_256x2.onnx", "--vnnlib", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib",
             "--hidden-steps", "3", "--json", "-")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)["output"]
    assert np.sum(np.subtract(out["upper"], out["lower"])) < plain.width_sum
