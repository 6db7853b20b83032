"""Numpy forward evaluation of the IR, vectorised over samples.

Every value that depends on the network input carries one extra leading *sample* axis
on top of its ONNX shape (which includes the model's own batch dimension of 1), so one
call evaluates thousands of points. Constants carry no sample axis.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import UnsupportedOperator

if TYPE_CHECKING:
    from .ir import Model


def run(model: "Model", xs: np.ndarray, keep: bool = False) -> dict[str, np.ndarray] | np.ndarray:
    """Evaluate ``model`` on samples ``xs`` of shape ``(n, *model.input_shape)`` in float64.

    Returns the first output (with its sample axis), or every computed tensor when ``keep``.
    """
    xs = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(model.input_shape))
    values: dict[str, np.ndarray] = {model.input_name: xs}
    for node in model.nodes:
        args = []
        for name in node.inputs:
            if name == "":
                args.append(None)
            elif name in values:
                args.append(values[name])
            else:
                args.append(None if name not in model.constants else _const(model.constants[name]))
        batched = [name in values for name in node.inputs]
        fn = OPS.get(node.op)
        if fn is None:
            raise UnsupportedOperator(f"operator {node.op} (node '{node.name}') cannot be evaluated")
        values[node.outputs[0]] = fn(node, args, batched)
    return values if keep else values[model.output_names[0]]


def tensor_shapes(model: "Model") -> dict[str, tuple[int, ...]]:
    """ONNX shape (without the sample axis) of every tensor, found by evaluating one zero sample."""
    values = run(model, np.zeros((1,) + tuple(model.input_shape)), keep=True)
    shapes = {name: tuple(v.shape[1:]) for name, v in values.items()}
    shapes.update({name: tuple(c.shape) for name, c in model.constants.items()})
    return shapes


def _const(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def _merge_lead(x: np.ndarray, keep: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Fold all but the last ``keep`` axes into one, returning the folded array and the lead shape."""
    lead = x.shape[: x.ndim - keep]
    return x.reshape((-1,) + x.shape[x.ndim - keep:]), lead


# --- element-wise ----------------------------------------------------------------------


def _align(args: list[np.ndarray], batched: list[bool]) -> list[np.ndarray]:
    """Insert axes after the sample axis so batched operands broadcast like ONNX does per sample."""
    rank = max(a.ndim - (1 if b else 0) for a, b in zip(args, batched))
    out = []
    for a, b in zip(args, batched):
        if b and a.ndim - 1 < rank:
            a = a.reshape((a.shape[0],) + (1,) * (rank - a.ndim + 1) + a.shape[1:])
        out.append(a)
    return out


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def op(node, args, batched):
        a, b = _align(args, batched)
        return fn(a, b)
    return op


