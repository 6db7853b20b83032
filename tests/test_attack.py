"""The one attack (``nnxform.attack.ascend``): projected signed-gradient ascent from many starts, the best point of
each kept, stopped by a deadline, every point shown to whoever records them."""

from __future__ import annotations

import numpy as np

from nnxform.attack import ascend


def _distance_to(target: np.ndarray):
    """The objective −‖x − target‖₁ per row, with its gradient: largest at ``target``."""

    def value_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return -np.abs(x - target).sum(axis=1), -np.sign(x - target)

    return value_grad


def test_ascent_reaches_the_best_point_in_the_box_and_keeps_it():
    target = np.array([0.3, -0.7, 2.0])  # the last coordinate beyond the box: the best is on its face
    starts = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    a = ascend(_distance_to(target), starts, -1.0, 1.0, lambda k: 0.85 ** k, 80,
               value=lambda x: _distance_to(target)(x)[0])
    np.testing.assert_allclose(a.best_x, np.tile([0.3, -0.7, 1.0], (5, 1)), atol=1e-4)
    assert np.all(a.x >= -1) and np.all(a.x <= 1)
    np.testing.assert_allclose(a.best_value, -1.0, atol=3e-4)


def test_ascent_stops_when_told_and_shows_every_point():
    seen: list[np.ndarray] = []
    calls = iter(range(100))
    a = ascend(_distance_to(np.zeros(2)), np.ones((3, 2)), -1.0, 1.0, lambda k: 0.1, 10,
               stop=lambda: next(calls) >= 4, observe=lambda x: seen.append(x.copy()))
    assert len(seen) == 4  # four steps, then stopped
    np.testing.assert_allclose(a.x, seen[-1])
    np.testing.assert_allclose(a.x, 0.6)
    np.testing.assert_allclose(a.best_value, -1.4)  # the last point is judged only when ``value`` is given


def test_ascent_stops_at_its_goal():
    """With a ``goal``, the ascent ends at the first step where some start's objective reaches it (a verifier wants
    one counterexample, not forty steps of every start)."""
    steps = []

    def value_grad(x):
        steps.append(1)
        return _distance_to(np.zeros(2))(x)

    a = ascend(value_grad, np.array([[1.0, 1.0], [0.3, 0.0]]), -1.0, 1.0, lambda k: 0.1, 40, goal=-0.05)
    assert len(steps) == 4  # the second start's objective: -0.3, -0.2, -0.1, then 0 (≥ -0.05): no fifth step
    assert a.best_value[1] >= -0.05 and a.best_value[0] < -0.05
