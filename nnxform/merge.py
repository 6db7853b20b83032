"""Two ReLU networks as one on ONE shared input, output ``f_A(x) − f_B(x)`` (DESIGN.md, "Merging with a comparison layer").

Both networks are canonicalised and compiled to dense layers, padded to the same depth with exact
identity layers (``passes.pad``), and joined layer by layer: the first Gemm stacks ``[W_A; W_B]``
on the shared flattened input (row-major, so ``[1,784,1]`` and ``[1,1,28,28]`` pair up), the
hidden ones are block-diagonal, and the last one has the comparison ``[I, −I]`` folded in:
``[W_A, −W_B]``, bias ``b_A − b_B``. The result is a single chain — no Sub (Marabou 2.0.0
mis-encodes it), no parallel branches (nnenum rejects them). With ``keep_outputs`` the output is
``[f_A − f_B, f_A, f_B]``.

Convolutional networks stay convolutional when their heads align (the same input shape, and layer
by layer the same kind of layer with the same kernel, strides, pads and dilations, ReLU and pooling
alike, up to the Flatten before the dense tail): the first Conv stacks both filter banks, later
Convs are block-diagonal over channels (zero cross blocks), pools and ReLUs act per channel, and
the Flatten of ``[channels of A, channels of B]`` is ``[flat A, flat B]``, which the dense tail's
block-diagonal Gemms read. Heads of different depths are aligned (``_aligned_heads``): a layer of one
head without a counterpart in the other gets an exact identity layer of its kind there — a Conv of its
geometry with one non-zero tap (stride 1, spatial size kept), a Relu where the values are already ≥ 0,
a pooling only when it is 1×1 with stride 1 — so both heads keep equal spatial sizes at every merged
layer. Otherwise the convolutions become dense Gemms, and the report says why.
Networks that are no chain (skip connections) are merged as one graph (``_merged_graph``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .domain import Box
from .errors import NnxformError
from .exactness import ATOL, Comparison, Reference, magnitudes
from .ir import Model, Node
from . import layered
from .operators import CONVOLUTIONS, OPERATORS, PIECEWISE_LINEAR
from .layered import Chain, Conv, Flatten, Layer, Relu, chain_layers, chain_network, dense
from .passes import CANONICAL, Pass, apply_checked
from .passes.pad import (MAX_DENSE_IDENTITY, NotMergeable, chain_identity_width, channels, conv_head_and_tail,
                          identity_conv, identity_tap, nonnegative, one_activation, pad_pair, piecewise_chain,
                          written_activations)
from .runtime import OnnxRunner

#: Name of the merged network's output.
OUTPUT = "delta"


@dataclass
class MergeReport:
    """What the merge did: depths before and after, merged layer widths, shapes, padding lines."""

    depth_a: int
    depth_b: int
    depth: int
    widths: list[int]
    outputs: int
    input_shape_a: tuple
    input_shape_b: tuple
    keep_outputs: bool
    padding: list[str] = field(default_factory=list)
    form: str = ""  # how the layers were merged when not as one dense chain (convolutions kept, or a graph), and why

    @property
    def shapes_differ(self) -> bool:
        return tuple(self.input_shape_a) != tuple(self.input_shape_b)

    def to_json(self) -> dict:
        """What ``nnxform merge --json`` says of the merge itself (the command adds the files and the check)."""
        return {"keep_outputs": self.keep_outputs, "input_shapes": [list(self.input_shape_a), list(self.input_shape_b)],
                "shapes_differ": self.shapes_differ, "depths": [self.depth_a, self.depth_b], "depth": self.depth,
                "widths": self.widths, "outputs": self.outputs, "padding": self.padding, "form": self.form or None}


def _block_diag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]))
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0]:, a.shape[1]:] = b
    return out


def merge_layers(a: Chain, b: Chain, keep_outputs: bool = False, stacked: bool = True) -> Chain:
    """Dense layers of ``x ↦ f_A(x) − f_B(x)`` (then ``f_A``, ``f_B`` with ``keep_outputs``) for equal-depth chains.

    ``stacked``: both first layers read the same input (``[W_A; W_B]``); else each reads its own half of a
    concatenated input (block-diagonal, as after a merged convolutional head).
    """
    first = np.vstack([a[0].W, b[0].W]) if stacked else _block_diag(a[0].W, b[0].W)
    joined = [(first, np.concatenate([a[0].b, b[0].b]))]
    joined += [(_block_diag(la.W, lb.W), np.concatenate([la.b, lb.b])) for la, lb in zip(a[1:], b[1:])]
    k = a[-1].units
    eye, zero = np.eye(k), np.zeros((k, k))
    compare = [np.hstack([eye, -eye])]
    if keep_outputs:
        compare += [np.hstack([eye, zero]), np.hstack([zero, eye])]
    C = np.vstack(compare)
    W, bias = joined[-1]
    joined[-1] = (C @ W, C @ bias)
    return [dense(W, bias, f"layer{k}") for k, (W, bias) in enumerate(joined, start=1)]


def _merged(a: Model, second: Model, keep_outputs: bool = False) -> tuple[Model, MergeReport]:
    """One chain on the first network's input computing ``f_A − f_B`` (then ``f_A``, ``f_B`` with ``keep_outputs``),
    of their one piecewise-linear activation (ReLU, or a LeakyRelu of one alpha); two graphs side by side else."""
    shapes = (a.input_dims or a.input_shape, second.input_dims or second.input_shape)
    other = next((n for m in (a, second) for n in m.nodes if n.op in OPERATORS and OPERATORS[n.op].activation
                  and n.op not in PIECEWISE_LINEAR), None)
    if other is not None:
        raise NnxformError(f"merge supports ReLU chains; '{other.name}' is a {other.op}")
    convolutional = any(n.op in CONVOLUTIONS for m in (a, second) for n in m.nodes)
    # canonicalised once each (not at all when marked canonical): every reader below takes them as they are
    a, second = CANONICAL.establish(a), CANONICAL.establish(second)
    why = ""
    if convolutional:
        try:
            return _merged_convolutional(a, second, keep_outputs, shapes)
        except NotMergeable as exc:
            why = f"convolutions merged as dense Gemms: {exc}"
    try:
        (la, acts_a), (lb, acts_b) = piecewise_chain(a, "merge"), piecewise_chain(second, "merge")
        slopes = one_activation(acts_a + acts_b, "merge")
    except NnxformError as exc:  # skip connections, pools, two activations: both graphs side by side
        return _merged_graph(a, second, keep_outputs, shapes, "; ".join(filter(None, (why, str(exc)))))
    depth = max(len(la), len(lb))
    wide = max(chain_identity_width(la, depth, slopes), chain_identity_width(lb, depth, slopes))
    if convolutional and wide > MAX_DENSE_IDENTITY:
        return _merged_graph(a, second, keep_outputs, shapes, f"{why}; as dense Gemms the shallower one would need "
                                                              f"identity layers over {wide} units (at most "
                                                              f"{MAX_DENSE_IDENTITY})")
    pa, pb, notes = pad_pair(la, lb, "merge", slopes)
    layers = merge_layers(pa, pb, keep_outputs)
    report = MergeReport(len(la), len(lb), len(pa), [layer.units for layer in layers], la[-1].units, *shapes,
                         keep_outputs, notes, why)
    acts = written_activations(acts_a + acts_b, len(layers) - 1)
    return chain_network(layers, a, output=OUTPUT, activations=acts).to_model(), report


def _merged_convolutional(a: Model, second: Model, keep_outputs: bool, shapes: tuple) -> tuple[Model, MergeReport]:
    """The merge of two CNNs whose heads match layer by layer, convolutions kept (see the module docstring)."""
    if tuple(a.input_shape) != tuple(second.input_shape):
        raise NotMergeable(f"the input shapes differ ({list(a.input_shape)} and {list(second.input_shape)})")
    (ha, ta), (hb, tb) = conv_head_and_tail(a, "first"), conv_head_and_tail(second, "second")
    conv_a, conv_b = (sum(isinstance(layer, Conv) for layer in h) for h in (ha, hb))
    ha, hb, inserted = _aligned_heads(ha, hb, tuple(a.input_shape))
    head = _merge_heads(ha, hb)
    pa, pb, notes = pad_pair(ta, tb, "merge")
    tail = merge_layers(pa, pb, keep_outputs, stacked=False)
    convs = sum(isinstance(layer, Conv) for layer in head)
    layers = head + chain_layers(tail, 2)
    widths = [layer.units for layer in head if isinstance(layer, Conv)] + [layer.units for layer in tail]
    report = MergeReport(conv_a + len(ta), conv_b + len(tb), convs + len(pa), widths, ta[-1].units, *shapes,
                         keep_outputs, inserted + notes, f"convolutions kept: {convs} Conv layers merged channel-wise "
                                                         "(no dense matrix)")
    return layered.Network.like(a, layers, OUTPUT).to_model(), report


def _merged_graph(a: Model, second: Model, keep_outputs: bool, shapes: tuple, why: str) -> tuple[Model, MergeReport]:
    """Both canonical graphs side by side on the first one's input (``side_by_side``), the second's output times −1,
    one Add giving ``f_A − f_B``: a DAG, for networks that are no chain (skip connections) — read by the verifiers
    that read graphs."""
    ga, gb = CANONICAL.establish(a), CANONICAL.establish(second)
    m, y_a, y_b = side_by_side(ga, gb)
    m.source = dict(a.source)
    out_shape = tuple(ga.shapes()[ga.output_name])
    minus = m.add_constant("minus_one", np.array(-1.0))
    m.nodes.append(Node("Mul", "negate_second", [y_b, minus], ["second/negated"]))
    ends = [Node("Add", "compare", [y_a, "second/negated"], [OUTPUT if not keep_outputs else "difference"])]
    if keep_outputs:
        ends.append(Node("Concat", "outputs", ["difference", y_a, y_b], [OUTPUT], {"axis": -1}))
    m.nodes += ends
    weighted = [sum(OPERATORS[n.op].linear_layer for n in g.nodes) for g in (ga, gb)]
    report = MergeReport(*weighted, max(weighted), [], int(np.prod(out_shape)), *shapes, keep_outputs, [],
                         f"graph: {why}; the two graphs side by side on one input and f_A − f_B = Add(f_A, −f_B): a "
                         "DAG, which verifiers reading graphs take (α,β-CROWN; Marabou when it reads both networks' "
                         "operators) and single-chain verifiers (nnenum) do not")
    return m, report


def side_by_side(ga: Model, gb: Model) -> tuple[Model, str, str]:
    """Both graphs, as they are, on the first one's input (the second's nodes, tensors and constants prefixed
    ``second/``; its input reshaped from the first's when their shapes differ, its output to the first's output
    shape): the model, whose output ``OUTPUT`` the caller's last node writes, and the two output tensors."""
    out_shape = tuple(ga.shapes()[ga.output_name])
    if int(np.prod(out_shape)) != int(np.prod(gb.shapes()[gb.output_name])):
        raise NnxformError(f"the outputs differ in size: {list(out_shape)} and {list(gb.shapes()[gb.output_name])}; "
                           "the two networks must have outputs of the same size")
    m = Model(nodes=copy.deepcopy(list(ga.nodes)), constants=dict(ga.constants), input_name=ga.input_name,
              input_shape=tuple(ga.input_shape), output_names=[OUTPUT], input_dims=tuple(ga.input_dims),
              dtype=ga.dtype, source={})
    names = {t: f"second/{t}" for n in gb.nodes for t in n.outputs} | {t: f"second/{t}" for t in gb.constants}
    names[gb.input_name] = ga.input_name
    if tuple(gb.input_shape) != tuple(ga.input_shape):  # paired element by element in row-major order
        names[gb.input_name] = "second/input"
        m.nodes.append(Node("Reshape", "second/input_reshape",
                            [ga.input_name, m.add_constant("second/input_shape", np.array(gb.input_shape, np.int64))],
                            ["second/input"]))
    m.constants.update({names[k]: v for k, v in gb.constants.items()})
    m.nodes += [Node(n.op, f"second/{n.name}", [names.get(t, t) for t in n.inputs], [names[t] for t in n.outputs],
                     dict(n.attrs)) for n in gb.nodes]
    y_a, y_b = ga.output_name, names[gb.output_name]
    if tuple(gb.shapes()[gb.output_name]) != out_shape:
        m.nodes.append(Node("Reshape", "second/output_reshape",
                            [y_b, m.add_constant("second/output_shape", np.array(out_shape, np.int64))],
                            ["second/output"]))
        y_b = "second/output"
    return m, y_a, y_b


