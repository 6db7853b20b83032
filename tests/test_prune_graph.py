"""Pruning networks with skip connections on their graph (``pruning.graph``): untied channels removed physically,
tied ones (reaching an Add or two readers) skipped and named, weights zeroed anywhere, the impact bound sound."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from conftest import MODELS, make_model
from nnxform.domain import Box
from nnxform.ir import from_proto, load
from nnxform.pruning import prune
from nnxform.pruning.chain import quota
from nnxform.runtime import OnnxRunner
from nnxform.workflows import prune_with_impact

RNG = np.random.default_rng(3)


def residual_bn(c: int = 6):
    """Conv → Relu → [Conv → BN → Relu → Conv → BN] + skip → Relu → Flatten → Gemm(12) → Relu → Gemm(3)."""
    ws = {"W0": RNG.normal(0, 0.4, (c, 2, 3, 3)), "b0": RNG.normal(0, 0.1, c),
          "W1": RNG.normal(0, 0.3, (c, c, 3, 3)), "b1": RNG.normal(0, 0.1, c),
          "W2": RNG.normal(0, 0.3, (c, c, 3, 3)), "b2": RNG.normal(0, 0.1, c),
          "G": RNG.normal(0, 0.1, (12, c * 36)), "g": RNG.normal(0, 0.1, 12),
          "H": RNG.normal(0, 0.3, (3, 12)), "h": RNG.normal(0, 0.1, 3)}
    for k in (1, 2):
        ws.update({f"s{k}": RNG.uniform(0.5, 1.5, c), f"t{k}": RNG.normal(0, 0.1, c), f"m{k}": RNG.normal(0, 0.1, c),
                   f"v{k}": RNG.uniform(0.5, 1.5, c)})
    nodes = [helper.make_node("Conv", ["x", "W0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s1", "t1", "m1", "v1"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "s2", "t2", "m2", "v2"], ["n2"]),
             helper.make_node("Add", ["n2", "r0"], ["a"], name="skip_add"),
             helper.make_node("Relu", ["a"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "G", "g"], ["z"], transB=1),
             helper.make_node("Relu", ["z"], ["r3"]),
             helper.make_node("Gemm", ["r3", "H", "h"], ["y"], transB=1)]
    return from_proto(make_model(nodes, [1, 2, 6, 6], weights=ws))


@pytest.mark.parametrize("name", ["residual_bn", "torch_resnet"])
def test_untied_channels_are_removed_and_tied_ones_named(name):
    model = residual_bn() if name == "residual_bn" else load(MODELS / "torch_resnet.onnx")
    res = prune(model, "neuron", 0.5)
    assert res.check.within
    skipped = res.details["skipped"]
    assert len(skipped) >= 2 and any("skipped" in n and "Add" in n for n in res.notes)
    assert res.details["channels_removed"] > 0 and res.details["units_removed"] > 0
    assert res.after.totals()["parameters"] < res.before.totals()["parameters"]
    xs = np.random.default_rng(0).uniform(0, 1, (200, model.input_size))
    np.testing.assert_allclose(OnnxRunner(res.aligned)(xs), OnnxRunner(res.model)(xs), atol=1e-5)


def test_ratio_zero_keeps_the_function():
    model = residual_bn()
    res = prune(model, "neuron", 0.0)
    xs = np.random.default_rng(1).uniform(0, 1, (200, model.input_size))
    np.testing.assert_allclose(OnnxRunner(res.model)(xs), OnnxRunner(model)(xs), atol=1e-5)


def test_the_layer_scope_removes_the_share_of_every_untied_layer():
    res = prune(residual_bn(c=6), "neuron", 0.5, scope="layer")
    assert res.details["channels_removed"] == quota(0.5, 6)  # the block's first Conv: the only untied one
    assert res.details["units_removed"] == quota(0.5, 12)


def test_weight_pruning_zeroes_the_share_of_every_conv_and_gemm():
    model = residual_bn()
    res = prune(model, "weight", 0.4)
    assert res.check.within and res.details["weights_zeroed"] == quota(0.4, res.details["weights"])


def test_the_impact_bound_holds_on_samples():
    model = residual_bn()
    box = Box(np.full(model.input_size, 0.2), np.full(model.input_size, 0.8))
    report = prune_with_impact(model, box, "neuron", 0.5)
    xs = np.vstack([box.points(3000, RNG), box.lower[None], box.upper[None]])
    drift = np.abs(OnnxRunner(report.pruning.model)(xs).astype(np.float64) - OnnxRunner(model)(xs)).max()
    assert drift <= report.impact["impact_bound"] + 1e-9
