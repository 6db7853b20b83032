"""The solver's network for the milp stage: each step rescaled by powers of two so that HiGHS's absolute tolerances
are relative to each neuron (``_rescaled``), and the checks of what the tolerances cannot resolve.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..analyzers.conv import ConvMap, IdentityMap
from ..analyzers.network import Activation, Linear, CompiledNetwork, Pool
from ..analyzers.result import State, widen
from ..analyzers.milp import beyond_solver
from ..analyzers.rounding import Rounding, magnitude
from ..analyzers.solvers import INTEGRALITY
from ..domain import Box

#: How far below its activity (in powers of two) a neuron's scale may go (``_rescaled``): a value that much smaller
#: than its terms is below every tolerance anyway, and its row's coefficients stay below ``2**_SCALE_SPREAD``.
_SCALE_SPREAD = 20
#: How a step's values may be rescaled for the solver: per neuron, by one factor, not at all (``_exponents``).
_FREE, _UNIFORM, _FIXED = 0, 1, 2
#: The milp stage stops before a step it cannot rescale whose unstable neurons reach less than this many times the
#: solver's absolute tolerance (their big-M constants are then of the tolerances' size).
RESOLVED = 1e3


def _reach(state: State, i: int, tol: float) -> np.ndarray:
    """Per row of Linear step ``i`` of the solver's network: how far its value moves when the row and each of its
    sources are off by ``tol``, the solver's absolute tolerance: ``tol·(1 + Σ |W|)``."""
    s = state.net.steps[i]
    return tol * (1.0 + sum(aw @ np.ones(aw.shape[1]) for aw in s.abs_weights))


def _unresolved(state: State, i: int, tol: float) -> bool:
    """Whether Linear step ``i`` (not rescaled) has an unstable neuron below ``RESOLVED`` tolerances in magnitude, whose
    big-M constants the solver's absolute tolerances do not resolve (it then calls feasible models infeasible)."""
    lo, hi = state.lo[i], state.hi[i]
    return bool(np.any((lo < 0) & (hi > 0) & (magnitude(lo, hi) < RESOLVED * tol)))


def _needs_rescaling(state: State) -> bool:
    """Whether the solver's absolute tolerances cannot resolve the network as it is: an unstable value within
    ``RESOLVED`` tolerances of 0 (HiGHS's default tolerances, at most ``INTEGRALITY``), or values beyond what
    ``beyond_solver`` trusts."""
    linear = [i for i, s in enumerate(state.net.steps) if isinstance(s, Linear)]
    return bool(beyond_solver(state)) or any(_unresolved(state, i, INTEGRALITY) for i in linear)


def _activity(state: State, i: int) -> np.ndarray:
    """Per row of Linear step ``i``: ``|b| + Σ |W|·max|x|``, what the magnitudes of the terms it adds up sum to."""
    s = state.net.steps[i]
    return np.abs(s.bias) + sum(aw @ magnitude(state.lo[src], state.hi[src]) for src, aw in zip(s.sources, s.abs_weights))


