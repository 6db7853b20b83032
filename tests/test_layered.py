"""The layered form: every layer type's gradients (input and every parameter) against finite differences, and
``from_model``/``to_model`` round trips equal to onnxruntime on the bundled and generated networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from nnxform import layered
from nnxform.errors import NnxformError
from nnxform.ir import from_proto, load
from nnxform.layered import (AvgPool, BatchNorm, Conv, ConvTranspose, Dense, Fixed, Flatten, MaxPool, Network, Relu,
                             Sigmoid, Tanh)
from nnxform.passes import PASSES
from nnxform.runtime import OnnxRunner

from test_operators import conv_transpose_network

MODELS = Path(__file__).resolve().parent.parent / "models"
RNG = np.random.default_rng(0)


def _n(*shape: int, scale: float = 0.5) -> np.ndarray:
    return RNG.normal(0, scale, shape)


#: (layer, ONNX input shape of one sample): every layer type, convolutions strided, padded, dilated and grouped.
LAYERS = {
    "dense": (Dense(name="d", W=_n(5, 7), b=_n(5)), (1, 7)),
    "conv": (Conv(name="c", W=_n(4, 3, 3, 3), b=_n(4), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)),
             (1, 3, 6, 6)),
    "conv-strided-padded-dilated": (Conv(name="c", W=_n(4, 3, 3, 2), b=_n(4), strides=(2, 1), pads=(1, 0, 2, 1),
                                         dilations=(1, 2)), (1, 3, 7, 6)),
    "conv-grouped": (Conv(name="c", W=_n(6, 2, 3, 3), b=_n(6), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1),
                          group=2), (1, 4, 6, 6)),
    "conv-1d": (Conv(name="c", W=_n(3, 2, 3), b=_n(3), strides=(2,), pads=(1, 1), dilations=(1,)), (1, 2, 9)),
    "conv-transpose": (ConvTranspose(name="t", W=_n(3, 2, 3, 3), b=_n(2), strides=(2, 2), pads=(1, 1, 1, 1),
                                     dilations=(1, 1), output_padding=(1, 1)), (1, 3, 4, 4)),
    "conv-transpose-grouped-dilated": (ConvTranspose(name="t", W=_n(4, 3, 2, 2), b=_n(6), strides=(1, 2),
                                                     pads=(0, 1, 1, 0), dilations=(2, 1), output_padding=(0, 1),
                                                     group=2), (1, 4, 3, 3)),
    "batchnorm": (BatchNorm(name="bn", gamma=_n(3), beta=_n(3), mean=_n(3), var=RNG.uniform(0.1, 2, 3)), (1, 3, 4, 4)),
    "avgpool": (AvgPool(name="p", kernel=(3, 2), strides=(2, 1), pads=(1, 0, 1, 1), count_include_pad=0), (1, 2, 6, 5)),
    "avgpool-ceil-include-pad": (AvgPool(name="p", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 1, 1), ceil_mode=1,
                                         count_include_pad=1), (1, 2, 5, 5)),
    "maxpool": (MaxPool(name="p", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 1, 1), dilations=(1, 1)), (1, 2, 5, 5)),
    "flatten": (Flatten(name="f"), (1, 2, 3, 3)),
    "relu": (Relu(name="r"), (1, 10)),
    "sigmoid": (Sigmoid(name="s"), (1, 10)),
    "tanh": (Tanh(name="t"), (1, 10)),
    "transpose": (Fixed(name="tr", op="Transpose", constants=[], attributes={"perm": [0, 2, 3, 1]}), (1, 2, 3, 4)),
    "add-constant": (Fixed(name="a", op="Add", constants=[_n(1, 4)], data_index=1), (1, 4)),
}


def _finite_difference(f, value: np.ndarray, h: float = 1e-6, picks: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of the scalar ``f`` at ``picks`` entries of ``value`` (changed in place, then restored)."""
    flat = value.reshape(-1)
    where = RNG.choice(flat.size, min(picks, flat.size), replace=False)
    out = []
    for k in where:
        keep = flat[k]
        flat[k] = keep + h
        plus = f()
        flat[k] = keep - h
        minus = f()
        flat[k] = keep
        out.append((plus - minus) / (2 * h))
    return where, np.array(out)


