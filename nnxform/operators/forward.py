"""Forward kernels of the operators (``operators.OPERATORS[op].evaluate``), vectorised over samples.

Every value that depends on the network input carries one extra leading *sample* axis on top of its
ONNX shape; constants carry none. A kernel takes ``(node, args, batched)``: the node, its inputs
(None for an absent one) and which of them carry the sample axis.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .activations import Elementwise


def merge_lead(x: np.ndarray, keep: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Fold all but the last ``keep`` axes into one, returning the folded array and the lead shape."""
    lead = x.shape[: x.ndim - keep]
    return x.reshape((-1,) + x.shape[x.ndim - keep:]), lead


# --- element-wise ----------------------------------------------------------------------


def align(args: list[np.ndarray], batched: list[bool]) -> list[np.ndarray]:
    """Insert axes after the sample axis so batched operands broadcast like ONNX does per sample."""
    rank = max(a.ndim - (1 if b else 0) for a, b in zip(args, batched))
    out = []
    for a, b in zip(args, batched):
        if b and a.ndim - 1 < rank:
            a = a.reshape((a.shape[0],) + (1,) * (rank - a.ndim + 1) + a.shape[1:])
        out.append(a)
    return out


def binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def op(node, args, batched):
        a, b = align(args, batched)
        return fn(a, b)
    return op


def unary(fn: Callable[[np.ndarray], np.ndarray]):
    return lambda node, args, batched: fn(args[0])


def elementwise(kind: Elementwise) -> Callable:
    """An activation's kernel: the function its node's attributes give (``Elementwise.at``)."""
    return lambda node, args, batched: kind.at(node.attrs).function(args[0])


# --- linear algebra --------------------------------------------------------------------


def gemm(node, args, batched):
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    at = node.attrs
    if a.ndim - batched[0] != 2 or b.ndim - batched[1] != 2:
        raise ValueError("Gemm multiplies 2-D matrices")
    if at.get("transA", 0):
        a = np.swapaxes(a, -1, -2)
    if at.get("transB", 0):
        b = np.swapaxes(b, -1, -2)
    y = stacked_product(a, b)
    if at.get("alpha", 1.0) != 1.0:
        y *= at["alpha"]
    if c is not None and batched[0] and not batched[2] and c.ndim == 1 and at.get("beta", 1.0) == 1.0:
        y += c  # a bias row on a batch of rows: the common case, without the general broadcast below
    elif c is not None:
        y, c = align([y, c], [batched[0] or batched[1], batched[2]])
        shape, y = y.shape, y + at.get("beta", 1.0) * c
        if y.shape != shape:
            raise ValueError("C does not broadcast to the shape of A·B")
    return y


