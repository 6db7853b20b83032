"""Compile a Model into the analysis form: a DAG of dense affine steps and element-wise nonlinear steps.

Every operator the table (``operators.OPERATORS``) does not mark nonlinear is affine in its data
inputs (in the ones its entry names), so the affine operators between two nonlinear nodes
collapse to one ``Linear`` step ``y = Σ W_k · x_k + b`` over *anchors* (the network input and
the outputs of nonlinear nodes). The matrices are exact: they are read off the evaluator itself, running the affine
subgraph's linear part (biases at zero, ``Operator.offset``) on basis vectors, so every operator the evaluator knows
is supported with its exact ONNX semantics and no per-op matrix code to get wrong; the bias is the subgraph's value
at zero. (Reading ``f(e_i) − f(0)`` instead loses the weights when the bias dwarfs them.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import NnxformError
from ..interpreter import forward
from ..ir import Model, Node
from ..operators import AFFINE_FIRST, AFFINE_ONE, OPERATORS, Elementwise
from ..operators.forward import Windows, explicit_pads, merge_lead
from .conv import ConvMap, IdentityMap, MATRIX_FREE, SubgraphMap, abs_of
from .rounding import Rounding, node_inputs, roundings, unit_roundoff
#: Basis vectors evaluated per batch when reading off matrices, and the memory one batch may take.
_CHUNK, _CHUNK_BYTES = 512, 256 * 2**20
#: The part of a Linear step from one anchor whose dense matrix would hold more entries than this is kept as an
#: operator: the convolution (``ConvMap``) or the affine nodes themselves (``SubgraphMap``).
DENSE_CONV_LIMIT = 2**24
#: The same for a step that is one Conv: its operator is cheaper than its (sparse) dense matrix from a few
#: thousand entries on (verivital-style 1×28×28 → 24×28×28: symbolic 90 s dense, 47 s as the convolution).
CONV_MAP_LIMIT = 2**16
#: The memory a convolution written out as a dense matrix may take (with the copies the chain tools make): beyond it
#: those tools refuse, and the difference analysis bounds the merged network, so that every command stays within 2 GB.
DENSE_BYTES = 2**30


@dataclass
class Input:
    """The flattened network input."""

    size: int


@dataclass
class Linear:
    """``y = Σ weights[k] @ x[sources[k]] + bias``: an affine tensor (pre-activation or output)."""

    tensor: str
    sources: list[int]
    weights: list[np.ndarray]
    bias: np.ndarray
    rounding: Rounding | None = None  # how the float network rounds it; None: one Gemm of these weights

    @property
    def size(self) -> int:
        return int(self.bias.size)

    @cached_property
    def float_rounding(self) -> Rounding:
        return self.rounding or Rounding.of_gemm(self.weights, self.bias)

    @cached_property
    def abs_weights(self) -> list[np.ndarray | ConvMap]:
        return [abs_of(w) for w in self.weights]

    @cached_property
    def weights32(self) -> list[tuple[np.ndarray, bool] | None]:
        """Per source, the dense weights rounded to float32 and whether that was exact (None for an operator): what
        ``symbolic``'s float32 products multiply by."""
        out: list[tuple[np.ndarray, bool] | None] = []
        for w in self.weights:
            w32 = w.astype(np.float32) if isinstance(w, np.ndarray) else None
            out.append(None if w32 is None else (w32, bool(np.array_equal(w32, w))))
        return out


@dataclass
class Activation:
    """An element-wise activation of a Linear step; ``kind`` is its table entry's function and relaxation, so
    only an operator declared with both can be one."""

    op: str
    node: str
    source: int
    size: int
    attrs: dict[str, Any] = field(default_factory=dict)  # the node's attributes (LeakyRelu's alpha)

    def __post_init__(self) -> None:
        spec = OPERATORS.get(self.op)
        if spec is None or spec.activation is None:
            raise NnxformError(f"{self.op} node '{self.node}' is not an activation with a declared relaxation")

    @property
    def kind(self) -> Elementwise:
        return OPERATORS[self.op].activation.at(self.attrs)  # type: ignore[union-attr]  # checked at construction

    @property
    def slopes(self) -> tuple[float, float] | None:
        """(slope below 0, slope above 0) of a piecewise-linear activation (ReLU: (0, 1)); None for a curved one."""
        return self.kind.slopes


