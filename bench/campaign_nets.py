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
    """One generated network: its proto, named boxes, and whether it is a dense ReLU chain."""

    proto: onnx.ModelProto
    boxes: list[tuple[str, Box]]
    dense: bool
    description: str


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
