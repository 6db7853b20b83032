"""Bounds of ``f_A − f_B`` propagated as a difference, layer by layer (ReluDiff ICSE'20, NeuroDiff ASE'20).

Two ReLU chains of the same shape are analysed together. ``pair_chains`` makes them so, exactly, in one
form for dense and convolutional layers alike (the channel form: a layer's units are channels × positions,
a dense layer's channels of one position): padded with identity layers (``padded_chain``) and widened
channel by channel with dead ones (``aligned_chains``), convolutions kept as ``ConvMap`` operators. With
``Δ = a_A − a_B`` the difference of the pre-activations is
``Δz = W_A·Δa + (W_A − W_B)·a_B + (b_A − b_B)``, so it never subtracts two loose bounds of the
copies: the small terms stay small. Through the ReLUs ``Δa = relu(z_B + Δz) − relu(z_B)``, whose
bounds come from a case analysis of the two neurons' states and a linear relaxation in
``(Δz, z_B)`` chosen per neuron among three (all sound):

- ``S`` ("separate"): the CROWN relaxations of ``relu(z_A)`` and ``relu(z_B)`` subtracted — exact
  when both neurons are stable (both active ``Δa = Δz``, both inactive ``0``, one of each ``z_A``
  or ``−z_B``);
- ``N`` (NeuroDiff): ``Δa`` lies between 0 and ``Δz`` (ReLU is monotone and 1-Lipschitz), so the
  chords of ``min(Δz, 0)`` and ``max(Δz, 0)`` over ``[Δl, Δu]`` bound it whatever ``z_B`` is;
- ``C``: constants, ``[max(min(Δl,0), relu(l_A) − relu(u_B)), min(max(Δu,0), relu(u_A) − relu(l_B))]``;

the pair with the smallest largest gap over the neuron's feasible ``(z_A, z_B)`` polygon wins.

``interval`` propagates ``Δ`` as intervals; ``symbolic`` back-substitutes each ``Δz`` row to the
input through the relaxations of ``Δa`` and ``a_B`` (CROWN on the pair), intersected with the
interval result and with ``[l_A − u_B, u_A − l_B]``. Per-network bounds (symbolic) fix the ReLU
states and are tightened in turn by ``z_A = z_B + Δz``. ``DifferenceEncoder`` puts all of it on
top of the merged network's LP/MILP encoding: the relaxation rows above are valid inequalities,
so the LP is at least as tight as ``symbolic`` and the MILP stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import highspy
import numpy as np

from ..domain import Box
from ..errors import NnxformError
from ..layered import Dense
from ..operators import activations
from .boxes import BoxBounds, per_box
from .conv import ConvMap, MATRIX_FREE, abs_of
from .encoding import INF, Deadline, Encoder
from .network import Activation, Input, Linear, CompiledNetwork, dense_weights
from .result import Progress, State
from .symbolic import BACKSUB_BYTES
from .rounding import Rounding, magnitude

#: A linear bound ``p·Δz + q·z_B + r`` per neuron.
Line = tuple[np.ndarray, np.ndarray, np.ndarray]


# --- the pair of chains, in the channel form -----------------------------------------------------


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
    """One affine layer of a ReLU chain in the channel form: ``z = W·a + b`` (W dense or a ``ConvMap``), how its float
    network rounds it (None: read from no float network, taken as one Gemm of its weights where needed), and its
    units as ``channels × positions`` (a dense layer's units are channels of one position)."""

    W: Matrix
    b: np.ndarray
    rounding: Rounding | None
    channels: int
    positions: int

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
        return ChainLayer(widen(self.W, rows, cols), widen_rows(self.b, rows), rounding, rows.width, rows.positions)

    def written_out(self) -> "ChainLayer":
        """The layer with its weights (and its rounding's) as dense matrices: its units channels of one position."""
        r = self.rounding
        rounding = r and Rounding([_dense(w) for w in r.weights], r.bias, r.depth)
        return ChainLayer(_dense(self.W), self.b, rounding, self.b.size, 1)


def analysis_chain(net: CompiledNetwork, shapes: dict[str, tuple[int, ...]], which: str, dense: bool = False
                   ) -> list[ChainLayer]:
    """The affine layers of a compiled ReLU chain (``Linear``, ``Relu``, …, ``Linear``), or NotAligned naming what
    is in the way (a pooling, another activation, a skip connection, a grouped convolution). A layer that is an
    affine segment other than one Conv, and with ``dense`` every layer, is written out as a dense matrix
    (``ChainLayer.written_out``), once the whole chain is read."""
    layers: list[ChainLayer] = []
    for i, step in enumerate(net.steps[1:], start=1):
        expect = 0 if not layers else net.linear_steps[len(layers) - 1] + 1
        if isinstance(step, Linear):
            w = step.weights[0]
            if step.sources != [expect]:
                why = f"adds up {len(step.sources)} branches (a skip connection)" if len(step.sources) > 1 else \
                    "is not one affine layer of a ReLU chain"
                raise NotAligned(f"{which} network: '{step.tensor}' {why}")
            if not dense and isinstance(w, ConvMap) and w.node.attrs.get("group", 1) != 1:
                raise NotAligned(f"{which} network: Conv '{w.node.name}' is grouped")
            shape = shapes[step.tensor]
            channels, positions = (shape[1], int(np.prod(shape[2:], dtype=np.int64))) if len(shape) > 2 else \
                (step.size, 1)
            layers.append(ChainLayer(w, step.bias, step.float_rounding, int(channels), positions))
        elif not (isinstance(step, Activation) and step.op == "Relu" and step.source == i - 1):
            raise NotAligned(f"{which} network: '{getattr(step, 'node', '?')}' ({step.op}) is not a ReLU of the "
                             "layer before it")
    if not layers or net.output != net.linear_steps[-1]:
        raise NotAligned(f"{which} network: not a ReLU chain ending in an affine layer")
    return [layer.written_out() if dense or isinstance(layer.W, MATRIX_FREE) and not isinstance(layer.W, ConvMap)
            else layer for layer in layers]


def identity_width(layers: Sequence[ChainLayer | Dense], depth: int) -> int:
    """The width of the identity layers ``padded_chain(layers, depth)`` inserts (0: none), before building them."""
    if depth <= len(layers):
        return 0
    return 2 * min(layers[0].W.shape) if len(layers) == 1 else int(layers[-1].W.shape[1])


def padded_chain(layers: list[ChainLayer], depth: int) -> tuple[list[ChainLayer], list[str]]:
    """``layers`` with identity layers (and their ReLU) before the last one up to ``depth`` layers, and one line per
    insertion: the same function, since the identity reads a ReLU's output, so the ReLU after it changes nothing.
    A chain of one layer is split first (``_split``). Nothing the padding adds is computed by a float network, so
    it adds no rounding."""
    extra = depth - len(layers)
    if extra <= 0:
        return list(layers), []
    notes: list[str] = []
    if len(layers) == 1:
        layers, notes = _split(layers[0])
        extra -= 1
    last = layers[-2]
    n = last.b.size
    identity = ChainLayer(np.eye(n), np.zeros(n), _exact(last.rounding, n, n), last.channels, last.positions)
    unit = "neurons" if last.positions == 1 else "units"
    notes += [f"identity layer Gemm(I) → Relu ({n} {unit}) before the last layer"] * extra
    return layers[:-1] + [identity] * extra + layers[-1:], notes


def _split(layer: ChainLayer) -> tuple[list[ChainLayer], list[str]]:
    """One dense layer as two around a ReLU, the same function by ``relu(v) − relu(−v) = v``: its output split,
    ``[W; −W] → Relu → [I, −I]``, or its input, ``[I; −I] → Relu → [W, −W]``, whichever is narrower. The rows
    computing ``±(W·x + b)`` keep the layer's rounding; the rest is exact."""
    if isinstance(layer.W, MATRIX_FREE):
        raise NotAligned("a convolution without hidden layers cannot be padded in the channel form")
    W, b, r = layer.W, layer.b, layer.rounding
    n_out, n_in = W.shape
    if n_out <= n_in:
        eye = np.eye(n_out)
        rounding = r and Rounding([np.vstack([w, w]) for w in r.weights], np.tile(r.bias, 2), np.tile(r.depth, 2))
        return [ChainLayer(np.vstack([W, -W]), np.concatenate([b, -b]), rounding, 2 * n_out, 1),
                ChainLayer(np.hstack([eye, -eye]), np.zeros(n_out), _exact(r, n_out, 2 * n_out), n_out, 1)], \
            [f"layer 1 split into relu(y) − relu(−y): [W; −W] → Relu → [I, −I] ({2 * n_out} neurons)"]
    eye = np.eye(n_in)
    rounding = r and Rounding([np.hstack([w, w]) for w in r.weights], r.bias, r.depth)
    return [ChainLayer(np.vstack([eye, -eye]), np.zeros(2 * n_in), _exact(r, 2 * n_in, n_in), 2 * n_in, 1),
            ChainLayer(np.hstack([W, -W]), b, rounding, n_out, 1)], \
        [f"input split into relu(x) − relu(−x): [I; −I] → Relu → [W, −W] ({2 * n_in} neurons)"]


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
            steps.append(Activation("Relu", f"relu{k}", len(steps) - 1, layer.b.size))
    return CompiledNetwork(steps, len(steps) - 1, (1, steps[-1].size), dtype)


def _minus(a: Matrix, b: Matrix) -> Matrix:
    """``a − b`` of two weight matrices; two convolutions of one geometry stay a convolution."""
    if isinstance(a, ConvMap) and isinstance(b, ConvMap) and a.node.attrs == b.node.attrs and \
            a.weight.shape == b.weight.shape:
        return ConvMap(a.node, a.weight - b.weight, a.in_shape, a.out_shape)
    return np.asarray(a) - np.asarray(b)


@dataclass
class PairLayer:
    """One affine layer of both chains and of their difference: ``Δz = wa·Δa + d·a_B + db``."""

    wa: Matrix
    ba: np.ndarray
    wb: Matrix
    bb: np.ndarray
    round_a: Rounding | None = None  # how each float network rounds the layer (None: one Gemm of its weights)
    round_b: Rounding | None = None
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
        return [PairLayer(x.W, x.b, y.W, y.b, x.rounding, y.rounding) for x, y in zip(self.a, self.b)]

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
        layers, lines = padded_chain(chain, depth)
        padded.append(layers)
        notes += [f"{which}: {line}" for line in lines]
    wa, wb, aligned = aligned_chains(*padded)
    return ChainPair(wa, wb, *chains, notes + aligned)


# --- the difference through one ReLU -----------------------------------------------------------


@dataclass
class LayerDelta:
    """Bounds at one affine layer: per-network pre-activations (tightened), ``Δz``; relaxations after it."""

    lo_a: np.ndarray
    hi_a: np.ndarray
    lo_b: np.ndarray
    hi_b: np.ndarray
    lo_d: np.ndarray
    hi_d: np.ndarray
    noise_a: np.ndarray  # bound on each float network's rounding of this layer (``rounding``)
    noise_b: np.ndarray
    relu_b: activations.Relaxation | None = None  # a_B >= gl z_B + hl, a_B <= gu z_B + hu
    lower: Line | None = None  # Δa >= p Δz + q z_B + r
    upper: Line | None = None  # Δa <= p Δz + q z_B + r
    const: tuple[np.ndarray, np.ndarray] | None = None  # constant bounds of Δa
    input_coef: np.ndarray | None = None  # output layer, symbolic: [lower; −upper] rows' coefficients on x

    def boxes(self, part: slice) -> "LayerDelta":
        """The bounds and relaxations of the boxes ``part`` of a batch (views)."""
        def cut(x: np.ndarray | tuple | None) -> np.ndarray | tuple | None:
            return None if x is None else tuple(t[part] for t in x) if isinstance(x, tuple) else x[part]
        return LayerDelta(*(cut(getattr(self, f.name)) for f in fields(self)))

    def tighten(self) -> None:
        """Intersect ``Δz`` with ``[l_A − u_B, u_A − l_B]``, each network's bounds with ``z_B + Δz`` (in place)."""
        lo_d, hi_d = np.maximum(self.lo_d, self.lo_a - self.hi_b), np.minimum(self.hi_d, self.hi_a - self.lo_b)
        lo_a, hi_a = np.maximum(self.lo_a, self.lo_b + lo_d), np.minimum(self.hi_a, self.hi_b + hi_d)
        lo_b, hi_b = np.maximum(self.lo_b, lo_a - hi_d), np.minimum(self.hi_b, hi_a - lo_d)
        ok = (lo_d <= hi_d) & (lo_a <= hi_a) & (lo_b <= hi_b)  # float noise on a point: keep the old bounds
        new = {"lo_d": lo_d, "hi_d": hi_d, "lo_a": lo_a, "hi_a": hi_a, "lo_b": lo_b, "hi_b": hi_b}
        for name, value in new.items():
            setattr(self, name, np.where(ok, value, getattr(self, name)))

    @property
    def unsettled(self) -> np.ndarray:
        """Neurons where ``Δa`` is not an exact linear function (one of the two ReLUs is unstable)."""
        stable_a = (self.lo_a >= 0) | (self.hi_a <= 0)
        stable_b = (self.lo_b >= 0) | (self.hi_b <= 0)
        return ~(stable_a & stable_b)

    def relax(self) -> None:
        """Choose the relaxations of ``a_B`` and ``Δa`` for the ReLUs after this layer."""
        self.relu_b = activations.RELU.relax(self.lo_b, self.hi_b)
        la, ua, lb, ub, dl, du = self.lo_a, self.hi_a, self.lo_b, self.hi_b, self.lo_d, self.hi_d
        c_lo = np.maximum(np.minimum(dl, 0.0), np.maximum(la, 0.0) - np.maximum(ub, 0.0))
        c_hi = np.minimum(np.maximum(du, 0.0), np.maximum(ua, 0.0) - np.maximum(lb, 0.0))
        c_lo = np.minimum(c_lo, c_hi)
        self.const = (c_lo, c_hi)
        lowers, uppers = candidate_lines(la, ua, lb, ub, dl, du, c_lo, c_hi)
        m = self.unsettled  # elsewhere S is exact
        at = [x[m] for x in (la, ua, lb, ub, dl, du)]
        gaps = np.stack([[max_gap(tuple(t[m] for t in lo), tuple(t[m] for t in up), *at) for up in uppers]
                         for lo in lowers])
        n_up = len(uppers)
        best = np.zeros(la.shape, int)
        best[m] = np.argmin(gaps.reshape(len(lowers) * n_up, -1), axis=0)  # first minimum: S wins ties
        i_lo, i_up = best // n_up, best % n_up
        self.lower = tuple(np.choose(i_lo, [lo[t] for lo in lowers]) for t in range(3))
        self.upper = tuple(np.choose(i_up, [up[t] for up in uppers]) for t in range(3))

    def interval(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interval bounds of ``Δa`` and ``a_B`` after the ReLU: exact per state, else the constants."""
        la, ua, lb, ub = self.lo_a, self.hi_a, self.lo_b, self.hi_b
        act_a, act_b, off_a, off_b = la >= 0, lb >= 0, ua <= 0, ub <= 0
        c_lo, c_hi = self.const
        lo = np.select([act_a & act_b, off_a & off_b, act_a & off_b, off_a & act_b], [self.lo_d, 0.0, la, -ub], c_lo)
        hi = np.select([act_a & act_b, off_a & off_b, act_a & off_b, off_a & act_b], [self.hi_d, 0.0, ua, -lb], c_hi)
        lo, hi = np.maximum(lo, c_lo), np.minimum(hi, c_hi)
        return lo, np.maximum(lo, hi), np.maximum(lb, 0.0), np.maximum(ub, 0.0)


def candidate_lines(la, ua, lb, ub, dl, du, c_lo, c_hi) -> tuple[list[Line], list[Line]]:
    """Sound lower and upper lines of ``relu(z_B + Δz) − relu(z_B)`` in ``(Δz, z_B)``: S, N, C (see module doc)."""
    zero, one = np.zeros_like(la), np.ones_like(la)
    al_a, _, s_a, t_a = activations.RELU.relax(la, ua)
    al_b, _, s_b, t_b = activations.RELU.relax(lb, ub)
    s_lower = (al_a, al_a - s_b, -t_b)  # α_A z_A − (s_B z_B + t_B), z_A = Δz + z_B
    s_upper = (s_a, s_a - al_b, t_a)  # s_A z_A + t_A − α_B z_B
    cross = (dl < 0) & (du > 0)
    span = np.where(cross, du - dl, 1.0)
    lam_lo, lam_up = np.where(cross, -dl / span, 0.0), np.where(cross, du / span, 0.0)
    n_lower = (np.where(cross, lam_lo, np.where(du <= 0, one, zero)), zero, np.where(cross, -lam_lo * du, 0.0))
    n_upper = (np.where(cross, lam_up, np.where(dl >= 0, one, zero)), zero, np.where(cross, -lam_up * dl, 0.0))
    return [s_lower, n_lower, (zero, zero, c_lo)], [s_upper, n_upper, (zero, zero, c_hi)]


def max_gap(lower: Line, upper: Line, la, ua, lb, ub, dl, du) -> np.ndarray:
    """Largest ``upper − lower`` over each neuron's feasible ``(z_A, z_B)`` polygon (at its candidate vertices)."""
    za = np.stack([la, la, ua, ua, la, la, ua, ua, lb + dl, lb + du, ub + dl, ub + du], axis=-1)
    zb = np.stack([lb, ub, lb, ub, la - dl, la - du, ua - dl, ua - du, lb, lb, ub, ub], axis=-1)
    tol = 1e-9 * (1.0 + np.abs(np.stack([la, ua, lb, ub], axis=-1)).max(axis=-1, keepdims=True))
    d = za - zb
    feasible = ((za >= la[..., None] - tol) & (za <= ua[..., None] + tol) & (zb >= lb[..., None] - tol)
                & (zb <= ub[..., None] + tol) & (d >= dl[..., None] - tol) & (d <= du[..., None] + tol))
    feasible |= ~feasible.any(axis=-1, keepdims=True)
    gap = ((upper[0] - lower[0])[..., None] * d + (upper[1] - lower[1])[..., None] * zb
           + (upper[2] - lower[2])[..., None])
    return np.where(feasible, gap, -np.inf).max(axis=-1)


# --- propagation -------------------------------------------------------------------------------


@dataclass
class ChainBounds:
    """One network's bounds as the difference analysis reads them: ``lo[0]``/``hi[0]`` the input box as the float
    network reads it, ``lo[k + 1]``/``hi[k + 1]`` the pre-activations of hidden layer ``k``; each ``(size,)`` for one
    box or ``(B, size)`` for a batch of boxes. ``u``: the unit roundoff (0 for the real-valued network)."""

    lo: list[np.ndarray]
    hi: list[np.ndarray]
    u: float

    @classmethod
    def of(cls, bounds: "State | BoxBounds") -> "ChainBounds":
        """From one box's ``State`` or a batch's ``boxes.BoxBounds`` of a chain's ``layers_network(..., probe=True)``."""
        if isinstance(bounds, State):
            net, u = bounds.net, 0.0 if bounds.real else bounds.net.unit_roundoff
        else:
            net, u = bounds.net.net, bounds.net.u
        steps = [0] + net.linear_steps[:-1]
        return cls([bounds.lo[i] for i in steps], [bounds.hi[i] for i in steps], u)


def propagate(layers: list[PairLayer], a: ChainBounds, b: ChainBounds, symbolic: bool) -> list[LayerDelta]:
    """Bounds of ``Δz`` at every affine layer of an aligned pair (``symbolic``: back-substitution too), for one box
    or, with a leading batch axis on every bound (dense layers only), for many at once.

    ``a``/``b``: each network's bounds (``ChainBounds``). Each layer's rounding is noise ``ε_A − ε_B`` on ``Δz`` and
    ``ε_B`` on ``z_B`` (``rounding``), bounded from the tightened bounds of the layer's inputs.
    """
    lo, hi = np.minimum(a.lo[0], b.lo[0]), np.maximum(a.hi[0], b.hi[0])  # the box as either network reads it
    mid, rad = 0.5 * (lo + hi), 0.5 * (hi - lo)
    cast = (lo, hi)
    out: list[LayerDelta] = []
    for k, L in enumerate(layers):
        if k == 0:  # one affine map of the box: the interval is exact
            c, r = _mv(L.d, mid) + L.db, _mv(L.abs_d, rad)
        else:
            dal, dah, bl, bh = out[-1].interval()
            c = _mv(L.wa, 0.5 * (dal + dah)) + _mv(L.d, 0.5 * (bl + bh)) + L.db
            r = _mv(L.abs_wa, 0.5 * (dah - dal)) + _mv(L.abs_d, 0.5 * (bh - bl))
        last = k == len(layers) - 1
        ins_a, ins_b = _inputs(cast, out, "a"), _inputs(cast, out, "b")
        ma = L.round_a.noise([magnitude(*ins_a)], a.u)
        mb = L.round_b.noise([magnitude(*ins_b)], b.u)
        if last:  # each network's output by interval from its (tightened) last hidden bounds
            la, ua = _affine_interval(L.wa, L.ba, *ins_a, ma)
            lb, ub = _affine_interval(L.wb, L.bb, *ins_b, mb)
        else:
            la, ua, lb, ub = a.lo[k + 1], a.hi[k + 1], b.lo[k + 1], b.hi[k + 1]
        cur = LayerDelta(la.copy(), ua.copy(), lb.copy(), ub.copy(), c - r - ma - mb, c + r + ma + mb, ma, mb)
        cur.tighten()
        if symbolic and k > 0 and lo.ndim == 2 and not last:
            _tighten_boxes(layers, out, k, cur, mid, rad)
        elif symbolic and k > 0:
            rows = np.arange(L.size) if last else np.flatnonzero(cur.unsettled)
            chunk, coefs = _backsub_rows(layers[: k + 1], lo.size // lo.shape[-1]), []
            for start in range(0, rows.size, chunk):
                part = rows[start: start + chunk]
                low, coef = back_substitute(layers, out, k, part, mid, rad)
                low = low - np.concatenate([(ma + mb)[..., part]] * 2, axis=-1)
                coefs.append(coef.reshape(coef.shape[:-2] + (2, part.size, -1)))
                cur.lo_d[..., part] = np.maximum(cur.lo_d[..., part], low[..., : part.size])
                cur.hi_d[..., part] = np.minimum(cur.hi_d[..., part], -low[..., part.size:])
            if coefs:
                if last:
                    coef = np.concatenate(coefs, axis=-2)
                    cur.input_coef = coef.reshape(coef.shape[:-3] + (2 * rows.size, -1))
                cur.tighten()
        if not last:
            cur.relax()
        out.append(cur)
    return out


def _tighten_boxes(layers: list[PairLayer], out: list[LayerDelta], k: int, cur: LayerDelta, mid: np.ndarray,
                   rad: np.ndarray) -> None:
    """Back-substitute, per box of a batch, the hidden rows of layer ``k`` it leaves unsettled (each box's own
    rows, padded to the largest count), in parts that fit ``BACKSUB_BYTES``; then ``tighten``."""
    todo = cur.unsettled
    R = int(todo.sum(axis=1).max(initial=0))
    if R == 0:
        return
    rows = np.argsort(~todo, axis=1, kind="stable")[:, :R]  # per box, its unsettled rows first
    noise = np.take_along_axis(cur.noise_a + cur.noise_b, rows, axis=1)
    per_part = max(1, BACKSUB_BYTES // (128 * R * max(max(L.wa.shape) for L in layers[: k + 1])))
    for start in range(0, len(rows), per_part):
        part = slice(start, start + per_part)
        low, _ = back_substitute(layers, [d.boxes(part) for d in out], k, rows[part], mid[part], rad[part])
        low = low - np.concatenate([noise[part]] * 2, axis=1)
        keep = np.take_along_axis(todo[part], rows[part], axis=1)
        for side, new in ((cur.lo_d, low[:, :R]), (cur.hi_d, -low[:, R:])):
            old = np.take_along_axis(side[part], rows[part], axis=1)
            better = np.maximum(old, new) if side is cur.lo_d else np.minimum(old, new)
            np.put_along_axis(side[part], rows[part], np.where(keep, better, old), axis=1)
    cur.tighten()


def _backsub_rows(layers: list[PairLayer], boxes: int = 1) -> int:
    """Rows back-substituted together: their coefficient arrays (about eight of ``boxes × 2·rows × width``) stay
    within ``symbolic.BACKSUB_BYTES``, so wide convolutional layers (and large batches) are bounded in several passes."""
    widest = max(max(L.wa.shape) for L in layers)
    return max(1, BACKSUB_BYTES // (128 * widest * boxes))


def _inputs(box: tuple[np.ndarray, np.ndarray], out: list[LayerDelta], side: str) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of one network's input to the next layer: the box, or the ReLU of the last layer's bounds."""
    if not out:
        return box
    return np.maximum(getattr(out[-1], f"lo_{side}"), 0.0), np.maximum(getattr(out[-1], f"hi_{side}"), 0.0)


def _affine_interval(W: Matrix, bias: np.ndarray, lo: np.ndarray, hi: np.ndarray, noise: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    c, r = _mv(W, 0.5 * (lo + hi)) + bias, _mv(abs_of(W), 0.5 * (hi - lo)) + noise
    return c - r, c + r


def _mv(W: Matrix, v: np.ndarray) -> np.ndarray:
    """``W @ v`` for one vector ``(n,)`` or each row of a batch ``(B, n)``."""
    return W @ v if v.ndim == 1 else (W @ v.T).T


def _times(M: np.ndarray, W: Matrix) -> np.ndarray:
    """``M @ W`` for rows ``M`` ``([B,] R, n)`` (one product over all boxes' rows; ``W`` may be an operator)."""
    return (M.reshape(-1, M.shape[-1]) @ W).reshape(M.shape[:-1] + (-1,))


def back_substitute(layers: list[PairLayer], deltas: list[LayerDelta], k: int, rows: np.ndarray,
                    mid: np.ndarray, rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds of ``[Δz_k[rows]; −Δz_k[rows]]`` over the box (without layer ``k``'s own rounding), walking
    back through the relaxations and the earlier layers' rounding noise, and the rows' final coefficients on the
    input; per box when the bounds carry a batch axis (``rows`` then shared ``(R,)`` or each box's ``(B, R)``)."""
    L = layers[k]
    ed, eb = np.concatenate([L.wa[rows], -L.wa[rows]], axis=-2), np.concatenate([L.d[rows], -L.d[rows]], axis=-2)
    const = np.concatenate([L.db[rows], -L.db[rows]], axis=-1)
    for j in range(k - 1, -1, -1):
        D, P = deltas[j], layers[j]
        gl, hl, gu, hu = D.relu_b
        pos, neg = np.maximum(ed, 0.0), np.minimum(ed, 0.0)
        cd = pos * D.lower[0][..., None, :] + neg * D.upper[0][..., None, :]
        cb = pos * D.lower[1][..., None, :] + neg * D.upper[1][..., None, :]
        const = const + per_box(pos, D.lower[2]) + per_box(neg, D.upper[2])
        pos, neg = np.maximum(eb, 0.0), np.minimum(eb, 0.0)
        cb += pos * gl[..., None, :] + neg * gu[..., None, :]
        const = const + per_box(pos, hl) + per_box(neg, hu) + cd @ P.db + cb @ P.bb
        # rounding: Δz_j carries ε_A − ε_B and z_B,j carries ε_B, so cd·ε_A + (cb − cd)·ε_B
        if D.noise_a.any() or D.noise_b.any():
            const = const - per_box(np.abs(cd), D.noise_a) - per_box(np.abs(cb - cd), D.noise_b)
        ed, eb = _times(cd, P.wa), _times(cd, P.d) + _times(cb, P.wb)
    return const + per_box(eb, mid) - per_box(np.abs(eb), rad), eb  # Δa_0 = 0, a_B,0 = x


# --- LP and MILP in difference variables --------------------------------------------------------


class DifferenceEncoder(Encoder):
    """The pair as one HiGHS model in difference variables: per layer ``z_B, Δz``, per ReLU ``a_B, Δa``.

    ``z_A = z_B + Δz`` and ``a_A = a_B + Δa`` never get columns: this is the merged network's
    encoding after a change of variables (the same LP or MILP), but the small differences are
    solved for directly instead of as the cancellation of two large values. Each network's ReLUs
    get the triangle (``lp``) or big-M (``milp``) rows from its tightened bounds, and NeuroDiff's
    lines of ``Δa`` are added as cuts (valid for the exact ReLUs, so the MILP stays exact). Every
    row the ``symbolic`` analysis relaxes with is here, so the LP is never looser than it. The
    ``Δ`` columns are scaled per layer to values of order one: HiGHS's MIP treats a column whose
    range is below its feasibility tolerance as fixed, and then wrongly finds the model infeasible.
    """

    def __init__(self, layers: list[PairLayer], deltas: list[LayerDelta], state_b: State,
                 integer: bool, time_limit: float | None = None, deadline: Deadline | None = None,
                 solver: str = "highs"):
        super().__init__(state_b, integer, time_limit, deadline, solver)
        if not integer:  # simplex (primal or dual) can stall for minutes on these tiny differences
            self.h.setOptionValue("presolve", "on")
            self.h.setOptionValue("solver", "ipm")
            self.h.setOptionValue("run_crossover", "off")  # the dual bound needs duals only, not a vertex
        self.layers, self.deltas = layers, deltas
        self.x = self._cols(state_b.lo[0].copy(), state_b.hi[0].copy())  # the box as the float network reads it
        self.zb: dict[int, int] = {}
        self.dz: dict[int, int] = {}
        self.ab: dict[int, int] = {}
        self.da: dict[int, int] = {}
        self.dz_scale: dict[int, float] = {}  # column value = Δz / scale
        self.da_scale: dict[int, float] = {}

    def add_layer(self, k: int) -> None:
        """Columns and rows of affine layer ``k``: ``Δz = W_A Δa + (W_A − W_B) a_B + Δb`` and, if hidden,
        ``z_B = W_B a_B + b_B``."""
        L, D = self.layers[k], self.deltas[k]
        src_b = self.x if k == 0 else self.ab[k - 1]
        self.dz_scale[k] = sd = _scale(D.lo_d, D.hi_d)
        self.dz[k] = self._cols(D.lo_d / sd, D.hi_d / sd)
        terms = [(L.d, 1.0, src_b)] + ([] if k == 0 else [(L.wa, self.da_scale[k - 1], self.da[k - 1])])
        self.affine_rows(self.dz[k], sd, terms, L.db, D.noise_a + D.noise_b)
        if k < len(self.layers) - 1:
            self.zb[k] = self._cols(D.lo_b.copy(), D.hi_b.copy())
            self.affine_rows(self.zb[k], 1.0, [(L.wb, 1.0, src_b)], L.bb, D.noise_b)

    def update_layer(self, k: int) -> None:
        """Copy the (tightened) bounds of hidden layer ``k`` onto its columns."""
        D, sd = self.deltas[k], self.dz_scale[k]
        for first, lo, hi in ((self.dz[k], D.lo_d / sd, D.hi_d / sd), (self.zb[k], D.lo_b, D.hi_b)):
            idx = first + np.arange(lo.size)
            self.col_lo[idx], self.col_hi[idx] = lo, hi
            self.h.changeColsBounds(idx.size, idx.astype(np.int32), lo, hi)

    def add_relus(self, k: int) -> None:
        """Columns ``a_B``, ``Δa`` after hidden layer ``k``; both networks' ReLUs; the cuts where one is unstable."""
        D = self.deltas[k]
        c_lo, c_hi = D.const
        self.da_scale[k] = sa = _scale(c_lo, c_hi)
        sd = self.dz_scale[k]
        self.ab[k] = ab = self._cols(np.maximum(D.lo_b, 0.0), np.maximum(D.hi_b, 0.0))
        self.da[k] = da = self._cols(c_lo / sa, c_hi / sa)
        zb, dz = self.zb[k], self.dz[k]
        self.kinked_rows(D.lo_b, D.hi_b, [(ab, 1.0)], [(zb, 1.0)])
        self.kinked_rows(D.lo_a, D.hi_a, [(ab, 1.0), (da, sa)], [(zb, 1.0), (dz, sd)])
        rows = np.flatnonzero(D.unsettled)
        if rows.size:
            lowers, uppers = candidate_lines(D.lo_a, D.hi_a, D.lo_b, D.hi_b, D.lo_d, D.hi_d, c_lo, c_hi)
            (p_lo, _, r_lo), (p_up, _, r_up) = lowers[1], uppers[1]  # N: Δa − p Δz >= r (lower), <= r (upper)
            free = np.full(rows.size, INF)
            self.combination_rows(rows, [(da, sa), (dz, -sd * p_lo[rows])], r_lo[rows], free)
            self.combination_rows(rows, [(da, sa), (dz, -sd * p_up[rows])], -free, r_up[rows])

    def delta_min(self, k: int, j: int, sign: float) -> tuple[float, bool]:
        """Sound lower bound of ``sign · Δz_k[j]`` (LP or MILP dual bound); whether the MILP closed its gap."""
        col, sd = self.dz[k] + j, self.dz_scale[k]
        if not self.integer:
            return sd * self.lp_min(col, sign), False
        if not self.integers:  # HiGHS solves it as an LP and leaves the MIP dual bound at 0: take the LP's
            bound = self.lp_min(col, sign)
            return sd * bound, self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        bound, closed = self.mip_min(col, sign)
        return sd * bound, closed

    @property
    def inputs(self) -> slice:
        """The input's columns: the box as the float network reads it."""
        return slice(self.x, self.x + self.layers[0].wa.shape[1])


def _scale(lo: np.ndarray, hi: np.ndarray) -> float:
    """A column scale that makes ``[lo, hi]`` of order one (1 when both are zero)."""
    s = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
    return s if s > 0 else 1.0


def solve(layers: list[PairLayer], deltas: list[LayerDelta], box: Box, state_b: State, integer: bool,
          time_limit: float, progress: Progress | None = None, deadline: Deadline | None = None,
          solver: str = "highs") -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """LP (tightening every unsettled hidden ``Δz`` first) or MILP bounds of the output ``Δz`` (every layer's
    rounding noise is in the rows).

    Returns lower, upper, per side and output whether the solver closed its gap (MILP), and the
    input points of the MILP's solutions (witness candidates). Past ``deadline`` no solve starts: the
    bounds not tightened yet keep the symbolic ones.
    """
    enc = DifferenceEncoder(layers, deltas, state_b, integer, time_limit, deadline, solver)

    def late() -> bool:
        return deadline is not None and deadline.passed()

    last = len(layers) - 1
    work = 0 if integer else sum(int(D.unsettled.sum()) for D in deltas[1:last])
    total = 2 * (work + layers[-1].size)
    done = 0
    for k in range(last):
        enc.add_layer(k)
        D = deltas[k]
        if not integer and k > 0:
            for j in np.flatnonzero(D.unsettled):
                if late():
                    break
                D.lo_d[j] = max(D.lo_d[j], enc.delta_min(k, int(j), 1.0)[0])
                D.hi_d[j] = min(D.hi_d[j], -enc.delta_min(k, int(j), -1.0)[0])
                done += 2
                if progress:
                    progress(done, total)
            D.tighten()
            D.relax()
            enc.update_layer(k)
        enc.add_relus(k)
    enc.add_layer(last)
    out = deltas[last]
    lo, hi = out.lo_d.copy(), out.hi_d.copy()
    closed = np.zeros((2, lo.size), dtype=bool)
    points: list[np.ndarray] = []
    for j in range(lo.size):
        for side, sign in ((0, 1.0), (1, -1.0)):
            if late():
                continue
            bound, closed[side, j] = enc.delta_min(last, j, sign)
            x = enc.input_solution() if integer else None
            if x is not None:
                points.append(np.clip(np.asarray(x), box.lower, box.upper))
            if side == 0:
                lo[j] = max(lo[j], bound)
            else:
                hi[j] = min(hi[j], -bound)
            done += 1
            if progress:
                progress(done, total)
    return lo, hi, closed, points
