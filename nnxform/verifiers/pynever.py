"""pynever's profile: NeVerTools/pyNeVer pynever/strategies/conversion/converters/onnx.py
(ONNXConverter.to_neural_network, a SequentialNetwork appended node by node) and converters/pytorch.py."""

from __future__ import annotations

from typing import Optional

from ..ir import Model, Node
from .profile import CANON, Profile, Verdict, auto_pad, chain, constant_input, ints, symmetric


def _explicit(node: Node, required: tuple[str, ...], fix: Optional[str]) -> Verdict:
    """The ``required`` attributes written out, pads symmetric (to_neural_network and the torch conversion)."""
    # onnx.py: "we do not support auto_pad and implicit kernel_shape"; the defaults of pads, strides and dilations
    # are tuples of float tensors (tuple(torch.ones(...))), which torch's pad() and conv2d() refuse
    missing = [k for k in required if k not in node.attrs]
    if missing:
        return f"leaves {', '.join(missing)} implicit, which pynever's converter cannot default", fix
    # converters/pytorch.py, ConvNode to torch: padding = layer.padding[:int(len(layer.padding) / 2)]
    if not symmetric(ints(node, "pads")):
        return f"has asymmetric pads {ints(node, 'pads')}, which pynever's conversion to torch reads as symmetric", None
    return auto_pad(node)


def _conv(model: Model, node: Node) -> Verdict:
    """Conv: reads 'groups' (never ONNX's 'group'), and needs every attribute written (canon writes them)."""
    if node.attrs.get("group", 1) != 1:
        return f"has group={node.attrs['group']}: pynever's converter reads 'groups', not 'group'", CANON
    return _explicit(node, ("kernel_shape", "pads", "strides", "dilations"), CANON)


def _pool(model: Model, node: Node) -> Verdict:
    """AveragePool/MaxPool: explicit, symmetric pads and strides (and dilations for MaxPool), as for Conv."""
    required = ("kernel_shape", "pads", "strides") + (("dilations",) if node.op == "MaxPool" else ())
    return _explicit(node, required, CANON)


def _gemm(model: Model, node: Node) -> Verdict:
    """Gemm: the weight is taken as [out, in] unless transB=0 is written; alpha, beta and transA are not read."""
    if node.attrs.get("transB", 0) != 1 or node.attrs.get("transA", 0) != 0 \
            or node.attrs.get("alpha", 1.0) != 1.0 or node.attrs.get("beta", 1.0) != 1.0:
        return "is not transB=1, alpha=beta=1: pynever's converter reads the weight as [out, in] and no scales", CANON
    return None


def _skipped(model: Model, node: Node) -> Verdict:
    """Sub and Div: skipped ('not relevant for verification'), so pynever would verify another function."""
    return "would be skipped by pynever's converter (a different function)", CANON


def _matmul(model: Model, node: Node) -> Verdict:
    """MatMul: a constant weight, and only an Add right after it (read as its bias)."""
    if not any(t in model.constants for t in node.inputs):
        return "multiplies two data tensors: pynever's converter reads a constant weight", None
    return None


def _add(model: Model, node: Node) -> Verdict:
    """Add: read only right after a MatMul, with the bias as second input; an Add elsewhere raises."""
    if len(model.data_inputs(node)) > 1:  # canon folds an Add of a constant, never one of two branches
        return "adds two data tensors: pynever's converter raises NotImplementedError", None
    index = model.nodes.index(node)
    before = model.nodes[index - 1] if index > 0 else None
    after_matmul = before is not None and before.op == "MatMul" and before.outputs[0] == node.inputs[0]
    if not after_matmul or node.inputs[1] not in model.constants:
        # canon folds a constant into the affine layer beside it, but not into a Conv that pads with zeros
        padded = any(c.op == "Conv" and any(ints(c, "pads")) for c in model.consumers(node.outputs[0]))
        return "is not the bias of the MatMul before it: pynever's converter raises NotImplementedError", \
            None if padded else CANON
    return None


PYNEVER = Profile(
    name="pynever",
    source="NeVerTools/pyNeVer pynever/strategies/conversion/converters/onnx.py",
    operators={
        "MatMul": (_matmul,), "Add": (_add,), "Sub": (_skipped,), "Div": (_skipped,),
        "Relu": (), "Elu": (), "LeakyRelu": (), "Celu": (), "Sigmoid": (), "Tanh": (), "Softmax": (), "LRN": (),
        "Gemm": (_gemm, constant_input(1, "weight"), constant_input(2, "bias")),
        "BatchNormalization": tuple(constant_input(i, "parameters", CANON) for i in range(1, 5)),
        "Conv": (_conv, constant_input(1, "weight"), constant_input(2, "bias")),
        "AveragePool": (_pool,), "MaxPool": (_pool,),
        "Unsqueeze": (constant_input(1, "axes", CANON),), "Reshape": (constant_input(1, "shape", CANON),),
        "Flatten": (), "Transpose": (), "Dropout": (constant_input(1, "ratio", CANON),),
    },
    graph_checks=(chain,),  # SequentialNetwork: append_node in file order
    explicit_pads=True,
)
