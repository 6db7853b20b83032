"""Input gradients by reverse mode over the IR operators, vectorised over samples.

``gradient(model, xs, weights)`` returns ∂(Σ weights · tensor)/∂x for every sample: the
vector-Jacobian product of the forward evaluation in ``evaluate``. Used by projected-gradient
searches (soundness tests of the bound analyzers, FGSM-style attacks, witness search).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import UnsupportedOperator
from .evaluate import Windows, _align, _merge_lead, matmul_operands, run
from .ir import Model, Node


def gradient(model: Model, xs: np.ndarray, weights: np.ndarray, tensor: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Value and input gradient of ``Σ weights · tensor`` per sample.

    ``xs``: samples ``(n, *input_shape)`` (or flat); ``weights``: flat ``(tensor size,)`` or per
    sample ``(n, tensor size)``; ``tensor`` defaults to the model's output. Returns
    ``(values (n, tensor size), gradients (n, input size))`` in float64.
    """
    tensor = tensor or model.output_name
    xs = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(model.input_shape))
    n = len(xs)
    values = run(model, xs, keep=True)
    out = values[tensor]
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64).reshape(-1 if np.ndim(weights) == 1 else (n, -1)), (n, out[0].size))
    grads: dict[str, np.ndarray] = {tensor: w.reshape(out.shape).copy()}
    for node in reversed(model.nodes):
        g = grads.pop(node.outputs[0], None)
        if g is None:
            continue
        args, batched = [], []
        for t in node.inputs:
            batched.append(t in values)
            if t in values:
                args.append(values[t])
            elif t in model.constants:
                c = model.constants[t]
                args.append(c.astype(np.float64) if np.issubdtype(c.dtype, np.floating) else c)
            else:
                args.append(None)
        fn = VJP.get(node.op)
        if fn is None:
            raise UnsupportedOperator(f"operator {node.op} (node '{node.name}') has no gradient")
        for k, gk in enumerate(fn(node, args, batched, values[node.outputs[0]], g)):
            t = node.inputs[k] if k < len(node.inputs) else ""
            if gk is not None and batched[k]:
                grads[t] = grads[t] + gk if t in grads else gk
    gx = grads.get(model.input_name, np.zeros_like(xs))
    return out.reshape(n, -1), gx.reshape(n, -1)


# --- helpers -----------------------------------------------------------------------------


def _unbroadcast(g: np.ndarray, arg: np.ndarray, aligned: np.ndarray) -> np.ndarray:
    """Sum ``g`` over the axes along which ``aligned`` (``arg`` as broadcast) was stretched."""
    g = g.sum(axis=tuple(range(g.ndim - aligned.ndim))) if g.ndim > aligned.ndim else g
    axes = tuple(i for i, (a, b) in enumerate(zip(aligned.shape, g.shape)) if a == 1 and b != 1)
    return g.sum(axis=axes, keepdims=True).reshape(arg.shape)


# --- vector-Jacobian products: (node, args, batched, output, grad) -> grad per input ------------


def _binary(node, args, batched, y, g):
    a, b = args
    A, B = _align(args, batched)
    op = node.op
    if op == "Add":
        ga, gb = g, g
    elif op == "Sub":
        ga, gb = g, -g
    elif op == "Mul":
        ga, gb = g * B, g * A
    else:  # Div
        ga, gb = g / B, -g * A / (B * B)
    return [_unbroadcast(ga, a, A) if batched[0] else None, _unbroadcast(gb, b, B) if batched[1] else None]


def _elementwise(deriv: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    return lambda node, args, batched, y, g: [g * deriv(args[0], y)]


def _gemm(node, args, batched, y, g):
    a, b = args[0], args[1]
    at = node.attrs
    alpha = at.get("alpha", 1.0)
    A = np.swapaxes(a, -1, -2) if at.get("transA", 0) else a
    B = np.swapaxes(b, -1, -2) if at.get("transB", 0) else b
    ga = gb = None
    if batched[0]:
        gA = alpha * (g @ np.swapaxes(B, -1, -2))
        ga = np.swapaxes(gA, -1, -2) if at.get("transA", 0) else gA
        ga = _unbroadcast(ga, a, a)
    if batched[1]:
        gB = alpha * (np.swapaxes(A, -1, -2) @ g)
        gb = np.swapaxes(gB, -1, -2) if at.get("transB", 0) else gB
        gb = _unbroadcast(gb, b, b)
    gc = None
    if len(args) > 2 and batched[2]:
        _, C = _align([g, args[2]], [True, True])
        gc = _unbroadcast(at.get("beta", 1.0) * g, args[2], C)
    return [ga, gb, gc]


def _matmul(node, args, batched, y, g):
    a, b = args
    A, B, _ = matmul_operands(a, b, *batched)
    G = g.reshape(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1]))
    ga = _unbroadcast(G @ np.swapaxes(B, -1, -2), a, A) if batched[0] else None
    gb = _unbroadcast(np.swapaxes(A, -1, -2) @ G, b, B) if batched[1] else None
    return [ga, gb]


