"""What a model is: shapes, operators, a per-layer table, and what keeps it from being verifier-friendly."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ir import Model
from .layered import Branch, walk
from .operators import CANONICAL_OPS, OPERATORS, PIECEWISE_LINEAR
from .operators.forms import needs_rewrite


def summarize(model: Model) -> dict[str, Any]:
    """A JSON-ready description of ``model`` (see ``nnxform info``)."""
    shapes = model.shapes()
    layers = []
    for n in model.nodes:
        spec = OPERATORS.get(n.op)  # None for a node kept as read (load(..., supported_only=False))
        weights = [model.constants[t] for t in n.inputs if t in model.constants and spec is not None and spec.weighted]
        out_shape = shapes[n.outputs[0]]
        first = weights[0] if weights else None
        layers.append({
            "node": n.name,
            "op": n.op,
            "output_shape": list(out_shape),
            "neurons": int(np.prod(out_shape)) if spec is not None and spec.neurons else 0,
            "parameters": int(sum(w.size for w in weights)),
            "zero_weights": int(np.count_nonzero(first == 0)) if first is not None and first.ndim >= 2 else 0,
        })
    relus = [layer for layer in layers if layer["op"] in PIECEWISE_LINEAR]  # ReLU-like: ReLU, LeakyRelu
    return {
        "path": model.source.get("path"),
        "sha256": model.source.get("sha256"),
        "producer": model.source.get("producer"),
        "opset": model.source.get("opset"),
        "ir_version": model.source.get("ir_version"),
        "input": {"name": model.input_name, "shape": list(model.input_dims or model.input_shape)},
        "outputs": [{"name": o, "shape": list(shapes[o])} for o in model.output_names],
        "operators": model.op_counts(),
        "layers": layers,
        "relu_layers": len(relus),
        "relu_neurons": int(sum(layer["neurons"] for layer in relus)),
        "parameters": int(sum(c.size for c in model.constants.values() if np.issubdtype(c.dtype, np.floating))),
        "verifier_friendly": not verifier_blockers(model),
        "blockers": verifier_blockers(model),
        "unsupported": [{"node": node, "reason": reason} for node, reason in model.unsupported.items()],
    }


def verifier_blockers(model: Model) -> list[str]:
    """Why the graph is not a single chain of verifier-friendly operators (empty when it is): per node, its operator,
    then its joins and fan-outs (``layered.walk``'s branches)."""
    reasons = []
    if len(model.output_names) != 1:
        reasons.append(f"{len(model.output_names)} outputs (verifiers want one)")
    branches: dict[int, list[Branch]] = {}
    for b in walk(model).branches:
        branches.setdefault(id(b.node), []).append(b)
    for n in model.nodes:
        if n.name in model.unsupported:
            reasons.append(f"{n.op} node '{n.name}' (not supported by nnxform)")
        elif n.op not in CANONICAL_OPS:
            reasons.append(f"{n.op} node '{n.name}' (run `nnxform canon`)")
        elif needs_rewrite(n):
            reasons.append(f"{n.op} node '{n.name}' is grouped, leaves an attribute a verifier needs implicit or "
                           "writes one a verifier refuses (run `nnxform canon`; `nnxform info --for` names which)")
        reasons += [f"{b.text()} (not a single chain)" for b in branches.get(id(n), [])]
    return reasons
