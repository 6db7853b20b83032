"""``nnxform equiv``: ε-equivalence decided as the exact MILP difference says — equivalent just above the exact
δ_max, not equivalent (a counterexample replayed in onnxruntime) below it — and bad input refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MODELS, assert_clean_error, assert_not_equivalent_below, perturbed, run_cli, save
from test_bounds import mlp

from nnxform.discrepancy import discrepancy
from nnxform.domain import Box
from nnxform.equiv import equivalence
from nnxform.runtime import OnnxRunner


@pytest.mark.parametrize("seed, inputs, hidden", [(0, 3, 10), (1, 3, 10), (2, 20, 6)])
def test_answers_agree_with_the_exact_milp_difference(seed, inputs, hidden):
    """Below and above the exact MILP δ_max; with 3 inputs through input halving, with 20 through the LP then the MILP
    (there the LP's bound is twice the exact one, so the MILP decides; 6 hidden units keep its solves to seconds)."""
    a = mlp(seed, [inputs, hidden, hidden, 3])
    b = perturbed(a, seed, 0.05)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-1, 1, inputs)
    box = Box(centre - 0.3, centre + 0.3)
    exact = discrepancy(a, b, box, "milp")
    assert exact.exact
    heard = []
    above = equivalence(a, b, box, 1.5 * exact.delta_max, timeout=60, progress=lambda *report: heard.append(report))
    assert above.answer == "equivalent", above.to_json()
    assert above.bound < 1.5 * exact.delta_max
    assert heard and heard[-1][1] == above.bound and heard[-1][3] == above.leaves  # (seconds, bound, found, leaves)
    assert_not_equivalent_below(a, b, box, exact.delta_max)


def test_cli_exit_status_and_json(tmp_path):
    a = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
    box = MODELS / "vnnlib" / "acasxu_prop_3.vnnlib"
    report = tmp_path / "equiv.json"
    r = run_cli("equiv", a, a, "--vnnlib", box, "--equiv-eps", "0.1", "--json", report)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["answer"] == "equivalent" and data["delta_max_bound"] < 0.1 and data["largest_found"] == 0.0


def test_bad_input_is_refused_in_one_line(tmp_path):
    a = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
    assert_clean_error(run_cli("equiv", a, a, "--equiv-eps", "0.1"), "needs the input box")
    assert_clean_error(run_cli("equiv", a, a, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib",
                               "--equiv-eps", "-1"), "--equiv-eps")
    other = save(mlp(0, [3, 4, 5]).to_onnx(), tmp_path / "three.onnx")
    assert_clean_error(run_cli("equiv", a, other, "--vnnlib", MODELS / "vnnlib" / "acasxu_prop_3.vnnlib",
                               "--equiv-eps", "0.1"), "inputs differ in size")


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_difference_bounds_hold_and_match_one_box_at_a_time(seed):
    """``Pair.bound_boxes`` bounds many sub-boxes at once: every sampled difference (onnxruntime) lies within its
    box's bounds, and each box's bound is the one-box analysis's within a factor (both are sound; they relax alike)."""
    from nnxform.discrepancy import Pair

    a = mlp(seed, [4, 12, 12, 3])
    pair = Pair(a, perturbed(a, seed, 0.05))
    assert pair.batched
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.5, (40, 4))
    hi = lo + rng.uniform(0.01, 0.5, (40, 4))
    lower, upper, coef = pair.bound_boxes(lo, hi)
    assert lower.shape == upper.shape == (40, 3) and coef.shape == (40, 6, 4)
    ra, rb = pair.runners
    for k in range(40):
        xs = Box(lo[k], hi[k]).float32_points(rng.uniform(lo[k], hi[k], (300, 4))).astype(np.float64)
        d = ra(xs).astype(np.float64) - rb(xs).astype(np.float64)
        assert np.all(d >= lower[k]) and np.all(d <= upper[k])
        one = pair.bound(Box(lo[k], hi[k]), "symbolic")
        batched = max(np.abs(lower[k]).max(), np.abs(upper[k]).max())
        assert batched <= 1.5 * one.delta_max + 1e-6 and one.delta_max <= 1.5 * batched + 1e-6


@pytest.mark.parametrize("real", [False, True])
def test_inherited_bounds_contain_each_sub_boxs_values_two_generations_down(real):
    """``Pair.bound_inherited``: a box's kept bounds (each network's hidden pre-activations, their difference, the
    output's difference), passed to its halves and theirs, contain the values at points sampled in each quarter (float32
    arithmetic, or float64 for ``real``); each part's bound is never looser than its parent's, and shifting the kept
    bounds by 0.05 makes the check fail (it is not vacuous)."""
    from nnxform.discrepancy import Pair

    a = mlp(3, [4, 16, 16, 16, 3])
    pair = Pair(a, perturbed(a, 3, 0.05))
    dtype = np.float64 if real else np.float32
    rng = np.random.default_rng(3)
    lo, hi = -np.ones((1, 4)), np.ones((1, 4))
    _, _, _, kept = pair.bound_inherited(lo, hi, None, real)
    for generation in range(2):
        mid = 0.5 * (lo[:, generation] + hi[:, generation])
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[:, generation], right_lo[:, generation] = mid, mid
        lo, hi = np.vstack([lo, right_lo]), np.vstack([left_hi, hi])
        parent = np.vstack([kept, kept])
        _, _, _, kept = pair.bound_inherited(lo, hi, parent, real)
        assert kept.dtype == np.float32 and kept.shape == parent.shape
        assert np.all(kept[:, 0] >= parent[:, 0]) and np.all(kept[:, 1] <= parent[:, 1])
    for k in range(len(lo)):
        xs = Box(lo[k], hi[k]).float32_points(rng.uniform(lo[k], hi[k], (500, 4))).astype(dtype)
        za, zb, acts = [], [], [xs, xs]
        for L in pair.layers:
            za.append(acts[0] @ np.asarray(L.wa, dtype).T + np.asarray(L.ba, dtype))
            zb.append(acts[1] @ np.asarray(L.wb, dtype).T + np.asarray(L.bb, dtype))
            acts = [np.maximum(za[-1], 0), np.maximum(zb[-1], 0)]
        values = np.hstack(za[:-1] + zb[:-1] + [x - y for x, y in zip(za, zb)]).astype(np.float64)
        assert np.all(values >= kept[k, 0]) and np.all(values <= kept[k, 1])
        assert not (np.all(values >= kept[k, 0] + 0.05) and np.all(values <= kept[k, 1] + 0.05))


