"""``discrepancy``: bounds of f_A − f_B checked against onnxruntime at samples, corners and gradient-attack points
(every hidden layer's Δ bounds too), exact MILP values, the witness, the fallbacks, the errors, the command."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from typer.testing import CliRunner

import nnxform
import nnxform.cli.discrepancy  # noqa: F401  (registers the command)
from conftest import MODELS, make_model
from nnxform.analyzers import bounds
from nnxform.analyzers.difference import ChainBounds, propagate
from nnxform.cli import app
from nnxform.discrepancy import METHODS, Discrepancy, Pair, discrepancy
from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.gradient import gradient
from nnxform.ir import Model, from_proto
from nnxform.merge import merge
from nnxform.runtime import OnnxRunner
from nnxform.vnnlib import read_box
from test_bounds import convnet, mlp, random_box, residual

ACAS = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
MNIST = MODELS / "mnist-net_256x2.onnx"


# --- building pairs ---------------------------------------------------------------------------


def with_weights(model: Model, change) -> Model:
    """A copy of ``model`` with ``change`` applied to every float constant (weights and biases)."""
    out = model.copy()
    for key, value in out.constants.items():
        if value.dtype.kind == "f":
            out.constants[key] = np.asarray(change(key, value.astype(np.float64))).astype(value.dtype)
    return out


def float16(model: Model) -> Model:
    return with_weights(model, lambda k, v: v.astype(np.float16))


def perturbed(model: Model, scale: float, seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    return with_weights(model, lambda k, v: v * (1 + scale * rng.standard_normal(v.shape)))


def mnist_box(index: int = 0, eps: float = 3 / 255) -> Box:
    row = np.loadtxt(MODELS / "data" / "mnist_test_100.csv", delimiter=",", skiprows=index, max_rows=1)[1:] / 255.0
    return Box(np.clip(row - eps, 0, 1), np.clip(row + eps, 0, 1))


# --- the independent check ----------------------------------------------------------------------


def attack(a: Model, b: Model, box: Box, starts: int = 6, steps: int = 10, seed: int = 0) -> np.ndarray:
    """Signed-gradient ascent on ±(f_A,i − f_B,i) for every output, by reverse mode on the two models."""
    rng = np.random.default_rng(seed)
    k = OnnxRunner(a)(box.lower[None]).size
    xs, ws = [], []
    for i in range(k):
        for sign in (1.0, -1.0):
            w = np.zeros((starts, k))
            w[:, i] = sign
            xs.append(box.sample(starts, rng))
            ws.append(w)
    x, w = np.vstack(xs), np.vstack(ws)
    pts = [x]
    step = (box.upper - box.lower) / 4
    for t in range(steps):
        g = gradient(a, x, w)[1] - gradient(b, x, w)[1]
        x = np.clip(x + step / (1 + t) * np.sign(g), box.lower, box.upper)
        pts.append(x)
    return np.vstack(pts)


def observed(a: Model, b: Model, box: Box, samples: int = 10000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (samples, corners, centre, attack points) and f_A − f_B there in float32 onnxruntime."""
    xs = np.vstack([box.points(samples, np.random.default_rng(seed)), attack(a, b, box, seed=seed)])
    return xs, OnnxRunner(a)(xs).astype(np.float64) - OnnxRunner(b)(xs).astype(np.float64)


def assert_sound(d: Discrepancy, deltas: np.ndarray, box: Box, a: Model, b: Model) -> None:
    """Every observed difference within the bounds; the witness in the box, replayed, and below δ_max."""
    low, high = (d.lower - deltas).max(), (deltas - d.upper).max()
    assert low <= 0 and high <= 0, f"{d.method}: an observed difference escapes the bounds by {max(low, high):.3g}"
    assert d.delta_max == pytest.approx(float(np.maximum(np.abs(d.lower), np.abs(d.upper)).max()))
    assert np.all(d.witness_input >= box.lower) and np.all(d.witness_input <= box.upper)
    replay = OnnxRunner(a)(d.witness_input[None])[0].astype(np.float64) - OnnxRunner(b)(d.witness_input[None])[0]
    np.testing.assert_allclose(d.witness_delta, replay, rtol=0, atol=1e-12)
    assert d.found == pytest.approx(float(np.abs(d.witness_delta).max())) and d.found <= d.delta_max