def _identity_of(layer: Layer, nonnegative_there: bool) -> str:
    """Why no identity layer of ``layer``'s kind and geometry can stand beside it in the other head ("": one can)."""
    if isinstance(layer, Conv):
        return "" if identity_tap(layer) is not None else \
            (f"no Conv of its geometry (kernel {list(layer.W.shape[2:])}, strides {list(layer.strides)}, pads "
             f"{list(layer.pads)}) is the identity")
    if isinstance(layer, Relu):
        return "" if nonnegative_there else "the other's values there can be negative"
    if isinstance(layer, (layered.MaxPool, layered.AvgPool)):
        trivial = set(layer.kernel) | set(layer.strides) == {1} and not any(layer.pads)
        return "" if trivial else f"a {'×'.join(map(str, layer.kernel))} pooling window is no identity"
    return "a Flatten ends the head before the dense tail"


def _moves(ha: list[Layer], hb: list[Layer], signs: tuple[list[bool], list[bool]], i: int, j: int
           ) -> list[tuple[int, int]]:
    """The alignment steps from ``ha[i:]``, ``hb[j:]``: (1, 1) matches two layers of one kind and attributes, (0, 1)
    sets ``hb[j]`` beside an identity in the first head, (1, 0) ``ha[i]`` beside one in the second."""
    moves = []
    if i < len(ha) and j < len(hb) and type(ha[i]) is type(hb[j]) and ha[i].attrs() == hb[j].attrs():
        moves.append((1, 1))
    if j < len(hb) and not _identity_of(hb[j], signs[0][i]):
        moves.append((0, 1))
    if i < len(ha) and not _identity_of(ha[i], signs[1][j]):
        moves.append((1, 0))
    return moves


