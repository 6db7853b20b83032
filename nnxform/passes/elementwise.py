"""Element-wise affine nodes (Sub/Div/Mul/Add with a constant): rewrite and fold into affine layers.

``Sub`` and ``Div`` become ``Add`` and ``Mul`` (Marabou 2.0.0 mis-encodes ``Sub``). A ``Mul``/``Add``
by a constant, ``y = s ⊙ x + t``, is then folded into a neighbouring affine layer where exact
(see ``scale_shift``) — the input normalisation of most exported networks disappears this way.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOperator
from ..ir import Model, Node
from . import PassReport, register
from .scale_shift import fold_backward, fold_forward


@register("rewrite-sub-div", requires=frozenset(), ensures=frozenset())
def rewrite_sub_div(model: Model) -> tuple[Model, PassReport]:
    """Rewrite ``Sub`` as ``Add`` (of a negated constant, or of ``Mul(·, −1)``) and ``Div`` by a constant as ``Mul``."""
    model = model.copy()
    report = PassReport("rewrite-sub-div")
    for node in [n for n in model.nodes if n.op in ("Sub", "Div")]:
        a, b = node.inputs
        original = node.op
        if node.op == "Div":
            if b not in model.constants:
                raise UnsupportedOperator(f"Div node '{node.name}' divides by data; not an affine operation")
            node.op = "Mul"
            node.inputs = [a, model.add_constant(f"{node.name}_inv", 1.0 / model.constants[b].astype(np.float64))]
        elif b in model.constants:
            node.op = "Add"
            node.inputs = [a, model.add_constant(f"{node.name}_neg", -model.constants[b].astype(np.float64))]
        else:  # a − b  =  a + (−1)·b, with a data or constant
            neg = Node("Mul", model.fresh_name(f"{node.name}_negate"), [b, model.add_constant(f"{node.name}_m1", np.array(-1.0))],
                       [model.fresh_name(f"{node.name}_negated")])
            model.nodes.insert(model.nodes.index(node), neg)
            node.op = "Add"
            node.inputs = [a, neg.outputs[0]]
        report.add("rewritten", f"{original} '{node.name}' rewritten as {node.op}")
    model.prune()
    return model, report


def _scale_shift(model: Model, node: Node, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(s, t)`` broadcast to ``shape`` for a Mul/Add of one data tensor by a constant, else None."""
    if node.op not in ("Mul", "Add") or len(model.data_inputs(node)) != 1:
        return None
    c = next(model.constants[t] for t in node.inputs if t in model.constants).astype(np.float64)
    if np.broadcast_shapes(c.shape, shape) != tuple(shape):
        return None
    c = np.broadcast_to(c, shape)
    return (c, np.zeros(shape)) if node.op == "Mul" else (np.ones(shape), c)


@register("fold-elementwise", requires=frozenset(), ensures=frozenset())
def fold_elementwise(model: Model) -> tuple[Model, PassReport]:
    """Fold each Mul/Add-by-constant into a neighbouring affine layer where that is exact."""
    model = model.copy()
    report = PassReport("fold-elementwise")
    shapes = model.shapes()
    for node in [n for n in model.nodes if n.op in ("Mul", "Add")]:
        data = model.data_inputs(node)
        if len(data) != 1:
            continue
        st = _scale_shift(model, node, shapes[data[0]])
        if st is None:
            continue
        line = fold_forward(model, node, *st, shapes) or fold_backward(model, node, *st, shapes)
        if line:
            report.add("folded", f"{node.op} '{node.name}' {line}")
    model.prune()
    return model, report
