"""Folding an element-wise affine map ``z ↦ s⊙z + t`` into a neighbouring affine layer.

Shared by ``fold-bn`` (a BatchNormalization is such a map, per channel) and ``fold-elementwise``
(a Mul or Add by a constant). ``s`` and ``t`` are given at the full shape of ``z``. Backward, the
map folds into the Conv or ConvTranspose (when it is per channel) or the Gemm / MatMul (+ Add of a
bias) producing ``z``: ``W' = diag(s)·W``, ``b' = s⊙b + t`` (a ConvTranspose's output channels are
its weight's second axis, per group; its bias is added at every position, so the shift is exact at
its borders too). Forward, it folds into the one Gemm / MatMul reading ``z`` (possibly behind a
Flatten or a Reshape to one row): ``W'' = W·diag(s)``, ``b'' = b + W·t``; or into a Conv reading
``z`` when it is per channel and the Conv has no padding (at a zero-padded border the shift would
be wrong; a pure scale is still exact).
"""

from __future__ import annotations

import numpy as np

from ..operators import CONVOLUTIONS
from ..affine import conv_weights, gemm_weights, set_conv, set_gemm
from ..operators.forward import explicit_pads
from ..ir import Model, Node

Shapes = dict[str, tuple[int, ...]]


def per_channel(a: np.ndarray) -> np.ndarray | None:
    """The per-channel values of ``a`` (shape [1, C, …]) when it is constant over the other axes."""
    if a.ndim < 3 or a.shape[0] != 1:
        return None
    ch = a.reshape(a.shape[1], -1)
    return ch[:, 0] if np.all(ch == ch[:, :1]) else None


def _reader(model: Model, tensor: str) -> Node | None:
    """The one node reading ``tensor``, as its first input, when ``tensor`` is not a graph output."""
    node = model.sole_consumer(tensor)
    return node if node is not None and node.inputs[0] == tensor else None


