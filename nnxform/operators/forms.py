"""How ONNX writes each operator and how a float network rounds it: the per-operator parts of the table that
concern the loader (forms refused, forms normalised), the exporter, the rounding model of the analyzers, and the
convolution and pool attributes verifiers' parsers need written out (``needs_rewrite``: what ``info`` calls not
verifier-friendly and ``canon``'s ``conv_form`` rewrites).

Loader checks take ``(model, node)`` and return why the evaluator cannot compute the node exactly as
onnxruntime does (None when it can); normalisers bring opset-dependent forms to one internal form.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from .forward import explicit_pads, transposed_pads

#: The opset ``Model.to_onnx`` writes.
EXPORT_OPSET = 13
#: Roundings of a BatchNormalization output: mean, sqrt(var + eps), the division, scale, shift, and the fold.
_BATCHNORM_ROUNDINGS = 6


class GraphNode(Protocol):
    """What the table's functions read and change of a node (an ``ir.Node``: the table sits below the IR)."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]


class LoadingModel(Protocol):
    """What the loader's checks and normalisers use of the model being loaded (an ``ir.Model``)."""

    constants: dict[str, np.ndarray]

    def add_constant(self, stem: str, value: np.ndarray) -> str: ...

    def shapes(self) -> dict[str, tuple[int, ...]]: ...


# --- loader checks ---------------------------------------------------------------------------


def kernel_rank(model: LoadingModel, n: GraphNode) -> str | None:
    """A kernel of 1, 2 or 3 spatial dimensions (what onnxruntime runs)."""
    if len(n.attrs.get("kernel_shape", [1, 1])) not in (1, 2, 3):
        return f"{n.op} node '{n.name}' has an unsupported kernel"
    return None


def same_pads_without_dilations(model: LoadingModel, n: GraphNode) -> str | None:
    """``auto_pad=SAME_*`` only without dilations (onnxruntime and the specification disagree there)."""
    if n.attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER") and any(d != 1 for d in n.attrs.get("dilations", [])):
        return (f"{n.op} node '{n.name}' combines auto_pad={n.attrs['auto_pad']} with dilations, which onnxruntime "
                "and the ONNX specification pad differently; export it with explicit pads")
    return None


def no_pool_dilations(model: LoadingModel, n: GraphNode) -> str | None:
    """AveragePool without dilations (opset >= 19)."""
    if any(d != 1 for d in n.attrs.get("dilations", [])):
        return f"AveragePool node '{n.name}' has dilations, which the exported opset {EXPORT_OPSET} lacks"
    return None


def reshape_allowzero(model: LoadingModel, n: GraphNode) -> str | None:
    """No zero in a Reshape target with ``allowzero=1``."""
    if n.attrs.get("allowzero", 0) and len(n.inputs) > 1 and 0 in model.constants[n.inputs[1]]:
        return f"Reshape node '{n.name}' uses allowzero=1 with a zero dimension"
    return None


def batchnorm_inference(model: LoadingModel, n: GraphNode) -> str | None:
    """BatchNormalization in inference mode, spatial."""
    if n.attrs.get("training_mode", 0) or not n.attrs.get("spatial", 1) or n.attrs.get("is_test", 1) == 0:
        return f"BatchNormalization node '{n.name}' is in training mode or not spatial; export the model for inference"
    return None


def convex_leaky_relu(model: LoadingModel, n: GraphNode) -> str | None:
    """LeakyRelu with 0 <= alpha <= 1: monotone and convex, as its relaxations assume."""
    alpha = float(n.attrs.get("alpha", 0.01))
    if not 0.0 <= alpha <= 1.0:
        return f"LeakyRelu node '{n.name}' has alpha={alpha:g}; nnxform supports 0 <= alpha <= 1"
    return None


def dropout_inference(model: LoadingModel, n: GraphNode) -> str | None:
    """Dropout in inference mode."""
    if len(n.inputs) > 2 and n.inputs[2] and bool(np.any(model.constants[n.inputs[2]])):
        return f"Dropout node '{n.name}' is in training mode; export the model for inference"
    return None


# --- normalisation at load -------------------------------------------------------------------


def reshape_form(model: LoadingModel, n: GraphNode) -> None:
    """The target shape as an input (opset < 5 has it as an attribute); ``allowzero`` dropped (a zero is refused)."""
    if "shape" in n.attrs:
        n.inputs = [n.inputs[0], model.add_constant(f"{n.name}_shape", np.asarray(n.attrs.pop("shape"), np.int64))]
    n.attrs.pop("allowzero", None)


def axes_form(model: LoadingModel, n: GraphNode) -> None:
    """Squeeze/Unsqueeze axes as an attribute (opset >= 13 has them as an input)."""
    if len(n.inputs) > 1:
        if n.inputs[1]:
            n.attrs["axes"] = [int(a) for a in model.constants[n.inputs[1]]]
        n.inputs = n.inputs[:1]


def dropout_form(model: LoadingModel, n: GraphNode) -> None:
    """Dropout in inference is the identity: no ratio, no mode."""
    n.inputs = n.inputs[:1]
    n.attrs = {}


def batchnorm_form(model: LoadingModel, n: GraphNode) -> None:
    """Only epsilon matters in inference."""
    n.attrs = {"epsilon": float(n.attrs.get("epsilon", 1e-5))}


def gemm_form(model: LoadingModel, n: GraphNode) -> None:
    """``broadcast`` (opset < 7) is what later opsets always do."""
    n.attrs.pop("broadcast", None)


