"""Symbolic bounds (CROWN / DeepPoly): back-substitute linear bounds of each step to the input.

Steps are bounded in graph order; each pre-activation's bounds come from linear functions of
the input obtained by walking back through the DAG, relaxing every nonlinear step with the
(already tightened) bounds of its input. Lower and upper bounds of a step are computed in one
pass by stacking the rows ``[W; −W]``. For a Relu layer only the neurons that interval
arithmetic over the tightened earlier layers leaves unstable are back-substituted: a stable ReLU
is linear, so its exact bounds change no relaxation (its reported bounds stay the interval ones).

The output bounds are then refined α-CROWN style: with the intermediate bounds fixed, the lower
slope of every unstable ReLU (any value in [0, 1] is sound) is optimised per output row by a few
signed-gradient steps, the gradient coming from an adjoint pass over the back-substitution. The
best bound seen per row is kept, so the refinement never loosens CROWN's result.
"""

from __future__ import annotations

import numpy as np

from ..operators.activations import Relaxation
from . import relaxation
from .network import Activation, Input, Linear, Pool
from .interval import linear_interval
from .encoding import Deadline
from .result import State

#: Signed-gradient steps on the output rows' ReLU lower slopes, and the first step size.
SLOPE_STEPS, SLOPE_STEP = 10, 0.25
#: Memory one back-substitution's coefficients may take.
BACKSUB_BYTES = 256 * 2**20