def assert_nested(loose: Discrepancy, tight: Discrepancy, slack: float = 1e-12) -> None:
    assert np.all(tight.lower >= loose.lower - slack) and np.all(tight.upper <= loose.upper + slack)


def dense_forward(layers, xs: np.ndarray) -> list[np.ndarray]:
    """Pre-activations of every layer of a dense chain (float64)."""
    out, h = [], xs
    for k, (W, bias) in enumerate(layers):
        z = h @ W.T + bias
        out.append(z)
        h = np.maximum(z, 0.0)
    return out


# --- soundness ----------------------------------------------------------------------------------


@settings(deadline=None, derandomize=True, max_examples=10)
@given(seed=st.integers(0, 2**16), depth=st.integers(1, 4), width=st.integers(2, 10),
       kind=st.sampled_from(["float16", "near", "far", "other"]))
def test_random_pairs_are_sound_at_every_layer(seed, depth, width, kind):
    a = mlp(seed, [3] + [width] * depth + [2])
    if kind == "other":  # a different network: other depth and widths
        b = mlp(seed + 1, [3] + [width + 3] * (1 + (depth + 1) % 3) + [2])
    else:
        b = float16(a) if kind == "float16" else perturbed(a, 0.01 if kind == "near" else 0.3, seed)
    box = random_box(seed, 3, width=0.6)
    xs, deltas = observed(a, b, box)
    pair = Pair(a, b)
    results = {m: pair.analyse(box, m) for m in ("interval", "symbolic", "merged-interval", "merged-symbolic")}
    for d in results.values():
        assert_sound(d, deltas, box, a, b)
    assert results["interval"].analysis == "difference" and results["merged-symbolic"].analysis == "merged"
    assert_nested(results["interval"], results["symbolic"])
    assert_nested(results["merged-interval"], results["merged-symbolic"])

    # every layer of the real-valued chains (float64, round-off aside): both networks' tightened bounds
    # and the bounds of z_A − z_B hold at the samples
    sa, sb = bounds(pair.net_a, box, "symbolic").state, bounds(pair.net_b, box, "symbolic").state
    layers_a = [(L.wa, L.ba) for L in pair.layers]
    layers_b = [(L.wb, L.bb) for L in pair.layers]
    for symbolic in (False, True):
        layer_deltas = propagate(pair.layers, ChainBounds.of(sa), ChainBounds.of(sb), symbolic)
        for D, za, zb in zip(layer_deltas, dense_forward(layers_a, xs), dense_forward(layers_b, xs)):
            tol = 1e-12 * (1 + np.abs(za).max() + np.abs(zb).max())
            for v, lo, hi in ((za, D.lo_a, D.hi_a), (zb, D.lo_b, D.hi_b), (za - zb, D.lo_d, D.hi_d)):
                assert np.all(v >= lo - tol) and np.all(v <= hi + tol)


def test_relaxations_of_the_relu_difference_hold_on_their_domain():
    """Every candidate line (S, N, C), the chosen pair and the interval of relu(z_A) − relu(z_B) hold at points
    of each neuron's (z_A, z_B) polygon, stable, unstable and degenerate cases alike."""
    from nnxform.analyzers.difference import LayerDelta, candidate_lines

    rng = np.random.default_rng(0)
    n = 4000
    za0, zb0 = rng.normal(0, 1, (2, n))
    wa, wb = rng.choice([0.0, 1e-3, 0.3, 2.0], (2, n)), rng.choice([0.0, 1e-3, 0.3, 2.0], (2, n))
    dw = rng.choice([0.0, 1e-4, 0.5], (2, n))
    la, ua, lb, ub = za0 - wa[0], za0 + wa[1], zb0 - wb[0], zb0 + wb[1]
    d0 = rng.uniform(la - ub, ua - lb)
    D = LayerDelta(la, ua, lb, ub, d0 - dw[0], d0 + dw[1], np.zeros(n), np.zeros(n))
    D.tighten()
    D.relax()
    lowers, uppers = candidate_lines(D.lo_a, D.hi_a, D.lo_b, D.hi_b, D.lo_d, D.hi_d, *D.const)
    dal, dah, bl, bh = D.interval()
    checked = 0
    for _ in range(200):
        za = rng.uniform(D.lo_a, D.hi_a)
        zb = rng.uniform(D.lo_b, D.hi_b)
        ok = (za - zb >= D.lo_d) & (za - zb <= D.hi_d)
        h, d = np.maximum(za, 0) - np.maximum(zb, 0), za - zb
        tol = 1e-12 * (1 + np.abs(za) + np.abs(zb))
        for lines, sign in ((lowers + [D.lower], 1.0), (uppers + [D.upper], -1.0)):
            for p, q, r in lines:
                assert np.all(~ok | (sign * (h - (p * d + q * zb + r)) >= -tol))
        assert np.all(~ok | ((h >= dal - tol) & (h <= dah + tol)))
        assert np.all(~ok | ((np.maximum(zb, 0) >= bl - tol) & (np.maximum(zb, 0) <= bh + tol)))
        checked += int(ok.sum())
    assert checked > 50 * n