def window_form(model: LoadingModel, n: GraphNode) -> None:
    """Explicit pads instead of ``auto_pad`` (Conv, MaxPool, AveragePool; AveragePool's dilations are all 1)."""
    if n.op == "AveragePool":
        n.attrs.pop("dilations", None)
    if n.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        shape = model.shapes()[n.inputs[0]]
        kernel = tuple(n.attrs.get("kernel_shape") or model.constants[n.inputs[1]].shape[2:])
        n.attrs["pads"] = explicit_pads(n.attrs, shape[2:], kernel)
        del n.attrs["auto_pad"]


def transposed_form(model: LoadingModel, n: GraphNode) -> None:
    """ConvTranspose with explicit pads instead of ``auto_pad`` or ``output_shape`` (as onnxruntime resolves them)."""
    if n.attrs.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in n.attrs:
        shape = model.shapes()[n.inputs[0]]
        n.attrs["pads"] = transposed_pads(n.attrs, shape[2:], tuple(model.constants[n.inputs[1]].shape[2:]))
        n.attrs.pop("auto_pad", None)
        n.attrs.pop("output_shape", None)


# --- export ----------------------------------------------------------------------------------


def axes_input(n: GraphNode) -> tuple[list[str], dict[str, Any], dict[str, np.ndarray]]:
    """Squeeze/Unsqueeze for opset 13: the axes attribute becomes an initializer input."""
    attrs = dict(n.attrs)
    if "axes" not in attrs:
        return list(n.inputs), attrs, {}
    name = f"{n.name}_axes"
    return list(n.inputs) + [name], attrs, {name: np.asarray(attrs.pop("axes"), np.int64)}


# --- rounding in floating point --------------------------------------------------------------


def exact(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """No rounding: the operator moves values (Identity, Dropout, Flatten, Reshape, Transpose, (Un)squeeze, Concat)."""
    return 0


def one_operation(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """Element-wise arithmetic with a constant: the operation and the constant's cast."""
    return 2


def gemm_roundings(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """Gemm: its inner dimension, the bias and the constants' cast, alpha and beta when not 1."""
    at = node.attrs
    k = shapes[node.inputs[0]][-2 if at.get("transA", 0) else -1]
    bias = len(node.inputs) > 2 and bool(node.inputs[2])
    return int(k) + 2 * bias + 1 + (at.get("alpha", 1.0) != 1.0) + (bias and at.get("beta", 1.0) != 1.0)


def matmul_roundings(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """MatMul: its inner dimension and the constant's cast."""
    return int(shapes[node.inputs[0]][-1]) + 1


def conv_roundings(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """Conv and ConvTranspose: the products one output sums (at most input channels per group × kernel), the
    bias and the constants' cast."""
    w = shapes[node.inputs[1]]
    per_output = w[1:] if node.op == "Conv" else (w[0] // node.attrs.get("group", 1),) + tuple(w[2:])
    bias = len(node.inputs) > 2 and bool(node.inputs[2])
    return int(np.prod(per_output, dtype=np.int64)) + 2 * bias + 1


def average_roundings(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """AveragePool: the window's sum and the division."""
    return int(np.prod(node.attrs["kernel_shape"], dtype=np.int64)) + 1


def batchnorm_roundings(node: GraphNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """BatchNormalization: see ``_BATCHNORM_ROUNDINGS``."""
    return _BATCHNORM_ROUNDINGS


def sub_absolute(node: GraphNode, args: list) -> tuple[GraphNode, list]:
    """``|a − b|`` is bounded by ``|a| + |b|``: Sub as Add."""
    return dataclasses.replace(node, op="Add"), args


def gemm_absolute(node: GraphNode, args: list) -> tuple[GraphNode, list]:
    """Gemm with alpha and beta positive."""
    attrs = dict(node.attrs, alpha=abs(node.attrs.get("alpha", 1.0)), beta=abs(node.attrs.get("beta", 1.0)))
    return dataclasses.replace(node, attrs=attrs), args


def batchnorm_absolute(node: GraphNode, args: list) -> tuple[GraphNode, list]:
    """The mean subtracted as ``+|mean|``: ``(x − (−|mean|)) = x + |mean|``; the variance stays as it is."""
    args = list(args)
    args[3] = -np.abs(args[3])
    return node, args


#: the attributes written out per operator (what some verifier needs and none refuses)
EXPLICIT: dict[str, tuple[str, ...]] = {
    "Conv": ("kernel_shape", "strides", "dilations", "pads"),
    "ConvTranspose": ("kernel_shape",),
    "MaxPool": ("strides", "dilations", "pads"),
    "AveragePool": ("strides", "pads"),
}


def needs_rewrite(node: GraphNode) -> bool:
    """True for a convolution or pool with groups, an ``auto_pad``, an attribute some verifier needs left to its
    default, or one a verifier refuses written at a value that changes nothing (what ``info`` calls not
    verifier-friendly and canon rewrites)."""
    if node.op not in EXPLICIT:
        return False
    return int(node.attrs.get("group", 1)) > 1 or node.attrs.get("auto_pad", "NOTSET") != "NOTSET" or \
        refused_default(node) or any(k not in node.attrs for k in EXPLICIT[node.op])


def refused_default(node: GraphNode) -> bool:
    """An attribute α,β-CROWN's onnx2pytorch cannot extract, written at a value that changes nothing: an all-zero
    ``output_padding``, or a MaxPool's ``storage_order`` (it orders the indices output, which nnxform never has)."""
    if node.op == "ConvTranspose":
        return "output_padding" in node.attrs and not any(node.attrs["output_padding"])
    return node.op == "MaxPool" and "storage_order" in node.attrs
