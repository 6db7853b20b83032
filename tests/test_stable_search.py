"""The search stage of ``stable`` (issue 21, item 3): one branch and bound over the earlier ReLUs' signs per layer
(``analyzers.branching.prove_signs``) settles neurons the bound stages leave, and never calls a neuron stable that
sampling, a gradient attack, onnxruntime or the exact MILP shows changing sign."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bounds import mlp, random_box
from test_stable import assert_sound, probe_values

from nnxform.analyzers import bounds, compile_model
from nnxform.analyzers.boxes import DenseNetwork
from nnxform.analyzers.branching import Slots, prove_signs
from nnxform.stable import ACTIVE, INACTIVE, UNDECIDED, _Classifier


def bound_stages(seed: int, sizes: list[int], width: float) -> _Classifier:
    """A random ReLU chain classified on a random box by the stages before the search (sampling to alpha)."""
    model, box = mlp(seed, sizes), random_box(seed, sizes[0], width)
    c = _Classifier(model, box, 60, 512, 0, None)
    c.sampling()
    c._stages({"interval": c.interval, "symbolic": c.symbolic, "gradient": c.gradient_search, "alpha": c.alpha})
    return c


def test_the_search_settles_neurons_the_bound_stages_leave_and_the_exact_milp_agrees():
    c = bound_stages(8, [20, 12, 12, 12, 2], width=0.5)  # 7 left, 7 settled; 12 wide: the exact MILP in seconds
    left = [st == UNDECIDED for st in c.status]
    assert sum(int(u.sum()) for u in left) >= 5
    c.search()
    assert c.stages[-1].name == "search" and c.stages[-1].settled >= 5
    result = c._result()
    exact = bounds(c.model, c.box, "milp", neurons=True, time_limit=30)
    for layer, ref, u in zip(result.layers, exact.relu_layers, left):
        settled = u & np.isin(layer.status, (ACTIVE, INACTIVE))
        assert np.all(ref.status[settled] == layer.status[settled]), layer.node
    assert_sound(c.model, c.box, result, samples=3000)


@settings(deadline=None, derandomize=True, max_examples=4)
@given(seed=st.integers(0, 2**16))
def test_proved_signs_hold_on_samples_and_match_the_exact_milp(seed):
    """Every neuron of the third ReLU layer of a small random network, both signs, with no time limit: what the search
    proves holds at 4000 points in onnxruntime and within the margin of the exact MILP's bounds."""
    model, box = mlp(seed, [3, 8, 8, 8, 2]), random_box(seed, 3, 1.5)
    dense = DenseNetwork(compile_model(model), "test")
    slots = Slots(dense)
    step = slots.steps[2]
    size = dense.steps[step].size
    z = probe_values(model, box.points(4000, np.random.default_rng(seed)))[2]
    rows, want = np.tile(np.arange(size), 2), np.repeat([1, -1], size)
    seen = np.concatenate([(z < 0).any(axis=0), (z > 0).any(axis=0)])  # the sign each row claims is contradicted
    proved, _ = prove_signs(dense, slots, box.lower, box.upper, step, rows, want, np.zeros(slots.total, np.int8),
                            None, lambda: False, lambda points: seen, limit=1024)
    exact = bounds(model, box, "milp", neurons=True, time_limit=30).relu_layers[2]
    proved[seen] = prove_signs(dense, slots, box.lower, box.upper, step, rows[seen], want[seen],
                               np.zeros(slots.total, np.int8), None, lambda: False,
                               lambda points: np.zeros(int(seen.sum()), bool), limit=64)[0]  # must fail: not refuted
    active, inactive = proved[:size], proved[size:]
    assert np.all(z[:, active] >= 0) and np.all(z[:, inactive] <= 0)
    margin = 1e-4 * (1 + np.abs(exact.lower) + np.abs(exact.upper))
    assert np.all(exact.lower[active] >= -margin[active]) and np.all(exact.upper[inactive] <= margin[inactive])
    assert not np.any(active & inactive & (exact.upper - exact.lower > 2 * margin))


def test_networks_with_few_inputs_skip_the_search():
    c = bound_stages(2, [4, 16, 16, 16, 2], width=1.5)
    assert c.undecided()
    c.search()
    assert c.stages[-1].name == "search" and c.stages[-1].settled == 0 and "skipped" in c.stages[-1].note