@pytest.mark.parametrize("kind", ["float16", "near", "other"])
def test_lp_and_milp_are_sound_nested_and_milp_is_exact(kind):
    a = mlp(7, [3, 8, 8, 2])
    b = {"float16": float16, "near": lambda m: perturbed(m, 0.02, 3), "other": lambda m: mlp(8, [3, 6, 2])}[kind](a)
    box = random_box(7, 3, width=0.5)
    _, deltas = observed(a, b, box)
    pair = Pair(a, b)
    symbolic, lp, milp = (pair.analyse(box, m) for m in ("symbolic", "lp", "milp"))
    for d in (symbolic, lp, milp):
        assert_sound(d, deltas, box, a, b)
    assert_nested(symbolic, lp)
    assert_nested(lp, milp)
    assert milp.exact and not lp.exact and milp.details["exact_outputs"]["lower"] == [True, True]
    # exact: the extremes are attained (up to the float32 margin and the MIP tolerance)
    scale = 1e-5 + 1e-5 * float(np.abs(deltas).max())
    assert deltas.min(axis=0) == pytest.approx(milp.lower, abs=scale + 0.02 * np.ptp(deltas))
    assert milp.found >= milp.delta_max - scale - 1e-4 * milp.delta_max


@pytest.mark.parametrize("build, width", [(lambda s: mlp(s, [3, 2]), 1.0), (lambda s: mlp(s, [3, 6, 2]), 1e-4),
                                          (residual, 1e-4)], ids=["linear", "all-relus-stable", "merged-fallback"])
def test_milp_without_unstable_relus_is_exact_and_sound(build, width):
    """With no binary variable HiGHS solves the MILP as an LP and reports a MIP dual bound of 0: not used."""
    a = build(9)
    b = perturbed(a, 0.1, 2)
    lo = np.random.default_rng(9).uniform(-1, 1, a.input_size)
    box = Box(lo, lo + width)
    _, deltas = observed(a, b, box, samples=2000)
    d = discrepancy(a, b, box, "milp")
    assert_sound(d, deltas, box, a, b)
    assert d.exact and d.delta_max <= d.found * 1.001 + 1e-5


def test_mnist_float16_copy_is_tight_and_the_merged_network_is_not():
    """The issue's pair: ε = 3/255 around a test image; the difference analysis is within 4× of the attack."""
    a = nnxform.load(MNIST)
    b = float16(a)
    box = mnist_box(0)
    _, deltas = observed(a, b, box, samples=10000)
    pair = Pair(a, b)
    results = {m: pair.analyse(box, m) for m in ("interval", "symbolic", "merged-interval", "merged-symbolic")}
    for d in results.values():
        assert_sound(d, deltas, box, a, b)
    symbolic = results["symbolic"]
    assert symbolic.details["real_delta_max"] <= 4 * symbolic.found  # the analysis, in real arithmetic
    assert symbolic.ratio <= 25  # with both float networks' worst-case rounding
    assert results["merged-symbolic"].delta_max > 100 * symbolic.delta_max
    assert results["merged-interval"].delta_max > 1000 * symbolic.delta_max
    assert symbolic.details["bound_seconds"] < 5


