"""Magnitude weight pruning (paper 001, Algorithm 2, without the fine-tuning).

The ``⌊ratio·M⌋`` weights of smallest ``|w|`` are set to zero, where ``M`` counts the weights (not
the biases) of every affine layer of the network, the output layer included (not the identity
layer that stands for a ReLU on the output): over all layers at once (``global``) or
``⌊ratio·M_l⌋`` in each layer (``layer``). Ties are broken by position (a stable sort), so the
count is exact. Units left with no incoming or no outgoing weight are then removed physically,
which does not change the function of the zeroed network (``chain.remove_dead_units``).
"""

from __future__ import annotations

import numpy as np

from ..layered import Chain
from .chain import identity_output, quota, remove_dead_units


def zero_smallest(layers: Chain, ratio: float, scope: str) -> tuple[Chain, int]:
    """``layers`` with the requested share of smallest-magnitude weights set to zero, and how many."""
    out = [layer.replace(W=layer.W.copy()) for layer in layers]
    if scope == "layer":
        zeroed = 0
        for W in (layer.W for layer in out):
            k = quota(ratio, W.size)
            flat = W.reshape(-1)
            flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0.0
            zeroed += k
        return out, zeroed
    magnitudes = np.concatenate([np.abs(layer.W).reshape(-1) for layer in out])
    k = quota(ratio, magnitudes.size)
    chosen = np.zeros(magnitudes.size, dtype=bool)
    chosen[np.argsort(magnitudes, kind="stable")[:k]] = True
    start = 0
    for W in (layer.W for layer in out):
        W.reshape(-1)[chosen[start:start + W.size]] = 0.0
        start += W.size
    return out, k


def prune_weights(layers: Chain, prunable: list[int], ratio: float, scope: str) -> tuple[Chain, dict, list[str]]:
    """Zero the smallest weights, then remove the units that lost all inputs or all outputs.

    Returns the layers (each unit's original index in its ``ids``), details and notes.
    """
    own = len(layers) - int(identity_output(layers))
    zeroed_layers, zeroed = zero_smallest(layers[:own], ratio, scope)
    result, removed, notes = remove_dead_units(zeroed_layers + layers[own:], prunable)
    total = sum(layer.W.size for layer in layers[:own])
    details = {"weights": total, "weights_zeroed": zeroed, "units_removed": removed,
               "rule": f"⌊ratio·M⌋ smallest |w| zeroed ({'per layer' if scope == 'layer' else 'over all layers'})"}
    return result, details, notes
