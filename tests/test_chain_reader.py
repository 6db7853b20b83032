"""The one chain reader (``layered.walk``) and what reads it: its runs and branches against a direct reading of the
graph on every bundled model; ``from_model``, compress's dense tail, the verifier profiles, ``info`` and prune's
refusal of a join all naming what the walk finds; the layered form's operator facts (``WEIGHTED``, ``CHANNELWISE``,
the activation readers) agreeing with the operator table; the nnenum profile's chain cut as deterministic as the walk."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODELS, make_model, random_chain
from onnx import helper
from test_compress import convnet_with_dense_tail
from test_prune_cnn_saliency import residual

from nnxform import layered, summary
from nnxform.errors import NnxformError
from nnxform.ir import Model, from_proto, load
from nnxform.operators import OPERATORS, PIECEWISE_LINEAR
from nnxform.passes import CANONICAL
from nnxform.passes.compress import dense_tail
from nnxform.passes.pad import affine_depth
from nnxform.pruning.channel import conv_network
from nnxform.verifiers.profile import chain
from nnxform.workflows import _chain_depth

BUNDLED = sorted(p for p in MODELS.glob("*.onnx"))


def _linked(model: Model, before: layered.Node, node: layered.Node) -> bool:
    """``node`` reads ``before``'s output alone, and nothing else reads it (nor is it a graph output)."""
    t = before.outputs[0]
    return model.data_inputs(node) == [t] and model.consumers(t) == [node] and t not in model.output_names


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_runs_partition_the_graph_into_maximal_links_and_branches_are_its_joins_and_fanouts(path):
    model = load(path)
    walk = layered.walk(model)
    assert [n.name for run in walk.runs for n in run] == [n.name for n in model.nodes]  # in node order, each once
    for run in walk.runs:
        assert all(_linked(model, a, b) for a, b in zip(run, run[1:]))
        assert all(walk.run(n) is run for n in run)
    firsts = [run[0] for run in walk.runs]
    assert not any(_linked(model, before, n) for n in firsts for before in model.nodes)  # maximal
    expected = [(n.name, len(model.data_inputs(n)), True) for n in model.nodes if len(model.data_inputs(n)) > 1]
    expected += [(n.name, len(model.consumers(n.outputs[0])), False) for n in model.nodes
                 if len(model.consumers(n.outputs[0])) > 1]
    order = {n.name: k for k, n in enumerate(model.nodes)}
    expected.sort(key=lambda e: (order[e[0]], not e[2]))
    assert [(b.node.name, b.count, b.join) for b in walk.branches] == expected


def test_a_residual_network_names_its_branches_alike_in_every_reader():
    model = load(MODELS / "torch_resnet.onnx")
    branches = layered.walk(model).branches
    assert any(b.join for b in branches) and any(not b.join for b in branches)
    structural = [b for b in chain(model) if b.structural]
    assert [b.node for b in structural] == [branch.node.name for branch in branches]
    assert all(f" {branch.count} " in b.reason for b, branch in zip(structural, branches))
    reasons = [r for r in summary.verifier_blockers(model) if "single chain" in r]
    assert len(reasons) == len(branches) and all(f"'{b.node.name}'" in r for b, r in zip(branches, reasons))
    join = next(b for b in branches if b.join)
    with pytest.raises(NnxformError, match=f"prune: '{join.node.name}' .*joins {join.count} branches"):
        conv_network(model)
    with pytest.raises(NnxformError, match="one chain of layers; tensor .* is read by 2 nodes"):
        layered.from_model(CANONICAL.establish(model))


def test_from_model_reads_each_run_and_names_a_join_where_it_starts():
    model = CANONICAL.establish(convnet_with_dense_tail(0))
    net = layered.from_model(model)
    assert [layer.name for layer in net.layers] == [n.name for run in layered.walk(model).runs for n in run]
    doubled = from_proto(make_model(
        [helper.make_node("Gemm", ["x", "W", "b"], ["g"], name="gemm", transB=1),
         helper.make_node("Relu", ["g"], ["r"], name="relu"), helper.make_node("Add", ["r", "r"], ["y"], name="twice")],
        [1, 3], weights={"W": np.eye(3), "b": np.zeros(3)}))
    runs = layered.walk(doubled).runs
    assert [[n.name for n in run] for run in runs] == [["gemm", "relu"], ["twice"]]
    with pytest.raises(NnxformError, match="^prune needs one chain of layers; 'twice' adds up 2 branches"):
        layered.from_model(doubled, "prune")


def test_the_dense_tail_is_the_end_of_the_run_writing_the_output():
    model = CANONICAL.establish(convnet_with_dense_tail(0))
    tail = dense_tail(model)
    run = layered.walk(model).run(model.producer(model.output_name))
    names = [n.name for n in run]
    first = names.index(model.consumers(tail.start)[0].name)
    assert all(OPERATORS[n.op].spatial is False for n in run[first:])
    assert tail.relus == [n.name for n in run[first:] if n.op in PIECEWISE_LINEAR]
    assert all(n.name not in names[first:] for n in tail.head)


