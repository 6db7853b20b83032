"""LeakyRelu through the operator table and every analyzer: a piecewise-linear activation declared by its slopes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_not_equivalent_below, extremes, make_model, perturbed, random_chain
from onnx import helper

import nnxform  # noqa: F401  (the IR's evaluator)
from nnxform.analyzers import bounds, compile_model
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.interpreter import run
from nnxform.ir import from_proto
from nnxform.operators import OPERATORS
from nnxform.runtime import OnnxRunner


def leaky_chain(seed: int, widths: list[int], alpha: float | list[float] = 0.1, scale: float = 1.0,
                op: str = "LeakyRelu"):
    """A Gemm/LeakyRelu chain (``conftest.random_chain``; ``alpha`` per hidden layer or for all)."""
    return random_chain(seed, widths, scale, op, alpha)


def test_the_table_evaluates_leaky_relu_as_onnxruntime_does():
    model = leaky_chain(0, [4, 6, 5, 3], alpha=[0.3, 0.01])
    xs = np.random.default_rng(0).uniform(-3, 3, (200, 4))
    ours = run(model, xs).reshape(200, -1)
    theirs = OnnxRunner(model)(xs).astype(np.float64)
    assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    default = from_proto(make_model([helper.make_node("LeakyRelu", ["x"], ["y"])], [1, 3]))
    assert np.allclose(run(default, np.array([[-2.0, 0.0, 3.0]])).ravel(), [-0.02, 0.0, 3.0])


def test_relaxation_is_sound_and_the_lower_slope_anywhere_between_alpha_and_one():
    kind = OPERATORS["LeakyRelu"].activation.at({"alpha": 0.25})
    assert kind.slopes == (0.25, 1.0) and OPERATORS["Relu"].activation.slopes == (0.0, 1.0)
    rng = np.random.default_rng(3)
    lo = rng.uniform(-5, 2, 500)
    hi = lo + rng.uniform(0, 6, 500)
    a_lo, b_lo, a_up, b_up = kind.relax(lo, hi)
    t = rng.uniform(size=(64, 1))
    x = lo + t * (hi - lo)
    y = kind.function(x)
    assert np.all(a_lo * x + b_lo <= y + 1e-12) and np.all(y <= a_up * x + b_up + 1e-12)
    for slope in (0.25, 0.6, 1.0):  # any lower slope in [alpha, 1] through the origin is below
        assert np.all(slope * x <= y + 1e-12)
    unstable = (lo < 0) & (hi > 0)
    assert np.all((a_lo[unstable] == 0.25) | (a_lo[unstable] == 1.0))


def test_the_derivative_matches_finite_differences():
    kind = OPERATORS["LeakyRelu"].activation.at({"alpha": 0.2})
    x = np.array([-3.0, -0.5, 0.5, 2.0])
    fd = (kind.function(x + 1e-6) - kind.function(x - 1e-6)) / 2e-6
    assert np.allclose(kind.derivative(x, kind.function(x)), fd)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_an_alpha_outside_zero_one_is_refused_at_load(alpha):
    proto = make_model([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=alpha)], [1, 3])
    with pytest.raises(NnxformError, match="alpha"):
        from_proto(proto)


def test_exported_model_keeps_alpha():
    model = leaky_chain(1, [3, 4, 2], alpha=0.3)
    again = from_proto(model.to_onnx())
    xs = np.random.default_rng(2).uniform(-2, 2, (50, 3))
    assert np.array_equal(run(model, xs), run(again, xs))
    assert [n.attrs.get("alpha") for n in again.nodes if n.op == "LeakyRelu"] == [pytest.approx(0.3)]


@pytest.mark.parametrize("seed", range(6))
def test_every_analyzer_contains_onnxruntime_outputs(seed):
    rng = np.random.default_rng(seed)
    widths = [3] + list(rng.integers(3, 8, size=int(rng.integers(1, 4)))) + [2]
    alphas = list(rng.choice([0.0, 0.01, 0.1, 0.3, 0.7, 1.0], size=len(widths) - 2))
    scale = [1.0, 10.0, 1e3][seed % 3]
    model = leaky_chain(10 + seed, widths, [float(a) for a in alphas], scale)
    box = Box(-np.ones(3), np.ones(3))
    lo, hi = extremes(model, box)
    net = compile_model(model)
    xs = box.points(2000, np.random.default_rng(4))
    hidden = run(model, xs, keep=True)
    for method in ("interval", "symbolic", "lp", "milp"):
        b = bounds(net, box, method, time_limit=10.0, neurons=True)
        assert np.all(b.output_lower <= lo) and np.all(b.output_upper >= hi), (method, b.output_lower, lo,
                                                                               b.output_upper, hi)
        assert [layer.op for layer in b.layers] == ["LeakyRelu"] * (len(widths) - 2)
        for k, layer in enumerate(b.layers):  # every hidden pre-activation sampled lies within its bounds too
            z = hidden[f"h{k}"].reshape(len(xs), -1)
            slack = 1e-5 * (1 + np.abs(z))  # the float64 evaluator against the float32 network's bounds
            assert np.all(layer.lower <= z + slack) and np.all(z - slack <= layer.upper), (method, k)


@pytest.mark.parametrize("seed", range(4))
def test_milp_is_exact_on_tiny_networks(seed):
    """The big-M encoding is exact: its maximum is what dense sampling reaches (to the sampling's resolution)."""
    model = leaky_chain(20 + seed, [2, 6, 5, 1], alpha=0.2)
    box = Box(-np.ones(2), np.ones(2))
    g = np.linspace(-1, 1, 401)
    xs = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    ys = OnnxRunner(model)(xs).astype(np.float64)[:, 0]
    b = bounds(model, box, "milp", time_limit=20.0)  # a Model: its solutions are replayed in onnxruntime
    assert b.exact
    assert b.output_lower[0] <= ys.min() and b.output_upper[0] >= ys.max()
    span = ys.max() - ys.min()
    assert b.output_upper[0] - ys.max() <= 5e-3 * span and ys.min() - b.output_lower[0] <= 5e-3 * span
    lp = bounds(compile_model(model), box, "lp", time_limit=20.0)  # the hull is a relaxation: never tighter
    assert lp.output_upper[0] >= b.output_upper[0] - 1e-6 and lp.output_lower[0] <= b.output_lower[0] + 1e-6


def test_alpha_one_and_zero_are_the_identity_and_relu():
    box = Box(-np.ones(3), np.ones(3))
    relu = bounds(compile_model(leaky_chain(5, [3, 5, 2], op="Relu")), box, "milp", time_limit=10.0)
    zero = bounds(compile_model(leaky_chain(5, [3, 5, 2], alpha=0.0)), box, "milp", time_limit=10.0)
    assert np.allclose(relu.output_lower, zero.output_lower) and np.allclose(relu.output_upper, zero.output_upper)
    one = leaky_chain(5, [3, 5, 2], alpha=1.0)
    lo, hi = extremes(one, box)
    b = bounds(compile_model(one), box, "symbolic")
    assert np.allclose(b.output_lower, lo, atol=1e-4) and np.allclose(b.output_upper, hi, atol=1e-4)


# --- stable classification ------------------------------------------------------------------------


def leaky_inputs(model) -> list[str]:
    return [n.inputs[0] for n in model.nodes if n.op == "LeakyRelu"]


@pytest.mark.parametrize("inputs,radius,seed", [(2, 1.0, 0), (2, 1.0, 1), (20, 0.5, 0), (20, 0.3, 2)])
def test_stable_classification_holds_and_matches_the_exact_milp(inputs, radius, seed):
    """Every stable claim holds on samples (float64 and onnxruntime), every unstable one has witnesses of both signs,
    and whatever the exact per-neuron MILP proves stable is found stable; the search (20 inputs) or the milp stage
    (2 inputs) settles some of them."""
    from nnxform.stable import ACTIVE, INACTIVE, UNSTABLE, classify

    rng = np.random.default_rng(seed)
    model = leaky_chain(40 + seed, [inputs, 10, 10, 10, 2], [0.05, 0.2, 0.01])
    box = Box(-radius * np.ones(inputs), radius * np.ones(inputs))
    result = classify(model, box, time_limit=60)
    assert [layer.node for layer in result.layers] == [n.name for n in model.nodes if n.op == "LeakyRelu"]
    assert result.counts()["undecided"] == 0
    exact = bounds(model, box, "milp", neurons=True, time_limit=30)
    assert [l.op for l in exact.relu_layers] == ["LeakyRelu"] * 3
    xs = np.vstack([box.points(5000, rng), result.witnesses.points])
    values = run(model, xs, keep=True)
    probe = model.copy()
    probe.output_names = leaky_inputs(model)
    f32 = OnnxRunner(probe)(xs).astype(np.float64)
    at = 0
    for tensor, layer, ref in zip(leaky_inputs(model), result.layers, exact.relu_layers):
        z64, z32 = values[tensor].reshape(len(xs), -1), f32[:, at: at + layer.size]
        at += layer.size
        for z in (z64, z32):
            assert np.all(z[:, layer.status == INACTIVE] <= 0) and np.all(z[:, layer.status == ACTIVE] >= 0)
        proven = ref.status != UNSTABLE
        assert np.all(layer.status[proven] == ref.status[proven])
    w = result.witnesses  # every unstable neuron was seen with both signs in onnxruntime
    at_w = OnnxRunner(probe)(w.points).astype(np.float64)
    at = 0
    for L, layer in enumerate(result.layers):
        j = np.flatnonzero(layer.status == UNSTABLE)
        z = at_w[:, at: at + layer.size]
        at += layer.size
        assert np.all(z[w.positive[L][j], j] > 0) and np.all(z[w.negative[L][j], j] < 0)
    assert any(stage.name == ("milp" if inputs == 2 else "search") and stage.settled for stage in result.stages)


# --- compress ---------------------------------------------------------------------------------------


def planted_leaky(seed: int, alpha: float = 0.1):
    """3 → 8 → 8 → 2 LeakyRelu chain on a small box: in each hidden layer two neurons stably inactive (one a scaled
    copy of the other: their rows times alpha are dependent), two stably active (one a copy), four unstable."""
    rng = np.random.default_rng(seed)
    nodes, weights, prev, n_in = [], {}, "x", 3
    for k in range(2):
        W = rng.normal(size=(8, n_in))
        b = np.zeros(8)
        W[0:2] *= 0.01
        b[0] = -5.0
        W[1], b[1] = 3.0 * W[0], 3.0 * b[0]  # both inactive, dependent
        W[2:4] *= 0.01
        b[2] = 5.0
        W[3], b[3] = -2.0 * W[2] * -1.0, 2.0 * b[2]  # both active, dependent
        weights[f"W{k}"], weights[f"b{k}"] = W.astype(np.float32), b.astype(np.float32)
        nodes += [helper.make_node("Gemm", [prev, f"W{k}", f"b{k}"], [f"h{k}"], transB=1, name=f"gemm{k}"),
                  helper.make_node("LeakyRelu", [f"h{k}"], [f"r{k}"], alpha=alpha, name=f"leaky{k}")]
        prev, n_in = f"r{k}", 8
    weights["W2"], weights["b2"] = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    nodes.append(helper.make_node("Gemm", [prev, "W2", "b2"], ["y"], transB=1, name="gemm2"))
    return from_proto(make_model(nodes, [1, 3], weights=weights)), Box(-0.5 * np.ones(3), 0.5 * np.ones(3))


@pytest.mark.parametrize("seed", range(3))
def test_compress_folds_stable_leaky_units_and_is_checked_in_onnxruntime(seed):
    from nnxform.layered import model_size
    from nnxform.stable import ACTIVE, INACTIVE
    from nnxform.workflows import compress_checked

    model, box = planted_leaky(seed)
    result = compress_checked(model, box, time_limit=60, samples=3000, certify_box=True, certify_time_limit=20)
    stab = result.stability
    for layer in stab.layers:
        assert layer.status[:2].tolist() == [INACTIVE, INACTIVE] and layer.status[2:4].tolist() == [ACTIVE, ACTIVE]
    small = result.model
    leaky = [n for n in small.nodes if n.op == "LeakyRelu"]
    assert leaky and all(n.attrs["alpha"] == pytest.approx(0.1) for n in leaky)
    assert not any(n.op == "Relu" for n in small.nodes)
    # inactive units are alpha·z, not 0: none is removed, the dependent ones are folded
    assert "removed_inactive" not in result.compression.counts
    counts = result.compression.counts
    assert counts["folded_stable"] + counts.get("merged", 0) >= 2  # per layer: folded, or merged when all stable
    assert model_size(small).neurons <= model_size(model).neurons - 4
    xs = box.points(5000, np.random.default_rng(seed))
    assert np.allclose(OnnxRunner(model)(xs), OnnxRunner(small)(xs), rtol=1e-5, atol=1e-5)
    assert result.certificate is not None and result.certificate.found <= 1e-4


def test_a_leaky_layer_stable_everywhere_is_merged_and_none_is_called_dead():
    from nnxform.passes.compress import compress_aligned
    from nnxform.stable import classify

    model, _ = planted_leaky(0)
    box = Box(0.3 - 1e-3 * np.ones(3), 0.3 + 1e-3 * np.ones(3))  # a tiny box: every unit keeps its centre's sign
    stab = classify(model, box, time_limit=30)
    assert stab.counts()["unstable"] + stab.counts()["undecided"] == 0 and stab.counts()["inactive"] > 0
    c = compress_aligned(model, stab)
    assert [n.op for n in c.model.nodes] == ["Gemm"] and "constant" not in c.counts
    from nnxform.exactness import compare

    for written in (c.model, c.aligned):  # the project's rule: 1e-5 of the output and its absolute chain
        assert compare(model, written, box, samples=2000, seed=3).within
    assert [n.op for n in c.aligned.nodes] == ["Gemm", "LeakyRelu", "Gemm", "LeakyRelu", "Gemm"]


# --- discrepancy, equiv (verify: tests/test_verify.py) ----------------------------------------------------------


@pytest.mark.parametrize("seed, inputs", [(0, 3), (1, 20)])
def test_discrepancy_and_equiv_agree_with_the_exact_milp_difference(seed, inputs):
    """The difference of two LeakyRelu networks: every method's bounds contain the sampled differences, the MILP is
    exact (its witnesses replayed), and equiv decides either side of it (a counterexample replayed)."""
    from nnxform.discrepancy import discrepancy
    from nnxform.equiv import equivalence

    width = 10 if inputs == 3 else 6  # (20 inputs: the exact MILP of the pair takes seconds per solve at 10)
    a = leaky_chain(60 + seed, [inputs, width, width, 3], [0.2, 0.05])
    b = perturbed(a, seed, 0.05)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, inputs)
    box = Box(centre - 0.3, centre + 0.3)
    xs = box.points(10_000, rng)
    delta = OnnxRunner(a)(xs).astype(np.float64) - OnnxRunner(b)(xs).astype(np.float64)
    for method in ("interval", "symbolic", "lp", "milp"):
        d = discrepancy(a, b, box, method, time_limit=30)
        assert np.all(d.lower <= delta.min(axis=0)) and np.all(d.upper >= delta.max(axis=0)), method
    exact = d
    assert exact.exact and exact.found <= exact.delta_max
    if inputs == 3:  # dense sampling comes close to the exact maximum
        assert exact.delta_max - np.abs(delta).max() <= 0.05 * exact.delta_max
    above = equivalence(a, b, box, 1.5 * exact.delta_max, timeout=60)
    assert above.answer in ("equivalent", "unknown"), above.to_json()  # never "not equivalent" above the exact max
    assert_not_equivalent_below(a, b, box, exact.delta_max)


