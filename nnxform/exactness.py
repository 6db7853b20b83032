"""Sampled equivalence of two models on a box: the check every function-preserving pass must pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .domain import Box
from .errors import NotExact
from .ir import Model
from .runtime import OnnxRunner

#: Default absolute + relative tolerance for function-preserving passes.
ATOL, RTOL = 1e-5, 1e-5


def allowed(tol: float, scale: float) -> float:
    """The one tolerance rule of every check and certificate: a difference is within ``tol`` when it is at
    most ``tol·(1 + |y|)``, ``|y|`` the size of the original's output there (``scale``)."""
    return tol * (1.0 + abs(scale))


@dataclass
class Comparison:
    """Differences between two models' outputs over sampled points of a domain."""

    samples: int
    max_abs: float
    mean_abs: float
    max_rel: float
    worst_input: np.ndarray
    within: bool
    scale: float = 0.0  # largest |output| of the first model over the samples

    def tolerance(self, tol: float) -> str:
        """The effective tolerance, as printed next to a check: ``tol·(1 + |y|)`` up to its largest value."""
        return f"{tol:g}·(1 + |y|), at most {allowed(tol, self.scale):.3g} here"


def compare(a: Model, b: Model, box: Box, samples: int = 1000, seed: int = 0,
            atol: float = ATOL, rtol: float = RTOL) -> Comparison:
    """Run both models in onnxruntime on uniform samples, corners and the centre of ``box``.

    A point passes when ``|ya - yb| <= atol + rtol * |ya|`` for every output.
    """
    box.fit(a.input_size).fit(b.input_size)
    xs = box.points(samples, np.random.default_rng(seed))
    ya = OnnxRunner(a)(xs.reshape((-1,) + a.input_shape)).astype(np.float64)
    yb = OnnxRunner(b)(xs.reshape((-1,) + b.input_shape)).astype(np.float64)
    if ya.shape != yb.shape:
        raise NotExact(f"outputs differ in size: {ya.shape[1]} vs {yb.shape[1]}")
    diff = np.abs(ya - yb)
    excess = diff - (atol + rtol * np.abs(ya))
    worst = int(np.argmax(diff.max(axis=1)))
    return Comparison(
        samples=len(xs),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        max_rel=float((diff / np.maximum(np.abs(ya), 1e-12)).max()),
        worst_input=xs[worst],
        within=bool(np.all(excess <= 0)),
        scale=float(np.abs(ya).max()),
    )


def ensure_same_function(original: Model, result: Model, box: Box | None, what: str,
                         samples: int = 1000, atol: float = ATOL, rtol: float = RTOL) -> Comparison:
    """Raise NotExact (and so refuse to write) when ``result`` differs from ``original`` on ``box``."""
    box = box or Box.default(original.input_size)
    cmp = compare(original, result, box, samples=samples, atol=atol, rtol=rtol)
    if not cmp.within:
        raise NotExact(
            f"{what} changed the function: max |difference| {cmp.max_abs:.3g} over {cmp.samples} samples "
            f"exceeds {atol:g} + {rtol:g}·|y|; nothing written (please report this network)"
        )
    return cmp
