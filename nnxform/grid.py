"""Quantisation grids of a layered network: detect them, keep weights on them, write them as weight-only QDQ.

A weight tensor is on a grid when every value is ``float32(q)·step`` computed in float32 with integer
``q ∈ [−Q, Q]``, ``Q = 2^(bits−1) − 1``: what ``passes/quantize.py`` writes and what ``DequantizeLinear`` of a
symmetric (zero point 0) integer tensor computes. ``detect`` finds, per Dense/Conv/ConvTranspose layer, the
narrowest such grid (per tensor, else per output channel) with the step ``max|w|/Q`` the quantize pass takes (or
a float32 neighbour within a few ulps, which re-deriving it from the rounded weights may give). Training keeps a
network on its grid with fixed steps and straight-through gradients (``training.train``): the float "latent"
weights take the gradient of their projection ``project``, so the network evaluated and written is always on
the grid. ``qdq_model`` writes grid layers as ``DequantizeLinear(int, step)`` initializers, the form a weight-only
QDQ file has (the loader folds it back to the same float32 values).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import NnxformError
from .fileio import read_bytes
from .layered import WEIGHTED, ConvTranspose, Network
from .passes.quantize import MIN_BITS, grid_name

#: The widest grid looked for: int16 (wider grids hold nearly any float32 tensor of a small layer).
MAX_DETECTED_BITS = 16
#: Float32 neighbours of ``max|w|/Q`` tried as the step (re-deriving the step from rounded weights may miss by an ulp).
_STEP_ULPS = 4
FORMS = ("float", "qdq")


@dataclass(frozen=True)
class LayerGrid:
    """The grid of one layer's weights: ``bits``, the step (float32, shaped to broadcast over ``W``: one value, or
    one per output channel along ``axis``), the layer's name in the layered form and its weights' shape."""

    layer: str
    bits: int
    axis: int | None  # None: one step for the tensor; else W's axis over output channels
    step: np.ndarray
    shape: tuple[int, ...]

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def name(self) -> str:
        return grid_name(self.bits, self.axis is not None)

    def integers(self, W: np.ndarray) -> np.ndarray:
        """The integers ``q`` of ``W`` on this grid (rounded half to even, clipped to ``[−Q, Q]``)."""
        divisor = np.where(self.step > 0, self.step, 1.0).astype(np.float64)
        return np.clip(np.round(np.asarray(W, dtype=np.float64) / divisor), -self.levels, self.levels) + 0.0

    def project(self, W: np.ndarray) -> np.ndarray:
        """``W`` rounded onto the grid, as DequantizeLinear computes it (``float32(q)·step`` in float32), in float64."""
        return (self.integers(W).astype(np.float32) * self.step).astype(np.float64)

    def clipped(self, W: np.ndarray) -> np.ndarray:
        """Where ``W`` lies beyond the grid's last level by more than half a step: the straight-through gradient is
        0 there (the projection does not move), so latent weights do not drift away."""
        return np.abs(W) > (self.levels + 0.5) * self.step.astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        steps = self.step.ravel().astype(np.float64)
        return {"layer": self.layer, "grid": self.name, "bits": self.bits,
                "step": float(steps[0]) if self.axis is None else steps.tolist()}


@dataclass(frozen=True)
class Grid:
    """The grids of a network's layers (by layer index in its layered form), how the file stored them (``float``
    values on the grid, or ``qdq``: DequantizeLinear of integer initializers), and the weighted layers off any grid."""

    layers: dict[int, LayerGrid]
    form: str
    off_grid: tuple[str, ...] = ()
    scales: str = "fixed"  # "fixed": the steps the network came with; "searched": chosen by the repair

    @property
    def kinds(self) -> str:
        """The grids' names, e.g. 'int3 per tensor' (several joined by ' / ')."""
        return " / ".join(sorted({g.name for g in self.layers.values()}))

    def describe(self) -> str:
        """One line for a report: which grids, on how many layers, stored how, and the layers off the grid."""
        stored = "weight-only QDQ (DequantizeLinear)" if self.form == "qdq" else "float32 values on the grid"
        off = f"; off the grid (trained in float): {', '.join(self.off_grid)}" if self.off_grid else ""
        return f"{self.kinds} on {len(self.layers)} layer(s), stored as {stored}{off}"

    def project(self, net: Network) -> Network:
        """``net`` with every grid layer's weights rounded onto its grid."""
        layers = [layer.replace(W=self.layers[k].project(layer.W)) if k in self.layers else layer
                  for k, layer in enumerate(net.layers)]
        return dataclasses.replace(net, layers=layers)

    def holds(self, net: Network) -> bool:
        """True when every grid layer of ``net`` (same index, same name) has its weights exactly on its grid."""
        return all(k < len(net.layers) and net.layers[k].name == g.layer and np.shape(net.layers[k].W) == g.shape
                   and np.array_equal(net.layers[k].W, g.project(net.layers[k].W)) for k, g in self.layers.items())

    def storage_bytes(self, net: Network) -> int:
        """Bytes to store ``net``'s parameters: grid weights at their width (plus float32 steps), the rest float32."""
        total = 0
        for k, layer in enumerate(net.layers):
            sizes = [int(np.asarray(a).size) for a in layer.params().values()]
            g = self.layers.get(k)
            if g is None:
                total += 4 * sum(sizes)
            else:
                total += (sizes[0] * g.bits + 7) // 8 + 4 * (sum(sizes) - sizes[0]) + 4 * g.step.size
        return total

    def to_json(self) -> dict[str, Any]:
        return {"form": self.form, "layers": [g.to_json() for g in self.layers.values()],
                "off_grid": list(self.off_grid), "scales": self.scales}


