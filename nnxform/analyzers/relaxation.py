"""Linear relaxations of the nonlinear steps: ``a_lo·x + b_lo <= f(x) <= a_up·x + b_up`` on ``[lo, hi]``."""

from __future__ import annotations

import numpy as np

from .result import sigmoid

Relaxation = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # a_lo, b_lo, a_up, b_up

#: Below this width an S-shaped activation is bounded by constants (a chord would lose precision).
_NARROW = 1e-6


def relu(lo: np.ndarray, hi: np.ndarray) -> Relaxation:
    """CROWN's relaxation: upper line through (lo, 0) and (hi, hi); lower slope 1 when hi > -lo else 0."""
    active, unstable = lo >= 0, (lo < 0) & (hi > 0)
    s = np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), active.astype(float))
    a_up = s
    b_up = np.where(unstable, -s * lo, 0.0)
    a_lo = np.where(unstable, (hi > -lo).astype(float), active.astype(float))
    return a_lo, np.zeros_like(lo), a_up, b_up


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    y = sigmoid(x)
    return y * (1.0 - y)


def _dtanh(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(x) ** 2


def s_shaped(op: str, lo: np.ndarray, hi: np.ndarray) -> Relaxation:
    """Sigmoid/Tanh (convex below 0, concave above): chord and mid-point tangent, or endpoint slopes.

    Convex piece (hi <= 0): chord above, tangent at the midpoint below; concave piece mirrored;
    across 0, lines through (lo, f(lo)) and (hi, f(hi)) with slope min(f'(lo), f'(hi)) (f' is
    unimodal, so f grows at least that fast on the whole interval).
    """
    f, df = (sigmoid, _dsigmoid) if op == "Sigmoid" else (np.tanh, _dtanh)
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


def maxpool(lo: np.ndarray, hi: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepPoly's MaxPool relaxation: ``y >= x[arg]`` (largest lower bound); ``y <= x[arg]`` when that
    input dominates its window, else ``y <= max hi``. Returns ``arg`` (flat source index),
    ``exact`` (dominated windows) and the constant upper bound."""
    valid = windows >= 0
    wlo = np.where(valid, lo[windows], -np.inf)
    whi = np.where(valid, hi[windows], -np.inf)
    k = np.argmax(wlo, axis=1)
    rows = np.arange(len(windows))
    arg = windows[rows, k]
    others = whi.copy()
    others[rows, k] = -np.inf
    exact = wlo[rows, k] >= others.max(axis=1)
    return arg, exact, whi.max(axis=1)
