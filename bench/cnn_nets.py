"""Seeded convolutional networks for ``bench/cnn.py`` (issue 12), built with numpy and ``onnx.helper``.

- ``verivital(pool)``: 1×28×28 → Conv 24 (3×3, pad 1) → Relu → Pool 2 → Conv 32 (3×3, pad 1) → Relu → Pool 2 →
  Flatten → Gemm 100 → Relu → Gemm 10, with ``pool`` MaxPool or AveragePool (shaped like verivital's
  ``Convnet_maxpool`` / ``Convnet_avgpool``: a 28×28 MNIST input and 24+ channels).
- ``dronet()``: 1×200×200 → Conv 32 (5×5, stride 2, pad 2) → BN → Relu → MaxPool 2 → two residual blocks
  (Conv 3×3 stride 2 → BN → Relu → Conv 3×3 → BN, skip Conv 1×1 stride 2 → BN, Add, Relu; 32 then 64 channels)
  → Flatten → Gemm 2 (steering, collision), shaped like DNNV's ``dronet``; ``residual=False`` drops the skip
  branches (the same layers as one chain).
- ``slim()``: 3×32×32 → (Conv 3×3 → BN → Relu) ×3 (8 stride 2, 16 stride 2, 16 channels) → Flatten → Gemm 100 →
  Relu → Gemm 10 (cifar_base_kw's size, with BN), BN γ spread over two decades so that |γ| ranks the channels
  (network slimming). (A first version with 16×32×32, 32×16×16 and 32×8×8 ReLUs took 373 s for one
  ``prune --vnnlib``-style impact bound, so the benchmark uses this one.)
- ``cgan()``: shaped like VNN-COMP's ``cGAN_imgSz32_nCh_1``, a generator and its discriminator in one graph: latent
  [1, 5] → Gemm 512 → Relu → Reshape 32×4×4 → (ConvTranspose 4×4 stride 2 → BN → Relu) ×2 (32×8×8, 16×16×16) →
  ConvTranspose 1×32×32 (the image) → Conv 32 (3×3) → Relu → Conv 32 (4×4, stride 2, pad 1) → Relu → Flatten →
  Gemm 1 (for ``bench/resources.py``; weights from normal distributions of fixed spread, not He).
- ``resnet_2b()``: shaped like VNN-COMP 2022's ``resnet_2b`` (CIFAR): 3×32×32 → Conv 8 (3×3, stride 2) → Relu →
  two residual blocks (8 channels with an identity skip; 16 channels, stride 2, with a 1×1 stride-2 Conv skip) →
  Flatten → Gemm 100 → Relu → Gemm 10 (for ``bench/resources.py``).

Weights are He-initialised from ``numpy.random.default_rng(seed)``; the same seed writes the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, op: str) -> str:
        self.count += 1
        return f"{op}_{self.count}"

    def _init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> str:
        name = self._name("Conv")
        w = self.rng.normal(0.0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        b = self.rng.normal(0.0, 0.05, cout)
        self.nodes.append(helper.make_node(
            "Conv", [x, self._init(name + ".W", w), self._init(name + ".B", b)], [name], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, dilations=[1, 1], group=1))
        return name

    def bn(self, x: str, c: int) -> str:
        name = self._name("BatchNormalization")
        gamma = self.rng.choice([-1.0, 1.0], c) * 10.0 ** self.rng.uniform(-1.5, 0.3, c)
        beta = self.rng.normal(0.0, 0.1, c)
        mean = self.rng.normal(0.0, 0.1, c)
        var = self.rng.uniform(0.5, 2.0, c)
        ins = [x] + [self._init(f"{name}.{p}", v) for p, v in
                     (("scale", gamma), ("B", beta), ("mean", mean), ("var", var))]
        self.nodes.append(helper.make_node("BatchNormalization", ins, [name], name=name, epsilon=1e-5))
        return name

    def unary(self, op: str, x: str, **attrs) -> str:
        name = self._name(op)
        self.nodes.append(helper.make_node(op, [x], [name], name=name, **attrs))
        return name

    def pool(self, op: str, x: str, k: int, stride: int) -> str:
        return self.unary(op, x, kernel_shape=[k, k], strides=[stride, stride], pads=[0] * 4)

    def add(self, a: str, b: str) -> str:
        name = self._name("Add")
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        return name

    def gemm(self, x: str, nin: int, nout: int) -> str:
        name = self._name("Gemm")
        w = self.rng.normal(0.0, np.sqrt(2.0 / nin), (nout, nin))
        b = self.rng.normal(0.0, 0.05, nout)
        self.nodes.append(helper.make_node(
            "Gemm", [x, self._init(name + ".W", w), self._init(name + ".B", b)], [name], name=name, transB=1))
        return name

    def model(self, shape: list[int], out: str, nout: int, graph: str) -> onnx.ModelProto:
        for node in self.nodes:  # the last node's output is the graph output
            for i, name in enumerate(node.output):
                if name == out:
                    node.output[i] = "output"
        g = helper.make_graph(self.nodes, graph, [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, nout])], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="bench/cnn_nets.py")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def _finish(b: _Builder, shape: list[int], out: str, nout: int, graph: str) -> onnx.ModelProto:
    return b.model(shape, out, nout, graph)


def verivital(pool: str = "MaxPool", seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.unary("Relu", b.conv("input", 1, 24, 3, pad=1))
    x = b.pool(pool, x, 2, 2)                       # 24×14×14
    x = b.unary("Relu", b.conv(x, 24, 32, 3, pad=1))
    x = b.pool(pool, x, 2, 2)                       # 32×7×7
    x = b.unary("Flatten", x, axis=1)
    x = b.unary("Relu", b.gemm(x, 32 * 7 * 7, 100))
    return _finish(b, [1, 1, 28, 28], b.gemm(x, 100, 10), 10, f"verivital_{pool.lower()}")


def dronet(seed: int = 0, channels: int = 1, residual: bool = True) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.unary("Relu", b.bn(b.conv("input", channels, 32, 5, stride=2, pad=2), 32))   # 32×100×100
    x = b.pool("MaxPool", x, 2, 2)                                                     # 32×50×50
    cin = 32
    for cout in (32, 64):                                                              # 25×25, then 13×13
        y = b.unary("Relu", b.bn(b.conv(x, cin, cout, 3, stride=2, pad=1), cout))
        y = b.bn(b.conv(y, cout, cout, 3, pad=1), cout)
        if residual:
            skip = b.bn(b.conv(x, cin, cout, 1, stride=2), cout)
            y = b.add(y, skip)
        x = b.unary("Relu", y)
        cin = cout
    x = b.unary("Flatten", x, axis=1)
    return _finish(b, [1, channels, 200, 200], b.gemm(x, 64 * 13 * 13, 2), 2,
                   "dronet_style" if residual else "dronet_chain")


def slim(seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.unary("Relu", b.bn(b.conv("input", 3, 8, 3, stride=2, pad=1), 8))        # 8×16×16
    x = b.unary("Relu", b.bn(b.conv(x, 8, 16, 3, stride=2, pad=1), 16))           # 16×8×8
    x = b.unary("Relu", b.bn(b.conv(x, 16, 16, 3, pad=1), 16))                     # 16×8×8
    x = b.unary("Flatten", x, axis=1)
    x = b.unary("Relu", b.gemm(x, 16 * 8 * 8, 100))
    return _balanced(_finish(b, [1, 3, 32, 32], b.gemm(x, 100, 10), 10, "slim_cnn"), seed)


def _balanced(m: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """Shift the last Gemm's bias by minus the mean logit and rescale its deviations, over 400 seeded uniform
    images, so that a random network predicts every class on them, not one (labels for agreement)."""
    import onnxruntime as ort

    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(seed + 1000).uniform(0, 1, (400, *shape[1:])).astype(np.float32)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = np.concatenate([s.run(None, {"input": xi[None]})[0] for xi in x])
    last = m.graph.node[-1]
    inits = {t.name: t for t in m.graph.initializer}
    w, bias = numpy_helper.to_array(inits[last.input[1]]), numpy_helper.to_array(inits[last.input[2]])
    scale = 1.0 / max(float(y.std(axis=0).mean()), 1e-6)  # logits of spread 1, centred on every class alike
    inits[last.input[1]].CopyFrom(numpy_helper.from_array((w * scale).astype(np.float32), last.input[1]))
    inits[last.input[2]].CopyFrom(numpy_helper.from_array(((bias - y.mean(axis=0)) * scale).astype(np.float32),
                                                          last.input[2]))
    return m


def write_all(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write the four networks into ``folder``; their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    nets = {"verivital_maxpool": verivital("MaxPool", seed), "verivital_avgpool": verivital("AveragePool", seed),
            "dronet_style": dronet(seed),
            "dronet_chain": dronet(seed, residual=False), "slim_cnn": slim(seed)}
    paths = {}
    for name, m in nets.items():
        paths[name] = folder / f"{name}.onnx"
        onnx.save(m, paths[name])
    return paths


def image_box(shape: tuple[int, ...], eps: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded uniform image in [0, 1] and its L∞ ball of radius eps clipped to [0, 1]: (centre, lower, upper)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return centre, np.clip(centre - eps, 0.0, 1.0).astype(np.float32), np.clip(centre + eps, 0.0, 1.0).astype(np.float32)


def _graph(nodes: list, inits: dict[str, np.ndarray], name: str, shape: list[int], nout: int) -> onnx.ModelProto:
    """A graph with input ``x`` of ``shape`` and output ``y`` of shape [1, nout] (``cgan``, ``resnet_2b``)."""
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, nout])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="bench/cnn_nets.py")
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def cgan(seed: int = 0) -> onnx.ModelProto:
    """A look-alike of VNN-COMP's cGAN_imgSz32_nCh_1 (module docstring); input ``x`` [1, 5], output ``y`` [1, 1]."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def p(name: str, value: np.ndarray, dtype=np.float32) -> str:
        inits[name] = np.asarray(value).astype(dtype)
        return name

    nodes.append(helper.make_node("Gemm", ["x", p("g0w", rng.normal(0, 0.3, (512, 5))),
                                           p("g0b", rng.normal(0, 0.1, 512))], ["g0"], transB=1))
    nodes.append(helper.make_node("Relu", ["g0"], ["g0r"]))
    nodes.append(helper.make_node("Reshape", ["g0r", p("shp", np.array([1, 32, 4, 4]), np.int64)], ["g1"]))

    def conv_t(x: str, out: str, cin: int, cout: int, k: int, s: int, pad: int) -> None:
        nodes.append(helper.make_node("ConvTranspose", [x, p(out + "w", rng.normal(0, 0.2, (cin, cout, k, k))),
                                                        p(out + "b", rng.normal(0, 0.1, cout))], [out + "c"],
                                      strides=[s, s], pads=[pad] * 4, kernel_shape=[k, k]))
        nodes.append(helper.make_node("BatchNormalization", [
            out + "c", p(out + "g", rng.uniform(0.5, 1.5, cout)), p(out + "be", rng.normal(0, 0.1, cout)),
            p(out + "m", rng.normal(0, 0.1, cout)), p(out + "v", rng.uniform(0.5, 1.5, cout))], [out + "n"]))
        nodes.append(helper.make_node("Relu", [out + "n"], [out]))

    def conv(x: str, out: str, cin: int, cout: int, k: int, s: int, pad: int) -> None:
        nodes.append(helper.make_node("Conv", [x, p(out + "w", rng.normal(0, 0.2, (cout, cin, k, k))),
                                               p(out + "b", rng.normal(0, 0.1, cout))], [out + "c"],
                                      strides=[s, s], pads=[pad] * 4, kernel_shape=[k, k]))
        nodes.append(helper.make_node("Relu", [out + "c"], [out]))

    conv_t("g1", "t1", 32, 32, 4, 2, 1)                                             # 32×8×8
    conv_t("t1", "t2", 32, 16, 4, 2, 1)                                             # 16×16×16
    nodes.append(helper.make_node("ConvTranspose", ["t2", p("t3w", rng.normal(0, 0.2, (16, 1, 4, 4))),
                                                    p("t3b", np.zeros(1))], ["img"],
                                  strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[4, 4]))  # 1×32×32
    conv("img", "d1", 1, 32, 3, 1, 0)                                               # 32×30×30
    conv("d1", "d2", 32, 32, 4, 2, 1)                                               # 32×15×15
    nodes.append(helper.make_node("Flatten", ["d2"], ["f"]))
    nodes.append(helper.make_node("Gemm", ["f", p("ow", rng.normal(0, 0.02, (1, 32 * 15 * 15))), p("ob", np.zeros(1))],
                                  ["y"], transB=1))
    return _graph(nodes, inits, "cgan", [1, 5], 1)


