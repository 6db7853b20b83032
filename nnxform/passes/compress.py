"""``compress``: remove the stable ReLUs of a network exactly (LEO++, DESIGN.md "Stable neurons and exact compression").

Given the stability of every ReLU on an input box (``nnxform.stable.classify``), each hidden
layer of the dense ReLU chain at the end of the network is rewritten, first to last:

- a **stably inactive** neuron outputs 0 on the box: its row of ``W^l, b^l`` and its column of
  ``W^{l+1}`` are deleted;
- **stably active** neurons are linear on the box (``h = z``). When their rows ``W_A`` are
  linearly dependent, a pivoted Gram–Schmidt picks a basis ``B`` and ``W_D = K·W_B`` for the
  rest (residual checked against ``rank_tol·max‖row‖``); then ``h_D = K·h_B + (b_D − K·b_B)``,
  so ``W^{l+1}_B += W^{l+1}_D·K``, ``b^{l+1} += W^{l+1}_D·(b_D − K·b_B)`` and ``D`` is deleted;
- a layer left with only stably active neurons is affine on the box and is **merged** into the
  next (``W^{l+1}·W^l``);
- a layer whose neurons are all stably inactive makes the rest of the network **constant** on the
  box: the result is one Gemm with zero weights whose bias is that constant.

Unstable and undecided neurons are kept. Before the dense tail, a chain of convolutions and
transposed convolutions loses the channels stably inactive at every position
(``remove_dead_channels``: from the layer writing them and from the one reading them); anything
else there is left as it is (a convolution shares its weights across positions, so one stable
position cannot go). The result is never larger than the input (neurons, connections): where the
canonical form would be, the input is written as it is.
The result equals the input on the box only: check it there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..operators import CONVOLUTIONS, PIECEWISE_LINEAR
from ..analyzers.network import Activation
from ..analyzers.result import ACTIVE, INACTIVE
from ..errors import NnxformError
from ..ir import Model, Node
from .. import layered
from ..layered import Chain, Relu, activation_layer, aligned, chain_layers, dense, model_size, write_layers
from . import CANONICAL, PassReport, computable, register
from .pad import piecewise_chain


#: Relative tolerance of the rank test: a stably active row is folded when its distance to the span
#: of the basis rows is at most ``RANK_TOL`` times the largest row norm.
RANK_TOL = 1e-9
#: Operators the dense tail may contain (each with one data input).
_TAIL_OPS = frozenset({"Gemm", "MatMul", "Add", "Mul"}) | PIECEWISE_LINEAR


class LayerSigns(Protocol):
    """The status of every neuron of one ReLU node (``nnxform.stable.LayerStability``)."""

    status: np.ndarray

    def counts(self) -> dict[str, int]: ...


class Signs(Protocol):
    """What compress reads of a classification (``nnxform.stable.Stability``, a layer above the passes): the
    status of each ReLU node's neurons, by node name."""

    def layer(self, node: str) -> LayerSigns: ...


@dataclass
class Tail:
    """The dense ReLU chain ending the network: its first tensor, its ReLU nodes and its dense layers."""

    start: str
    head: list[Node]
    relus: list[str]
    layers: Chain
    skipped: list[str] = field(default_factory=list)  # ReLU nodes before the tail (left as they are)
    activations: list[Activation] = field(default_factory=list)  # the ``relus``' steps (op, attributes, slopes)

    def written(self, names: list[str]) -> list[layered.Layer]:
        """The activation layers of the nodes ``names`` (of ``relus``), to write them back as they were."""
        steps = dict(zip(self.relus, self.activations))
        return [activation_layer(steps[n].op, n, steps[n].attrs) for n in names]


