"""ERAN's profile: eth-sri/eran tf_verify/onnx_translator.py (prepare_model: the ops it knows, else "Operations of
type ... are not yet supported"; ONNXTranslator.translate: operations_to_be_ignored, and the *_resources readers)."""

from __future__ import annotations

from ..ir import Model, Node
from .profile import CANON, Profile, Verdict, auto_pad, constant_input, ints, one_constant, single_output, symmetric

_OPS = ("Flatten", "Constant", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Conv", "MaxPool", "AveragePool",
        "Relu", "Sigmoid", "Tanh", "Softmax", "BatchNormalization", "LeakyRelu", "Gather", "Shape", "Reshape",
        "Unsqueeze", "Concat", "Tile", "Expand", "Pad")  # prepare_model's branches


def _ignored(model: Model, node: Node) -> Verdict:
    """translate: BatchNormalization and Softmax are in operations_to_be_ignored, so ERAN analyses another function."""
    return "is dropped by ERAN's translator (operations_to_be_ignored): it would verify another function", \
        CANON if node.op == "BatchNormalization" else None


def _concat(model: Model, node: Node) -> Verdict:
    """translate: Concat is in operations_to_be_ignored, so only its first input is passed on."""
    if len(node.inputs) > 1:
        return "is dropped by ERAN's translator, which passes on its first input only", None
    return None


def _unsqueeze(model: Model, node: Node) -> Verdict:
    """prepare_model reads the axes as node.attribute[0], an input from opset 13 on (nnxform writes opset 13)."""
    if int(model.source.get("opset") or 1) >= 13:  # in memory the axes are an attribute whatever the file says
        return "takes its axes as an input (opset 13 and later): ERAN's translator reads an 'axes' attribute", CANON
    return None


def _conv(model: Model, node: Node) -> Verdict:
    """conv_resources: 2-D, reads strides, pads and kernel_shape only (group and dilations ignored, strides needed)."""
    weight = model.constants.get(node.inputs[1])
    if weight is not None and weight.ndim != 4:  # filters.transpose(1, 2, 3, 0)
        return f"is {weight.ndim - 2}-D: ERAN's translator reads 2-D convolutions only", None
    if node.attrs.get("group", 1) != 1:
        return f"has group={node.attrs['group']}, which ERAN's translator ignores", CANON
    if any(d != 1 for d in ints(node, "dilations")):
        return f"has dilations={ints(node, 'dilations')}, which ERAN's translator ignores", None
    if "strides" not in node.attrs or "kernel_shape" not in node.attrs:  # read unconditionally
        return "leaves strides or kernel_shape implicit: ERAN's translator reads both from the attributes", CANON
    return auto_pad(node)


def _pool(model: Model, node: Node) -> Verdict:
    """pool_resources: strides read unconditionally, pads asserted symmetric, dilations and ceil_mode not applied."""
    pads = ints(node, "pads") or [0, 0, 0, 0]
    if "strides" not in node.attrs:
        return "leaves strides implicit: ERAN's translator reads them from the attributes", CANON
    if not symmetric(pads):
        return f"has asymmetric pads {pads}: ERAN's translator asserts symmetric padding", None
    if any(d != 1 for d in ints(node, "dilations")) or node.attrs.get("ceil_mode", 0):
        return "has dilations or ceil_mode, which ERAN's translator does not apply", None
    return auto_pad(node)


def _gemm(model: Model, node: Node) -> Verdict:
    """gemm_resources: the bias is input 2, read from the constants."""
    return None if len(node.inputs) > 2 and node.inputs[2] else ("has no bias input: ERAN's translator reads "
                                                                  "one", CANON)


def _binary(model: Model, node: Node) -> Verdict:
    """translate: Add of two tensors is Resadd; Sub/Mul of two tensors assert; Div only as input normalisation."""
    if node.op == "Div":
        return "is read by ERAN's translator only as the input normalisation before the first layer", CANON
    if len(model.data_inputs(node)) > 1 and node.op != "Add":
        return "combines two data tensors: ERAN's translator asserts one operand is a constant", \
            CANON if node.op == "Sub" else None
    return None


ERAN = Profile(
    name="ERAN",
    source="eth-sri/eran tf_verify/onnx_translator.py",
    operators={op: () for op in _OPS} | {
        "BatchNormalization": (_ignored,), "Softmax": (_ignored,), "Concat": (_concat,),
        "Unsqueeze": (_unsqueeze,), "Conv": (_conv, constant_input(1, "weight")),
        "MaxPool": (_pool,), "AveragePool": (_pool,),
        "Gemm": (_gemm, constant_input(1, "weight"), constant_input(2, "bias")),
        "MatMul": (one_constant("ERAN's translator"),),  # matmul_resources
        "Add": (_binary,), "Sub": (_binary,), "Mul": (_binary,), "Div": (_binary,),
        "Reshape": (constant_input(1, "shape", CANON),),
    },
    graph_checks=(single_output,),
    explicit_pads=True,
)