def _reshape_back(node, args, batched, y, g):
    return [g.reshape(args[0].shape)]


def _transpose(node, args, batched, y, g):
    x = args[0]
    perm = node.attrs.get("perm") or list(reversed(range(x.ndim - 1)))
    full = [0] + [p + 1 for p in perm]
    return [np.transpose(g, np.argsort(full))]


def _concat(node, args, batched, y, g):
    axis = node.attrs["axis"]
    axis = axis + 1 if axis >= 0 else axis
    sizes = [a.shape[axis] if b else a.shape[axis - 1 if axis > 0 else axis] for a, b in zip(args, batched)]
    parts = np.split(g, np.cumsum(sizes)[:-1], axis=axis)
    return [p if b else None for p, b in zip(parts, batched)]


def _conv(node, args, batched, y, g):
    x, w = args[0], args[1]
    nd = w.ndim - 2
    xf, lead = _merge_lead(x, nd + 1)
    win = Windows.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    group = node.attrs.get("group", 1)
    s, c = xf.shape[:2]
    o = w.shape[0]
    cg, og = c // group, o // group
    padded = tuple(xf.shape[2 + i] + win.pads[i] + win.pads[i + nd] for i in range(nd))
    gxp = np.zeros((s, group, cg) + padded)
    gy = g.reshape((s, group, og) + win.out)
    wg = w.reshape((group, og, cg) + win.kernel)
    for k, sl in win.slices():
        gxp[sl] += np.einsum("sgo...,goc->sgc...", gy, wg[(Ellipsis,) + k], optimize=True)
    return [_unpad(gxp.reshape((s, c) + padded), win, xf.shape).reshape(x.shape)]


def _pool(node, args, batched, y, g):
    x = args[0]
    kernel = tuple(node.attrs["kernel_shape"])
    xf, lead = _merge_lead(x, len(kernel) + 1)
    win = Windows.of(node.attrs, xf.shape[2:], kernel)
    gf = g.reshape(xf.shape[:2] + win.out)
    if node.op == "MaxPool":
        xp = np.pad(xf, win.pad_widths(), constant_values=-np.inf)
        yf = y.reshape(gf.shape)
        gxp = np.zeros(xp.shape)
        taken = np.zeros(gf.shape, dtype=bool)
        for _, sl in win.slices():
            hit = (xp[sl] == yf) & ~taken
            gxp[sl] += np.where(hit, gf, 0.0)
            taken |= hit
    else:
        share = gf / win.average_counts(xf.shape[2:], bool(node.attrs.get("count_include_pad", 0)))
        gxp = np.zeros(xf.shape[:2] + tuple(n + a + b for n, (a, b) in zip(xf.shape[2:], win.pad_widths()[2:])))
        for _, sl in win.slices():
            gxp[sl] += share
    return [_unpad(gxp, win, xf.shape).reshape(x.shape)]


def _unpad(gxp: np.ndarray, win: Windows, shape: tuple[int, ...]) -> np.ndarray:
    """The part of a gradient on the padded input that lies on the real input of ``shape``."""
    nd = len(win.kernel)
    return gxp[(Ellipsis,) + tuple(slice(win.pads[i], win.pads[i] + shape[2 + i]) for i in range(nd))]


def _batchnorm(node, args, batched, y, g):
    x, scale, _, _, var = args[:5]
    s = scale / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
    return [g * s.reshape((1,) * 2 + (-1,) + (1,) * (x.ndim - 3))]


def _sigmoid_d(x, y):
    return y * (1.0 - y)


VJP: dict[str, Callable[[Node, list, list, np.ndarray, np.ndarray], list]] = {
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Relu": _elementwise(lambda x, y: (x > 0).astype(np.float64)),
    "Sigmoid": _elementwise(_sigmoid_d),
    "Tanh": _elementwise(lambda x, y: 1.0 - y * y),
    "Identity": _reshape_back,
    "Dropout": _reshape_back,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _reshape_back,
    "Reshape": _reshape_back,
    "Squeeze": _reshape_back,
    "Unsqueeze": _reshape_back,
    "Transpose": _transpose,
    "Concat": _concat,
    "Conv": _conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "BatchNormalization": _batchnorm,
}