def test_canon_for_depth_is_pads_depth_of_a_relu_chain_and_zero_else():
    relu, leaky = random_chain(0, [3, 5, 5, 2]), random_chain(0, [3, 5, 5, 2], activation="LeakyRelu", alpha=0.1)
    assert _chain_depth(CANONICAL.establish(relu)) == affine_depth(relu) == 3
    assert affine_depth(leaky) == 3 and _chain_depth(CANONICAL.establish(leaky)) == 0
    assert _chain_depth(CANONICAL.establish(load(MODELS / "torch_resnet.onnx"))) == 0
    # an affine skip (Conv added to its own input) is one affine layer of the analysis form: a chain there
    assert _chain_depth(CANONICAL.establish(residual())) == affine_depth(residual()) == 3


def test_the_layered_forms_operator_facts_are_the_tables():
    assert set(layered.WEIGHTED) == {cls for op, cls in layered.LAYER_CLASSES.items() if OPERATORS[op].linear_layer}
    assert set(layered.WEIGHTED) == {layered.Dense, layered.Conv, layered.ConvTranspose}
    for op, cls in layered.LAYER_CLASSES.items():
        assert cls.OP == op
        spec = OPERATORS[op]
        keeps_channels = spec.channelwise and (spec.activation is None or spec.activation.slopes is not None)
        assert (cls in layered.CHANNELWISE) == (keeps_channels or cls is layered.Flatten), op
        if spec.activation is not None:  # an activation with a class of its own is read as that class
            node = layered.Node(op, "act", ["x"], ["y"])
            assert type(layered._READERS[op](None, node, {})) is cls
    assert set(layered.CHANNELWISE) == {layered.Relu, layered.MaxPool, layered.AvgPool, layered.BatchNorm,
                                        layered.Flatten}
    # an operator without a class of its own (LeakyRelu, MatMul, Reshape) is a Fixed layer
    assert not {"LeakyRelu", "MatMul", "Reshape"} & set(layered._READERS)


def test_the_nnenum_profile_names_the_same_blockers_whatever_the_hash_seed():
    """Which part a join's output continues was a set's first element, so it changed with ``PYTHONHASHSEED``."""
    code = ("import json, sys, nnxform; from nnxform.ir import load; from nnxform.verifiers import readability; "
            "print(json.dumps(readability(load(sys.argv[1]), 'nnenum')['blockers']))")
    runs = {json.dumps(json.loads(subprocess.run(
        [sys.executable, "-c", code, str(MODELS / "torch_dynamo_resnet.onnx")], capture_output=True, text=True,
        check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout)) for seed in (1, 3)}
    assert len(runs) == 1 and "node_add" in runs.pop()


def test_the_compiled_chain_is_read_once_for_pad_and_the_difference_analysis():
    """``CompiledNetwork.chain``: a LeakyRelu chain's layers and activations (a ReLU of a ReLU and an affine skip
    compile to chains too); a skip around a ReLU and a curved activation refused, by ``piecewise_chain`` (an
    NnxformError naming the node) and ``analysis_chain`` (NotAligned) alike."""
    from nnxform.analyzers.difference import NotAligned, analysis_chain
    from nnxform.analyzers.network import NotAChain, compile_model
    from nnxform.passes.pad import piecewise_chain

    net = compile_model(random_chain(0, [3, 5, 4, 2], activation="LeakyRelu"))
    assert [(i, act) for i, act in net.chain()] == [(1, 2), (3, 4), (5, None)]
    w = {"W": np.eye(3), "b": np.zeros(3)}
    twice = from_proto(make_model([helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="g1"),
                                   helper.make_node("Relu", ["h"], ["r1"], name="relu1"),
                                   helper.make_node("Relu", ["r1"], ["r2"], name="relu2"),
                                   helper.make_node("Gemm", ["r2", "W", "b"], ["y"], name="g2")], [1, 3], weights=w))
    for model in (twice, residual()):
        assert len(compile_model(model).chain()) == 3
    resnet = CANONICAL.establish(load(MODELS / "torch_resnet.onnx"))
    for model, why, name in ((resnet, "skip", "Add"), (random_chain(1, [3, 4, 2], activation="Sigmoid"), "curved",
                                                       "Sigmoid")):
        compiled = compile_model(model)
        with pytest.raises(NotAChain) as info:
            compiled.chain()
        assert info.value.why == why
        with pytest.raises(NnxformError, match=name):
            piecewise_chain(model, "pad")
        with pytest.raises(NotAligned):
            analysis_chain(compiled, model.shapes(), "first")
