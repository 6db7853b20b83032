"""Two ReLU networks as one on ONE shared input, output ``f_A(x) − f_B(x)`` (DESIGN.md, "Merging with a comparison layer").

Both networks are canonicalised and compiled to dense layers, padded to the same depth with exact
identity layers (``passes.pad``), and joined layer by layer: the first Gemm stacks ``[W_A; W_B]``
on the shared flattened input (row-major, so ``[1,784,1]`` and ``[1,1,28,28]`` pair up), the
hidden ones are block-diagonal, and the last one has the comparison ``[I, −I]`` folded in:
``[W_A, −W_B]``, bias ``b_A − b_B``. The result is a single chain — no Sub (Marabou 2.0.0
mis-encodes it), no parallel branches (nnenum rejects them). With ``keep_outputs`` the output is
``[f_A − f_B, f_A, f_B]``.

Convolutional networks stay convolutional when their heads match (the same input shape, and layer
by layer the same kind of layer with the same kernel, strides, pads and dilations, ReLU and pooling
alike, up to the Flatten before the dense tail): the first Conv stacks both filter banks, later
Convs are block-diagonal over channels (zero cross blocks), pools and ReLUs act per channel, and
the Flatten of ``[channels of A, channels of B]`` is ``[flat A, flat B]``, which the dense tail's
block-diagonal Gemms read. Otherwise the convolutions become dense Gemms, and the report says why.
Networks that are no chain (skip connections) are merged as one graph (``_merged_graph``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .domain import Box
from .errors import NnxformError
from .exactness import ATOL, Comparison, Reference
from .ir import Model, Node
from . import layered
from .operators import OPERATORS
from .layered import Chain, Conv, Layer, chain_layers, chain_network, dense
from .passes import PASSES, Pass, apply_checked
from .passes.pad import NotMergeable, conv_head_and_tail, pad_pair, relu_layers
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
    """One ReLU chain on the first network's input computing ``f_A − f_B`` (then ``f_A``, ``f_B`` with ``keep_outputs``)."""
    shapes = (a.input_dims or a.input_shape, second.input_dims or second.input_shape)
    other = next((n for m in (a, second) for n in m.nodes if n.op in OPERATORS and OPERATORS[n.op].activation
                  and n.op != "Relu"), None)
    if other is not None:
        raise NnxformError(f"merge supports ReLU chains; '{other.name}' is a {other.op}")
    convolutional = any(n.op in ("Conv", "ConvTranspose") for m in (a, second) for n in m.nodes)
    why = ""
    if convolutional:
        try:
            return _merged_convolutional(a, second, keep_outputs, shapes)
        except NotMergeable as exc:
            why = f"convolutions merged as dense Gemms: {exc}"
    try:
        la, lb = relu_layers(a, "merge"), relu_layers(second, "merge")
    except NnxformError as exc:  # skip connections, pools or other activations: both graphs side by side
        return _merged_graph(a, second, keep_outputs, shapes, str(exc))
    pa, pb, notes = pad_pair(la, lb, "merge")
    layers = merge_layers(pa, pb, keep_outputs)
    report = MergeReport(len(la), len(lb), len(pa), [layer.units for layer in layers], la[-1].units, *shapes,
                         keep_outputs, notes, why)
    return chain_network(layers, a, output=OUTPUT).to_model(), report


def _merged_convolutional(a: Model, second: Model, keep_outputs: bool, shapes: tuple) -> tuple[Model, MergeReport]:
    """The merge of two CNNs whose heads match layer by layer, convolutions kept (see the module docstring)."""
    if tuple(a.input_shape) != tuple(second.input_shape):
        raise NotMergeable(f"the input shapes differ ({list(a.input_shape)} and {list(second.input_shape)})")
    (ha, ta), (hb, tb) = conv_head_and_tail(a, "first"), conv_head_and_tail(second, "second")
    head = _merge_heads(ha, hb)
    pa, pb, notes = pad_pair(ta, tb, "merge")
    tail = merge_layers(pa, pb, keep_outputs, stacked=False)
    convs = sum(isinstance(layer, Conv) for layer in head)
    layers = head + chain_layers(tail, 2)
    widths = [layer.units for layer in head if isinstance(layer, Conv)] + [layer.units for layer in tail]
    report = MergeReport(convs + len(ta), convs + len(tb), convs + len(pa), widths, ta[-1].units, *shapes,
                         keep_outputs, notes, f"convolutions kept: {convs} Conv layers merged channel-wise (no dense "
                                              "matrix)")
    return layered.Network.like(a, layers, OUTPUT).to_model(), report


