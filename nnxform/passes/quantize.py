"""Weight quantisation: the weights of Gemm, MatMul, Conv and ConvTranspose rounded to a symmetric integer grid
(per tensor or per output channel) or to float16, and stored back in their float type so every verifier reads
the result.

On ``bits`` N the grid has ``Q = 2^(N−1) − 1`` levels per side: ``scale = max|w| / Q`` (float32, over the
tensor or over each output channel), ``q = round(w / scale)`` (half to even) in ``[−Q, Q]``, and the stored
weight is ``float32(q)·scale`` rounded to float32 — exactly what ``DequantizeLinear(q, scale)`` computes, so
the written network is the one a weight-only QDQ model of the same grid runs. Biases (Gemm's C, Conv's B) and
every other constant (Add, Mul, BatchNormalization) stay as they are. Quantisation changes the function:
``workflows.quantize_with_drift`` bounds by how much over a box, soundly, with the discrepancy analysis of the two
networks (as ``prune`` does), and checks the bound against sampled differences in onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..operators import CONVOLUTIONS, OPERATORS
from ..errors import NnxformError
from ..ir import Model, Node
from . import PassReport, register

#: The operators whose constant weight input is quantised (the bias input is not).
LAYERS = tuple(op for op, spec in OPERATORS.items() if spec.linear_layer)
#: Widths of the integer grid: 2 bits is {−1, 0, 1}·scale; 32 is the widest integer DequantizeLinear reads.
MIN_BITS, MAX_BITS = 2, 32
#: The largest finite float16.
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class LayerQuantization:
    """One quantised weight tensor: where it is, its size, the grid, and the rounding error it caused."""

    node: str
    op: str
    weight: str
    shape: tuple[int, ...]
    max_weight: float  # max |w| before
    max_error: float  # max |w_q − w|
    mean_error: float  # mean |w_q − w|
    scales: np.ndarray | None  # the grid's step: one value (per tensor) or one per output channel; None for float16

    def scale_text(self) -> str:
        """The scale for a table: one number, or the range of the per-channel scales, or '-' for float16."""
        if self.scales is None:
            return "-"
        if self.scales.size == 1:
            return f"{float(self.scales[0]):.6g}"
        return f"{float(self.scales.min()):.3g}..{float(self.scales.max()):.3g} ({self.scales.size} ch)"

    def to_json(self) -> dict[str, Any]:
        scale: Any = None if self.scales is None else (float(self.scales[0]) if self.scales.size == 1
                                                        else self.scales.tolist())
        return {"node": self.node, "op": self.op, "weight": self.weight, "shape": list(self.shape),
                "max_weight": self.max_weight, "max_error": self.max_error, "mean_error": self.mean_error,
                "scale": scale}


@dataclass
class QuantizeReport(PassReport):
    """The pass report, with one ``LayerQuantization`` per quantised weight tensor."""

    layers: list[LayerQuantization] = field(default_factory=list)


def grid_name(bits: int | None, per_channel: bool) -> str:
    """How a quantisation is named in reports: 'float16', 'int8 per tensor', 'int4 per channel'."""
    return "float16" if bits is None else f"int{bits} per {'channel' if per_channel else 'tensor'}"


@register("quantize", requires=frozenset(), ensures=frozenset(), preserves=False)
def quantize(model: Model, bits: int | None = None, per_channel: bool = False,
             float16: bool = False) -> tuple[Model, QuantizeReport]:
    """Round the weights of Gemm/MatMul/Conv/ConvTranspose to a symmetric integer grid or float16 (not the biases)."""
    if float16 == (bits is not None):
        raise NnxformError("give one quantisation: an integer grid (bits) or float16")
    if bits is not None and not MIN_BITS <= bits <= MAX_BITS:
        raise NnxformError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits}")
    if float16 and per_channel:
        raise NnxformError("per-channel scales apply to an integer grid (bits), not to float16")
    model = model.copy()
    report = QuantizeReport("quantize")
    for node in model.nodes:
        position = _weight_position(model, node)
        if position is None:
            continue
        name = node.inputs[position]
        w = model.constants[name]
        if float16:
            wq, scales = _to_float16(w, name), None
        else:
            view, axes = _channel_view(w, node, position) if per_channel else (w, tuple(range(w.ndim)))
            values, step = _on_grid(view, axes, bits)
            wq, scales = values.reshape(w.shape).astype(w.dtype), step.ravel().astype(np.float64)
        if len(model.consumers(name)) > 1:  # a tensor shared with another node gets its own copy on this node's grid
            name = node.inputs[position] = model.add_constant(f"{name}_quantized", wq)
        else:
            model.constants[name] = wq
        err = np.abs(wq.astype(np.float64) - w.astype(np.float64))
        layer = LayerQuantization(node.name, node.op, name, tuple(w.shape), float(np.abs(w).max()),
                                  float(err.max()), float(err.mean()), scales)
        report.layers.append(layer)
        report.add("quantized", f"{node.op} '{node.name}': weight '{name}' {list(w.shape)} on the "
                                f"{grid_name(bits, per_channel)} grid, max error {layer.max_error:.3g}")
    if not report.layers:
        raise NnxformError("the network has no Gemm, MatMul, Conv or ConvTranspose with constant weights to quantise")
    return model, report


def _weight_position(model: Model, node: Node) -> int | None:
    """The input position of ``node``'s constant weight (Gemm/MatMul: the constant factor; Conv: input 1), or None."""
    if node.op in CONVOLUTIONS:
        return 1 if node.inputs[1] in model.constants else None
    if node.op in ("Gemm", "MatMul"):
        constant = [k for k in (0, 1) if node.inputs[k] in model.constants]
        return constant[0] if len(constant) == 1 else None
    return None


