"""Input vector-Jacobian products of the operators (``operators.OPERATORS[op].vjp``), vectorised over samples.

A VJP takes ``(node, args, batched, output, grad)``: the node, its inputs, which of them carry the
sample axis, its output and the gradient on it; it returns the gradient on each input (None where
no gradient is needed).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import forward
from .activations import Elementwise
from .forward import Scatter, Windows, align, matmul_operands, merge_lead


# --- helpers -----------------------------------------------------------------------------


def _unbroadcast(g: np.ndarray, arg: np.ndarray, aligned: np.ndarray) -> np.ndarray:
    """Sum ``g`` over the axes along which ``aligned`` (``arg`` as broadcast) was stretched."""
    g = g.sum(axis=tuple(range(g.ndim - aligned.ndim))) if g.ndim > aligned.ndim else g
    axes = tuple(i for i, (a, b) in enumerate(zip(aligned.shape, g.shape)) if a == 1 and b != 1)
    return g.sum(axis=axes, keepdims=True).reshape(arg.shape)


# --- vector-Jacobian products: (node, args, batched, output, grad) -> grad per input ------------


def binary(node, args, batched, y, g):
    a, b = args
    A, B = align(args, batched)
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


def elementwise(kind: Elementwise) -> Callable:
    """An activation's VJP: its derivative at its node's attributes (``Elementwise.at``)."""
    return lambda node, args, batched, y, g: [g * kind.at(node.attrs).derivative(args[0], y)]


def gemm(node, args, batched, y, g):
    a, b = args[0], args[1]
    at = node.attrs
    alpha = at.get("alpha", 1.0)
    A = np.swapaxes(a, -1, -2) if at.get("transA", 0) else a
    B = np.swapaxes(b, -1, -2) if at.get("transB", 0) else b
    ga = gb = None
    if batched[0]:
        gA = alpha * forward.stacked_product(g, np.swapaxes(B, -1, -2))
        ga = np.swapaxes(gA, -1, -2) if at.get("transA", 0) else gA
        ga = _unbroadcast(ga, a, a)
    if batched[1]:
        gB = alpha * (np.swapaxes(A, -1, -2) @ g)
        gb = np.swapaxes(gB, -1, -2) if at.get("transB", 0) else gB
        gb = _unbroadcast(gb, b, b)
    gc = None
    if len(args) > 2 and batched[2]:
        _, C = align([g, args[2]], [True, True])
        gc = _unbroadcast(at.get("beta", 1.0) * g, args[2], C)
    return [ga, gb, gc]


def matmul(node, args, batched, y, g):
    a, b = args
    if batched[0] and not batched[1] and b.ndim == 2:  # data times a weight matrix: one BLAS call (as forward)
        return [(g.reshape(-1, g.shape[-1]) @ b.T).reshape(a.shape), None]
    A, B, _ = matmul_operands(a, b, *batched)
    G = g.reshape(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1]))
    ga = _unbroadcast(G @ np.swapaxes(B, -1, -2), a, A) if batched[0] else None
    gb = _unbroadcast(np.swapaxes(A, -1, -2) @ G, b, B) if batched[1] else None
    return [ga, gb]


def reshape_back(node, args, batched, y, g):
    return [g.reshape(args[0].shape)]


def transpose(node, args, batched, y, g):
    x = args[0]
    perm = node.attrs.get("perm") or list(reversed(range(x.ndim - 1)))
    full = [0] + [p + 1 for p in perm]
    return [np.transpose(g, np.argsort(full))]


def concat(node, args, batched, y, g):
    axis = node.attrs["axis"]
    axis = axis + 1 if axis >= 0 else axis
    sizes = [a.shape[axis] if b else a.shape[axis - 1 if axis > 0 else axis] for a, b in zip(args, batched)]
    parts = np.split(g, np.cumsum(sizes)[:-1], axis=axis)
    return [p if b else None for p, b in zip(parts, batched)]


def _grouped(node, x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, Windows, int, int, np.ndarray]:
    """A Conv's input folded to ``[samples, channels, *spatial]``, its windows, the input channels per group, the
    number of groups, and the output gradient as ``[samples, group, out channels per group, *out]``."""
    xf, _ = merge_lead(x, w.ndim - 1)
    win = Windows.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    group = node.attrs.get("group", 1)
    gy = g.reshape((xf.shape[0], group, w.shape[0] // group) + win.out)
    return xf, win, xf.shape[1] // group, group, gy


def conv(node, args, batched, y, g):
    """The gradient scattered back per kernel offset: one BLAS product per group, channels last."""
    x, w = args[0], args[1]
    nd = w.ndim - 2
    xf, win, cg, group, gy = _grouped(node, x, w, g)
    s, c = xf.shape[:2]
    og = gy.shape[2]
    gl = np.ascontiguousarray(np.moveaxis(gy, (1, 2), (0, -1))).reshape(group, -1, og)  # [group, s·positions, og]
    padded = tuple(xf.shape[2 + i] + win.pads[i] + win.pads[i + nd] for i in range(nd))
    gxp = np.zeros((group, s) + padded + (cg,))
    wg = w.reshape((group, og, cg) + win.kernel)
    for k, sl in win.slices():
        gxp[(slice(None), slice(None)) + sl[1:]] += (gl @ wg[(Ellipsis,) + k]).reshape((group, s) + win.out + (cg,))
    gx = np.moveaxis(gxp, (0, -1), (1, 2)).reshape((s, c) + padded)
    return [_unpad(gx, win, xf.shape).reshape(x.shape)]


def conv_transpose(node, args, batched, y, g):
    """The gradient on the uncropped output convolved with the same weights, strides, dilations and groups
    (a ConvTranspose is the transpose of that Conv)."""
    x, w = args[0], args[1]
    xf, _ = merge_lead(x, w.ndim - 1)
    sc = Scatter.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    gf = g.reshape((xf.shape[0], -1) + sc.out)
    gy = np.zeros(gf.shape[:2] + sc.full)
    gy[sc.cells()] = gf
    attrs = {k: node.attrs[k] for k in ("strides", "dilations", "group") if k in node.attrs}
    reached = gy[(Ellipsis,) + tuple(slice(0, r) for r in sc.reach)]
    return [forward.conv(dataclasses.replace(node, attrs=attrs), [reached, w], [True, False]).reshape(x.shape)]


def pool(node, args, batched, y, g):
    x = args[0]
    kernel = tuple(node.attrs["kernel_shape"])
    xf, lead = merge_lead(x, len(kernel) + 1)
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


def batchnorm(node, args, batched, y, g):
    x, scale, _, _, var = args[:5]
    s = forward.batchnorm_factor(node, scale, var)
    return [g * s.reshape((1,) * 2 + (-1,) + (1,) * (x.ndim - 3))]



# --- parameter vector-Jacobian products: (node, args, output, grad) -> grad per constant input, summed over samples --
# ``args[0]`` carries the sample axis, the rest are the node's constants; None where a constant is not trained.


def gemm_params(node, args, y, g):
    a = args[0]
    at = node.attrs
    A = np.swapaxes(a, -1, -2) if at.get("transA", 0) else a
    A2, G2 = A.reshape(-1, A.shape[-1]), g.reshape(-1, g.shape[-1])
    gB = at.get("alpha", 1.0) * (A2.T @ G2)  # the gradient of B as used (after transB)
    gb = gB.T if at.get("transB", 0) else gB
    gc = None
    if len(args) > 2 and args[2] is not None:
        c = args[2]
        total = at.get("beta", 1.0) * G2.sum(axis=0)
        gc = total.reshape(c.shape) if c.size == total.size else np.full(c.shape, total.sum())
    return [None, gb, gc]


def conv_params(node, args, y, g):
    x, w = args[0], args[1]
    nd = w.ndim - 2
    xf, win, cg, group, gy = _grouped(node, x, w, g)
    xp = np.pad(xf, win.pad_widths())
    xg = xp.reshape((xf.shape[0], group, cg) + xp.shape[2:])
    gw = np.zeros((group, gy.shape[2], cg) + win.kernel)
    for k, sl in win.slices():
        gw[(Ellipsis,) + k] = np.einsum("sgo...,sgc...->goc", gy, xg[sl], optimize=True)
    gb = gy.sum(axis=(0,) + tuple(range(3, 3 + nd))).reshape(-1) if len(args) > 2 and args[2] is not None else None
    return [None, gw.reshape(w.shape), gb]


def conv_transpose_params(node, args, y, g):
    """Each weight meets the input values it scattered and the output gradient where it landed."""
    x, w = args[0], args[1]
    nd = w.ndim - 2
    xf, _ = merge_lead(x, nd + 1)
    sc = Scatter.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    group = node.attrs.get("group", 1)
    s, c = xf.shape[:2]
    cg, og = c // group, w.shape[1]
    gfull = np.zeros((s, group * og) + sc.full)
    gfull[sc.cells()] = g.reshape((s, group * og) + sc.out)
    gfull = gfull.reshape((s, group, og) + sc.full)
    xg = xf.reshape((s, group, cg) + xf.shape[2:])
    gw = np.zeros((group, cg, og) + sc.window.kernel)
    for k, sl in sc.window.slices():
        gw[(Ellipsis,) + k] = np.einsum("sgc...,sgo...->gco", xg, gfull[sl], optimize=True)
    gb = g.reshape((s, group * og) + sc.out).sum(axis=(0,) + tuple(range(2, 2 + nd))) \
        if len(args) > 2 and args[2] is not None else None
    return [None, gw.reshape(w.shape), gb]


def batchnorm_params(node, args, y, g):
    """Gradients of the scale and bias; the running mean and variance are statistics, not trained."""
    x, scale, _, mean, var = args[:5]
    shape = (1,) * 2 + (-1,) + (1,) * (x.ndim - 3)
    xhat = (x - mean.reshape(shape)) * forward.batchnorm_factor(node, 1.0, var).reshape(shape)
    axes = tuple(i for i in range(x.ndim) if i != 2)
    return [None, (g * xhat).sum(axis=axes), g.sum(axis=axes), None, None]