# --- pad and merge ----------------------------------------------------------------------------------


@pytest.mark.parametrize("widths, depth", [([4, 3], 3), ([4, 6, 3], 5), ([5, 7, 6, 2], 4)])
def test_pad_writes_identity_layers_through_leaky_relu(widths, depth):
    """``y = (LR(y) − LR(−y)) / (1 + α)``: the padded chain keeps LeakyRelu(α) in every layer and the function."""
    from nnxform.exactness import compare
    from nnxform.passes.pad import pad

    model = leaky_chain(70 + depth, widths, alpha=0.15)
    padded, report = pad(model, depth)
    assert sum(n.op == "Gemm" for n in padded.nodes) == depth
    ops = [n.op for n in padded.nodes if OPERATORS[n.op].activation is not None]
    if len(widths) > 2:  # a network without activation is split with ReLU, as before
        assert ops == ["LeakyRelu"] * (depth - 1)
        assert all(n.attrs["alpha"] == pytest.approx(0.15) for n in padded.nodes if n.op == "LeakyRelu")
    box = Box(-2 * np.ones(widths[0]), 2 * np.ones(widths[0]))
    assert compare(model, padded, box, samples=3000, seed=1).within
    xs = box.points(500, np.random.default_rng(0))
    assert np.allclose(run(model, xs), run(padded, xs).reshape(run(model, xs).shape), atol=1e-9)  # exact in reals


