"""Labelled data, accuracy and FGSM robustness (``nnxform.accuracy``) and ``nnxform evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import nnxform.cli.evaluate_cmd  # noqa: F401  (registers the command)
from conftest import MODELS
from nnxform.accuracy import fgsm, load_data, measure, predict
from nnxform.cli import app
from nnxform.errors import NnxformError
from nnxform.interpreter import run
from nnxform.ir import load
from nnxform.runtime import OnnxRunner

CSV = MODELS / "data" / "mnist_test_100.csv"


@pytest.fixture(scope="module")
def mnist():
    return load(MODELS / "mnist-net_256x2.onnx"), load_data(CSV, 255)


def cross_entropy(model, x, y) -> np.ndarray:
    z = run(model, x).reshape(len(x), -1)
    z = z - z.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]


def test_csv_is_read_and_scaled():
    data = load_data(CSV, 255)
    raw = np.loadtxt(CSV, delimiter=",")
    assert data.x.shape == (100, 784) and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y, raw[:, 0])
    np.testing.assert_allclose(data.x, raw[:, 1:] / 255)
    assert 0 <= data.x.min() and data.x.max() <= 1


def test_csv_header_and_npz_with_one_hot_labels(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("label,a,b\n1,0.5,2\n0,1,-1\n")
    data = load_data(csv)
    assert data.y.tolist() == [1, 0] and data.x.tolist() == [[0.5, 2.0], [1.0, -1.0]]
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.arange(12, dtype=float).reshape(3, 2, 2), y=np.eye(3)[[2, 0, 1]])
    data = load_data(npz, 2.0)
    assert data.y.tolist() == [2, 0, 1] and data.x.shape == (3, 4) and data.x[1, 0] == 2.0


def test_data_errors_are_one_line(tmp_path, mnist):
    model, _ = mnist
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,x\n")
    cases = [(tmp_path / "none.csv", None, "no such file"), (bad, None, "not a CSV"), (CSV, -1.0, "--scale")]
    for path, scale, text in cases:
        with pytest.raises(NnxformError, match=text):
            load_data(path, scale)
    short = tmp_path / "short.csv"
    short.write_text("3,0.1,0.2\n")
    with pytest.raises(NnxformError, match="784"):
        load_data(short).fit(model)
    big = tmp_path / "big.npz"
    np.savez(big, x=np.zeros((1, 784)), y=np.array([12]))
    with pytest.raises(NnxformError, match="label 12"):
        load_data(big).fit(model)
    np.savez(tmp_path / "noy.npz", x=np.zeros((1, 784)))
    with pytest.raises(NnxformError, match="'y'"):
        load_data(tmp_path / "noy.npz")


def test_accuracy_matches_onnxruntime_argmax(mnist):
    model, data = mnist
    result = measure(model, data, [])
    expected = OnnxRunner(model)(data.x.reshape(-1, 1, 784, 1)).argmax(axis=1)
    assert result.accuracy == pytest.approx(np.mean(expected == data.y)) and result.accuracy >= 0.95
    np.testing.assert_array_equal(result.predictions, expected)


def test_fgsm_stays_in_the_ball_and_raises_the_loss(mnist):
    model, data = mnist
    eps = 0.05
    adv = fgsm(model, data.x, data.y, eps, (0.0, 1.0))
    assert np.abs(adv - data.x).max() <= eps + 1e-12 and adv.min() >= 0 and adv.max() <= 1
    before, after = cross_entropy(model, data.x, data.y), cross_entropy(model, adv, data.y)
    assert np.mean(after > before) > 0.95


def test_fgsm_direction_is_the_sign_of_the_loss_gradient():
    model = load(MODELS / "cartpole.onnx")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (20, 4)), rng.integers(0, 2, 20)
    step = (fgsm(model, x, y, 1.0) - x)
    h = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        numeric = (cross_entropy(model, x + e, y) - cross_entropy(model, x - e, y)) / (2 * h)
        clear = np.abs(numeric) > 1e-6
        np.testing.assert_array_equal(step[clear, i], np.sign(numeric[clear]))


def test_fgsm_never_raises_accuracy_above_clean_accuracy(mnist):
    model, data = mnist
    result = measure(model, data, [0.0, 0.01, 0.05, 0.1], (0.0, 1.0))
    assert result.robustness[0.0] == result.accuracy
    for eps in (0.01, 0.05, 0.1):
        attacked = predict(model, fgsm(model, data.x, data.y, eps, (0.0, 1.0)))
        assert np.mean(attacked == data.y) <= result.accuracy
        assert result.robustness[eps] <= result.accuracy
    assert result.robustness[0.1] < result.robustness[0.01]


def _run(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_cli_json_and_side_by_side(tmp_path):
    out = tmp_path / "e.json"
    r = _run(MODELS / "mnist-net_256x2.onnx", "--data", CSV, "--scale", "255", "--against",
             MODELS / "mnist-net_256x2.onnx", "--json", out)
    assert r.exit_code == 0, r.output
    assert "robust ε=0.05" in r.output and "clipped to [0, 1]" in r.output and "100.0%" in r.output
    doc = json.loads(out.read_text())
    assert set(doc["robustness"]) == {"0.01", "0.05"} and doc["clip"] == [0.0, 1.0]
    assert doc["against"]["accuracy"] == doc["accuracy"] and doc["agreement"] == 1.0
    assert all(doc["robustness"][e] <= doc["accuracy"] for e in doc["robustness"])


def test_cli_eps_and_clip_options(tmp_path):
    r = _run(MODELS / "mnist-net_256x2.onnx", "--data", CSV, "--scale", "255", "--eps", "0.02", "--no-clip",
             "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert list(doc["robustness"]) == ["0.02"] and doc["clip"] == [None, None]
    r = _run(MODELS / "mnist-net_256x2.onnx", "--data", CSV, "--clip-lower", "1", "--clip-upper", "0")
    assert isinstance(r.exception, NnxformError) and "--clip-lower" in str(r.exception)
    r = _run(MODELS / "cartpole.onnx", "--data", CSV)
    assert isinstance(r.exception, NnxformError) and "784 features" in str(r.exception)
