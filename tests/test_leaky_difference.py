"""The paired difference analysis of LeakyRelu networks (any two-piece activation of the table): the relaxation of
``f(z_A) − f(z_B)`` holds, every method's bounds contain onnxruntime's differences, the MILP is the merged network's
exact value, equiv decides a pair, ReLU pairs keep the relaxation they had, mixed pairs fall back, and the paired
analysis is tighter than the merged network."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_not_equivalent_below, perturbed, random_chain

import nnxform  # noqa: F401  (the IR's evaluator)
from nnxform.analyzers import bounds
from nnxform.analyzers.difference import LayerDelta, candidate_lines, max_gap
from nnxform.discrepancy import Pair, discrepancy
from nnxform.domain import Box
from nnxform.equiv import equivalence
from nnxform.ir import Model
from nnxform.operators import OPERATORS
from nnxform.operators.activations import RELU
from nnxform.runtime import OnnxRunner


def leaky(seed: int, widths: list[int], alpha: float | list[float] = 0.1, scale: float = 1.0) -> Model:
    return random_chain(seed, widths, scale, "LeakyRelu", alpha)


def float16(model: Model) -> Model:
    """``model`` with every float constant cast to float16 and back."""
    out = model.copy()
    for key, value in out.constants.items():
        if value.dtype.kind == "f":
            out.constants[key] = value.astype(np.float16).astype(value.dtype)
    return out


def observed(a: Model, b: Model, box: Box, n: int = 4000, seed: int = 0) -> np.ndarray:
    """``f_A − f_B`` in onnxruntime at samples, corners and the centre of ``box``."""
    xs = box.points(n, np.random.default_rng(seed))
    return OnnxRunner(a)(xs).astype(np.float64) - OnnxRunner(b)(xs).astype(np.float64)


def assert_contains(lower: np.ndarray, upper: np.ndarray, deltas: np.ndarray, what: str, tol: float = 0.0) -> None:
    escape = max((lower - deltas).max(), (deltas - upper).max())
    assert escape <= tol, f"{what}: an observed difference escapes the bounds by {escape:.3g}"


def random_layer(rng: np.random.Generator, n: int, kind=RELU) -> LayerDelta:
    """Random per-neuron bounds of ``z_A``, ``z_B``, ``Δz`` (stable, unstable and degenerate), tightened."""
    za0, zb0 = rng.normal(0, 1, (2, n))
    wa, wb = rng.choice([0.0, 1e-3, 0.3, 2.0], (2, n)), rng.choice([0.0, 1e-3, 0.3, 2.0], (2, n))
    dw = rng.choice([0.0, 1e-4, 0.5], (2, n))
    la, ua, lb, ub = za0 - wa[0], za0 + wa[1], zb0 - wb[0], zb0 + wb[1]
    d0 = rng.uniform(la - ub, ua - lb)
    D = LayerDelta(la, ua, lb, ub, d0 - dw[0], d0 + dw[1], np.zeros(n), np.zeros(n), kind)
    D.tighten()
    return D


# --- the relaxation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.2, 0.5, 1.0])
def test_the_relaxation_of_the_leaky_difference_holds_on_its_domain(alpha):
    """The chosen lines, the constants and the interval of ``f(z_A) − f(z_B)`` and of ``f(z_B)`` hold at points of
    each neuron's feasible ``(z_A, z_B)`` polygon."""
    kind = OPERATORS["LeakyRelu"].activation.at({"alpha": alpha})
    rng = np.random.default_rng(int(alpha * 100))
    n = 3000
    D = random_layer(rng, n, kind)
    D.relax()
    dal, dah, bl, bh = D.interval()
    c_lo, c_hi = D.const
    gl, hl, gu, hu = D.relu_b
    checked = 0
    for _ in range(200):
        za, zb = rng.uniform(D.lo_a, D.hi_a), rng.uniform(D.lo_b, D.hi_b)
        ok = (za - zb >= D.lo_d) & (za - zb <= D.hi_d)
        h, d, fb = kind.function(za) - kind.function(zb), za - zb, kind.function(zb)
        tol = 1e-12 * (1 + np.abs(za) + np.abs(zb))
        for (p, q, r), sign in ((D.lower, 1.0), (D.upper, -1.0)):
            assert np.all(~ok | (sign * (h - (p * d + q * zb + r)) >= -tol))
        for lo, hi, v in ((dal, dah, h), (c_lo, c_hi, h), (bl, bh, fb), (gl * zb + hl, gu * zb + hu, fb)):
            assert np.all(~ok | ((v >= lo - tol) & (v <= hi + tol)))
        checked += int(ok.sum())
    assert checked > 50 * n