def _aligned_heads(ha: list[Layer], hb: list[Layer], input_shape: tuple[int, ...]
                   ) -> tuple[list[Layer], list[Layer], list[str]]:
    """Both heads at one depth, layer by layer of the same kind and geometry, and one line per identity inserted.

    Sequence alignment with the fewest insertions: a layer is matched with a layer of the same kind and attributes
    in the other head, or stands beside an exact identity of its kind there (``_identity_of``). Matched layers read
    inputs of one spatial size and identities keep it, so the two heads have equal spatial sizes everywhere.
    NotMergeable, naming the pair of layers where the alignments stop, when there is none.
    """
    heads, signs = (ha, hb), (nonnegative(ha), nonnegative(hb))
    n, m = len(ha), len(hb)
    cost = np.full((n + 1, m + 1), np.inf)  # cost[i, j]: fewest identities aligning ha[i:] with hb[j:]
    cost[n, m] = 0
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            for di, dj in _moves(ha, hb, signs, i, j):
                cost[i, j] = min(cost[i, j], cost[i + di, j + dj] + (di != dj))
    if np.isinf(cost[0, 0]):
        raise NotMergeable(_unaligned(ha, hb, signs))
    width = (channels(ha, input_shape[1]), channels(hb, input_shape[1]))
    out: tuple[list[Layer], list[Layer]] = ([], [])
    notes: list[str] = []
    i = j = 0
    while (i, j) != (n, m):
        di, dj = next(d for d in _moves(ha, hb, signs, i, j) if cost[i + d[0], j + d[1]] + (d[0] != d[1]) == cost[i, j])
        if di == dj:
            out[0].append(ha[i])
            out[1].append(hb[j])
        else:
            gap = di  # 0: the identity goes in the first head, beside hb[j]; 1: in the second, beside ha[i]
            layer = heads[1 - gap][(j, i)[gap]]
            identity, line = _identity(layer, width[gap][(i, j)[gap]], len(input_shape) - 2)
            out[gap].append(identity)
            out[1 - gap].append(layer)
            notes.append(f"{('first', 'second')[gap]}: identity {line} at head layer {len(out[0])}, beside "
                         f"'{layer.name}'")
        i, j = i + di, j + dj
    return out[0], out[1], notes