def file_form(path: str | Path) -> str:
    """How an ONNX file stores its weights: ``qdq`` when a DequantizeLinear reads a constant integer initializer,
    else ``float``."""
    graph = onnx.load_from_string(read_bytes(Path(path), "an ONNX file")).graph
    integers = {i.name for i in graph.initializer
                if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32)}
    return "qdq" if any(n.op_type == "DequantizeLinear" and n.input[0] in integers for n in graph.node) else "float"


def detect(net: Network, form: str = "float") -> Grid | None:
    """The grid ``net``'s weighted layers sit on (see the module's docstring), or None when none does."""
    if form not in FORMS:
        raise NnxformError(f"grid form must be one of {', '.join(FORMS)}, got '{form}'")
    found: dict[int, LayerGrid] = {}
    off: list[str] = []
    for k, layer in enumerate(net.layers):
        if not isinstance(layer, WEIGHTED):
            continue
        g = _layer_grid(layer)
        if g is None:
            off.append(layer.name)
        else:
            found[k] = g
    return Grid(found, form, tuple(off)) if found else None


def _layer_grid(layer: Any) -> LayerGrid | None:
    """The narrowest grid of ``layer``'s weights, per tensor before per output channel, or None."""
    W = np.asarray(layer.W)
    if W.size == 0 or not W.any():
        return None
    W32 = W.astype(np.float32)
    if not np.array_equal(W32.astype(np.float64), np.asarray(W, dtype=np.float64)):
        return None
    axes: list[int | None] = [None]
    if not (isinstance(layer, ConvTranspose) and layer.group > 1):  # grouped: no per-axis DequantizeLinear form
        axes.append(layer.OUT_AXIS)
    for axis in axes:
        reduce = tuple(a for a in range(W.ndim) if a != axis)
        largest = np.abs(W32).max(axis=reduce, keepdims=True)
        distinct = _distinct_magnitudes(W32, axis)
        for bits in range(MIN_BITS, MAX_DETECTED_BITS + 1):
            levels = 2 ** (bits - 1) - 1
            if levels + 1 < distinct:
                continue
            step = _fitting_step(W32, largest, bits, axis, reduce)
            if step is not None:
                return LayerGrid(layer.name, bits, axis, step, W.shape)
    return None