def test_the_float_margin_of_leaky_relu_widens_the_relaxation_and_relu_has_none():
    rng = np.random.default_rng(5)
    kind = OPERATORS["LeakyRelu"].activation.at({"alpha": 0.2})
    real, rounded = random_layer(rng, 500, kind), None
    rounded = LayerDelta(*(getattr(real, f) for f in ("lo_a", "hi_a", "lo_b", "hi_b", "lo_d", "hi_d", "noise_a",
                                                       "noise_b")), kind, (True, True))
    real.relax()
    rounded.relax()
    ea, eb = rounded.margins
    assert np.all(ea > 0) and np.all(eb > 0)
    np.testing.assert_array_equal(rounded.lower[2], real.lower[2] - (ea + eb))
    np.testing.assert_array_equal(rounded.upper[2], real.upper[2] + (ea + eb))
    np.testing.assert_array_equal(rounded.relu_b[1], real.relu_b[1] - eb)
    relu = LayerDelta(*(getattr(real, f) for f in ("lo_a", "hi_a", "lo_b", "hi_b", "lo_d", "hi_d", "noise_a",
                                                    "noise_b")), RELU, (True, True))
    assert relu.margins == (0.0, 0.0)


def _relu_relaxation_as_it_was(D: LayerDelta):
    """The ReLU difference relaxation as the tree of 75761ad computed it (``LayerDelta.relax`` and ``interval``)."""
    relu_b = RELU.relax(D.lo_b, D.hi_b)
    la, ua, lb, ub, dl, du = D.lo_a, D.hi_a, D.lo_b, D.hi_b, D.lo_d, D.hi_d
    c_lo = np.maximum(np.minimum(dl, 0.0), np.maximum(la, 0.0) - np.maximum(ub, 0.0))
    c_hi = np.minimum(np.maximum(du, 0.0), np.maximum(ua, 0.0) - np.maximum(lb, 0.0))
    c_lo = np.minimum(c_lo, c_hi)
    lowers, uppers = candidate_lines(la, ua, lb, ub, dl, du, c_lo, c_hi)
    m = D.unsettled
    at = [x[m] for x in (la, ua, lb, ub, dl, du)]
    gaps = np.stack([[max_gap(tuple(t[m] for t in lo), tuple(t[m] for t in up), *at) for up in uppers]
                     for lo in lowers])
    best = np.zeros(la.shape, int)
    best[m] = np.argmin(gaps.reshape(len(lowers) * len(uppers), -1), axis=0)
    i_lo, i_up = best // len(uppers), best % len(uppers)
    lower = tuple(np.choose(i_lo, [lo[t] for lo in lowers]) for t in range(3))
    upper = tuple(np.choose(i_up, [up[t] for up in uppers]) for t in range(3))
    act_a, act_b, off_a, off_b = la >= 0, lb >= 0, ua <= 0, ub <= 0
    lo = np.select([act_a & act_b, off_a & off_b, act_a & off_b, off_a & act_b], [dl, 0.0, la, -ub], c_lo)
    hi = np.select([act_a & act_b, off_a & off_b, act_a & off_b, off_a & act_b], [du, 0.0, ua, -lb], c_hi)
    lo, hi = np.maximum(lo, c_lo), np.minimum(hi, c_hi)
    return relu_b, lower, upper, (c_lo, c_hi), (lo, np.maximum(lo, hi), np.maximum(lb, 0.0), np.maximum(ub, 0.0))


