"""The adversarial campaign's network and box generators: seeded ONNX protos built with ``onnx.helper``.

Every generator takes a seed and returns a ``Case``: the ONNX proto as a user would hand it over, the
boxes to check it on, and whether it is a dense Gemm/ReLU chain (those are also paired with a perturbed
copy for the discrepancy analyses). The same seed gives the same network and boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnxform.domain import Box

Layer = tuple[np.ndarray, np.ndarray]  # (W of shape (out, in), b of shape (out,))


@dataclass
class Case:
    """One generated network: its proto, named boxes, whether it is a dense ReLU chain, what to check on it."""

    proto: onnx.ModelProto
    boxes: list[tuple[str, Box]]
    dense: bool
    description: str
    checks: tuple[str, ...] = ("bounds",)  # the claim kinds bench/campaign.py checks on it (``ROUND3_CHECKS``)
    scale: float = 1.0  # the weight scale it was generated at (a NotExact refusal up to 1e3 is a false refusal)


def model_proto(nodes: list[onnx.NodeProto], input_shape: list[int], weights: dict[str, np.ndarray],
                dtype: type = np.float32) -> onnx.ModelProto:
    """An opset-13 ONNX model with input ``x``, output ``y`` and the given initializers (cast to ``dtype``)."""
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.asarray(v, dtype=dtype if np.asarray(v).dtype.kind == "f" else np.int64), k)
             for k, v in weights.items()]
    graph = helper.make_graph(nodes, "campaign", [helper.make_tensor_value_info("x", elem, input_shape)],
                              [helper.make_tensor_value_info("y", elem, None)], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 7
    return proto


def chain_proto(layers: list[Layer], dtype: type = np.float32, matmul: bool = False) -> onnx.ModelProto:
    """A dense ReLU chain: ``Gemm`` (transB=1) per layer, or ``MatMul`` + ``Add``; pre-activations ``z{k}``."""
    nodes, weights, prev = [], {}, "x"
    for k, (W, b) in enumerate(layers):
        out = "y" if k == len(layers) - 1 else f"z{k}"
        weights[f"b{k}"] = b
        if matmul:
            weights[f"W{k}"] = W.T
            nodes += [helper.make_node("MatMul", [prev, f"W{k}"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"b{k}"], [out])]
        else:
            weights[f"W{k}"] = W
            nodes.append(helper.make_node("Gemm", [prev, f"W{k}", f"b{k}"], [out], transB=1))
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"]))
            prev = f"a{k}"
    return model_proto(nodes, [1, layers[0][0].shape[1]], weights, dtype)


def random_layers(rng: np.random.Generator, widths: list[int], scale: float = 1.0, gain: float = 1.0) -> list[Layer]:
    """N(0,1)/sqrt(fan_in)·gain weights and N(0,1) biases, both times ``scale`` (``test_milp_soundness.scaled_chain``)."""
    return [(rng.normal(size=(widths[k + 1], widths[k])) / np.sqrt(widths[k]) * gain * scale,
             rng.normal(size=widths[k + 1]) * scale) for k in range(len(widths) - 1)]


def unit_boxes(rng: np.random.Generator, n: int) -> list[tuple[str, Box]]:
    """``[-1, 1]^n`` and a random sub-box (centre in [-1, 1], half-widths in [0.01, 0.5])."""
    c, h = rng.uniform(-1, 1, n), rng.uniform(0.01, 0.5, n)
    return [("[-1,1]", Box(-np.ones(n), np.ones(n))), ("sub-box", Box(np.clip(c - h, -1, 1), np.clip(c + h, -1, 1)))]


def dense(seed: int, dtype: type = np.float32) -> Case:
    """2–10 inputs, 1–4 hidden layers of 2–24 units, 1–4 outputs; Gemm or MatMul+Add."""
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(2, 11))] + [int(w) for w in rng.integers(2, 25, size=int(rng.integers(1, 5)))] \
        + [int(rng.integers(1, 5))]
    matmul = bool(rng.integers(2))
    proto = chain_proto(random_layers(rng, widths), dtype, matmul)
    return Case(proto, unit_boxes(rng, widths[0]), True, f"{'MatMul+Add' if matmul else 'Gemm'} {widths}")


def scaled(seed: int, scale: float) -> Case:
    """The issue's generator: 3 inputs, 2–3 hidden layers of 3–7 units, 2 outputs, weights and biases × scale;
    widths and weights each from ``default_rng(seed)`` (seed 5 at scale 1e3 is the issue's 3→7→3→7→2 chain)."""
    rng = np.random.default_rng(seed)
    widths = [3] + [int(w) for w in rng.integers(3, 8, size=int(rng.integers(2, 4)))] + [2]
    proto = chain_proto(random_layers(np.random.default_rng(seed), widths, scale))
    return Case(proto, unit_boxes(np.random.default_rng([seed, 1]), 3), True, f"Gemm {widths} ×{scale:g}")


def deep(seed: int) -> Case:
    """12–20 affine layers of 3–8 units on 2–5 inputs (gain 1.3 keeps the values from dying out)."""
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(12, 21))
    widths = [int(rng.integers(2, 6))] + [int(w) for w in rng.integers(3, 9, size=depth - 1)] + [int(rng.integers(1, 4))]
    proto = chain_proto(random_layers(rng, widths, gain=1.3))
    return Case(proto, unit_boxes(rng, widths[0]), True, f"Gemm depth {depth} {widths}")


