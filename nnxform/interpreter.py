"""The interpreter: numpy forward evaluation of the IR, vectorised over samples.

Every value that depends on the network input carries one extra leading *sample* axis
on top of its ONNX shape (which includes the model's own batch dimension of 1), so one
call evaluates thousands of points. Constants carry no sample axis. Each operator's kernel
is its entry of the operator table (``operators.OPERATORS[op].evaluate``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import numpy as np

from .errors import NnxformError, UnsupportedOperator
from .ir import Model, Node
from .operators import OPERATORS
from .runtime import numbers_per_point, onnxruntime_shapes, points_fitting


#: A node's operator node and arguments as its kernel (or its VJP) takes them, ``(node, args, batched)``, from the
#: values at hand: plain (``arguments``), with its linear part only, or in its absolute form (the analyzers').
Inputs = Callable[[Node, dict[str, np.ndarray]], tuple[Node, list, list[bool]]]


def run(model: Model, xs: np.ndarray, keep: bool = False) -> dict[str, np.ndarray] | np.ndarray:
    """Evaluate ``model`` on samples ``xs`` of shape ``(n, *model.input_shape)`` in float64.

    Returns the first output (with its sample axis), or every computed tensor when ``keep``.
    """
    if model.unsupported:
        raise UnsupportedOperator(next(iter(model.unsupported.values())))
    xs = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(model.input_shape))
    values = forward(model.nodes, {model.input_name: xs},
                     lambda node, values: (node, *arguments(node, values, model.constants)))
    return values if keep else values[model.output_names[0]]


def forward(nodes: Iterable[Node], values: dict[str, np.ndarray], inputs: Inputs) -> dict[str, np.ndarray]:
    """The one forward loop: each of ``nodes`` (in graph order) evaluated by its table kernel on the arguments
    ``inputs`` gives, its output added to ``values`` (returned). The reverse loop is ``gradient.backpropagate``."""
    for node in nodes:
        op_node, args, batched = inputs(node, values)
        spec = OPERATORS.get(op_node.op)
        if spec is None:
            raise UnsupportedOperator(f"operator {node.op} (node '{node.name}') cannot be evaluated")
        try:
            values[node.outputs[0]] = spec.evaluate(op_node, args, batched)
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:  # an ill-formed node
            shapes = ", ".join(str(list(a.shape[1:] if b else a.shape)) for a, b in zip(args, batched) if a is not None)
            raise NnxformError(f"{node.op} node '{node.name}' cannot be computed on inputs of shape {shapes} "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    return values


#: The memory one float64 pass of the evaluator may take with every tensor of its points kept (``points_per_pass``).
PASS_BYTES = 2**28


def points_per_pass(model: Model, most: int) -> int:
    """How many points one float64 pass of ``model`` may evaluate (at most ``most``) with all its tensors within
    ``PASS_BYTES``: a thousand on a dense network, about twenty on a 200×200 CNN, where a thousand would take 17 GB."""
    return points_within(numbers_per_point(model), most)


def points_within(per_point: int, most: int) -> int:
    """How many points whose float64 tensors take ``per_point`` numbers each fit ``PASS_BYTES`` (1 to ``most``)."""
    return points_fitting(PASS_BYTES, 8 * per_point, most)


def in_passes(f: Callable[[np.ndarray], np.ndarray], xs: np.ndarray, step: int) -> np.ndarray:
    """``f`` on the points ``xs`` (first axis), ``step`` points at a time, the results stacked: one batched pass's
    speed with the memory of ``step`` points."""
    return np.concatenate([f(xs[i:i + step]) for i in range(0, len(xs), step)])


def tensor_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """ONNX shape (without the sample axis) of every tensor, found by evaluating one zero sample
    (in onnxruntime for a model with nodes nnxform cannot evaluate)."""
    if model.unsupported:
        return onnxruntime_shapes(model)
    with np.errstate(all="ignore"):  # a division by data is 0/0 here: only the shapes count
        values = run(model, np.zeros((1,) + tuple(model.input_shape)), keep=True)
    shapes = {name: tuple(v.shape[1:]) for name, v in values.items()}
    shapes.update({name: tuple(c.shape) for name, c in model.constants.items()})
    return shapes


def batch_agnostic(model: Model) -> bool:
    """True when the graph treats the batch dimension as a batch: evaluated on two inputs stacked
    on it, every output is the two one-input outputs stacked (what a symbolic batch declares)."""
    if not model.input_shape or model.input_shape[0] != 1:
        return False
    pair = dataclasses.replace(model, input_shape=(2,) + tuple(model.input_shape[1:]))
    xs = np.random.default_rng(0).uniform(-1.0, 1.0, (2,) + tuple(model.input_shape))
    try:
        stacked = run(pair, xs.reshape((1, 2) + tuple(model.input_shape[1:])), keep=True)
    except NnxformError:  # e.g. a Reshape to a fixed batch of 1 cannot take two rows
        return False
    alone = run(model, xs, keep=True)
    for name in model.output_names:
        one, two = alone[name], stacked[name][0]
        if one.shape[1:2] != (1,) or two.shape != (2,) + one.shape[2:] or \
                not np.allclose(two, one[:, 0], rtol=1e-9, atol=1e-12, equal_nan=True):
            return False
    return True


def arguments(node: Node, values: dict[str, np.ndarray], constants: dict[str, np.ndarray],
              fixed: dict[str, np.ndarray] | None = None, linear: bool = False) -> tuple[list, list[bool]]:
    """A node's inputs and which are batched: tensors of ``values`` (with a sample axis), constants (floats as
    float64), else one sample of ``fixed`` or None (an omitted input). ``linear``: the inputs of the node's linear
    part in ``values`` (an affine node's data outside ``values`` and its offsets, ``Operator.offset``, at zero)."""
    args, batched = [], []
    spec = OPERATORS.get(node.op)
    for k, name in enumerate(node.inputs):
        batched.append(name in values)
        if name in values:
            args.append(values[name])
        elif name in constants:
            c = constants[name]
            c = c.astype(np.float64) if np.issubdtype(c.dtype, np.floating) else c
            args.append(np.zeros_like(c) if linear and spec is not None and spec.offset(k) else c)
        elif fixed is not None and name in fixed:
            args.append(np.zeros_like(fixed[name][0]) if linear else fixed[name][0])
        else:
            args.append(None)
    return args, batched


#: The kernel of every operator, as the table has it.
OPS: dict[str, Callable] = {name: spec.evaluate for name, spec in OPERATORS.items()}