def resnet_2b(seed: int = 0) -> onnx.ModelProto:
    """A look-alike of VNN-COMP 2022's resnet_2b (module docstring); input ``x`` [1, 3, 32, 32], output ``y`` [1, 10]."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def p(name: str, value: np.ndarray) -> str:
        inits[name] = np.asarray(value).astype(np.float32)
        return name

    def conv(x: str, out: str, cin: int, cout: int, k: int, s: int, pad: int, relu: bool = True) -> None:
        nodes.append(helper.make_node("Conv", [x, p(out + "w", rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))),
                                               p(out + "b", rng.normal(0, 0.05, cout))], [out + ("c" if relu else "")],
                                      strides=[s, s], pads=[pad] * 4, kernel_shape=[k, k]))
        if relu:
            nodes.append(helper.make_node("Relu", [out + "c"], [out]))

    conv("x", "c1", 3, 8, 3, 2, 1)                                                  # 8×16×16
    conv("c1", "b1a", 8, 8, 3, 1, 1)
    conv("b1a", "b1b", 8, 8, 3, 1, 1, relu=False)
    nodes.append(helper.make_node("Add", ["b1b", "c1"], ["s1"]))
    nodes.append(helper.make_node("Relu", ["s1"], ["r1"]))
    conv("r1", "b2a", 8, 16, 3, 2, 1)                                               # 16×8×8
    conv("b2a", "b2b", 16, 16, 3, 1, 1, relu=False)
    conv("r1", "ds", 8, 16, 1, 2, 0, relu=False)
    nodes.append(helper.make_node("Add", ["b2b", "ds"], ["s2"]))
    nodes.append(helper.make_node("Relu", ["s2"], ["r2"]))
    nodes.append(helper.make_node("Flatten", ["r2"], ["f"]))
    nodes.append(helper.make_node("Gemm", ["f", p("g1w", rng.normal(0, np.sqrt(2 / 1024), (100, 1024))),
                                           p("g1b", rng.normal(0, 0.05, 100))], ["g1"], transB=1))
    nodes.append(helper.make_node("Relu", ["g1"], ["h1"]))
    nodes.append(helper.make_node("Gemm", ["h1", p("g2w", rng.normal(0, 0.1, (10, 100))), p("g2b", np.zeros(10))],
                                  ["y"], transB=1))
    return _graph(nodes, inits, "resnet2b", [1, 3, 32, 32], 10)
