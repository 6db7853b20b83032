"""Dense layers in canonical Gemm form: MatMul → Gemm, Gemm attributes normalised, and consecutive
affine layers with nothing between them merged into one."""

from __future__ import annotations

import numpy as np

from ..affine import gemm_weights, is_affine, set_gemm
from ..ir import Model, Node
from . import PassReport, register


@register("canonical-gemm", requires=frozenset(), ensures=frozenset())
def canonical_gemm(model: Model) -> tuple[Model, PassReport]:
    """MatMul by a constant on a 2-D input becomes a Gemm; every Gemm gets ``W [out,in]``, ``b``, transB=1."""
    model = model.copy()
    report = PassReport("canonical-gemm")
    shapes = model.shapes()
    for node in list(model.nodes):
        if node.op == "MatMul":
            x, w = node.inputs
            if w not in model.constants or x in model.constants or len(shapes[x]) != 2 or model.constants[w].ndim != 2:
                continue
            W = model.constants[w].astype(np.float64).T
            set_gemm(model, node, W, np.zeros(W.shape[0]))
            report.add("matmul", f"MatMul '{node.name}' → Gemm")
        elif node.op == "Gemm" and node.inputs[1] in model.constants and node.inputs[0] not in model.constants:
            if node.attrs == {"transB": 1} and len(node.inputs) == 3 and model.constants[node.inputs[2]].ndim == 1:
                continue
            if node.attrs.get("transA", 0):
                if shapes[node.inputs[0]][1] != 1:
                    continue
                _insert_row_reshape(model, node, shapes[node.inputs[0]][0])
                node.attrs["transA"] = 0
            set_gemm(model, node, *gemm_weights(model, node))
            report.add("gemm", f"Gemm '{node.name}' normalised")
    model.prune()
    return model, report


def _insert_row_reshape(model: Model, node: Node, k: int) -> None:
    """Feed ``node`` its [K, 1] input as a row [1, K] (what transA=1 does for one column)."""
    shape = model.add_constant(f"{node.name}_row", np.array([1, k], np.int64))
    out = model.fresh_name(f"{node.name}_row_out")
    reshape = Node("Reshape", model.fresh_name(f"{node.name}_row"), [node.inputs[0], shape], [out])
    model.nodes.insert(model.nodes.index(node), reshape)
    node.inputs[0] = out


@register("merge-affine", requires=frozenset(), ensures=frozenset())
def merge_affine(model: Model) -> tuple[Model, PassReport]:
    """Gemm → Gemm with nothing between becomes one Gemm: W = W₂W₁, b = W₂b₁ + b₂."""
    model = model.copy()
    report = PassReport("merge-affine")
    merged = True
    while merged:
        merged = False
        for first in model.nodes:
            if first.op != "Gemm" or not is_affine(model, first) or first.attrs.get("transA", 0):
                continue
            second = model.sole_consumer(first.outputs[0])
            if second is None or second.op != "Gemm" or not is_affine(model, second) or second.attrs.get("transA", 0):
                continue
            W1, b1 = gemm_weights(model, first)
            W2, b2 = gemm_weights(model, second)
            set_gemm(model, second, W2 @ W1, W2 @ b1 + b2)
            second.inputs[0] = first.inputs[0]
            model.nodes.remove(first)
            report.add("merged", f"Gemm '{first.name}' merged into Gemm '{second.name}'")
            merged = True
            break
    model.prune()
    return model, report
