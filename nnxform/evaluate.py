"""Numpy forward evaluation of the IR, vectorised over samples.

Every value that depends on the network input carries one extra leading *sample* axis
on top of its ONNX shape (which includes the model's own batch dimension of 1), so one
call evaluates thousands of points. Constants carry no sample axis.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import NnxformError, UnsupportedOperator

if TYPE_CHECKING:
    from .ir import Model


def run(model: "Model", xs: np.ndarray, keep: bool = False) -> dict[str, np.ndarray] | np.ndarray:
    """Evaluate ``model`` on samples ``xs`` of shape ``(n, *model.input_shape)`` in float64.

    Returns the first output (with its sample axis), or every computed tensor when ``keep``.
    """
    if model.unsupported:
        raise UnsupportedOperator(next(iter(model.unsupported.values())))
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
        try:
            values[node.outputs[0]] = fn(node, args, batched)
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:  # an ill-formed node
            shapes = ", ".join(str(list(a.shape[1:] if b else a.shape)) for a, b in zip(args, batched) if a is not None)
            raise NnxformError(f"{node.op} node '{node.name}' cannot be computed on inputs of shape {shapes} "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    return values if keep else values[model.output_names[0]]


def tensor_shapes(model: "Model") -> dict[str, tuple[int, ...]]:
    """ONNX shape (without the sample axis) of every tensor, found by evaluating one zero sample
    (in onnxruntime for a model with nodes nnxform cannot evaluate)."""
    if model.unsupported:
        from .runtime import onnxruntime_shapes

        return onnxruntime_shapes(model)
    with np.errstate(all="ignore"):  # a division by data is 0/0 here: only the shapes count
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
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    at = node.attrs
    if a.ndim - batched[0] != 2 or b.ndim - batched[1] != 2:
        raise ValueError("Gemm multiplies 2-D matrices")
    if at.get("transA", 0):
        a = np.swapaxes(a, -1, -2)
    if at.get("transB", 0):
        b = np.swapaxes(b, -1, -2)
    y = at.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y, c = _align([y, c], [batched[0] or batched[1], batched[2]])
        shape, y = y.shape, y + at.get("beta", 1.0) * c
        if y.shape != shape:
            raise ValueError("C does not broadcast to the shape of A·B")
    return y


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


def _matmul(node, args, batched):
    a, b = args
    if batched[0] and not batched[1] and b.ndim == 2:  # data times a weight matrix: one BLAS call
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + b.shape[1:])
    A, B, restore = matmul_operands(a, b, *batched)
    return restore(A @ B)


# --- shape manipulation ----------------------------------------------------------------


def _flatten(node, args, batched):
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


def _reshape(node, args, batched):
    x, target = args
    return x.reshape((x.shape[0],) + reshape_target(x.shape[1:], target))


def _transpose(node, args, batched):
    x = args[0]
    perm = node.attrs.get("perm") or list(reversed(range(x.ndim - 1)))
    return np.transpose(x, [0] + [p + 1 for p in perm])


def _axes(node, rank: int) -> list[int]:
    axes = [a + rank if a < 0 else a for a in node.attrs.get("axes", [])]
    if len(set(axes)) != len(axes) or not all(0 <= a < rank for a in axes):
        raise ValueError(f"axes {node.attrs['axes']} repeat or are out of range for rank {rank}")
    return sorted(axes)


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
        strides = tuple(attrs.get("strides") or [1] * nd)
        dil = tuple(attrs.get("dilations") or [1] * nd)
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


def _conv(node, args, batched):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    nd = w.ndim - 2
    if list(node.attrs.get("kernel_shape", w.shape[2:])) != list(w.shape[2:]):
        raise ValueError(f"kernel_shape {node.attrs['kernel_shape']} is not the weights' {list(w.shape[2:])}")
    xf, lead = _merge_lead(x, nd + 1)
    win = Windows.of(node.attrs, xf.shape[2:], tuple(w.shape[2:]))
    group = node.attrs.get("group", 1)
    xp = np.pad(xf, win.pad_widths())
    s, c = xf.shape[:2]
    o = w.shape[0]
    cg, og = c // group, o // group
    xg = xp.reshape((s, group, cg) + xp.shape[2:])
    wg = w.reshape((group, og, cg) + win.kernel)
    y = np.zeros((s, group, og) + win.out)
    for k, sl in win.slices():
        y += np.einsum("sgc...,goc->sgo...", xg[sl], wg[(Ellipsis,) + k], optimize=True)
    y = y.reshape((s, o) + win.out)
    if b is not None:
        y += b.reshape((1, o) + (1,) * nd)
    return y.reshape(lead + y.shape[1:])


def _pool(kind: str):
    def op(node, args, batched):
        x = args[0]
        kernel = tuple(node.attrs["kernel_shape"])
        xf, lead = _merge_lead(x, len(kernel) + 1)
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


def _batchnorm(node, args, batched):
    x, scale, bias, mean, var = args[:5]
    if any(v.size != x.shape[2] for v in (scale, bias, mean, var)):
        raise ValueError(f"scale, bias, mean and variance need one value per channel ({x.shape[2]})")
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
