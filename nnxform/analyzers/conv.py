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
from functools import cached_property

import numpy as np

from ..interpreter import forward
from ..gradient import backpropagate
from ..ir import Node
from ..operators import OPERATORS
from ..operators.forward import Windows
from .rounding import node_inputs


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
        """The convolution (no bias) of samples ``xs`` ``(n, in size)``, as ``(n, out size)``: the windows of every
        sample side by side, then one BLAS product with the kernel (the operator table's kernel for grouped ones)."""
        if self.node.attrs.get("group", 1) != 1:
            x = xs.reshape((len(xs),) + tuple(self.in_shape))
            return OPERATORS["Conv"].evaluate(self.node, [x, self.weight], [True, False]).reshape(len(xs), -1)
        x = xs.reshape((len(xs),) + tuple(self.in_shape[1:]))
        n, win = len(xs), self._window
        xp = np.pad(x, win.pad_widths())
        cols = np.empty((self.in_shape[1], len(self._offsets), n) + win.out)
        for j, (_, sl) in enumerate(self._offsets):
            cols[:, j] = np.moveaxis(xp[sl], 0, 1)
        y = self._kernel @ cols.reshape(self._kernel.shape[1], -1)  # [out channels, n · positions]
        return np.ascontiguousarray(np.moveaxis(y.reshape(self.out_shape[1], n, -1), 0, 1)).reshape(n, -1)

    def _transposed(self, rows: np.ndarray) -> np.ndarray:
        """``rows @ W`` for ``rows`` ``(n, out size)``: the gradient of the convolution, as ``(n, in size)``: per kernel
        offset, one BLAS product with its slice of the kernel, added at once onto the cells it reads (each share stays
        in cache: 25 % faster than one product for all offsets, whose result is the kernel's size times the rows'); the
        operator table's input VJP for grouped ones."""
        n = len(rows)
        if self.node.attrs.get("group", 1) != 1:
            g = rows.reshape((n,) + tuple(self.out_shape))
            like = np.broadcast_to(np.zeros(1), (n,) + tuple(self.in_shape))  # the input's shape, no memory
            return OPERATORS["Conv"].vjp(self.node, [like, self.weight], [True, False], None, g)[0].reshape(n, -1)
        win, c_in = self._window, self.in_shape[1]
        per_channel = rows.reshape(n, self.out_shape[1], -1)
        padded = tuple(s + a + b for s, (a, b) in zip(self.in_shape[2:], win.pad_widths()[2:]))
        gxp = np.zeros((n, c_in) + padded)
        for j, (_, sl) in enumerate(self._offsets):
            gxp[sl] += (self._kernel_by_offset[j] @ per_channel).reshape((n, c_in) + win.out)
        inner = tuple(slice(a, a + s) for s, (a, _) in zip(self.in_shape[2:], win.pad_widths()[2:]))
        return gxp[(slice(None), slice(None)) + inner].reshape(n, -1)

    @cached_property
    def _window(self) -> Windows:
        """Where the kernel reads the input: strides, dilations, pads, output size."""
        return Windows.of(self.node.attrs, tuple(self.in_shape[2:]), tuple(self.weight.shape[2:]))

    @cached_property
    def _offsets(self) -> list:
        """Per kernel offset, its index and the slices of the padded input it reads."""
        return list(self._window.slices())

    @cached_property
    def _kernel(self) -> np.ndarray:
        """The weights as ``[out channels, in channels · offsets]`` (offsets in ``_offsets``' order)."""
        w = self.weight
        return np.stack([w[(slice(None), slice(None)) + k] for k, _ in self._offsets], axis=2).reshape(w.shape[0], -1)

    @cached_property
    def _kernel_by_offset(self) -> np.ndarray:
        """The transposed kernel per offset, ``[offsets, in channels, out channels]``."""
        w = self._kernel.reshape(self.weight.shape[0], self.in_shape[1], len(self._offsets))
        return np.ascontiguousarray(w.transpose(2, 1, 0))

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """The dense rows ``rows`` (an index array) of the matrix, each its channel's kernel placed on its window."""
        rows = np.asarray(rows).reshape(-1)
        channel, position = np.divmod(rows, int(np.prod(self.out_shape[2:])))
        per_in, group = self.weight.shape[1], self.node.attrs.get("group", 1)
        first_in = (channel // (self.out_shape[1] // group)) * per_in  # the group's first input channel
        cells = int(np.prod(self.in_shape[2:]))
        out = np.zeros((rows.size, self.shape[1]))
        index = np.arange(rows.size)
        c = np.arange(per_in)
        for k, where in self._windows():
            cell = where[position]  # the input cell each row reads at this kernel offset (-1: padding)
            real = cell >= 0
            at = (first_in[real][:, None] + c) * cells + cell[real][:, None]  # every input channel of the group
            out[index[real][:, None], at] = self.weight[(channel[real][:, None], c) + k]
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
        return node_inputs(node, values, self.constants, self._fixed, self.absolute, linear=True)

    def _forward(self, xs: np.ndarray) -> np.ndarray:
        values = forward(self.nodes, {self.anchor: xs.reshape((len(xs),) + tuple(self.shapes[self.anchor]))}, self._args)
        return values[self.target].reshape(len(xs), -1)

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
MATRIX_FREE = (ConvMap, IdentityMap, SubgraphMap)


def abs_of(w: np.ndarray | ConvMap) -> np.ndarray | ConvMap:
    """``|W|`` of a dense matrix or an operator."""
    return w.abs() if isinstance(w, MATRIX_FREE) else np.abs(w)


def zero_rows(w: np.ndarray | ConvMap) -> np.ndarray:
    """Per row, True when every weight in it is 0 (for an operator: its absolute form's row sums are 0)."""
    if isinstance(w, MATRIX_FREE):
        return (w.abs() @ np.ones(w.shape[1])) == 0
    return ~np.any(w != 0, axis=1)