def _identity(layer: Layer, width: int, nd: int) -> tuple[Layer, str]:
    """The exact identity standing beside ``layer`` over ``width`` channels, and how the report names it."""
    if isinstance(layer, Conv):
        kernel = "×".join(map(str, layer.W.shape[2:]))
        return identity_conv(width, nd, layer), f"Conv ({width} channels, {kernel} kernel with one non-zero tap)"
    if isinstance(layer, Relu):
        return Relu(name="identity_relu"), "Relu (its input is ≥ 0)"
    return layer.replace(name="identity_pool"), f"{layer.OP} (1×1 window, stride 1)"


def _unaligned(ha: list[Layer], hb: list[Layer], signs: tuple[list[bool], list[bool]]) -> str:
    """Why two heads do not align: the layers where the alignments from their start stop, at the stop that passed
    the most layers of both heads (then the fewest identities)."""
    reached = np.zeros((len(ha) + 1, len(hb) + 1), bool)
    reached[0, 0] = True
    for i in range(len(ha) + 1):
        for j in range(len(hb) + 1):
            for di, dj in _moves(ha, hb, signs, i, j) if reached[i, j] else []:
                reached[i + di, j + dj] = True
    i, j = max(zip(*np.nonzero(reached)), key=lambda ij: (min(ij), -ij[0] - ij[1]))
    ends = [(f"the first's '{ha[i].name}'", ha[i], signs[1][j])] if i < len(ha) else []
    ends += [(f"the second's '{hb[j].name}'", hb[j], signs[0][i])] if j < len(hb) else []
    what = " and ".join(f"{name} ({type(z).__name__})" for name, z, _ in ends)
    why = "; ".join(f"beside {name}: {_identity_of(z, s)}" for name, z, s in ends if not isinstance(z, Flatten))
    return (f"their layers before the dense tail do not align (kind, kernel, strides, pads) and no exact identity "
            f"layer fills the gap: after {i} layers of the first head and {j} of the second, {what} ({why})")


