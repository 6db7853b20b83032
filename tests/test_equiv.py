"""``nnxform equiv``: ε-equivalence decided as the exact MILP difference says — equivalent just above the exact
δ_max, not equivalent (a counterexample replayed in onnxruntime) below it — and bad input refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MODELS, assert_clean_error, run_cli, save
from test_bounds import mlp

from nnxform.discrepancy import discrepancy
from nnxform.domain import Box
from nnxform.equiv import equivalence
from nnxform.runtime import OnnxRunner


def _perturbed(model, seed: int, scale: float):
    """``model`` with every float weight moved by a relative ``scale`` (seeded)."""
    rng = np.random.default_rng(seed)
    other = model.copy()
    for name, value in other.constants.items():
        if value.dtype.kind == "f":
            other.constants[name] = (value * (1 + scale * rng.standard_normal(value.shape))).astype(value.dtype)
    return other


@pytest.mark.parametrize("seed, inputs", [(0, 3), (1, 3), (2, 20)])
def test_answers_agree_with_the_exact_milp_difference(seed, inputs):
    a = mlp(seed, [inputs, 10, 10, 3])
    b = _perturbed(a, seed, 0.05)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, inputs)
    box = Box(centre - 0.3, centre + 0.3)
    exact = discrepancy(a, b, box, "milp")
    assert exact.exact
    above = equivalence(a, b, box, 1.5 * exact.delta_max, timeout=60)
    assert above.answer == "equivalent", above.to_json()
    assert above.bound < 1.5 * exact.delta_max
    below = equivalence(a, b, box, 0.5 * exact.delta_max, timeout=60)
    assert below.answer == "not equivalent", below.to_json()
    x = np.asarray(below.witness, np.float32)[None]
    assert np.all(x >= box.lower) and np.all(x <= box.upper)
    replayed = OnnxRunner(a)(x).astype(np.float64) - OnnxRunner(b)(x).astype(np.float64)
    assert np.abs(replayed).max() >= 0.5 * exact.delta_max


def test_cli_exit_status_and_json(tmp_path):
    a = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
    box = MODELS / "vnnlib" / "acasxu_prop_3.vnnlib"
    report = tmp_path / "equiv.json"
    r = run_cli("equiv", a, a, "--vnnlib", box, "--equiv-eps", "0.1", "--json", report)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["answer"] == "equivalent" and data["delta_max_bound"] < 0.1 and data["largest_found"] == 0.0


def test_bad_input_is_refused_in_one_line(tmp_path):
    a = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
    assert_clean_error(run_cli("equiv", a, a, "--equiv-eps", "0.1"), "needs the input box")
    assert_clean_error(run_cli("equiv", a, a, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib",
                               "--equiv-eps", "-1"), "--equiv-eps")
    other = save(mlp(0, [3, 4, 5]).to_onnx(), tmp_path / "three.onnx")
    assert_clean_error(run_cli("equiv", a, other, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib",
                               "--equiv-eps", "0.1"), "inputs differ in size")
