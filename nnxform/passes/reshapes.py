"""Shape-only nodes: collapse Reshape/Flatten/Squeeze/Unsqueeze chains into one Flatten (or Reshape),
and absorb a Transpose that feeds a Flatten→Gemm into the Gemm's weights (NHWC exports). Under a symbolic batch
dimension a Reshape that keeps the batch axis reads -1 there, so the written file still takes any batch."""

from __future__ import annotations

import numpy as np

from ..affine import gemm_weights, is_affine, set_gemm
from ..ir import Model, Node
from . import PassReport, register

_SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _perm(node: Node, rank: int) -> list[int]:
    """A Transpose's permutation; without ``perm`` ONNX reverses the axes."""
    return list(node.attrs.get("perm") or reversed(range(rank)))


def _moves_only_unit_axes(shape: tuple[int, ...], perm: list[int]) -> bool:
    """A Transpose is a mere reshape when the non-unit axes keep their order."""
    kept = [p for p in perm if shape[p] != 1]
    return kept == sorted(kept)


def _symbolic_batch(model: Model) -> bool:
    """The model declares a symbolic batch dimension (its shapes here are those of a batch of 1)."""
    return bool(model.input_dims) and isinstance(model.input_dims[0], str)


def _keeps_batch(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """Both shapes lead with the batch axis (1 here), which a reshape between them keeps."""
    return bool(in_shape) and bool(out_shape) and in_shape[0] == 1 == out_shape[0]


def _as_reshape(model: Model, node: Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    """Turn ``node`` into the simplest node producing ``out_shape`` from its data input of ``in_shape``: a Flatten,
    or a Reshape whose target leads with -1 where the node keeps a symbolic batch axis first, so that it reshapes
    each sample of any batch (a 1 there would tie the written file to a batch of 1)."""
    if len(out_shape) == 2 and _keeps_batch(in_shape, out_shape):
        node.op, node.inputs, node.attrs = "Flatten", node.inputs[:1], {"axis": 1}
        return
    target = np.asarray(out_shape, np.int64)
    moves_batch = node.op == "Transpose" and _perm(node, len(in_shape))[0] != 0
    if _symbolic_batch(model) and _keeps_batch(in_shape, out_shape) and not moves_batch:
        target[0] = -1
    shape_const = model.add_constant(f"{node.name}_shape", target)
    node.op, node.inputs, node.attrs = "Reshape", [node.inputs[0], shape_const], {}


def _rewritable(model: Model, node: Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """A Reshape keeping the batch axis that ``_as_reshape`` writes better: as a Flatten, or, under a symbolic
    batch, with -1 for the literal 1 that leads its target (``Shape`` folded at a batch of 1 gives one)."""
    if node.op != "Reshape" or not _keeps_batch(in_shape, out_shape):
        return False
    return len(out_shape) == 2 or (_symbolic_batch(model) and int(model.constants[node.inputs[1]][0]) == 1)


@register("simplify-reshapes", requires=frozenset(), ensures=frozenset())
def simplify_reshapes(model: Model) -> tuple[Model, PassReport]:
    """Merge chains of shape-only nodes, drop ones that keep the shape, prefer Flatten."""
    model = model.copy()
    report = PassReport("simplify-reshapes")
    changed = True
    while changed:
        changed = False
        shapes = model.shapes()
        for node in model.nodes:
            is_shape = node.op in _SHAPE_OPS or (
                node.op == "Transpose" and _moves_only_unit_axes(shapes[node.inputs[0]],
                                                                 _perm(node, len(shapes[node.inputs[0]])))
            )
            if not is_shape:
                continue
            src, out_shape = node.inputs[0], shapes[node.outputs[0]]
            prev = model.producer(src)
            if prev is not None and prev.op in _SHAPE_OPS and model.sole_consumer(src) is node:
                node.inputs[0] = prev.inputs[0]
                model.nodes.remove(prev)
                _as_reshape(model, node, shapes[prev.inputs[0]], out_shape)
                report.add("merged", f"{prev.op} '{prev.name}' merged into '{node.name}'")
            elif shapes[src] == out_shape:
                model.bypass(node)
                report.add("removed", f"{node.op} '{node.name}' keeps the shape; removed")
            elif node.op == "Transpose" or _rewritable(model, node, shapes[src], out_shape):
                _as_reshape(model, node, shapes[src], out_shape)
                report.add("rewritten", f"'{node.name}' rewritten as {node.op}")
            else:
                continue
            changed = True
            break
    model.prune()
    return model, report


@register("absorb-transpose", requires=frozenset(), ensures=frozenset())
def absorb_transpose(model: Model) -> tuple[Model, PassReport]:
    """``Transpose → Flatten → Gemm`` becomes ``Flatten → Gemm`` with the Gemm's columns permuted."""
    model = model.copy()
    report = PassReport("absorb-transpose")
    shapes = model.shapes()
    for node in [n for n in model.nodes if n.op == "Transpose"]:
        flat = model.sole_consumer(node.outputs[0])
        if flat is None or flat.op != "Flatten" or flat.attrs.get("axis", 1) != 1:
            continue
        gemm = model.sole_consumer(flat.outputs[0])
        in_shape = shapes[node.inputs[0]]
        if gemm is None or not is_affine(model, gemm) or gemm.op != "Gemm" or gemm.attrs.get("transA", 0) or in_shape[0] != 1:
            continue
        perm = _perm(node, len(in_shape))
        if perm[0] != 0:
            continue
        # flatten(transpose(x))[j] = flatten(x)[idx[j]]
        idx = np.arange(int(np.prod(in_shape))).reshape(in_shape).transpose(perm).ravel()
        W, b = gemm_weights(model, gemm)
        W2 = np.empty_like(W)
        W2[:, idx] = W
        set_gemm(model, gemm, W2, b)
        flat.inputs[0] = node.inputs[0]
        model.nodes.remove(node)
        report.add("absorbed", f"Transpose '{node.name}' absorbed into Gemm '{gemm.name}'")
    model.prune()
    return model, report
