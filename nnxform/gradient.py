"""Input gradients by reverse mode over the IR operators, vectorised over samples.

``gradient(model, xs, weights)`` returns ∂(Σ weights · tensor)/∂x for every sample: the
vector-Jacobian product of the forward evaluation in ``interpreter``, each operator's from its entry of
the operator table (``operators.OPERATORS[op].vjp``). Used by projected-gradient
searches (soundness tests of the bound analyzers, FGSM-style attacks, witness search).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import UnsupportedOperator
from .interpreter import Inputs, arguments, run
from .ir import Model, Node
from .operators import OPERATORS


def gradient(model: Model, xs: np.ndarray, weights: np.ndarray | Callable[[np.ndarray], np.ndarray],
             tensor: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Value and input gradient of ``Σ weights · tensor`` per sample.

    ``xs``: samples ``(n, *input_shape)`` (or flat); ``weights``: flat ``(tensor size,)`` or per
    sample ``(n, tensor size)``, or a function of the tensor's values ``(n, tensor size)`` giving them (for weights
    that depend on the values: one forward pass instead of two); ``tensor`` defaults to the model's output. Returns
    ``(values (n, tensor size), gradients (n, input size))`` in float64.
    """
    tensor = tensor or model.output_name
    xs = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(model.input_shape))
    n = len(xs)
    values = run(model, xs, keep=True)
    out = values[tensor]
    if callable(weights):
        weights = weights(out.reshape(n, -1))
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64).reshape(-1 if np.ndim(weights) == 1 else (n, -1)), (n, out[0].size))
    grads = backpropagate(model.nodes, values, {tensor: w.reshape(out.shape).copy()},
                          lambda node, vals: (node, *arguments(node, vals, model.constants)))
    gx = grads.get(model.input_name, np.zeros_like(xs))
    return out.reshape(n, -1), gx.reshape(n, -1)


def backpropagate(nodes: list[Node], values: dict[str, np.ndarray], grads: dict[str, np.ndarray],
                  inputs: Inputs) -> dict[str, np.ndarray]:
    """The one reverse loop, over ``nodes`` (in graph order): the gradients seeded in ``grads`` carried back onto every batched
    input by each operator's VJP (``values`` holds every node's inputs and output), accumulated where paths join."""
    for node in reversed(nodes):
        g = grads.pop(node.outputs[0], None)
        if g is None:
            continue
        op_node, args, batched = inputs(node, values)
        spec = OPERATORS.get(op_node.op)
        if spec is None:
            raise UnsupportedOperator(f"operator {node.op} (node '{node.name}') has no gradient")
        for k, gk in enumerate(spec.vjp(op_node, args, batched, values[node.outputs[0]], g)):
            if gk is not None and batched[k]:
                t = node.inputs[k]
                grads[t] = grads[t] + gk if t in grads else gk
    return grads
