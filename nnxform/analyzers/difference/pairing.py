"""The pair of chains in the channel form: each network read as a chain of affine layers and two-piece
piecewise-linear activations (ReLU, LeakyRelu: the table's ``slopes``; ``analysis_chain``), padded with exact
identity layers (``padded_chain``), widened channel by channel with dead units (``aligned_chains``), and paired
layer by layer (``pair_chains``, ``PairLayer``, ``ChainPair``), both networks with one activation per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import NnxformError
from ...layered import Dense
from ...operators import OPERATORS
from ...operators.activations import RELU, Elementwise
from ..conv import ConvMap, MATRIX_FREE, abs_of
from ..network import Activation, Input, Linear, CompiledNetwork, NotAChain, dense_weights
from ..rounding import Rounding


def _match_rows(short: np.ndarray, long: np.ndarray) -> np.ndarray:
    """Distinct rows of ``long`` nearest to each row of ``short`` (greedy, closest pairs first)."""
    d = (short ** 2).sum(1)[:, None] + (long ** 2).sum(1)[None, :] - 2.0 * short @ long.T
    order = np.argsort(d, axis=None, kind="stable")
    rows, cols = np.unravel_index(order, d.shape)
    place = np.full(short.shape[0], -1)
    taken = np.zeros(long.shape[0], dtype=bool)
    for i, j in zip(rows, cols):
        if place[i] < 0 and not taken[j]:
            place[i], taken[j] = j, True
    return place


def joint_network(a: CompiledNetwork, b: CompiledNetwork) -> CompiledNetwork:
    """One CompiledNetwork on the shared input: every step of ``a``, every step of ``b``, then ``out_A − out_B``.

    Works for any two compiled networks (DAGs, MaxPool, Sigmoid): the merged network, analysed as one.
    """
    if a.input_size != b.input_size:
        raise NnxformError(f"the inputs differ in size: {a.input_size} and {b.input_size} values")
    shift = len(a.steps) - 1
    steps = [a.steps[0]] + a.steps[1:]

    def moved(i: int) -> int:
        return 0 if i == 0 else i + shift

    for s in b.steps[1:]:
        if isinstance(s, Linear):
            steps.append(Linear(f"b:{s.tensor}", [moved(i) for i in s.sources], s.weights, s.bias, s.rounding))
        elif isinstance(s, Activation):
            steps.append(Activation(s.op, f"b:{s.node}", moved(s.source), s.size, s.attrs))
        else:
            steps.append(type(s)(f"b:{s.node}", moved(s.source), s.windows))
    oa, ob = a.steps[a.output], b.steps[b.output]
    if oa.size != ob.size:
        raise NnxformError(f"the outputs differ in size: {oa.size} and {ob.size} values")
    eye = np.eye(oa.size)
    steps.append(Linear("delta", [a.output, moved(b.output)], [eye, -eye], np.zeros(oa.size)))
    return CompiledNetwork(steps, len(steps) - 1, a.output_shape, a.dtype)


class NotAligned(NnxformError):
    """The two networks cannot be analysed layer by layer in their analysis form (the reason says why)."""


#: A weight matrix of the analysis form: dense, or a convolution applied without being formed.
Matrix = np.ndarray | ConvMap
#: The most entries of a dense identity layer padded over a convolution's units (a flattened feature map).
MAX_IDENTITY_ENTRIES = 2**24


@dataclass(frozen=True)
class Placement:
    """Where a layer's channels go in a wider layer: channel ``c`` to ``index[c]`` of ``width``, each a block of
    ``positions`` consecutive units (``c·positions + p``, row-major NCHW; a Gemm's units are channels of one)."""

    index: np.ndarray
    width: int
    positions: int

    @classmethod
    def same(cls, channels: int, positions: int) -> "Placement":
        return cls(np.arange(channels), channels, positions)

    @property
    def size(self) -> int:
        return self.width * self.positions

    @property
    def units(self) -> np.ndarray:
        """The flat position of every unit of the layer in the wider one."""
        return (self.index[:, None] * self.positions + np.arange(self.positions)[None, :]).reshape(-1)

    @property
    def identity(self) -> bool:
        return self.index.size == self.width and bool(np.all(self.index == np.arange(self.width)))


def widen(w: Matrix, rows: Placement, cols: Placement) -> Matrix:
    """``w`` with its rows (output channels) and columns (input channels) at their places in wider layers, zero
    elsewhere: the same map on the units that exist, and dead units (0, read by nobody) for the others."""
    if rows.identity and cols.identity:
        return w
    if isinstance(w, ConvMap):
        (c_out, c_in), spatial = w.weight.shape[:2], w.weight.shape[2:]
        rows = rows if not rows.identity else Placement.same(c_out, int(np.prod(w.out_shape[2:])))
        cols = cols if not cols.identity else Placement.same(c_in, int(np.prod(w.in_shape[2:])))
        if rows.positions != np.prod(w.out_shape[2:]) or cols.positions != np.prod(w.in_shape[2:]):
            raise NotAligned(f"Conv '{w.node.name}' reads or writes units that are not its channels")
        kernel = np.zeros((rows.width, cols.width) + spatial)
        kernel[np.ix_(rows.index, cols.index)] = w.weight
        return ConvMap(w.node, kernel, (1, cols.width) + w.in_shape[2:], (1, rows.width) + w.out_shape[2:])
    out = np.zeros((rows.size, cols.size))
    out[np.ix_(rows.units, cols.units)] = w
    return out


def widen_rows(v: np.ndarray, rows: Placement) -> np.ndarray:
    """A per-unit vector (bias, rounding depth) at its places in a wider layer, zero elsewhere."""
    if rows.identity:
        return v
    out = np.zeros(rows.size, dtype=v.dtype)
    out[rows.units] = v
    return out


def _exact(rounding: Rounding | None, rows: int, cols: int) -> Rounding | None:
    """The rounding of a layer the padding adds, which no float network computes: none (zero rows) — or None
    beside a chain read from no float network."""
    return None if rounding is None else Rounding([np.zeros((rows, cols))], np.zeros(rows), np.zeros(rows))


def _dense(w: Matrix) -> np.ndarray:
    """``w`` as a dense matrix, or NotAligned when a convolution would not fit in memory that way."""
    try:
        return dense_weights(w, "the difference analysis")
    except NnxformError as exc:
        raise NotAligned(str(exc)) from None


@dataclass
class ChainLayer:
    """One affine layer of a chain in the channel form: ``z = W·a + b`` (W dense or a ``ConvMap``), how its float
    network rounds it (None: read from no float network, taken as one Gemm of its weights where needed), its
    units as ``channels × positions`` (a dense layer's units are channels of one position), and the activation
    after it (``op``, ``attrs``: a two-piece piecewise-linear one of the table; ReLU unless read otherwise, and
    unused after the last layer)."""

    W: Matrix
    b: np.ndarray
    rounding: Rounding | None
    channels: int
    positions: int
    op: str = "Relu"
    attrs: dict = field(default_factory=dict)

    @property
    def kind(self) -> Elementwise:
        """The activation after the layer as the table computes it (its ``slopes`` are never None here)."""
        return OPERATORS[self.op].activation.at(self.attrs)  # type: ignore[union-attr]  # read from an Activation

    @classmethod
    def of_dense(cls, layer: Dense) -> "ChainLayer":
        """A layer of a dense ``Chain`` (no float network behind it)."""
        return cls(layer.W, layer.b, None, layer.units, 1)

    def signatures(self) -> np.ndarray:
        """Per channel, its weights and bias flattened: what channel matching compares."""
        if isinstance(self.W, ConvMap):
            return np.column_stack([self.W.weight.reshape(self.channels, -1), self.b[:: self.positions]])
        W = np.asarray(self.W).reshape(self.channels, -1)
        return np.column_stack([W, self.b.reshape(self.channels, -1)])

    def widened(self, rows: Placement, cols: Placement) -> "ChainLayer":
        r = self.rounding
        rounding = r and Rounding([widen(w, rows, cols) for w in r.weights], widen_rows(r.bias, rows),
                                  widen_rows(np.asarray(r.depth, dtype=np.float64), rows))
        return ChainLayer(widen(self.W, rows, cols), widen_rows(self.b, rows), rounding, rows.width, rows.positions,
                          self.op, self.attrs)

    def written_out(self) -> "ChainLayer":
        """The layer with its weights (and its rounding's) as dense matrices: its units channels of one position."""
        r = self.rounding
        rounding = r and Rounding([_dense(w) for w in r.weights], r.bias, r.depth)
        return ChainLayer(_dense(self.W), self.b, rounding, self.b.size, 1, self.op, self.attrs)


def analysis_chain(net: CompiledNetwork, shapes: dict[str, tuple[int, ...]], which: str, dense: bool = False
                   ) -> list[ChainLayer]:
    """The affine layers of a compiled chain (``Linear``, activation, …, ``Linear``) whose activations are two-piece
    piecewise linear (the table's ``slopes``: ReLU, LeakyRelu), each layer with the activation after it, or
    NotAligned naming what is in the way (a pooling, a curved activation, a skip connection, a grouped
    convolution). A layer that is an affine segment other than one Conv, and with ``dense`` every layer, is written
    out as a dense matrix (``ChainLayer.written_out``), once the whole chain is read."""
    try:
        chain = net.chain()
    except NotAChain as exc:
        step = net.steps[exc.step]
        if exc.why == "end":
            raise NotAligned(f"{which} network: not a ReLU chain ending in an affine layer") from None
        if isinstance(step, Linear):
            why = f"adds up {len(step.sources)} branches (a skip connection)" if exc.why == "skip" else \
                "is not one affine layer of a ReLU chain"
            raise NotAligned(f"{which} network: '{step.tensor}' {why}") from None
        raise NotAligned(f"{which} network: '{step.node}' ({step.op}) is not a piecewise-linear activation (ReLU, "
                         "LeakyRelu) of the layer before it") from None
    layers: list[ChainLayer] = []
    for i, act in chain:
        step = net.steps[i]
        w = step.weights[0]
        if not dense and isinstance(w, ConvMap) and w.node.attrs.get("group", 1) != 1:
            raise NotAligned(f"{which} network: Conv '{w.node.name}' is grouped")
        shape = shapes[step.tensor]
        channels, positions = (shape[1], int(np.prod(shape[2:], dtype=np.int64))) if len(shape) > 2 else \
            (step.size, 1)
        layers.append(ChainLayer(w, step.bias, step.float_rounding, int(channels), positions))
        if act is not None:
            layers[-1].op, layers[-1].attrs = net.steps[act].op, dict(net.steps[act].attrs)
    return [layer.written_out() if dense or isinstance(layer.W, MATRIX_FREE) and not isinstance(layer.W, ConvMap)
            else layer for layer in layers]


def identity_width(layers: Sequence[ChainLayer | Dense], depth: int) -> int:
    """The width of the identity layers ``padded_chain(layers, depth)`` inserts (0: none), before building them."""
    if depth <= len(layers):
        return 0
    if len(layers) == 1:
        return 2 * min(layers[0].W.shape)
    relu = not isinstance(layers[-2], ChainLayer) or layers[-2].kind.slopes == RELU.slopes
    return int(layers[-1].W.shape[1]) * (1 if relu else 2)


def padded_chain(layers: list[ChainLayer], depth: int, like: ChainLayer | None = None
                 ) -> tuple[list[ChainLayer], list[str]]:
    """``layers`` with identity layers (and their activation) before the last one up to ``depth`` layers, and one
    line per insertion: the same function. After a ReLU the identity reads values >= 0, so the ReLU after it changes
    nothing; after another two-piece activation ``f`` of slopes ``(p, q)`` (``_kinked_identity``) the values are
    split as ``y = (f(y) − f(−y)) / (p + q)``. A chain of one layer is split first (``_split``), around the
    activation of ``like`` (the other network's first layer; ReLU without one). Nothing the padding adds is computed
    by a float network, so it adds no rounding (the last layer's, when it reads a split, bounds the same products)."""
    extra = depth - len(layers)
    if extra <= 0:
        return list(layers), []
    notes: list[str] = []
    if len(layers) == 1:
        layers, notes = _split(layers[0], like)
        extra -= 1
    last = layers[-2]
    if extra and last.kind.slopes != RELU.slopes:
        padded, lines = _kinked_identity(layers, extra)
        return padded, notes + lines
    n = last.b.size
    identity = ChainLayer(np.eye(n), np.zeros(n), _exact(last.rounding, n, n), last.channels, last.positions)
    unit = "neurons" if last.positions == 1 else "units"
    notes += [f"identity layer Gemm(I) → Relu ({n} {unit}) before the last layer"] * extra
    return layers[:-1] + [identity] * extra + layers[-1:], notes


def _kinked_identity(layers: list[ChainLayer], extra: int) -> tuple[list[ChainLayer], list[str]]:
    """``extra`` identity layers before the last layer of a chain whose activation ``f`` there (slopes ``(p, q)``,
    not ReLU's) keeps negative values: ``[I; −I] → f``, then ``[[I, −I], [−I, I]] / (p + q) → f`` per further layer,
    the last layer reading ``[W, −W] / (p + q)`` (``y = (f(y) − f(−y)) / (p + q)``, as ``passes/pad.py``'s
    ``kinked_identity``). The last layer's rounding weights become ``[|W|, |W|] / (p + q)``: since
    ``|f(y)| + |f(−y)| = (p + q)·|y|``, they bound the float network's products of ``W·y`` from the split values."""
    before, last = layers[-2], layers[-1]
    if isinstance(last.W, MATRIX_FREE):
        raise NotAligned("a chain whose last layer is a convolution cannot be padded with identity layers through "
                         f"{before.op}")
    p, q = before.kind.slopes  # type: ignore[misc]  # a chain's activations have slopes
    c, n = p + q, before.b.size
    eye, act = np.eye(n), (before.op, before.attrs)
    split = ChainLayer(np.vstack([eye, -eye]), np.zeros(2 * n), _exact(before.rounding, 2 * n, n),
                       2 * before.channels, before.positions, *act)
    turn = ChainLayer(np.block([[eye, -eye], [-eye, eye]]) / c, np.zeros(2 * n), _exact(before.rounding, 2 * n, 2 * n),
                      2 * before.channels, before.positions, *act)
    r = last.rounding
    rounding = r and Rounding([np.hstack([w, w]) / c for w in r.weights], r.bias, r.depth)
    end = ChainLayer(np.hstack([last.W, -last.W]) / c, last.b, rounding, last.channels, last.positions, last.op,
                     last.attrs)
    notes = [f"identity layer [I; −I] → {before.op} → (f(y) − f(−y)) / {c:g} ({2 * n} units) before the last layer"]
    notes += [f"identity layer [[I, −I], [−I, I]] / {c:g} → {before.op} ({2 * n} units) before the last layer"] * \
        (extra - 1)
    return layers[:-1] + [split] + [turn] * (extra - 1) + [end], notes


def _split(layer: ChainLayer, like: ChainLayer | None = None) -> tuple[list[ChainLayer], list[str]]:
    """One dense layer as two around an activation ``f`` (``like``'s; ReLU without it) of slopes ``(p, q)``, the same
    function by ``(f(v) − f(−v)) / (p + q) = v`` (ReLU: ``relu(v) − relu(−v) = v``): its output split,
    ``[W; −W] → f → [I, −I] / (p + q)``, or its input, ``[I; −I] → f → [W, −W] / (p + q)``, whichever is narrower.
    The rows computing ``±(W·x + b)`` keep the layer's rounding (on the input side, ``[|W|, |W|] / (p + q)``, which
    bounds the same products since ``|f(x)| + |f(−x)| = (p + q)·|x|``); the rest is exact."""
    if isinstance(layer.W, MATRIX_FREE):
        raise NotAligned("a convolution without hidden layers cannot be padded in the channel form")
    act = (like.op, like.attrs) if like is not None else ("Relu", {})
    p, q = OPERATORS[act[0]].activation.at(act[1]).slopes  # type: ignore[union-attr,misc]
    c = p + q
    f = "relu" if act[0] == "Relu" else act[0]
    W, b, r = layer.W, layer.b, layer.rounding
    n_out, n_in = W.shape
    if n_out <= n_in:
        eye = np.eye(n_out)
        rounding = r and Rounding([np.vstack([w, w]) for w in r.weights], np.tile(r.bias, 2), np.tile(r.depth, 2))
        return [ChainLayer(np.vstack([W, -W]), np.concatenate([b, -b]), rounding, 2 * n_out, 1, *act),
                ChainLayer(np.hstack([eye, -eye]) / c, np.zeros(n_out), _exact(r, n_out, 2 * n_out), n_out, 1)], \
            [f"layer 1 split into {_parts(f, 'y', c)}: [W; −W] → {act[0]} → [I, −I]{_over(c)} ({2 * n_out} neurons)"]
    eye = np.eye(n_in)
    rounding = r and Rounding([np.hstack([w, w]) / c for w in r.weights], r.bias, r.depth)
    return [ChainLayer(np.vstack([eye, -eye]), np.zeros(2 * n_in), _exact(r, 2 * n_in, n_in), 2 * n_in, 1, *act),
            ChainLayer(np.hstack([W, -W]) / c, b, rounding, n_out, 1)], \
        [f"input split into {_parts(f, 'x', c)}: [I; −I] → {act[0]} → [W, −W]{_over(c)} ({2 * n_in} neurons)"]


def _parts(f: str, v: str, c: float) -> str:
    """``relu(v) − relu(−v)``, or ``(f(v) − f(−v)) / c`` for an activation whose slopes do not add up to 1."""
    return f"{f}({v}) − {f}(−{v})" if c == 1 else f"({f}({v}) − {f}(−{v})) / {c:g}"


def _over(c: float) -> str:
    """`` / c`` after a matrix divided by the slopes' sum, nothing when it is 1."""
    return "" if c == 1 else f" / {c:g}"


def aligned_chains(a: list[ChainLayer], b: list[ChainLayer]) -> tuple[list[ChainLayer], list[ChainLayer], list[str]]:
    """Two equal-depth chains widened layer by layer to the wider one's channels: each channel of the narrower layer
    placed at its nearest channel (weights and bias, greedy) of the wider one, the others dead — the same functions.
    A convolution stays one (its kernel gains zero filters and input channels); NotAligned when a layer's
    positions differ between the two and one of them is a convolution."""
    if len(a) != len(b):
        raise NotAligned(f"the chains have {len(a)} and {len(b)} affine layers")
    cols_a = cols_b = Placement.same(a[0].W.shape[1], 1)
    out_a, out_b, notes = [], [], []
    for k, (la, lb) in enumerate(zip(a, b)):
        if la.positions != lb.positions or isinstance(la.W, ConvMap) != isinstance(lb.W, ConvMap):
            if isinstance(la.W, ConvMap) or isinstance(lb.W, ConvMap):
                raise NotAligned(f"layer {k + 1} is a convolution in one network and differs in kind or positions "
                                 "in the other")
            la, lb = (ChainLayer(x.W, x.b, x.rounding, x.b.size, 1) for x in (la, lb))  # units as channels of one
        if isinstance(la.W, ConvMap) and (la.W.node.attrs != lb.W.node.attrs or
                                          la.W.weight.shape[2:] != lb.W.weight.shape[2:]):
            raise NotAligned(f"layer {k + 1}: the convolutions differ in kernel, strides, pads or dilations")
        if k < len(a) - 1 and la.kind.slopes != lb.kind.slopes:
            raise NotAligned(f"layer {k + 1}: the first network's {la.op} has slopes {_slopes(la)}, the second's "
                             f"{lb.op} {_slopes(lb)}; the paired analysis needs one activation in both")
        rows_a, rows_b = Placement.same(la.channels, la.positions), Placement.same(lb.channels, lb.positions)
        if k < len(a) - 1 and la.channels != lb.channels:
            wide_a, wide_b = la.widened(rows_a, cols_a), lb.widened(rows_b, cols_b)  # in the same input space
            (short, name), long = ((wide_a, "first"), wide_b) if la.channels < lb.channels else ((wide_b, "second"), wide_a)
            place = Placement(_match_rows(short.signatures(), long.signatures()), long.channels, long.positions)
            if short is wide_a:
                rows_a = place
            else:
                rows_b = place
            notes.append(f"{name}: layer {k + 1} widened from {short.channels} to {long.channels} "
                         f"{'channels' if long.positions > 1 else 'neurons'} with dead ones (placed by their nearest "
                         "in the other network)")
        elif k == len(a) - 1 and la.b.size != lb.b.size:
            raise NotAligned(f"the outputs differ in size: {la.b.size} and {lb.b.size} values")
        out_a.append(la.widened(rows_a, cols_a))
        out_b.append(lb.widened(rows_b, cols_b))
        cols_a, cols_b = rows_a, rows_b
    return out_a, out_b, notes


def _slopes(layer: ChainLayer) -> str:
    return "({:g}, {:g})".format(*layer.kind.slopes)  # type: ignore[misc]  # a chain's activations have slopes


def layers_network(layers: list[ChainLayer], dtype: type = np.float32, probe: bool = False) -> CompiledNetwork:
    """The CompiledNetwork of a chain of ``ChainLayer``s; ``probe``: the last layer replaced by a zero probe (the
    difference analysis bounds the outputs itself and needs each network's hidden bounds only; with a one-value
    output, symbolic's output-slope refinement is free)."""
    steps: list = [Input(layers[0].W.shape[1])]
    for k, layer in enumerate(layers, start=1):
        W, b, r = layer.W, layer.b, layer.rounding
        if probe and k == len(layers):
            n = W.shape[1]
            W, b, r = np.zeros((1, n)), np.zeros(1), Rounding([np.zeros((1, n))], np.zeros(1), np.zeros(1))
        steps.append(Linear(f"layer{k}", [len(steps) - 1], [W], b, r))
        if k < len(layers):
            steps.append(Activation(layer.op, f"{layer.op.lower()}{k}", len(steps) - 1, layer.b.size, layer.attrs))
    return CompiledNetwork(steps, len(steps) - 1, (1, steps[-1].size), dtype)


def _minus(a: Matrix, b: Matrix) -> Matrix:
    """``a − b`` of two weight matrices; two convolutions of one geometry stay a convolution."""
    if isinstance(a, ConvMap) and isinstance(b, ConvMap) and a.node.attrs == b.node.attrs and \
            a.weight.shape == b.weight.shape:
        return ConvMap(a.node, a.weight - b.weight, a.in_shape, a.out_shape)
    return np.asarray(a) - np.asarray(b)


@dataclass
class PairLayer:
    """One affine layer of both chains and of their difference: ``Δz = wa·Δa + d·a_B + db``; ``kind``: the
    activation after it in both (unused after the last layer)."""

    wa: Matrix
    ba: np.ndarray
    wb: Matrix
    bb: np.ndarray
    round_a: Rounding | None = None  # how each float network rounds the layer (None: one Gemm of its weights)
    round_b: Rounding | None = None
    kind: Elementwise = RELU
    d: Matrix = field(init=False)
    db: np.ndarray = field(init=False)
    abs_wa: Matrix = field(init=False)
    abs_d: Matrix = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.wa, MATRIX_FREE):
            self.wa, self.wb = np.ascontiguousarray(self.wa), np.ascontiguousarray(self.wb)  # fast BLAS paths
        self.d, self.db = _minus(self.wa, self.wb), self.ba - self.bb
        self.abs_wa, self.abs_d = abs_of(self.wa), abs_of(self.d)
        self.round_a = self.round_a or Rounding.of_gemm([self.wa], self.ba)
        self.round_b = self.round_b or Rounding.of_gemm([self.wb], self.bb)

    @property
    def size(self) -> int:
        return int(self.ba.size)