def test_acasxu_float16_copy_on_its_properties_is_sound():
    a = nnxform.load(ACAS)
    b = float16(a)
    pair = Pair(a, b)
    for prop in ("acasxu_prop_1.vnnlib", "acasxu_prop_3.vnnlib"):
        box = read_box(MODELS / "vnnlib" / prop)
        _, deltas = observed(a, b, box, samples=10000)
        for method in ("interval", "symbolic", "merged-symbolic"):
            assert_sound(pair.analyse(box, method), deltas, box, a, b)
    small = Box(box.lower, box.lower + 0.01 * (box.upper - box.lower))
    _, deltas = observed(a, b, small, samples=2000)
    lp = pair.analyse(small, "lp", time_limit=10)
    assert_sound(lp, deltas, small, a, b)
    assert_nested(pair.analyse(small, "symbolic"), lp)


def test_input_splitting_is_sound_and_tightens_acasxu():
    a = nnxform.load(ACAS)
    b = float16(a)
    box = read_box(MODELS / "vnnlib" / "acasxu_prop_3.vnnlib")
    _, deltas = observed(a, b, box, samples=10000)
    pair = Pair(a, b)
    whole = pair.analyse(box, "symbolic")
    seen = []
    split = pair.analyse(box, "symbolic", splits=30, progress=lambda done, total: seen.append((done, total)))
    assert_sound(split, deltas, box, a, b)
    assert split.details["leaves"] == 31 and seen[-1] == (30, 30)
    assert split.delta_max < 0.25 * whole.delta_max
    assert_sound(pair.analyse(box, "merged-interval", splits=10), deltas, box, a, b)
    with pytest.raises(NnxformError, match="splitting"):
        pair.analyse(box, "lp", splits=3)


# --- values that are known ----------------------------------------------------------------------


@pytest.mark.parametrize("path, box", [(MNIST, mnist_box(1)),
                                       (ACAS, read_box(MODELS / "vnnlib" / "acasxu_prop_3.vnnlib"))], ids=["mnist", "acasxu"])
def test_a_network_against_itself_is_zero(path, box):
    a = nnxform.load(path)
    for method in ("interval", "symbolic"):
        d = discrepancy(a, a.copy(), box, method)
        assert d.found == 0 and d.details["real_delta_max"] < 1e-5, (method, d.details["real_delta_max"])
        assert 0 < d.delta_max < 0.5  # the two copies' worst-case rounding, bounded independently


@pytest.mark.parametrize("c", [0.25, -1.5])
def test_a_changed_last_bias_gives_exactly_that_difference(c):
    a = mlp(11, [4, 12, 12, 3])
    b = with_weights(a, lambda k, v: v + np.array([0.0, c, 0.0]) if k == "b2" else v)
    box = random_box(11, 4, width=0.8)
    for method in ("interval", "symbolic", "lp", "milp"):
        d = discrepancy(a, b, box, method)
        assert d.delta_max == pytest.approx(abs(c), abs=1e-4), method
        assert d.found == pytest.approx(abs(c), abs=1e-5)
        assert d.lower[1] == pytest.approx(-c, abs=1e-4) and d.upper[1] == pytest.approx(-c, abs=1e-4)
        assert np.all(np.abs(d.lower[[0, 2]]) < 1e-4) and np.all(np.abs(d.upper[[0, 2]]) < 1e-4)


def test_a_changed_hidden_bias_is_bounded_soundly():
    a = mlp(12, [3, 10, 10, 2])
    b = with_weights(a, lambda k, v: v + 0.3 * (np.arange(v.size) == 4) if k == "b1" else v)
    box = random_box(12, 3, width=0.7)
    _, deltas = observed(a, b, box)
    d = discrepancy(a, b, box, "symbolic")
    assert_sound(d, deltas, box, a, b)
    assert d.delta_max < 0.3 * np.abs(a.constants["W2"]).max() * 1.01  # one neuron moved by at most 0.3


# --- shapes, fallbacks, errors ------------------------------------------------------------------


def test_different_depths_widths_and_input_shapes_use_the_difference_analysis():
    a, b = nnxform.load(MNIST), nnxform.load(MODELS / "dnnv_mnist_relu_3_50.onnx")
    box = mnist_box(2, eps=0.01)
    pair = Pair(a, b)
    assert pair.chains and any("identity layer" in n for n in pair.notes)
    assert any("neurons with dead ones" in n for n in pair.notes)
    _, deltas = observed(a, b, box, samples=2000)
    for method in ("interval", "symbolic"):
        d = pair.analyse(box, method)
        assert d.analysis == "difference"
        assert_sound(d, deltas, box, a, b)