@pytest.mark.parametrize("rounded", [(False, False), (True, True)])
def test_relu_pairs_keep_the_relaxation_they_had_bit_for_bit(rounded):
    """With slopes (0, 1) the map from ``Δr`` to ``Δa`` is the identity: every line, constant and interval is the
    one the ReLU-only analysis computed (float networks included: ReLU's margin is 0)."""
    D = random_layer(np.random.default_rng(11), 4000)
    D.rounded = rounded
    D.relax()
    relu_b, lower, upper, const, interval = _relu_relaxation_as_it_was(D)
    for new, old in ((D.relu_b, relu_b), (D.lower, lower), (D.upper, upper), (D.const, const),
                     (D.interval(), interval)):
        for x, y in zip(new, old):
            np.testing.assert_array_equal(x, y)


# --- the pairing ------------------------------------------------------------------------------------------------


def test_a_leaky_pair_is_paired_and_a_leaky_against_a_relu_network_falls_back_naming_the_layer():
    a = leaky(1, [4, 6, 5, 2], alpha=0.1)
    assert Pair(a, perturbed(a, 0, 0.02)).chains
    relu = random_chain(1, [4, 6, 5, 2])
    other_alpha = leaky(1, [4, 6, 5, 2], alpha=[0.1, 0.3])
    box = Box(-np.ones(4), np.ones(4))
    for b, layer in ((relu, 1), (other_alpha, 2)):
        pair = Pair(a, b)
        assert not pair.chains and f"layer {layer}:" in pair.notes[0] and "merged network" in pair.notes[0]
        d = pair.analyse(box, "symbolic")
        assert d.analysis == "merged"
        assert_contains(d.lower, d.upper, observed(a, b, box), "merged fallback")
    zero = leaky(1, [4, 6, 5, 2], alpha=0.0)  # LeakyRelu(0) is ReLU: the same slopes, paired
    assert Pair(zero, relu).chains and Pair(zero, relu).analyse(box, "symbolic").delta_max < 1e-4


@pytest.mark.parametrize("wa, wb", [([3, 7, 2], [3, 5, 6, 4, 2]), ([3, 2], [3, 6, 5, 2]), ([6, 2], [6, 4, 2]),
                                    ([3, 4, 2], [3, 9, 2])],
                         ids=["identity-layers", "split-input", "split-output", "widened"])
def test_leaky_pairs_of_other_depths_and_widths_are_padded_exactly_and_bounded_soundly(wa, wb):
    """Identity layers through LeakyRelu (``y = (f(y) − f(−y)) / (1 + α)``), a one-layer network split around the
    other's LeakyRelu, dead units: each padded chain computes its network, and every method's bounds hold."""
    a, b = leaky(20, wa, alpha=0.15), leaky(21, wb, alpha=0.15)
    pair = Pair(a, b)
    assert pair.chains, pair.notes
    assert len(pair.layers) == max(len(wa), len(wb)) - 1 and all(L.kind.slopes == (np.float32(0.15), 1.0)
                                                                 for L in pair.layers[:-1])
    box = Box(-np.ones(wa[0]), np.ones(wa[0]))
    xs = box.points(500, np.random.default_rng(2))
    for side, model in (("a", a), ("b", b)):  # each paired (padded, widened) chain computes its network
        h = xs
        for k, L in enumerate(pair.layers):
            z = h @ np.asarray(getattr(L, f"w{side}")).T + getattr(L, f"b{side}")
            h = L.kind.function(z) if k < len(pair.layers) - 1 else z
        np.testing.assert_allclose(h, OnnxRunner(model)(xs).astype(np.float64), rtol=1e-5, atol=1e-5)
    deltas = observed(a, b, box)
    for method in ("interval", "symbolic", "lp", "milp"):
        d = pair.analyse(box, method, time_limit=30)
        assert d.analysis == "difference"
        assert_contains(d.lower, d.upper, deltas, method)
    assert d.exact and d.found >= d.delta_max * (1 - 1e-3) - 1e-5