def stacked_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``; a stack of matrices times one matrix as one BLAS call (numpy would multiply them one by one)."""
    if a.ndim > 2 and b.ndim == 2:
        return (a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]) @ b).reshape(a.shape[:-1] + b.shape[-1:])
    return a @ b


def matmul_operands(a: np.ndarray, b: np.ndarray, ba: bool, bb: bool) -> tuple[np.ndarray, np.ndarray, Callable]:
    """MatMul operands as stacks of matrices that numpy multiplies as ONNX does per sample, and the
    function shaping the product back (numpy ``matmul`` semantics on the ONNX shapes).

    A 1-D operand is promoted (``[K]`` to ``[1, K]`` on the left, ``[K, 1]`` on the right, the added
    axis removed from the product); batch dimensions of different ranks are aligned after the
    sample axis, which constants gain as a leading 1.
    """
    sample = ba or bb
    ra, rb = a.ndim - ba, b.ndim - bb
    if ra == 1:
        a = a[..., None, :]
    if rb == 1:
        b = b[..., :, None]
    rank = max(ra, rb, 2)

    def lift(x: np.ndarray, is_batched: bool, r: int) -> np.ndarray:
        pad = (1,) * (rank - max(r, 2))
        return x.reshape(x.shape[:1] + pad + x.shape[1:]) if is_batched else x.reshape((1,) * sample + pad + x.shape)

    def restore(y: np.ndarray) -> np.ndarray:
        return y.reshape(y.shape[:-2] + ((y.shape[-2],) if ra > 1 else ()) + ((y.shape[-1],) if rb > 1 else ()))

    return lift(a, ba, ra), lift(b, bb, rb), restore


def matmul(node, args, batched):
    a, b = args
    if batched[0] and not batched[1] and b.ndim == 2:  # data times a weight matrix: one BLAS call
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + b.shape[1:])
    A, B, restore = matmul_operands(a, b, *batched)
    return restore(A @ B)


# --- shape manipulation ----------------------------------------------------------------


def flatten(node, args, batched):
    x = args[0]
    axis = node.attrs.get("axis", 1)
    shape = x.shape[1:]
    if not -len(shape) <= axis <= len(shape):
        raise ValueError(f"axis {axis} is out of range for rank {len(shape)}")
    if axis < 0:
        axis += len(shape)
    return x.reshape(x.shape[0], int(np.prod(shape[:axis], dtype=np.int64)), -1)


def reshape_target(in_shape: tuple[int, ...], target: np.ndarray) -> tuple[int, ...]:
    """ONNX Reshape semantics for one sample: 0 copies the input dimension, -1 is inferred."""
    if list(target).count(-1) > 1 or any(int(d) < -1 for d in target):
        raise ValueError(f"target shape {list(target)} has more than one -1 or a negative size")
    out = [int(in_shape[i]) if int(d) == 0 else int(d) for i, d in enumerate(target)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        out[out.index(-1)] = int(np.prod(in_shape, dtype=np.int64)) // max(known, 1)
    return tuple(out)


def reshape(node, args, batched):
    x, target = args
    return x.reshape((x.shape[0],) + reshape_target(x.shape[1:], target))


def transpose(node, args, batched):
    x = args[0]
    perm = node.attrs.get("perm") or list(reversed(range(x.ndim - 1)))
    return np.transpose(x, [0] + [p + 1 for p in perm])


def _axes(node, rank: int) -> list[int]:
    axes = [a + rank if a < 0 else a for a in node.attrs.get("axes", [])]
    if len(set(axes)) != len(axes) or not all(0 <= a < rank for a in axes):
        raise ValueError(f"axes {node.attrs['axes']} repeat or are out of range for rank {rank}")
    return sorted(axes)


def unsqueeze(node, args, batched):
    x = args[0]
    out_rank = x.ndim - 1 + len(node.attrs["axes"])
    for a in _axes(node, out_rank):
        x = np.expand_dims(x, a + 1)
    return x


def squeeze(node, args, batched):
    x = args[0]
    axes = _axes(node, x.ndim - 1) or [i for i, d in enumerate(x.shape[1:]) if d == 1]
    return np.squeeze(x, axis=tuple(a + 1 for a in axes))


def concat(node, args, batched):
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


def strides_dilations(attrs: dict, nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A conv's or pool's strides and dilations, 1 where not given."""
    return tuple(attrs.get("strides") or [1] * nd), tuple(attrs.get("dilations") or [1] * nd)


