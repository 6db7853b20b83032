"""The operator table: what every ONNX operator nnxform supports means, in one place.

Each ``Operator`` says which inputs must be constants, how the node is evaluated (vectorised over
samples, ``forward``) and differentiated in its data input and its trained constants (``backward``), in which data inputs it is affine, how a
float network rounds it and its absolute form (``forms``), whether it is verifier-friendly, what
``info`` counts, how the loader checks and normalises it and how it is exported; a nonlinear
operator is either an element-wise activation (``activations.Elementwise``: its function and
linear relaxation, both required) or the MaxPool window maximum. The loader refuses any operator
not in ``OPERATORS``; every other module reads this table instead of keeping its own list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import backward, forms, forward
from .activations import LEAKY_RELU, RELU, SIGMOID, TANH, Elementwise
from .forms import EXPORT_OPSET

Check = Callable[[Any, Any], "str | None"]

#: In which data inputs an operator is affine: all of them jointly (Add, Concat, …), any one when the others are
#: constants (Mul, Gemm, MatMul), or the first one only (the others are weights or divisors).
AFFINE_ALL, AFFINE_ONE, AFFINE_FIRST = "all", "one", "first"


@dataclass(frozen=True)
class Operator:
    """What one ONNX operator means to nnxform (see the module docstring)."""

    evaluate: Callable  # (node, args, batched) -> output, with the sample axis
    vjp: Callable  # (node, args, batched, output, grad) -> grad per input (None where not needed)
    affine: str | None  # AFFINE_ALL / AFFINE_ONE / AFFINE_FIRST; None for a nonlinear operator
    param_vjp: Callable | None = None  # (node, args, output, grad) -> grad per trained constant input, samples summed
    activation: Elementwise | None = None  # element-wise nonlinear: value, relaxation, float error
    window_max: bool = False  # MaxPool: the maximum over each window (the analyzers' Pool step)
    constant_inputs: tuple[int, ...] = ()  # input positions that must be constants (weights)
    offsets: tuple[int, ...] = ()  # inputs that only add a constant term (biases): zero in the linear part
    roundings: Callable = forms.exact  # (node, shapes) -> roundings per output value, for affine operators
    absolute: Callable | None = None  # (node, args) -> the node and args of its absolute form (constants already |.|)
    canonical: bool = True  # verifier-friendly: may remain in ``canon``'s output
    weighted: bool = False  # its constant inputs are parameters (``info``)
    neurons: bool = False  # its outputs count as neurons (``info``)
    spatial: bool = False  # works on channels × positions: the dense-chain tools (pruning) refuse it
    linear_layer: bool = False  # a layer with a weight matrix or kernel: quantised, counted as a layer by merge
    transparent: bool = False  # its output is its input (at inference): walked through when following a chain
    channelwise: bool = False  # each output channel depends on the same input channel only: a channel passes it
    checks: tuple[Check, ...] = ()  # loader: forms the evaluator cannot compute exactly, refused with a reason
    normalise: Callable | None = None  # loader: (model, node) -> None, the one internal form
    export: Callable | None = None  # exporter: node -> (inputs, attrs, extra initializers) for EXPORT_OPSET

    def __post_init__(self) -> None:
        if (self.affine is None) == (self.activation is None and not self.window_max):
            raise ValueError("an operator is affine, or an activation with its relaxation, or a window maximum")

    @property
    def nonlinear(self) -> bool:
        """True for the operators the analyzers relax (activations and MaxPool)."""
        return self.affine is None

    def offset(self, k: int) -> bool:
        """Whether input ``k``, when constant, only adds a term: a bias, or any non-structural constant of an
        operator affine in all its inputs jointly (``Add(x, c)``, ``Concat(x, c)``). The linear part of the
        operator is its value with these inputs at zero (read so, a bias of 1e20 cannot swamp a weight of 1)."""
        return k in self.offsets or (self.affine == AFFINE_ALL and k not in self.constant_inputs)


def _activation(kind: Elementwise, **kw: Any) -> Operator:
    return Operator(forward.elementwise(kind), backward.elementwise(kind), None, activation=kind,
                    neurons=kind.slopes is not None, channelwise=True, **kw)


def _binary(fn: Callable, affine: str, **kw: Any) -> Operator:
    return Operator(forward.binary(fn), backward.binary, affine, roundings=forms.one_operation, weighted=True, **kw)


def _identity(**kw: Any) -> Operator:
    return Operator(forward.unary(lambda x: x), backward.reshape_back, AFFINE_ALL, canonical=False, transparent=True,
                    channelwise=True, **kw)


_CONV_CHECKS = (forms.kernel_rank, forms.same_pads_without_dilations)

OPERATORS: dict[str, Operator] = {
    "Add": _binary(np.add, AFFINE_ALL),
    "Sub": _binary(np.subtract, AFFINE_ALL, absolute=forms.sub_absolute, canonical=False),
    "Mul": _binary(np.multiply, AFFINE_ONE),
    "Div": _binary(np.divide, AFFINE_FIRST, canonical=False),
    "Relu": _activation(RELU),
    "LeakyRelu": _activation(LEAKY_RELU, checks=(forms.convex_leaky_relu,)),
    "Sigmoid": _activation(SIGMOID),
    "Tanh": _activation(TANH),
    "Identity": _identity(),
    "Dropout": _identity(constant_inputs=(1, 2), checks=(forms.dropout_inference,), normalise=forms.dropout_form),
    "Gemm": Operator(forward.gemm, backward.gemm, AFFINE_ONE, param_vjp=backward.gemm_params, offsets=(2,),
                     roundings=forms.gemm_roundings,
                     absolute=forms.gemm_absolute, weighted=True, neurons=True, linear_layer=True,
                     normalise=forms.gemm_form),
    "MatMul": Operator(forward.matmul, backward.matmul, AFFINE_ONE, roundings=forms.matmul_roundings, weighted=True,
                       neurons=True, linear_layer=True),
    "Flatten": Operator(forward.flatten, backward.reshape_back, AFFINE_ALL),
    "Reshape": Operator(forward.reshape, backward.reshape_back, AFFINE_ALL, constant_inputs=(1,),
                        checks=(forms.reshape_allowzero,), normalise=forms.reshape_form),
    "Transpose": Operator(forward.transpose, backward.transpose, AFFINE_ALL),
    "Unsqueeze": Operator(forward.unsqueeze, backward.reshape_back, AFFINE_ALL, constant_inputs=(1,),
                          normalise=forms.axes_form, export=forms.axes_input),
    "Squeeze": Operator(forward.squeeze, backward.reshape_back, AFFINE_ALL, constant_inputs=(1,),
                        normalise=forms.axes_form, export=forms.axes_input),
    "Concat": Operator(forward.concat, backward.concat, AFFINE_ALL),
    "Conv": Operator(forward.conv, backward.conv, AFFINE_FIRST, param_vjp=backward.conv_params, constant_inputs=(1, 2),
                     offsets=(2,),
                     roundings=forms.conv_roundings,
                     weighted=True, neurons=True, spatial=True, linear_layer=True, checks=_CONV_CHECKS,
                     normalise=forms.window_form),
    "ConvTranspose": Operator(forward.conv_transpose, backward.conv_transpose, AFFINE_FIRST,
                              param_vjp=backward.conv_transpose_params, constant_inputs=(1, 2), offsets=(2,),
                              roundings=forms.conv_roundings, weighted=True, neurons=True, spatial=True,
                              linear_layer=True, checks=_CONV_CHECKS, normalise=forms.transposed_form),
    "MaxPool": Operator(forward.pool("max"), backward.pool, None, window_max=True, spatial=True, channelwise=True,
                        checks=_CONV_CHECKS, normalise=forms.window_form),
    "AveragePool": Operator(forward.pool("avg"), backward.pool, AFFINE_ALL, roundings=forms.average_roundings,
                            spatial=True, channelwise=True, checks=_CONV_CHECKS + (forms.no_pool_dilations,), normalise=forms.window_form),
    "BatchNormalization": Operator(forward.batchnorm, backward.batchnorm, AFFINE_FIRST,
                                   param_vjp=backward.batchnorm_params, constant_inputs=(1, 2, 3, 4), offsets=(2, 3),
                                   roundings=forms.batchnorm_roundings, absolute=forms.batchnorm_absolute,
                                   canonical=False, weighted=True, channelwise=True,
                                   checks=(forms.batchnorm_inference,),
                                   normalise=forms.batchnorm_form),
}

#: The convolutions: layers with a kernel over channels × positions (Conv, ConvTranspose).
CONVOLUTIONS = frozenset(op for op, spec in OPERATORS.items() if spec.linear_layer and spec.spatial)
#: Operators that may remain in canonical output (``canon``): the verifier-friendly ones.
CANONICAL_OPS = frozenset(op for op, spec in OPERATORS.items() if spec.canonical)
#: The piecewise-linear activations (``Elementwise.slopes``: ReLU, LeakyRelu): their units are active, inactive or
#: unstable on a box, and a stable one is linear there.
PIECEWISE_LINEAR = frozenset(op for op, spec in OPERATORS.items()
                             if spec.activation is not None and spec.activation.slopes is not None)

__all__ = ["AFFINE_ALL", "AFFINE_FIRST", "AFFINE_ONE", "CANONICAL_OPS", "CONVOLUTIONS", "EXPORT_OPSET", "OPERATORS",
           "PIECEWISE_LINEAR", "Elementwise", "Operator"]