def test_merge_of_leaky_chains_is_one_chain_and_two_alphas_two_graphs():
    from nnxform.merge import OUTPUT, merge

    a = leaky_chain(80, [4, 6, 3], alpha=0.1)
    b = leaky_chain(81, [4, 5, 7, 6, 3], alpha=0.1)
    box = Box(-np.ones(4), np.ones(4))
    merged, report, cmp = merge(a, b, box=box)
    assert cmp.within and not report.form
    assert {n.op for n in merged.nodes} == {"Gemm", "LeakyRelu"} and merged.output_name == OUTPUT
    xs = box.points(1000, np.random.default_rng(1))
    assert np.allclose(run(merged, xs).reshape(len(xs), -1), (run(a, xs) - run(b, xs)).reshape(len(xs), -1),
                       atol=1e-9)
    other = leaky_chain(82, [4, 6, 3], alpha=0.3)  # another alpha: one chain cannot hold both
    merged, report, cmp = merge(a, other, box=box)
    assert cmp.within and report.form.startswith("graph") and "one activation" in report.form


def test_what_takes_relu_chains_only_refuses_leaky_relu_in_one_line(tmp_path):
    """prune (dense and CNN) and pad with two alphas refuse LeakyRelu naming the node; Sigmoid stays refused by merge."""
    from conftest import assert_clean_error, run_cli, save

    path = tmp_path / "leaky.onnx"
    save(leaky_chain(90, [4, 6, 5, 3], alpha=[0.1, 0.2]).to_onnx(), path)
    out = tmp_path / "out.onnx"
    line = assert_clean_error(run_cli("prune", path, "-o", out, "--method", "neuron", "--ratio", "0.3"),
                              "prune supports ReLU chains", "is a LeakyRelu")
    assert line.count("\n") == 0
    assert_clean_error(run_cli("pad", path, "--depth", "5", "-o", out), "pad needs one activation in every layer")
    sig = tmp_path / "sig.onnx"
    save(leaky_chain(91, [4, 6, 3], op="Sigmoid").to_onnx(), sig)
    assert_clean_error(run_cli("merge", path, sig, "-o", out), "merge supports ReLU chains", "is a Sigmoid")
    assert not out.exists()


