"""Which verifiers read a model: per-verifier profiles taken from each verifier's own ONNX parser.

Every rule names the parser file it comes from (a repository path; the maraboupy one is the file the 2.0.0
wheel installs). A rule looks at one node and returns why the parser refuses it, or silently reads another
function, with the nnxform command that removes the cause (None when no command does). ``prepare_for`` runs
those commands (``nnxform canon --for``), each checked in onnxruntime, until the verifier reads the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from onnx import defs

from .domain import Box
from .errors import NnxformError
from .exactness import ATOL, Comparison
from .ir import Model, Node, from_proto
from .operators import EXPORT_OPSET
from .passes import PassReport, apply_checked
from .passes.canonicalize import CANONICAL_OPS
from .passes.pad import relu_layers

CANON = "nnxform canon"
#: canonical operators canon still removes where it can: shape-only chains become one Flatten/Reshape, a Transpose
#: before Flatten→Gemm goes into the weights (passes/reshapes.py)
_CANON_ABSORBS = frozenset({"Squeeze", "Unsqueeze", "Transpose"})

#: a rule's verdict on one node: (reason, fixing command or None), or None when the node passes
Verdict = Optional[tuple[str, Optional[str]]]
NodeCheck = Callable[[Model, Node], Verdict]


@dataclass(frozen=True)
class Blocker:
    """One thing that keeps a verifier from reading the model, and the command that removes it."""

    node: str
    reason: str
    fix: Optional[str]

    def text(self) -> str:
        """One line for ``nnxform info --for``."""
        return f"{self.reason}; " + (f"run `{self.fix}`" if self.fix else "no nnxform command removes it")


@dataclass(frozen=True)
class Profile:
    """What one verifier's ONNX parser reads: its operators, their attribute checks, and whole-graph checks."""

    name: str
    source: str  # the parser file the rules come from
    operators: dict[str, tuple[NodeCheck, ...]]
    graph_checks: tuple[Callable[[Model], list[Blocker]], ...] = field(default=())

    def blockers(self, model: Model) -> list[Blocker]:
        """Everything in ``model`` this verifier's parser refuses or reads as another function (empty: it reads it)."""
        found = [b for check in self.graph_checks for b in check(model)]
        for n in model.nodes:
            if n.op not in self.operators or n.domain:
                removable = n.op not in CANONICAL_OPS or n.op in _CANON_ABSORBS
                fix = CANON if removable and n.name not in model.unsupported else None
                found.append(Blocker(n.name, f"{n.op} node '{n.name}': {self.name}'s parser has no {n.op}", fix))
                continue
            for check in self.operators[n.op]:
                verdict = check(model, n)
                if verdict is not None:
                    found.append(Blocker(n.name, f"{n.op} node '{n.name}' {verdict[0]}", verdict[1]))
        return found


# --- rule helpers ----------------------------------------------------------------------------------------


def _ints(node: Node, key: str) -> list[int]:
    """An ints attribute as a list (empty when absent)."""
    return [int(v) for v in node.attrs.get(key, [])]


def _auto_pad(node: Node) -> Verdict:
    """``auto_pad`` other than NOTSET, which every parser here ignores."""
    value = node.attrs.get("auto_pad", "NOTSET")
    value = value.decode() if isinstance(value, bytes) else value
    return (f"has auto_pad={value}, which the parser ignores", CANON) if value != "NOTSET" else None


def _constant_input(index: int, what: str, fix: Optional[str] = None) -> NodeCheck:
    """The parser reads input ``index`` from the model's constants."""
    def check(model: Model, node: Node) -> Verdict:
        if len(node.inputs) > index and node.inputs[index] and node.inputs[index] not in model.constants:
            return f"takes its {what} from the data, the parser reads it as a constant", fix
        return None
    return check


def _one_constant(parser: str) -> NodeCheck:
    """A MatMul read as a dense layer: one operand comes from the model's constants."""
    def check(model: Model, node: Node) -> Verdict:
        if not any(t in model.constants for t in node.inputs):
            return f"multiplies two data tensors: {parser} reads one operand as a constant", None
        return None
    return check


