"""One checked pass path: the pass registry, ``apply_checked``, and the workflows the commands run, called from Python."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import nnxform.cli.compress  # noqa: F401  (registers the command)
import nnxform.cli.prune  # noqa: F401  (registers the command)
from conftest import MODELS
from nnxform.accuracy import load_data
from nnxform.cli import app
from nnxform.cli.common import json_text
from nnxform.errors import NnxformError, NotExact
from nnxform.ir import load
from nnxform.merge import MERGE
from nnxform.passes import PASSES, Pass, PassReport, apply_checked
from nnxform.pruning import SaliencyOptions
from nnxform.vnnlib import read_box
from nnxform.workflows import compress_checked, prune_with_impact
from test_stable import planted

CARTPOLE = MODELS / "cartpole.onnx"
MNIST = MODELS / "mnist-net_256x2.onnx"
MNIST_BOX = MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"
REWRITES = {"canon", "fold-bn", "pad", "canonical-gemm", "merge-affine", "remove-identity", "explicit-convs",
            "rewrite-sub-div", "fold-elementwise", "simplify-reshapes", "absorb-transpose"}


def test_the_registry_holds_every_pass_with_its_properties():
    assert set(PASSES) == REWRITES | {"compress", "quantize"}
    for name, p in PASSES.items():
        assert isinstance(p, Pass) and p.name == name and p.preserves == (name != "quantize")
        assert p.description and "\n" not in p.description
    assert PASSES["compress"].needs == ("stability",) and set(PASSES["compress"].parameters) == {"rank_tol"}
    assert set(PASSES["pad"].parameters) == {"depth"} and PASSES["canon"].parameters == {}
    assert not MERGE.preserves and MERGE.needs == ("second",)


def test_importing_the_passes_registers_compress():
    code = "import nnxform.passes as p; print(sorted(p.PASSES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'compress'" in out and "nnxform.passes.compress" not in code


def _shifted(model, by: float = 1e-3):
    """The model with one bias moved by ``by``: another function."""
    model = model.copy()
    bias = next(n.inputs[2] for n in model.nodes if n.op == "Gemm" and len(n.inputs) > 2)
    model.constants[bias] = model.constants[bias] + by
    return model, PassReport("shift")


def test_apply_checked_refuses_a_pass_that_changes_the_function():
    model = load(CARTPOLE)
    metadata = dict(model.metadata)
    shift = Pass("shift", "moves a bias", True, _shifted)
    with pytest.raises(NotExact, match="shift changed the function.*nothing written"):
        apply_checked(shift, model)
    assert model.metadata == metadata  # nothing stamped on the input
    with pytest.raises(NnxformError, match="changes the function: give the reference"):
        apply_checked(Pass("shift", "moves a bias", False, _shifted), model)


def test_apply_checked_returns_the_check_json_and_stamps_the_provenance():
    model = load(CARTPOLE)
    result, report, cmp = apply_checked("canon", model, samples=200, tol=1e-4, parameters={"domain": {}})
    assert cmp.to_json() == {"samples": cmp.samples, "max_abs": cmp.max_abs, "mean_abs": cmp.mean_abs,
                             "tolerance": 1e-4}
    assert json.loads(result.metadata["nnxform.parameters"]) == {"domain": {}, "tol": 1e-4, "samples": 200}


def _timeless(value: Any) -> Any:
    """``value`` as the JSON written, without the wall-clock times (``…seconds``), which differ from run to run."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in json.loads(json_text(value)).items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_compress_checked_from_python_is_the_command(tmp_path):
    model, box, _ = planted(4, [3, 8, 8, 2])
    src, out = tmp_path / "p.onnx", tmp_path / "s.onnx"
    model.save(src)
    np.save(tmp_path / "lo.npy", box.lower)
    np.save(tmp_path / "hi.npy", box.upper)
    r = CliRunner().invoke(app, ["compress", str(src), "--lower", str(tmp_path / "lo.npy"), "--upper",
                                 str(tmp_path / "hi.npy"), "-o", str(out), "--certify", "--samples", "2000",
                                 "--node-limit", "1000", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    result = compress_checked(load(src), box, samples=2000, node_limit=1000, certify_box=True, domain=doc["domain"])
    assert result.model.to_bytes() == out.read_bytes()
    assert _timeless(result.to_json(str(src), str(out))) == _timeless(doc)
    assert result.certificate is not None and result.check.max_abs <= result.certificate.delta_max + 1e-12


def test_compress_checked_refuses_options_that_do_not_go_together():
    model, box, _ = planted(4, [3, 8, 8, 2])
    with pytest.raises(NnxformError, match="--certify-exact goes with --certify"):
        compress_checked(model, box, certify_exact=True)


def test_prune_with_impact_from_python_is_the_command(tmp_path):
    out = tmp_path / "p.onnx"
    data = MODELS / "data" / "mnist_test_100.csv"
    r = CliRunner().invoke(app, ["prune", str(MNIST), "--method", "neuron", "--ratio", "0.5", "-o", str(out),
                                 "--vnnlib", str(MNIST_BOX), "--data", str(data), "--scale", "255",
                                 "--fgsm-eps", "0.02", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    report = prune_with_impact(load(MNIST), read_box(MNIST_BOX), "neuron", 0.5, data=load_data(data, 255.0),
                               scale=255.0, fgsm_eps=[0.02], clip=(0.0, 1.0), domain=doc["domain"],
                               options=SaliencyOptions())
    assert report.model.to_bytes() == out.read_bytes()
    assert _timeless(report.to_json(str(MNIST), str(out))) == _timeless(doc)
    assert doc["impact_bound"] >= doc["impact"]["found"] >= 0


def test_prune_with_impact_names_an_unknown_impact_method():
    with pytest.raises(NnxformError, match="unknown impact method 'exact'"):
        prune_with_impact(load(CARTPOLE), None, "weight", 0.5, impact_method="exact")
