"""auto_LiRPA's profile: a network converted by onnx2torch (ENOT-AutoDL/onnx2torch onnx2torch/node_converters/*.py,
@add_converter(operation_type, version); registry.py get_converter; converter.py), then bounded by auto_LiRPA
(Verified-Intelligence/auto_LiRPA auto_LiRPA/bound_general.py _convert_nodes: an operation with no Bound class
raises NotImplementedError 'There are unsupported operations'; the classes in auto_LiRPA/operators/, bound_op_map.py).

``BOUNDED`` is shared with the α,β-CROWN profile, which bounds its own converter's output with the same library.
"""

from __future__ import annotations

from onnx import defs

from ..ir import Model, Node
from ..operators import EXPORT_OPSET
from .profile import CANON, Blocker, Profile, Verdict, ints, symmetric

#: ONNX operators auto_LiRPA bounds: ``onnx::X`` traced from the converted module becomes ``BoundX``
#: (auto_LiRPA/operators/*.py), Gemm becomes BoundLinear and Clip BoundHardTanh (bound_op_map.py); Identity and
#: Dropout convert to torch's Identity, which leaves no node to bound
BOUNDED = frozenset({
    "Abs", "Add", "Atan", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "CumSum", "Div", "Dropout", "Equal", "Exp", "Expand",
    "Flatten", "Floor", "Gather", "GatherElements", "Gemm", "GlobalAveragePool", "Identity", "LayerNormalization",
    "LeakyRelu", "Log", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Not", "Pad", "Pow", "Range", "Reciprocal",
    "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Sign",
    "Sin", "Slice", "Softmax", "Softplus", "Split", "Sqrt", "Squeeze", "Sub", "Tan", "Tanh", "Tile", "Transpose",
    "Unsqueeze", "Where",
})


def unbounded(node: Node) -> str:
    """Why auto_LiRPA refuses an operator its converter reads."""
    return f"auto_LiRPA has no bound for {node.op} (bound_general.py: 'There are unsupported operations')"


#: onnx2torch's converters: operator → the since-versions it registers (@add_converter)
_VERSIONS: dict[str, tuple[int, ...]] = {
    "Abs": (6, 13), "Acos": (7,), "Add": (1, 6, 7, 13, 14), "And": (1, 7), "ArgMax": (11, 12, 13),
    "ArgMin": (11, 12, 13), "Asin": (7,), "Atan": (7,), "AveragePool": (7, 10, 11),
    "BatchNormalization": (9, 14, 15), "Cast": (9, 13), "Ceil": (6, 13), "Celu": (12,), "Clip": (6, 11, 12, 13),
    "Concat": (4, 11, 13), "Constant": (9, 11, 12, 13), "ConstantOfShape": (9,), "Conv": (1, 11),
    "ConvTranspose": (1, 11), "Cos": (7,), "CumSum": (11, 14), "DepthToSpace": (11, 13), "Div": (1, 6, 7, 13, 14),
    "Dropout": (10, 12, 13), "Einsum": (12,), "Elu": (6,), "Equal": (7, 11, 13), "Erf": (9, 13), "Exp": (6, 13),
    "Expand": (8, 13), "EyeLike": (9,), "Flatten": (9, 11, 13), "Floor": (6, 13), "Gather": (1, 11, 13),
    "GatherElements": (11, 13), "GatherND": (11, 12, 13), "Gemm": (9, 11, 13), "GlobalAveragePool": (1,),
    "Greater": (7, 9, 13), "GreaterOrEqual": (12,), "HardSigmoid": (1, 6), "HardSwish": (14,),
    "Identity": (1, 13, 14, 16), "InstanceNormalization": (1, 6), "IsInf": (10,), "IsNaN": (13,), "LRN": (1, 13),
    "LayerNormalization": (17,), "LeakyRelu": (1, 6, 16), "Less": (7, 9, 13), "LessOrEqual": (12,), "Log": (6, 13),
    "LogSoftmax": (1, 11, 13), "MatMul": (1, 9, 13), "Max": (8, 12, 13), "MaxPool": (8, 10, 11, 12),
    "Mean": (8, 13), "Min": (8, 12, 13), "Mod": (10, 13), "Mul": (1, 6, 7, 13, 14), "Neg": (1, 6, 13),
    "NonMaxSuppression": (10, 11), "NonZero": (13,), "Not": (1,), "Or": (1, 7), "PRelu": (7, 9, 16),
    "Pad": (2, 11, 13), "Pow": (1, 7, 12, 13, 15), "Range": (11,), "Reciprocal": (1, 6, 13),
    "ReduceLogSum": (1, 11, 13), "ReduceLogSumExp": (1, 11, 13), "ReduceMax": (1, 11, 12, 13),
    "ReduceMean": (1, 11, 13), "ReduceMin": (1, 11, 12, 13), "ReduceProd": (1, 11, 13), "ReduceSum": (1, 11, 13),
    "ReduceSumSquare": (1, 11, 13), "Relu": (6, 13, 14), "Reshape": (5, 13, 14), "Resize": (10, 11, 13),
    "RoiAlign": (10, 16), "Round": (11,), "ScatterND": (11, 13, 16), "Selu": (6,), "Shape": (1, 13, 15),
    "Sigmoid": (1, 6, 13), "Sign": (9, 13), "Sin": (7,), "Slice": (9, 10, 11, 13), "Softmax": (1, 11, 13),
    "Softplus": (1,), "Softsign": (1,), "Split": (2, 11, 13), "Sqrt": (1, 6, 13), "Squeeze": (1, 11, 13, 21),
    "Sub": (1, 6, 7, 13, 14), "Sum": (8, 13), "Tan": (7,), "Tanh": (6, 13), "Tile": (6, 13), "TopK": (1, 10, 11),
    "Transpose": (1, 13), "Unsqueeze": (1, 11, 13), "Where": (9, 16), "Xor": (1, 7),
}


