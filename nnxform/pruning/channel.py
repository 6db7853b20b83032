"""Pruning a convolutional network: channel (filter) pruning and weight pruning on its layered form.

The network is canonicalised (BN folded, group-1 convolutions with explicit attributes) and read as
``layered`` layers: Conv and ConvTranspose layers, then a Flatten and a dense tail, with ReLU, MaxPool,
AveragePool, BatchNormalization and per-channel affine 1×1 Conv layers (an unfoldable BN) in between.
A *site* is a Conv, a ConvTranspose or a hidden Dense whose output reaches the next weighted layer (its
*consumer*) through channel-wise layers only: its channels (units) can be removed physically, its
filters and bias (``W[keep]`` of a Conv, ``W[:, keep]`` of a ConvTranspose, whose weight is
``[in, out, *kernel]``), the same channels of every BatchNorm or per-channel affine in between, and
the consumer's input slice — ``W[:, keep]`` of a Conv, ``W[keep]`` of a ConvTranspose, the ``H·W``
block of columns ``c·H·W … (c+1)·H·W − 1`` of a Dense after the Flatten (row-major NCHW), a column
of a Dense after a Dense (``layered.remove_channels``).

``saliency`` (paper 003 on channels): a channel is removed into its most similar sibling of the same
layer (saliency of the flattened filters and biases times the outgoing weights' norm, greedily,
lowest first), its outgoing weights added to the sibling's — exact when the two filters are equal.
Sites with a BatchNorm or per-channel affine before their consumer scale channels unequally, so that
rule would not hold there: they are skipped, with a note.

``neuron``: each site's channels are ranked, lowest first, by ``|γ|`` of the BatchNormalization that
follows it in the loaded network (network slimming; read before canon folds it, right after the Conv
or after its ReLU), else by ``‖(filter, bias)‖₂ · ‖outgoing weights of the channel‖₂``; the share is
counted over all sites (``global``) or in each (``layer``), conv channels and dense tail units alike,
and every site keeps one channel. A removed BN channel is replaced by the constant it outputs at γ = 0
(``relu(β)`` for a BN before the ReLU, ``β`` after it), moved into the consumer's bias when that
constant is the same at every position the consumer reads — not through a zero-padded Conv (or an
AveragePool counting pads), whose border windows read less of it: there the channel is removed without
its constant (a note says so). ``weight``: the smallest weights of conv kernels and dense layers are zeroed (global or per
layer; conv weights stay as zeros), dense tail units left without inputs or outputs are removed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import NnxformError
from ..ir import Model, Node
from ..layered import (CHANNELWISE, WEIGHTED, BatchNorm, Conv, Dense, Flatten, Layer, Network, Relu, Site, aligned,
                       by_input_channel, filters, from_model, remove_channels, sites, walk, weighted_layers)
from ..operators import OPERATORS
from ..passes import CANONICAL
from .chain import quota, remove_dead_units
from .neuron import select_lowest
from .saliency import ranked_pairs, saliency_matrix
from .weight import zero_smallest


def is_convolutional(model: Model) -> bool:
    """True when ``model`` has an operator on channels × positions (a convolution or a pooling): this path prunes it."""
    return any(n.op in OPERATORS and OPERATORS[n.op].spatial for n in model.nodes)


def conv_network(model: Model) -> Network:
    """``model`` canonicalised as layers (group-1 Convs, pools, BN, Flatten, dense tail), or a one-line error naming
    the node or layer channel pruning cannot take (a skip connection, a transposed convolution between others, …)."""
    join = next((b for b in walk(model).branches if b.join), None)
    if join is not None:
        raise NnxformError(f"prune: '{join.node.name}' ({join.node.op}) joins {join.count} branches (a skip "
                           "connection); prune follows channels along one chain of layers, so a residual network is "
                           "refused: prune a network without skip connections")
    canonical = CANONICAL.establish(model)
    net = from_model(canonical, "prune")
    for layer in net.layers:  # canon wrote every grouped Conv as one group (block-diagonal weight)
        if isinstance(layer, Flatten) and layer.axis != 1:
            raise NnxformError(f"prune: Flatten '{layer.name}' has axis {layer.axis}; only axis 1 keeps channels "
                               "in blocks: export the network with Flatten(axis=1)")
    weighted = weighted_layers(net.layers)
    if not weighted:
        raise NnxformError("prune: the network has no Conv or Gemm layer")
    flattened = False
    for k in range(weighted[0], weighted[-1]):
        layer = net.layers[k]
        if not isinstance(layer, WEIGHTED + CHANNELWISE):  # a per-channel affine is a Conv
            raise NnxformError(f"prune: layer '{layer.name}' ({layer.node().op}) between the first and the last "
                               "weighted layer is not a Conv, ConvTranspose, Gemm, Relu, pooling, BatchNormalization "
                               "or Flatten, which keep channels apart: replace it with those, or prune a network "
                               "without it")
        if flattened and not isinstance(layer, (Dense, Relu)):
            raise NnxformError(f"prune: layer '{layer.name}' ({layer.node().op}) after the Flatten is not a Gemm "
                               "or Relu: replace it with those, or prune a network without it")
        flattened = flattened or isinstance(layer, Flatten)
    return net


def fill_bias(layers: list[Layer], site: Site, drop: np.ndarray, fill: np.ndarray, start: int,
              shape: tuple[int, ...]) -> np.ndarray | None:
    """The consumer's bias with the dropped channels replaced by the constants ``fill``, given at the output of
    layer ``start`` (``shape``: that output's shape) and carried through the later channel-wise layers; None when
    the consumer does not see one constant per channel at every output position (zero padding at its borders)."""
    x = np.zeros((1,) + tuple(shape))  # one sample of the ONNX shape [1, C, *spatial]
    x[0, 0, drop] = np.asarray(fill, dtype=np.float64).reshape((-1,) + (1,) * (len(shape) - 2))
    for j in site.between:
        if j > start and not isinstance(layers[j], Flatten):
            x = layers[j].forward(x)
    kept = np.ones(x.shape[2], dtype=bool)
    kept[drop] = False
    x[:, :, kept] = 0.0  # what the kept channels read is not replaced (a BN or affine maps 0 elsewhere)
    consumer = layers[site.consumer]
    if isinstance(consumer, Dense):
        x = x.reshape(1, 1, -1)
    delta = (consumer.forward(x) - consumer.forward(np.zeros_like(x))).reshape(consumer.units, -1)
    if np.ptp(delta, axis=1).max() > 1e-12 * (1.0 + np.abs(delta).max()):
        return None
    return consumer.b + delta[:, 0]


# --- BN γ of the loaded network -----------------------------------------------------------------------------


@dataclass
class BnChannels:
    """A site's BN in the loaded network: |γ| per channel, and each channel's output at γ = 0 (``fill``), given
    after the site's layer (``after_relu`` False) or after its ReLU."""

    gamma: np.ndarray
    fill: np.ndarray
    after_relu: bool


def batchnorm_channels(model: Model, name: str, units: int) -> BnChannels | None:
    """The one BatchNormalization right after node ``name`` of the loaded ``model`` (before its ReLU) or right after
    that ReLU, with ``units`` channels; None without one."""
    node = next((n for n in model.nodes if n.name == name), None)
    if node is None:
        return None
    user = _next(model, node)
    after_relu = user is not None and user.op == "Relu"
    if after_relu:
        user = _next(model, user)
    if user is None or user.op != "BatchNormalization":
        return None
    scale, beta, mean = (model.constants[t].astype(np.float64).reshape(-1) for t in user.inputs[1:4])
    if scale.size != units:
        return None
    return BnChannels(np.abs(scale), mean if after_relu else beta, after_relu)


def _next(model: Model, node: Node) -> Node | None:
    tensor = node.outputs[0]
    while (user := model.sole_consumer(tensor)) is not None and OPERATORS[user.op].transparent:
        tensor = user.outputs[0]
    return user


def weight_norm_scores(layers: list[Layer], site: Site) -> np.ndarray:
    """``‖(filter_c, b_c)‖₂ · ‖outgoing weights of channel c‖₂`` for every channel (unit) of ``site``."""
    here = layers[site.layer]
    incoming = np.sqrt((filters(here)**2).sum(axis=1) + here.b**2)
    return incoming * np.linalg.norm(outgoing_weights(layers, site), axis=0)


# --- the methods ----------------------------------------------------------------------------------------------


def prune_channels(model: Model, net: Network, ratio: float, scope: str | None
                   ) -> tuple[Network, dict, list[str]]:
    """Remove the lowest-ranked channels of every Conv and units of every hidden Dense (BN |γ| or weight norm).

    Returns the pruned network (each channel's original index in its layer's ``ids``), details and notes.
    Without a ``scope``: ``global`` when every site is ranked by BN |γ|, else ``layer``.
    """
    layers = list(net.layers)
    found = sites(net)
    if not found:
        raise NnxformError("the network has no hidden layer to prune")
    shapes = net.shapes()
    bns = [batchnorm_channels(model, layers[s.layer].name, layers[s.layer].units) for s in found]
    scores = [weight_norm_scores(layers, s) if bn is None else bn.gamma for s, bn in zip(found, bns)]
    ranked = sum(bn is not None for bn in bns)
    criterion = "bn-gamma" if ranked == len(found) else "weight-norm" if ranked == 0 else "mixed"
    scope = scope or ("global" if criterion == "bn-gamma" else "layer")
    notes = []
    if criterion == "mixed":
        notes.append(f"{ranked} of {len(found)} layers have a BatchNormalization (ranked by |γ|), the others are "
                     "ranked by weight norm" + ("; the two scores are not comparable across layers" if
                                                scope == "global" else ""))
    drops, more = select_lowest(scores, ratio, scope)
    names = [layers[s.layer].name for s in found]
    notes += [f"{note} (hidden layer k is the k-th of {', '.join(names)})" for note in more]
    unfilled = []
    for site, bn, drop in zip(found, bns, drops):
        if drop.size == 0:
            continue
        bias = None
        if bn is not None:
            start = site.layer if not bn.after_relu else \
                next(j for j in site.between if isinstance(layers[j], Relu))
            bias = fill_bias(layers, site, drop, bn.fill[drop], start, shapes[start + 1])
            if bias is None:
                unfilled.append(layers[site.layer].name)
        layers = remove_channels(layers, site, drop)
        if bias is not None:
            layers[site.consumer] = layers[site.consumer].replace(b=bias)
    if unfilled:
        notes.append(f"{', '.join(unfilled)}: a removed channel's constant output at γ = 0 does not reach the next "
                     "layer as one value per channel (zero padding of the next Conv, or of an AveragePool that "
                     "counts pads, reads less of it at the borders, and a ConvTranspose adds it up unevenly); those "
                     "channels are removed without it")
    conv = [(s, d) for s, d in zip(found, drops) if not isinstance(layers[s.layer], Dense)]
    dense = [(s, d) for s, d in zip(found, drops) if isinstance(layers[s.layer], Dense)]
    details = {"criterion": criterion, "scope": scope, "layers": names,
               "ranking": {"bn-gamma": "|γ| of each channel's BatchNormalization (network slimming)",
                           "weight-norm": "‖filter, bias‖₂ · ‖outgoing weights‖₂ per channel (no BatchNormalization)",
                           "mixed": "|γ| of the BatchNormalization where a layer has one, else ‖filter, bias‖₂ · "
                                    "‖outgoing weights‖₂"}[criterion],
               "channels_removed": int(sum(d.size for _, d in conv)),
               "units_removed": int(sum(d.size for _, d in dense)),
               "removed_channels": {net.layers[s.layer].name: net.layers[s.layer].ids[d].tolist() for s, d in conv},
               "removed_units": {net.layers[s.layer].name: net.layers[s.layer].ids[d].tolist() for s, d in dense}}
    return dataclasses.replace(net, layers=layers), details, notes


def outgoing_weights(layers: list[Layer], site: Site) -> np.ndarray:
    """Column ``c``: channel (unit) ``c``'s outgoing weights, its input slice of the consumer flattened (in-channel
    kernels of a Conv or ConvTranspose, the ``H·W`` block of columns of a Dense after the Flatten, a column after a
    Dense)."""
    units = layers[site.layer].units
    return by_input_channel(layers[site.consumer], units).reshape(units, -1).T


def merge_channels(layers: list[Layer], site: Site, nominees: np.ndarray, delegates: np.ndarray) -> list[Layer]:
    """``layers`` with each nominee channel's outgoing weights added to its delegate's (paper 003's merge rule, exact
    when the two channels reach the consumer equal), then the nominees removed physically (``remove_channels``)."""
    consumer = layers[site.consumer].replace(W=layers[site.consumer].W.copy())
    blocks = by_input_channel(consumer, layers[site.layer].units)  # a view: [channel, …]
    blocks[delegates] += blocks[nominees]
    out = list(layers)
    out[site.consumer] = consumer
    return remove_channels(out, site, nominees)


def _scaled_between(layers: list[Layer], site: Site) -> str | None:
    """The BatchNorm or per-channel affine between ``site`` and its consumer (which scales channels unequally, so
    merging outgoing weights is not the exact rule), or None."""
    return next((layers[j].name for j in site.between if isinstance(layers[j], (BatchNorm, Conv))), None)


def prune_channel_saliency(net: Network, ratio: float, scope: str, step: float,
                           progress: Callable[[int, int], None] | None = None) -> tuple[Network, dict, list[str]]:
    """Remove channels of every Conv and units of every hidden Dense into their most similar sibling (paper 003's
    saliency on filters and bias, flattened, times the outgoing weights' norm), greedily by ascending saliency.

    Each round, every pool (a site with ``layer`` scope, all sites with ``global``) takes up to ``⌈step·n⌉`` pairs
    (``n`` its original width), no channel in two; the nominee's outgoing weights are added to its delegate's
    (``merge_channels``) and saliencies recomputed. Sites with a BatchNorm or per-channel affine before their
    consumer are skipped (a note names them): there the merge rule would have to rescale. Every site keeps one.
    """
    layers = list(net.layers)
    found = sites(net)
    if not found:
        raise NnxformError("the network has no hidden layer to prune")
    notes: list[str] = []
    scaled = [(s, _scaled_between(layers, s)) for s in found]
    skipped = {layers[s.layer].name: by for s, by in scaled if by is not None}
    usable = [s for s, by in scaled if by is None]
    if skipped:
        notes.append("skipped (a per-channel scale between the layer and its consumer, so adding outgoing weights "
                     "is not the merge rule; their channels are neither counted nor pruned): " +
                     ", ".join(f"{name} (through {by})" for name, by in skipped.items()))
    widths = [layers[s.layer].units for s in usable]
    names = [layers[s.layer].name for s in usable]
    if scope == "layer":
        pools = [[q] for q in range(len(usable))]
        targets = [min(quota(ratio, w), w - 1) for w in widths]
        notes += [f"{name}: the ratio asks for all {w} channels; 1 kept" for name, w in zip(names, widths)
                  if quota(ratio, w) > w - 1]
    else:
        pools = [list(range(len(usable)))] if usable else []
        want = quota(ratio, sum(widths))
        targets = [min(want, sum(widths) - len(usable))] if usable else []
        if usable and want > targets[0]:
            notes.append(f"the ratio asks for {want} of {sum(widths)} channels and units; {targets[0]} removed so "
                         "that every layer keeps one")
    steps = [max(1, math.ceil(step * sum(widths[q] for q in pool))) for pool in pools]
    done, total = [0] * len(pools), sum(targets)
    pairs: list[tuple[int, int, int]] = []
    rounds = 0
    while sum(done) < total:
        rounds += 1
        for p, pool in enumerate(pools):
            if done[p] < targets[p]:
                chosen = _round(layers, usable, pool, min(targets[p] - done[p], steps[p]))
                for q in pool:
                    mine = np.array([(i, j) for qq, i, j in chosen if qq == q], dtype=np.int64).reshape(-1, 2)
                    if mine.size:
                        ids = layers[usable[q].layer].ids
                        pairs += [(q, int(ids[i]), int(ids[j])) for i, j in mine]
                        layers = merge_channels(layers, usable[q], mine[:, 0], mine[:, 1])
                done[p] += len(chosen)
                if progress is not None:
                    progress(sum(done), total)
    removed = {q: [n for qq, n, _ in pairs if qq == q] for q in range(len(usable))}
    conv = [q for q in removed if not isinstance(layers[usable[q].layer], Dense)]
    dense = [q for q in removed if isinstance(layers[usable[q].layer], Dense)]
    details = {"scope": scope, "layers": names, "skipped": sorted(skipped), "step": step, "rounds": rounds,
               "rule": "saliency (‖filter_i − filter_j‖₂ + |b_i − b_j|/|b_i + b_j|)·‖outgoing_i‖₂, lowest first; "
                       "nominee i's outgoing weights added to delegate j's, i removed",
               "channels_removed": sum(len(removed[q]) for q in conv),
               "units_removed": sum(len(removed[q]) for q in dense),
               "removed_channels": {names[q]: sorted(removed[q]) for q in conv},
               "removed_units": {names[q]: sorted(removed[q]) for q in dense},
               "pairs": [{"layer": names[q], "nominee": i, "delegate": j} for q, i, j in pairs]}
    return dataclasses.replace(net, layers=layers), details, notes


def _round(layers: list[Layer], usable: list[Site], pool: list[int], k: int) -> list[tuple[int, int, int]]:
    """Up to ``k`` pairs ``(site, nominee, delegate)`` of ``pool``'s sites by ascending saliency, no channel in two,
    every site keeping one channel."""
    def saliency(q: int) -> np.ndarray:
        here = layers[usable[q].layer]
        return saliency_matrix(filters(here), here.b, outgoing_weights(layers, usable[q]))

    c_site, c_i, c_j = ranked_pairs({q: saliency(q) for q in pool})
    locked = {q: np.zeros(layers[usable[q].layer].units, dtype=bool) for q in pool}
    room = {q: layers[usable[q].layer].units - 1 for q in pool}
    chosen: list[tuple[int, int, int]] = []
    for q, i, j in zip(c_site.tolist(), c_i.tolist(), c_j.tolist()):  # a walk over pairs, stopping at k
        if len(chosen) == k:
            break
        if room[q] > 0 and not locked[q][i] and not locked[q][j]:
            chosen.append((q, i, j))
            locked[q][i] = locked[q][j] = True
            room[q] -= 1
    return chosen


def prune_conv_weights(net: Network, ratio: float, scope: str) -> tuple[Network, dict, list[str]]:
    """Zero the smallest weights of every Conv and Dense layer (globally or per layer); conv weights stay as zeros,
    dense tail units left with no input or no output are removed (``chain.remove_dead_units``)."""
    weighted = weighted_layers(net.layers)
    zeroed_layers, zeroed = zero_smallest([net.layers[k] for k in weighted], ratio, scope)
    layers = list(net.layers)
    for k, layer in zip(weighted, zeroed_layers):
        layers[k] = layer
    tail = [k for k in weighted if isinstance(layers[k], Dense)]
    chained = all(nxt == k + 2 and isinstance(layers[k + 1], Relu) for k, nxt in zip(tail, tail[1:]))
    removed, notes = 0, []
    if chained and len(tail) > 1:
        pruned, removed, notes = remove_dead_units([layers[k] for k in tail], list(range(len(tail) - 1)))
        for k, layer in zip(tail, pruned):
            layers[k] = layer
    total = sum(net.layers[k].W.size for k in weighted)
    details = {"weights": total, "weights_zeroed": zeroed, "units_removed": removed,
               "rule": f"⌊ratio·M⌋ smallest |w| of conv kernels and dense layers zeroed "
                       f"({'per layer' if scope == 'layer' else 'over all layers'}); conv weights kept as zeros"}
    return dataclasses.replace(net, layers=layers), details, notes


def aligned_network(pruned: Network, original: Network) -> Network:
    """``pruned`` at the widths of ``original`` (``layered.aligned``): the same function, paired channel by channel
    with ``original`` — what the difference analysis needs to bound the drift tightly."""
    return dataclasses.replace(pruned, layers=aligned(pruned.layers, original.layers, original.shapes()))
