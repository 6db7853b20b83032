"""``nnxform canon --for VERIFIER``: writes what that verifier reads, the same function, or exits 2 naming the
node that no command makes readable and writes nothing (from the graph alone when the node is one canon keeps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from conftest import MODELS, make_model, run_cli, save
from onnx import helper

from nnxform.ir import load
from nnxform.verifiers import readability
from nnxform.workflows import prepare_for

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


def cgan_like(path: Path, output_padding: list[int] | None = None) -> Path:
    """A seeded cGAN-like file: z [1, 4] → Gemm → Relu → Reshape → ConvTranspose (3×3, every attribute left to its
    default, or with ``output_padding`` written) → Relu → Flatten → Gemm."""
    rng = np.random.default_rng(3)
    weights = {"W0": rng.normal(0, 0.5, (16, 4)), "b0": rng.normal(0, 0.1, 16), "shape": np.array([1, 4, 2, 2]),
               "T": rng.normal(0, 0.3, (4, 2, 3, 3)), "c": rng.normal(0, 0.1, 2),
               "W2": rng.normal(0, 0.3, (3, 2 * 4 * 4)), "b2": np.zeros(3)}
    attrs = {} if output_padding is None else {"output_padding": output_padding}
    nodes = [helper.make_node("Gemm", ["z", "W0", "b0"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["s"]),
             helper.make_node("ConvTranspose", ["s", "T", "c"], ["t"], name="up", **attrs),
             helper.make_node("Relu", ["t"], ["u"]), helper.make_node("Flatten", ["u"], ["f"]),
             helper.make_node("Gemm", ["f", "W2", "b2"], ["y"], transB=1)]
    return save(make_model(nodes, [1, 4], weights=weights, input_name="z"), path)


def test_canon_for_refuses_a_conv_transpose_for_nnenum_from_the_graph(tmp_path: Path) -> None:
    """nnenum has no ConvTranspose: one line, exit 2, nothing written, and no rewriting tried (issue 24)."""
    out = tmp_path / "never.onnx"
    refused = run_cli("canon", cgan_like(tmp_path / "g.onnx"), "-o", out, "--for", "nnenum")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and not out.exists() and len(lines) == 1
    assert "nnenum cannot read" in lines[0] and "ConvTranspose node 'up'" in lines[0] and "ONNX_WHITELIST" in lines[0]
    assert "result of canon" not in lines[0]  # decided before canon ran


def test_canon_for_abcrown_leaves_out_the_output_padding_its_converter_refuses(tmp_path: Path) -> None:
    """What α,β-CROWN's onnx2pytorch failed on in issue 24 (`Extraction of attribute output_padding not
    implemented`): info --for says canon removes it, and canon --for writes the ConvTranspose with kernel_shape only."""
    source = cgan_like(tmp_path / "g.onnx", output_padding=[0, 0])
    blockers = readability(load(source), "abcrown")["blockers"]  # output_padding, and kernel_shape left implicit
    assert [b["fix"] for b in blockers] == ["nnxform canon"] * 2
    assert "output_padding not implemented" in blockers[0]["reason"] and "kernel_shape" in blockers[1]["reason"]
    out = tmp_path / "for-abcrown.onnx"
    prepare_for(load(source), "abcrown", samples=200).model.save(out)
    (node,) = [n for n in onnx.load(str(out)).graph.node if n.op_type == "ConvTranspose"]
    assert {a.name for a in node.attribute} == {"kernel_shape"}
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 1, 4)).astype(np.float32)
    np.testing.assert_allclose(_outputs(out, x), _outputs(source, x), rtol=1e-5, atol=1e-5)