def _distinct_magnitudes(W: np.ndarray, axis: int | None) -> int:
    """The most distinct ``|w|`` values of the tensor (per tensor) or of one output channel (a grid of ``Q``
    levels per side holds at most ``Q + 1``)."""
    if axis is None:
        return int(np.unique(np.abs(W)).size)
    rows = np.sort(np.abs(np.moveaxis(W, axis, 0)).reshape(W.shape[axis], -1), axis=1)
    return int(((np.diff(rows, axis=1) != 0).sum(axis=1) + 1).max())


def _fitting_step(W: np.ndarray, largest: np.ndarray, bits: int, axis: int | None, reduce: tuple[int, ...]
                  ) -> np.ndarray | None:
    """The float32 step (per tensor or per channel) nearest ``largest/levels`` that puts every value of ``W`` on
    the grid, trying a few ulps either side per channel; None when no such step fits every channel."""
    base = (largest.astype(np.float64) / (2 ** (bits - 1) - 1)).astype(np.float32)
    chosen = np.zeros_like(base)
    fitted = np.zeros(base.shape, dtype=bool)
    for shift in sorted(range(-_STEP_ULPS, _STEP_ULPS + 1), key=abs):
        step = base
        for _ in range(abs(shift)):
            step = np.nextafter(step, np.float32(np.inf if shift > 0 else -np.inf))
        step = np.where(base > 0, step, np.float32(0))
        g = LayerGrid("", bits, axis, step, W.shape)
        fits = np.all(g.project(W) == W, axis=reduce, keepdims=True) & ~fitted
        chosen = np.where(fits, step, chosen)
        fitted |= fits
        if fitted.all():
            return chosen.astype(np.float32)
    return None


def qdq_model(proto: onnx.ModelProto, net: Network, grid: Grid) -> onnx.ModelProto:
    """``proto`` (``net`` as written) with every grid layer's weight initializer stored as a DequantizeLinear of
    integers (int8 up to 8 bits, else int32) and its float32 step (per tensor, or per output channel on ``axis``),
    zero point 0: the same values, in the form of a weight-only QDQ file."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    by_name = {n.name: n for n in graph.node}
    inits = {i.name: i for i in graph.initializer}
    dequantize = []
    for k, g in grid.layers.items():
        node = by_name.get(net.layers[k].name)
        if node is None or node.input[1] not in inits:
            raise NnxformError(f"layer '{net.layers[k].name}' is not in the network written; cannot store its grid")
        weight = node.input[1]
        values = numpy_helper.to_array(inits[weight])
        q = g.integers(values)
        if not np.array_equal(g.project(values), values.astype(np.float64)):
            raise NnxformError(f"layer '{net.layers[k].name}' is off its {g.name} grid; cannot store it as QDQ")
        kind = np.int8 if g.bits <= 8 else np.int32
        extra = [numpy_helper.from_array(q.astype(kind), f"{weight}_quantized"),
                 numpy_helper.from_array(g.step.ravel().astype(np.float32) if g.axis is not None
                                         else np.float32(g.step.ravel()[0]), f"{weight}_scale")]
        inputs = [f"{weight}_quantized", f"{weight}_scale"]
        if kind is np.int8:
            zero = np.zeros(g.step.size if g.axis is not None else (), dtype=np.int8)
            extra.append(numpy_helper.from_array(zero, f"{weight}_zero_point"))
            inputs.append(f"{weight}_zero_point")
        graph.initializer.remove(inits[weight])
        graph.initializer.extend(extra)
        attrs = {"axis": g.axis} if g.axis is not None else {}
        dequantize.append(helper.make_node("DequantizeLinear", inputs, [weight], name=f"{weight}_dequantize", **attrs))
    nodes = dequantize + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out)
    return out
