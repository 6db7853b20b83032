"""A real external verifier on merged networks: Marabou 2.0.0 reads them, evaluates them like onnxruntime, and its
answer on the exported ε-equivalence query agrees with nnxform's exact (MILP) discrepancy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, make_model, save
from onnx import helper
from test_merge import float16_copy, perturbed

import nnxform
from nnxform.analyzers import bounds
from nnxform.domain import Box
from nnxform.merge import merge
from nnxform.runtime import OnnxRunner
from nnxform.vnnlib import equivalence_property

with warnings.catch_warnings():  # maraboupy warns that its TensorFlow parser is unavailable
    warnings.simplefilter("ignore")
    Marabou = pytest.importorskip("maraboupy.Marabou", reason="maraboupy 2.0.0 (the 'test' extra) is not installed: "
                                                              "it has wheels for Python <= 3.12 only")


def random_relu_net(path: Path, widths: list[int], seed: int, noise: float = 0.0, noise_seed: int = 0) -> Path:
    """A Gemm/Relu chain with seeded weights; ``noise`` perturbs them relatively (a near-copy)."""
    rng, jitter = np.random.default_rng(seed), np.random.default_rng(noise_seed)
    nodes, weights, tensor = [], {}, "x"
    for k, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        W, b = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in), 0.1 * rng.normal(size=n_out)
        weights[f"W{k}"] = W * (1 + noise * jitter.normal(size=W.shape))
        weights[f"b{k}"] = b * (1 + noise * jitter.normal(size=b.shape))
        last = k == len(widths) - 2
        nodes.append(helper.make_node("Gemm", [tensor, f"W{k}", f"b{k}"], ["y" if last else f"z{k}"], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{k}"], [f"a{k}"]))
            tensor = f"a{k}"
    return save(make_model(nodes, [1, widths[0]], weights=weights), path)


def solve(onnx_path: Path, property_path: Path) -> tuple[str, np.ndarray | None]:
    """Marabou's answer on a VNN-LIB query (within its 60 s timeout) and the input of its counterexample (if sat)."""
    net = Marabou.read_onnx(str(onnx_path))
    options = Marabou.createOptions(timeoutInSeconds=60, verbosity=0)
    answer, values, _ = net.solve(propertyFilename=str(property_path), options=options, verbose=False)
    x = np.array([values[v] for v in net.inputVars[0].ravel()]) if answer == "sat" else None
    return answer, x


@pytest.mark.parametrize("name, make_b, keep_outputs", [
    ("marabou_fc_2-2-3", perturbed, False),
    ("cartpole", perturbed, True),
    ("ACASXU_run2a_1_1_batch_2000", perturbed, False),
    ("mnist-net_256x2", float16_copy, False),
    ("bn_cnn", perturbed, True),  # convolutions kept: stacked, then block-diagonal over channels
])
def test_marabou_reads_merged_networks_and_evaluates_like_onnxruntime(tmp_path, name, make_b, keep_outputs):
    a = nnxform.load(MODELS / f"{name}.onnx")
    b = nnxform.load(make_b(tmp_path, name))
    box = Box(np.zeros(a.input_size), np.ones(a.input_size))
    merged, report, _ = merge(a, b, keep_outputs=keep_outputs, box=box, samples=50)
    merged.save(tmp_path / "ab.onnx")
    net = Marabou.read_onnx(str(tmp_path / "ab.onnx"))
    assert net.outputVars[0].size == 3 * report.outputs if keep_outputs else report.outputs
    xs = box.points(2, np.random.default_rng(0))[:3].astype(np.float32)
    reference = OnnxRunner(merged)(xs)
    for x, want in zip(xs, reference):
        x = x.reshape(a.input_shape)
        with_marabou = net.evaluateWithMarabou([x], filename=str(tmp_path / "eval.log"))[0].ravel()
        without = net.evaluateWithoutMarabou([x])[0].ravel()
        scale = 1e-4 * (1 + np.abs(want).max())
        np.testing.assert_allclose(with_marabou, want, rtol=0, atol=scale)
        np.testing.assert_allclose(without, want, rtol=0, atol=scale)


@pytest.fixture(params=["random-0", "random-1", "fc_2-2-3"])
def pair(request, tmp_path) -> tuple[nnxform.Model, nnxform.Model]:
    """Two small 2-input ReLU networks that differ a little: random near-copies, or a bundled net and a perturbed copy."""
    if request.param == "fc_2-2-3":
        return nnxform.load(MODELS / "marabou_fc_2-2-3.onnx"), nnxform.load(perturbed(tmp_path, "marabou_fc_2-2-3", 0.05))
    seed = int(request.param.split("-")[1])
    a = random_relu_net(tmp_path / "a.onnx", [2, 6, 6, 2], seed)
    b = random_relu_net(tmp_path / "b.onnx", [2, 6, 6, 2], seed, noise=0.1, noise_seed=seed + 100)
    return nnxform.load(a), nnxform.load(b)


def test_marabou_agrees_with_the_exact_discrepancy(tmp_path, pair):
    box = Box(np.array([-1.0, -0.5]), np.array([1.0, 0.5]))
    merged, report, _ = merge(*pair, box=box, samples=200)
    merged.save(tmp_path / "ab.onnx")
    milp = bounds(merged, box, "milp")
    assert milp.exact
    delta_max = float(np.max(np.maximum(np.abs(milp.output_lower), np.abs(milp.output_upper))))
    assert delta_max > 1e-3
    for eps, expected in ((0.5 * delta_max, "sat"), (1.5 * delta_max + 1e-6, "unsat")):
        prop = tmp_path / f"eps_{expected}.vnnlib"
        prop.write_text(equivalence_property(box, report.outputs, eps))
        answer, x = solve(tmp_path / "ab.onnx", prop)
        assert answer == expected, (eps, delta_max, answer)
        if x is not None:  # Marabou's counterexample really has a difference of at least eps
            assert np.all((x >= box.lower - 1e-6) & (x <= box.upper + 1e-6))
            assert np.abs(OnnxRunner(merged)(x[None])).max() >= eps - 1e-5


@pytest.mark.parametrize("command, name", [("fold-bn", "marabou_layerzoo_batchnorm"), ("canon", "bn_after_relu_conv")])
def test_marabou_reads_the_convolutions_fold_bn_and_canon_write(tmp_path, command, name):
    """Issue 14: the BN-as-affine depthwise Conv (group = C) made Marabou's parser assert; grouped convs passed through
    canon. The group=1 diagonal / block-diagonal Convs with explicit attributes load and evaluate like onnxruntime."""
    from nnxform.passes import PASSES

    model = nnxform.load(MODELS / f"{name}.onnx")
    result, _ = PASSES[command](model)
    assert all(n.attrs.get("group", 1) == 1 for n in result.nodes if n.op == "Conv")
    result.save(tmp_path / "out.onnx")
    net = Marabou.read_onnx(str(tmp_path / "out.onnx"))
    xs = np.random.default_rng(0).uniform(-1, 1, (3,) + tuple(result.input_shape)).astype(np.float32)
    for x, want in zip(xs, OnnxRunner(result)(xs)):
        got = net.evaluateWithoutMarabou([x])[0].ravel()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * (1 + np.abs(want).max()))