@dataclass
class Pool:
    """MaxPool of a Linear step: output ``j`` is the max of ``source[windows[j, k]]`` over ``k >= 0``."""

    node: str
    source: int
    windows: np.ndarray  # (size, kernel elements), -1 marks padding

    op: str = field(default="MaxPool", init=False)

    @property
    def size(self) -> int:
        return int(self.windows.shape[0])


Step = Input | Linear | Activation | Pool


class NotAChain(ValueError):
    """Why a compiled network is not a chain of affine layers and piecewise-linear activations: the step in the way
    and what it is (``pool``, ``curved``, ``empty``, ``skip``, ``misplaced``, or ``end``: no affine output layer)."""

    def __init__(self, step: int, why: str) -> None:
        super().__init__(f"step {step}: {why}")
        self.step, self.why = step, why


@dataclass
class CompiledNetwork:
    """The analysis form of a network (``compile_model``): steps in topological order (``steps[0]`` is the input);
    ``output`` is a Linear step. (``layered.Network`` is the layered form, which transformations edit.)"""

    steps: list[Step]
    output: int
    output_shape: tuple[int, ...]
    dtype: type = np.float32  # what the network computes in (its rounding: ``analyzers.rounding``)

    @property
    def unit_roundoff(self) -> float:
        return unit_roundoff(self.dtype)

    @property
    def input_size(self) -> int:
        return self.steps[0].size

    @cached_property
    def linear_steps(self) -> list[int]:
        """Indices of the Linear steps, in graph order (of a chain: its affine layers)."""
        return [i for i, s in enumerate(self.steps) if isinstance(s, Linear)]

    @property
    def nonlinear(self) -> list[int]:
        """Indices of the Activation and Pool steps, in graph order."""
        return [i for i, s in enumerate(self.steps) if isinstance(s, (Activation, Pool))]

    @cached_property
    def piecewise_only(self) -> list[bool]:
        """Per step: True for a Linear step read only by piecewise-linear activations (ReLU, LeakyRelu): its stable
        neurons need no tightening."""
        kinked: dict[int, bool] = {}
        for s in self.steps:
            if isinstance(s, (Activation, Pool)):
                kinked[s.source] = kinked.get(s.source, True) and isinstance(s, Activation) and s.slopes is not None
        return [kinked.get(i, False) and i != self.output for i in range(len(self.steps))]

    def first_layer(self, i: int) -> bool:
        """True for a Linear step of the input alone: interval bounds over the box are exact for it."""
        s = self.steps[i]
        return isinstance(s, Linear) and all(isinstance(self.steps[j], Input) for j in s.sources)

    def chain(self) -> list[tuple[int, int | None]]:
        """The network as a chain ``Linear → activation → … → Linear`` whose activations are two-piece piecewise linear
        (the table's ``slopes``: ReLU, LeakyRelu): per affine layer, its Linear step and the activation step after it
        (None after the last); ``NotAChain`` naming the step in the way otherwise (each caller words its refusal)."""
        layers: list[list[int | None]] = []
        for i, step in enumerate(self.steps[1:], start=1):
            if isinstance(step, Pool):
                raise NotAChain(i, "pool")
            if isinstance(step, Activation):
                if step.slopes is None:
                    raise NotAChain(i, "curved")
                if not layers or layers[-1][1] is not None or step.source != layers[-1][0]:
                    raise NotAChain(i, "misplaced")
                layers[-1][1] = i
                continue
            expect = layers[-1][1] if layers else 0
            if not step.sources:
                raise NotAChain(i, "empty")
            if step.sources != [expect]:
                raise NotAChain(i, "skip" if len(step.sources) > 1 else "misplaced")
            layers.append([i, None])
        if not layers or layers[-1][1] is not None or layers[-1][0] != self.output:
            raise NotAChain(self.output, "end")
        return [(linear, act) for linear, act in layers]

    def rows_to_tighten(self, i: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Neurons of Linear step ``i`` worth tightening: the unstable ones if only piecewise-linear activations read
        it, else all."""
        return np.flatnonzero((lo < 0) & (hi > 0)) if self.piecewise_only[i] else np.arange(lo.size)


def compile_model(model: Model, keep_convs: bool = False) -> CompiledNetwork:
    """The analysis form of ``model``; raises NnxformError on a node that is not affine in its data.

    The part of a step from one anchor whose dense matrix would hold more than ``DENSE_CONV_LIMIT`` entries
    (``CONV_MAP_LIMIT`` when it is one Conv) stays an operator; ``keep_convs``: every single Conv does (the
    difference analysis aligns them by channels).
    """
    _check_affine(model)
    shapes = model.shapes()
    anchors = [model.input_name] + [n.outputs[0] for n in model.nodes if _nonlinear(n)]
    targets = [n.inputs[0] for n in model.nodes if _nonlinear(n)] + [model.output_name]
    identities = set(targets) & set(anchors[1:])  # an activation's output read by a MaxPool, or the network output
    targets = [t for t in targets if t not in identities]
    reach = _reach(model, anchors)
    sizes = {t: int(np.prod(shape, dtype=np.int64)) for t, shape in shapes.items()}
    paths = {(a, t): _path(model, t, reach[a]) for a in anchors for t in reach[a] & set(targets)}
    convs = {pair: conv for pair, nodes in paths.items() if (conv := _conv_map(model, pair[0], nodes, shapes))}
    conv_limit = 0 if keep_convs else CONV_MAP_LIMIT
    kept = {(a, t) for a, t in paths if sizes[a] * sizes[t] > (conv_limit if (a, t) in convs else DENSE_CONV_LIMIT)}
    dense = {a: {t for t in reach[a] & set(targets) if (a, t) not in kept} for a in anchors}
    _check_memory(model, shapes, dense)
    basis = {a: {t for t in dense[a] if (a, t) not in convs} for a in anchors}  # a lone Conv's matrix is its kernel
    feed = {a: np.zeros((1,) + shapes[a]) for a in anchors}
    zero = _affine_values(model, feed, shapes)
    abs_zero = _affine_values(model, feed, shapes, absolute=True)
    columns, abs_columns = {}, {}
    for a in anchors:
        if basis[a]:  # an anchor read only by operators or lone Convs needs no basis run
            widest = max(sizes[t] for t in reach[a])  # the tensors one batch of basis vectors runs through
            chunk = int(max(1, min(_CHUNK, _CHUNK_BYTES // (8 * 4 * widest))))
            columns[a], abs_columns[a] = _basis_response(model, a, shapes, (zero, abs_zero), basis[a], chunk)
        else:
            columns[a], abs_columns[a] = {}, {}
        for t in reach[a] & set(targets):
            if (a, t) in kept:
                columns[a][t] = convs.get((a, t)) or SubgraphMap(tuple(paths[a, t]), model.constants, a, t, shapes,
                                                                 zero, abs_zero)
                abs_columns[a][t] = columns[a][t].abs()
            elif (a, t) in convs:  # the kernel placed on every window: what a basis run would give, exactly
                columns[a][t] = np.asarray(convs[a, t])
                abs_columns[a][t] = np.abs(columns[a][t])
    depth = _roundings(model, shapes, set(anchors))

    steps: list[Step] = [Input(model.input_size)]
    index = {model.input_name: 0}  # anchor tensor -> step
    linear: dict[str, int] = {}  # target tensor -> step

    def linear_step(t: str) -> int:
        if t in identities and t not in linear:
            n = int(np.prod(shapes[t], dtype=np.int64))
            steps.append(Linear(t, [index[t]], [IdentityMap(n)], np.zeros(n),
                                Rounding([IdentityMap(n)], np.zeros(n), np.zeros(n))))
            linear[t] = len(steps) - 1
        if t not in linear:
            srcs = [a for a in anchors if t in columns[a]]
            bias = zero[t].reshape(-1)
            weights = [columns[a][t] for a in srcs]
            rounding = Rounding([abs_columns[a][t] for a in srcs], abs_zero[t].reshape(-1), np.full(bias.size, depth[t]))
            steps.append(Linear(t, [index[a] for a in srcs], weights, bias, rounding))
            linear[t] = len(steps) - 1
        return linear[t]

    for n in model.nodes:
        if not _nonlinear(n):
            continue
        src = linear_step(n.inputs[0])
        size = int(np.prod(shapes[n.outputs[0]], dtype=np.int64))
        if OPERATORS[n.op].window_max:
            steps.append(Pool(n.name, src, _pool_windows(n, shapes[n.inputs[0]])))
        else:
            steps.append(Activation(n.op, n.name, src, size, dict(n.attrs)))
        index[n.outputs[0]] = len(steps) - 1
    out = linear_step(model.output_name)
    return CompiledNetwork(steps, out, tuple(shapes[model.output_name]), model.dtype)


def _path(model: Model, target: str, reach: set[str]) -> list[Node]:
    """The affine nodes on the paths from an anchor (``reach``: the tensors it reaches) to ``target``, in order."""
    needed, nodes = {target}, []
    for n in reversed(model.nodes):
        if not _nonlinear(n) and n.outputs[0] in needed and n.outputs[0] in reach:
            nodes.insert(0, n)
            needed.update(t for t in n.inputs if t)
    return nodes


def _conv_map(model: Model, anchor: str, nodes: list[Node], shapes: dict) -> ConvMap | None:
    """The convolution itself (pads written out) when one Conv of constant weights is all there is on the path."""
    n = nodes[0] if len(nodes) == 1 else None
    if n is None or n.op != "Conv" or n.inputs[0] != anchor or not all(x in model.constants for x in n.inputs[1:] if x):
        return None
    weight = model.constants[n.inputs[1]].astype(np.float64)
    explicit = Node("Conv", n.name, list(n.inputs), list(n.outputs),
                    dict(n.attrs, pads=list(explicit_pads(n.attrs, shapes[anchor][2:], weight.shape[2:]))))
    explicit.attrs.pop("auto_pad", None)
    return ConvMap(explicit, weight, tuple(shapes[anchor]), tuple(shapes[n.outputs[0]]))


def _nonlinear(n: Node) -> bool:
    return OPERATORS[n.op].nonlinear


def _check_affine(model: Model) -> None:
    """Every non-nonlinear node must be affine in its data inputs (products of data are not)."""
    for n in model.nodes:
        data = [k for k, t in enumerate(n.inputs) if t and t not in model.constants]
        affine = OPERATORS[n.op].affine
        if affine == AFFINE_ONE and len(data) > 1:
            raise NnxformError(f"{n.op} node '{n.name}' multiplies two data tensors; bounds need it affine in the input")
        if affine == AFFINE_FIRST and data != [0]:
            raise NnxformError(f"{n.op} node '{n.name}' has data in a weight/divisor input; bounds need it affine in the input")


def _affine_values(model: Model, feed: dict[str, np.ndarray], shapes: dict, fixed: dict | None = None,
                   only: set[str] | None = None, absolute: bool = False, linear: bool = False) -> dict[str, np.ndarray]:
    """Evaluate the affine nodes on ``feed`` (batched anchor values); nonlinear nodes are cut.

    With ``only``, evaluate just the nodes downstream of a tensor in ``only``, taking any other data input from
    ``fixed`` (unbatched values). ``absolute``: the absolute chain (``rounding.absolute_node``) on non-negative
    feeds. ``linear``: the nodes' linear parts (no offsets).
    """
    nodes, reached = [], set(only or ())
    for n in model.nodes:
        if not _nonlinear(n) and (only is None or any(t in reached for t in n.inputs)):
            nodes.append(n)
            reached.add(n.outputs[0])
    return forward(nodes, dict(feed), lambda n, values: node_inputs(n, values, model.constants, fixed, absolute, linear))


def _check_memory(model: Model, shapes: dict, dense_targets: dict[str, set[str]]) -> None:
    """Refuse at once a model whose dense matrices (per anchor, the targets read off as dense columns) would not
    fit in memory (instead of failing minutes later)."""
    sizes = {t: int(np.prod(s, dtype=np.int64)) for t, s in shapes.items()}
    dense = sum(sizes[a] * sizes[t] for a, targets in dense_targets.items() for t in targets)
    need = 2 * 8 * dense  # the weights and their absolute chain, float64
    free = _available_memory()
    if need > 0.8 * free:
        raise NnxformError(f"the analyzers compile every affine layer into a dense matrix: this network needs about "
                           f"{need / 2**30:.1f} GiB for them, more than the {free / 2**30:.1f} GiB available; "
                           "convolutional networks of this size are not supported by the analyzers yet")


def dense_weights(w: np.ndarray | ConvMap, what: str) -> np.ndarray:
    """``w`` as a dense matrix for the tools that need one (the difference analysis, pad, merge, pruning), or a
    one-line error naming ``what`` when a convolution kept as an operator would not fit in memory that way."""
    if not isinstance(w, MATRIX_FREE):
        return w
    need = 3 * 8 * w.shape[0] * w.shape[1]  # the matrix and the copies the chain tools make of it
    if need > min(DENSE_BYTES, 0.8 * _available_memory()):
        raise NnxformError(f"{what}: a convolution over {w.shape[1]} inputs to {w.shape[0]} outputs needs about "
                           f"{need / 2**30:.1f} GiB as a dense matrix; convolutional networks of this size are not "
                           "supported there yet (bounds and stable take them as they are)")
    return np.asarray(w)


def _reach(model: Model, anchors: list[str]) -> dict[str, set[str]]:
    """Per anchor, the tensors its affine nodes reach (the anchor included)."""
    reach = {a: {a} for a in anchors}
    for n in model.nodes:
        if _nonlinear(n):
            continue
        for a in anchors:
            if any(t in reach[a] for t in n.inputs):
                reach[a].add(n.outputs[0])
    return reach


def _available_memory() -> int:
    """Bytes of memory available to this process (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _basis_response(model: Model, anchor: str, shapes: dict, zeros: tuple[dict, dict], targets: set[str],
                    chunk: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Matrices ``(target size, anchor size)`` of every target the anchor reaches through affine nodes,
    and of the absolute chain of those nodes (``rounding``); ``chunk`` basis vectors at a time."""
    size = int(np.prod(shapes[anchor], dtype=np.int64))
    parts: tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]] = ({}, {})
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        basis = np.zeros((stop - start, size))
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        feed = {anchor: basis.reshape((-1,) + shapes[anchor])}
        for absolute, zero, part in zip((False, True), zeros, parts):
            values = _affine_values(model, feed, shapes, fixed=zero, only={anchor}, absolute=absolute, linear=True)
            for t in targets:
                if t in values:
                    part.setdefault(t, []).append(values[t].reshape(stop - start, -1).T)
    return tuple({t: np.hstack(p) for t, p in part.items()} for part in parts)  # type: ignore[return-value]


def _roundings(model: Model, shapes: dict, anchors: set[str]) -> dict[str, int]:
    """Per tensor of the affine subgraphs, the roundings on its longest chain of operators from an anchor."""
    depth = {a: 0 for a in anchors}
    for n in model.nodes:
        if _nonlinear(n):
            continue
        depth[n.outputs[0]] = max((depth.get(t, 0) for t in n.inputs if t), default=0) + roundings(n, shapes)
    return depth


def _pool_windows(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    """Flat input indices (``-1`` for padding) of each MaxPool output's window, mirroring the evaluator."""
    kernel = tuple(node.attrs["kernel_shape"])
    idx, _ = merge_lead(np.arange(int(np.prod(in_shape))).reshape(in_shape), len(kernel) + 1)
    win = Windows.of(node.attrs, idx.shape[2:], kernel)
    xp = np.pad(idx, win.pad_widths(), constant_values=-1)
    return np.stack([xp[sl].reshape(-1) for _, sl in win.slices()], axis=1)