def _channel_view(w: np.ndarray, node: Node, position: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``w`` reshaped, and the axes to reduce over, so that a reduction gives one value per output channel.

    Gemm's B is [out, in] with transB, else [in, out] (A the other way round); MatMul ``x·W`` has its outputs on
    W's last axis, ``W·x`` on W's second to last; Conv weights are [out, in/g, k…]; ConvTranspose weights are
    [in, out/g, k…], viewed as [g, in/g, out/g, k…] so that channel ``j`` of group ``i`` is output
    ``i·out/g + j``."""
    every = tuple(range(w.ndim))
    if node.op == "Gemm":
        transposed = node.attrs.get("transB" if position == 1 else "transA", 0)
        out = (0 if transposed else 1) if position == 1 else (1 if transposed else 0)
    elif node.op == "MatMul":
        if w.ndim < 2:  # a dot product: one output
            return w, every
        out = w.ndim - 1 if position == 1 else w.ndim - 2
    elif node.op == "Conv":
        out = 0
    else:
        groups = int(node.attrs.get("group", 1))
        view = w.reshape((groups, w.shape[0] // groups) + w.shape[1:])
        return view, tuple(k for k in range(view.ndim) if k not in (0, 2))
    return w, tuple(k for k in every if k != out)


def _on_grid(w: np.ndarray, axes: tuple[int, ...], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``w`` rounded to ``Q = 2^(bits−1) − 1`` levels per side of a float32 step ``max|w| / Q`` taken over ``axes``
    (kept as size-1 axes in the returned steps), computed as DequantizeLinear does: ``float32(q)·step`` in float32."""
    levels = float(2 ** (bits - 1) - 1)
    w64 = w.astype(np.float64)
    step = (np.abs(w64).max(axis=axes, keepdims=True) / levels).astype(np.float32)
    divisor = np.where(step > 0, step, 1.0).astype(np.float64)
    q = np.clip(np.round(w64 / divisor), -levels, levels) + 0.0  # + 0.0: no negative zeros in the written weights
    return q.astype(np.float32) * step, step


def _to_float16(w: np.ndarray, name: str) -> np.ndarray:
    """``w`` rounded to the nearest float16, kept in its own float type; refused where float16 overflows."""
    big = np.abs(w) > FLOAT16_MAX
    if big.any():
        raise NnxformError(f"weight '{name}' has {int(big.sum())} values beyond float16's range (|w| up to "
                           f"{float(np.abs(w).max()):.6g} > {FLOAT16_MAX:g}); use an integer grid instead")
    return w.astype(np.float16).astype(w.dtype)
