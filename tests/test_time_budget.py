"""Every time limit bounds its whole command, and large CNNs are evaluated in passes that fit memory (issue 19).

The witness search stops at the analysis's deadline; prune's and quantize's bounds get what pruning, quantising and
the sampled check leave of ``--time-limit``; compress leaves room for its check and caps its certificate by what is
left of both limits; onnxruntime and the evaluator take as many points per run as fit their memory budget.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from nnxform import interpreter, runtime, workflows
from nnxform.stopping import Deadline
from nnxform.discrepancy import SAMPLES, Pair, search_witness
from nnxform.interpreter import in_passes, points_within, run
from nnxform.runtime import OnnxRunner
from test_bounds import convnet, random_box
from test_discrepancy import assert_sound, observed, perturbed


class _CountingDelta:
    """A difference function that counts the points it is asked about: f_A − f_B = x (one output per input)."""

    step = SAMPLES

    def __init__(self) -> None:
        self.values_points, self.gradient_calls = 0, 0

    def values(self, xs: np.ndarray) -> np.ndarray:
        self.values_points += len(xs)
        return xs[:, :1].copy()

    def value_grad(self, xs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.gradient_calls += 1
        return xs[:, :1].copy(), np.hstack([np.broadcast_to(weights, (len(xs), 1)), np.zeros((len(xs), 1))])


def test_witness_search_stops_at_its_deadline():
    box = random_box(0, 2)
    fn = _CountingDelta()
    candidates = search_witness(fn, box, 1, deadline=Deadline(0.0))
    assert fn.gradient_calls == 0, "no gradient step once the deadline has passed"
    first_tenth = len(box.points(SAMPLES, np.random.default_rng(0))) // 10
    assert fn.values_points <= first_tenth + 2 * 4  # the first tenth of the samples, then the starts read once
    assert np.all(candidates >= box.lower) and np.all(candidates <= box.upper)
    full = _CountingDelta()
    search_witness(full, box, 1)
    assert full.gradient_calls > 0 and full.values_points > fn.values_points


def test_analysis_out_of_time_stays_sound():
    a = convnet(3)
    b = perturbed(a, 0.05, seed=1)
    box = random_box(3, a.input_size, 0.3)
    d = Pair(a, b).analyse(box, "symbolic", total_time=1e-3)
    xs, deltas = observed(a, b, box, samples=2000)
    assert_sound(d, deltas, box, a, b)


def test_onnxruntime_runs_in_chunks_that_fit(monkeypatch):
    model = convnet(5)
    xs = random_box(5, model.input_size).points(300, np.random.default_rng(0))
    whole = OnnxRunner(model)(xs)
    monkeypatch.setattr(runtime, "_RUN_BYTES", 4 * 2000)  # a handful of points per run
    chunked = OnnxRunner(model)
    np.testing.assert_array_equal(chunked(xs), whole)
    assert 1 <= chunked.chunk < 20


def test_evaluator_in_passes_matches_one_pass(monkeypatch):
    model = convnet(6)
    xs = random_box(6, model.input_size).points(200, np.random.default_rng(1))
    monkeypatch.setattr(interpreter, "PASS_BYTES", 8 * 3000)
    step = interpreter.points_per_pass(model, len(xs))
    assert step < 20 and step == points_within(sum(int(np.prod(s[1:])) for s in model.shapes().values()), len(xs))
    np.testing.assert_array_equal(in_passes(lambda c: run(model, c), xs, step), run(model, xs))


def test_prune_bound_gets_what_pruning_leaves(monkeypatch):
    given = {}
    real_prune = workflows.prune

    def slow_prune(*args, **kwargs):
        time.sleep(0.5)
        return real_prune(*args, **kwargs)

    def impact(model, result, box, method, *, time_limit, progress):
        given["time_limit"] = time_limit
        return {"impact_bound": 0.0, "impact_method": method, "impact": {}}

    monkeypatch.setattr(workflows, "prune", slow_prune)
    monkeypatch.setattr(workflows, "impact_bound", impact)
    model = convnet(7)
    workflows.prune_with_impact(model, random_box(7, model.input_size), "weight", 0.3, time_limit=2.0)
    assert 1e-3 <= given["time_limit"] <= 1.5


def test_quantize_out_of_time_still_bounds_its_drift():
    model = convnet(8)
    out = workflows.quantize_with_drift(model, bits=4, box=random_box(8, model.input_size, 0.2), time_limit=1e-3,
                                        samples=500)
    assert out.drift is not None and out.sampled is not None
    assert out.sampled_max <= out.drift.delta_max  # the workflow refuses otherwise; say it here too


def _compress_budgets(monkeypatch, time_limit: float, certify_time_limit: float, classify_sleep: float = 0.0
                      ) -> dict[str, float]:
    """The time limits ``compress_checked`` gives its classification and its certificate (the sampled check
    foreseen at 4 s), the classification made ``classify_sleep`` seconds slower."""
    given = {}
    real_classify, real_certify = workflows.classify, workflows.certify

    def classify(*args, time_limit, **kwargs):
        given["classify"] = time_limit
        time.sleep(classify_sleep)
        return real_classify(*args, time_limit=time_limit, **kwargs)

    def certify(original, compression, stability, box, tol, time_limit, *args, **kwargs):
        given["certify"] = time_limit
        return real_certify(original, compression, stability, box, tol, time_limit, *args, **kwargs)

    monkeypatch.setattr(workflows, "_check_seconds", lambda model, box, samples: 4.0)
    monkeypatch.setattr(workflows, "classify", classify)
    monkeypatch.setattr(workflows, "certify", certify)
    model = convnet(9)
    workflows.compress_checked(model, random_box(9, model.input_size, 0.2), time_limit=time_limit, samples=500,
                               certify_box=True, certify_time_limit=certify_time_limit)
    return given


def test_compress_leaves_room_for_its_check(monkeypatch):
    given = _compress_budgets(monkeypatch, 10.0, 1.0)
    assert 5.5 < given["classify"] <= 6.0  # 10 s less the check's foreseen 4 s (and the moments since the start)
    assert given["certify"] == pytest.approx(1.0)  # its own limit: the classification left more


def test_compress_certificate_gets_what_is_left_of_both_limits(monkeypatch):
    given = _compress_budgets(monkeypatch, 0.5, 1.0, classify_sleep=0.6)
    assert given["classify"] == pytest.approx(0.25)  # half the limit at least, whatever the check needs
    assert 0 < given["certify"] < 0.95  # 1.5 s of both limits, 0.6 s of them slept away before it
