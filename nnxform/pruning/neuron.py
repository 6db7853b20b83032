"""Neuron pruning (paper 001, Algorithm 1, without the sparse training and the fine-tuning).

Hidden units are ranked, lowest first, by

* ``|γ|`` of their BatchNormalization (network slimming) when every prunable hidden layer of the
  loaded network has exactly one BN on its units, before or after the ReLU — read *before*
  ``canon`` folds it away; or
* otherwise the weight-norm score ``‖(W_l[k, :], b_l[k])‖₂ · ‖W_{l+1}[:, k]‖₂`` (what reaches the
  unit times what it sends on).

The ``⌊ratio·N⌋`` lowest are removed physically, ``N`` counting the units of every prunable hidden
layer (``global``, the default with BN: |γ| are comparable across layers), or ``⌊ratio·n_l⌋`` in
each layer (``layer``, the default by weight norm, whose scale differs from layer to layer); every
layer keeps one unit.
The network is pruned in its folded form, which is the same as removing the units together with
their BN channels and folding afterwards, except for one improvement: a removed BN unit is
replaced by the constant its channel outputs at ``γ = 0`` (``relu(β)`` for a BN before the ReLU,
``β`` for one after it), moved into the next layer's bias. So a channel that sparse training drove
to ``γ = 0`` is removed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Model, Node
from ..layered import Chain
from ..operators import OPERATORS
from .chain import quota, remove_units


@dataclass
class BnUnits:
    """Per prunable hidden layer: |γ| of each unit's BN and the value that replaces a removed unit."""

    gamma: list[np.ndarray]
    fill: list[np.ndarray]


def batchnorm_units(model: Model, layers: Chain, prunable: list[int]) -> tuple[BnUnits | None, list[str]]:
    """The BN of each prunable hidden layer of the loaded ``model`` (before folding), or None and why not."""
    bns = [n for n in model.nodes if n.op == "BatchNormalization"]
    if not bns:
        return None, []
    relus = [n.name for n in model.nodes if n.op == "Relu"]
    shapes = model.shapes()
    found: dict[int, list[tuple[Node, str]]] = {}
    for bn in bns:
        side, relu = _neighbouring_relu(model, bn)
        if relu is None or relus.index(relu.name) not in prunable:
            continue
        l = relus.index(relu.name)
        if len(shapes[bn.inputs[0]]) == 2 and shapes[bn.inputs[0]][1] == layers[l].units:
            found.setdefault(l, []).append((bn, side))
    covered = [l for l in prunable if len(found.get(l, [])) == 1]
    if len(covered) < len(prunable):
        have = ", ".join(str(l + 1) for l in covered) or "none"
        return None, [f"{len(bns)} BatchNormalization node(s), but not exactly one on the units of every hidden "
                      f"layer (layers with one: {have}); ranking by weight norm instead"]
    gamma, fill = [], []
    for l in prunable:
        bn, side = found[l][0]
        scale, beta, mean = (model.constants[t].astype(np.float64).reshape(-1) for t in bn.inputs[1:4])
        gamma.append(np.abs(scale))
        fill.append(np.maximum(beta, 0.0) if side == "before" else mean)
    return BnUnits(gamma, fill), []


def _neighbouring_relu(model: Model, bn: Node) -> tuple[str, Node | None]:
    """The Relu right after ``bn`` ("before": BN on the pre-activations) or right before it ("after")."""
    tensor = bn.outputs[0]
    while (user := model.sole_consumer(tensor)) is not None and OPERATORS[user.op].transparent:
        tensor = user.outputs[0]
    if user is not None and user.op == "Relu":
        return "before", user
    tensor = bn.inputs[0]
    while (prod := model.producer(tensor)) is not None and OPERATORS[prod.op].transparent:
        tensor = prod.inputs[0]
    if prod is not None and prod.op == "Relu":
        return "after", prod
    return "", None


def weight_norm_scores(layers: Chain, prunable: list[int]) -> list[np.ndarray]:
    """``‖(W_l[k, :], b_l[k])‖₂ · ‖W_{l+1}[:, k]‖₂`` for every unit of every prunable layer."""
    scores = []
    for l in prunable:
        W, b, Wn = layers[l].W, layers[l].b, layers[l + 1].W
        scores.append(np.sqrt((W**2).sum(axis=1) + b**2) * np.sqrt((Wn**2).sum(axis=0)))
    return scores


def select_lowest(scores: list[np.ndarray], ratio: float, scope: str) -> tuple[list[np.ndarray], list[str]]:
    """Per layer, the units to remove: the lowest scores, ⌊ratio·N⌋ in all, at least one unit kept per layer."""
    widths = [s.size for s in scores]
    notes: list[str] = []
    if scope == "layer":
        drops = []
        for l, s in enumerate(scores):
            want = quota(ratio, s.size)
            if want > s.size - 1:
                notes.append(f"hidden layer {l + 1}: the ratio asks for all {s.size} units; 1 kept")
            drops.append(np.sort(np.argsort(s, kind="stable")[:min(want, s.size - 1)]))
        return drops, notes
    want = quota(ratio, sum(widths))
    layer_of = np.concatenate([np.full(w, l) for l, w in enumerate(widths)])
    index = np.concatenate([np.arange(w) for w in widths])
    order = np.argsort(np.concatenate(scores), kind="stable")
    rank_in_layer = np.empty(order.size, dtype=np.int64)  # 1 for a layer's lowest unit, 2 for the next, …
    for l in range(len(widths)):
        mask = layer_of[order] == l
        rank_in_layer[mask] = np.arange(1, mask.sum() + 1)
    eligible = order[rank_in_layer <= np.array(widths)[layer_of[order]] - 1][:want]
    taken = eligible.size
    chosen = [index[eligible[layer_of[eligible] == l]] for l in range(len(widths))]
    if taken < want:
        notes.append(f"the ratio asks for {want} of {sum(widths)} units; {taken} removed so that every hidden "
                     "layer keeps one")
    return [np.sort(c) for c in chosen], notes


def prune_neurons(model: Model, layers: Chain, prunable: list[int], ratio: float,
                  scope: str | None) -> tuple[Chain, dict, list[str]]:
    """Remove the lowest-ranked hidden units (BN |γ| or weight norm) physically.

    Returns the layers (each unit's original index in its ``ids``), details and notes.
    Without a ``scope``: ``global`` when ranking by BN |γ|, ``layer`` when ranking by weight norm.
    """
    bn, notes = batchnorm_units(model, layers, prunable)
    if bn is not None:
        scores, criterion = bn.gamma, "bn-gamma"
        how = "|γ| of each hidden unit's BatchNormalization (network slimming)"
    else:
        scores, criterion = weight_norm_scores(layers, prunable), "weight-norm"
        how = "‖incoming weights and bias‖₂ · ‖outgoing weights‖₂ (no BatchNormalization on every hidden layer)"
    scope = scope or ("global" if bn is not None else "layer")
    drops, more = select_lowest(scores, ratio, scope)
    result = layers
    for pos, l in enumerate(prunable):
        fill = None if bn is None else bn.fill[pos][drops[pos]]
        result = remove_units(result, l, drops[pos], fill)
    removed = {str(l + 1): drops[pos].tolist() for pos, l in enumerate(prunable)}
    details = {"criterion": criterion, "ranking": how, "scope": scope, "units_removed": int(sum(d.size for d in drops)),
               "removed_units": removed}
    return result, details, notes + more
