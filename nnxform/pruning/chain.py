"""The dense ReLU chain every pruning method works on, and the pieces they share.

A network is canonicalised and compiled to its dense layers (``passes.pad.relu_layers``: a
``layered.Chain``, Dense layers with a ReLU after every one but the last). Hidden layer ``l`` is
the output of ``layers[l]``; every unit keeps its original index in ``layers[l].ids``. Methods edit
the layers and ``to_model`` writes them back as one verifier-friendly chain: [Flatten →] Gemm →
Relu → … → Gemm on the original input.

Shares are counted precisely: ``quota(ratio, n) = ⌊ratio·n⌋`` (a 1e-9 slack absorbs decimal
ratios such as 0.3·10 = 2.9999…), so a method never removes more than asked. A hidden layer always
keeps at least one unit; when a ratio asks for more, fewer are removed and a note says so.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NnxformError
from ..ir import Model
from ..layered import Chain, chain_network
from ..operators import OPERATORS
from ..passes.pad import relu_layers


def dense_chain(model: Model, command: str = "prune") -> Chain:
    """The dense layers of a fully connected ReLU chain, or a one-line error for anything else."""
    for node in model.nodes:
        if OPERATORS[node.op].spatial:  # convolutional networks go to pruning.channel (never densified)
            raise NnxformError(f"{command}: '{node.name}' is a {node.op}; a dense ReLU chain has none (prune "
                               "convolutional networks with pruning.channel)")
    return relu_layers(model, command)


def identity_output(layers: Chain) -> bool:
    """True when the chain ends in an identity layer: the network's output layer is a ReLU.

    Its units (the hidden layer before the identity) are then the outputs, which pruning never
    touches, and the identity is not one of the network's own affine layers.
    """
    return len(layers) > 1 and layers[-1].is_identity()


def prunable_layers(layers: Chain) -> list[int]:
    """Indices of the hidden layers whose units may be removed (all but ReLU output units)."""
    return list(range(len(layers) - 1 - int(identity_output(layers))))


def quota(ratio: float, n: int) -> int:
    """How many of ``n`` items a share ``ratio`` removes: ⌊ratio·n⌋ (never more than asked)."""
    return min(n, int(math.floor(ratio * n + 1e-9)))


def remove_units(layers: Chain, layer: int, drop: np.ndarray, fill: np.ndarray | None = None) -> Chain:
    """``layers`` without the units at positions ``drop`` of hidden layer ``layer`` (their ids go with them).

    ``fill`` gives, per dropped unit, the constant its output is replaced by; its contribution
    ``W_next[:, k]·fill_k`` moves into the next layer's bias (zero fill: plain removal).
    """
    drop = np.asarray(drop, dtype=np.int64)
    if drop.size == 0:
        return layers
    here, after = layers[layer], layers[layer + 1]
    keep = np.setdiff1d(np.arange(here.units), drop)
    bn = after.b if fill is None else after.b + after.W[:, drop] @ np.asarray(fill, dtype=np.float64)
    out = list(layers)
    out[layer] = here.replace(W=here.W[keep], b=here.b[keep], ids=here.ids[keep])
    out[layer + 1] = after.replace(W=after.W[:, keep], b=bn)
    return out


def remove_dead_units(layers: Chain, prunable: list[int]) -> tuple[Chain, int, list[str]]:
    """Remove hidden units with no incoming or no outgoing weight, keeping the function exactly.

    A unit with no incoming weight outputs the constant ``relu(b_k)``, folded into the next bias;
    one with no outgoing weight contributes nothing. Removing a unit can strand others, so this runs
    to a fixed point. A layer with no live unit left keeps one placeholder unit with zero weights
    and bias (the network is then constant). Returns the layers, the number of units removed and one
    note per placeholder.
    """
    layers, removed, notes = list(layers), 0, []
    changed = True
    while changed:
        changed = False
        for l in prunable:
            here, after = layers[l], layers[l + 1]
            no_in, no_out = ~here.W.any(axis=1), ~after.W.any(axis=0)
            dead = np.flatnonzero(no_in | no_out)
            if dead.size == 0 or (here.units == 1 and not here.b.any() and not here.W.any() and not after.W.any()):
                continue
            fill = np.where(no_in[dead], np.maximum(here.b[dead], 0.0), 0.0)
            if dead.size < here.units:
                layers = remove_units(layers, l, dead, fill)
                removed += int(dead.size)
            else:
                layers[l] = here.replace(W=np.zeros((1, here.W.shape[1])), b=np.zeros(1), ids=here.ids[:1])
                layers[l + 1] = after.replace(W=np.zeros((after.units, 1)), b=after.b + after.W @ fill)
                removed += here.units - 1
                notes.append(f"hidden layer {l + 1}: no unit kept a weight; one placeholder unit with zero "
                             "weights kept (the network is constant)")
            changed = True
    return layers, removed, notes


def to_model(layers: Chain, like: Model) -> Model:
    """The chain as a Model on ``like``'s input, with ``like``'s output name and shape (a final identity layer,
    which stands for a ReLU on the output, written as that ReLU)."""
    out = like.output_name
    return chain_network(layers, like, tuple(like.shapes()[out]), final_relu=True).to_model()
