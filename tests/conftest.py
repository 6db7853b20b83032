"""Shared fixtures: the bundled models folder, a runner for the real ``nnxform`` command, ONNX builders."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


@pytest.fixture
def models() -> Path:
    return MODELS


def run_cli(*args: object, cwd: Path | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """Run the ``nnxform`` command line on ``args``: its exit status, stdout and stderr.

    In this process by default (the real entry point, ``nnxform.cli.main``, its output captured), which spares a
    Python start and the library's imports per call; in a new ``python -m nnxform`` process when ``process``, for
    what only a process shows (signals, its environment, what an interrupted run leaves behind)."""
    argv = [str(a) for a in args]
    if process:
        return subprocess.run([sys.executable, "-m", "nnxform", *argv], capture_output=True, text=True,
                              cwd=cwd or ROOT, timeout=300)
    from nnxform.cli import main

    out, err, before, saved = io.StringIO(), io.StringIO(), os.getcwd(), sys.argv
    status = 0
    try:
        os.chdir(cwd or ROOT)
        sys.argv = ["nnxform", *argv]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        os.chdir(before)
        sys.argv = saved
    return subprocess.CompletedProcess(["nnxform", *argv], status, out.getvalue(), err.getvalue())


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """What every bad input gets: exit status 2, exactly one line on stderr holding every fragment, no traceback;
    the line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def outcome(result: subprocess.CompletedProcess) -> tuple[int, str, str]:
    """``run_cli``'s result as (exit status, stdout, stderr)."""
    return result.returncode, result.stdout, result.stderr


def make_model(nodes, input_shape, output_name="y", weights=None, opset=13, input_name="x",
               extra_inputs=(), ir_version=7) -> onnx.ModelProto:
    """A float32 ONNX model from nodes, an input shape and named numpy weights."""
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else np.int64), k)
             for k, v in (weights or {}).items()]
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape)), *extra_inputs],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


@functools.cache
def trained_digits() -> tuple:
    """300 digits training points, 40 test points and a 64-32-10 network trained on them (once per test process):
    what the repair tests compress and repair."""
    from nnxform.accuracy import load_data
    from nnxform.training import TrainOptions, init_network, train

    data = MODELS / "data"
    train_set, test_set = load_data(data / "digits_train.csv", 16), load_data(data / "digits_test.csv", 16)
    train_set.x, train_set.y = train_set.x[:300], train_set.y[:300]
    test_set.x, test_set.y = test_set.x[:40], test_set.y[:40]
    net, _ = train(init_network([64, 32, 10], seed=1), train_set.x, train_set.y,
                   options=TrainOptions(epochs=20, lr=3e-3, seed=1))
    return net.to_model(), train_set, test_set


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def random_chain(seed: int, widths: list[int], scale: float = 1.0, activation: str = "Relu",
                 alpha: float | list[float] = 0.1):
    """A Gemm chain with N(0,1)/sqrt(fan_in) weights and biases, both scaled by ``scale``, ``activation`` after each
    hidden layer (a LeakyRelu's ``alpha`` per hidden layer or for all): the campaign's generator."""
    from nnxform.ir import from_proto

    rng = np.random.default_rng(seed)
    alphas = alpha if isinstance(alpha, list) else [alpha] * (len(widths) - 2)
    nodes, weights, prev = [], {}, "x"
    for k in range(len(widths) - 1):
        W = rng.normal(size=(widths[k + 1], widths[k])) / np.sqrt(widths[k]) * scale
        b = rng.normal(size=widths[k + 1]) * scale
        weights[f"W{k}"], weights[f"b{k}"] = W.astype(np.float32), b.astype(np.float32)
        out = "y" if k == len(widths) - 2 else f"h{k}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{k}", f"b{k}"], [out], transB=1))
        if out != "y":
            attrs = {"alpha": alphas[k]} if activation == "LeakyRelu" else {}
            nodes.append(helper.make_node(activation, [out], [f"r{k}"], **attrs))
            prev = f"r{k}"
    return from_proto(make_model(nodes, [1, widths[0]], weights=weights))


def extremes(model, box, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest onnxruntime outputs over samples and corners of ``box``."""
    from nnxform.runtime import OnnxRunner

    ys = OnnxRunner(model)(box.points(n, np.random.default_rng(1))).astype(np.float64)
    return ys.min(axis=0), ys.max(axis=0)


def perturbed(model, seed: int, scale: float):
    """``model`` with every float weight moved by a relative ``scale`` (seeded)."""
    rng = np.random.default_rng(seed)
    other = model.copy()
    for name, value in other.constants.items():
        if value.dtype.kind == "f":
            other.constants[name] = (value * (1 + scale * rng.standard_normal(value.shape))).astype(value.dtype)
    return other


def assert_not_equivalent_below(a, b, box, exact: float) -> None:
    """``equiv`` at half the exact largest difference ``exact``: not equivalent, its counterexample inside the box and,
    replayed in onnxruntime on each network, at least that far apart."""
    from nnxform.equiv import equivalence
    from nnxform.runtime import OnnxRunner

    below = equivalence(a, b, box, 0.5 * exact, timeout=60)
    assert below.answer == "not equivalent", below.to_json()
    x = np.asarray(below.witness, np.float32)[None]
    assert np.all(x >= box.lower) and np.all(x <= box.upper)
    replayed = OnnxRunner(a)(x).astype(np.float64) - OnnxRunner(b)(x).astype(np.float64)
    assert np.abs(replayed).max() >= 0.5 * exact
