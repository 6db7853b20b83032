"""The dense ReLU chain every pruning method works on, and the pieces they share.

A network is canonicalised and compiled to its dense layers ``(W [out, in], b [out])``
(``passes.pad.relu_layers``); a ReLU follows every layer but the last. Hidden layer ``l`` is the
output of ``layers[l]``. Methods edit the layers and ``to_model`` writes them back as one
verifier-friendly chain: [Flatten →] Gemm → Relu → … → Gemm on the original input.

Shares are counted precisely: ``quota(ratio, n) = ⌊ratio·n⌋`` (a 1e-9 slack absorbs decimal
ratios such as 0.3·10 = 2.9999…), so a method never removes more than asked. A hidden layer always
keeps at least one unit; when a ratio asks for more, fewer are removed and a note says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import NnxformError
from ..ir import Model
from ..operators import OPERATORS
from ..passes.pad import Layers, chain_model, is_identity, relu_layers


@dataclass
class Size:
    """What a dense chain holds: hidden ReLU units, nonzero weights, stored weights and biases."""

    neurons: int
    connections: int
    parameters: int
    widths: list[int]

    def to_json(self) -> dict:
        return {"neurons": self.neurons, "connections": self.connections, "parameters": self.parameters,
                "widths": self.widths}


def dense_chain(model: Model, command: str = "prune") -> Layers:
    """The dense layers of a fully connected ReLU chain, or a one-line error for anything else."""
    for node in model.nodes:
        if OPERATORS[node.op].spatial:  # pruning handles dense layers only (refused, never densified)
            raise NnxformError(f"{command} supports fully connected ReLU networks; '{node.name}' is a {node.op} "
                               "(convolutional networks are not supported yet)")
    return [(W.copy(), b.copy()) for W, b in relu_layers(model, command)]


def identity_output(layers: Layers) -> bool:
    """True when the chain ends in an identity layer: the network's output layer is a ReLU.

    Its units (the hidden layer before the identity) are then the outputs, which pruning never
    touches, and the identity is not one of the network's own affine layers.
    """
    return len(layers) > 1 and is_identity(*layers[-1])


def prunable_layers(layers: Layers) -> list[int]:
    """Indices of the hidden layers whose units may be removed (all but ReLU output units)."""
    return list(range(len(layers) - 1 - int(identity_output(layers))))


def size(layers: Layers) -> Size:
    """Hidden units, nonzero weights and stored parameters of a dense chain.

    The identity layer standing for a ReLU on the output is not counted, nor are the output units.
    """
    own = layers[:-1] if identity_output(layers) else layers
    widths = [W.shape[0] for W, _ in own[:-1]]
    return Size(neurons=sum(widths), connections=int(sum(np.count_nonzero(W) for W, _ in own)),
                parameters=int(sum(W.size + b.size for W, b in own)), widths=widths)


def quota(ratio: float, n: int) -> int:
    """How many of ``n`` items a share ``ratio`` removes: ⌊ratio·n⌋ (never more than asked)."""
    return min(n, int(math.floor(ratio * n + 1e-9)))


def remove_units(layers: Layers, layer: int, drop: np.ndarray, fill: np.ndarray | None = None) -> Layers:
    """``layers`` without the units ``drop`` (indices) of hidden layer ``layer``.

    ``fill`` gives, per dropped unit, the constant its output is replaced by; its contribution
    ``W_next[:, k]·fill_k`` moves into the next layer's bias (zero fill: plain removal).
    """
    drop = np.asarray(drop, dtype=np.int64)
    if drop.size == 0:
        return layers
    W, b = layers[layer]
    Wn, bn = layers[layer + 1]
    keep = np.setdiff1d(np.arange(b.size), drop)
    if fill is not None:
        bn = bn + Wn[:, drop] @ np.asarray(fill, dtype=np.float64)
    out = list(layers)
    out[layer] = (W[keep], b[keep])
    out[layer + 1] = (Wn[:, keep], bn)
    return out


def remove_dead_units(layers: Layers, prunable: list[int],
                      kept: list[np.ndarray]) -> tuple[Layers, list[np.ndarray], int, list[str]]:
    """Remove hidden units with no incoming or no outgoing weight, keeping the function exactly.

    A unit with no incoming weight outputs the constant ``relu(b_k)``, folded into the next bias;
    one with no outgoing weight contributes nothing. Removing a unit can strand others, so this runs
    to a fixed point. A layer with no live unit left keeps one placeholder unit with zero weights
    and bias (the network is then constant). ``kept``: original index of every hidden unit, updated.
    Returns the layers, ``kept``, the number of units removed and one note per placeholder.
    """
    layers, kept, removed, notes = list(layers), list(kept), 0, []
    changed = True
    while changed:
        changed = False
        for l in prunable:
            (W, b), (Wn, bn) = layers[l], layers[l + 1]
            no_in, no_out = ~W.any(axis=1), ~Wn.any(axis=0)
            dead = np.flatnonzero(no_in | no_out)
            if dead.size == 0 or (b.size == 1 and not b.any() and not W.any() and not Wn.any()):
                continue
            fill = np.where(no_in[dead], np.maximum(b[dead], 0.0), 0.0)
            if dead.size < b.size:
                layers = remove_units(layers, l, dead, fill)
                kept[l] = np.delete(kept[l], dead)
                removed += int(dead.size)
            else:
                layers[l] = (np.zeros((1, W.shape[1])), np.zeros(1))
                layers[l + 1] = (np.zeros((Wn.shape[0], 1)), bn + Wn @ fill)
                kept[l] = kept[l][:1]
                removed += int(b.size) - 1
                notes.append(f"hidden layer {l + 1}: no unit kept a weight; one placeholder unit with zero "
                             "weights kept (the network is constant)")
            changed = True
    return layers, kept, removed, notes


def all_units(layers: Layers) -> list[np.ndarray]:
    """The original index of every hidden unit of an unpruned chain: ``0 … n_l − 1`` per layer."""
    return [np.arange(b.size) for _, b in layers[:-1]]


def aligned_layers(layers: Layers, kept: list[np.ndarray], widths: list[int]) -> Layers:
    """The pruned chain at the original widths: every unit back at its original index, removed ones all zero.

    The same function as ``layers`` (a zero unit outputs 0 and sends nothing on), laid out so that
    an analysis pairing the units of two networks by position pairs each unit with its original.
    """
    out = []
    for k, (W, b) in enumerate(layers):
        rows = kept[k] if k < len(kept) else np.arange(b.size)
        cols = kept[k - 1] if k > 0 else np.arange(W.shape[1])
        n_rows = widths[k] if k < len(widths) else b.size
        n_cols = widths[k - 1] if k > 0 else W.shape[1]
        Wa, ba = np.zeros((n_rows, n_cols)), np.zeros(n_rows)
        Wa[np.ix_(rows, cols)] = W
        ba[rows] = b
        out.append((Wa, ba))
    return out


def to_model(layers: Layers, like: Model) -> Model:
    """The chain as a Model on ``like``'s input, with ``like``'s output name and shape."""
    out = like.output_name
    return chain_model(layers, like, out, tuple(like.shapes()[out]))

