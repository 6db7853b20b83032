"""Shape-only nodes: collapse Reshape/Flatten/Squeeze/Unsqueeze chains into one Flatten (or Reshape),
and absorb a Transpose that feeds a Flatten→Gemm into the Gemm's weights (NHWC exports)."""

from __future__ import annotations

import numpy as np

from ..affine import gemm_weights, is_affine, set_gemm
from ..ir import Model, Node
from . import PassReport, register

_SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _moves_only_unit_axes(shape: tuple[int, ...], perm: list[int]) -> bool:
    """A Transpose is a mere reshape when the non-unit axes keep their order."""
    kept = [p for p in perm if shape[p] != 1]
    return kept == sorted(kept)


def _as_reshape(model: Model, node: Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    """Turn ``node`` into the simplest node producing ``out_shape`` from its data input of ``in_shape``."""
    if len(out_shape) == 2 and in_shape and in_shape[0] == 1 and out_shape[0] == 1:
        node.op, node.inputs, node.attrs = "Flatten", node.inputs[:1], {"axis": 1}
    else:
        shape_const = model.add_constant(f"{node.name}_shape", np.asarray(out_shape, np.int64))
        node.op, node.inputs, node.attrs = "Reshape", [node.inputs[0], shape_const], {}


@register("simplify-reshapes")
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
                node.op == "Transpose" and _moves_only_unit_axes(shapes[node.inputs[0]], node.attrs.get("perm") or [])
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
            elif node.op == "Transpose" or (node.op == "Reshape" and len(out_shape) == 2 and out_shape[0] == 1 == shapes[src][0]):
                _as_reshape(model, node, shapes[src], out_shape)
                report.add("rewritten", f"'{node.name}' rewritten as {node.op}")
            else:
                continue
            changed = True
            break
    model.prune()
    return model, report


@register("absorb-transpose")
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
        perm = node.attrs.get("perm") or list(reversed(range(len(in_shape))))
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
