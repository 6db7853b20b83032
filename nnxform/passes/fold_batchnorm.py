"""fold-bn: remove every BatchNormalization, folding it into a neighbouring affine layer where exact.

Many verifiers reject BatchNormalization, and folding removes a layer. With ``s = γ/√(σ² + ε)``
and ``t = β − s⊙μ`` a BN is the per-channel affine map ``z ↦ s⊙z + t`` (DESIGN.md, "Batch-norm
folding"). In order of preference a BN is folded *backward* into the Conv or the Gemm / MatMul
(with an optional Add of a constant bias) producing its input, *forward* into the one Gemm /
MatMul (possibly behind a Flatten or Reshape) or unpadded Conv reading its output, or else
rewritten as an *explicit* diagonal Gemm or depthwise 1×1 Conv.
"""

from __future__ import annotations

import numpy as np

from ..affine import conv_weights, gemm_weights, set_conv, set_gemm
from ..errors import NnxformError, UnsupportedOperator
from ..evaluate import explicit_pads
from ..ir import Model, Node
from . import PassReport, register

Shapes = dict[str, tuple[int, ...]]


@register("fold-bn")
def fold_batchnorm(model: Model) -> tuple[Model, PassReport]:
    """Replace every BatchNormalization by folding it into an affine neighbour (or an explicit affine node)."""
    model = model.copy()
    report = PassReport("fold-bn", counts={"backward": 0, "forward": 0, "explicit": 0})
    shapes = model.shapes()  # folding never changes the shape of a tensor that survives it
    for bn in [n for n in model.nodes if n.op == "BatchNormalization"]:
        name = bn.name  # an explicit rewrite renames the node
        s, t = _scale_shift(model, bn, shapes[bn.inputs[0]])
        for kind, fold in (("backward", _fold_backward), ("forward", _fold_forward), ("explicit", _make_explicit)):
            line = fold(model, bn, s, t, shapes)
            if line is not None:
                report.add(kind, f"BN '{name}' {line} ({kind})")
                break
    model.prune()
    return model, report