def _unary(fn: Callable[[np.ndarray], np.ndarray]):
    return lambda node, args, batched: fn(args[0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# --- linear algebra --------------------------------------------------------------------


def _gemm(node, args, batched):
    a, b, c = (args + [None])[:3]
    at = node.attrs
    if at.get("transA", 0):
        a = np.swapaxes(a, -1, -2)
    if at.get("transB", 0):
        b = np.swapaxes(b, -1, -2)
    y = at.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + at.get("beta", 1.0) * c
    return y


def _matmul(node, args, batched):
    a, b = args
    ba, bb = batched
    if bb and b.ndim - 1 == 1:  # per-sample vector on the right: [.., K] -> column
        return (a @ b[..., None])[..., 0]
    if ba and bb and a.ndim != b.ndim:
        a, b = _align([a, b], batched)
    return a @ b


# --- shape manipulation ----------------------------------------------------------------


def _flatten(node, args, batched):
    x = args[0]
    axis = node.attrs.get("axis", 1)
    shape = x.shape[1:]
    if axis < 0:
        axis += len(shape)
    return x.reshape(x.shape[0], int(np.prod(shape[:axis], dtype=np.int64)), -1)


def reshape_target(in_shape: tuple[int, ...], target: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape semantics for one sample: 0 copies the input dimension, -1 is inferred."""
    out = [int(in_shape[i]) if int(d) == 0 else int(d) for i, d in enumerate(target)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        out[out.index(-1)] = int(np.prod(in_shape, dtype=np.int64)) // max(known, 1)
    return tuple(out)


def _reshape(node, args, batched):
    x, target = args
    return x.reshape((x.shape[0],) + reshape_target(x.shape[1:], target))


def _transpose(node, args, batched):
    x = args[0]
    perm = node.attrs.get("perm") or list(reversed(range(x.ndim - 1)))
    return np.transpose(x, [0] + [p + 1 for p in perm])


def _axes(node, rank: int) -> list[int]:
    return sorted(a + rank if a < 0 else a for a in node.attrs.get("axes", []))


def _unsqueeze(node, args, batched):
    x = args[0]
    out_rank = x.ndim - 1 + len(node.attrs["axes"])
    for a in _axes(node, out_rank):
        x = np.expand_dims(x, a + 1)
    return x


def _squeeze(node, args, batched):
    x = args[0]
    axes = _axes(node, x.ndim - 1) or [i for i, d in enumerate(x.shape[1:]) if d == 1]
    return np.squeeze(x, axis=tuple(a + 1 for a in axes))


def _concat(node, args, batched):
    n = next(a.shape[0] for a, b in zip(args, batched) if b)
    parts = [a if b else np.broadcast_to(a, (n,) + a.shape) for a, b in zip(args, batched)]
    axis = node.attrs["axis"]
    return np.concatenate(parts, axis=axis + 1 if axis >= 0 else axis)


# --- convolution and pooling -----------------------------------------------------------


def explicit_pads(attrs: dict, in_spatial: tuple[int, ...], kernel: tuple[int, ...]) -> list[int]:
    """Begin and end pads (ONNX order) for a conv or pool, resolving ``auto_pad``."""
    nd = len(kernel)
    strides = attrs.get("strides") or [1] * nd
    dil = attrs.get("dilations") or [1] * nd
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            out = -(-in_spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - in_spatial[i])
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    if auto == "VALID":
        return [0] * (2 * nd)
    return list(attrs.get("pads") or [0] * (2 * nd))


def _windows(xp: np.ndarray, kernel, strides, dil, out_sizes):
    """Yield (kernel index, strided view of xp) for every kernel offset."""
    nd = len(kernel)
    for k in itertools.product(*[range(s) for s in kernel]):
        sl = tuple(
            slice(k[i] * dil[i], k[i] * dil[i] + strides[i] * (out_sizes[i] - 1) + 1, strides[i])
            for i in range(nd)
        )
        yield k, xp[(Ellipsis,) + sl]


def _out_sizes(in_sp, kernel, strides, dil, pads, ceil=False):
    nd = len(kernel)
    rnd = np.ceil if ceil else np.floor
    return [
        int(rnd((in_sp[i] + pads[i] + pads[i + nd] - ((kernel[i] - 1) * dil[i] + 1)) / strides[i])) + 1
        for i in range(nd)
    ]


def _conv(node, args, batched):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    nd = w.ndim - 2
    xf, lead = _merge_lead(x, nd + 1)
    kernel = tuple(w.shape[2:])
    at = node.attrs
    strides = at.get("strides") or [1] * nd
    dil = at.get("dilations") or [1] * nd
    pads = explicit_pads(at, xf.shape[2:], kernel)
    group = at.get("group", 1)
    out_sp = _out_sizes(xf.shape[2:], kernel, strides, dil, pads)
    xp = np.pad(xf, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    s, c = xf.shape[:2]
    o = w.shape[0]
    cg, og = c // group, o // group
    xg = xp.reshape((s, group, cg) + xp.shape[2:])
    wg = w.reshape((group, og, cg) + kernel)
    y = np.zeros((s, group, og) + tuple(out_sp))
    for k, view in _windows(xg, kernel, strides, dil, out_sp):
        y += np.einsum("sgc...,goc->sgo...", view, wg[(Ellipsis,) + k], optimize=True)
    y = y.reshape((s, o) + tuple(out_sp))
    if b is not None:
        y += b.reshape((1, o) + (1,) * nd)
    return y.reshape(lead + y.shape[1:])


def _pool(kind: str):
    def op(node, args, batched):
        x = args[0]
        at = node.attrs
        kernel = tuple(at["kernel_shape"])
        nd = len(kernel)
        xf, lead = _merge_lead(x, nd + 1)
        strides = at.get("strides") or [1] * nd
        dil = at.get("dilations") or [1] * nd
        pads = explicit_pads(at, xf.shape[2:], kernel)
        ceil = bool(at.get("ceil_mode", 0))
        out_sp = _out_sizes(xf.shape[2:], kernel, strides, dil, pads, ceil)
        # extra end padding so that ceil-mode windows stay inside the array
        extra = [
            max(0, (out_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - (xf.shape[2 + i] + pads[i] + pads[i + nd]))
            for i in range(nd)
        ]
        widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd] + extra[i]) for i in range(nd)]
        if kind == "max":
            xp = np.pad(xf, widths, constant_values=-np.inf)
            y = np.full(xf.shape[:2] + tuple(out_sp), -np.inf)
            for _, view in _windows(xp, kernel, strides, dil, out_sp):
                y = np.maximum(y, view)
        else:
            xp = np.pad(xf, widths)
            # count: real cells, plus explicit pads when count_include_pad (never the ceil overhang)
            ones = np.ones((1, 1) + xf.shape[2:])
            if at.get("count_include_pad", 0):
                ones = np.pad(ones, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)], constant_values=1)
                mask = np.pad(ones, [(0, 0), (0, 0)] + [(0, extra[i]) for i in range(nd)])
            else:
                mask = np.pad(ones, widths)
            y = np.zeros(xf.shape[:2] + tuple(out_sp))
            cnt = np.zeros((1, 1) + tuple(out_sp))
            for k, view in _windows(xp, kernel, strides, dil, out_sp):
                y += view
            for k, view in _windows(mask, kernel, strides, dil, out_sp):
                cnt += view
            y = y / cnt
        return y.reshape(lead + y.shape[1:])
    return op


def _batchnorm(node, args, batched):
    x, scale, bias, mean, var = args[:5]
    eps = node.attrs.get("epsilon", 1e-5)
    s = scale / np.sqrt(var + eps)
    shape = (1,) * 2 + (-1,) + (1,) * (x.ndim - 3)  # sample, batch, channel, spatial...
    return (x - mean.reshape(shape)) * s.reshape(shape) + bias.reshape(shape)


OPS: dict[str, Callable] = {
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Relu": _unary(lambda x: np.maximum(x, 0.0)),
    "Sigmoid": _unary(_sigmoid),
    "Tanh": _unary(np.tanh),
    "Identity": _unary(lambda x: x),
    "Dropout": _unary(lambda x: x),
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Conv": _conv,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "BatchNormalization": _batchnorm,
}
