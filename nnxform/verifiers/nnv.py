"""NNV's profile: verivital/nnv code/nnv/engine/utils/onnx2nnv.m (MATLAB's importONNXNetwork, then importONNXLayers)
and code/nnv/engine/utils/matlab2nnv.m (the MATLAB layer classes it converts; any other: "Unsupported Class of
Layer").

Which ONNX operator becomes which MATLAB layer is MATLAB's importer (closed source; its documented table "ONNX
Operators Supported for Conversion into Built-In MATLAB Layers"): Gemm/MatMul → FullyConnectedLayer, Conv →
Convolution1D/2DLayer (group > 1: GroupedConvolution2DLayer), an Add/Sub/Mul/Div by a constant →
ElementwiseAffineLayer, an Add of two tensors → AdditionLayer, anything else → a custom layer.
"""

from __future__ import annotations

from ..ir import Model, Node
from .profile import CANON, NodeCheck, Profile, Verdict, constant_input, one_constant


def _spatial(*ranks: int) -> NodeCheck:
    """matlab2nnv converts convolutions and pools of these spatial ranks only (Conv1D/2D, MaxPooling2D, ...)."""
    def check(model: Model, node: Node) -> Verdict:
        rank = len(model.shapes()[node.inputs[0]]) - 2
        if rank not in ranks:
            return f"is {rank}-D: matlab2nnv converts only {'/'.join(map(str, ranks))}-D {node.op} layers", None
        return None
    return check


def _grouped(model: Model, node: Node) -> Verdict:
    """group > 1 imports as GroupedConvolution2DLayer, a class matlab2nnv does not convert."""
    if node.attrs.get("group", 1) != 1:
        return f"has group={node.attrs['group']}: MATLAB imports it as a grouped convolution, which matlab2nnv " \
               "does not convert", CANON
    return None


def _elementwise(model: Model, node: Node) -> Verdict:
    """Sub/Mul/Div: an ElementwiseAffineLayer only with a constant operand (Add of two tensors: AdditionLayer)."""
    if len(model.data_inputs(node)) > 1:
        fix = CANON if node.op in ("Sub", "Div") else None  # canon leaves no Sub or Div
        return "combines two data tensors: MATLAB makes it a custom layer, which matlab2nnv does not convert", fix
    return None


NNV = Profile(
    name="NNV",
    source="verivital/nnv code/nnv/engine/utils/matlab2nnv.m, onnx2nnv.m",
    operators={
        "Gemm": (constant_input(1, "weight"), constant_input(2, "bias")),  # FullyConnectedLayer
        "MatMul": (one_constant("MATLAB's importer"),),
        "Conv": (_grouped, _spatial(1, 2), constant_input(1, "weight")),  # Conv1DLayer, Conv2DLayer
        "ConvTranspose": (_grouped, _spatial(1, 2), constant_input(1, "weight")),
        "MaxPool": (_spatial(2),), "AveragePool": (_spatial(2),),  # MaxPooling2DLayer, AveragePooling2DLayer
        "Relu": (), "LeakyRelu": (), "Tanh": (), "Sigmoid": (), "BatchNormalization": (),
        "Add": (), "Sub": (_elementwise,), "Mul": (_elementwise,), "Div": (_elementwise,),
        "Concat": (), "Flatten": (), "Dropout": (),  # ConcatenationLayer, FlattenLayer, PlaceholderLayer
        "Reshape": (constant_input(1, "shape", CANON),),  # the custom "...ReshapeLayer" matlab2nnv accepts
    },
)
