"""A convolution as the matrix of its linear part, applied without being formed.

A large Conv step's dense matrix has (input size × output size) entries — 23,328² for a small CIFAR
network — while the convolution itself holds a few thousand weights. ``ConvMap`` stands in for that
matrix in the analyzers: ``W @ x`` is the convolution of ``x`` (columns as samples), ``L @ W`` its
transpose applied to the rows of ``L`` (the operator table's input VJP, as back-substitution needs),
``W[rows]`` the dense rows asked for, ``absolute(W)`` the convolution with ``|W|``. Memory then grows
with parameters × positions, never with inputs × outputs. ``np.asarray(W)`` still forms the dense
matrix, for the analyses that need one (LP/MILP rows, the difference analysis of two chains).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..interpreter import arguments
from ..gradient import backpropagate
from ..ir import Node
from ..operators import OPERATORS
from ..operators.forward import Windows
from .rounding import absolute_node


class _AppliedMatrix:
    """What every matrix applied without being formed shares, from what each defines: ``W @ x`` from
    ``_forward(samples)``, ``L @ W`` from ``_transposed(rows)``, ``W.T``, and the dense form from its rows
    (``__getitem__``) and ``shape``."""

    __array_ufunc__ = None  # ``ndarray @ W`` defers to ``__rmatmul__`` instead of forming an object array

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return self._forward(v[None, :])[0] if v.ndim == 1 else self._forward(v.T).T

    def __rmatmul__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        return self._transposed(rows[None, :])[0] if rows.ndim == 1 else self._transposed(rows)

    @property
    def T(self) -> "_Transposed":
        return _Transposed(self)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self[np.arange(self.shape[0])], dtype=dtype)


@dataclass(frozen=True, eq=False)
class ConvMap(_AppliedMatrix):
    """The linear part of Conv ``node`` (weights ``weight``, no bias) from ``in_shape`` to ``out_shape`` (ONNX
    shapes), used like a dense ``(out size, in size)`` matrix."""

    node: Node
    weight: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return int(np.prod(self.out_shape)), int(np.prod(self.in_shape))

    def _forward(self, xs: np.ndarray) -> np.ndarray:
        """The convolution (no bias) of samples ``xs`` ``(n, in size)``, as ``(n, out size)``."""
        x = xs.reshape((len(xs),) + tuple(self.in_shape))
        return OPERATORS["Conv"].evaluate(self.node, [x, self.weight], [True, False]).reshape(len(xs), -1)

    def _transposed(self, rows: np.ndarray) -> np.ndarray:
        """``rows @ W`` for ``rows`` ``(n, out size)``: the gradient of the convolution, as ``(n, in size)``."""
        n = len(rows)
        g = rows.reshape((n,) + tuple(self.out_shape))
        like = np.broadcast_to(np.zeros(1), (n,) + tuple(self.in_shape))  # the input's shape, no memory
        return OPERATORS["Conv"].vjp(self.node, [like, self.weight], [True, False], None, g)[0].reshape(n, -1)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The dense rows ``rows`` (an index array) of the matrix, each its channel's kernel placed on its window."""
        rows = np.asarray(rows).reshape(-1)
        channel, position = np.divmod(rows, int(np.prod(self.out_shape[2:])))
        per_in, group = self.weight.shape[1], self.node.attrs.get("group", 1)
        first_in = (channel // (self.out_shape[1] // group)) * per_in  # the group's first input channel
        cells = int(np.prod(self.in_shape[2:]))
        out = np.zeros((rows.size, self.shape[1]))
        index = np.arange(rows.size)
        for k, where in self._windows():
            cell = where[position]  # the input cell each row reads at this kernel offset (-1: padding)
            real = cell >= 0
            for c in range(per_in):
                out[index[real], (first_in[real] + c) * cells + cell[real]] = self.weight[(channel[real], c) + k]
        return out

    def _windows(self):
        """Per kernel offset, the input cell every output position reads (``-1`` where it reads padding)."""
        spatial = tuple(self.in_shape[2:])
        index = np.arange(int(np.prod(spatial))).reshape((1, 1) + spatial)
        win = Windows.of(self.node.attrs, spatial, tuple(self.weight.shape[2:]))
        padded = np.pad(index, win.pad_widths(), constant_values=-1)
        for k, sl in win.slices():
            yield k, padded[sl].reshape(-1)

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero entries ``(rows, cols, values)`` of the matrix, from the windows (what an LP row needs)."""
        c_in, cells = self.in_shape[1], int(np.prod(self.in_shape[2:]))
        out_channels, positions = self.out_shape[1], int(np.prod(self.out_shape[2:]))
        group = self.node.attrs.get("group", 1)
        per_in, per_out = c_in // group, out_channels // group
        rows, cols, vals = [], [], []
        o = np.arange(out_channels)
        for k, where in self._windows():  # the input cell of every output position for this kernel offset
            real = np.flatnonzero(where >= 0)
            for c in range(per_in):  # input channel within the group
                w = self.weight[(slice(None), c) + k]  # per output channel
                keep = np.flatnonzero(w != 0)
                if keep.size == 0:
                    continue
                channel_in = (o[keep] // per_out) * per_in + c
                rows.append((o[keep][:, None] * positions + real[None, :]).reshape(-1))
                cols.append((channel_in[:, None] * cells + where[real][None, :]).reshape(-1))
                vals.append(np.repeat(w[keep], real.size))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

    def abs(self) -> "ConvMap":
        """The convolution with ``|W|``: the matrix of absolute values (each entry is one weight or 0)."""
        return ConvMap(self.node, np.abs(self.weight), self.in_shape, self.out_shape)


@dataclass(frozen=True, eq=False)
class _Transposed:
    """``W.T`` of an applied matrix: ``G @ W.T`` is ``(W @ Gᵀ)ᵀ``."""

    of: _AppliedMatrix
    __array_ufunc__ = None

    def __rmatmul__(self, rows: np.ndarray) -> np.ndarray:
        return (self.of @ np.asarray(rows, dtype=np.float64).T).T if np.ndim(rows) == 2 else self.of @ rows


@dataclass(frozen=True, eq=False)
class IdentityMap:
    """The identity on ``size`` values as a matrix: the Linear step between an activation and a MaxPool reading it
    (or a ReLU output), which as a dense matrix would hold ``size²`` entries."""

    size: int
    __array_ufunc__ = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.size, self.size

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=np.float64)

    def __rmatmul__(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.float64)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows).reshape(-1)
        out = np.zeros((rows.size, self.size))
        out[np.arange(rows.size), rows] = 1.0
        return out

    @property
    def T(self) -> "IdentityMap":
        return self

    def abs(self) -> "IdentityMap":
        return self

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = np.arange(self.size)
        return k, k, np.ones(self.size)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.eye(self.size, dtype=dtype or np.float64)


@dataclass(frozen=True, eq=False)
class SubgraphMap(_AppliedMatrix):
    """The linear part of the affine ``nodes`` from tensor ``anchor`` to tensor ``target`` (any other data they read
    held at its value in ``fixed``), used like a dense ``(target size, anchor size)`` matrix: ``W @ x`` runs the
    nodes, ``L @ W`` their VJPs in reverse (a Conv → BatchNormalization → AveragePool segment, a residual branch).
    ``absolute``: the absolute chain of the nodes (``rounding``), ``>= |W|`` entrywise."""

    nodes: tuple[Node, ...]
    constants: dict[str, np.ndarray]
    anchor: str
    target: str
    shapes: dict[str, tuple[int, ...]]
    fixed: dict[str, np.ndarray]  # every tensor's value (batch of one) with all anchors at zero
    abs_fixed: dict[str, np.ndarray]  # the same for the absolute chain
    absolute: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return int(np.prod(self.shapes[self.target])), int(np.prod(self.shapes[self.anchor]))

    def _args(self, node: Node, values: dict[str, np.ndarray]) -> tuple[Node, list, list[bool]]:
        args, batched = arguments(node, values, self.constants, self._fixed)
        if self.absolute:
            node, args = absolute_node(node, args, batched)
        return node, args, batched

    def _forward(self, xs: np.ndarray) -> np.ndarray:
        values = {self.anchor: xs.reshape((len(xs),) + tuple(self.shapes[self.anchor]))}
        for n in self.nodes:
            node, args, batched = self._args(n, values)
            values[n.outputs[0]] = OPERATORS[node.op].evaluate(node, args, batched)
        return (values[self.target] - self._fixed[self.target]).reshape(len(xs), -1)

    def _transposed(self, rows: np.ndarray) -> np.ndarray:
        n = len(rows)
        like = {t: np.broadcast_to(np.zeros(1), (n,) + tuple(self.shapes[t]))  # shapes only: the map is affine
                for t in [self.anchor] + [m.outputs[0] for m in self.nodes]}
        grads = backpropagate(list(self.nodes), like, {self.target: rows.reshape((n,) + tuple(self.shapes[self.target]))},
                              self._args)
        return grads.get(self.anchor, np.zeros((n,) + tuple(self.shapes[self.anchor]))).reshape(n, -1)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The dense rows ``rows``: the transposed map of unit rows."""
        rows = np.asarray(rows).reshape(-1)
        unit = np.zeros((rows.size, self.shape[0]))
        unit[np.arange(rows.size), rows] = 1.0
        return self._transposed(unit)

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero entries, from the dense rows a block at a time (for LP rows of small maps)."""
        parts = []
        block = max(1, 2**25 // max(1, self.shape[1]))
        for start in range(0, self.shape[0], block):
            rows = np.arange(start, min(self.shape[0], start + block))
            r, c = np.nonzero(dense := self[rows])
            parts.append((rows[r], c, dense[r, c]))
        return tuple(np.concatenate(p) for p in zip(*parts)) if parts else (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)

    def abs(self) -> "SubgraphMap":
        """The absolute chain (a sound ``|W|`` for rounding and interval radii; exact without cancellation)."""
        return dataclasses.replace(self, absolute=True)

    @property
    def _fixed(self) -> dict[str, np.ndarray]:
        return self.abs_fixed if self.absolute else self.fixed


#: A weight matrix the analyzers apply without forming it.
Operator = (ConvMap, IdentityMap, SubgraphMap)


def abs_of(w: np.ndarray | ConvMap) -> np.ndarray | ConvMap:
    """``|W|`` of a dense matrix or an operator."""
    return w.abs() if isinstance(w, Operator) else np.abs(w)


def zero_rows(w: np.ndarray | ConvMap) -> np.ndarray:
    """Per row, True when every weight in it is 0 (for an operator: its absolute form's row sums are 0)."""
    if isinstance(w, Operator):
        return (w.abs() @ np.ones(w.shape[1])) == 0
    return ~np.any(w != 0, axis=1)
