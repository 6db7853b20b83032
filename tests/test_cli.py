"""The ``nnxform`` command as users run it: exit status, one-line errors, no partial outputs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from conftest import MODELS, assert_clean_error, make_model, run_cli, save
from onnx import TensorProto, helper

import nnxform

ACAS = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"nnxform {nnxform.__version__}"
    for cmd in ("canon", "fold-bn", "info", "check"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "--help" in r.stdout


def test_missing_file(tmp_path):
    out = tmp_path / "out.onnx"
    assert_clean_error(run_cli("canon", tmp_path / "nope.onnx", "-o", out), "nope.onnx", "no such file")
    assert not out.exists()


def test_not_onnx(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a network\n" * 20)
    out = tmp_path / "out.onnx"
    assert_clean_error(run_cli("fold-bn", bad, "-o", out), "not an ONNX model")
    assert list(tmp_path.iterdir()) == [bad]


def test_unsupported_operator_named(tmp_path):
    path = save(make_model([helper.make_node("Softmax", ["x"], ["y"], name="probs")], [1, 3]), tmp_path / "sm.onnx")
    assert_clean_error(run_cli("canon", path, "-o", tmp_path / "out.onnx"), "Softmax", "'probs'")
    assert not (tmp_path / "out.onnx").exists()


def test_two_inputs(tmp_path):
    extra = helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 2])
    path = save(make_model([helper.make_node("Add", ["x", "x2"], ["y"])], [1, 2], extra_inputs=[extra]), tmp_path / "two.onnx")
    assert_clean_error(run_cli("info", path), "2 non-constant inputs", "exactly one")


def test_inverted_box_and_wrong_size(tmp_path):
    out = tmp_path / "out.onnx"
    assert_clean_error(run_cli("canon", ACAS, "-o", out, "--lower", "1", "--upper", "0"), "empty box")
    lower = tmp_path / "lo.npy"
    np.save(lower, np.zeros(7))
    assert_clean_error(run_cli("canon", ACAS, "-o", out, "--lower", lower, "--upper", "1"), "7", "5")
    assert not out.exists()


def test_missing_output_folder(tmp_path):
    assert_clean_error(run_cli("canon", ACAS, "-o", tmp_path / "no" / "out.onnx"), "does not exist")


def test_canon_output_is_byte_identical_and_records_provenance(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for out in (a, b):
        r = run_cli("canon", ACAS, "-o", out, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_1.vnnlib")
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()
    meta = {p.key: p.value for p in onnx.load(str(a)).metadata_props}
    assert meta["nnxform.version"] == nnxform.__version__
    assert meta["nnxform.pass"] == "canon"
    assert meta["nnxform.source_sha256"] == hashlib.sha256(ACAS.read_bytes()).hexdigest()
    assert "acasxu_prop_1.vnnlib" in json.loads(meta["nnxform.parameters"])["domain"]["vnnlib"]


def test_fold_bn_reports_where_and_leaves_no_bn(tmp_path):
    out = tmp_path / "nobn.onnx"
    r = run_cli("fold-bn", MODELS / "marabou_linear2-3_bn1-linear3-1.onnx", "-o", out, "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "folded into Gemm" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["backward"] == 1
    assert "BatchNormalization" not in nnxform.load(out).op_counts()


def test_info_json_names_blockers():
    r = run_cli("info", MODELS / "marabou_linear2-3_bn1-linear3-1.onnx", "--json", "-")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["verifier_friendly"] is False
    assert any("BatchNormalization" in b for b in info["blockers"])
    assert info["operators"] == {"BatchNormalization": 1, "Gemm": 2}
    r = run_cli("info", ACAS, "--json", "-")
    acas = json.loads(r.stdout)
    assert acas["relu_neurons"] == 300 and acas["opset"] == 8
    assert any("Sub" in b for b in acas["blockers"])


@pytest.fixture
def perturbed_acas(tmp_path):
    model = nnxform.load(ACAS)
    gemm_weight = next(t for n in model.nodes if n.op == "MatMul" for t in n.inputs if t in model.constants)
    model.constants[gemm_weight] = model.constants[gemm_weight] * 1.01
    path = tmp_path / "perturbed.onnx"
    model.save(path)
    return path


def test_check_exit_status_and_worst_input(tmp_path, perturbed_acas):
    same = run_cli("check", ACAS, ACAS, "--samples", "500")
    assert same.returncode == 0 and "within tolerance" in same.stdout
    worst = tmp_path / "worst.npy"
    diff = run_cli("check", ACAS, perturbed_acas, "--samples", "500", "--save-worst", worst, "--json", "-")
    assert diff.returncode == 1
    result = json.loads(diff.stdout)
    assert result["within"] is False and result["max_abs"] > 1e-4
    assert np.load(worst).shape == (1, 1, 1, 5)


def test_check_refuses_mismatched_inputs():
    assert_clean_error(run_cli("check", ACAS, MODELS / "cartpole.onnx"), "inputs differ")
