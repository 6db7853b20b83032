"""α,β-CROWN's profile: its ONNX loader (Verified-Intelligence/alpha-beta-CROWN complete_verifier/load_model.py,
load_model_onnx) converts with its fork of onnx2pytorch (Verified-Intelligence/onnx2pytorch: convert/operations.py
dispatches on the op type, convert/attribute.py extracts the attributes, convert/layer.py builds Conv, pooling and
Linear layers, utils.py the paddings), then bounds the module with auto_LiRPA (``BOUNDED``).

load_model_onnx does not refuse a module that computes another function: it prints "Model might not be converted
correctly" and verifies what it converted. The rules below flag those cases too.
"""

from __future__ import annotations

import numpy as np

from ..ir import Model, Node
from .auto_lirpa import BOUNDED, unbounded
from .profile import CANON, Profile, Verdict, constant_input, ints, single_output, symmetric

#: convert/operations.py convert_operations: the op types with a branch of their own
_CONVERTED = ("Add", "And", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Constant",
              "ConstantOfShape", "Conv", "ConvTranspose", "Div", "Elu", "Equal", "Erf", "Exp", "Expand", "Flatten",
              "Floor", "Gather", "GatherND", "Gemm", "GlobalAveragePool", "Greater", "Identity",
              "InstanceNormalization", "LeakyRelu", "Less", "Log", "Loop", "LSTM", "MatMul", "Max", "MaxPool", "Min",
              "Mul", "NonMaxSuppression", "Not", "OneHot", "Or", "Pad", "Pow", "PRelu", "Range", "Reciprocal",
              "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape", "Resize",
              "Scatter", "ScatterElements", "ScatterND", "Shape", "Sigmoid", "Slice", "Softmax", "Softplus",
              "Softsign", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose",
              "Unsqueeze", "Upsample", "Where", "Dropout", "ArgMax")
#: its last branch, getattr(torch, op_type.lower()): the ONNX ops whose lower-case name is a torch function of
#: the same meaning
_TORCH_FALLBACK = ("Abs", "Neg", "Sign", "Sin", "Cos", "Tan", "Atan")
#: the branches that pass the node's attributes through convert/attribute.py extract_attributes (Resize excepted:
#: it keeps any attribute)
_EXTRACTS = frozenset({"AveragePool", "MaxPool", "Conv", "ConvTranspose", "BatchNormalization",
                       "InstanceNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Elu",
                       "Flatten", "Gather", "GatherND", "Gemm", "LeakyRelu", "Loop", "LSTM", "NonMaxSuppression",
                       "OneHot", "Pad", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "Scatter",
                       "ScatterElements", "Slice", "Softmax", "Split", "Squeeze", "ThresholdedRelu", "Transpose",
                       "Unsqueeze", "Upsample"})
#: extract_attributes' branches; any other attribute raises "Extraction of attribute … not implemented"
_KNOWN = frozenset({"activation_alpha", "activation_beta", "activations", "alpha", "auto_pad", "axis", "axes", "beta",
                    "body", "ceil_mode", "center_point_box", "clip", "coordinate_transformation_mode",
                    "count_include_pad", "dilations", "direction", "ends", "epsilon", "group", "hidden_size",
                    "input_forget", "keepdims", "kernel_shape", "largest", "layout", "max", "min", "mode", "momentum",
                    "noop_with_empty_axes", "pads", "perm", "repeats", "sorted", "sparse_value", "spatial", "split",
                    "strides", "starts", "to", "transB", "transA", "value", "value_float", "value_floats",
                    "value_int", "value_ints", "value_string", "value_strings", "broadcast"})


def _attributes(model: Model, node: Node) -> Verdict:
    """attribute.py extract_attributes: an attribute it has no branch for raises NotImplementedError."""
    unknown = sorted(a for a in node.attrs if a not in _KNOWN)
    if not unknown:
        return None
    # canon drops what changes nothing (passes/conv_form.py): an all-zero output_padding, a MaxPool's storage_order
    dropped = {"storage_order"} if node.op == "MaxPool" else \
        {"output_padding"} if node.op == "ConvTranspose" and not any(ints(node, "output_padding")) else set()
    return (f"has {', '.join(unknown)}: α,β-CROWN's onnx2pytorch raises 'Extraction of attribute "
            f"{unknown[0]} not implemented' (convert/attribute.py)", CANON if set(unknown) <= dropped else None)


def _kernel(model: Model, node: Node) -> Verdict:
    """layer.py convert_layer: kwargs['kernel_size'] is read unconditionally (a KeyError without kernel_shape)."""
    if "kernel_shape" not in node.attrs:
        return "leaves kernel_shape implicit: α,β-CROWN's onnx2pytorch reads it unconditionally (convert/layer.py)", \
            CANON
    return None


