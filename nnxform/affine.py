"""Reading and writing the weights of affine nodes (Gemm, Conv) in one canonical form.

Canonical Gemm: inputs ``[x, W, b]`` with W of shape ``[out, in]`` and b of shape ``[out]``,
attributes ``transB=1`` only (alpha = beta = 1, transA = 0). Canonical Conv: inputs
``[x, W, b]`` with an explicit bias. Values are returned in float64; the exporter casts back.
"""

from __future__ import annotations

import numpy as np

from .errors import NnxformError
from .ir import Model, Node


def gemm_weights(model: Model, node: Node) -> tuple[np.ndarray, np.ndarray]:
    """``(W [out, in], b [out])`` of a Gemm with constant B (and C), so that y = x·Wᵀ + b."""
    if node.attrs.get("transA", 0):
        raise NnxformError(f"Gemm node '{node.name}' has transA=1; canonicalise it first")
    b_name = node.inputs[1]
    if b_name not in model.constants:
        raise NnxformError(f"Gemm node '{node.name}' multiplies two data tensors; not an affine layer")
    B = model.constants[b_name].astype(np.float64)
    W = B if node.attrs.get("transB", 0) else B.T
    W = node.attrs.get("alpha", 1.0) * W
    out = W.shape[0]
    if len(node.inputs) > 2 and node.inputs[2]:
        c = model.constants[node.inputs[2]].astype(np.float64)
        if c.size not in (1, out):
            raise NnxformError(f"Gemm node '{node.name}' has a bias of shape {c.shape}, not per output")
        b = node.attrs.get("beta", 1.0) * np.broadcast_to(c.reshape(-1), (out,)).copy()
    else:
        b = np.zeros(out)
    return W, b


def set_gemm(model: Model, node: Node, W: np.ndarray, b: np.ndarray) -> None:
    """Give ``node`` the canonical Gemm form with weights W ``[out, in]`` and bias b ``[out]``."""
    node.op = "Gemm"
    node.inputs = [
        node.inputs[0],
        model.add_constant(f"{node.name}_W", np.asarray(W, np.float64)),
        model.add_constant(f"{node.name}_b", np.asarray(b, np.float64).reshape(-1)),
    ]
    node.attrs = {"transB": 1}


def conv_weights(model: Model, node: Node) -> tuple[np.ndarray, np.ndarray]:
    """``(W [out, in/groups, *kernel], b [out])`` of a Conv with constant weights."""
    if node.inputs[1] not in model.constants:
        raise NnxformError(f"Conv node '{node.name}' has non-constant weights")
    W = model.constants[node.inputs[1]].astype(np.float64)
    if len(node.inputs) > 2 and node.inputs[2]:
        b = model.constants[node.inputs[2]].astype(np.float64).reshape(-1)
    else:
        b = np.zeros(W.shape[0])
    return W, b


def set_conv(model: Model, node: Node, W: np.ndarray, b: np.ndarray) -> None:
    """Replace the weights and bias of Conv ``node`` (attributes are kept)."""
    node.inputs = [
        node.inputs[0],
        model.add_constant(f"{node.name}_W", np.asarray(W, np.float64)),
        model.add_constant(f"{node.name}_b", np.asarray(b, np.float64).reshape(-1)),
    ]


def is_affine(model: Model, node: Node) -> bool:
    """A Gemm or Conv whose weights and bias are constants (an affine map of its one data input)."""
    return (node.op in ("Gemm", "Conv") and len(node.inputs) > 1 and node.inputs[0] not in model.constants
            and all(t in model.constants for t in node.inputs[1:] if t))
