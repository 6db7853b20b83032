"""Issues 14 and 24: convolutions and pools in the form every verifier reads — one group, the attributes some parser
needs written out, none that a parser refuses (an all-zero output_padding, which α,β-CROWN's onnx2pytorch refuses)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS, make_model, run_cli
from onnx import helper

from nnxform.domain import Box
from nnxform.exactness import compare
from nnxform.ir import from_proto, load
from nnxform.passes import PASSES
from nnxform.passes.conv_form import EXPLICIT
from nnxform.summary import verifier_blockers
from nnxform.verifiers import PROFILES, written


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
    assert "group" not in conv.attrs and "auto_pad" not in conv.attrs and "output_padding" not in conv.attrs
    assert set(EXPLICIT[op]) <= set(conv.attrs)
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
    model = load(MODELS / f"{name}.onnx")
    folded, report = PASSES["fold-bn"](model)
    assert "BatchNormalization" not in folded.op_counts()
    for verifier in ("marabou", "pynever"):
        assert PROFILES[verifier].blockers(folded) == [], verifier
    assert compare(model, folded, Box.default(model.input_size), samples=300).within


def transposed(attrs: dict, seed: int = 0):
    """x[1,2,3,3] → ConvTranspose (2 → 3 channels, 3×3 kernel, ``attrs``) → Relu."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], name="up", **attrs),
             helper.make_node("Relu", ["c"], ["y"])]
    return from_proto(make_model(nodes, [1, 2, 3, 3], weights={"w": rng.normal(size=(2, 3, 3, 3)),
                                                               "b": rng.normal(size=3)}))


@pytest.mark.parametrize("attrs", [{}, {"strides": [2, 2], "output_padding": [0, 0], "pads": [1, 1, 1, 1]},
                                   {"strides": [2, 2], "output_padding": [1, 1], "pads": [1, 1, 1, 1]}],
                         ids=["defaults", "zero-output-padding", "output-padding"])
def test_canon_writes_a_conv_transpose_as_alpha_beta_crowns_onnx2pytorch_reads_it(attrs: dict) -> None:
    """kernel_shape written (convert_layer reads it unconditionally), an all-zero output_padding dropped (the fork
    raises 'Extraction of attribute output_padding not implemented'), a non-zero one kept and reported."""
    model = transposed(attrs)
    result, report = PASSES["canon"](model)
    (node,) = [n for n in result.nodes if n.op == "ConvTranspose"]
    kept = attrs["output_padding"] if any(attrs.get("output_padding", [])) else None
    assert node.attrs["kernel_shape"] == [3, 3] and node.attrs.get("output_padding") == kept
    blockers = PROFILES["abcrown"].blockers(written(result))
    if any(attrs.get("output_padding", [])):
        assert [(b.node, b.fix) for b in blockers] == [("up", None)] and "output_padding" in blockers[0].reason
    else:
        assert blockers == [] and not verifier_blockers(result)
    if "output_padding" in attrs and not any(attrs["output_padding"]):
        assert any("output_padding left to its default" in line for line in report.changes)
        before = PROFILES["abcrown"].blockers(model)
        assert any("output_padding" in b.reason and b.fix == "nnxform canon" for b in before)
    box = Box(-np.ones(model.input_size), np.ones(model.input_size))
    assert compare(model, result, box, samples=200).within


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_canon_writes_the_pool_attributes_pynever_and_eran_read(op: str) -> None:
    """pynever cannot default a pool's strides and pads (nor a MaxPool's dilations); ERAN reads strides."""
    nodes = [helper.make_node(op, ["x"], ["p"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("Relu", ["p"], ["y"])]
    model = from_proto(make_model(nodes, [1, 1, 4, 4]))
    for verifier in ("pynever", "eran"):
        assert [b.fix for b in PROFILES[verifier].blockers(model)] == ["nnxform canon"], verifier
    result, _ = PASSES["canon"](model)
    (pool,) = [n for n in result.nodes if n.op == op]
    assert set(EXPLICIT[op]) <= set(pool.attrs) and pool.attrs["strides"] == [1, 1]
    for verifier in ("pynever", "eran", "abcrown"):
        assert PROFILES[verifier].blockers(written(result)) == [], verifier