@dataclass(frozen=True)
class Windows:
    """Where a Conv or pooling kernel reads its input: strides, dilations, begin+end pads, output
    size, and the end padding beyond ``pads`` that ceil-mode pooling needs (``extra``)."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    out: tuple[int, ...]
    extra: tuple[int, ...]

    @classmethod
    def of(cls, attrs: dict, in_spatial: tuple[int, ...], kernel: tuple[int, ...]) -> "Windows":
        nd = len(kernel)
        strides, dil = strides_dilations(attrs, nd)
        pads = tuple(explicit_pads(attrs, in_spatial, kernel))
        span = [(kernel[i] - 1) * dil[i] + 1 for i in range(nd)]
        padded = [in_spatial[i] + pads[i] + pads[i + nd] for i in range(nd)]
        ceil = bool(attrs.get("ceil_mode", 0))
        rnd = np.ceil if ceil else np.floor
        out = [int(rnd((padded[i] - span[i]) / strides[i])) + 1 for i in range(nd)]
        if ceil:  # a last window starting inside the end padding is dropped (ONNX, PyTorch)
            out = [o - 1 if (o - 1) * strides[i] >= in_spatial[i] + pads[i] else o for i, o in enumerate(out)]
        out = tuple(out)
        extra = tuple(max(0, (out[i] - 1) * strides[i] + span[i] - padded[i]) for i in range(nd))
        return cls(tuple(kernel), strides, dil, pads, out, extra)

    def pad_widths(self, extra: bool = True) -> list[tuple[int, int]]:
        """``np.pad`` widths for a ``[samples, channels, *spatial]`` array (with the ceil overhang)."""
        nd = len(self.kernel)
        return [(0, 0), (0, 0)] + [(self.pads[i], self.pads[i + nd] + (self.extra[i] if extra else 0)) for i in range(nd)]

    def slices(self):
        """For every kernel offset, the strided slices of the padded input it reads."""
        nd = len(self.kernel)
        for k in itertools.product(*[range(s) for s in self.kernel]):
            yield k, (Ellipsis,) + tuple(
                slice(k[i] * self.dilations[i], k[i] * self.dilations[i] + self.strides[i] * (self.out[i] - 1) + 1,
                      self.strides[i]) for i in range(nd))

    def average_counts(self, in_spatial: tuple[int, ...], include_pad: bool) -> np.ndarray:
        """AveragePool divisors ``[1, 1, *out]``: real cells, plus explicit pads when ``include_pad``
        (never the ceil-mode overhang)."""
        nd = len(self.kernel)
        mask = np.ones((1, 1) + tuple(in_spatial))
        if include_pad:
            mask = np.pad(mask, self.pad_widths(extra=False), constant_values=1)
            mask = np.pad(mask, [(0, 0), (0, 0)] + [(0, self.extra[i]) for i in range(nd)])
        else:
            mask = np.pad(mask, self.pad_widths())
        counts = np.zeros((1, 1) + self.out)
        for _, sl in self.slices():
            counts += mask[sl]
        return counts


def _kernel_operands(node, args) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, tuple[int, ...]]:
    """A Conv's or ConvTranspose's weights and bias (or None), its input with the axes before the channels
    folded into one, and those axes."""
    x, w = args[0], args[1]
    if list(node.attrs.get("kernel_shape", w.shape[2:])) != list(w.shape[2:]):
        raise ValueError(f"kernel_shape {node.attrs['kernel_shape']} is not the weights' {list(w.shape[2:])}")
    xf, lead = merge_lead(x, w.ndim - 1)
    return w, args[2] if len(args) > 2 else None, xf, lead


#: Below this many input channels per group a Conv is one product over all kernel offsets at once (im2col): per
#: offset, products with so few terms cost less than the passes over the output that add them up (8× on a
#: 1-channel 5×5 stem).
_FEW_CHANNELS = 8


def conv(node, args, batched):
    """Per kernel offset one BLAS product per group, channels last: ``[samples·positions, c] @ [c, o]`` (with few
    input channels, one product of every offset's columns side by side)."""
    w, b, xf, lead = _kernel_operands(node, args)
    nd = w.ndim - 2
    win = Windows.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    group = node.attrs.get("group", 1)
    xp = np.pad(xf, win.pad_widths())
    s, c = xf.shape[:2]
    o = w.shape[0]
    cg, og = c // group, o // group
    xl = np.moveaxis(xp.reshape((s, group, cg) + xp.shape[2:]), (1, 2), (-2, -1))  # [s, *padded, group, cg]
    wg = w.reshape((group, og, cg) + win.kernel)
    n = s * int(np.prod(win.out))
    if cg < _FEW_CHANNELS:
        offsets = list(win.slices())
        cols = np.stack([xl[(slice(None),) + sl[1:]].reshape(n, group, cg) for _, sl in offsets], axis=2)
        wk = np.stack([wg[(Ellipsis,) + k] for k, _ in offsets], axis=2)  # [group, og, offsets, cg]
        y = cols.reshape(n, group, -1).swapaxes(0, 1) @ wk.reshape(group, og, -1).swapaxes(1, 2)
    else:
        y = np.zeros((group, n, og))
        for k, sl in win.slices():
            y += xl[(slice(None),) + sl[1:]].reshape(n, group, cg).swapaxes(0, 1) @ wg[(Ellipsis,) + k].swapaxes(1, 2)
    y = np.moveaxis(y.reshape((group, s) + win.out + (og,)), (0, -1), (1, 2)).reshape((s, o) + win.out)
    if b is not None:
        y = y + b.reshape((1, o) + (1,) * nd)
    return y.reshape(lead + y.shape[1:])


@dataclass(frozen=True)
class Scatter:
    """Where a ConvTranspose writes: input position ``i`` adds its kernel at ``i·stride + k·dilation`` of the
    uncropped output (``full`` cells; ``window.slices()`` gives those positions per kernel offset ``k``), and
    the output is the ``out`` cells of it from ``begin`` (the begin pads)."""

    window: Windows
    begin: tuple[int, ...]
    out: tuple[int, ...]
    full: tuple[int, ...]
    reach: tuple[int, ...]  # the cells the kernel reaches (``full`` may add output padding beyond them)

    @classmethod
    def of(cls, attrs: dict, in_spatial: tuple[int, ...], kernel: tuple[int, ...]) -> "Scatter":
        nd = len(kernel)
        strides, dil = strides_dilations(attrs, nd)
        pads = transposed_pads(attrs, in_spatial, kernel)
        reach = tuple(strides[i] * (in_spatial[i] - 1) + (kernel[i] - 1) * dil[i] + 1 for i in range(nd))
        extra = list(attrs.get("output_padding") or [0] * nd)
        out = tuple(reach[i] + extra[i] - pads[i] - pads[i + nd] for i in range(nd))
        if min(pads) < 0 or min(out) <= 0:
            raise ValueError(f"pads {pads} leave no output or are negative")
        full = tuple(max(reach[i], pads[i] + out[i]) for i in range(nd))
        return cls(Windows(tuple(kernel), strides, dil, (0,) * (2 * nd), tuple(in_spatial), (0,) * nd),
                   tuple(pads[:nd]), out, full, reach)

    def cells(self) -> tuple:
        """The index of the output in the uncropped array ``[samples, ..., *full]``."""
        return (Ellipsis,) + tuple(slice(b, b + o) for b, o in zip(self.begin, self.out))


def transposed_pads(attrs: dict, in_spatial: tuple[int, ...], kernel: tuple[int, ...]) -> list[int]:
    """Begin and end pads (ONNX order) of a ConvTranspose, resolving ``output_shape`` and ``auto_pad`` as
    onnxruntime does: the total padding that gives the asked output (for ``auto_pad=SAME_*``, ``input·stride``
    cells or all the convolution reaches if fewer), the odd cell at the end for SAME_UPPER, else at the beginning."""
    nd = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    shape = attrs.get("output_shape")
    if not shape and auto not in ("SAME_UPPER", "SAME_LOWER"):
        return [0] * (2 * nd) if auto == "VALID" else list(attrs.get("pads") or [0] * (2 * nd))
    strides, dil = strides_dilations(attrs, nd)
    extra = attrs.get("output_padding") or [0] * nd
    out = list(shape[-nd:]) if shape else [in_spatial[i] * strides[i] for i in range(nd)]
    total = [strides[i] * (in_spatial[i] - 1) + extra[i] + (kernel[i] - 1) * dil[i] + 1 - out[i] for i in range(nd)]
    if not shape:
        total = [max(0, t) for t in total]
    if min(total) < 0:
        raise ValueError(f"output_shape {out} is larger than the transposed convolution reaches")
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    return small + big if auto == "SAME_UPPER" else big + small


def conv_transpose(node, args, batched):
    w, b, xf, lead = _kernel_operands(node, args)
    nd = w.ndim - 2
    sc = Scatter.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    group = node.attrs.get("group", 1)
    s, c = xf.shape[:2]
    if w.shape[0] != c:
        raise ValueError(f"the weights are for {w.shape[0]} input channels, the input has {c}")
    cg, og = c // group, w.shape[1]
    xg = xf.reshape((s, group, cg) + xf.shape[2:])
    wg = w.reshape((group, cg, og) + sc.window.kernel)
    y = np.zeros((s, group, og) + sc.full)
    for k, sl in sc.window.slices():
        y[sl] += np.einsum("sgc...,gco->sgo...", xg, wg[(Ellipsis,) + k], optimize=True)
    y = y[sc.cells()].reshape((s, group * og) + sc.out)
    if b is not None:
        y += b.reshape((1, group * og) + (1,) * nd)
    return y.reshape(lead + y.shape[1:])


def pool(kind: str):
    def op(node, args, batched):
        x = args[0]
        kernel = tuple(node.attrs["kernel_shape"])
        xf, lead = merge_lead(x, len(kernel) + 1)
        win = Windows.of(node.attrs, xf.shape[2:], kernel)
        if kind == "max":
            xp = np.pad(xf, win.pad_widths(), constant_values=-np.inf)
            y = np.full(xf.shape[:2] + win.out, -np.inf)
            for _, sl in win.slices():
                y = np.maximum(y, xp[sl])
        else:
            xp = np.pad(xf, win.pad_widths())
            y = np.zeros(xf.shape[:2] + win.out)
            for _, sl in win.slices():
                y += xp[sl]
            y = y / win.average_counts(xf.shape[2:], bool(node.attrs.get("count_include_pad", 0)))
        return y.reshape(lead + y.shape[1:])
    return op


def batchnorm_factor(node, scale: np.ndarray | float, var: np.ndarray) -> np.ndarray:
    """A BatchNormalization's factor per channel, ``γ/√(σ² + ε)``: the one place the formula is written."""
    return scale / np.sqrt(var + node.attrs.get("epsilon", 1e-5))


def batchnorm(node, args, batched):
    x, scale, bias, mean, var = args[:5]
    if any(v.size != x.shape[2] for v in (scale, bias, mean, var)):
        raise ValueError(f"scale, bias, mean and variance need one value per channel ({x.shape[2]})")
    s = batchnorm_factor(node, scale, var)
    shape = (1,) * 2 + (-1,) + (1,) * (x.ndim - 3)  # sample, batch, channel, spatial...
    return (x - mean.reshape(shape)) * s.reshape(shape) + bias.reshape(shape)


