"""Element-wise nonlinear operators as the evaluator, the gradients and the analyzers see them.

An ``Elementwise`` has no optional part: an activation cannot enter the operator table without its
linear relaxation, so the analyzers never meet one they would have to guess a relaxation for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Relaxation = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # a_lo, b_lo, a_up, b_up

#: Assumed absolute error of onnxruntime's Sigmoid/Tanh (its rational approximations are within a few ulps of 1).
ACTIVATION_ERROR = 2.0 ** -20
#: Below this width an S-shaped activation is bounded by constants (a chord would lose precision).
_NARROW = 1e-6


@dataclass(frozen=True)
class Elementwise:
    """A monotone non-decreasing element-wise function: its value, its derivative ``(x, y) -> f'(x)``, its linear
    relaxation ``a_lo·x + b_lo <= f(x) <= a_up·x + b_up`` on ``[lo, hi]``, and the absolute error onnxruntime's
    float implementation may add to it."""

    function: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]
    relax: Callable[[np.ndarray, np.ndarray], Relaxation]
    error: float


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, written through tanh (no overflow for large ``|x|``)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def relu(lo: np.ndarray, hi: np.ndarray) -> Relaxation:
    """CROWN's relaxation: upper line through (lo, 0) and (hi, hi); lower slope 1 when hi > -lo else 0."""
    active, unstable = lo >= 0, (lo < 0) & (hi > 0)
    s = np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), active.astype(float))
    a_up = s
    b_up = np.where(unstable, -s * lo, 0.0)
    a_lo = np.where(unstable, (hi > -lo).astype(float), active.astype(float))
    return a_lo, np.zeros_like(lo), a_up, b_up


def s_shaped(f: Callable[[np.ndarray], np.ndarray], df: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """The relaxation of an S-shaped ``f`` (convex below 0, concave above, ``f'`` unimodal): chord and
    mid-point tangent, or endpoint slopes.

    Convex piece (hi <= 0): chord above, tangent at the midpoint below; concave piece mirrored;
    across 0, lines through (lo, f(lo)) and (hi, f(hi)) with slope min(f'(lo), f'(hi)) (f' is
    unimodal, so f grows at least that fast on the whole interval).
    """
    def relax(lo: np.ndarray, hi: np.ndarray) -> Relaxation:
        flo, fhi = f(lo), f(hi)
        narrow = hi - lo < _NARROW
        chord = np.where(narrow, 0.0, (fhi - flo) / np.where(narrow, 1.0, hi - lo))
        mid = 0.5 * (lo + hi)
        tan = df(mid)
        tan_b = f(mid) - tan * mid
        k = np.minimum(df(lo), df(hi))
        convex, concave = hi <= 0, lo >= 0
        a_lo = np.where(convex, tan, np.where(concave, chord, k))
        b_lo = np.where(convex, tan_b, np.where(concave, flo - chord * lo, flo - k * lo))
        a_up = np.where(convex, chord, np.where(concave, tan, k))
        b_up = np.where(convex, flo - chord * lo, np.where(concave, tan_b, fhi - k * hi))
        zero = np.zeros_like(lo)
        return (np.where(narrow, zero, a_lo), np.where(narrow, flo, b_lo),
                np.where(narrow, zero, a_up), np.where(narrow, fhi, b_up))
    return relax


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    y = sigmoid(x)
    return y * (1.0 - y)


def _dtanh(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(x) ** 2


RELU = Elementwise(lambda x: np.maximum(x, 0.0), lambda x, y: (x > 0).astype(np.float64), relu, 0.0)
SIGMOID = Elementwise(sigmoid, lambda x, y: y * (1.0 - y), s_shaped(sigmoid, _dsigmoid), ACTIVATION_ERROR)
TANH = Elementwise(np.tanh, lambda x, y: 1.0 - y * y, s_shaped(np.tanh, _dtanh), ACTIVATION_ERROR)