def tiny(seed: int) -> Case:
    """A dense net on boxes of width 1e-6: around a point of [-1, 1]^n and around a point of [-50, 50]^n."""
    case = dense(seed)
    rng = np.random.default_rng(seed + 1)
    n = case.boxes[0][1].size
    boxes = []
    for name, r in (("width 1e-6", 1.0), ("width 1e-6 at |x|<=50", 50.0)):
        c = rng.uniform(-r, r, n)
        boxes.append((name, Box(c - 5e-7, c + 5e-7)))
    return Case(case.proto, boxes, True, case.description)


def degenerate(seed: int) -> Case:
    """Boxes with lower == upper: odd seeds a dense net (some inputs fixed; all fixed), even seeds the issue's
    cancellation net (64 inputs, first-layer weights ~1e4, hidden ~1, output ~0 at the fixed point)."""
    rng = np.random.default_rng(seed)
    if seed % 2:
        case = dense(seed)
        n = case.boxes[0][1].size
        c, h = rng.uniform(-1, 1, n), rng.uniform(0.05, 0.5, n)
        fixed = rng.random(n) < 0.5
        fixed[int(rng.integers(n))] = True
        lo, hi = np.where(fixed, c, c - h), np.where(fixed, c, c + h)
        return Case(case.proto, [("some fixed", Box(lo, hi)), ("all fixed", Box(c, c))], True, case.description)
    hidden, outputs = int(rng.integers(4, 17)), int(rng.integers(1, 4))
    x0 = rng.uniform(-1, 1, 64)
    W1 = rng.normal(size=(hidden, 64)) * 1e4
    b1 = -(W1 @ x0) + rng.uniform(0.5, 1.5, hidden)
    W2 = rng.normal(size=(outputs, hidden))
    b2 = -(W2 @ np.maximum(W1 @ x0 + b1, 0.0))
    fixed = np.zeros(64, dtype=bool)
    fixed[:60] = True
    boxes = [("all fixed (cancellation)", Box(x0, x0)),
             ("4 of 64 free by 1e-6 (cancellation)", Box(np.where(fixed, x0, x0 - 1e-6), np.where(fixed, x0, x0 + 1e-6)))]
    return Case(chain_proto([(W1, b1), (W2, b2)]), boxes, True, f"cancellation Gemm [64, {hidden}, {outputs}]")


