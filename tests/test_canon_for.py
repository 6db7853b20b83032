"""``nnxform canon --for VERIFIER``: writes what that verifier reads, the same function, or exits 2 naming the
node that no command makes readable and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from conftest import MODELS, run_cli

GROUPED = MODELS / "bn_after_relu_conv.onnx"  # BatchNormalization and a group=2 Conv


def _outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: row})[0] for row in x])


def test_canon_for_nnenum_writes_what_nnenum_reads(tmp_path: Path) -> None:
    out, report = tmp_path / "for-nnenum.onnx", tmp_path / "report.json"
    done = run_cli("canon", GROUPED, "-o", out, "--for", "nnenum", "--json", report)
    assert done.returncode == 0, done.stderr
    assert "readable by nnenum: yes" in done.stdout and "checked on" in done.stdout
    assert json.loads(report.read_text())["readable"] is True
    info = run_cli("info", out, "--for", "nnenum")
    assert "readable by nnenum: yes" in info.stdout and "BatchNormalization" not in info.stdout
    x = np.random.default_rng(0).uniform(-1, 1, size=(100, 1, 2, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_outputs(out, x), _outputs(GROUPED, x), rtol=1e-5, atol=1e-5)


def test_canon_for_refuses_an_unfixable_blocker_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "never.onnx"
    refused = run_cli("canon", MODELS / "torch_nhwc_mlp.onnx", "-o", out, "--for", "nnenum")  # Tanh, Sigmoid
    assert refused.returncode == 2 and not out.exists()
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Tanh node '/Tanh'" in lines[0] and "no nnxform command removes it" in lines[0]
