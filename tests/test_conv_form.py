"""Issue 14: convolutions in the form every verifier reads — one group, every attribute written out."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS, make_model, run_cli
from onnx import helper

from nnxform.domain import Box
from nnxform.exactness import compare
from nnxform.ir import from_proto, load
from nnxform.passes import PASSES
from nnxform.summary import verifier_blockers


def grouped_net(op: str, group: int, seed: int = 0):
    """x[1,4,6,6] → a grouped Conv or ConvTranspose with 8 output channels (implicit pads and dilations) → Relu."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(8, 4 // group, 3, 3) if op == "Conv" else (4, 8 // group, 3, 3))
    attrs = {"group": group} if op == "Conv" else {"group": group, "strides": [2, 2]}
    nodes = [helper.make_node(op, ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    return from_proto(make_model(nodes, [1, 4, 6, 6], weights={"w": weight, "b": rng.normal(size=8)}))


@pytest.mark.parametrize("op, group", [("Conv", 2), ("Conv", 4), ("ConvTranspose", 2), ("ConvTranspose", 4)])
def test_canon_makes_grouped_convolutions_one_group_with_explicit_attributes(op: str, group: int) -> None:
    model = grouped_net(op, group)
    assert any("grouped" in reason for reason in verifier_blockers(model))
    result, report = PASSES["canon"](model)
    (conv,) = [n for n in result.nodes if n.op == op]
    assert "group" not in conv.attrs and "auto_pad" not in conv.attrs
    assert {"kernel_shape", "strides", "dilations", "pads"} <= set(conv.attrs)
    assert report.counts.get("ungrouped") == 1 and not verifier_blockers(result)
    cmp = compare(model, result, Box(-np.ones(model.input_size), np.ones(model.input_size)), samples=300)
    assert cmp.within, cmp.max_abs


def test_the_bundled_grouped_conv_model_comes_out_ungrouped(tmp_path) -> None:
    """models/bn_after_relu_conv.onnx has a group=2 Conv that canon used to pass through unchanged."""
    out = tmp_path / "c.onnx"
    r = run_cli("canon", MODELS / "bn_after_relu_conv.onnx", "-o", out)
    assert r.returncode == 0, r.stderr
    convs = [n for n in load(out).nodes if n.op == "Conv"]
    assert convs and all(n.attrs.get("group", 1) == 1 and "pads" in n.attrs for n in convs)
    info = run_cli("info", out)
    assert "verifier-friendly: yes" in info.stdout


@pytest.mark.parametrize("name", ["bn_after_relu_conv", "bn_cnn", "bn_on_input"])
def test_fold_bn_writes_the_source_convolutions_as_every_verifier_reads_them(name):
    """fold-bn folds the BNs and, like canon, makes the source's grouped or attribute-implicit convolutions one
    group with every attribute written (what Marabou and pynever could not read in the compatibility matrix)."""
    from nnxform.verifiers import PROFILES

    model = load(MODELS / f"{name}.onnx")
    folded, report = PASSES["fold-bn"](model)
    assert "BatchNormalization" not in folded.op_counts()
    for verifier in ("marabou", "pynever"):
        assert PROFILES[verifier].blockers(folded) == [], verifier
    assert compare(model, folded, Box.default(model.input_size), samples=300).within
