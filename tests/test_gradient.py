"""Input gradients by reverse mode over the IR agree with central finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MODELS
from nnxform.interpreter import run
from nnxform.gradient import gradient
from nnxform.ir import load
from test_bounds import convnet, mlp, residual


def _check(model, tensor=None, seed=0, samples=3):
    rng = np.random.default_rng(seed)
    tensor = tensor or model.output_name
    x = rng.uniform(0, 1, (samples, model.input_size))
    size = int(np.prod(model.shapes()[tensor]))
    w = rng.normal(size=(samples, size))
    value, g = gradient(model, x, w, tensor=tensor)
    shape = (-1,) + model.input_shape

    def f(z):
        return (run(model, z.reshape(shape), keep=True)[tensor].reshape(samples, -1) * w).sum(axis=1)

    assert np.allclose(value, run(model, x.reshape(shape), keep=True)[tensor].reshape(samples, -1))
    d = rng.normal(size=x.shape)
    h = 1e-6
    fd = (f(x + h * d) - f(x - h * d)) / (2 * h)
    assert np.allclose((g * d).sum(axis=1), fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.onnx")))
def test_bundled_models(name):
    _check(load(MODELS / name))


@pytest.mark.parametrize("build", [residual, convnet, lambda s: mlp(s, [3, 5, 4, 2], act="Sigmoid"),
                                   lambda s: mlp(s, [3, 5, 2], act="Tanh", out_act=True)])
def test_random_networks_and_hidden_tensors(build):
    model = build(1)
    _check(model)
    hidden = [n.inputs[0] for n in model.nodes if n.op in ("Relu", "Sigmoid", "Tanh", "MaxPool")]
    _check(model, tensor=hidden[-1], seed=2)


def test_flat_weights_broadcast_over_samples():
    model = mlp(0, [3, 4, 2])
    x = np.random.default_rng(0).uniform(size=(5, 3))
    _, g1 = gradient(model, x, np.array([1.0, -1.0]))
    _, g2 = gradient(model, x, np.tile([1.0, -1.0], (5, 1)))
    assert g1.shape == (5, 3) and np.array_equal(g1, g2)


def test_weights_from_the_values_take_one_forward_pass():
    """Weights given as a function of the output (the attack's worst row, the cross-entropy's softmax) are applied to
    the values of the same pass, and give what the same weights given as an array give."""
    model = mlp(3, [3, 5, 4])
    x = np.random.default_rng(1).uniform(size=(6, 3))
    seen = []

    def worst_row(ys):
        seen.append(ys.copy())
        return np.eye(4)[np.argmax(ys, axis=1)]

    values, g = gradient(model, x, worst_row)
    assert len(seen) == 1 and np.array_equal(seen[0], values)
    _, g_array = gradient(model, x, np.eye(4)[np.argmax(values, axis=1)])
    assert np.array_equal(g, g_array)
