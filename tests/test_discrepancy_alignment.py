"""Width alignment pairs each unit of the narrower network with its nearest unit of the wider one,
so a pruned or shuffled copy is analysed against the units it came from."""

from __future__ import annotations

import numpy as np
from conftest import MODELS

from nnxform import load
from nnxform.discrepancy import discrepancy
from nnxform.domain import Box
from nnxform.layered import chain_network, dense
from nnxform.passes.pad import relu_layers
from nnxform.runtime import OnnxRunner


def test_shuffled_copy_without_silent_units_has_no_discrepancy():
    original = load(MODELS / "cartpole.onnx")
    layers = relu_layers(original, "test")
    rng = np.random.default_rng(0)
    (W1, b1), (W2, b2) = (layers[0].W, layers[0].b), (layers[1].W, layers[1].b)
    rest = layers[2:]
    silent = rng.choice(W1.shape[0], size=W1.shape[0] // 4, replace=False)
    W2 = W2.copy()
    W2[:, silent] = 0.0  # these units contribute nothing: removing them keeps the function
    a = chain_network([dense(W1, b1), dense(W2, b2), *rest], original, output="y").to_model()
    keep = rng.permutation(np.setdiff1d(np.arange(W1.shape[0]), silent))
    b = chain_network([dense(W1[keep], b1[keep]), dense(W2[:, keep], b2), *rest], original, output="y").to_model()
    box = Box.default(a.input_size)
    xs = box.points(2000, rng)
    assert np.abs(OnnxRunner(a)(xs) - OnnxRunner(b)(xs)).max() < 1e-5  # same function
    d = discrepancy(a, b, box, "symbolic")
    assert d.delta_max < 1e-3, d.delta_max  # positional alignment gives about 20 here