def _dense(model: Model, node: Node, shapes: Shapes) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W [out, in], b)`` of a constant Gemm, or of a MatMul of 2-D data by a constant matrix."""
    if node.op == "Gemm" and not node.attrs.get("transA", 0) and node.inputs[0] not in model.constants \
            and all(t in model.constants for t in node.inputs[1:] if t):
        return gemm_weights(model, node)
    if node.op == "MatMul":
        x, w = node.inputs
        if w in model.constants and x not in model.constants and model.constants[w].ndim == 2 and len(shapes[x]) == 2:
            W = model.constants[w].astype(np.float64).T
            return W, np.zeros(W.shape[0])
    return None


def _dense_with_bias(model: Model, end: Node, shapes: Shapes) -> tuple[Node, Node | None, np.ndarray, np.ndarray] | None:
    """``(dense node, bias Add or None, W, b)`` when ``end`` is a dense node or an Add of a bias to one."""
    if (wb := _dense(model, end, shapes)) is not None:
        return end, None, *wb
    data = model.data_inputs(end)
    if end.op != "Add" or len(end.inputs) != 2 or len(data) != 1:
        return None
    dense = model.producer(data[0])
    if dense is None or model.sole_consumer(data[0]) is not end or (wb := _dense(model, dense, shapes)) is None:
        return None
    W, b = wb
    c = next(model.constants[t] for t in end.inputs if t in model.constants).astype(np.float64)
    row = (1, W.shape[0])
    if np.broadcast_shapes(c.shape, row) != row:
        return None
    return dense, end, W, b + np.broadcast_to(c, row).reshape(-1)


def _is_constant_conv(model: Model, node: Node, ops: tuple[str, ...] = ("Conv",)) -> bool:
    """True for a node of ``ops`` with constant weights (and bias, if any) on a data input."""
    return node.op in ops and node.inputs[0] not in model.constants and all(
        t in model.constants for t in node.inputs[1:] if t)


def _kernel_scaled(model: Model, node: Node, s: np.ndarray, t: np.ndarray) -> None:
    """Make Conv or ConvTranspose ``node`` compute ``s⊙y + t`` of its output ``y`` (``s``, ``t`` per output
    channel): each weight scaled by the ``s`` of the output channel it writes, the bias (zero when absent) by
    ``s``, plus ``t``."""
    W = model.constants[node.inputs[1]].astype(np.float64)
    if node.op == "Conv":  # [out, in/group, *kernel]
        channel = np.arange(W.shape[0])[:, None]
    else:  # ConvTranspose [in, out/group, *kernel]: input channel i writes group i // (in/group)'s block of outputs
        per_group = W.shape[0] // int(node.attrs.get("group", 1))
        channel = (np.arange(W.shape[0]) // per_group)[:, None] * W.shape[1] + np.arange(W.shape[1])
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    b = model.constants[bias].astype(np.float64).reshape(-1) if bias else np.zeros(s.size)
    set_conv(model, node, W * s[channel].reshape(channel.shape + (1,) * (W.ndim - 2)), s * b + t)


def fold_backward(model: Model, node: Node, s: np.ndarray, t: np.ndarray, shapes: Shapes) -> str | None:
    """Fold ``node`` (computing ``s⊙z + t`` of its data input z) into z's producer; describe it, or None.

    The producer takes over ``node``'s output name, so graph outputs keep their names.
    """
    src = model.data_inputs(node)[0]
    prod = model.producer(src)
    if prod is None or model.sole_consumer(src) is not node:
        return None
    if _is_constant_conv(model, prod, tuple(CONVOLUTIONS)):
        sc, tc = per_channel(s), per_channel(t)
        if sc is None or tc is None:
            return None
        _kernel_scaled(model, prod, sc, tc)
        line = f"folded into {prod.op} '{prod.name}'"
    elif s.ndim == 2 and (found := _dense_with_bias(model, prod, shapes)) is not None:
        dense, add, W, b = found
        line = (f"folded into {dense.op} '{dense.name}'" + (f" + Add '{add.name}'" if add else "")
                + (", now a Gemm" if dense.op == "MatMul" else ""))
        set_gemm(model, dense, s[0][:, None] * W, s[0] * b + t[0])
        if add is not None:
            model.nodes.remove(add)
        prod = dense
    else:
        return None
    prod.outputs = [node.outputs[0]]
    model.nodes.remove(node)
    return line


def fold_forward(model: Model, node: Node, s: np.ndarray, t: np.ndarray, shapes: Shapes) -> str | None:
    """Fold ``node`` (computing ``s⊙z + t`` of its data input z) into the layer reading its output; describe it, or None."""
    x, out = model.data_inputs(node)[0], node.outputs[0]
    nxt = _reader(model, out)
    if nxt is None:
        return None
    rewire, via = nxt, ""
    if nxt.op in ("Flatten", "Reshape"):
        flat = nxt.outputs[0]
        if shapes[flat] != (1, int(np.prod(shapes[x]))) or (after := _reader(model, flat)) is None:
            return None
        s, t = s.reshape(1, -1), t.reshape(1, -1)
        via, nxt = f" through {nxt.op} '{nxt.name}'", after
    if s.ndim == 2 and (wb := _dense(model, nxt, shapes)) is not None:
        W, b = wb
        line = f"folded into {nxt.op} '{nxt.name}'{via}" + (", now a Gemm" if nxt.op == "MatMul" else "")
        set_gemm(model, nxt, W * s[0][None, :], b + W @ t[0])
    elif _is_constant_conv(model, nxt) and not via:
        sc, tc = per_channel(s), per_channel(t)
        W, b = conv_weights(model, nxt)
        if sc is None or tc is None or (np.any(tc) and any(explicit_pads(nxt.attrs, shapes[out][2:], W.shape[2:]))):
            return None
        groups = nxt.attrs.get("group", 1)
        per_group_in, per_group_out = W.shape[1], W.shape[0] // groups
        # input channel read by weight W[o, j]: (group of o)·(channels per group) + j
        channel = (np.arange(W.shape[0]) // per_group_out)[:, None] * per_group_in + np.arange(per_group_in)[None, :]
        scaled = W * sc[channel].reshape(channel.shape + (1,) * (W.ndim - 2))
        set_conv(model, nxt, scaled, b + np.einsum("ojk,oj->o", W.reshape(channel.shape + (-1,)), tc[channel]))
        line = f"folded into Conv '{nxt.name}'"
    else:
        return None
    rewire.inputs[0] = x
    model.nodes.remove(node)
    return line
