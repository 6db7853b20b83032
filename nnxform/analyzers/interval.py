"""Interval arithmetic: the cheapest sound bounds, vectorised per step (centre ± radius form)."""

from __future__ import annotations

import numpy as np

from .network import Linear
from .result import State


def interval(state: State) -> State:
    """Fill (or tighten) every step's bounds of ``state`` by interval arithmetic, in place."""
    for i, s in enumerate(state.net.steps):
        if i == 0:
            continue
        if isinstance(s, Linear):
            state.set_linear(i, *linear_interval(state, i))
        else:
            state.propagate_nonlinear(i)
    return state


def linear_interval(state: State, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of Linear step ``i`` from its sources' current bounds (not widened)."""
    s = state.net.steps[i]
    c = s.bias.copy()
    r = np.zeros_like(c)
    for src, w, aw in zip(s.sources, s.weights, s.abs_weights):
        c += w @ (0.5 * (state.lo[src] + state.hi[src]))
        r += aw @ (0.5 * (state.hi[src] - state.lo[src]))
    return c - r, c + r