def _merge_heads(ha: list[Layer], hb: list[Layer]) -> list[Layer]:
    """Two aligned heads (``_aligned_heads``) as one on the shared input: the first Conv stacked, later ones
    block-diagonal."""
    out: list[Layer] = []
    first = True
    for k, (x, y) in enumerate(zip(ha, hb)):
        if isinstance(x, Conv):
            if first:
                W = np.concatenate([x.W, y.W], axis=0)
            else:
                W = np.zeros((x.W.shape[0] + y.W.shape[0], x.W.shape[1] + y.W.shape[1]) + x.W.shape[2:])
                W[:x.W.shape[0], :x.W.shape[1]], W[x.W.shape[0]:, x.W.shape[1]:] = x.W, y.W
            out.append(x.replace(name=f"conv{len(out) + 1}", W=W, b=np.concatenate([x.b, y.b]),
                                 ids=np.arange(W.shape[0])))
            first = False
        else:
            out.append(x.replace(name=f"{type(x).__name__.lower()}{k + 1}"))
    if first:
        raise NotMergeable("no Conv before the dense tail")
    return out


#: The merge as a pass on the first network: it changes the function, so it is checked against ``difference``.
MERGE = Pass("merge", _merged.__doc__ or "", False, _merged, needs=("second",), requires=frozenset({CANONICAL}))


def merge(a: Model, b: Model, *, keep_outputs: bool = False, box: Box | None = None, samples: int = 1000,
          tol: float = ATOL, parameters: dict | None = None) -> tuple[Model, MergeReport, Comparison]:
    """The merged network of ``a`` and ``b``, checked in onnxruntime against ``f_A − f_B`` on ``box``."""
    if a.input_size != b.input_size:
        raise NnxformError(f"the inputs differ in size: the first network takes {a.input_size} values, the second "
                           f"{b.input_size}; merge needs the same number of input elements")
    return apply_checked(MERGE, a, box, samples, tol, dict(parameters or {}, second_sha256=b.source.get("sha256", "")),
                         difference(a, b, keep_outputs), second=b, keep_outputs=keep_outputs)


def difference(a: Model, b: Model, keep_outputs: bool = False) -> Reference:
    """``f_A − f_B`` (and ``f_A``, ``f_B``) in onnxruntime, what the merged network must compute; the tolerance scales
    with what the two networks compute (``|f|`` and their absolute chains), not with their (possibly tiny) difference."""
    copies = 3 if keep_outputs else 1

    def outputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ya = OnnxRunner(a)(xs).astype(np.float64)
        yb = OnnxRunner(b)(xs).astype(np.float64)
        scale = np.tile(np.maximum(np.abs(ya), np.abs(yb)), copies)
        return (np.hstack([ya - yb, ya, yb]) if keep_outputs else ya - yb), scale

    def chain(xs: np.ndarray, reach: float) -> np.ndarray:
        return np.tile(np.maximum(magnitudes(a, xs, reach), magnitudes(b, xs, reach)), copies)

    return Reference(outputs, "the merged network differs from f_A − f_B by {max_abs:.3g} over {samples} samples, "
                              "beyond {rule} (|y| of the larger of f_A, f_B); nothing written (please report these "
                              "networks)", chain)