def _chain(model: Model) -> list[Blocker]:
    """Joins and fan-outs: the parser appends nodes one after another, whatever their wiring."""
    found = []
    if len(model.output_names) != 1:
        found.append(Blocker("", f"{len(model.output_names)} outputs (the parser reads one)", None))
    for n in model.nodes:
        data = model.data_inputs(n)
        if len(data) > 1:
            found.append(Blocker(n.name, f"{n.op} node '{n.name}' joins {len(data)} branches (the parser reads "
                                         "one chain)", None))
        fanout = len(model.consumers(n.outputs[0]))
        if fanout > 1:
            found.append(Blocker(n.name, f"output of '{n.name}' feeds {fanout} nodes (the parser reads one chain)",
                                 None))
    return found


# --- Marabou ---------------------------------------------------------------------------------------------
# maraboupy/parsers/ONNXParser.py (NeuralNetworkVerification/Marabou, as in the maraboupy 2.0.0 wheel)


def _marabou_conv(model: Model, node: Node) -> Verdict:
    """convEquations: 2-D only, one group, no dilation; reads strides and pads only."""
    weight = model.constants.get(node.inputs[1])
    if node.attrs.get("group", 1) != 1:  # convEquations: assert input_channels == filter_channels
        return (f"has group={node.attrs['group']}: Marabou's parser asserts input_channels == filter_channels",
                CANON)
    if weight is not None and weight.ndim != 4:  # convEquations unpacks a 4-D filter shape
        return f"is {weight.ndim - 2}-D: Marabou's parser reads 2-D convolutions only", None
    if any(d != 1 for d in _ints(node, "dilations")):  # convEquations reads only 'strides' and 'pads'
        return f"has dilations={_ints(node, 'dilations')}, which Marabou's parser ignores", None
    return _auto_pad(node)


def _marabou_maxpool(model: Model, node: Node) -> Verdict:
    """maxpoolEquations: reads kernel_shape and strides only, so pads, dilations and ceil_mode change the function."""
    if any(_ints(node, "pads")) or any(d != 1 for d in _ints(node, "dilations")) or node.attrs.get("ceil_mode", 0):
        return "has pads, dilations or ceil_mode, which Marabou's parser ignores", None
    return _auto_pad(node)


def _marabou_mul(model: Model, node: Node) -> Verdict:
    """mulEquations: the second input is one constant multiplying every element."""
    factor = model.constants.get(node.inputs[1])
    if factor is None or factor.size != 1:
        return "has a second input that is not one constant number (Marabou's parser multiplies by a scalar)", None
    return None


def _marabou_sub(model: Model, node: Node) -> Verdict:
    """subEquations: asserts a variable minus a constant of the same shape."""
    if node.inputs[0] in model.constants or node.inputs[1] not in model.constants:
        return ("subtracts a data tensor: Marabou's parser asserts the first input is a variable and the second "
                "a constant", CANON)
    shapes = model.shapes()
    if tuple(shapes[node.inputs[0]]) != tuple(shapes[node.inputs[1]]):  # assert shapeMap[...] equal
        return "broadcasts: Marabou's parser asserts both inputs have the same shape", CANON
    return None


def _marabou_dropout(model: Model, node: Node) -> Verdict:
    """dropout: training_mode=True is refused."""
    mode = model.constants.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    return ("has training_mode=True, which Marabou's parser refuses", CANON) if mode is not None and bool(mode) else None


def _marabou_resize(model: Model, node: Node) -> Verdict:
    """resizeEquations: only YOLO's nearest 2x upsampling, which nnxform does not check for, so it is flagged."""
    return "is read by Marabou's parser only for YOLO's nearest upsampling", None