@pytest.mark.parametrize("name", list(LAYERS))
def test_gradients_match_finite_differences(name):
    layer, shape = LAYERS[name]
    net = Network([layer], "x", shape, "y")
    xs = RNG.normal(0, 1, (3,) + shape)
    y = net.forward(xs)
    weights = RNG.normal(0, 1, y.shape)
    _, grads = net.backward(xs, weights)

    def loss() -> float:
        return float((net.forward(xs) * weights).sum())

    where, fd = _finite_difference(loss, xs)
    np.testing.assert_allclose(grads.input.reshape(-1)[where], fd, rtol=1e-5, atol=1e-7)
    trained = grads.params[0]
    expected = {"W", "b"} if isinstance(layer, (Dense, Conv, ConvTranspose)) else \
        {"gamma", "beta"} if isinstance(layer, BatchNorm) else set()
    assert set(trained) == expected
    for p, g in trained.items():
        value = getattr(layer, p)
        assert g.shape == value.shape
        where, fd = _finite_difference(loss, value)
        np.testing.assert_allclose(g.reshape(-1)[where], fd, rtol=1e-5, atol=1e-7, err_msg=p)


def test_gradients_through_a_network_match_finite_differences():
    """A Conv → BatchNorm → Relu → MaxPool → Flatten → Dense chain: the chain rule across layers."""
    net = Network([Conv(name="c", W=_n(3, 2, 3, 3), b=_n(3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1)),
                   BatchNorm(name="bn", gamma=_n(3), beta=_n(3), mean=_n(3), var=RNG.uniform(0.5, 1, 3)),
                   Relu(name="r"), MaxPool(name="p", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)),
                   Flatten(name="f"), Dense(name="d", W=_n(4, 18), b=_n(4))], "x", (1, 2, 4, 6), "y")
    xs = RNG.normal(0, 1, (4, 1, 2, 4, 6))
    weights = RNG.normal(0, 1, (4, 1, 4))
    _, grads = net.backward(xs, weights)
    for k, layer in enumerate(net.layers):
        for p, g in grads.params[k].items():
            where, fd = _finite_difference(lambda: float((net.forward(xs) * weights).sum()), getattr(layer, p))
            np.testing.assert_allclose(g.reshape(-1)[where], fd, rtol=1e-5, atol=1e-7, err_msg=f"{layer.name}.{p}")


def _bundled() -> list[Path]:
    return sorted(p for p in MODELS.glob("*.onnx") if "resnet" not in p.name)


@pytest.mark.parametrize("path", _bundled(), ids=lambda p: p.stem)
def test_round_trip_equals_onnxruntime(path):
    model, _ = PASSES["canon"](load(path))
    net = layered.from_model(model)
    written = net.to_model()
    xs = RNG.uniform(-1, 1, (20,) + tuple(model.input_shape))
    expected = OnnxRunner(model)(xs)
    np.testing.assert_allclose(OnnxRunner(written)(xs), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.forward(xs).reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)
    assert written.to_bytes() == net.to_model().to_bytes()  # byte-stable


def test_conv_transpose_network_round_trip_keeps_its_layers():
    model, _ = PASSES["canon"](from_proto(conv_transpose_network()))
    net = layered.from_model(model)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv", "Relu", "ConvTranspose", "Relu", "Flatten",
                                                              "Dense"]
    xs = RNG.uniform(-1, 1, (10,) + tuple(model.input_shape))
    np.testing.assert_allclose(OnnxRunner(net.to_model())(xs), OnnxRunner(model)(xs), rtol=1e-5, atol=1e-5)
    for node in net.to_model().nodes:
        if node.op in ("Conv", "ConvTranspose"):
            assert {"pads", "strides", "dilations", "kernel_shape", "group"} <= set(node.attrs)


def test_units_keep_their_ids_and_size_counts_hidden_units():
    net = layered.from_model(PASSES["canon"](load(MODELS / "cifar_base_kw.onnx"))[0])
    conv = net.layers[0]
    assert list(conv.ids) == list(range(8))
    fewer = conv.replace(W=conv.W[[1, 7]], b=conv.b[[1, 7]], ids=conv.ids[[1, 7]])
    assert list(fewer.ids) == [1, 7] and fewer.units == 2 and fewer.name == conv.name
    size = net.size()
    assert size.widths == [2048, 1024, 100] and size.parameters == 105966


def test_branches_are_refused_naming_the_node():
    with pytest.raises(NnxformError, match="one chain of layers; tensor .* is read by 2 nodes"):
        layered.from_model(PASSES["canon"](load(MODELS / "torch_resnet.onnx"))[0])