def _scale_shift(model: Model, bn: Node, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``s = γ/√(σ² + ε)`` and ``t = β − s⊙μ``, so that BN(z) = s⊙z + t."""
    stats = bn.inputs[1:5]
    missing = [name for name in stats if name not in model.constants]
    if missing or len(shape) < 2:
        raise NnxformError(f"BatchNormalization '{bn.name}' needs constant statistics and an input of rank ≥ 2")
    gamma, beta, mean, var = (
        np.broadcast_to(model.constants[name].astype(np.float64).reshape(-1), shape[1:2]) for name in stats
    )
    s = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
    return s, beta - s * mean


def _only_reader(model: Model, tensor: str, node: Node) -> bool:
    """``node`` is the one node reading ``tensor`` (once), and ``tensor`` is not a graph output."""
    return model.consumers(tensor) == [node] and node.inputs.count(tensor) == 1 and not model.is_graph_output(tensor)


def _constant_gemm(model: Model, node: Node) -> bool:
    """A Gemm with constant B and C and transA=0, so that ``gemm_weights`` applies."""
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    return (node.op == "Gemm" and not node.attrs.get("transA", 0) and node.inputs[1] in model.constants
            and (not bias or bias in model.constants))


def _constant_conv(model: Model, node: Node) -> bool:
    """A Conv with constant weights and bias, so that ``conv_weights`` applies."""
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    return node.op == "Conv" and node.inputs[1] in model.constants and (not bias or bias in model.constants)


def _constant_matmul(model: Model, node: Node, shapes: Shapes) -> bool:
    """MatMul of a 2-D data tensor by a constant matrix on the right: a Gemm without bias."""
    if node.op != "MatMul":
        return False
    x, w = node.inputs
    return w in model.constants and x not in model.constants and model.constants[w].ndim == 2 and len(shapes[x]) == 2


def _reader(model: Model, tensor: str) -> Node | None:
    """The one node reading ``tensor``, as its first input only, when ``tensor`` is not a graph output."""
    readers = model.consumers(tensor)
    if len(readers) == 1 and _only_reader(model, tensor, readers[0]) and readers[0].inputs[0] == tensor:
        return readers[0]
    return None


def _matmul_weights(model: Model, node: Node) -> tuple[np.ndarray, np.ndarray]:
    """``(W [out, in], zero bias)`` of a MatMul by a constant matrix on the right."""
    W = model.constants[node.inputs[1]].astype(np.float64).T
    return W, np.zeros(W.shape[0])


def _dense(model: Model, node: Node, shapes: Shapes) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W [out, in], b)`` of a constant Gemm or of a MatMul by a constant matrix, else None."""
    if _constant_gemm(model, node):
        return gemm_weights(model, node)
    return _matmul_weights(model, node) if _constant_matmul(model, node, shapes) else None


def _dense_add(model: Model, end: Node, shapes: Shapes) -> tuple[Node, list[Node], np.ndarray, np.ndarray] | None:
    """``(dense node, [Add], W, b)`` when ``end`` is a Gemm/MatMul, or an Add of a per-output constant to one."""
    if (wb := _dense(model, end, shapes)) is not None:
        return end, [], *wb
    data = [t for t in end.inputs if t not in model.constants]
    if end.op != "Add" or len(end.inputs) != 2 or len(data) != 1:
        return None
    dense = model.producer(data[0])
    if dense is None or not _only_reader(model, data[0], end) or (wb := _dense(model, dense, shapes)) is None:
        return None
    W, b = wb
    c = next(model.constants[t] for t in end.inputs if t in model.constants).astype(np.float64)
    row = (1, W.shape[0])
    if np.broadcast_shapes(c.shape, row) != row:
        return None
    return dense, [end], W, b + np.broadcast_to(c, row).reshape(-1)


def _fold_backward(model: Model, bn: Node, s: np.ndarray, t: np.ndarray, shapes: Shapes) -> str | None:
    """Fold into the affine node producing the BN input (W' = diag(s)·W, b' = s⊙b + t) when only the BN reads it."""
    src = bn.inputs[0]
    prod = model.producer(src)
    if prod is None or not _only_reader(model, src, bn):
        return None
    if _constant_conv(model, prod):
        W, b = conv_weights(model, prod)
        set_conv(model, prod, s.reshape((-1,) + (1,) * (W.ndim - 1)) * W, s * b + t)
        line = f"folded into Conv '{prod.name}'"
    elif (found := _dense_add(model, prod, shapes)) is not None:
        dense, adds, W, b = found
        line = (f"folded into {dense.op} '{dense.name}'" + "".join(f" + Add '{a.name}'" for a in adds)
                + (", now a Gemm" if dense.op == "MatMul" else ""))
        set_gemm(model, dense, s[:, None] * W, s * b + t)
        for a in adds:
            model.nodes.remove(a)
        prod = dense
    else:
        return None
    prod.outputs = [bn.outputs[0]]
    model.nodes.remove(bn)
    return line


def _fold_forward(model: Model, bn: Node, s: np.ndarray, t: np.ndarray, shapes: Shapes) -> str | None:
    """Fold into the one Gemm/MatMul (W'' = W·diag(s), b'' = b + W·t) or unpadded Conv reading the BN output.

    A Flatten or Reshape to one row may sit in between: channel c then covers the features
    c·H·W … (c+1)·H·W − 1 (row-major). A padded Conv is not exact at its zero-padded border.
    """
    x, out = bn.inputs[0], bn.outputs[0]
    nxt = _reader(model, out)
    if nxt is None:
        return None
    rewire, via = nxt, ""
    if nxt.op in ("Flatten", "Reshape"):
        flat = nxt.outputs[0]
        if shapes[flat] != (1, int(np.prod(shapes[x]))) or (after := _reader(model, flat)) is None:
            return None
        per_channel = (1, -1) + (1,) * (len(shapes[x]) - 2)
        s, t = (np.broadcast_to(v.reshape(per_channel), shapes[x]).reshape(-1) for v in (s, t))
        via, nxt = f" through {nxt.op} '{nxt.name}'", after
    if (wb := _dense(model, nxt, shapes)) is not None:
        W, b = wb
        line = f"folded into {nxt.op} '{nxt.name}'{via}" + (", now a Gemm" if nxt.op == "MatMul" else "")
        set_gemm(model, nxt, W * s[None, :], b + W @ t)
    elif _constant_conv(model, nxt) and not via:
        W, b = conv_weights(model, nxt)
        if any(explicit_pads(nxt.attrs, shapes[out][2:], W.shape[2:])):
            return None
        groups = nxt.attrs.get("group", 1)
        per_group_in, per_group_out = W.shape[1], W.shape[0] // groups
        # input channel read by weight W[o, j]: (group of o)·(channels per group) + j
        channel = (np.arange(W.shape[0]) // per_group_out)[:, None] * per_group_in + np.arange(per_group_in)[None, :]
        scaled = W * s[channel].reshape(channel.shape + (1,) * (W.ndim - 2))
        set_conv(model, nxt, scaled, b + np.einsum("ojk,oj->o", W.reshape(channel.shape + (-1,)), t[channel]))
        line = f"folded into Conv '{nxt.name}'"
    else:
        return None
    rewire.inputs[0] = x
    model.nodes.remove(bn)
    return line


def _make_explicit(model: Model, bn: Node, s: np.ndarray, t: np.ndarray, shapes: Shapes) -> str:
    """Rewrite the BN in place as a diagonal Gemm (2-D input) or a depthwise 1×1 Conv (3-D to 5-D input)."""
    rank = len(shapes[bn.inputs[0]])
    bn.name = model.fresh_name(f"{bn.name}_affine")
    if rank == 2:
        set_gemm(model, bn, np.diag(s), t)
        return f"made an explicit diagonal Gemm '{bn.name}'"
    if rank > 5:
        raise UnsupportedOperator(f"BatchNormalization on a rank-{rank} tensor cannot be made a Conv")
    nd = rank - 2
    bn.op, bn.attrs = "Conv", {"kernel_shape": [1] * nd, "group": len(s)}
    set_conv(model, bn, s.reshape((-1,) + (1,) * (nd + 1)), t)
    return f"made an explicit depthwise Conv '{bn.name}'"
