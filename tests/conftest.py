"""Shared fixtures: the bundled models folder, a runner for the real ``nnxform`` command, ONNX builders."""

from __future__ import annotations

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


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m nnxform ARGS`` as a user would, capturing output."""
    return subprocess.run([sys.executable, "-m", "nnxform", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


def run_main(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run the real entry point (``nnxform.cli.main``) in this process: exit status, stdout, stderr."""
    from nnxform.cli import main

    monkeypatch.setattr(sys, "argv", ["nnxform", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


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


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path