def conv_bn(seed: int) -> Case:
    """1–2 blocks of Conv (kernel 2–3, stride 1–2, pads 0–1) + BatchNormalization + Relu, Flatten, Gemm."""
    rng = np.random.default_rng(seed)
    c, side = int(rng.integers(1, 4)), int(rng.integers(4, 7))
    nodes, weights, prev, shape = [], {}, "x", (c, side, side)
    blocks = int(rng.integers(1, 3))
    for k in range(blocks):
        out_c, kernel = int(rng.integers(2, 4)), int(rng.integers(2, 4))
        stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        if shape[1] + 2 * pad < kernel:
            pad = kernel
        weights[f"cw{k}"] = rng.normal(size=(out_c, shape[0], kernel, kernel)) / np.sqrt(shape[0] * kernel * kernel)
        weights[f"cb{k}"] = rng.normal(size=out_c) * 0.1
        weights[f"g{k}"], weights[f"be{k}"] = rng.uniform(0.5, 2.0, out_c), rng.normal(size=out_c) * 0.5
        weights[f"mu{k}"], weights[f"var{k}"] = rng.normal(size=out_c) * 0.5, rng.uniform(0.1, 2.0, out_c)
        nodes += [helper.make_node("Conv", [prev, f"cw{k}", f"cb{k}"], [f"c{k}"], kernel_shape=[kernel, kernel],
                                   strides=[stride, stride], pads=[pad] * 4),
                  helper.make_node("BatchNormalization", [f"c{k}", f"g{k}", f"be{k}", f"mu{k}", f"var{k}"], [f"z{k}"],
                                   epsilon=1e-5),
                  helper.make_node("Relu", [f"z{k}"], [f"a{k}"])]
        side_out = (shape[1] + 2 * pad - kernel) // stride + 1
        shape, prev = (out_c, side_out, side_out), f"a{k}"
    flat, outputs = int(np.prod(shape)), int(rng.integers(2, 5))
    weights["W"], weights["b"] = rng.normal(size=(outputs, flat)) / np.sqrt(flat), rng.normal(size=outputs) * 0.1
    nodes += [helper.make_node("Flatten", [prev], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    proto = model_proto(nodes, [1, c, side, side], weights)
    n = c * side * side
    centre = rng.uniform(0, 1, n)
    boxes = [("[0,1]", Box(np.zeros(n), np.ones(n))),
             ("eps 0.05", Box(np.clip(centre - 0.05, 0, 1), np.clip(centre + 0.05, 0, 1)))]
    return Case(proto, boxes, False, f"{blocks} conv+BN block(s) on {c}x{side}x{side}")


def _shape_case(k: int, rng: np.random.Generator) -> tuple[list[onnx.NodeProto], list[int], dict[str, np.ndarray], str]:
    """Operator shape ``k`` of ``SHAPES`` (nodes, input shape, weights, description), output ``y`` after a ReLU."""
    w = rng.normal
    if k == 0:  # the x[4] @ W[2,4,3] (rank-1 data, rank-3 constant)
        return ([helper.make_node("MatMul", ["x", "W"], ["z0"]), helper.make_node("Relu", ["z0"], ["a0"]),
                 helper.make_node("MatMul", ["a0", "V"], ["y"])], [4],
                {"W": w(size=(2, 4, 3)), "V": w(size=(3, 2))}, "x[4] @ W[2,4,3] -> Relu -> @ V[3,2]")
    if k == 8:  # the form exactly: no ReLU
        return ([helper.make_node("MatMul", ["x", "W"], ["y"])], [4], {"W": w(size=(2, 4, 3))}, "x[4] @ W[2,4,3]")
    if k == 7:
        return ([helper.make_node("MatMul", ["x", "W"], ["z0"]), helper.make_node("Relu", ["z0"], ["a0"]),
                 helper.make_node("Mul", ["a0", "g"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])], [4],
                {"W": w(size=(2, 4, 3)), "g": w(size=(2, 3)), "c": w(size=3)}, "x[4] @ W[2,4,3] -> Relu -> * g[2,3] + c[3]")
    if k == 1:
        return ([helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["z0"]),
                 helper.make_node("Relu", ["z0"], ["a0"]), helper.make_node("MatMul", ["a0", "V"], ["y"])], [1, 1, 4],
                {"W": w(size=(2, 4, 3)), "b": w(size=(2, 1, 3)), "V": w(size=(3, 2))},
                "x[1,1,4] @ W[2,4,3] + b[2,1,3] -> Relu -> @ V[3,2]")
    if k == 2:
        return ([helper.make_node("Sub", ["x", "mu"], ["s"]), helper.make_node("Div", ["s", "sd"], ["d"]),
                 helper.make_node("Mul", ["d", "g"], ["m"]), helper.make_node("Gemm", ["m", "W", "b"], ["z0"], transB=1),
                 helper.make_node("Relu", ["z0"], ["a0"]), helper.make_node("Gemm", ["a0", "V", "c"], ["y"])], [1, 5],
                {"mu": w(size=5), "sd": rng.uniform(0.2, 2, 5), "g": w(size=(1, 5)), "W": w(size=(6, 5)), "b": w(size=6),
                 "V": w(size=(6, 3)), "c": w(size=3)}, "(x - mu) / sd * g -> Gemm -> Relu -> Gemm (transB=0)")
    if k == 3:
        return ([helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
                 helper.make_node("Flatten", ["t"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["z0"], transB=1),
                 helper.make_node("Relu", ["z0"], ["a0"]), helper.make_node("Gemm", ["a0", "V", "c"], ["y"], transB=1)],
                [1, 6], {"shape": np.array([1, 2, 3]), "W": w(size=(5, 6)), "b": w(size=5), "V": w(size=(2, 5)),
                         "c": w(size=2)}, "Reshape [1,2,3] -> Transpose -> Flatten -> Gemm -> Relu -> Gemm")
    if k == 4:
        return ([helper.make_node("Conv", ["x", "K"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["a0"]),
                 helper.make_node("MaxPool", ["a0"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                 helper.make_node("Conv", ["p", "K2", "kb"], ["z1"]), helper.make_node("Relu", ["z1"], ["a1"]),
                 helper.make_node("AveragePool", ["a1"], ["q"], kernel_shape=[2, 2]),
                 helper.make_node("Flatten", ["q"], ["f"]), helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)],
                [1, 2, 6, 6], {"K": w(size=(3, 2, 3, 3)) / 4, "K2": w(size=(3, 3, 2, 2)) / 3, "kb": w(size=3),
                               "W": w(size=(2, 3)), "b": w(size=2)},
                "Conv -> Relu -> MaxPool -> Conv -> Relu -> AveragePool -> Flatten -> Gemm")
    if k == 5:
        return ([helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["a0"]),
                 helper.make_node("Gemm", ["x", "U", "c"], ["g"], transB=1), helper.make_node("Add", ["a0", "g"], ["z1"]),
                 helper.make_node("Relu", ["z1"], ["a1"]), helper.make_node("Concat", ["a1", "a0"], ["k"], axis=1),
                 helper.make_node("Gemm", ["k", "V", "d"], ["y"], transB=1)], [1, 4],
                {"W": w(size=(5, 4)), "b": w(size=5), "U": w(size=(5, 4)), "c": w(size=5), "V": w(size=(2, 10)),
                 "d": w(size=2)}, "skip connection: Relu(Gemm) + Gemm -> Relu -> Concat -> Gemm")
    if k == 6:
        return ([helper.make_node("Unsqueeze", ["x", "ax"], ["u"]), helper.make_node("MatMul", ["u", "W"], ["m"]),
                 helper.make_node("Squeeze", ["m", "ax"], ["z0"]), helper.make_node("Relu", ["z0"], ["a0"]),
                 helper.make_node("ConvTranspose", ["a0", "T"], ["ct"]), helper.make_node("Flatten", ["ct"], ["y"])],
                [1, 3, 4], {"ax": np.array([1]), "W": w(size=(4, 4)), "T": w(size=(3, 2, 2))},
                "Unsqueeze -> MatMul -> Squeeze -> Relu -> ConvTranspose -> Flatten")
    raise ValueError(f"no operator shape {k}")


SHAPES = 9  # operator shapes ``_shape_case`` knows


def shapes(seed: int) -> Case:
    """One of the ``SHAPES`` operator shapes (broadcast MatMul, normalisation, reshapes, pools, skips), random weights."""
    rng = np.random.default_rng(seed)
    nodes, input_shape, weights, description = _shape_case(seed % SHAPES, rng)
    n = int(np.prod(input_shape))
    c, h = rng.uniform(-1, 1, n), rng.uniform(0.01, 0.5, n)
    boxes = [("[-1,1]", Box(-np.ones(n), np.ones(n))), ("sub-box", Box(np.clip(c - h, -1, 1), np.clip(c + h, -1, 1)))]
    return Case(model_proto(nodes, input_shape, weights), boxes, False, description)


# --- round three (issue 19): tiny and huge scales, rich convolutions, ConvTranspose, residual CNNs, repair ---------

#: The claims checked on the round-three families (bench/campaign.py): the bound analyses, ``stable``'s signs,
#: ``compress`` (and its certificate), prune's impact bound, quantize's drift bound, canon's and fold-bn's checked
#: rewrites; ``repair`` on the repair family.
ROUND3_CHECKS = ("bounds", "stable", "compress", "prune", "quantize", "passes")


def _scaled_layers(rng: np.random.Generator, widths: list[int], scale: float) -> list[Layer]:
    """Weights N(0,1)/sqrt(fan_in)·scale; each bias N(0,1)·0.5 at the size of its pre-activation, scale^(k+1), so that
    neurons change sign at every depth (at scale 1e-3 the second layer's pre-activations are about 1e-6)."""
    return [(rng.normal(size=(widths[k + 1], widths[k])) / np.sqrt(widths[k]) * scale,
             rng.normal(size=widths[k + 1]) * 0.5 * scale ** (k + 1)) for k in range(len(widths) - 1)]


def scaled_dense(seed: int, scale: float) -> Case:
    """2–8 inputs, 1–3 hidden layers of 3–16 units, 1–3 outputs, Gemm or MatMul+Add, every layer's weights × scale
    and its bias at its pre-activations' size (``_scaled_layers``); the boxes of ``unit_boxes``."""
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(2, 9))] + [int(w) for w in rng.integers(3, 17, size=int(rng.integers(1, 4)))] \
        + [int(rng.integers(1, 4))]
    matmul = bool(rng.integers(2))
    proto = chain_proto(_scaled_layers(rng, widths, scale), matmul=matmul)
    return Case(proto, unit_boxes(rng, widths[0]), True, f"{'MatMul+Add' if matmul else 'Gemm'} {widths} ×{scale:g}",
                ROUND3_CHECKS, scale)


def _bn(rng: np.random.Generator, weights: dict[str, np.ndarray], name: str, channels: int, size: float) -> list[str]:
    """BatchNormalization constants for values of about ``size``: γ ~ size (so the output keeps that size whatever
    ε does), β and the mean ~ size, the variance ~ size²."""
    weights[f"g{name}"], weights[f"be{name}"] = rng.uniform(0.5, 2.0, channels) * size, rng.normal(size=channels) * 0.5 * size
    weights[f"mu{name}"], weights[f"var{name}"] = rng.normal(size=channels) * 0.5 * size, rng.uniform(0.1, 2.0, channels) * size ** 2
    return [f"g{name}", f"be{name}", f"mu{name}", f"var{name}"]


def _dense_tail(rng: np.random.Generator, nodes: list, weights: dict, prev: str, flat: int, hidden: int, outputs: int) -> None:
    """Flatten → Gemm → Relu → Gemm (unit scale, as in the reported tiny-scale CNNs) from tensor ``prev``."""
    weights["W1d"], weights["b1d"] = rng.normal(size=(hidden, flat)) / np.sqrt(flat), rng.normal(size=hidden) * 0.5
    weights["W2d"], weights["b2d"] = rng.normal(size=(outputs, hidden)) / np.sqrt(hidden), rng.normal(size=outputs) * 0.1
    nodes += [helper.make_node("Flatten", [prev], ["fd"]), helper.make_node("Gemm", ["fd", "W1d", "b1d"], ["zd"], transB=1),
              helper.make_node("Relu", ["zd"], ["ad"]), helper.make_node("Gemm", ["ad", "W2d", "b2d"], ["y"], transB=1)]


def _image_boxes(rng: np.random.Generator, n: int) -> list[tuple[str, Box]]:
    """``[0, 1]^n`` and an ε = 0.05 box around a random point of it (clipped)."""
    centre = rng.uniform(0, 1, n)
    return [("[0,1]", Box(np.zeros(n), np.ones(n))),
            ("eps 0.05", Box(np.clip(centre - 0.05, 0, 1), np.clip(centre + 0.05, 0, 1)))]


def _out_size(size: int, kernel: int, stride: int, begin: int, end: int, dilation: int = 1) -> int:
    return (size + begin + end - dilation * (kernel - 1) - 1) // stride + 1


def scaled_cnn(seed: int, scale: float) -> Case:
    """1–3 blocks of Conv (kernels 1–3 per axis, strides 1–2, asymmetric pads 0–2, dilations 1–2, groups dividing
    both channel counts) [+ BatchNormalization] + Relu [+ MaxPool/AveragePool], then the unit-scale dense tail;
    each block's weights × scale and its bias, BN and values at scale^(k+1) (the reported tiny-scale CNNs)."""
    rng = np.random.default_rng(seed)
    c, side = int(rng.choice([1, 2, 4])), int(rng.integers(5, 9))
    nodes, weights, prev, shape, parts = [], {}, "x", [c, side, side], []
    blocks = int(rng.integers(1, 4))
    for k in range(blocks):
        size = scale ** (k + 1)
        for _ in range(20):  # a geometry whose output is at least 1x1
            kh, kw = (int(v) for v in rng.integers(1, 4, 2))
            sh, sw = (int(v) for v in rng.integers(1, 3, 2))
            dh, dw = (int(v) for v in rng.integers(1, 3, 2))
            pads = [int(v) for v in rng.integers(0, 3, 4)]  # top, left, bottom, right
            pads = [min(p, (kk - 1) * d) for p, kk, d in zip(pads, [kh, kw, kh, kw], [dh, dw, dh, dw])]
            oh = _out_size(shape[1], kh, sh, pads[0], pads[2], dh)
            ow = _out_size(shape[2], kw, sw, pads[1], pads[3], dw)
            if oh >= 1 and ow >= 1:
                break
        else:
            kh = kw = sh = sw = dh = dw = 1
            pads, oh, ow = [0] * 4, shape[1], shape[2]
        out_c = int(rng.choice([2, 4, 6]))
        group = int(rng.choice([g for g in (1, 2) if shape[0] % g == 0 and out_c % g == 0]))
        weights[f"cw{k}"] = rng.normal(size=(out_c, shape[0] // group, kh, kw)) / np.sqrt(shape[0] // group * kh * kw) * scale
        weights[f"cb{k}"] = rng.normal(size=out_c) * 0.5 * size
        conv_out = f"c{k}"
        nodes.append(helper.make_node("Conv", [prev, f"cw{k}", f"cb{k}"], [conv_out], kernel_shape=[kh, kw],
                                      strides=[sh, sw], pads=pads, dilations=[dh, dw], group=group))
        part = f"conv{kh}x{kw}/s{sh}{sw}/d{dh}{dw}/p{''.join(map(str, pads))}/g{group}"
        if rng.random() < 0.5:
            nodes.append(helper.make_node("BatchNormalization", [conv_out, *_bn(rng, weights, str(k), out_c, size)],
                                          [f"z{k}"], epsilon=1e-5))
            conv_out, part = f"z{k}", part + "+BN"
        nodes.append(helper.make_node("Relu", [conv_out], [f"a{k}"]))
        prev, shape = f"a{k}", [out_c, oh, ow]
        if min(oh, ow) >= 2 and rng.random() < 0.6:
            pool = str(rng.choice(["MaxPool", "AveragePool"]))
            stride = int(rng.integers(1, 3))
            nodes.append(helper.make_node(pool, [prev], [f"p{k}"], kernel_shape=[2, 2], strides=[stride, stride]))
            prev, shape = f"p{k}", [out_c, _out_size(oh, 2, stride, 0, 0), _out_size(ow, 2, stride, 0, 0)]
            part += f"+{pool[:3]}"
        parts.append(part)
    _dense_tail(rng, nodes, weights, prev, int(np.prod(shape)), int(rng.integers(3, 7)), int(rng.integers(1, 4)))
    proto = model_proto(nodes, [1, c, side, side], weights)
    return Case(proto, _image_boxes(rng, c * side * side), False,
                f"{c}x{side}x{side} {' -> '.join(parts)} -> dense ×{scale:g}", ROUND3_CHECKS, scale)


def conv_transpose(seed: int) -> Case:
    """A cGAN generator look-alike: z (3–6) → Gemm → Relu → Reshape [1, C, h, h] → ConvTranspose (kernel 2–3,
    stride 1–2, pads, output padding, groups 1–2) + BatchNormalization + Relu → ConvTranspose (→ 1–2 channels), with a
    discriminator's dense tail on odd seeds (the image itself the output on even ones); weight scale 1, 1e-3 or 1e3
    by seed (seed % 3), the values kept at their layer's size as ``scaled_cnn`` does."""
    rng = np.random.default_rng(seed)
    scale = (1.0, 1e-3, 1e3)[seed % 3]
    z, C, h = int(rng.integers(3, 7)), int(rng.choice([2, 4])), int(rng.integers(2, 4))
    weights = {"W0": rng.normal(size=(C * h * h, z)) / np.sqrt(z) * scale, "b0": rng.normal(size=C * h * h) * 0.5 * scale,
               "shape": np.array([-1, C, h, h])}
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h0"], transB=1), helper.make_node("Relu", ["h0"], ["r0"]),
             helper.make_node("Reshape", ["r0", "shape"], ["s0"])]
    k1, s1 = int(rng.integers(2, 4)), int(rng.integers(1, 3))
    op1 = [int(rng.integers(0, s1))] * 2  # output padding below the stride
    p1 = [int(v) for v in rng.integers(0, k1, 4)]  # top, left, bottom, right: below the kernel
    while (h - 1) * s1 + k1 + op1[0] - max(p1[0] + p1[2], p1[1] + p1[3]) < 2:  # an output of at least 2x2
        p1 = [max(p - 1, 0) for p in p1]
    D, group = int(rng.choice([2, 4])), int(rng.choice([1, 2]))
    weights["T1"] = rng.normal(size=(C, D // group, k1, k1)) / np.sqrt(C * k1 * k1 / s1 ** 2) * scale
    weights["c1"] = rng.normal(size=D) * 0.5 * scale ** 2
    nodes.append(helper.make_node("ConvTranspose", ["s0", "T1", "c1"], ["t1"], kernel_shape=[k1, k1], strides=[s1, s1],
                                  pads=p1, output_padding=op1, group=group))
    nodes += [helper.make_node("BatchNormalization", ["t1", *_bn(rng, weights, "1", D, scale ** 2)], ["n1"], epsilon=1e-5),
              helper.make_node("Relu", ["n1"], ["r1"])]
    side = (h - 1) * s1 - p1[0] - p1[2] + k1 + op1[0]
    side_w = (h - 1) * s1 - p1[1] - p1[3] + k1 + op1[1]
    k2, s2, out_c = int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    weights["T2"] = rng.normal(size=(D, out_c, k2, k2)) / np.sqrt(D * k2 * k2 / s2 ** 2) * scale
    weights["c2"] = rng.normal(size=out_c) * 0.5 * scale ** 3
    tail = seed % 2 == 1
    nodes.append(helper.make_node("ConvTranspose", ["r1", "T2", "c2"], ["t2" if tail else "y"], kernel_shape=[k2, k2],
                                  strides=[s2, s2]))
    description = (f"z{z} -> Gemm -> Reshape {C}x{h}x{h} -> ConvT k{k1} s{s1} p{''.join(map(str, p1))} op{op1[0]} "
                   f"g{group} +BN -> ConvT k{k2} s{s2} -> {out_c} ch")
    if tail:
        oh, ow = (side - 1) * s2 + k2, (side_w - 1) * s2 + k2
        nodes.append(helper.make_node("Relu", ["t2"], ["r2"]))
        _dense_tail(rng, nodes, weights, "r2", out_c * oh * ow, int(rng.integers(3, 6)), int(rng.integers(1, 3)))
        description += " -> dense"
    return Case(model_proto(nodes, [1, z], weights), unit_boxes(rng, z), False, f"{description} ×{scale:g}",
                ROUND3_CHECKS, scale)


def conv_deconv(seed: int) -> Case:
    """An encoder-decoder whose channels prune and compress can reach (no Reshape before them): x [1, c, s, s] →
    Conv (3x3, stride 2, pad 1) → Relu → ConvTranspose (kernel 2–3, stride 2, pads, output padding, groups 1–2) + BN
    → Relu → dense tail; weight scale 1, 1e-3 or 1e3 by seed (seed % 3)."""
    rng = np.random.default_rng(seed)
    scale = (1.0, 1e-3, 1e3)[seed % 3]
    c, side, C, D = int(rng.choice([1, 2])), int(rng.integers(4, 7)), int(rng.choice([2, 4])), int(rng.choice([2, 4]))
    k, group = int(rng.integers(2, 4)), int(rng.choice([1, 2]))
    h = (side - 1) // 2 + 1
    op = int(rng.integers(0, 2))
    pads = [int(v) for v in rng.integers(0, k, 4)]
    while (h - 1) * 2 + k + op - max(pads[0] + pads[2], pads[1] + pads[3]) < 2:
        pads = [max(p - 1, 0) for p in pads]
    oh, ow = (h - 1) * 2 + k + op - pads[0] - pads[2], (h - 1) * 2 + k + op - pads[1] - pads[3]
    weights = {"K": rng.normal(size=(C, c, 3, 3)) / np.sqrt(9 * c) * scale, "kb": rng.normal(size=C) * 0.5 * scale,
               "T": rng.normal(size=(C, D // group, k, k)) / np.sqrt(C * k * k / 4) * scale,
               "tb": rng.normal(size=D) * 0.5 * scale ** 2}
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["a0"]),
             helper.make_node("ConvTranspose", ["a0", "T", "tb"], ["t1"], kernel_shape=[k, k], strides=[2, 2], pads=pads,
                              output_padding=[op, op], group=group),
             helper.make_node("BatchNormalization", ["t1", *_bn(rng, weights, "1", D, scale ** 2)], ["n1"], epsilon=1e-5),
             helper.make_node("Relu", ["n1"], ["a1"])]
    _dense_tail(rng, nodes, weights, "a1", D * oh * ow, int(rng.integers(3, 6)), int(rng.integers(1, 3)))
    return Case(model_proto(nodes, [1, c, side, side], weights), _image_boxes(rng, c * side * side), False,
                f"{c}x{side}x{side} Conv s2 {C}ch -> ConvT k{k} s2 p{''.join(map(str, pads))} op{op} g{group} +BN {D}ch "
                f"-> dense ×{scale:g}", ROUND3_CHECKS, scale)


def residual(seed: int) -> Case:
    """A residual CNN: Conv (3x3, pad 1) → Relu → 1–2 blocks of [Conv → [BN] → Relu → Conv + skip Add → Relu] (the
    skip an identity, or on odd blocks a strided block with a 1×1 strided Conv on the skip) → [pool] → dense tail;
    weight scale 1, 1e-3 or 1e3 by seed (seed % 3), each Conv keeping its input's size."""
    rng = np.random.default_rng(seed)
    scale = (1.0, 1e-3, 1e3)[seed % 3]
    c, side, C = int(rng.choice([1, 2])), int(rng.integers(4, 7)), int(rng.choice([2, 3]))
    C = 2 if side == 6 else C  # at most about 250 ReLUs
    weights = {"K0": rng.normal(size=(C, c, 3, 3)) / np.sqrt(9 * c) * scale, "k0": rng.normal(size=C) * 0.5 * scale}
    nodes = [helper.make_node("Conv", ["x", "K0", "k0"], ["h0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h0"], ["a0"])]
    prev, size, s, parts = "a0", scale, side, []
    blocks = int(rng.integers(1, 3))
    for k in range(1, blocks + 1):
        strided = s >= 4 and rng.random() < 0.5
        st = 2 if strided else 1
        inner = size * scale  # the inner Conv's values; the block's second Conv is rescaled back to ``size``
        weights[f"K{k}a"] = rng.normal(size=(C, C, 3, 3)) / np.sqrt(9 * C) * scale
        weights[f"k{k}a"] = rng.normal(size=C) * 0.5 * inner
        weights[f"K{k}b"] = rng.normal(size=(C, C, 3, 3)) / np.sqrt(9 * C) / scale
        weights[f"k{k}b"] = rng.normal(size=C) * 0.5 * size
        nodes.append(helper.make_node("Conv", [prev, f"K{k}a", f"k{k}a"], [f"u{k}"], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], strides=[st, st]))
        u, part = f"u{k}", "Conv"
        if rng.random() < 0.5:
            nodes.append(helper.make_node("BatchNormalization", [u, *_bn(rng, weights, str(k), C, inner)], [f"n{k}"],
                                          epsilon=1e-5))
            u, part = f"n{k}", part + "+BN"
        nodes += [helper.make_node("Relu", [u], [f"v{k}"]),
                  helper.make_node("Conv", [f"v{k}", f"K{k}b", f"k{k}b"], [f"w{k}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
        skip = prev
        if strided:
            weights[f"P{k}"] = rng.normal(size=(C, C, 1, 1)) / np.sqrt(C)
            nodes.append(helper.make_node("Conv", [prev, f"P{k}"], [f"q{k}"], kernel_shape=[1, 1], strides=[2, 2]))
            skip, s = f"q{k}", (s - 1) // 2 + 1
        nodes += [helper.make_node("Add", [f"w{k}", skip], [f"z{k}"]), helper.make_node("Relu", [f"z{k}"], [f"a{k}"])]
        prev = f"a{k}"
        parts.append(f"[{part}->Relu->Conv{' s2' if strided else ''} + {'1x1 s2' if strided else 'skip'}]")
    if s >= 4 and rng.random() < 0.5:
        nodes.append(helper.make_node("AveragePool", [prev], ["pool"], kernel_shape=[2, 2], strides=[2, 2]))
        prev, s = "pool", s // 2
        parts.append("AvgPool")
    _dense_tail(rng, nodes, weights, prev, C * s * s, int(rng.integers(3, 7)), int(rng.integers(1, 4)))
    return Case(model_proto(nodes, [1, c, side, side], weights), _image_boxes(rng, c * side * side), False,
                f"{c}x{side}x{side} Conv {C}ch -> {' -> '.join(parts)} -> dense ×{scale:g}", ROUND3_CHECKS, scale)


def repair_net(seed: int) -> Case:
    """A small dense chain for ``repair`` (3–5 inputs, 1–2 hidden layers of 4–10 units, 2 outputs) on its two boxes."""
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(3, 6))] + [int(w) for w in rng.integers(4, 11, size=int(rng.integers(1, 3)))] + [2]
    return Case(chain_proto(random_layers(rng, widths)), unit_boxes(rng, widths[0]), False, f"Gemm {widths}",
                ("repair",))


#: family name -> (generator of a seed, networks in the full campaign, in --quick, seed base)
FAMILIES: dict[str, tuple[Callable[[int], Case], int, int, int]] = {
    "dense": (dense, 30, 3, 1000),
    "scale 1e2": (lambda s: scaled(s, 1e2), 15, 2, 4),  # seeds 4.. in every scale family: the same chains
    "scale 1e3": (lambda s: scaled(s, 1e3), 15, 2, 4),
    "scale 1e4": (lambda s: scaled(s, 1e4), 15, 2, 4),
    "conv+BN": (conv_bn, 20, 2, 5000),
    "float64": (lambda s: dense(s, np.float64), 15, 2, 6000),
    "deep 12-20": (deep, 15, 2, 7000),
    "tiny boxes": (tiny, 15, 2, 8000),
    "degenerate boxes": (degenerate, 15, 2, 9000),
    "op shapes": (shapes, SHAPES, SHAPES, 10000),
    # round three (issue 19): every claim kind of ROUND3_CHECKS (repair: the repair bound)
    "dense x1e-3": (lambda s: scaled_dense(s, 1e-3), 6, 1, 11000),
    "dense x1e3": (lambda s: scaled_dense(s, 1e3), 6, 1, 11000),  # the same chains as x1e-3
    "CNN x1e-3": (lambda s: scaled_cnn(s, 1e-3), 6, 1, 12000),
    "CNN x1e3": (lambda s: scaled_cnn(s, 1e3), 6, 1, 12000),  # the same geometries as x1e-3
    "ConvTranspose": (conv_transpose, 6, 2, 13000),
    "Conv-ConvTranspose": (conv_deconv, 3, 1, 13500),
    "residual CNN": (residual, 4, 1, 14000),
    "repair": (repair_net, 3, 1, 15000),
}


def perturbed(proto: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """A copy of ``proto`` with every float initializer multiplied by ``1 + 1e-3·N(0,1)`` (seeded)."""
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for init in out.graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype.kind == "f":
            init.CopyFrom(numpy_helper.from_array((value * (1 + 1e-3 * rng.normal(size=value.shape))).astype(value.dtype),
                                                  init.name))
    return out