def _exponents(state: State) -> tuple[list[np.ndarray], list[int]]:
    """Per step, the power of two its values are divided by in the solver's network (``_rescaled``), and how each
    step may be scaled (``_FREE``, ``_UNIFORM``, ``_FIXED``).

    A step whose values reach later steps only through dense matrices (the input too) is scaled neuron by neuron:
    its magnitude (not below ``2**-_SCALE_SPREAD`` of its activity) becomes about 1. Operators cannot be rescaled row
    by row, so a step computed or read by a convolution (``ConvMap``: its kernel takes one factor), or read by a
    MaxPool (which compares its window's values), is scaled by one factor; an IdentityMap step keeps its source's
    scales; a step computed or read by a ``SubgraphMap``, or read by a curved activation (Sigmoid, Tanh), is not
    scaled.
    """
    steps = state.net.steps
    need = [_FREE] * len(steps)
    for i in range(len(steps) - 1, 0, -1):
        s = steps[i]
        if isinstance(s, Linear):
            kinds = [_FREE if isinstance(w, (np.ndarray, IdentityMap)) else _UNIFORM if isinstance(w, ConvMap) else
                     _FIXED for w in s.weights]
            need[i] = max([need[i]] + kinds)
            for src, w, kind in zip(s.sources, s.weights, kinds):
                need[src] = max(need[src], need[i] if isinstance(w, IdentityMap) else kind)
        else:  # a piecewise-linear activation commutes with a positive factor, a maximum with a common one,
            # other activations with none
            kind = _UNIFORM if isinstance(s, Pool) else _FREE if s.slopes is not None else _FIXED
            need[s.source] = max(need[s.source], need[i], kind)
    exps: list[np.ndarray] = []
    for i, s in enumerate(steps):
        if isinstance(s, (Activation, Pool)):
            e = exps[s.source] if isinstance(s, Activation) else np.full(s.size, exps[s.source].max())
        elif isinstance(s, Linear) and any(isinstance(w, IdentityMap) for w in s.weights):
            e = exps[s.sources[0]].copy()
        elif need[i] == _FIXED:
            e = np.zeros(s.size, np.int64)
        else:
            e = np.frexp(magnitude(state.lo[i], state.hi[i]))[1].astype(np.int64)
            if isinstance(s, Linear):
                e = np.maximum(e, np.frexp(_activity(state, i))[1] - _SCALE_SPREAD)
            e = np.full(s.size, e.max()) if need[i] == _UNIFORM else e
        exps.append(e)
    return exps, need


def _rescaled(state: State) -> tuple[State, np.ndarray, set[int]]:
    """``state`` on the same network with every value divided by a power of two of its magnitude (``_exponents``),
    the input's exponents (a solution's input is its columns times ``2**exponents``) and the Linear steps not rescaled.

    The MILP solver's tolerances are absolute (1e-7 on rows and bounds, 1e-6 on integrality): on values of 1e-6
    they are as large as the values, and HiGHS then calls feasible models infeasible. Rescaled, every tolerance is
    relative to the neurons it applies to. Scaling by powers of two is exact in binary floating point: weights,
    biases, bounds, rounding noise and the absolute chain are the original's times ``2**(e_source - e_row)``, the
    signs are unchanged and each neuron keeps its row.
    """
    exps, need = _exponents(state)
    net = state.net

    def scaled(w: Any, rows: np.ndarray, cols: np.ndarray) -> Any:
        if isinstance(w, np.ndarray):
            return w * np.ldexp(1.0, -rows)[:, None] * np.ldexp(1.0, cols)[None, :]
        if isinstance(w, ConvMap):
            return replace(w, weight=np.ldexp(w.weight, int(cols[0] - rows[0])))
        return w  # an IdentityMap between equal scales, or an unscaled SubgraphMap

    steps: list = []
    for i, s in enumerate(net.steps):
        if isinstance(s, Linear):
            e, r = exps[i], s.float_rounding
            weights = [scaled(w, e, exps[src]) for src, w in zip(s.sources, s.weights)]
            rounding = Rounding([scaled(a, e, exps[src]) for src, a in zip(s.sources, r.weights)],
                                np.ldexp(r.bias, -e), r.depth)
            steps.append(Linear(s.tensor, list(s.sources), weights, np.ldexp(s.bias, -e), rounding))
        else:
            steps.append(s)

    def divided(values: list[np.ndarray | None]) -> list[np.ndarray | None]:
        return [None if v is None else np.ldexp(v, -e) for v, e in zip(values, exps)]

    box = Box(np.ldexp(state.box.lower, -exps[0]), np.ldexp(state.box.upper, -exps[0]))
    unscaled = {i for i, s in enumerate(net.steps) if isinstance(s, Linear) and need[i] == _FIXED}
    return (State(CompiledNetwork(steps, net.output, net.output_shape, net.dtype), box, divided(state.lo), divided(state.hi),
                  divided(state.noise)), exps[0], unscaled)


def _margin(lo: float, hi: float) -> float:
    """The analyzers' float32 margin of a neuron with bounds ``[lo, hi]``."""
    wlo, _ = widen(np.array([lo]), np.array([hi]))
    return float(lo - wlo[0])


