"""Marabou's profile: NeuralNetworkVerification/Marabou maraboupy/parsers/ONNXParser.py (as in the maraboupy 2.0.0
wheel); makeMarabouEquations dispatches on the op type, anything else raises NotImplementedError."""

from __future__ import annotations

from ..ir import Model, Node
from .profile import CANON, Profile, Verdict, auto_pad, constant_input, ints


def _conv(model: Model, node: Node) -> Verdict:
    """convEquations: 2-D only, one group, no dilation; reads strides and pads only."""
    weight = model.constants.get(node.inputs[1])
    if node.attrs.get("group", 1) != 1:  # convEquations: assert input_channels == filter_channels
        return (f"has group={node.attrs['group']}: Marabou's parser asserts input_channels == filter_channels",
                CANON)
    if weight is not None and weight.ndim != 4:  # convEquations unpacks a 4-D filter shape
        return f"is {weight.ndim - 2}-D: Marabou's parser reads 2-D convolutions only", None
    if any(d != 1 for d in ints(node, "dilations")):  # convEquations reads only 'strides' and 'pads'
        return f"has dilations={ints(node, 'dilations')}, which Marabou's parser ignores", None
    return auto_pad(node)


def _maxpool(model: Model, node: Node) -> Verdict:
    """maxpoolEquations: reads kernel_shape and strides only, so pads, dilations and ceil_mode change the function."""
    if any(ints(node, "pads")) or any(d != 1 for d in ints(node, "dilations")) or node.attrs.get("ceil_mode", 0):
        return "has pads, dilations or ceil_mode, which Marabou's parser ignores", None
    return auto_pad(node)


def _mul(model: Model, node: Node) -> Verdict:
    """mulEquations: the second input is one constant multiplying every element."""
    factor = model.constants.get(node.inputs[1])
    if factor is None or factor.size != 1:
        return "has a second input that is not one constant number (Marabou's parser multiplies by a scalar)", None
    return None


def _sub(model: Model, node: Node) -> Verdict:
    """subEquations: asserts a variable minus a constant of the same shape."""
    if node.inputs[0] in model.constants or node.inputs[1] not in model.constants:
        return ("subtracts a data tensor: Marabou's parser asserts the first input is a variable and the second "
                "a constant", CANON)
    shapes = model.shapes()
    if tuple(shapes[node.inputs[0]]) != tuple(shapes[node.inputs[1]]):  # assert shapeMap[...] equal
        return "broadcasts: Marabou's parser asserts both inputs have the same shape", CANON
    return None


def _dropout(model: Model, node: Node) -> Verdict:
    """dropout: training_mode=True is refused."""
    mode = model.constants.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    training = mode is not None and bool(mode)
    return ("has training_mode=True, which Marabou's parser refuses", CANON) if training else None


def _resize(model: Model, node: Node) -> Verdict:
    """resizeEquations: only YOLO's nearest 2x upsampling, which nnxform does not check for, so it is flagged."""
    return "is read by Marabou's parser only for YOLO's nearest upsampling", None


MARABOU = Profile(
    name="Marabou",
    source="NeuralNetworkVerification/Marabou maraboupy/parsers/ONNXParser.py",
    operators={  # makeMarabouEquations: the op types it dispatches; anything else raises NotImplementedError
        "Identity": (), "Dropout": (_dropout,), "Flatten": (), "Transpose": (), "Unsqueeze": (),
        "Squeeze": (), "BatchNormalization": (), "Concat": (), "Split": (), "Relu": (), "Sigmoid": (),
        "Tanh": (), "LeakyRelu": (), "Softmax": (), "Add": (), "MatMul": (),
        "Cast": (constant_input(0, "value", CANON),),  # cast: "Casting variables not allowed with Marabou"
        "Reshape": (constant_input(1, "shape", CANON),),  # reshape: reshapeVals = constantMap[input 2]
        "MaxPool": (_maxpool,),
        "Conv": (_conv, constant_input(1, "weight"), constant_input(2, "bias")),
        "Gemm": (constant_input(1, "weight"), constant_input(2, "bias")),  # gemmEquations: constantMap
        "Mul": (_mul,),
        "Sub": (_sub,),
        "Resize": (_resize,),
    },
    explicit_pads=True,
)
