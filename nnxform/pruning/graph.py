"""Pruning a network with skip connections on its (canonical) graph, where the layered form, a chain, cannot hold it.

A *graph site* is a Conv (group 1, constant weights) or Gemm whose output reaches exactly one weighted consumer — a
Conv reading it as its input, or a Gemm after a Flatten (``H·W`` columns per channel, row-major NCHW) — through
channel-wise nodes only (Relu, MaxPool, AveragePool, BatchNormalization), each read by the next alone. Its channels
are removed physically: the filter rows and bias, the BN's channels, the consumer's input slice. A layer whose
channels reach an Add, a Concat, a second reader or the output is *tied* to other layers' channels (a residual
block's last Conv and the layer feeding the skip): it is skipped, and the report names it and why.

``neuron`` ranks channels by ``‖(filter, bias)‖₂ · ‖outgoing weights‖₂`` (per layer or over all sites), every site
keeping one; ``weight`` zeroes the smallest weights of every Conv and Gemm (nothing is tied for that). The aligned
form (what the impact bound compares with the original) has the removed channels' weights set to zero in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..operators import OPERATORS
from ..errors import NnxformError
from ..ir import Model, Node
from ..layered import dense
from .neuron import select_lowest
from .weight import zero_smallest


def has_skip_connections(model: Model) -> bool:
    """True when a node adds up or joins two data tensors (the layered form, one chain, cannot hold the network)."""
    return any(len(model.data_inputs(n)) > 1 for n in model.nodes)


@dataclass
class GraphSite:
    """A prunable node (Conv or Gemm), the channel-wise nodes after it, its consumer, and the consumer's input
    columns per channel (``block``: ``H·W`` for a Gemm after a Flatten, else 1)."""

    node: Node
    between: list[Node]
    consumer: Node
    block: int
    channels: int


def graph_sites(model: Model) -> tuple[list[GraphSite], dict[str, str]]:
    """The sites of a canonical ``model``, and per skipped Conv/Gemm the reason its channels are tied."""
    shapes = model.shapes()
    found, tied = [], {}
    for node in model.nodes:
        if node.op not in ("Conv", "Gemm") or node.inputs[1] not in model.constants or \
                node.attrs.get("group", 1) != 1 or node.outputs[0] == model.output_name:
            continue
        tensor, between, why = node.outputs[0], [], ""
        while True:
            readers = model.consumers(tensor)
            if len(readers) != 1 or model.is_graph_output(tensor):
                why = f"its channels reach {len(readers)} readers" if len(readers) != 1 else "it is an output"
                break
            nxt = readers[0]
            if OPERATORS[nxt.op].channelwise:  # a channel passes it unchanged in number
                between.append(nxt)
                tensor = nxt.outputs[0]
                continue
            block = 1
            if nxt.op == "Flatten" and nxt.attrs.get("axis", 1) == 1 and len(shapes[tensor]) > 2:
                block = int(np.prod(shapes[tensor][2:]))
                gemm = model.sole_consumer(nxt.outputs[0])
                nxt = gemm if gemm is not None and gemm.op == "Gemm" else nxt
            if nxt.op == "Conv" and nxt.inputs[0] == tensor and nxt.attrs.get("group", 1) == 1 or \
                    nxt.op == "Gemm" and nxt.attrs.get("transB", 0) == 1 and not nxt.attrs.get("transA", 0):
                if nxt.inputs[1] in model.constants:
                    found.append(GraphSite(node, between, nxt, block, model.constants[node.inputs[1]].shape[0]))
                    break
            why = f"its channels reach {nxt.op} '{nxt.name}'"
            break
        if why:
            tied[node.name] = why
    return found, tied


def remove_graph_channels(model: Model, site: GraphSite, drop: np.ndarray, zero: bool = False) -> None:
    """Channels ``drop`` of ``site`` removed from ``model`` in place (``zero``: their weights set to 0 instead, the
    shapes kept — the aligned form)."""
    keep = np.setdiff1d(np.arange(site.channels), drop)

    def edit(name: str, axis: int, index: np.ndarray) -> None:
        value = model.constants[name]
        if zero:
            value = value.copy()
            value[(slice(None),) * axis + (np.setdiff1d(np.arange(value.shape[axis]), index),)] = 0
            model.constants[name] = value
        else:
            model.constants[name] = np.take(value, index, axis=axis)

    for name in site.node.inputs[1:]:
        if name:
            edit(name, 0, keep)
    for bn in site.between:
        if bn.op == "BatchNormalization":
            for name in bn.inputs[1:5]:
                if zero and name == bn.inputs[4]:
                    continue  # the variance stays positive; γ = β = 0 makes the channel 0
                edit(name, 0, keep)
    columns = (keep[:, None] * site.block + np.arange(site.block)).reshape(-1)
    edit(site.consumer.inputs[1], 1, columns)


def prune_graph_channels(model: Model, ratio: float, scope: str | None) -> tuple[Model, Model, dict, list[str]]:
    """``neuron`` pruning of a canonical network with skip connections: the pruned model, its aligned form, details,
    notes."""
    found, tied = graph_sites(model)
    if not found:
        raise NnxformError("prune: no Conv or Gemm of this network feeds a single layer through channel-wise nodes "
                           f"alone ({'; '.join(f'{k}: {v}' for k, v in tied.items())}); nothing can be pruned")
    scope = scope or "layer"
    scores = [_scores(model, s) for s in found]
    drops, notes = select_lowest(scores, ratio, scope)
    names = [s.node.name for s in found]
    notes = [f"{note} (hidden layer k is the k-th of {', '.join(names)})" for note in notes]
    if tied:
        notes.append("skipped, their channels tied to other layers' by a skip connection or a second reader: " +
                     "; ".join(f"{name} ({why})" for name, why in tied.items()))
    pruned, aligned = model.copy(), model.copy()
    for site, drop in zip(found, drops):
        if drop.size:
            remove_graph_channels(pruned, site, drop)
            remove_graph_channels(aligned, site, drop, zero=True)
    conv = [(s, d) for s, d in zip(found, drops) if s.node.op == "Conv"]
    gemm = [(s, d) for s, d in zip(found, drops) if s.node.op == "Gemm"]
    details = {"criterion": "weight-norm", "scope": scope, "layers": names, "skipped": sorted(tied),
               "ranking": "‖filter, bias‖₂ · ‖outgoing weights‖₂ per channel, on the graph (skip connections)",
               "channels_removed": int(sum(d.size for _, d in conv)),
               "units_removed": int(sum(d.size for _, d in gemm)),
               "removed_channels": {s.node.name: d.tolist() for s, d in conv},
               "removed_units": {s.node.name: d.tolist() for s, d in gemm}}
    return pruned, aligned, details, notes


def prune_graph_weights(model: Model, ratio: float, scope: str) -> tuple[Model, dict, list[str]]:
    """``weight`` pruning of a canonical network: the smallest weights of every Conv and Gemm zeroed (global or per
    layer), on a copy."""
    model = model.copy()
    nodes = [n for n in model.nodes if n.op in ("Conv", "Gemm") and n.inputs[1] in model.constants]
    if not nodes:
        raise NnxformError("prune: the network has no Conv or Gemm layer")
    weights = [model.constants[n.inputs[1]] for n in nodes]
    layers = [dense(w.reshape(w.shape[0], -1), np.zeros(w.shape[0]), n.name) for w, n in zip(weights, nodes)]
    zeroed_layers, zeroed = zero_smallest(layers, ratio, scope)
    for n, w, layer in zip(nodes, weights, zeroed_layers):
        model.constants[n.inputs[1]] = layer.W.reshape(w.shape).astype(w.dtype)
    total = sum(w.size for w in weights)
    return model, {"scope": scope, "weights_zeroed": int(zeroed), "weights": int(total)}, []


def _scores(model: Model, site: GraphSite) -> np.ndarray:
    """``‖(filter_c, b_c)‖₂ · ‖outgoing weights of c‖₂`` per channel of ``site``."""
    W = model.constants[site.node.inputs[1]].astype(np.float64).reshape(site.channels, -1)
    b = model.constants[site.node.inputs[2]].astype(np.float64) if len(site.node.inputs) > 2 and site.node.inputs[2] \
        else np.zeros(site.channels)
    out = model.constants[site.consumer.inputs[1]].astype(np.float64)
    per = np.swapaxes(out, 0, 1).reshape(site.channels, -1)  # Conv: [in, out·k…]; Gemm: [in, out] by blocks
    if site.consumer.op == "Gemm":
        per = out.reshape(out.shape[0], site.channels, site.block).transpose(1, 0, 2).reshape(site.channels, -1)
    return np.sqrt((W**2).sum(axis=1) + b**2) * np.sqrt((per**2).sum(axis=1))