def symbolic(state: State, deadline: Deadline | None = None) -> State:
    """Tighten every step's bounds of ``state`` (seeded, e.g. by interval) by back-substitution, in place.

    Past ``deadline`` the hidden rows not back-substituted yet keep their interval bounds (sound, looser) and only
    the output is back-substituted, without slope optimisation: a network too large for a full pass in time still
    gets bounds, and ``deadline.reached`` says they are not the full analysis's.
    """
    net = state.net
    for i, s in enumerate(net.steps):
        if i == 0:
            continue
        if not isinstance(s, Linear):
            state.propagate_nonlinear(i)
            continue
        if net.first_layer(i):
            continue  # one affine map of the box: the seed's interval bounds are already exact
        state.set_linear(i, *linear_interval(state, i))
        lo, hi = state.lo[i].copy(), state.hi[i].copy()
        rows = net.rows_to_tighten(i, lo, hi)
        for part in np.array_split(rows, -(-rows.size // _rows_per_pass(net))) if rows.size else []:
            if i != net.output and deadline is not None and deadline.passed():
                break
            b = lower_bound(state, i - 1, *_stacked(s, part))
            lo[part], hi[part] = b[: part.size], -b[part.size:]
        state.set_linear(i, lo, hi)
    if deadline is None or not deadline.passed():
        _optimize_output_slopes(state)
    return state


def _rows_per_pass(net) -> int:
    """How many rows one back-substitution takes, so that its coefficients (two per row and step width, float64)
    stay within ``BACKSUB_BYTES``: wide convolutional layers are bounded in several passes."""
    widest = max(step.size for step in net.steps)
    return max(1, BACKSUB_BYTES // (16 * widest))


def _stacked(s: Linear, rows: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Coefficients on the sources and constant of the rows ``[x[rows]; −x[rows]]`` of Linear step ``s``."""
    sign = np.concatenate([np.ones(rows.size), -np.ones(rows.size)])[:, None]
    coef = {src: sign * np.vstack([w[rows], w[rows]]) for src, w in zip(s.sources, s.weights)}
    return coef, sign[:, 0] * np.concatenate([s.bias[rows], s.bias[rows]])


def lower_bound(state: State, start: int, coef: dict[int, np.ndarray], const: np.ndarray,
                slopes: dict[int, np.ndarray] | None = None, tape: list | None = None) -> np.ndarray:
    """Lower bound over the box of ``const + Σ coef[k] @ x[k]`` (all ``k <= start``), per row.

    Walks back from step ``start``, relaxing every nonlinear step it meets; ``slopes`` overrides
    the lower slopes of Relu steps per row, and ``tape`` records each step's coefficients.
    """
    net = state.net
    coef = dict(coef)
    const = const.copy()
    for k in range(start, -1, -1):
        L = coef.pop(k, None)
        if L is None:
            continue
        if tape is not None:
            tape.append((k, L))
        s = net.steps[k]
        if isinstance(s, Input):
            mid, rad = 0.5 * (state.lo[0] + state.hi[0]), 0.5 * (state.hi[0] - state.lo[0])
            const += L @ mid - np.abs(L) @ rad
        elif isinstance(s, Linear):
            const += L @ s.bias - _noise_term(state, k, L)
            for src, w in zip(s.sources, s.weights):
                _add(coef, src, L @ w)
        elif isinstance(s, Activation):
            a_lo, b_lo, a_up, b_up = _relax(state, s)
            if slopes is not None and k in slopes:
                a_lo = slopes[k]
            P, N = np.maximum(L, 0.0), np.minimum(L, 0.0)
            const += P @ b_lo + N @ b_up
            P *= a_lo  # in place: three arrays of the coefficients' size at most, on wide convolutional layers
            N *= a_up
            P += N
            del N
            _add(coef, s.source, P)
        else:
            assert isinstance(s, Pool)
            const += _pool_back(state, s, L, coef)
    return const


def _noise_term(state: State, k: int, L: np.ndarray) -> np.ndarray | float:
    """``max |L @ ε|`` over Linear step ``k``'s rounding noise ``|ε| <= noise[k]`` (``rounding``)."""
    m = None if state.real else state.noise[k]
    return 0.0 if m is None or not m.any() else np.abs(L) @ m


def _relax(state: State, s: Activation) -> Relaxation:
    """The step's relaxation from its operator's table entry, widened by the error of onnxruntime's implementation."""
    kind = s.kind
    a_lo, b_lo, a_up, b_up = kind.relax(state.lo[s.source], state.hi[s.source])
    if state.real or not kind.error:
        return a_lo, b_lo, a_up, b_up
    return a_lo, b_lo - kind.error, a_up, b_up + kind.error


def _optimize_output_slopes(state: State) -> None:
    """α-CROWN on the output rows: signed-gradient ascent on the unstable ReLUs' lower slopes."""
    net = state.net
    lo, hi = optimized_bounds(state, net.output, np.arange(net.steps[net.output].size), SLOPE_STEPS)
    state.set_linear(net.output, lo, hi)


def optimized_bounds(state: State, i: int, rows: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``rows`` of Linear step ``i``, the lower slope of every unstable ReLU before it
    optimised per row by ``steps`` signed-gradient steps (any slope in [0, 1] is sound; the best bound seen is kept,
    so the result is never looser than CROWN's with the same intermediate bounds)."""
    net = state.net
    relus = {}
    for k in range(i):
        s = net.steps[k]
        if isinstance(s, Activation) and s.op == "Relu":
            free = (state.lo[s.source] < 0) & (state.hi[s.source] > 0)
            if free.any():
                relus[k] = free
    n = rows.size
    coef, const = _stacked(net.steps[i], rows)
    slopes = {k: np.tile(_relax(state, net.steps[k])[0], (2 * n, 1)) for k in relus}
    best = np.full(2 * n, -np.inf)
    for t in range(steps + 1):
        tape: list = []
        best = np.maximum(best, lower_bound(state, i - 1, coef, const, slopes, tape))
        if t == steps or not relus:
            break
        grads = _slope_gradients(state, tape, slopes)
        step = SLOPE_STEP * (1.0 - t / steps)
        for k, free in relus.items():
            slopes[k] = np.where(free, np.clip(slopes[k] + step * np.sign(grads[k]), 0.0, 1.0), slopes[k])
    return best[:n], -best[n:]


def _slope_gradients(state: State, tape: list, slopes: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Adjoint of ``lower_bound``: the bound's gradient with respect to each Relu step's slopes."""
    net = state.net
    G: dict[int, np.ndarray] = {}  # d bound / d (coefficients of step k)
    grads = {}
    for k, L in reversed(tape):  # sources before their consumers
        s = net.steps[k]
        if isinstance(s, Input):
            mid, rad = 0.5 * (state.lo[0] + state.hi[0]), 0.5 * (state.hi[0] - state.lo[0])
            G[k] = mid - np.sign(L) * rad
        elif isinstance(s, Linear):
            m = None if state.real else state.noise[k]
            G[k] = s.bias + sum(G[src] @ w.T for src, w in zip(s.sources, s.weights))
            if m is not None and m.any():
                G[k] = G[k] - np.sign(L) * m
        elif isinstance(s, Activation):
            a_lo, b_lo, a_up, b_up = _relax(state, s)
            if k in slopes:
                a_lo = slopes[k]
                grads[k] = G[s.source] * np.maximum(L, 0.0)
            pos = L > 0
            G[k] = G[s.source] * np.where(pos, a_lo, a_up) + np.where(pos, b_lo, b_up)
        else:
            arg, exact, top = relaxation.maxpool(state.lo[s.source], state.hi[s.source], s.windows)
            through = (L > 0) | exact
            G[k] = np.where(through, G[s.source][:, arg], top)
    return grads


def _pool_back(state: State, s: Pool, L: np.ndarray, coef: dict[int, np.ndarray]) -> np.ndarray:
    """Move ``L``'s coefficients on a MaxPool output to its input; return the constant part."""
    lo, hi = state.lo[s.source], state.hi[s.source]
    arg, exact, top = relaxation.maxpool(lo, hi, s.windows)
    P, N = np.maximum(L, 0.0), np.minimum(L, 0.0)
    linear = P + np.where(exact, N, 0.0)
    out = np.zeros((L.shape[0], lo.size))
    if np.unique(arg).size == arg.size:  # every window took a different input (no overlap): one scatter
        out[:, arg] = linear
    else:
        np.add.at(out.T, arg, linear.T)
    _add(coef, s.source, out)
    return np.where(exact, 0.0, N) @ top


def _add(coef: dict[int, np.ndarray], k: int, M: np.ndarray) -> None:
    if k in coef:
        coef[k] = coef[k] + M
    else:
        coef[k] = M

