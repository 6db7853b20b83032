"""The one attack: projected signed-gradient ascent from many starts at once.

Every search for inputs that make a quantity large runs through ``ascend``: the witness of a discrepancy (largest
``|f_A − f_B|``), ``stable``'s push of a neuron towards its unseen sign, and FGSM (one step of size ε). What each
caller maximises is its ``value_grad``; the step sizes are its schedule; the points are projected onto its box. The
points found prove nothing until they are replayed in onnxruntime, which each caller does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

#: ``value_grad(x)``: the objective at each start ``(n,)`` and its gradient in the input ``(n, d)``.
ValueGrad = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Ascent:
    """Where an ascent ended (``x``, one row per start) and the best point of each start with its objective."""

    x: np.ndarray
    best_x: np.ndarray
    best_value: np.ndarray


def ascend(value_grad: ValueGrad, x: np.ndarray, lower: np.ndarray | float, upper: np.ndarray | float,
           step: Callable[[int], np.ndarray | float], steps: int, *,
           value: Callable[[np.ndarray], np.ndarray] | None = None, stop: Callable[[], bool] | None = None,
           goal: float | None = None, observe: Callable[[np.ndarray], None] | None = None) -> Ascent:
    """``steps`` projected signed-gradient steps ``x ← clip(x + step(k)·sign(∇), lower, upper)`` from the starts
    ``x`` (rows), keeping each start's best point; ``value(x)`` reads the objective at the last point without a
    gradient (the last point is not judged without it). ``stop()`` ends the ascent early (a deadline), and so does a
    start whose objective reaches ``goal`` (a search that wants one such point); ``observe(x)`` sees every new point
    (for callers that record what each point shows)."""
    x = np.asarray(x, dtype=np.float64)
    best_x, best_value = x.copy(), np.full(len(x), -np.inf)
    for k in range(steps):
        if stop is not None and stop():
            break
        v, g = value_grad(x)
        _keep_best(best_x, best_value, x, v)
        if goal is not None and best_value.max() >= goal:
            return Ascent(x, best_x, best_value)
        x = np.clip(x + step(k) * np.sign(g), lower, upper)
        if observe is not None:
            observe(x)
    if value is not None:
        _keep_best(best_x, best_value, x, value(x))
    return Ascent(x, best_x, best_value)


def _keep_best(best_x: np.ndarray, best_value: np.ndarray, x: np.ndarray, v: np.ndarray) -> None:
    """Where ``v`` beats the best so far, take ``x`` and ``v`` as the best (in place)."""
    better = v > best_value
    best_x[better], best_value[better] = x[better], v[better]
