"""Input gradients by reverse mode over the IR operators, vectorised over samples.

``gradient(model, xs, weights)`` returns ∂(Σ weights · tensor)/∂x for every sample: the
vector-Jacobian product of the forward evaluation in ``evaluate``, each operator's from its entry of
the operator table (``operators.OPERATORS[op].vjp``). Used by projected-gradient
searches (soundness tests of the bound analyzers, FGSM-style attacks, witness search).
"""

from __future__ import annotations

import numpy as np

from .errors import UnsupportedOperator
from .evaluate import arguments, run
from .ir import Model
from .operators import OPERATORS


def gradient(model: Model, xs: np.ndarray, weights: np.ndarray, tensor: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Value and input gradient of ``Σ weights · tensor`` per sample.

    ``xs``: samples ``(n, *input_shape)`` (or flat); ``weights``: flat ``(tensor size,)`` or per
    sample ``(n, tensor size)``; ``tensor`` defaults to the model's output. Returns
    ``(values (n, tensor size), gradients (n, input size))`` in float64.
    """
    tensor = tensor or model.output_name
    xs = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(model.input_shape))
    n = len(xs)
    values = run(model, xs, keep=True)
    out = values[tensor]
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64).reshape(-1 if np.ndim(weights) == 1 else (n, -1)), (n, out[0].size))
    grads: dict[str, np.ndarray] = {tensor: w.reshape(out.shape).copy()}
    for node in reversed(model.nodes):
        g = grads.pop(node.outputs[0], None)
        if g is None:
            continue
        args, batched = arguments(node, values, model.constants)
        spec = OPERATORS.get(node.op)
        if spec is None:
            raise UnsupportedOperator(f"operator {node.op} (node '{node.name}') has no gradient")
        for k, gk in enumerate(spec.vjp(node, args, batched, values[node.outputs[0]], g)):
            t = node.inputs[k] if k < len(node.inputs) else ""
            if gk is not None and batched[k]:
                grads[t] = grads[t] + gk if t in grads else gk
    gx = grads.get(model.input_name, np.zeros_like(xs))
    return out.reshape(n, -1), gx.reshape(n, -1)