@dataclass
class ChainPair:
    """Two networks as ReLU chains of one shape (``pair_chains``): each network's layers as paired (``a``, ``b``)
    and as read (``read_a``, ``read_b``: its own function, before padding and widening), and what the pairing did."""

    a: list[ChainLayer]
    b: list[ChainLayer]
    read_a: list[ChainLayer]
    read_b: list[ChainLayer]
    notes: list[str]

    @property
    def layers(self) -> list[PairLayer]:
        return [PairLayer(x.W, x.b, y.W, y.b, x.rounding, y.rounding, x.kind) for x, y in zip(self.a, self.b)]

    @property
    def reshaped_a(self) -> bool:
        """Whether the first chain was padded or widened (its units are then not the network's own)."""
        return len(self.a) != len(self.read_a) or any(x.W.shape != y.W.shape for x, y in zip(self.a, self.read_a))


def pair_chains(net_a: CompiledNetwork, net_b: CompiledNetwork, shapes_a: dict[str, tuple[int, ...]],
                shapes_b: dict[str, tuple[int, ...]]) -> ChainPair:
    """The one pairing of two compiled networks for the difference analysis: each read as a ReLU chain in the
    channel form (convolutions kept), padded to one depth (``padded_chain``) and widened to one width
    (``aligned_chains``), all exact; when their convolutions do not line up, the same with every layer written out
    as a dense matrix. NotAligned says why neither works (then only the merged network can be analysed)."""
    try:
        return _paired(net_a, net_b, shapes_a, shapes_b, dense=False)
    except NotAligned as exc:
        if not any(isinstance(w, MATRIX_FREE) for net in (net_a, net_b) for s in net.steps if isinstance(s, Linear)
                   for w in s.weights):
            raise
        why = str(exc)
    pair = _paired(net_a, net_b, shapes_a, shapes_b, dense=True)
    pair.notes.insert(0, f"convolutions written out as dense matrices ({why})")
    return pair