def test_milp_below_solves_only_the_output_bounds_still_open():
    """``Pair.bound(..., below=)``: output bounds the symbolic analysis already puts within ``±below`` keep their
    symbolic value, the others get the MILP's (the same as without ``below``), and every sampled difference
    (onnxruntime) lies within the bounds."""
    from nnxform.discrepancy import Pair

    a = mlp(5, [6, 6, 4])
    pair = Pair(a, perturbed(a, 5, 0.05))
    box = Box(-np.ones(6), np.ones(6))
    sym, full = pair.bound(box, "symbolic"), pair.bound(box, "milp")
    below = float(np.median(np.concatenate([-sym.lower, sym.upper])))
    part = pair.bound(box, "milp", below=below)
    settled = np.concatenate([-sym.lower, sym.upper]) < below
    assert settled.any() and not settled.all()
    got, symbolic, exact = (np.concatenate([r.lower, r.upper]) for r in (part, sym, full))
    assert np.array_equal(got[settled], symbolic[settled])
    assert np.allclose(got[~settled], exact[~settled], atol=1e-6)
    xs = box.float32_points(np.random.default_rng(5).uniform(-1, 1, (2000, 6))).astype(np.float64)
    ra, rb = pair.runners
    d = ra(xs).astype(np.float64) - rb(xs).astype(np.float64)
    assert np.all(d >= part.lower) and np.all(d <= part.upper)


def test_real_valued_networks_decide_what_float_rounding_leaves_open():
    """A network against itself: the float32 analysis cannot get below both networks' rounding bound, so a tiny E
    stays unknown (with a note naming the reason); ``real`` proves it, and a counterexample is never claimed."""
    a = mlp(3, [3, 16, 16, 2])
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    floating = equivalence(a, a, box, 1e-12, timeout=5)
    assert floating.answer == "unknown" and floating.found == 0.0
    assert any("--real" in note for note in floating.notes)
    real = equivalence(a, a, box, 1e-12, timeout=20, real=True)
    assert real.answer == "equivalent" and real.to_json()["semantics"] == "real"
    b = perturbed(a, 3, 0.05)
    found = discrepancy(a, b, box, "symbolic").found
    below = equivalence(a, b, box, 0.5 * found, timeout=20, real=True)
    assert below.answer == "not equivalent"
    from nnxform.discrepancy import Pair
    assert np.abs(Pair(a, b).real_delta(below.witness[None])).max() >= 0.5 * found


def test_top1_equivalence_proves_a_robust_box_and_replays_a_disagreement():
    """Top-1: a network and its float16 copy pick the same class on a small box around a confidently classified
    point (proved); a network and one with two output rows swapped disagree somewhere (both networks replayed)."""
    from nnxform.equiv import top1_equivalence

    a = mlp(4, [3, 16, 16, 3])
    rng = np.random.default_rng(4)
    centres = rng.uniform(-1, 1, (200, 3))
    ys = OnnxRunner(a)(centres.astype(np.float32)).astype(np.float64)
    top = np.sort(ys, axis=1)
    centre = centres[np.argmax(top[:, -1] - top[:, -2])]
    box = Box(centre - 0.01, centre + 0.01)
    same = top1_equivalence(a, perturbed(a, 4, 1e-4), box, timeout=30)
    assert same.answer == "equivalent", same.to_json()
    swapped = a.copy()  # the last Gemm (transB: rows are outputs) with outputs 0 and 1 swapped
    for name in ("W2", "b2"):
        swapped.constants[name] = swapped.constants[name][[1, 0, 2]]
    wide = Box(np.full(3, -1.0), np.full(3, 1.0))
    r = top1_equivalence(a, swapped, wide, timeout=30)
    assert r.answer == "not equivalent", r.to_json()
    x = np.asarray(r.witness, np.float32)[None]
    assert np.argmax(OnnxRunner(a)(x)) != np.argmax(OnnxRunner(swapped)(x)) and r.classes[0] != r.classes[1]


def test_cli_asks_one_question(tmp_path):
    a = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
    box = MODELS / "vnnlib" / "acasxu_prop_3.vnnlib"
    assert_clean_error(run_cli("equiv", a, a, "--vnnlib", box), "--equiv-eps E")
    assert_clean_error(run_cli("equiv", a, a, "--vnnlib", box, "--top1", "--equiv-eps", "0.1"), "not both")
    assert_clean_error(run_cli("equiv", a, a, "--vnnlib", box, "--top1", "--real"), "--real")
    mnist = MODELS / "mnist-net_256x2.onnx"
    report = tmp_path / "top1.json"
    r = run_cli("equiv", mnist, mnist, "--vnnlib", MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib", "--top1", "--json",
                report)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(report.read_text())["answer"] == "equivalent"
