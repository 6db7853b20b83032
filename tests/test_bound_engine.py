"""The batched bound engine's back-substitution runs in float32 (many inputs) or float64 (few) and takes off what its
roundings can change (``boxes._terms``): on the same relaxation it is never above the bound computed in float64 with
nothing taken off, and close to it, for ReLU, LeakyRelu, Sigmoid and Tanh chains, weights scaled up (large values,
cancellation), a DAG with a skip connection and folded constants (weights that are not float32), optimised slopes and
split multipliers; and it stays sound on a network whose coefficients cancel (``test_symbolic_float32``'s)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_chain
from test_bounds import residual
from test_symbolic_float32 import cancelling_chain

from nnxform.analyzers.boxes import DenseNetwork, _relaxation, analyse, lower_bound, objective, per_box
from nnxform.analyzers.network import Activation, Input, Linear, compile_model
from nnxform.interpreter import run


def reference(state, start, coef, const, slopes=None, betas=None) -> np.ndarray:
    """``lower_bound`` in float64 throughout (rounding 1e-16: the bound the float32 one must stay below)."""
    dense, B = state.net, state.size
    coef = {k: np.asarray(v, np.float64) for k, v in coef.items()}
    total = np.broadcast_to(const, (B, const.shape[-1])).astype(np.float64)
    for k in range(start, -1, -1):
        L = coef.pop(k, None)
        if L is None:
            continue
        s = dense.steps[k]
        if betas is not None and k in betas:
            L = L + betas[k].astype(np.float64)
        if isinstance(s, Input):
            mid, rad = 0.5 * (state.lo[0] + state.hi[0]), 0.5 * (state.hi[0] - state.lo[0])
            total += per_box(L, mid) - per_box(np.abs(L), rad)
        elif isinstance(s, Linear):
            total += per_box(L, s.bias) - per_box(np.abs(L), state.noise[k])
            for src, w in zip(s.sources, dense.weights[k]):
                coef[src] = coef[src] + L @ w if src in coef else L @ w
        else:
            assert isinstance(s, Activation)
            a_lo, b_lo, a_up, b_up = _relaxation(state, s)
            a_lo = slopes[k].astype(np.float64) if slopes is not None and k in slopes else a_lo[:, None, :]
            positive = L > 0
            total += per_box(np.where(positive, L, 0.0), b_lo) + per_box(np.where(positive, 0.0, L), b_up)
            c = L * np.where(positive, a_lo, a_up[:, None, :])
            coef[s.source] = coef[s.source] + c if s.source in coef else c
    return total


CASES = [("Relu", 1.0), ("Relu", 30.0), ("LeakyRelu", 5.0), ("Sigmoid", 3.0), ("Tanh", 1.0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("activation, scale", CASES)
def test_bound_is_below_the_float64_one(activation, scale, seed, dtype):
    rng = np.random.default_rng(seed)
    model = random_chain(seed, [24, 40, 40, 40, 5], scale=scale, activation=activation)
    check(DenseNetwork(compile_model(model), "test", dtype=dtype), rng, optimise=activation in ("Relu", "LeakyRelu"))


@pytest.mark.parametrize("seed", range(3))
def test_float32_bound_on_a_dag_with_weights_off_float32(seed):
    dense = DenseNetwork(compile_model(residual(seed)), "test", dtype=np.float32)
    assert any(e is not None for errs in dense.cast_error.values() for e in errs)  # (the folded Sub/Mul)
    check(dense, np.random.default_rng(seed), optimise=True)


def test_the_coefficients_type_follows_the_input_count():
    """float32 where the products cost (many inputs), float64 where the searches shrink boxes (few inputs)."""
    assert DenseNetwork(compile_model(random_chain(0, [24, 8, 2])), "test").dtype == np.float32
    assert DenseNetwork(compile_model(random_chain(0, [5, 8, 2])), "test").dtype == np.float64


def check(dense, rng, optimise: bool) -> None:
    """On 6 boxes and 7 random rows: the bound is below the float64 one (to its rounding) and within 1e-3 of it,
    relative to the box's largest; with random slopes in range and multipliers too."""
    n = dense.steps[0].size
    centre = rng.uniform(-1, 1, (6, n))
    state = analyse(dense, centre - 0.4, centre + 0.4)
    out = dense.output
    variants: list[tuple] = [(None, None)]
    if optimise:
        variants.append(({k: rng.uniform(*s.slopes, (6, 7, s.size)).astype(np.float32)
                          for k, s in enumerate(dense.steps) if isinstance(s, Activation)},
                         {k: rng.uniform(-1, 1, (6, 7, s.size)).astype(np.float32)
                          for k, s in enumerate(dense.steps) if isinstance(s, Linear) and k != out}))
    # rows of the output, of each activation, and (as ``_tighten`` gives them) on every source of a Linear step
    starts = [[out]] + [[k] for k, s in enumerate(dense.steps) if isinstance(s, Activation)]
    starts += [s.sources for s in dense.steps if isinstance(s, Linear) and len(s.sources) > 1]
    for (slopes, betas), on in [(v, k) for v in variants for k in starts]:
        coef, const = {k: rng.normal(size=(7, dense.steps[k].size)) for k in on}, rng.normal(size=7)
        low, _ = lower_bound(state, max(on), coef, -const, slopes=slopes, betas=betas)
        ref = reference(state, max(on), coef, -const, slopes=slopes, betas=betas)
        scale = 1.0 + np.abs(ref).max(axis=1, keepdims=True)  # (the box's largest bound: the values' magnitude)
        assert np.all(low <= ref + 1e-12 * scale), (low - ref).max()
        assert np.all(low >= ref - 1e-3 * scale), ((ref - low) / scale).max()


def output_bounds(model, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batched engine's bounds (float32) of the real-valued network's outputs on a box of width 2e-9 around
    ``x0``."""
    net = compile_model(model)
    state = analyse(DenseNetwork(net, "test", real=True, dtype=np.float32), (x0 - 1e-9)[None], (x0 + 1e-9)[None])
    n = net.steps[net.output].size
    low, _ = objective(state, np.vstack([np.eye(n), -np.eye(n)]), np.zeros(2 * n))
    return low[0, :n], -low[0, n:]


@pytest.mark.parametrize("seed", range(6))
def test_float32_bounds_stay_sound_under_cancellation(seed):
    model, x0 = cancelling_chain(seed)
    y = run(model, x0[None]).reshape(-1)  # float64: the real network up to ~1e-16 relative
    lo, hi = output_bounds(model, x0)
    assert np.all(lo <= y) and np.all(y <= hi), (lo, y, hi)