MARABOU = Profile(
    name="Marabou",
    source="NeuralNetworkVerification/Marabou maraboupy/parsers/ONNXParser.py",
    operators={  # makeMarabouEquations: the op types it dispatches; anything else raises NotImplementedError
        "Identity": (), "Dropout": (_marabou_dropout,), "Flatten": (), "Transpose": (), "Unsqueeze": (),
        "Squeeze": (), "BatchNormalization": (), "Concat": (), "Split": (), "Relu": (), "Sigmoid": (),
        "Tanh": (), "LeakyRelu": (), "Softmax": (), "Add": (), "MatMul": (),
        "Cast": (_constant_input(0, "value", CANON),),  # cast: "Casting variables not allowed with Marabou"
        "Reshape": (_constant_input(1, "shape", CANON),),  # reshape: reshapeVals = constantMap[input 2]
        "MaxPool": (_marabou_maxpool,),
        "Conv": (_marabou_conv, _constant_input(1, "weight"), _constant_input(2, "bias")),
        "Gemm": (_constant_input(1, "weight"), _constant_input(2, "bias")),  # gemmEquations: constantMap
        "Mul": (_marabou_mul,),
        "Sub": (_marabou_sub,),
        "Resize": (_marabou_resize,),
    },
)


# --- nnenum ----------------------------------------------------------------------------------------------
# stanleybak/nnenum src/nnenum/onnx_network.py (load_onnx_network, the loader nnenum.py falls back to) and
# src/nnenum/settings.py (ONNX_WHITELIST / ONNX_BLACKLIST)

_NNENUM_OPS = ("Add", "AveragePool", "Constant", "Concat", "Conv", "Flatten", "Gather", "Gemm", "MatMul", "Mul",
               "Reshape", "Relu", "Shape", "Sub", "Unsqueeze", "Slice", "Dropout")  # settings.py ONNX_WHITELIST


def _nnenum_graph(model: Model) -> list[Blocker]:
    """load_onnx_network: one output, at least one Relu, and the graph cut at each Relu into one chain of parts."""
    found = []
    if len(model.output_names) != 1:  # assert len(model.graph.output) == 1
        found.append(Blocker("", f"{len(model.output_names)} outputs: nnenum asserts a single output", None))
    relus = [n for n in model.nodes if n.op == "Relu"]
    if not relus:  # assert relus, "expected at least one relu layer in network"
        # prepare_for writes a linear network (one affine layer after canon) as relu(y) − relu(−y)
        found.append(Blocker("", "no Relu: nnenum asserts at least one Relu layer", f"{CANON} --for nnenum"))
    # each linear part runs from the previous Relu's output alone (stan_select_model_inputs_outputs)
    part = {model.input_name: model.input_name}
    expected = model.input_name
    for n in model.nodes:
        parts = {part.get(t) for t in model.data_inputs(n)}
        if n.op == "Relu":
            if parts != {expected}:
                found.append(Blocker(n.name, f"Relu node '{n.name}' does not follow the previous Relu: nnenum "
                                             "splits the network at each Relu into one chain", None))
            expected = n.outputs[0]
            part[n.outputs[0]] = n.outputs[0]
            continue
        if len(parts) > 1:
            found.append(Blocker(n.name, f"{n.op} node '{n.name}' joins values from both sides of a Relu: nnenum "
                                         "splits the network at each Relu into one chain", None))
        for t in n.outputs:
            part[t] = next(iter(parts), None)
    if model.output_names and part.get(model.output_names[0]) not in (expected, None):
        found.append(Blocker("", "the output does not follow the last Relu: nnenum splits the network at each Relu "
                                 "into one chain", None))
    return found


NNENUM = Profile(
    name="nnenum",
    source="stanleybak/nnenum src/nnenum/onnx_network.py, src/nnenum/settings.py",
    operators={op: () for op in _NNENUM_OPS},
    graph_checks=(_nnenum_graph,),
)


# --- pynever ---------------------------------------------------------------------------------------------
# NeVerTools/pyNeVer pynever/strategies/conversion/converters/onnx.py (ONNXConverter.to_neural_network)


