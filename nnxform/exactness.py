"""Sampled equivalence of two models on a box: the check every function-preserving pass must pass.

The one tolerance rule (``allowed``): at each sampled point, an output may differ by ``tol·(1 + s)``, ``s`` the size
of what the computation of that output passes through: ``|y|`` plus the absolute chain at that point (``magnitudes``:
``|W|·|x| + |b|`` propagated, the quantity float32 rounding is proportional to, ``analyzers.rounding``), the larger
of the two models'. A rewrite reorders or rounds the same sums differently, which moves the output by a few units of
float32 roundoff of that size (well below ``tol``); an output of size ``|y|`` computed through intermediate values a
thousand times larger legitimately moves a thousand times more than ``|y|`` alone allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .analyzers.rounding import absolute_node
from .domain import Box
from .errors import NotExact
from .interpreter import arguments, points_per_pass
from .ir import Model
from .operators import OPERATORS
from .runtime import OnnxRunner

#: Default absolute + relative tolerance for function-preserving passes.
ATOL, RTOL = 1e-5, 1e-5
#: The tolerance rule as printed: ``tol·(1 + s)``, ``s`` = ``|y|`` + the absolute chain ``|W|·|x|``.
RULE = "{tol:g}·(1 + |y|) + {tol:g}·|W|·|x|"
#: Sample points per chunk of the absolute chain's evaluation at most (fewer on large CNNs: ``points_per_pass``).
_CHUNK = 256


def allowed(tol: float, scale: np.ndarray | float) -> np.ndarray | float:
    """The one tolerance rule of every check and certificate: a difference is within ``tol`` when it is at
    most ``tol·(1 + s)``, ``s`` the size of what the computation passes through there (``scale``: ``|y|`` plus the
    absolute chain, ``magnitudes``)."""
    return tol * (1.0 + np.abs(scale))


def magnitudes(model: Model, xs: np.ndarray, reach: float) -> np.ndarray:
    """The absolute chain of ``model`` at each point of ``xs``, all outputs flattened and concatenated per point (as
    ``OnnxRunner`` returns them): every affine node in its absolute form (``rounding.absolute_node``: ``|W|·m + |b|``)
    on the magnitudes ``m`` of its inputs, starting from ``|x|``; an activation passes ``m`` on with its largest slope
    within ``reach·m`` of its input's value (a ReLU whose input rounding may make positive passes it, an inactive one
    stops it) and never below its own ``|value|``; MaxPool takes its window's largest."""
    step = points_per_pass(model, _CHUNK)
    return np.vstack([_magnitudes(model, xs[i:i + step], reach) for i in range(0, len(xs), step)])


def _magnitudes(model: Model, xs: np.ndarray, reach: float) -> np.ndarray:
    """``magnitudes`` on one chunk of points: one pass of the values and of their magnitudes, node by node."""
    xs = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(model.input_shape))
    values, sizes = {model.input_name: xs}, {model.input_name: np.abs(xs)}
    for node in model.nodes:
        spec = OPERATORS[node.op]
        args, batched = arguments(node, values, model.constants)
        mags, _ = arguments(node, sizes, model.constants)
        values[node.outputs[0]] = value = spec.evaluate(node, args, batched)
        if spec.activation is not None:
            f, x, m = spec.activation.at(node.attrs), args[0], mags[0]
            near = np.clip(0.0, x - reach * m, x + reach * m)
            slope = np.maximum.reduce([f.derivative(t, f.function(t)) for t in (x - reach * m, near, x + reach * m)])
            sizes[node.outputs[0]] = np.maximum(np.abs(value), slope * m)
        elif spec.window_max:
            sizes[node.outputs[0]] = spec.evaluate(node, mags, batched)
        else:
            absolute, mags = absolute_node(node, mags, batched)
            sizes[node.outputs[0]] = OPERATORS[absolute.op].evaluate(absolute, mags, batched)
    return np.hstack([sizes[name].reshape(len(xs), -1) for name in model.output_names])


@dataclass
class Comparison:
    """Differences between two models' outputs over sampled points of a domain."""

    samples: int
    max_abs: float
    mean_abs: float
    max_rel: float
    worst_input: np.ndarray
    within: bool
    scale: float = 0.0  # largest size the rule used: |y|, plus the absolute chain where |y| alone did not cover
    tol: float = ATOL  # the tolerance it was held to (the commands use ``allowed``: tol·(1 + |y|) + tol·|W|·|x|)

    def tolerance(self, tol: float) -> str:
        """The effective tolerance, as printed next to a check: the rule, and its largest value the check needed."""
        return f"{RULE.format(tol=tol)}, at most {allowed(tol, self.scale):.3g} here"

    def to_json(self) -> dict[str, Any]:
        """The ``check`` entry of a command's JSON report: points, largest and mean difference, tolerance."""
        return {"samples": self.samples, "max_abs": self.max_abs, "mean_abs": self.mean_abs, "tolerance": self.tol}


