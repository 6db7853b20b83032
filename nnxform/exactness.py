"""Sampled equivalence of two models on a box: the check every function-preserving pass must pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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
    tol: float = ATOL  # the tolerance it was held to (the absolute term; the commands use tol·(1 + |y|))

    def tolerance(self, tol: float) -> str:
        """The effective tolerance, as printed next to a check: ``tol·(1 + |y|)`` up to its largest value."""
        return f"{tol:g}·(1 + |y|), at most {allowed(tol, self.scale):.3g} here"

    def to_json(self) -> dict[str, Any]:
        """The ``check`` entry of a command's JSON report: points, largest and mean difference, tolerance."""
        return {"samples": self.samples, "max_abs": self.max_abs, "mean_abs": self.mean_abs, "tolerance": self.tol}


@dataclass(frozen=True)
class Reference:
    """What a result is checked against: ``outputs(xs)`` gives the expected outputs at the points ``xs`` and the
    ``|y|`` of the tolerance rule there; ``refusal`` is the NotExact message, formatted with ``max_abs``,
    ``samples`` and ``tol``."""

    outputs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    refusal: str


def same_as(model: Model, what: str = "the pass") -> Reference:
    """``model``'s own outputs in onnxruntime: the reference of a function-preserving pass called ``what``."""

    def outputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = OnnxRunner(model)(xs.reshape((-1,) + model.input_shape)).astype(np.float64)
        return y, np.abs(y)

    return Reference(outputs, what + " changed the function: max |difference| {max_abs:.3g} over {samples} samples "
                              "exceeds {tol:g} + {tol:g}·|y|; nothing written (please report this network)")


def compare(a: Model, b: Model, box: Box, samples: int = 1000, seed: int = 0,
            atol: float = ATOL, rtol: float = RTOL) -> Comparison:
    """Run both models in onnxruntime on uniform samples, corners and the centre of ``box``.

    A point passes when ``|ya - yb| <= atol + rtol * |ya|`` for every output.
    """
    box.fit(a.input_size)
    return compare_with(same_as(a), b, box, samples, seed, atol, rtol)


def compare_with(reference: Reference, model: Model, box: Box, samples: int = 1000, seed: int = 0,
                 atol: float = ATOL, rtol: float = RTOL) -> Comparison:
    """Run ``model`` in onnxruntime on uniform samples, corners and the centre of ``box`` against ``reference``.

    A point passes when ``|y - y_model| <= atol + rtol * |y|`` for every output, ``|y|`` the reference's scale.
    """
    xs = box.fit(model.input_size).points(samples, np.random.default_rng(seed))
    want, scale = reference.outputs(xs)
    got = OnnxRunner(model)(xs.reshape((-1,) + model.input_shape)).astype(np.float64)
    if want.shape != got.shape:
        raise NotExact(f"outputs differ in size: {want.shape[1]} vs {got.shape[1]}")
    diff = np.abs(want - got)
    excess = diff - (atol + rtol * scale)
    worst = int(np.argmax(diff.max(axis=1)))
    return Comparison(
        samples=len(xs),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        max_rel=float((diff / np.maximum(scale, 1e-12)).max()),
        worst_input=xs[worst],
        within=bool(np.all(excess <= 0)),
        scale=float(scale.max()),
        tol=atol,
    )


def ensure_same_function(original: Model, result: Model, box: Box | None, what: str, samples: int = 1000,
                         tol: float = ATOL, reference: Reference | None = None) -> Comparison:
    """Raise NotExact (and so refuse to write) when ``result`` differs beyond ``tol·(1 + |y|)`` on ``box`` from
    ``original``, or from ``reference`` when given (what a pass that changes the function must compute)."""
    box = box or Box.default(original.input_size)
    reference = reference or same_as(original, what)
    cmp = compare_with(reference, result, box.fit(original.input_size), samples, atol=tol, rtol=tol)
    if not cmp.within:
        raise NotExact(reference.refusal.format(max_abs=cmp.max_abs, samples=cmp.samples, tol=tol))
    return cmp