def dense_tail(model: Model) -> Tail:
    """Split a canonical ``model`` into the part before its dense ReLU chain and that chain's layers (read from the
    chain's own nodes as they are: a piece of a canonical graph is not canonicalised again). The chain is the end of
    the run of ``layered.walk`` that writes the output: its nodes of ``_TAIL_OPS``, each with one data input."""
    out = model.output_name
    last = model.producer(out)
    shapes = model.shapes()
    tail: list[Node] = []
    for node in reversed(layered.walk(model).run(last) if last is not None else []):
        data = model.data_inputs(node)
        if node.op not in _TAIL_OPS or len(data) != 1 or _rows(shapes[data[0]]) != 1:
            break  # (a Gemm on several rows shares its weights between them, as a convolution does)
        tail.insert(0, node)
    while tail and tail[0].op in PIECEWISE_LINEAR:
        tail.pop(0)
    if not tail:
        raise NnxformError(f"compress found no dense (Gemm/MatMul) layer on one row of values at the end of the "
                           f"network (its output comes from {last.op} node '{last.name}'); only the dense layers "
                           "after the last convolution (and a Flatten to one row) are compressed")
    start = model.data_inputs(tail[0])[0]
    used = {x for n in tail for x in n.inputs}
    sub = Model(nodes=[Node(n.op, n.name, list(n.inputs), list(n.outputs), dict(n.attrs)) for n in tail],
                constants={k: v for k, v in model.constants.items() if k in used}, input_name=start,
                input_shape=tuple(shapes[start]), output_names=[out], input_dims=tuple(shapes[start]), dtype=model.dtype)
    head = [n for n in model.nodes if n not in tail]
    skipped = [n.name for n in head if n.op in PIECEWISE_LINEAR]
    layers, activations = piecewise_chain(sub, "compress")
    return Tail(start, head, [n.name for n in tail if n.op in PIECEWISE_LINEAR], layers, skipped, activations)


def _rows(shape: tuple[int, ...]) -> int:
    """How many rows a tensor of ``shape`` (without the sample axis) holds: all its dimensions but the last."""
    return int(np.prod(shape[:-1], dtype=np.int64))


