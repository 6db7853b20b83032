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

from ..passes.pad import Layers
from .chain import all_units, identity_output, quota, remove_dead_units


def zero_smallest(layers: Layers, ratio: float, scope: str) -> tuple[Layers, int]:
    """``layers`` with the requested share of smallest-magnitude weights set to zero, and how many."""
    out = [(W.copy(), b.copy()) for W, b in layers]
    if scope == "layer":
        zeroed = 0
        for W, _ in out:
            k = quota(ratio, W.size)
            flat = W.reshape(-1)
            flat[np.argsort(np.abs(flat), kind="stable")[:k]] = 0.0
            zeroed += k
        return out, zeroed
    magnitudes = np.concatenate([np.abs(W).reshape(-1) for W, _ in out])
    k = quota(ratio, magnitudes.size)
    chosen = np.zeros(magnitudes.size, dtype=bool)
    chosen[np.argsort(magnitudes, kind="stable")[:k]] = True
    start = 0
    for W, _ in out:
        W.reshape(-1)[chosen[start:start + W.size]] = 0.0
        start += W.size
    return out, k


def prune_weights(layers: Layers, prunable: list[int], ratio: float,
                  scope: str) -> tuple[Layers, list[np.ndarray], dict, list[str]]:
    """Zero the smallest weights, then remove the units that lost all inputs or all outputs.

    Returns the layers, the original index of every hidden unit kept, details and notes.
    """
    own = len(layers) - int(identity_output(layers))
    zeroed_layers, zeroed = zero_smallest(layers[:own], ratio, scope)
    result, kept, removed, notes = remove_dead_units(zeroed_layers + layers[own:], prunable, all_units(layers))
    total = sum(W.size for W, _ in layers[:own])
    details = {"weights": total, "weights_zeroed": zeroed, "units_removed": removed,
               "rule": f"⌊ratio·M⌋ smallest |w| zeroed ({'per layer' if scope == 'layer' else 'over all layers'})"}
    return result, kept, details, notes
