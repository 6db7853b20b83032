"""A MILP with no unstable ReLU has no binary: HiGHS solves it as an LP and reports no MIP dual bound.
The bounds must still be sound (and exact), never HiGHS's placeholder 0."""

from __future__ import annotations

import numpy as np
from conftest import make_model
from onnx import helper

from nnxform.analyzers import bounds
from nnxform.domain import Box
from nnxform.interpreter import run
from nnxform.ir import from_proto


def test_milp_on_a_network_without_unstable_relus_is_sound_and_exact():
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(3, 2)), rng.normal(size=(2, 3))
    b1 = np.full(3, 10.0)  # every ReLU stably active on the box
    proto = make_model([helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
                        helper.make_node("Relu", ["h"], ["r"]),
                        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)],
                       [1, 2], weights={"W1": W1, "b1": b1, "W2": W2, "b2": np.zeros(2)})
    model = from_proto(proto)
    box = Box(np.full(2, -1.0), np.full(2, 1.0))
    result = bounds(model, box, "milp")
    ys = run(model, box.points(2000, rng)).reshape(-1, 2)
    lo, hi = result.output_lower, result.output_upper
    assert np.all(ys >= lo - 1e-6) and np.all(ys <= hi + 1e-6)
    assert np.allclose(lo, ys.min(axis=0), atol=1e-3) and np.allclose(hi, ys.max(axis=0), atol=1e-3)
    assert result.exact