@dataclass(frozen=True)
class Reference:
    """What a result is checked against: ``outputs(xs)`` gives the expected outputs at the points ``xs`` and the
    ``|y|`` of the tolerance rule there; ``chain(xs, reach)`` the absolute chain of the models computing them
    (``magnitudes``; None when they compute in exact arithmetic, or with operators nnxform cannot evaluate);
    ``refusal`` is the NotExact message, formatted with ``max_abs``, ``samples`` and ``rule`` (``RULE`` at ``tol``)."""

    outputs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    refusal: str
    chain: Callable[[np.ndarray, float], np.ndarray] | None = None


def same_as(model: Model, what: str = "the pass") -> Reference:
    """``model``'s own outputs in onnxruntime: the reference of a function-preserving pass called ``what``."""

    def outputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = OnnxRunner(model)(xs.reshape((-1,) + model.input_shape)).astype(np.float64)
        return y, np.abs(y)

    return Reference(outputs, what + " changed the function: max |difference| {max_abs:.3g} over {samples} samples "
                                     "exceeds {rule}; nothing written (please report this network)",
                     None if model.unsupported else lambda xs, reach: magnitudes(model, xs, reach))


def compare(a: Model, b: Model, box: Box, samples: int = 1000, seed: int = 0,
            atol: float = ATOL, rtol: float = RTOL, chain: bool = True) -> Comparison:
    """Run both models in onnxruntime on uniform samples, corners and the centre of ``box``.

    A point passes when ``|ya - yb| <= atol + rtol·s`` for every output, ``s`` as in ``compare_with``; without
    ``chain``, ``s`` is ``|ya|`` alone: for measuring a difference that is expected (quantisation), where the
    absolute chain at every point (a numpy pass of the network) would be work whose verdict nobody reads.
    """
    box.fit(a.input_size)
    return compare_with(same_as(a), b, box, samples, seed, atol, rtol, chain)


def compare_with(reference: Reference, model: Model, box: Box, samples: int = 1000, seed: int = 0,
                 atol: float = ATOL, rtol: float = RTOL, chain: bool = True) -> Comparison:
    """Run ``model`` in onnxruntime on uniform samples, corners and the centre of ``box`` against ``reference``.

    A point passes when ``|y - y_model| <= atol + rtol·s`` for every output, ``s`` the reference's ``|y|`` plus the
    larger absolute chain of the reference and ``model`` there (the rule of ``allowed``).
    """
    xs = box.fit(model.input_size).points(samples, np.random.default_rng(seed))
    want, scale = reference.outputs(xs)
    got = OnnxRunner(model)(xs.reshape((-1,) + model.input_shape)).astype(np.float64)
    if want.shape != got.shape:
        raise NotExact(f"outputs differ in size: {want.shape[1]} vs {got.shape[1]}")
    diff = np.abs(want - got)
    if chain:
        scale = scale + _chain(reference, model, xs, diff > atol + rtol * scale, rtol)
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


def beyond_rule(original: Model, result: Model, x: np.ndarray, delta: np.ndarray, tol: float) -> bool:
    """Whether ``delta`` (``f_original − f_result`` at the input ``x``, per output) breaks the rule of ``allowed``
    there: the certificate's witness judged as the sampled check judges its points."""
    xs = np.asarray(x, dtype=np.float64).reshape(1, -1)
    _, scale = same_as(original).outputs(xs)
    over = np.abs(delta).reshape(scale.shape) > tol * (1.0 + scale)
    scale = scale + _chain(same_as(original), result, xs, over, tol)
    return bool(np.any(np.abs(delta).reshape(scale.shape) > allowed(tol, scale)))


def _chain(reference: Reference, model: Model, xs: np.ndarray, over: np.ndarray, reach: float) -> np.ndarray:
    """The absolute-chain term of the rule, the larger of the reference's and ``model``'s, at the points with an
    output ``over`` the rule without it; 0 at the others (``|y|`` covers them already: the verdict is the rule's, and
    the chain costs nothing where every rewrite is within ``|y|``). A model nnxform cannot evaluate adds none."""
    chain = np.zeros(over.shape)
    rows = np.flatnonzero(over.any(axis=1))
    if rows.size:
        if not model.unsupported:
            chain[rows] = magnitudes(model, xs[rows], reach)
        if reference.chain is not None:
            chain[rows] = np.maximum(chain[rows], reference.chain(xs[rows], reach))
    return chain


def ensure_same_function(original: Model, result: Model, box: Box | None, what: str, samples: int = 1000,
                         tol: float = ATOL, reference: Reference | None = None) -> Comparison:
    """Raise NotExact (and so refuse to write) when ``result`` differs beyond the rule of ``allowed`` on ``box``
    from ``original``, or from ``reference`` when given (what a pass that changes the function must compute)."""
    box = box or Box.default(original.input_size)
    reference = reference or same_as(original, what)
    cmp = compare_with(reference, result, box.fit(original.input_size), samples, atol=tol, rtol=tol)
    if not cmp.within:
        raise NotExact(reference.refusal.format(max_abs=cmp.max_abs, samples=cmp.samples, rule=RULE.format(tol=tol)))
    return cmp