# --- soundness by sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_leaky_pairs_are_sound_for_every_method(seed):
    """Random LeakyRelu chains (α from 0.01 to 0.5, per layer), near copies, float16 copies and other networks,
    random boxes: every difference method, the batched boxes and the real-valued bounds hold at onnxruntime's
    (or float64's) samples."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    depth = int(rng.integers(1, 4))
    alphas = [float(rng.choice([0.01, 0.2, 0.05, 0.5])) for _ in range(depth)]
    widths = [n] + [int(w) for w in rng.integers(3, 9, depth)] + [int(rng.integers(1, 4))]
    a = leaky(seed, widths, alphas, scale=float(rng.choice([0.5, 1.0, 3.0])))
    kind = seed % 3
    b = float16(a) if kind == 0 else perturbed(a, seed, float(rng.choice([0.01, 0.1]))) if kind == 1 else \
        leaky(seed + 50, [n] + [int(w) for w in rng.integers(3, 9, depth)] + [widths[-1]], alphas)
    centre = rng.uniform(-1, 1, n)
    box = Box(centre - rng.uniform(0.05, 1.0), centre + rng.uniform(0.05, 1.0))
    deltas = observed(a, b, box, seed=seed)
    pair = Pair(a, b)
    assert pair.chains, pair.notes
    found = []
    for method in ("interval", "symbolic", "lp", "milp", "merged-symbolic"):
        d = pair.analyse(box, method, time_limit=30, seed=seed)
        assert_contains(d.lower, d.upper, deltas, method)
        assert d.found <= d.delta_max + 1e-12
        found.append(d.delta_max)
    slack = 1e-5 * found[1] + 1e-6  # the solvers' tolerances (a MILP row may be met within 1e-6 of its scaled column)
    assert found[3] <= found[2] + slack and found[2] <= found[1] + slack  # milp within lp within symbolic
    real = pair.bound(box, "symbolic", real=True)
    xs = box.points(2000, np.random.default_rng(seed))
    real_deltas = pair.real_delta(xs)  # float64 arithmetic: its own round-off
    assert_contains(real.lower, real.upper, real_deltas, "real-valued", 1e-12 * (1 + np.abs(real_deltas).max()))
    half = 0.5 * (box.lower + box.upper)
    lo, hi, _ = pair.bound_boxes(np.stack([box.lower, half]), np.stack([half, box.upper]))
    for k, part in enumerate((Box(box.lower, half), Box(half, box.upper))):
        assert_contains(lo[k], hi[k], observed(a, b, part, 1000, seed), f"batched box {k}")


# --- exact values, equivalence, tightness ------------------------------------------------------------------


@pytest.mark.parametrize("seed, alpha", [(0, 0.01), (1, 0.2), (2, 0.2)])
def test_milp_of_the_pair_is_the_merged_networks_exact_milp(seed, alpha):
    a = leaky(30 + seed, [3, 8, 6, 2], alpha)
    b = perturbed(a, seed, 0.1) if seed != 2 else leaky(40, [3, 5, 2], alpha)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, 3)
    box = Box(centre - 0.5, centre + 0.5)
    pair = Pair(a, b)
    d = pair.analyse(box, "milp", time_limit=60)
    merged = bounds(pair.joint, box, "milp", time_limit=60)
    assert d.analysis == "difference" and d.exact and merged.exact
    scale = 1e-5 * (1 + np.abs(merged.output_lower).max() + np.abs(merged.output_upper).max())
    np.testing.assert_allclose(d.lower, merged.output_lower, rtol=1e-4, atol=scale)
    np.testing.assert_allclose(d.upper, merged.output_upper, rtol=1e-4, atol=scale)
    assert d.found >= d.delta_max * (1 - 1e-3) - 1e-5  # the MILP's solution, replayed in onnxruntime


def test_equiv_decides_a_leaky_pair_by_the_difference_analysis():
    a = leaky(7, [3, 10, 8, 2], 0.2)
    b = perturbed(a, 7, 0.05)
    box = Box(-0.5 * np.ones(3), 0.5 * np.ones(3))
    exact = discrepancy(a, b, box, "milp", time_limit=60)
    assert exact.analysis == "difference" and exact.exact
    above = equivalence(a, b, box, 1.5 * exact.delta_max, timeout=60)
    assert above.answer == "equivalent", above.to_json()
    assert not any("merged network" in note for note in above.notes)
    assert_not_equivalent_below(a, b, box, exact.delta_max)


@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_the_paired_analysis_is_strictly_tighter_than_the_merged_network_on_a_float16_copy(alpha):
    a = leaky(3, [5, 20, 20, 3], alpha)
    b = float16(a)
    box = Box(-0.2 * np.ones(5), 0.2 * np.ones(5))
    pair = Pair(a, b)
    deltas = observed(a, b, box)
    paired, merged = (pair.analyse(box, m) for m in ("symbolic", "merged-symbolic"))
    for d in (paired, merged):
        assert_contains(d.lower, d.upper, deltas, d.method)
    assert paired.analysis == "difference" and merged.analysis == "merged"
    assert paired.delta_max < 0.2 * merged.delta_max, (paired.delta_max, merged.delta_max)


def test_the_witness_search_follows_leaky_relu_slopes_below_zero():
    """``_ChainDelta``: its values are the networks' and its gradient the finite differences', α below 0 included
    (a LeakyRelu unit below 0 passes α of its gradient, not 0)."""
    a = leaky(9, [4, 6, 5, 2], 0.3, scale=2.0)
    b = perturbed(a, 9, 0.1)
    pair = Pair(a, b)
    xs = np.random.default_rng(9).uniform(-1, 1, (50, 4))
    fn = pair._delta_fn
    np.testing.assert_allclose(fn.values(xs), OnnxRunner(a)(xs).astype(np.float64) -
                               OnnxRunner(b)(xs).astype(np.float64), atol=1e-5)
    w = np.array([1.0, -0.5])
    _, grad = fn.value_grad(xs, w)
    eps = 1e-6
    numeric = np.stack([((fn.values(xs + eps * e) - fn.values(xs - eps * e)) @ w) / (2 * eps) for e in np.eye(4)],
                       axis=1)
    np.testing.assert_allclose(grad, numeric, atol=1e-5)


def leaky_cnn(seed: int, alpha: float = 0.1) -> Model:
    """Conv 3×3 (4 channels) → LeakyRelu → Conv 3×3 (3 channels) → LeakyRelu → Flatten → Gemm on a 1×6×6 input."""
    from conftest import make_model
    from onnx import helper

    from nnxform.ir import from_proto

    rng = np.random.default_rng(seed)
    w = {"K1": rng.normal(0, 0.5, (4, 1, 3, 3)), "c1": rng.normal(0, 0.2, 4), "K2": rng.normal(0, 0.3, (3, 4, 3, 3)),
         "c2": rng.normal(0, 0.2, 3), "W": rng.normal(0, 0.3, (2, 12)), "b": rng.normal(0, 0.2, 2)}
    nodes = [helper.make_node("Conv", ["x", "K1", "c1"], ["h1"], kernel_shape=[3, 3]),
             helper.make_node("LeakyRelu", ["h1"], ["r1"], alpha=alpha),
             helper.make_node("Conv", ["r1", "K2", "c2"], ["h2"], kernel_shape=[3, 3]),
             helper.make_node("LeakyRelu", ["h2"], ["r2"], alpha=alpha),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    return from_proto(make_model(nodes, [1, 1, 6, 6], weights=w))


def test_a_convolutional_leaky_pair_keeps_its_convolutions_and_is_sound():
    a = leaky_cnn(4, 0.2)
    b = float16(perturbed(a, 4, 0.02))
    pair = Pair(a, b)
    assert pair.chains and not pair.notes, pair.notes
    assert any(type(L.wa).__name__ == "ConvMap" for L in pair.layers)
    rng = np.random.default_rng(4)
    lo = rng.uniform(-1, 0.8, 36)
    box = Box(lo, lo + 0.2)
    deltas = observed(a, b, box)
    for method in ("interval", "symbolic", "lp", "merged-symbolic"):
        d = pair.analyse(box, method, time_limit=30)
        assert_contains(d.lower, d.upper, deltas, method)
    assert d.analysis == "merged" and pair.analyse(box, "symbolic").delta_max < d.delta_max
