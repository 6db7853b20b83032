"""The IR's graph bookkeeping: the topological sort at load (graphlib, deterministic) and the tensor index
behind ``producer``/``consumers``/``sole_consumer``, which must stay right while passes edit nodes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from onnx import helper

from nnxform.errors import NnxformError
from nnxform.ir import Model, Node, from_proto, load
from nnxform.ir.loading import _toposort
from nnxform.passes import PASSES

from conftest import MODELS, make_model


def _rounds(nodes: list[Node], available: set[str]) -> list[str]:
    """The order the loader promises, by its definition: round by round, each round every node whose inputs are
    all computed, in file order (what ``_toposort`` did before graphlib, in quadratic time)."""
    have, pending, ordered = set(available) | {""}, list(nodes), []
    while pending:
        ready = [n for n in pending if all(t in have for t in n.inputs)]
        for n in ready:
            pending.remove(n)
            ordered.append(n.name)
            have.update(n.outputs)
    return ordered


def _random_dag(rng: random.Random, size: int) -> list[Node]:
    """``size`` nodes, each reading one to three earlier tensors (or the input), in a shuffled file order."""
    nodes = [Node("Add", f"n{i}", rng.sample(["x"] + [f"t{j}" for j in range(i)], min(i + 1, rng.randint(1, 3))),
                  [f"t{i}"]) for i in range(size)]
    rng.shuffle(nodes)
    return nodes


def test_the_load_order_is_round_by_round_in_file_order():
    rng = random.Random(0)
    for size in (1, 2, 5, 20, 60):
        for _ in range(20):
            nodes = _random_dag(rng, size)
            assert [n.name for n in _toposort(nodes, {"x"}, "test")] == _rounds(nodes, {"x"})


def test_the_same_file_gives_the_same_bytes():
    rng = np.random.default_rng(0)
    w = {name: rng.normal(size=(4, 4)) for name in ("A", "B", "C")}
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["a"], name="a"),
        helper.make_node("Relu", ["a"], ["ra"], name="ra"),
        helper.make_node("MatMul", ["x", "B"], ["b"], name="b"),
        helper.make_node("Relu", ["b"], ["rb"], name="rb"),
        helper.make_node("Add", ["ra", "rb"], ["s"], name="s"),
        helper.make_node("MatMul", ["s", "C"], ["y"], name="y"),
    ]
    proto = make_model(nodes[::-1], [1, 4], weights=w)
    assert len({from_proto(proto).to_bytes() for _ in range(3)}) == 1
    assert [n.name for n in from_proto(proto).nodes] == ["b", "a", "rb", "ra", "s", "y"]


def test_a_graph_that_cannot_be_ordered_is_refused_naming_why():
    cycle = [helper.make_node("Relu", ["x", "c"], ["a"], name="a"), helper.make_node("Relu", ["a"], ["c"], name="c")]
    with pytest.raises(NnxformError, match="the graph has a cycle"):
        from_proto(make_model(cycle + [helper.make_node("Relu", ["c"], ["y"])], [1, 4]))
    with pytest.raises(NnxformError, match=r"tensors \['ghost'\] are never produced"):
        from_proto(make_model([helper.make_node("Add", ["x", "ghost"], ["y"])], [1, 4]))


def _scan(model: Model) -> tuple[dict, dict]:
    """What the index must say, by scanning every node (the definition it replaces)."""
    tensors = {t for n in model.nodes for t in n.inputs + n.outputs} | set(model.output_names) | {"nothing"}
    producers = {t: next((n for n in model.nodes if t in n.outputs), None) for t in tensors}
    consumers = {t: [n for n in model.nodes if t in n.inputs] for t in tensors}
    return producers, consumers


def _assert_index_right(model: Model) -> None:
    producers, consumers = _scan(model)
    for t in producers:
        assert model.producer(t) is producers[t]
        assert [id(n) for n in model.consumers(t)] == [id(n) for n in consumers[t]]
        only = consumers[t][0] if len(consumers[t]) == 1 and consumers[t][0].inputs.count(t) == 1 \
            and t not in model.output_names else None
        assert model.sole_consumer(t) is only


def test_the_tensor_index_follows_every_kind_of_edit():
    model = load(MODELS / "torch_resnet.onnx")
    _assert_index_right(model)
    relu = next(n for n in model.nodes if n.op == "Relu")
    edits = [
        lambda: relu.inputs.__setitem__(0, "x_edited"),
        lambda: setattr(relu, "inputs", [relu.inputs[0], "y_extra"]),
        lambda: relu.inputs.append("z"),
        lambda: relu.outputs.insert(0, "first"),
        lambda: model.nodes.remove(relu),
        lambda: model.nodes.insert(0, Node("Relu", "new", ["x"], ["fresh"])),
        lambda: model.nodes.append(Node("Relu", "last", ["fresh"], ["fresher"])),
        lambda: setattr(model, "nodes", model.nodes[2:]),
        lambda: model.nodes.pop(),
        lambda: model.nodes.reverse(),
        lambda: model.rename_uses(model.nodes[-1].outputs[0], "renamed"),
    ]
    for edit in edits:
        edit()
        _assert_index_right(model)


def test_copies_and_shared_nodes_keep_their_own_index_right():
    model = load(MODELS / "mnist-net_256x2.onnx")
    copy = model.copy()
    _assert_index_right(copy)
    copy.nodes[0].inputs[0] = "elsewhere"
    _assert_index_right(copy)
    _assert_index_right(model)
    canon, _ = PASSES["canon"](model)
    _assert_index_right(canon)