def _pynever_explicit(node: Node, required: tuple[str, ...], fix: Optional[str]) -> Verdict:
    """The ``required`` attributes written out, pads symmetric (to_neural_network and the torch conversion)."""
    # onnx.py: "we do not support auto_pad and implicit kernel_shape"; the defaults of pads, strides and dilations
    # are tuples of float tensors (tuple(torch.ones(...))), which torch's pad() and conv2d() refuse
    missing = [k for k in required if k not in node.attrs]
    if missing:
        return f"leaves {', '.join(missing)} implicit, which pynever's converter cannot default", fix
    pads = _ints(node, "pads")
    # converters/pytorch.py, ConvNode to torch: padding = layer.padding[:int(len(layer.padding) / 2)]
    if pads[:len(pads) // 2] != pads[len(pads) // 2:]:
        return f"has asymmetric pads {pads}, which pynever's conversion to torch reads as symmetric", None
    return _auto_pad(node)


def _pynever_conv(model: Model, node: Node) -> Verdict:
    """Conv: reads 'groups' (never ONNX's 'group'), and needs every attribute written (canon writes them)."""
    if node.attrs.get("group", 1) != 1:
        return f"has group={node.attrs['group']}: pynever's converter reads 'groups', not 'group'", CANON
    return _pynever_explicit(node, ("kernel_shape", "pads", "strides", "dilations"), CANON)


def _pynever_pool(model: Model, node: Node) -> Verdict:
    """AveragePool/MaxPool: explicit, symmetric pads and strides (and dilations for MaxPool), as for Conv."""
    required = ("kernel_shape", "pads", "strides") + (("dilations",) if node.op == "MaxPool" else ())
    return _pynever_explicit(node, required, None)


def _pynever_gemm(model: Model, node: Node) -> Verdict:
    """Gemm: the weight is taken as [out, in] unless transB=0 is written; alpha, beta and transA are not read."""
    if node.attrs.get("transB", 0) != 1 or node.attrs.get("transA", 0) != 0 \
            or node.attrs.get("alpha", 1.0) != 1.0 or node.attrs.get("beta", 1.0) != 1.0:
        return "is not transB=1, alpha=beta=1: pynever's converter reads the weight as [out, in] and no scales", CANON
    return None


def _pynever_skipped(model: Model, node: Node) -> Verdict:
    """Sub and Div: skipped ('not relevant for verification'), so pynever would verify another function."""
    return "would be skipped by pynever's converter (a different function)", CANON


def _pynever_matmul(model: Model, node: Node) -> Verdict:
    """MatMul: a constant weight, and only an Add right after it (read as its bias)."""
    if not any(t in model.constants for t in node.inputs):
        return "multiplies two data tensors: pynever's converter reads a constant weight", None
    return None


def _pynever_add(model: Model, node: Node) -> Verdict:
    """Add: read only right after a MatMul, with the bias as second input; an Add elsewhere raises."""
    index = model.nodes.index(node)
    before = model.nodes[index - 1] if index > 0 else None
    after_matmul = before is not None and before.op == "MatMul" and before.outputs[0] == node.inputs[0]
    if not after_matmul or node.inputs[1] not in model.constants:
        return "is not the bias of the MatMul before it: pynever's converter raises NotImplementedError", CANON
    return None


PYNEVER = Profile(
    name="pynever",
    source="NeVerTools/pyNeVer pynever/strategies/conversion/converters/onnx.py",
    operators={
        "MatMul": (_pynever_matmul,), "Add": (_pynever_add,), "Sub": (_pynever_skipped,), "Div": (_pynever_skipped,),
        "Relu": (), "Elu": (), "LeakyRelu": (), "Celu": (), "Sigmoid": (), "Tanh": (), "Softmax": (), "LRN": (),
        "Gemm": (_pynever_gemm, _constant_input(1, "weight"), _constant_input(2, "bias")),
        "BatchNormalization": tuple(_constant_input(i, "parameters", CANON) for i in range(1, 5)),
        "Conv": (_pynever_conv, _constant_input(1, "weight"), _constant_input(2, "bias")),
        "AveragePool": (_pynever_pool,), "MaxPool": (_pynever_pool,),
        "Unsqueeze": (_constant_input(1, "axes", CANON),), "Reshape": (_constant_input(1, "shape", CANON),),
        "Flatten": (), "Transpose": (), "Dropout": (_constant_input(1, "ratio", CANON),),
    },
    graph_checks=(_chain,),  # SequentialNetwork: append_node in file order
)


# --- α,β-CROWN (through onnx2torch) -----------------------------------------------------------------------
# ENOT-AutoDL/onnx2torch onnx2torch/node_converters/*.py (@add_converter(operation_type, version)),
# registry.py (get_converter: the op's since_version at the model's opset), converter.py

_ONNX2TORCH_VERSIONS: dict[str, tuple[int, ...]] = {
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


def _onnx2torch_version(model: Model, node: Node) -> Verdict:
    """registry.get_converter: the op's schema version at the model's opset must have a converter."""
    opset = int(model.source.get("opset") or 1)
    try:
        since = defs.get_schema(node.op, opset).since_version
    except Exception:  # onnx has no such op at this opset
        return f"has no schema at opset {opset}", None
    if since not in _ONNX2TORCH_VERSIONS[node.op]:
        # nnxform writes opset EXPORT_OPSET: rewriting fixes it when onnx2torch converts that version
        rewritten = defs.get_schema(node.op, EXPORT_OPSET).since_version in _ONNX2TORCH_VERSIONS[node.op]
        fix = CANON if rewritten and node.name not in model.unsupported else None
        return f"is version {since} at opset {opset}, for which onnx2torch has no converter", fix
    return None


def _onnx2torch_conv(model: Model, node: Node) -> Verdict:
    """conv.py: 1-3 spatial dimensions, constant weights, and a ConvTranspose with symmetric pads."""
    weight = model.constants.get(node.inputs[1])
    if weight is None:  # graph.initializers[weights_value_name]
        return "takes its weight from the data; onnx2torch reads it from the initializers", None
    if not 1 <= weight.ndim - 2 <= 3:  # _CONV_CLASS_FROM_SPATIAL_RANK
        return f"has {weight.ndim - 2} spatial dimensions; onnx2torch converts 1 to 3", None
    pads = _ints(node, "pads")
    if node.op == "ConvTranspose" and pads[:len(pads) // 2] != pads[len(pads) // 2:]:
        return "has asymmetric pads: onnx2torch raises 'ConvTranspose with non symmetrical padding'", None
    return None


def _onnx2torch_bn(model: Model, node: Node) -> Verdict:
    """batch_norm.py: the running mean/var outputs are not implemented."""
    return ("has mean/var outputs, which onnx2torch does not implement", CANON) if len(node.outputs) > 1 else None


def _onnx2torch_ir(model: Model) -> list[Blocker]:
    """converter.py: IR version 3 or newer."""
    version = int(model.source.get("ir_version") or 0)
    return [Blocker("", f"IR version {version}: onnx2torch needs 3 or newer", None)] if 0 < version < 3 else []


ABCROWN = Profile(
    name="onnx2torch",
    source="ENOT-AutoDL/onnx2torch onnx2torch/node_converters/, onnx2torch/converter.py",
    operators={op: (_onnx2torch_version,) + ((_onnx2torch_conv,) if op in ("Conv", "ConvTranspose") else ())
               + ((_onnx2torch_bn,) if op == "BatchNormalization" else ())
               for op in _ONNX2TORCH_VERSIONS},
    graph_checks=(_onnx2torch_ir,),
)


# --- NNV ------------------------------------------------------------------------------------------------
# verivital/nnv code/nnv/engine/utils/onnx2nnv.m (MATLAB's importONNXNetwork, then importONNXLayers) and
# code/nnv/engine/utils/matlab2nnv.m (the MATLAB layer classes it converts; any other: "Unsupported Class of Layer").
# Which ONNX operator becomes which MATLAB layer is MATLAB's importer (closed source; its documented table "ONNX
# Operators Supported for Conversion into Built-In MATLAB Layers"): Gemm/MatMul → FullyConnectedLayer, Conv →
# Convolution1D/2DLayer (group > 1: GroupedConvolution2DLayer), an Add/Sub/Mul/Div by a constant →
# ElementwiseAffineLayer, an Add of two tensors → AdditionLayer, anything else → a custom layer.


def _nnv_spatial(*ranks: int) -> NodeCheck:
    """matlab2nnv converts convolutions and pools of these spatial ranks only (Conv1D/2D, MaxPooling2D, ...)."""
    def check(model: Model, node: Node) -> Verdict:
        rank = len(model.shapes()[node.inputs[0]]) - 2
        if rank not in ranks:
            return f"is {rank}-D: matlab2nnv converts only {'/'.join(map(str, ranks))}-D {node.op} layers", None
        return None
    return check


def _nnv_grouped(model: Model, node: Node) -> Verdict:
    """group > 1 imports as GroupedConvolution2DLayer, a class matlab2nnv does not convert."""
    if node.attrs.get("group", 1) != 1:
        return f"has group={node.attrs['group']}: MATLAB imports it as a grouped convolution, which matlab2nnv " \
               "does not convert", CANON
    return None


def _nnv_elementwise(model: Model, node: Node) -> Verdict:
    """Sub/Mul/Div: an ElementwiseAffineLayer only with a constant operand (Add of two tensors: AdditionLayer)."""
    if len(model.data_inputs(node)) > 1:
        fix = CANON if node.op in ("Sub", "Div") else None  # canon leaves no Sub or Div
        return "combines two data tensors: MATLAB makes it a custom layer, which matlab2nnv does not convert", fix
    return None


NNV = Profile(
    name="NNV",
    source="verivital/nnv code/nnv/engine/utils/matlab2nnv.m, onnx2nnv.m",
    operators={
        "Gemm": (_constant_input(1, "weight"), _constant_input(2, "bias")),  # FullyConnectedLayer
        "MatMul": (_one_constant("MATLAB's importer"),),
        "Conv": (_nnv_grouped, _nnv_spatial(1, 2), _constant_input(1, "weight")),  # Conv1DLayer, Conv2DLayer
        "ConvTranspose": (_nnv_grouped, _nnv_spatial(1, 2), _constant_input(1, "weight")),
        "MaxPool": (_nnv_spatial(2),), "AveragePool": (_nnv_spatial(2),),  # MaxPooling2DLayer, AveragePooling2DLayer
        "Relu": (), "LeakyRelu": (), "Tanh": (), "Sigmoid": (), "BatchNormalization": (),
        "Add": (), "Sub": (_nnv_elementwise,), "Mul": (_nnv_elementwise,), "Div": (_nnv_elementwise,),
        "Concat": (), "Flatten": (), "Dropout": (),  # ConcatenationLayer, FlattenLayer, PlaceholderLayer
        "Reshape": (_constant_input(1, "shape", CANON),),  # the custom "...ReshapeLayer" matlab2nnv accepts
    },
)


# --- ERAN ------------------------------------------------------------------------------------------------
# eth-sri/eran tf_verify/onnx_translator.py (prepare_model: the ops it knows, else "Operations of type ... are not
# yet supported"; ONNXTranslator.translate: operations_to_be_ignored, and the *_resources readers)

_ERAN_OPS = ("Flatten", "Constant", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Conv", "MaxPool", "AveragePool",
             "Relu", "Sigmoid", "Tanh", "Softmax", "BatchNormalization", "LeakyRelu", "Gather", "Shape", "Reshape",
             "Unsqueeze", "Concat", "Tile", "Expand", "Pad")  # prepare_model's branches


def _eran_ignored(model: Model, node: Node) -> Verdict:
    """translate: BatchNormalization and Softmax are in operations_to_be_ignored, so ERAN analyses another function."""
    return "is dropped by ERAN's translator (operations_to_be_ignored): it would verify another function", \
        CANON if node.op == "BatchNormalization" else None


def _eran_concat(model: Model, node: Node) -> Verdict:
    """translate: Concat is in operations_to_be_ignored, so only its first input is passed on."""
    if len(node.inputs) > 1:
        return "is dropped by ERAN's translator, which passes on its first input only", None
    return None


def _eran_unsqueeze(model: Model, node: Node) -> Verdict:
    """prepare_model reads the axes as node.attribute[0], an input from opset 13 on (nnxform writes opset 13)."""
    if int(model.source.get("opset") or 1) >= 13:  # in memory the axes are an attribute whatever the file says
        return "takes its axes as an input (opset 13 and later): ERAN's translator reads an 'axes' attribute", CANON
    return None


def _eran_conv(model: Model, node: Node) -> Verdict:
    """conv_resources: 2-D, reads strides, pads and kernel_shape only (group and dilations ignored, strides needed)."""
    weight = model.constants.get(node.inputs[1])
    if weight is not None and weight.ndim != 4:  # filters.transpose(1, 2, 3, 0)
        return f"is {weight.ndim - 2}-D: ERAN's translator reads 2-D convolutions only", None
    if node.attrs.get("group", 1) != 1:
        return f"has group={node.attrs['group']}, which ERAN's translator ignores", CANON
    if any(d != 1 for d in _ints(node, "dilations")):
        return f"has dilations={_ints(node, 'dilations')}, which ERAN's translator ignores", None
    if "strides" not in node.attrs or "kernel_shape" not in node.attrs:  # read unconditionally
        return "leaves strides or kernel_shape implicit: ERAN's translator reads both from the attributes", CANON
    return _auto_pad(node)


def _eran_pool(model: Model, node: Node) -> Verdict:
    """pool_resources: strides read unconditionally, pads asserted symmetric, dilations and ceil_mode not applied."""
    pads = _ints(node, "pads") or [0, 0, 0, 0]
    if "strides" not in node.attrs:
        return "leaves strides implicit: ERAN's translator reads them from the attributes", None
    if pads[:len(pads) // 2] != pads[len(pads) // 2:]:
        return f"has asymmetric pads {pads}: ERAN's translator asserts symmetric padding", None
    if any(d != 1 for d in _ints(node, "dilations")) or node.attrs.get("ceil_mode", 0):
        return "has dilations or ceil_mode, which ERAN's translator does not apply", None
    return _auto_pad(node)


def _eran_gemm(model: Model, node: Node) -> Verdict:
    """gemm_resources: the bias is input 2, read from the constants."""
    return None if len(node.inputs) > 2 and node.inputs[2] else ("has no bias input: ERAN's translator reads "
                                                                  "one", CANON)


def _eran_binary(model: Model, node: Node) -> Verdict:
    """translate: Add of two tensors is Resadd; Sub/Mul of two tensors assert; Div only as input normalisation."""
    if node.op == "Div":
        return "is read by ERAN's translator only as the input normalisation before the first layer", CANON
    if len(model.data_inputs(node)) > 1 and node.op != "Add":
        return "combines two data tensors: ERAN's translator asserts one operand is a constant", \
            CANON if node.op == "Sub" else None
    return None


def _single_output(model: Model) -> list[Blocker]:
    """The translator builds one chain of operations ending at the last node: one output."""
    if len(model.output_names) != 1:
        return [Blocker("", f"{len(model.output_names)} outputs (the parser reads one)", None)]
    return []


ERAN = Profile(
    name="ERAN",
    source="eth-sri/eran tf_verify/onnx_translator.py",
    operators={op: () for op in _ERAN_OPS} | {
        "BatchNormalization": (_eran_ignored,), "Softmax": (_eran_ignored,), "Concat": (_eran_concat,),
        "Unsqueeze": (_eran_unsqueeze,), "Conv": (_eran_conv, _constant_input(1, "weight")),
        "MaxPool": (_eran_pool,), "AveragePool": (_eran_pool,),
        "Gemm": (_eran_gemm, _constant_input(1, "weight"), _constant_input(2, "bias")),
        "MatMul": (_one_constant("ERAN's translator"),),  # matmul_resources
        "Add": (_eran_binary,), "Sub": (_eran_binary,), "Mul": (_eran_binary,), "Div": (_eran_binary,),
        "Reshape": (_constant_input(1, "shape", CANON),),
    },
    graph_checks=(_single_output,),
)


#: ``nnxform info --for NAME`` and ``nnxform canon --for NAME``
PROFILES: dict[str, Profile] = {"marabou": MARABOU, "nnenum": NNENUM, "pynever": PYNEVER, "abcrown": ABCROWN,
                                "nnv": NNV, "eran": ERAN}


def readability(model: Model, verifier: str) -> dict[str, object]:
    """A JSON-ready verdict: whether ``verifier`` reads ``model`` and, if not, what blocks it and what fixes it."""
    profile = PROFILES[verifier]
    blockers = profile.blockers(model)
    return {
        "verifier": verifier,
        "parser": profile.source,
        "readable": not blockers,
        "blockers": [{"node": b.node, "reason": b.reason, "fix": b.fix, "text": b.text()} for b in blockers],
    }


# --- canon --for -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One checked pass of ``prepare_for``: its name, its report and its onnxruntime comparison with its input."""

    name: str
    report: PassReport
    check: Comparison

    def to_json(self) -> dict[str, Any]:
        """The step for a JSON report."""
        return {"pass": self.name, "counts": self.report.counts, "changes": self.report.changes,
                "check": self.check.to_json()}


@dataclass(frozen=True)
class Preparation:
    """What ``canon --for`` produced: the model the verifier reads and the checked passes that made it."""

    verifier: str
    model: Model
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON report of ``nnxform canon --for``."""
        return {"verifier": self.verifier, "parser": PROFILES[self.verifier].source, "readable": True,
                "steps": [s.to_json() for s in self.steps], "operators_after": self.model.op_counts()}


def written(model: Model) -> Model:
    """``model`` as its ONNX file reads back (opset and IR version as nnxform writes them), for the profile checks."""
    return from_proto(model.to_onnx(), source={"path": "the result"}, supported_only=False)


def prepare_for(model: Model, verifier: str, box: Optional[Box] = None, samples: int = 1000, tol: float = ATOL,
                parameters: Optional[dict[str, Any]] = None) -> Preparation:
    """Rewrite ``model`` with checked passes into what ``verifier``'s parser reads, or raise naming what remains.

    ``canon`` first (which folds BatchNormalization as fold-bn does and makes convolutions explicit); if the
    verifier still refuses it and the network is a ReLU chain, it is rewritten as one chain by the ``pad`` pass at
    the network's own depth (no identity layer added; a single affine layer, which has no Relu, at depth 2:
    ``[W; −W] → Relu → [I, −I]``), kept when the verifier refuses less of it. Every pass output is checked in
    onnxruntime on ``box`` against its input; the result is never returned unchecked.
    """
    if verifier not in PROFILES:
        raise NnxformError(f"unknown verifier '{verifier}'; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[verifier]
    recorded = dict(parameters or {}, verifier=verifier)
    result, report, check = apply_checked("canon", model, box, samples=samples, tol=tol, parameters=recorded)
    steps = [Step("canon", report, check)]
    blockers = profile.blockers(written(result))
    if blockers:
        try:
            depth = len(relu_layers(result, "canon --for"))
        except NnxformError:  # not a ReLU chain: the dense form does not exist
            depth = 0
        # one affine layer and no Relu (nnenum needs one): depth 2 splits it exactly, relu(y) − relu(−y)
        for tried in ([depth, 2] if depth == 1 else [depth] if depth else []):
            chain, report, check = apply_checked("pad", result, box, samples=samples, tol=tol, parameters=recorded,
                                                 depth=tried)
            remaining = profile.blockers(written(chain))
            if len(remaining) < len(blockers):
                result, blockers = chain, remaining
                steps.append(Step(f"one chain (pad --depth {tried})", report, check))
                break
    if blockers:
        first = next((b for b in blockers if b.node), blockers[0])  # a node to name, when there is one
        more = f" (and {len(blockers) - 1} more: nnxform info --for {verifier})" if len(blockers) > 1 else ""
        raise NnxformError(f"{profile.name} cannot read the result of {' and '.join(s.name for s in steps)}: "
                           f"{first.reason}{more}; no nnxform command removes it")
    return Preparation(verifier, result, tuple(steps))