def independent_rows(M: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Pivoted Gram–Schmidt on the rows of ``M``: indices of a basis ``B`` and ``K`` with ``M[D] ≈ K·M[B]`` (D the rest).

    Pivoting stops when every remaining row is within ``tol·max‖row‖`` of the span of the basis.
    """
    residual = np.array(M, dtype=np.float64)
    scale = float(np.linalg.norm(residual, axis=1).max(initial=0.0))
    basis: list[int] = []
    for _ in range(min(M.shape)):
        norms = np.linalg.norm(residual, axis=1)
        norms[basis] = -1.0
        p = int(np.argmax(norms))
        if norms[p] <= tol * scale:
            break
        q = residual[p] / norms[p]
        residual -= np.outer(residual @ q, q)
        basis.append(p)
    B = np.array(sorted(basis), dtype=int)
    D = np.setdiff1d(np.arange(M.shape[0]), B)
    if D.size == 0 or B.size == 0:
        return B, np.zeros((D.size, B.size))
    K = np.linalg.lstsq(M[B].T, M[D].T, rcond=None)[0].T
    return B, K


def _constant(layers: Chain, slopes: list[tuple[float, float]]) -> np.ndarray:
    """Output of the chain ``layers`` (hidden layer ``k``'s activation of ``slopes[k]``) when its input is 0."""
    h = np.zeros(layers[0].W.shape[1])
    for k, layer in enumerate(layers):
        h = layer.W @ h + layer.b
        if k < len(layers) - 1:
            below, above = slopes[k]
            h = np.where(h < 0, below * h, above * h)
    return h


@dataclass
class Leo:
    """What LEO++ made of a dense ReLU chain; each hidden layer's ``ids`` are its neurons' original positions."""

    layers: Chain
    kept: list[str]  # the ReLU layers left, by name
    constant: bool  # the chain is constant on the domain (``layers`` is one zero-weight layer)
    merged: bool  # a layer was merged into the next, so layers no longer line up with the original's


def leo(layers: Chain, statuses: list[np.ndarray], names: list[str], rank_tol: float = RANK_TOL,
        report: PassReport | None = None, merge: bool = True, slopes: list[tuple[float, float]] | None = None) -> Leo:
    """LEO++ on a dense chain of piecewise-linear activations (``slopes[l]``: hidden layer ``l``'s slope below and
    above 0; default ReLU's (0, 1)); ``statuses[l]`` holds ACTIVE / INACTIVE / other (kept) per neuron of layer ``l``.

    A stable neuron is linear on the box, ``h = c·z`` (``c``: the slope of its side): a ReLU's inactive one is 0 and
    removed, any other is folded like a ReLU's active one (its row ``c·W``). A layer whose neurons are all stable is
    merged into the next unless the product has more non-zero weights than the two (a narrow layer between wide
    ones): then, as with ``merge=False``, it keeps its independent rows. ``merge=False`` keeps every layer, so that
    every layer left lines up with the original's: what ``layered.aligned`` needs.
    """
    report = report or PassReport("compress")
    slopes = slopes or [(0.0, 1.0)] * len(statuses)
    W, b = (np.array(a, dtype=np.float64) for a in (layers[0].W, layers[0].b))
    out: Chain = []
    kept: list[str] = []
    merged = False
    for l, (st, name, (below, above)) in enumerate(zip(statuses, names, slopes)):
        Wn, bn = (np.array(a, dtype=np.float64) for a in (layers[l + 1].W, layers[l + 1].b))
        if st.size != W.shape[0]:
            raise NnxformError(f"ReLU '{name}' has {W.shape[0]} neurons but its stability lists {st.size}")
        live = (st != INACTIVE) | (below != 0)
        if not live.any():
            c = _constant([dense(Wn, bn)] + list(layers[l + 2:]), slopes[l + 1:])
            report.add("constant", f"{name}: all {st.size} neurons stably inactive, so the network is constant on the domain")
            return Leo([dense(np.zeros((c.size, layers[0].W.shape[1])), c, "compress_gemm1")], [], True, True)
        if not live.all():
            report.counts["removed_inactive"] = report.counts.get("removed_inactive", 0) + int((~live).sum())
        W, b, st, Wn, index = W[live], b[live], st[live], Wn[:, live], np.flatnonzero(live)
        line = f"{name}: {int((~live).sum())} stably inactive removed"
        stable = np.flatnonzero(np.isin(st, (ACTIVE, INACTIVE)))
        c = np.where(st == ACTIVE, above, below)[:, None]  # each stable neuron's slope on the box
        what = "stably active" if below == 0 else "stable (linear on the box)"
        product = Wn @ (c * W) if stable.size == st.size and merge else None
        if product is not None and np.count_nonzero(product) <= np.count_nonzero(W) + np.count_nonzero(Wn):
            W, b = product, Wn @ (c[:, 0] * b) + bn
            merged = True
            report.add("merged", f"{line}; the {st.size} left are {what}: layer merged into the next")
            continue
        folded = np.zeros(0, dtype=int)
        if stable.size > 1:
            basis, K = independent_rows(c[stable] * W[stable], rank_tol)
            folded = np.setdiff1d(stable, stable[basis])
            Bi = stable[basis]
            bn = bn + Wn[:, folded] @ (c[folded, 0] * b[folded] - K @ (c[Bi, 0] * b[Bi]))
            Wn[:, Bi] += Wn[:, folded] @ K
            keep = np.setdiff1d(np.arange(st.size), folded)
            W, b, Wn, index = W[keep], b[keep], Wn[:, keep], index[keep]
        if folded.size:
            key = "folded_active" if below == 0 else "folded_stable"
            report.counts[key] = report.counts.get(key, 0) + int(folded.size)
        report.add("kept", f"{line}; {stable.size} {what} (rank {stable.size - folded.size}, {folded.size} folded "
                           f"into the next layer); {st.size - stable.size} unstable or undecided kept")
        out.append(dense(W, b, f"compress_gemm{len(out) + 1}", ids=index))
        kept.append(name)
        W, b = Wn, bn
    out.append(dense(W, b, f"compress_gemm{len(out) + 1}"))
    return Leo(out, kept, False, merged)


@dataclass(kw_only=True)
class Compression(PassReport):
    """What compress did (its report), the compressed network, and the same network aligned with the original for
    certification."""

    model: Model
    aligned: Model | None  # see ``layered.aligned``; None when the result is constant


def compress_aligned(model: Model, stability: Signs, rank_tol: float = RANK_TOL) -> Compression:
    """``model`` without its stable ReLUs (``stability`` from ``nnxform.stable.classify`` on the same model and box)."""
    if rank_tol < 0:
        raise NnxformError("the rank tolerance must be >= 0")
    canonical = CANONICAL.establish(model)
    report = PassReport("compress")
    thinned = remove_dead_channels(canonical, stability, report)
    tail, small_tail = dense_tail(canonical), dense_tail(thinned)
    statuses = [stability.layer(name).status for name in tail.relus]
    if tail.skipped:
        left = [stability.layer(name).counts() for name in tail.skipped]
        stable = sum(c["active"] + c["inactive"] for c in left)
        report.add("left", f"{len(tail.skipped)} ReLU layers before the dense tail ({', '.join(tail.skipped)}: "
                           f"{sum(sum(c.values()) for c in left)} neurons, {stable} of them stable) are left as they "
                           "are but for channels stably inactive at every position, which are removed (a convolution "
                           "shares its weights across positions); the dense layers after the last convolution (or "
                           "branch) are compressed neuron by neuron")
    slopes = [a.slopes for a in tail.activations]
    result = leo(small_tail.layers, statuses, small_tail.relus, rank_tol, report, slopes=slopes)
    unmerged = result if not result.merged and thinned is canonical else \
        leo(tail.layers, statuses, tail.relus, rank_tol, merge=False, slopes=slopes)
    expanded = None if unmerged.merged else _rebuild(canonical, tail, aligned(unmerged.layers, tail.layers),
                                                      tail.relus, False)
    return _no_larger(model, Compression(name=report.name, changes=report.changes, counts=report.counts,
                                         aligned=expanded, model=_rebuild(thinned, small_tail, result.layers,
                                                                          result.kept, result.constant)))


def _no_larger(model: Model, compression: Compression) -> Compression:
    """``compression``, or ``model`` as it is when the compressed network has more ReLU neurons or connections: a
    compression never grows the network. (The canonical form can: two affine layers canon merges, like a layer LEO
    merges into the next, can hold more non-zero weights than the two.)"""
    before, after = model_size(model), model_size(compression.model)
    grown = [f"{k} {getattr(before, k):,} → {getattr(after, k):,}" for k in ("neurons", "connections")
             if getattr(after, k) > getattr(before, k)]
    if not grown:
        return compression
    compression.counts = {"unchanged": 1}
    compression.changes.append(f"the compressed form would be larger than the input ({', '.join(grown)}): the input "
                               "is written as it is")
    compression.model, compression.aligned = model.copy(), model.copy()
    return compression


def remove_dead_channels(model: Model, stability: Signs, report: PassReport) -> Model:
    """``model`` (canonical) without the conv channels whose every position is stably inactive on the box, removed
    from their Conv or ConvTranspose and from the layer reading them (the next Conv's or ConvTranspose's input
    channels, their block of columns of the Gemm after the Flatten, through pools); ``model`` itself when there is
    none. Exact on the box: such a channel is 0 after its ReLU there, and a channel is only removed where that 0
    reaches its reader as 0 (not through a BN or per-channel affine adding a constant). A layer keeps at least one
    channel."""
    if not any(n.op in CONVOLUTIONS for n in model.nodes):
        return model
    try:
        net = layered.from_model(model, "compress")
    except NnxformError:  # not one chain (e.g. skip connections): the convolutions are left as they are
        return model
    layers, removed, shapes = list(net.layers), 0, net.shapes()
    for site in reversed(layered.sites(net)):  # last first: removing channels leaves earlier sites' indices valid
        conv = layers[site.layer]
        relu = layers[site.between[0]] if site.between else None
        if not isinstance(conv, (layered.Conv, layered.ConvTranspose)) or not isinstance(relu, Relu) or \
                not _channelwise(layers, site):
            continue
        status = stability.layer(relu.name).status.reshape(conv.units, -1)
        dead = np.flatnonzero((status == INACTIVE).all(axis=1) & _zero_at_reader(layers, site, shapes))
        dead = dead[:conv.units - 1]
        if dead.size == 0:
            continue
        layers = layered.remove_channels(layers, site, dead)
        removed += int(dead.size)
        report.changes.append(f"{conv.name}: {dead.size} of {conv.units} channels stably inactive at every position "
                              f"removed (channels {', '.join(map(str, conv.ids[dead]))})")
    if not removed:
        return model
    report.counts["removed_channels"] = removed
    thinned = computable(layered.Network.like(model, layers).to_model(), "compress")
    thinned.metadata = dict(model.metadata)
    return thinned


def _channelwise(layers: list[layered.Layer], site: layered.Site) -> bool:
    """True when every layer between ``site``'s convolution and its reader keeps channels apart (channel-wise or a
    per-channel affine); not through a sigmoid, a Reshape, …, where no channel can go."""
    return all(isinstance(layers[j], layered.CHANNELWISE) or layered.is_channel_affine(layers[j])
               for j in site.between)


def _zero_at_reader(layers: list[layered.Layer], site: layered.Site, shapes: list[tuple[int, ...]]) -> np.ndarray:
    """Per channel of ``site``'s Conv: True when a 0 after its ReLU (the first layer between) is still 0 where the
    reader reads it (a BN or per-channel affine after the ReLU adds a constant a removed channel would lose)."""
    x = np.zeros((1,) + shapes[site.between[0] + 1])  # the ReLU's output, one sample
    for j in site.between[1:]:
        if not isinstance(layers[j], layered.Flatten):
            x = layers[j].forward(x)
    return ~x[0, 0].reshape(x.shape[2], -1).any(axis=1)


@register("compress", requires=frozenset({CANONICAL}), ensures=frozenset(), needs=("stability",))
def compress(model: Model, stability: Signs, rank_tol: float = RANK_TOL) -> tuple[Model, Compression]:
    """The same function on the box with the stable ReLUs removed (``stability`` classified on that box)."""
    c = compress_aligned(model, stability, rank_tol)
    return c.model, c


def _rebuild(model: Model, tail: Tail, layers: Chain, kept: list[str], constant: bool) -> Model:
    """``model``'s nodes before the tail, then ``[Flatten →] Gemm → Relu → … → Gemm [→ Reshape]`` on ``layers``, each
    kept activation written as it was (a LeakyRelu with its alpha)."""
    out = model.output_name
    out_shape = tuple(model.shapes()[out])
    m = model.copy()
    m.nodes = [] if constant else [n for n in m.nodes if n.name in {h.name for h in tail.head}]
    m.metadata = dict(m.metadata)
    start = m.input_name if constant else tail.start
    if constant:
        layers = [dense(np.zeros((layers[0].units, m.input_size)), layers[0].b, layers[0].name)]
    rank = len(m.input_shape if constant else model.shapes()[tail.start])
    write_layers(m, start, chain_layers(layers, rank, out_shape, kept, final_relu=True,
                                        activations=tail.written(kept)), out)
    m.prune()
    return m
