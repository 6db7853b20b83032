"""Write the seeded BatchNormalization test networks (onnx.helper only, no torch).

Usage: ``python models/generate.py [OUTDIR]`` (default: this folder). Every file comes from its
own seed (``SEEDS``), so running the script again reproduces the committed files byte for byte.
Tests import the builders from this file to make networks of their own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 13
IR_VERSION = 7


class NetBuilder:
    """A single-input chain of layers with random float32 weights, built one layer at a time."""

    def __init__(self, rng: np.random.Generator, input_shape: list[int]):
        self.rng = rng
        self.shape = list(input_shape)
        self.input_shape = list(input_shape)
        self.current = "x"
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def _name(self, stem: str) -> str:
        self._counts[stem] = self._counts.get(stem, 0) + 1
        return f"{stem}{self._counts[stem]}"

    def _const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def _node(self, op: str, name: str, inputs: list[str], **attrs: object) -> None:
        self.nodes.append(helper.make_node(op, [self.current] + inputs, [name], name=name, **attrs))
        self.current = name

    def gemm(self, out: int, alpha: float = 1.0, beta: float = 1.0, trans_b: int = 1) -> "NetBuilder":
        """Dense layer y = alpha·x·B + beta·c, B stored as [out, in] when trans_b else [in, out]."""
        fan_in = self.shape[1]
        W = self.rng.normal(size=(out, fan_in)) / np.sqrt(fan_in)
        b = self.rng.normal(scale=0.5, size=out)
        name = self._name("fc")
        B = (W if trans_b else W.T) / alpha
        self._node("Gemm", name, [self._const(f"{name}_B", B), self._const(f"{name}_C", b / beta)],
                   alpha=float(alpha), beta=float(beta), transB=int(trans_b))
        self.shape = [self.shape[0], out]
        return self

    def matmul(self, out: int, bias: bool = True) -> "NetBuilder":
        """Dense layer as MatMul(x, W[in, out]), followed by Add(bias) when ``bias``."""
        fan_in = self.shape[1]
        name = self._name("mm")
        W = self.rng.normal(size=(fan_in, out)) / np.sqrt(fan_in)
        self._node("MatMul", name, [self._const(f"{name}_W", W)])
        if bias:
            self._node("Add", self._name("add"), [self._const(f"{name}_b", self.rng.normal(scale=0.5, size=out))])
        self.shape = [self.shape[0], out]
        return self

    def conv(self, out: int, kernel: int = 3, stride: int = 1, pad: int = 0, group: int = 1) -> "NetBuilder":
        """Square convolution with bias; ``pad`` zeros on every side."""
        c_in, spatial = self.shape[1], self.shape[2:]
        nd = len(spatial)
        fan_in = c_in // group * kernel**nd
        W = self.rng.normal(size=(out, c_in // group) + (kernel,) * nd) / np.sqrt(fan_in)
        name = self._name("conv")
        b = self.rng.normal(scale=0.5, size=out)
        self._node("Conv", name, [self._const(f"{name}_W", W), self._const(f"{name}_b", b)],
                   kernel_shape=[kernel] * nd, strides=[stride] * nd, pads=[pad] * (2 * nd), group=group)
        self.shape = [self.shape[0], out] + [(d + 2 * pad - kernel) // stride + 1 for d in spatial]
        return self

    def bn(self, eps: float = 1e-5) -> "NetBuilder":
        """BatchNormalization with γ, β, μ ~ N(0, 1) and σ² ~ U(0.1, 2) over channel axis 1."""
        c = self.shape[1]
        name = self._name("bn")
        gamma, beta, mean = self.rng.normal(size=(3, c))
        var = self.rng.uniform(0.1, 2.0, size=c)
        values = {"scale": gamma, "bias": beta, "mean": mean, "var": var}
        stats = [self._const(f"{name}_{k}", v) for k, v in values.items()]
        self._node("BatchNormalization", name, stats, epsilon=float(eps))
        return self

    def relu(self) -> "NetBuilder":
        self._node("Relu", self._name("relu"), [])
        return self

    def flatten(self) -> "NetBuilder":
        self._node("Flatten", self._name("flatten"), [], axis=1)
        self.shape = [self.shape[0], int(np.prod(self.shape[1:]))]
        return self

    def build(self, name: str = "net") -> onnx.ModelProto:
        """The checked opset-13 model; its output tensor is called ``y``."""
        self.nodes[-1].output[0] = "y"
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, self.input_shape)],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, self.shape)],
            initializer=self.initializers,
        )
        opsets = [helper.make_opsetid("", OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="nnxform-models-generate")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def build_bn_mlp(rng: np.random.Generator, eps: float = 1e-5) -> onnx.ModelProto:
    """[1,8] → Gemm(16)→BN→Relu→Gemm(12)→BN→Relu→Gemm(4): both BN fold backward."""
    return NetBuilder(rng, [1, 8]).gemm(16).bn(eps).relu().gemm(12).bn(eps).relu().gemm(4).build("bn_mlp")


def build_bn_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """[1,2,8,8] → Conv(pads 1)→BN→Relu→Conv(stride 2)→BN(ε=1e-3)→Relu→Flatten→Gemm(5): BN fold backward."""
    net = NetBuilder(rng, [1, 2, 8, 8]).conv(4, 3, pad=1).bn().relu().conv(4, 3, stride=2).bn(1e-3).relu()
    return net.flatten().gemm(5).build("bn_cnn")


def build_bn_after_relu(rng: np.random.Generator) -> onnx.ModelProto:
    """[1,6] → Gemm→Relu→BN(ε=0.8)→Gemm→Relu→BN→Gemm: both BN fold forward."""
    return NetBuilder(rng, [1, 6]).gemm(10).relu().bn(0.8).gemm(8).relu().bn().gemm(3).build("bn_after_relu")


def build_bn_after_relu_conv(rng: np.random.Generator) -> onnx.ModelProto:
    """BN after Relu in a CNN: the one before a padded Conv stays explicit, the other two fold forward.

    [1,2,8,8] → Conv(pads 1)→Relu→BN(ε=0.8)→Conv(pads 1)→Relu→BN→Conv(stride 2, groups 2)→Relu→BN
    →Flatten→Gemm(3).
    """
    net = NetBuilder(rng, [1, 2, 8, 8]).conv(4, 3, pad=1).relu().bn(0.8).conv(4, 3, pad=1).relu().bn()
    net = net.conv(6, 3, stride=2, group=2).relu().bn()
    return net.flatten().gemm(3).build("bn_after_relu_conv")


def build_bn_on_input(rng: np.random.Generator) -> onnx.ModelProto:
    """[1,3,4,4] → BN→Conv(2×2, no pads)→Relu→Flatten→Gemm: the BN folds forward into the Conv."""
    return NetBuilder(rng, [1, 3, 4, 4]).bn().conv(4, 2).relu().flatten().gemm(3).build("bn_on_input")


#: file name → (builder, seed)
MODELS: dict[str, tuple[Callable[[np.random.Generator], onnx.ModelProto], int]] = {
    "bn_mlp.onnx": (build_bn_mlp, 1),
    "bn_cnn.onnx": (build_bn_cnn, 2),
    "bn_after_relu.onnx": (build_bn_after_relu, 3),
    "bn_after_relu_conv.onnx": (build_bn_after_relu_conv, 4),
    "bn_on_input.onnx": (build_bn_on_input, 5),
}


def generate(outdir: Path) -> list[Path]:
    """Write every model of ``MODELS`` into ``outdir`` and return the paths written."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, (build, seed) in MODELS.items():
        path = outdir / filename
        path.write_bytes(build(np.random.default_rng(seed)).SerializeToString(deterministic=True))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent):
        print(p)