def _paired(net_a: CompiledNetwork, net_b: CompiledNetwork, shapes_a: dict[str, tuple[int, ...]],
            shapes_b: dict[str, tuple[int, ...]], dense: bool) -> ChainPair:
    """``pair_chains`` with the convolutions kept, or (``dense``) written out."""
    chains, reasons = [], []
    for which, net, shapes in (("first", net_a, shapes_a), ("second", net_b, shapes_b)):
        try:
            chains.append(analysis_chain(net, shapes, which, dense))
        except NotAligned as exc:
            reasons.append(str(exc))
    if reasons:
        raise NotAligned("; ".join(reasons))
    depth = max(len(c) for c in chains)
    padded, notes = [], []
    for which, chain in zip(("first", "second"), chains):
        width = identity_width(chain, depth)
        if width * width > MAX_IDENTITY_ENTRIES and any(isinstance(layer.W, MATRIX_FREE) for layer in chain):
            raise NotAligned(f"{which} network: an identity layer over {width} units is too large to pad with")
        other = chains[1] if chain is chains[0] else chains[0]
        layers, lines = padded_chain(chain, depth, other[0] if len(other) > 1 else None)
        padded.append(layers)
        notes += [f"{which}: {line}" for line in lines]
    wa, wb, aligned = aligned_chains(*padded)
    return ChainPair(wa, wb, *chains, notes + aligned)