def _version(model: Model, node: Node) -> Verdict:
    """registry.get_converter: the op's schema version at the model's opset must have a converter."""
    opset = int(model.source.get("opset") or 1)
    try:
        since = defs.get_schema(node.op, opset).since_version
    except Exception:  # onnx has no such op at this opset
        return f"has no schema at opset {opset}", None
    if since not in _VERSIONS[node.op]:
        # nnxform writes opset EXPORT_OPSET: rewriting fixes it when onnx2torch converts that version
        rewritten = defs.get_schema(node.op, EXPORT_OPSET).since_version in _VERSIONS[node.op]
        fix = CANON if rewritten and node.name not in model.unsupported else None
        return f"is version {since} at opset {opset}, for which onnx2torch has no converter", fix
    return None


def _conv(model: Model, node: Node) -> Verdict:
    """conv.py: 1-3 spatial dimensions, constant weights, and a ConvTranspose with symmetric pads."""
    weight = model.constants.get(node.inputs[1])
    if weight is None:  # graph.initializers[weights_value_name]
        return "takes its weight from the data; onnx2torch reads it from the initializers", None
    if not 1 <= weight.ndim - 2 <= 3:  # _CONV_CLASS_FROM_SPATIAL_RANK
        return f"has {weight.ndim - 2} spatial dimensions; onnx2torch converts 1 to 3", None
    if node.op == "ConvTranspose" and not symmetric(ints(node, "pads")):
        return "has asymmetric pads: onnx2torch raises 'ConvTranspose with non symmetrical padding'", None
    return None


def _batchnorm(model: Model, node: Node) -> Verdict:
    """batch_norm.py: the running mean/var outputs are not implemented."""
    return ("has mean/var outputs, which onnx2torch does not implement", CANON) if len(node.outputs) > 1 else None


def _ir(model: Model) -> list[Blocker]:
    """converter.py: IR version 3 or newer (nnxform writes 7)."""
    version = int(model.source.get("ir_version") or 0)
    return [Blocker("", f"IR version {version}: onnx2torch needs 3 or newer", CANON)] if 0 < version < 3 else []


def _missing(node: Node) -> str:
    """Not converted by onnx2torch, or converted but not bounded."""
    return unbounded(node) if node.op in _VERSIONS else f"onnx2torch has no converter for {node.op}"


AUTO_LIRPA = Profile(
    name="auto_LiRPA",
    source="ENOT-AutoDL/onnx2torch onnx2torch/node_converters/, onnx2torch/converter.py; "
           "Verified-Intelligence/auto_LiRPA auto_LiRPA/bound_general.py, auto_LiRPA/operators/",
    operators={op: (_version,) + ((_conv,) if op in ("Conv", "ConvTranspose") else ())
               + ((_batchnorm,) if op == "BatchNormalization" else ())
               for op in _VERSIONS if op in BOUNDED},
    graph_checks=(_ir,),
    missing=_missing,
)
