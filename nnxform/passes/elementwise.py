"""Element-wise affine nodes (Sub/Div/Mul/Add with a constant): rewrite and fold into affine layers.

``Sub`` and ``Div`` become ``Add`` and ``Mul`` (Marabou 2.0.0 mis-encodes ``Sub``). A ``Mul``/``Add``
by a constant, ``y = s ⊙ x + t``, is then folded forward into the next Gemm (directly or through a
Flatten) or padding-free Conv, or backward into the Gemm/Conv producing ``x`` — the input
normalisation of most exported networks disappears this way.
"""

from __future__ import annotations

import numpy as np

from ..affine import conv_weights, gemm_weights, is_affine, set_conv, set_gemm
from ..errors import UnsupportedOperator
from ..ir import Model, Node
from . import PassReport, register


@register("rewrite-sub-div")
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


def _per_channel(a: np.ndarray) -> np.ndarray | None:
    """The per-channel values of ``a`` (shape [1, C, ...]) when constant over the other axes."""
    if a.ndim < 3 or a.shape[0] != 1:
        return None
    ch = a.reshape(a.shape[1], -1)
    return ch[:, 0] if np.all(ch == ch[:, :1]) else None


def _fold_forward(model: Model, node: Node, s: np.ndarray, t: np.ndarray) -> str | None:
    """Fold ``y = s⊙x + t`` into the next affine layer; return what it folded into, or None."""
    x, y = model.data_inputs(node)[0], node.outputs[0]
    nxt = model.sole_consumer(y)
    if nxt is None:
        return None
    flatten = None
    if nxt.op == "Flatten" and nxt.attrs.get("axis", 1) == 1 and s.shape[0] == 1:
        flatten, nxt = nxt, model.sole_consumer(nxt.outputs[0])
        if nxt is None:
            return None
    if nxt.op == "Gemm" and is_affine(model, nxt) and not nxt.attrs.get("transA", 0) and (flatten or s.ndim == 2):
        W, b = gemm_weights(model, nxt)
        sf, tf = s.reshape(-1), t.reshape(-1)
        set_gemm(model, nxt, W * sf[None, :], b + W @ tf)
    elif nxt.op == "Conv" and flatten is None and is_affine(model, nxt):
        sc, tc = _per_channel(s), _per_channel(t)
        pads = nxt.attrs.get("pads") or [0]
        if sc is None or tc is None or (any(pads) and np.any(tc != 0)):
            return None
        W, b = conv_weights(model, nxt)
        og = W.shape[0] // nxt.attrs.get("group", 1)
        cg = W.shape[1]
        chan = (np.arange(W.shape[0])[:, None] // og) * cg + np.arange(cg)[None, :]  # input channel of W[o, j]
        expand = (slice(None), slice(None)) + (None,) * (W.ndim - 2)
        set_conv(model, nxt, W * sc[chan][expand], b + (W * tc[chan][expand]).reshape(W.shape[0], -1).sum(axis=1))
    else:
        return None
    (flatten or nxt).inputs[0] = x
    model.nodes.remove(node)
    return f"{nxt.op} '{nxt.name}'"


def _fold_backward(model: Model, node: Node, s: np.ndarray, t: np.ndarray) -> str | None:
    """Fold ``y = s⊙x + t`` into the Gemm/Conv producing ``x``; return what it folded into, or None."""
    x = model.data_inputs(node)[0]
    prev = model.producer(x)
    if prev is None or not is_affine(model, prev) or model.sole_consumer(x) is not node:
        return None
    if prev.op == "Gemm":
        if s.ndim != 2 or prev.attrs.get("transA", 0):
            return None
        W, b = gemm_weights(model, prev)
        set_gemm(model, prev, s[0][:, None] * W, s[0] * b + t[0])
    else:
        sc, tc = _per_channel(s), _per_channel(t)
        if sc is None or tc is None:
            return None
        W, b = conv_weights(model, prev)
        set_conv(model, prev, sc.reshape((-1,) + (1,) * (W.ndim - 1)) * W, sc * b + tc)
    model.bypass(node)
    return f"{prev.op} '{prev.name}'"


@register("fold-elementwise")
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
        target = _fold_forward(model, node, *st) or _fold_backward(model, node, *st)
        if target:
            report.add("folded", f"{node.op} '{node.name}' folded into {target}")
    model.prune()
    return model, report