def _pads(model: Model, node: Node) -> Verdict:
    """utils.py extract_padding_params_for_conv_layer: asymmetric pads become a ConstantPad before the layer, which is
    the same function only for a Conv; torch's AvgPool counts padded zeros unless count_include_pad=0 is written."""
    pads = ints(node, "pads")
    if node.op == "ConvTranspose" and not symmetric(pads):
        return (f"has asymmetric pads {pads}: α,β-CROWN's onnx2pytorch pads the input instead of cropping the output "
                "(utils.py), a different function", None)
    if node.op == "MaxPool" and not symmetric(pads):
        return f"has asymmetric pads {pads}: α,β-CROWN's onnx2pytorch pads with zeros, not −∞ (utils.py)", None
    if node.op == "AveragePool" and any(pads):
        # symmetric: torch's AvgPool with count_include_pad as written, else torch's default True (ONNX's is 0);
        # asymmetric: the padded zeros are part of the input, counted as ONNX counts them only with count_include_pad=1
        written = node.attrs.get("count_include_pad")
        if (written is None) if symmetric(pads) else (written != 1):
            return ("has pads: α,β-CROWN's onnx2pytorch counts the padded zeros in the average (utils.py, torch's "
                    "count_include_pad default), ONNX without count_include_pad=1 does not", None)
    return None


def _gemm(model: Model, node: Node) -> Verdict:
    """layer.py convert_linear_layer: transA=0 only (NotImplementedError otherwise)."""
    return ("has transA=1: α,β-CROWN's onnx2pytorch raises NotImplementedError (convert/layer.py)", CANON) \
        if node.attrs.get("transA", 0) else None


def _flatten(model: Model, node: Node) -> Verdict:
    """operations/flatten.py: torch.flatten(start_dim=axis), ONNX's 2-D result only for axis 1."""
    axis = node.attrs.get("axis", 1)
    return None if axis == 1 else (f"has axis={axis}: α,β-CROWN's onnx2pytorch flattens from that axis to the end "
                                   "(operations/flatten.py), not to ONNX's 2-D shape", None)


def _options(model: Model) -> list[list[str]]:
    """What abcrown.py's defaults lack for ``model``, as its own exp_configs set it for such networks."""
    needed = []
    if any(n.op == "MaxPool" for n in model.nodes):
        # auto_LiRPA operators/pooling.py: optimising a MaxPool's bounds in the default 'patches' mode raises
        # "Please use --conv_mode matrix" (exp_configs/vnncomp23/cgan.yaml and others set conv_mode: matrix)
        needed.append(["--conv_mode", "matrix"])
    if any(n.op == "Reshape" and n.inputs[1] in model.constants and int(model.constants[n.inputs[1]].ravel()[0]) == 1
           for n in model.nodes):
        # α,β-CROWN runs batches of inputs through the module; the fork's operations/reshape.py keeps a written batch
        # of 1 unless the quirk is set (exp_configs/vnncomp23/cgan.yaml, nn4sys.yaml, metaroom.yaml set it)
        needed.append(["--onnx_quirks", "{'Reshape': {'fix_batch_size': True}}"])
    if int(np.prod(model.input_shape)) == 1:
        # load_model.py drops the leading 1 of a [1, 1] input; exp_configs/vnncomp21/test.yaml sets input_shape
        needed.append(["--input_shape", "-1", "1"])
    return needed


def _missing(node: Node) -> str:
    """Not converted by the fork, or converted but not bounded."""
    if node.op in _CONVERTED or node.op in _TORCH_FALLBACK:
        return unbounded(node)
    return f"α,β-CROWN's onnx2pytorch raises 'Conversion not implemented for op_type={node.op}' (convert/operations.py)"


def _checks(op: str) -> tuple:
    """The rules for one operator the fork converts and auto_LiRPA bounds."""
    rules: list = [_attributes] if op in _EXTRACTS else []
    if op in ("Conv", "ConvTranspose"):  # convert_layer: weight and bias from the initializers (params)
        rules += [_kernel, _pads, constant_input(1, "weight"), constant_input(2, "bias")]
    if op in ("MaxPool", "AveragePool"):
        rules.append(_pads)
    if op == "Gemm":  # convert_linear_layer: extract_params(params) reads the weight and bias from the initializers
        rules += [_gemm, constant_input(1, "weight"), constant_input(2, "bias")]
    if op == "Flatten":
        rules.append(_flatten)
    return tuple(rules)


ABCROWN = Profile(
    name="α,β-CROWN",
    source="Verified-Intelligence/alpha-beta-CROWN complete_verifier/load_model.py; Verified-Intelligence/onnx2pytorch "
           "onnx2pytorch/convert/operations.py, attribute.py, layer.py, utils.py; auto_LiRPA/bound_general.py",
    operators={op: _checks(op) for op in (*_CONVERTED, *_TORCH_FALLBACK) if op in BOUNDED},
    graph_checks=(single_output,),  # load_model_onnx verifies the one output the converted module returns
    missing=_missing,
    options=_options,
    explicit_pads=True,
)
