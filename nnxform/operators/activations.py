"""Element-wise nonlinear operators as the evaluator, the gradients and the analyzers see them.

An ``Elementwise`` has no optional part: an activation cannot enter the operator table without its
linear relaxation, so the analyzers never meet one they would have to guess a relaxation for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np

Relaxation = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # a_lo, b_lo, a_up, b_up

#: Assumed absolute error of onnxruntime's Sigmoid/Tanh (its rational approximations are within a few ulps of 1).
ACTIVATION_ERROR = 2.0 ** -20
#: Absolute error a rounded product may add by underflow (onnxruntime may flush results below the normal range).
_TINY32 = 2.0 ** -126
#: The float32 unit roundoff: the relative error of one rounded product (LeakyRelu's ``α·x``).
_U32 = 2.0 ** -24
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
    relative: float = 0.0  # onnxruntime may also miss ``f(x)`` by this share of ``|f(x)|`` below 0 (a rounded product)
    slopes: tuple[float, float] | None = None  # linear on each side of 0: (slope below, slope above); None if curved
    parametrised: Callable[[Mapping[str, Any]], "Elementwise"] | None = None  # a node's attributes -> its function

    def __post_init__(self) -> None:
        if self.slopes is not None and not 0.0 <= self.slopes[0] <= self.slopes[1]:
            raise ValueError("a piecewise-linear activation's slopes must be 0 <= below <= above (monotone, convex): "
                             "its relaxations, LP/MILP rows and identity layers assume it")

    def at(self, attrs: Mapping[str, Any]) -> "Elementwise":
        """The function a node with these attributes computes (LeakyRelu's ``alpha``); itself when it has none."""
        return self if self.parametrised is None else self.parametrised(attrs)

    def margin(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | float:
        """The most onnxruntime's float value may miss ``f(x)`` by, for ``x`` in ``[lo, hi]``."""
        if not self.relative:
            return self.error
        return self.error + self.relative * np.abs(self.function(np.minimum(lo, 0.0)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, written through tanh (no overflow for large ``|x|``)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def kinked(below: float, above: float) -> Callable[[np.ndarray, np.ndarray], Relaxation]:
    """CROWN's relaxation of ``x ↦ (below if x < 0 else above)·x`` (convex: ``0 <= below <= above``): the chord
    through (lo, below·lo) and (hi, above·hi) above; below, the slope ``above`` when hi > -lo, else ``below`` (any
    slope in [below, above] is sound). ReLU is (0, 1)."""
    def relax(lo: np.ndarray, hi: np.ndarray) -> Relaxation:
        active, unstable = lo >= 0, (lo < 0) & (hi > 0)
        side = np.where(active, above, below)
        s = np.where(unstable, (above * hi - below * lo) / np.where(unstable, hi - lo, 1.0), side)
        b_up = np.where(unstable, (below - s) * lo, 0.0)
        a_lo = np.where(unstable, np.where(hi > -lo, above, below), side)
        return a_lo, np.zeros_like(lo), s, b_up
    return relax


def piecewise_linear(below: float, above: float, error: float = 0.0, relative: float = 0.0,
                     parametrised: Callable[[Mapping[str, Any]], Elementwise] | None = None) -> Elementwise:
    """The activation ``x ↦ (below if x < 0 else above)·x``, two lines meeting at 0 (ReLU: (0, 1))."""
    return Elementwise(lambda x: np.where(x < 0, below * x, above * x),
                       lambda x, y: np.where(x > 0, above, below), kinked(below, above), error,
                       relative, (below, above), parametrised)


@lru_cache(maxsize=256)
def leaky_relu(alpha: float) -> Elementwise:
    """ONNX LeakyRelu with this ``alpha`` (read as float32, as written): ``α·x`` below 0, one rounded product."""
    exact = alpha in (0.0, 1.0)
    return piecewise_linear(alpha, 1.0, 0.0 if exact else _TINY32, 0.0 if exact else _U32, _leaky_attributes)


def _leaky_attributes(attrs: Mapping[str, Any]) -> Elementwise:
    return leaky_relu(float(np.float32(attrs.get("alpha", 0.01))))


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


RELU = Elementwise(lambda x: np.maximum(x, 0.0), lambda x, y: (x > 0).astype(np.float64), kinked(0.0, 1.0), 0.0,
                   slopes=(0.0, 1.0))
LEAKY_RELU = _leaky_attributes({})
SIGMOID = Elementwise(sigmoid, lambda x, y: y * (1.0 - y), s_shaped(sigmoid, _dsigmoid), ACTIVATION_ERROR)
TANH = Elementwise(np.tanh, lambda x, y: 1.0 - y * y, s_shaped(np.tanh, _dtanh), ACTIVATION_ERROR)
