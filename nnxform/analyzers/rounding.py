"""Rigorous bounds on the rounding of a network evaluated in floating point, as onnxruntime runs it.

Standard error analysis (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1): a sum of
``n`` products computed in floating point with unit roundoff ``u`` — in any order, blocked or with
fused multiply-adds — is within ``γ_n · Σ|w_i x_i|`` of its exact value, ``γ_n = n·u / (1 − n·u)``.
A chain of affine operators with ``n_1, n_2, …`` roundings per output stays within
``γ_{n_1 + n_2 + …}`` times the same chain evaluated with every coefficient replaced by its absolute
value (``|A_2|·(|A_1|·|x| + |c_1|) + |c_2|``), because ``γ_a + γ_b + γ_a·γ_b <= γ_{a+b}``.

The analyzers use this as *noise*: every Linear step ``z = Σ W x + b`` of the float network is
``z = Σ W x̂ + b + ε`` with ``|ε| <= γ_depth · (Σ A |x̂| + c)``, ``x̂`` the float values of its sources
(bounded by the analysis itself), ``A >= |W|`` and ``c >= |b|`` the absolute chain and ``depth`` the
roundings on the longest path (``Rounding``). ReLU and MaxPool are exact in floating point; the
input's cast to the model's type moves it by at most half an ulp (``cast_box``). Sigmoid and Tanh
are the one assumption: onnxruntime's approximations are taken to be within their table entry's
``error`` (``operators.activations.ACTIVATION_ERROR``). Each operator's rounding count and absolute
form are its entry of the operator table (``operators.forms``).
The constants themselves are rounded to the model's type when written (one more rounding each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..interpreter import arguments
from ..ir import Node
from ..operators import OPERATORS

#: Unit roundoff of the types a model computes in.
UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}


def unit_roundoff(dtype: type | np.dtype) -> float:
    """``u`` of a model's float type (float32 unless it computes in float64)."""
    return UNIT_ROUNDOFF.get(np.dtype(dtype), UNIT_ROUNDOFF[np.dtype(np.float32)])


def gamma(n: np.ndarray | float, u: float) -> np.ndarray:
    """``γ_n = n·u / (1 − n·u)``: the relative error bound of ``n`` roundings (infinite past ``n·u >= 1``)."""
    nu = np.asarray(n, dtype=np.float64) * u
    return np.where(nu < 1.0, nu / np.maximum(1.0 - nu, 1e-300), np.inf)


@dataclass
class Rounding:
    """How one Linear step rounds: ``|ε| <= γ_depth · (Σ weights[k] @ |x_k| + bias)`` per row."""

    weights: list[np.ndarray]  # per source, >= |W| entrywise (the absolute chain of the operators)
    bias: np.ndarray  # >= |b|
    depth: np.ndarray  # roundings per row on the longest chain of operators

    @classmethod
    def of_gemm(cls, weights: list[np.ndarray], bias: np.ndarray, depth: int = 0) -> "Rounding":
        """A Gemm written from these (float64) weights: one product-sum per row, the bias added, the constants'
        casts (zero weights add nothing); at least ``depth`` roundings per row."""
        nonzero = sum((w != 0).sum(axis=1) for w in weights)
        return cls([np.abs(w) for w in weights], np.abs(bias), np.maximum(nonzero + 2 * (bias != 0) + 1, depth))

    def noise(self, magnitudes: list[np.ndarray], u: float) -> np.ndarray:
        """The bound on ``|ε|`` given bounds on the sources' absolute (float) values (``(size,)`` each, or
        ``(B, size)`` for a batch of boxes with dense weights)."""
        total = self.bias + sum(w @ m if m.ndim == 1 else m @ w.T for w, m in zip(self.weights, magnitudes))
        return np.where(total > 0, gamma(self.depth, u) * total, 0.0)


#: Per float type, a bound on the absolute error of one operation that underflows (IEEE-754 gradual underflow makes
#: at most half the smallest subnormal; twice the smallest normal also covers a BLAS that flushes subnormals to zero).
TINY = {np.dtype(np.float32): 2.0 ** -125, np.dtype(np.float64): 2.0 ** -1021}


def cast_slack(m: np.ndarray, dtype: type | np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """What rounding coefficients ``L`` to ``dtype`` once can move ``L·x`` by, for values ``|x| <= m`` (``(n,)``, or
    ``(B, n)`` per box): at most ``|L_c| @ slack + tiny`` (``|L − L_c| <= u/(1−u)·|L_c|``, or ``TINY`` flushed)."""
    u = unit_roundoff(dtype)
    return u / (1 - u) * m, TINY[np.dtype(dtype)] * m.sum(axis=-1)


def product_slack(w: np.ndarray, error: np.ndarray | None, m: np.ndarray, terms: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """What products ``L_c @ w`` in ``w``'s float type (sums of ``terms`` products) can move ``L·(W x)`` by, for
    sources ``|x| <= m`` (``(n,)``, or ``(B, n)`` per box): at most ``|L_c| @ slack + tiny``, from Higham's bound
    ``γ_terms·|L_c|·|w|`` (any summation order), the weights' own rounding ``|W − w|`` (``error``; None: exact) and
    underflow (``TINY`` per product, per weight and per coefficient flushed to zero)."""
    tiny = TINY[w.dtype]
    size = m @ np.abs(w).T
    total = m.sum(axis=-1)
    slack = gamma(terms, unit_roundoff(w.dtype)) * size + tiny * total[..., None]
    if error is not None:
        slack = slack + m @ error.T
    return slack, tiny * (terms * total + size.sum(axis=-1))


def magnitude(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The largest absolute value in ``[lo, hi]``."""
    return np.maximum(np.abs(lo), np.abs(hi))


def cast_box(lo: np.ndarray, hi: np.ndarray, dtype: type | np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The box widened to every value its points can become when cast to ``dtype`` (outward rounding)."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return lo.copy(), hi.copy()
    lo32, hi32 = lo.astype(dt), hi.astype(dt)
    lo32 = np.where(lo32.astype(np.float64) > lo, np.nextafter(lo32, dt.type(-np.inf)), lo32)
    hi32 = np.where(hi32.astype(np.float64) < hi, np.nextafter(hi32, dt.type(np.inf)), hi32)
    return lo32.astype(np.float64), hi32.astype(np.float64)


def roundings(node: Node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Roundings one output value of an affine ``node`` goes through (its accumulation length; the operator table's)."""
    return OPERATORS[node.op].roundings(node, shapes)


def absolute_node(node: Node, args: list[np.ndarray | None], batched: list[bool]) -> tuple[Node, list]:
    """``node`` and its arguments for the absolute chain: constants by their absolute values, then the operator's
    own absolute form from the table (Sub as Add, Gemm's alpha/beta positive, …; data inputs are >= 0)."""
    args = [a if b or a is None or not np.issubdtype(np.asarray(a).dtype, np.floating) else np.abs(a)
            for a, b in zip(args, batched)]
    absolute = OPERATORS[node.op].absolute
    return (node, args) if absolute is None else absolute(node, args)


def node_inputs(node: Node, values: dict[str, np.ndarray], constants: dict[str, np.ndarray], fixed: dict | None,
                absolute: bool, linear: bool) -> tuple[Node, list, list[bool]]:
    """``interpreter.Inputs`` of the analysis form's affine segments: ``arguments`` (``linear``: the linear part),
    in the absolute form with ``absolute``."""
    args, batched = arguments(node, values, constants, fixed, linear=linear)
    if absolute:
        node, args = absolute_node(node, args, batched)
    return node, args, batched