# --- the next piecewise-linear activation: slopes other than LeakyRelu's ----------------------------


def test_any_convex_slopes_relax_fold_and_pad_soundly():
    """Slopes (0.3, 2): the relaxation holds, LEO++ folds stable units exactly, the identity layers are the identity;
    slopes that are not 0 <= below <= above cannot enter the table."""
    from nnxform.layered import dense
    from nnxform.operators.activations import piecewise_linear
    from nnxform.passes.compress import leo
    from nnxform.passes.pad import kinked_identity
    from nnxform.stable import ACTIVE, INACTIVE, UNSTABLE

    kind = piecewise_linear(0.3, 2.0)
    rng = np.random.default_rng(5)
    lo = rng.uniform(-4, 2, 300)
    hi = lo + rng.uniform(0, 5, 300)
    a_lo, b_lo, a_up, b_up = kind.relax(lo, hi)
    x = lo + rng.uniform(size=(50, 1)) * (hi - lo)
    assert np.all(a_lo * x + b_lo <= kind.function(x) + 1e-12) and np.all(kind.function(x) <= a_up * x + b_up + 1e-12)

    W0 = rng.normal(size=(5, 3))
    W0[1], W0[3] = 2 * W0[0], -3 * W0[2]  # 0, 1 inactive (dependent rows), 2 active, 3 inactive: c·W dependent too
    b0 = np.array([-9.0, -18.0, 9.0, -9.0, 0.0])
    layers = [dense(W0, b0), dense(rng.normal(size=(2, 5)), rng.normal(size=2))]
    status = np.array([INACTIVE, INACTIVE, ACTIVE, INACTIVE, UNSTABLE])
    out = leo(layers, [status], ["f"], slopes=[(0.3, 2.0)]).layers
    assert out[0].W.shape[0] < 5
    xs = rng.uniform(-0.5, 0.5, (200, 3))  # a box where the first four keep their signs
    ref = kind.function(xs @ W0.T + b0) @ layers[1].W.T + layers[1].b
    got = kind.function(xs @ out[0].W.T + out[0].b) @ out[1].W.T + out[1].b
    assert np.allclose(ref, got, atol=1e-9)

    padded, _ = kinked_identity(layers, 4, (0.3, 2.0))
    h = xs
    for k, layer in enumerate(padded):
        h = h @ layer.W.T + layer.b
        h = kind.function(h) if k < len(padded) - 1 else h
    assert len(padded) == 4 and np.allclose(h, kind.function(xs @ W0.T + b0) @ layers[1].W.T + layers[1].b)
    with pytest.raises(ValueError, match="0 <= below <= above"):
        piecewise_linear(1.5, 1.0)