def _merged_graph(a: Model, second: Model, keep_outputs: bool, shapes: tuple, why: str) -> tuple[Model, MergeReport]:
    """Both canonical graphs side by side on the first one's input (the second's nodes, tensors and constants
    prefixed ``second/``), its last Gemm negated (or its output times −1), one Add giving ``f_A − f_B``: a DAG,
    for networks that are no chain (skip connections) — read by the verifiers that read graphs."""
    ga, _ = PASSES["canon"](a)
    gb, _ = PASSES["canon"](second)
    out_shape = tuple(ga.shapes()[ga.output_name])
    if int(np.prod(out_shape)) != int(np.prod(gb.shapes()[gb.output_name])):
        raise NnxformError(f"the outputs differ in size: {list(out_shape)} and {list(gb.shapes()[gb.output_name])}; "
                           "merge needs outputs of the same size")
    m = Model(nodes=list(ga.nodes), constants=dict(ga.constants), input_name=ga.input_name,
              input_shape=tuple(ga.input_shape), output_names=[OUTPUT], input_dims=tuple(ga.input_dims),
              dtype=ga.dtype, source=dict(a.source))
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
    minus = m.add_constant("minus_one", np.array(-1.0))
    m.nodes.append(Node("Mul", "negate_second", [y_b, minus], ["second/negated"]))
    ends = [Node("Add", "compare", [y_a, "second/negated"], [OUTPUT if not keep_outputs else "difference"])]
    if keep_outputs:
        ends.append(Node("Concat", "outputs", ["difference", y_a, y_b], [OUTPUT], {"axis": -1}))
    m.nodes += ends
    weighted = [sum(n.op in ("Gemm", "Conv", "MatMul", "ConvTranspose") for n in g.nodes) for g in (ga, gb)]
    report = MergeReport(*weighted, max(weighted), [], int(np.prod(out_shape)), *shapes, keep_outputs, [],
                         f"graph: {why}; the two graphs side by side on one input and f_A − f_B = Add(f_A, −f_B): a "
                         "DAG, which verifiers reading graphs take (α,β-CROWN; Marabou when it reads both networks' "
                         "operators) and single-chain verifiers (nnenum) do not")
    return m, report


def _merge_heads(ha: list[Layer], hb: list[Layer]) -> list[Layer]:
    """Two matching heads as one on the shared input: the first Conv stacked, later ones block-diagonal."""
    if [type(x) for x in ha] != [type(x) for x in hb]:
        raise NotMergeable("their layers before the dense tail differ in kind or number")
    out: list[Layer] = []
    first = True
    for k, (x, y) in enumerate(zip(ha, hb)):
        if x.attrs() != y.attrs() or (isinstance(x, Conv) and x.W.shape[2:] != y.W.shape[2:]):
            raise NotMergeable(f"layer {k + 1} ('{x.name}' and '{y.name}') differs in kernel, strides, pads or "
                               "dilations")
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
MERGE = Pass("merge", _merged.__doc__ or "", False, _merged, needs=("second",))


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
    with the outputs of the two networks, not with their (possibly tiny) difference."""

    def outputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ya = OnnxRunner(a)(xs).astype(np.float64)
        yb = OnnxRunner(b)(xs).astype(np.float64)
        scale = np.maximum(np.abs(ya), np.abs(yb))
        if keep_outputs:
            return np.hstack([ya - yb, ya, yb]), np.tile(scale, 3)
        return ya - yb, scale

    return Reference(outputs, "the merged network differs from f_A − f_B by {max_abs:.3g} over {samples} samples, "
                              "beyond {tol:g} + {tol:g}·max(|f_A|, |f_B|); nothing written (please report these networks)")
