"""A function-preserving pass that changes the function is refused before anything is written."""

from __future__ import annotations

import pytest
from conftest import MODELS

from nnxform import load
from nnxform.errors import NotExact
from nnxform.passes import PASSES, Pass, PassReport, apply_checked


def test_a_pass_that_changes_the_function_is_refused(monkeypatch):
    def broken(model):
        model = model.copy()
        weight = next(t for n in model.nodes if n.op == "Gemm" for t in n.inputs if t in model.constants)
        model.constants[weight] = model.constants[weight] + 1e-3
        return model, PassReport("broken")

    monkeypatch.setitem(PASSES, "broken", Pass("broken", "a weight plus 1e-3", True, broken))
    with pytest.raises(NotExact, match="broken changed the function"):
        apply_checked("broken", load(MODELS / "cartpole.onnx"))


def test_checked_pass_stamps_provenance():
    model = load(MODELS / "cartpole.onnx")
    result, report, cmp = apply_checked("canon", model, parameters={"domain": {}})
    assert cmp.within and cmp.samples > 1000
    assert result.metadata["nnxform.pass"] == "canon"
    assert result.metadata["nnxform.source_sha256"] == model.source["sha256"]