@pytest.mark.parametrize("sizes", [[3, 2], [3, 7]], ids=["output-split", "input-split"])
def test_a_network_without_hidden_layers_against_a_deeper_one_is_split_and_sound(sizes):
    """One affine layer is padded as ``relu(v) − relu(−v)`` of its output or input, whichever is narrower."""
    a, b = mlp(9, sizes), mlp(10, [3, 5, 5, sizes[-1]])
    box = random_box(9, 3)
    _, deltas = observed(a, b, box, samples=2000)
    pair = Pair(a, b)
    assert pair.chains and any("split into relu" in n for n in pair.notes)
    for method in ("interval", "symbolic", "lp"):
        assert_sound(pair.analyse(box, method), deltas, box, a, b)


def test_a_normalised_network_against_a_narrower_one_is_analysed_as_a_difference():
    """Input normalisation computes with cancellation inside the first layer; widening carries every layer's own
    rounding to its place, so the pair is still analysed as a difference, soundly."""
    rng = np.random.default_rng(5)
    W1, b1, W2, b2 = rng.normal(0, 0.6, (8, 3)), rng.normal(0, 0.2, 8), rng.normal(0, 0.4, (2, 8)), rng.normal(0, 0.2, 2)

    def normalised(keep: np.ndarray) -> Model:
        nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]), helper.make_node("Div", ["c", "std"], ["n"]),
                 helper.make_node("Gemm", ["n", "W1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
        weights = {"mean": np.array([[0.5, -0.2, 0.1]]), "std": np.array([[0.3, 0.7, 1.9]]), "W1": W1[keep],
                   "b1": b1[keep], "W2": W2[:, keep], "b2": b2}
        return from_proto(make_model(nodes, [1, 3], weights=weights))

    a, b = normalised(np.arange(8)), normalised(np.array([0, 2, 3, 5, 7]))
    box = random_box(5, 3, width=0.5)
    _, deltas = observed(a, b, box, samples=2000)
    pair = Pair(a, b)
    assert pair.chains and any("widened from 5 to 8 neurons" in n for n in pair.notes)
    for method in ("interval", "symbolic", "lp"):
        d = pair.analyse(box, method)
        assert d.analysis == "difference"
        assert_sound(d, deltas, box, a, b)


@pytest.mark.parametrize("build", [residual, convnet], ids=["skip-connection", "maxpool"])
def test_networks_that_are_not_chains_fall_back_to_the_merged_network(build):
    a = build(3)
    b = perturbed(a, 0.01, 4)
    box = random_box(3, a.input_size, width=0.4)
    _, deltas = observed(a, b, box, samples=2000)
    pair = Pair(a, b)
    for method in ("interval", "symbolic", "lp"):
        d = pair.analyse(box, method)
        assert d.analysis == "merged" and "merged network" in d.notes[0]
        assert_sound(d, deltas, box, a, b)


def test_sigmoid_networks_fall_back_and_lp_says_it_is_not_supported():
    a = mlp(5, [3, 6, 2], act="Sigmoid")
    b = perturbed(a, 0.05, 1)
    box = random_box(5, 3)
    _, deltas = observed(a, b, box, samples=2000)
    d = discrepancy(a, b, box, "symbolic")
    assert d.analysis == "merged" and "Sigmoid" in d.notes[0]
    assert_sound(d, deltas, box, a, b)
    with pytest.raises(NnxformError, match="Sigmoid .* not supported by 'lp'"):
        discrepancy(a, b, box, "lp")


def test_errors_are_one_line():
    a = mlp(1, [3, 4, 2])
    with pytest.raises(NnxformError, match="inputs differ in size"):
        Pair(a, mlp(1, [4, 4, 2]))
    with pytest.raises(NnxformError, match="outputs differ in size"):
        Pair(a, mlp(1, [3, 4, 3]))
    with pytest.raises(NnxformError, match="unknown discrepancy method 'magic'"):
        discrepancy(a, a, Box.default(3), "magic")
    with pytest.raises(NnxformError, match="4 elements"):
        discrepancy(a, a, Box.default(4))


def test_json_document():
    a = mlp(2, [3, 5, 2])
    d = discrepancy(a, perturbed(a, 0.1), random_box(2, 3), "milp")
    doc = json.loads(json.dumps(d.to_json()))
    assert {"method", "seconds", "lower", "upper", "delta_max", "exact", "witness"} <= set(doc)
    assert doc["method"] == "milp" and doc["exact"] is True and doc["analysis"] == "difference"
    assert len(doc["lower"]) == len(doc["upper"]) == 2 and len(doc["witness"]["input"]) == 3
    assert doc["witness"]["found"] == doc["found"] == max(abs(v) for v in doc["witness"]["difference"])
    assert doc["found"] <= doc["delta_max"] and doc["ratio"] >= 1


# --- the command --------------------------------------------------------------------------------


def _run(*args):
    return CliRunner().invoke(app, ["discrepancy", *map(str, args)])


@pytest.fixture
def acas_pair(tmp_path):
    path = tmp_path / "acas_f16.onnx"
    float16(nnxform.load(ACAS)).save(path)
    return ACAS, path


def test_command_table_and_json_file(tmp_path, acas_pair):
    out = tmp_path / "d.json"
    r = _run(*acas_pair, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib", "--json", out)
    assert r.exit_code == 0, r.output
    assert "δ_max" in r.output and "sound upper bound" in r.output and "witness (onnxruntime)" in r.output
    doc = json.loads(out.read_text())
    assert doc["method"] == "symbolic" and len(doc["lower"]) == 5 and doc["found"] <= doc["delta_max"]
    assert doc["second"] == str(acas_pair[1]) and "vnnlib" in doc["domain"]
    r = _run(*acas_pair, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib", "--splits", 8, "--json", "-")
    assert r.exit_code == 0, r.output
    split = json.loads(r.output)
    assert split["leaves"] == 9 and split["found"] <= split["delta_max"] < doc["delta_max"]


def test_command_milp_is_exact_and_json_goes_to_stdout(tmp_path):
    a = mlp(3, [2, 6, 6, 2])
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.save(pa)
    perturbed(a, 0.05).save(pb)
    r = _run(pa, pb, "--lower", -1, "--upper", 1, "-m", "milp", "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["exact"] is True and doc["found"] <= doc["delta_max"] <= doc["found"] * 1.01 + 1e-5


def test_command_needs_a_box_and_a_known_method(acas_pair):
    r = _run(*acas_pair)
    assert isinstance(r.exception, NnxformError) and "needs the input box" in str(r.exception)
    r = _run(*acas_pair, "--lower", 0, "--upper", 1, "-m", "magic")
    assert isinstance(r.exception, NnxformError) and "magic" in str(r.exception)
    r = _run(*acas_pair, "--lower", 0, "--upper", 1, "-m", "milp", "--splits", 2)
    assert isinstance(r.exception, NnxformError) and "--splits" in str(r.exception)
    assert set(METHODS) >= {"interval", "symbolic", "lp", "milp", "merged-interval", "merged-symbolic"}


# --- an external verifier agrees ----------------------------------------------------------------


def test_marabou_agrees_with_the_discrepancy_on_the_exported_query(tmp_path):
    """Marabou on the exported ε-equivalence query: unsat just above each bound (no larger difference exists),
    sat below each witness's value; with the exact (MILP) values the two sides are 1% apart."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        marabou = pytest.importorskip("maraboupy.Marabou", reason="maraboupy (the 'test' extra) is not installed")
    from nnxform.vnnlib import equivalence_property

    a = mlp(21, [2, 8, 8, 2])
    b = float16(perturbed(a, 0.02, 5))
    box = Box(np.array([-1.0, -0.5]), np.array([1.0, 0.5]))
    pair = Pair(a, b)
    d, exact = pair.analyse(box, "symbolic"), pair.analyse(box, "milp")
    assert exact.exact
    merged, report, _ = merge(a, b, box=box, samples=200)
    merged.save(tmp_path / "ab.onnx")
    for eps, expected in ((0.5 * d.found, "sat"), (d.delta_max * 1.001, "unsat"),
                          (0.995 * exact.found, "sat"), (1.005 * exact.delta_max, "unsat")):
        prop = tmp_path / f"{expected}.vnnlib"
        prop.write_text(equivalence_property(box, report.outputs, eps))
        net = marabou.read_onnx(str(tmp_path / "ab.onnx"))
        options = marabou.createOptions(timeoutInSeconds=60, verbosity=0)
        answer, _, _ = net.solve(propertyFilename=str(prop), options=options, verbose=False)
        assert answer == expected, (eps, d.found, d.delta_max)
