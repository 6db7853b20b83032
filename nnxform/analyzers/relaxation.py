"""The MaxPool relaxation of the analyzers (the activations' relaxations are in their operator table entries,
``operators.activations``)."""

from __future__ import annotations

import numpy as np


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
