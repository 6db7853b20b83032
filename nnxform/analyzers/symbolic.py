"""Symbolic bounds (CROWN / DeepPoly): back-substitute linear bounds of each step to the input.

Steps are bounded in graph order; each pre-activation's bounds come from linear functions of
the input obtained by walking back through the DAG, relaxing every nonlinear step with the
(already tightened) bounds of its input. Lower and upper bounds of a step are computed in one
pass by stacking the rows ``[W; −W]``. For a Relu layer only the neurons that interval
arithmetic over the tightened earlier layers leaves unstable are back-substituted: a stable ReLU
is linear, so its exact bounds change no relaxation (its reported bounds stay the interval ones).

The products with dense weights run in float32 on the columns that can be non-zero (a stably inactive ReLU
passes nothing back: its column is dropped before the product), and every float32 rounding they make is bounded
and subtracted (``_Products``): the coefficients are then just some coefficients, and the bound is sound for them.

The output bounds are then refined α-CROWN style: with the intermediate bounds fixed, the lower
slope of every unstable ReLU (any value in [0, 1] is sound) is optimised per output row by a few
Adam steps, the gradient coming from an adjoint pass over the back-substitution. The
best bound seen per row is kept, so the refinement never loosens CROWN's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from ..operators.activations import Relaxation
from . import relaxation
from .boxes import Adam
from .network import Activation, Input, Linear, Pool
from .interval import linear_interval
from ..stopping import Deadline
from .result import State
from .rounding import cast_slack, magnitude, product_slack

#: Adam steps on the output rows' ReLU lower slopes and their learning rate; the steps stop early once one narrows
#: the output bounds by less than ``SLOPE_TOL`` of their width.
SLOPE_STEPS, SLOPE_RATE, SLOPE_TOL = 10, 0.1, 1e-3
#: Adam's moment decays for the slopes: shorter memories than its defaults (0.9, 0.999) follow the gradient as the
#: relaxations move under it; with 20 + 20 steps the mnist_fc boxes end 0.3–1.5 % tighter (bench/RESULTS.md).
SLOPE_MOMENTS = (0.7, 0.9)
#: Memory one back-substitution's coefficients may take.
BACKSUB_BYTES = 256 * 2**20
#: Whether the products with dense weights run in float32 (False: in float64 like the operators' products, the
#: reference the tests compare the two forms of a network with).
FLOAT32 = True
#: Coefficients go to float32 only while every product they take part in stays below this (float32 overflows at
#: 2¹²⁸): beyond it, that step's products are in float64.
_SAFE32 = 2.0 ** 100

#: A coefficient matrix on a step and the columns it holds (None: all of them).
Coef = tuple[np.ndarray, np.ndarray | None]


def symbolic(state: State, deadline: Deadline | None = None, slope_steps: int = SLOPE_STEPS) -> State:
    """Tighten every step's bounds of ``state`` (seeded, e.g. by interval) by back-substitution, in place; the
    output's by ``slope_steps`` Adam steps on its ReLUs' lower slopes after CROWN's (0: CROWN's bounds alone).

    Past ``deadline`` the hidden rows not back-substituted yet keep their interval bounds (sound, looser) and only
    the output is back-substituted, without slope optimisation: a network too large for a full pass in time still
    gets bounds, and ``deadline.reached`` says they are not the full analysis's.
    """
    net = state.net
    products = _Products(state)  # every later layer's back-substitution reuses the earlier layers' products
    for i, s in enumerate(net.steps):
        if i == 0:
            continue
        if not isinstance(s, Linear):
            state.propagate_nonlinear(i)
            continue
        if net.first_layer(i):
            continue  # one affine map of the box: the seed's interval bounds are already exact
        state.set_linear(i, *linear_interval(state, i))
        if i == net.output and (deadline is None or not deadline.passed()):  # its first pass is CROWN's
            state.set_linear(i, *optimized_bounds(state, i, np.arange(s.size), slope_steps, products, SLOPE_TOL))
            continue
        lo, hi = state.lo[i].copy(), state.hi[i].copy()
        rows = net.rows_to_tighten(i, lo, hi)
        for part in np.array_split(rows, -(-rows.size // _rows_per_pass(net))) if rows.size else []:
            if i != net.output and deadline is not None and deadline.passed():
                break
            b = lower_bound(state, i - 1, *_stacked(s, part), products=products)
            lo[part], hi[part] = b[: part.size], -b[part.size:]
        state.set_linear(i, lo, hi)
    return state


#: α-CROWN on hidden neurons (``alpha``): Adam steps on their lower slopes, and rows optimised together.
ALPHA_STEPS, ALPHA_ROWS, ALPHA_RATE = 20, 256, 0.25


def alpha(state: State, until: Callable[[], bool] = lambda: False,
          step_done: Callable[[int], None] | None = None, steps: int = ALPHA_STEPS) -> bool:
    """α-CROWN bounds of every hidden ReLU layer's unstable neurons (``steps`` Adam steps), first layer to last, in
    place (each layer's tighter bounds tighten the next; the output is not bounded). Returns False when ``until()``
    stopped it (the rows left keep their sound bounds). ``step_done(i)`` after each Linear step it tightened."""
    net = state.net
    for i, s in enumerate(net.steps):
        if i == 0 or i == net.output:
            continue
        if not isinstance(s, Linear):
            state.propagate_nonlinear(i)
            continue
        if not net.piecewise_only[i] or net.first_layer(i):
            continue
        if until():
            return False
        alpha_step(state, i, until, steps)
        if step_done is not None:
            step_done(i)
    return not until()


def alpha_step(state: State, i: int, until: Callable[[], bool] = lambda: False, steps: int = ALPHA_STEPS) -> None:
    """Tighten the unstable rows of Linear step ``i`` by α-CROWN (``optimized_bounds``, ``steps`` Adam steps),
    ``ALPHA_ROWS`` at a time, in place; no new batch once ``until()`` (a time limit: the rows left keep their sound
    bounds)."""
    lo, hi = state.lo[i].copy(), state.hi[i].copy()
    rows = np.flatnonzero((lo < 0) & (hi > 0))
    for part in np.array_split(rows, -(-rows.size // ALPHA_ROWS)) if rows.size else []:
        if until():
            break
        new_lo, new_hi = optimized_bounds(state, i, part, steps, rate=ALPHA_RATE)
        lo[part], hi[part] = np.maximum(lo[part], new_lo), np.minimum(hi[part], new_hi)
    state.set_linear(i, lo, hi)


def alpha_crown(state: State, steps: int, slope_steps: int, until: Callable[[], bool] = lambda: False) -> State:
    """After ``symbolic``: α-CROWN's bounds, every hidden ReLU layer tightened by ``steps`` Adam steps on the slopes
    before it (``alpha``), then the output bounded again from them with ``slope_steps``, in place. Past ``until()``
    the rows left keep ``symbolic``'s bounds (every bound stays sound; each one only tightens)."""
    alpha(state, until, steps=steps)
    out = state.net.output
    state.set_linear(out, *optimized_bounds(state, out, np.arange(state.net.steps[out].size), slope_steps, None,
                                            SLOPE_TOL))
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


@dataclass
class _Dense:
    """What the float32 products of one Linear step's coefficients on its columns ``cols`` reuse: the rows of each
    dense source weight in float32, and per column the bound on the rounding those products make (``_Products``)."""

    key: tuple  # the bound arrays it was computed from (an entry is reused while they are the state's)
    weights: list[np.ndarray | None]  # per source: float32 rows ``W[cols]``, None for an operator (float64 there)
    slack: np.ndarray  # per column: ``|L| @ slack + tiny`` bounds the rounding of a coefficient ``L`` on them
    tiny: float
    reach: float  # the largest column sum of ``|W₃₂|``: a product's entries are within ``max |L| · reach``

    @property
    def cast(self) -> bool:
        """Whether coefficients on the step go to float32 (some source weight is a dense matrix)."""
        return any(w is not None for w in self.weights)


@dataclass
class _Relaxed:
    """An activation's relaxation on the columns that pass anything back (``cols``, None: all of them; a stably
    inactive ReLU passes nothing back), and which of those are more than passed through unchanged (``mixed``,
    positions in ``cols``, None: all of them; ``mixed_cols``: the same as step columns; ``mask``: the same as a
    boolean on ``cols``)."""

    key: tuple
    cols: np.ndarray | None
    a_lo: np.ndarray
    b_lo: np.ndarray
    a_up: np.ndarray
    b_up: np.ndarray
    mixed: np.ndarray | None
    mixed_cols: np.ndarray | None
    mask: np.ndarray

    @cached_property
    def unit_slopes(self) -> bool:
        """Whether every slope is within [−1, 1] (ReLU's are; optimised lower slopes stay in [0, 1])."""
        return bool(np.all(np.abs(self.a_lo) <= 1) and np.all(np.abs(self.a_up) <= 1))


class _Products:
    """The float32 back-substitution through dense weights, and its error bound.

    A coefficient ``L`` (float64, exact) on Linear step ``j`` is cast to float32 (``|L − L₃₂| <= u/(1−u)·|L₃₂|``)
    and multiplied by ``W₃₂``, the weights rounded to float32: ``|L·W − fl(L₃₂·W₃₂)| <= |L₃₂|·|W − W₃₂| +
    γ_K·|L₃₂|·|W₃₂|`` for products of ``K`` terms (Higham's bound, any summation order), plus what underflow can
    add (``rounding.TINY`` per product, or per coefficient or weight flushed to zero). Against values ``|x| <= m`` every
    such error moves ``L·x`` by at most ``|L₃₂| @ slack + tiny``, one matrix-vector product per step: the bound
    subtracts it with the step's own rounding noise. An activation whose source it alone reads may round its
    coefficients to float32 itself (``rounded_here``): that is the same cast, bounded the same way.
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self.entries: dict[tuple[int, int], tuple[np.ndarray | None, _Dense]] = {}
        self.relaxed: dict[int, _Relaxed] = {}
        net = state.net
        self.readers = np.bincount([s.source for s in net.steps if isinstance(s, (Activation, Pool))],
                                   minlength=len(net.steps))

    def relaxation(self, k: int) -> _Relaxed:
        """Activation step ``k``'s relaxation on its live columns (the same ``cols`` object while its input's
        bounds stay the same, so that the products on those columns are reused)."""
        st, s = self.state, self.state.net.steps[k]
        key = (st.lo[s.source], st.hi[s.source])
        cached = self.relaxed.get(k)
        if cached is not None and all(a is b for a, b in zip(cached.key, key)):
            return cached
        relax = _relax(st, s)
        a_lo, b_lo, a_up, b_up = relax
        live = (a_lo != 0) | (a_up != 0) | (b_lo != 0) | (b_up != 0)
        cols = None if live.all() else np.flatnonzero(live)
        if cols is not None:
            relax = tuple(r[cols] for r in relax)
        a_lo, b_lo, a_up, b_up = relax
        mask = (a_lo != 1) | (a_up != 1) | (b_lo != 0) | (b_up != 0)
        mixed = None if mask.all() else np.flatnonzero(mask)
        mixed_cols = mixed if cols is None else cols if mixed is None else cols[mixed]
        entry = _Relaxed(key, cols, *relax, mixed, mixed_cols, mask)
        self.relaxed[k] = entry
        return entry

    def rounded_here(self, k: int, L: np.ndarray, r: _Relaxed) -> bool:
        """Whether activation ``k`` may round its coefficients ``L`` times its slopes ``r`` to float32 itself: the
        source is read by it alone (nothing is added to them before the product), its products are in float32 (the
        values are rounded once, and ``dense`` bounds that cast), and ``L`` is float32 and the slopes at most 1 (no
        value grows: the source's product checks its own range)."""
        source = self.state.net.steps[k].source
        return (self.readers[source] == 1 and L.dtype == np.float32 and r.unit_slopes
                and self.dense(source, r.cols).cast)

    def dense(self, j: int, cols: np.ndarray | None) -> _Dense:
        """The entry of Linear step ``j`` on columns ``cols`` (an index array, or None for all)."""
        st, s = self.state, self.state.net.steps[j]
        key = (st.lo[j], st.hi[j], *(a for k in s.sources for a in (st.lo[k], st.hi[k])))
        cached = self.entries.get((j, id(cols)))
        if cached is not None and cached[0] is cols and all(a is b for a, b in zip(cached[1].key, key)):
            return cached[1]
        pick = slice(None) if cols is None else cols
        k_terms = s.size if cols is None else cols.size
        mag = magnitude(st.lo[j][pick], st.hi[j][pick])
        dense = FLOAT32 and any(isinstance(w, np.ndarray) for w in s.weights)
        slack, tiny = cast_slack(mag, np.float32) if dense else (np.zeros(k_terms), 0.0)  # the coefficient's cast
        tiny = float(tiny)
        weights: list[np.ndarray | None] = []
        reach = 0.0
        for src, w, rounded in zip(s.sources, s.weights, s.weights32):
            if not dense or rounded is None:
                weights.append(None)
                continue
            w32 = rounded[0][pick]
            reach = max(reach, float(np.abs(w32).sum(axis=0).max(initial=0.0)))
            more, more_tiny = product_slack(w32, None if rounded[1] else np.abs(w[pick] - w32),
                                            magnitude(st.lo[src], st.hi[src]), k_terms)
            slack, tiny = slack + more, tiny + float(more_tiny)
            weights.append(w32)
        entry = _Dense(key, weights, slack, tiny, reach)
        self.entries[(j, id(cols))] = (cols, entry)
        return entry


def lower_bound(state: State, start: int, coef: dict[int, np.ndarray], const: np.ndarray,
                slopes: dict[int, np.ndarray] | None = None, tape: list | None = None,
                products: _Products | None = None) -> np.ndarray:
    """Lower bound over the box of ``const + Σ coef[k] @ x[k]`` (all ``k <= start``), per row.

    Walks back from step ``start``, relaxing every nonlinear step it meets; ``slopes`` overrides
    the lower slopes of piecewise-linear steps per row, and ``tape`` records each step's coefficients (and their
    columns).
    ``products``: the float32 products' cache to reuse (one is made when not given).
    """
    net = state.net
    products = products or _Products(state)
    pending: dict[int, Coef] = {k: (L, None) for k, L in coef.items()}
    const = const.copy()
    for k in range(start, -1, -1):
        if k not in pending:
            continue
        L, cols = pending.pop(k)
        if tape is not None:
            tape.append((k, L, cols))
        s = net.steps[k]
        if isinstance(s, Input):
            const += _least(L, 0.5 * (state.lo[0] + state.hi[0]), 0.5 * (state.hi[0] - state.lo[0]))
        elif isinstance(s, Linear):
            const += _linear_back(state, k, L, cols, products, pending)
        elif isinstance(s, Activation):
            r = products.relaxation(k)
            dtype = np.float32 if products.rounded_here(k, L, r) else np.float64
            a_lo = None if slopes is None or k not in slopes else _take(slopes[k], r.mixed_cols)
            if r.mixed is None:  # every live column relaxed
                M, c = _relaxed_columns(_take(L, r.cols), r, a_lo)
                M = M.astype(dtype, copy=False)
            else:  # the others passed through unchanged
                M = _take(L, r.cols).astype(dtype)
                M[:, r.mixed], c = _relaxed_columns(L[:, r.mixed_cols], r, a_lo)
            const += c
            _add(pending, s.source, (M, r.cols), s.size)
        else:
            assert isinstance(s, Pool)
            const += _pool_back(state, s, L, pending)
    return const


def _relaxed_columns(L: np.ndarray, r: _Relaxed, a_lo: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``L`` on an activation's relaxed columns moved onto its input (float64: exact up to the analysis
    margin), and the constant part; ``a_lo``: the lower slopes per row, when optimised."""
    pick = slice(None) if r.mixed is None else r.mixed
    positive = np.maximum(L, 0.0, dtype=np.float64)  # L⁺ and L⁻ (each entry in one of them, the other 0: exact),
    negative = L - positive  # 3× faster than selecting with np.where on (rows, columns)
    const = np.zeros(len(L))
    b_lo, b_up = r.b_lo[pick], r.b_up[pick]
    if b_lo.any():
        const += positive @ b_lo
    if b_up.any():
        const += negative @ b_up
    positive *= r.a_lo[pick] if a_lo is None else a_lo
    negative *= r.a_up[pick]
    positive += negative
    return positive, const


def _linear_back(state: State, k: int, L: np.ndarray, cols: np.ndarray | None, products: _Products,
                 pending: dict[int, Coef]) -> np.ndarray:
    """Move coefficient ``L`` on Linear step ``k`` (on its columns ``cols``) to the step's sources; return the
    constant part (the bias, the float network's rounding noise, and the bound on this product's own rounding)."""
    s = state.net.steps[k]
    entry = products.dense(k, cols)
    noise = _noise(state, k)
    slack = entry.slack if noise is None else entry.slack + _take(noise, cols)
    top = max(float(L.max(initial=0.0)), -float(L.min(initial=0.0)))
    cast = entry.cast and top < _SAFE32 and top * entry.reach < _SAFE32
    if cast:
        L = L.astype(np.float32, copy=False)
    constant = _least(L, _take(s.bias, cols), slack) - entry.tiny
    for src, w, w32 in zip(s.sources, s.weights, entry.weights):
        if w32 is not None and cast:
            product = L @ w32
        else:  # an operator (a convolution), or coefficients too large for float32: float64
            product = _full(L, cols, s.size) @ w
        _add(pending, src, (product, None), w.shape[1])
    return constant


def _least(L: np.ndarray, centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """``L @ centre − |L| @ spread`` per row (the least of ``L·x`` over ``|x − centre| <= spread``), in float64: a float32
    ``L`` is cast first (numpy multiplies a float32 matrix by a float64 vector 3× slower than it casts and multiplies)."""
    exact = L.astype(np.float64)
    value = exact @ centre
    return value - np.abs(exact, out=exact) @ spread


def _take(a: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
    """The columns ``cols`` (last axis) of ``a``; all of them for None."""
    return a if cols is None else a[..., cols]


def _full(L: np.ndarray, cols: np.ndarray | None, size: int) -> np.ndarray:
    """``L`` on columns ``cols`` written out on all ``size`` columns (zeros elsewhere), in float64."""
    if cols is None:
        return np.asarray(L, dtype=np.float64)
    out = np.zeros((L.shape[0], size))
    out[:, cols] = L
    return out


def _noise(state: State, k: int) -> np.ndarray | None:
    """Linear step ``k``'s rounding noise bound in the float network (``rounding``), None when there is none."""
    m = None if state.real else state.noise[k]
    return None if m is None or not m.any() else m


def _relax(state: State, s: Activation) -> Relaxation:
    """The step's relaxation from its operator's table entry, widened by the error of onnxruntime's implementation."""
    kind, lo, hi = s.kind, state.lo[s.source], state.hi[s.source]
    a_lo, b_lo, a_up, b_up = kind.relax(lo, hi)
    err = 0.0 if state.real else kind.margin(lo, hi)
    if not np.any(err):
        return a_lo, b_lo, a_up, b_up
    return a_lo, b_lo - err, a_up, b_up + err


def optimized_bounds(state: State, i: int, rows: np.ndarray, steps: int, products: _Products | None = None,
                     tol: float = 0.0, rate: float = SLOPE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``rows`` of Linear step ``i``, the lower slope of every unstable piecewise-linear
    activation before it optimised per row by ``steps`` Adam steps (any slope between its two is sound; the best
    bound seen is kept, so the result is never looser than CROWN's with the same intermediate bounds, which is the
    first one seen). ``tol``:
    stop once a step narrows the rows' bounds by less than this share of their total width."""
    net = state.net
    products = products or _Products(state)
    free: dict[int, np.ndarray] = {}  # per piecewise-linear step, its unstable columns
    for k in range(i):
        s = net.steps[k]
        if isinstance(s, Activation) and s.slopes is not None:
            unstable = np.flatnonzero((state.lo[s.source] < 0) & (state.hi[s.source] > 0))
            if unstable.size:
                free[k] = unstable
    n = rows.size
    coef, const = _stacked(net.steps[i], rows)
    slopes = {k: np.tile(_relax(state, net.steps[k])[0], (2 * n, 1)) for k in free}
    params = {k: slopes[k][:, cols] for k, cols in free.items()}  # the free slopes alone: what Adam moves
    adam = Adam(list(params.values()), rate, *SLOPE_MOMENTS)
    best = np.full(2 * n, -np.inf)
    for t in range(steps + 1):
        tape: list = []
        bound = np.fmax(best, lower_bound(state, i - 1, coef, const, slopes, tape, products))  # NaN never kept
        gain, best = float(np.sum(bound - best)), bound
        if t == steps or not free or t > 0 and gain <= -tol * float(np.sum(best)):
            break
        grads = _slope_gradients(state, tape, slopes, products)
        adam.ascend([grads[k][:, cols] for k, cols in free.items()])
        for k, cols in free.items():
            np.clip(params[k], *net.steps[k].slopes, out=params[k])
            slopes[k][:, cols] = params[k]
    return best[:n], -best[n:]


def _slope_gradients(state: State, tape: list, slopes: dict[int, np.ndarray], products: _Products | None = None
                     ) -> dict[int, np.ndarray]:
    """Adjoint of ``lower_bound``: the bound's gradient with respect to each piecewise-linear step's slopes (the float32
    products' rounding taken as exact: only the direction of the ascent rests on it)."""
    net = state.net
    products = products or _Products(state)
    G: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # d bound / d (coefficients of step k), their columns
    grads = {}
    for k, L, cols in reversed(tape):  # sources before their consumers
        s = net.steps[k]
        if isinstance(s, Input):
            mid, rad = 0.5 * (state.lo[0] + state.hi[0]), 0.5 * (state.hi[0] - state.lo[0])
            G[k] = (mid - np.sign(L) * rad, None)
        elif isinstance(s, Linear):
            entry = products.dense(k, cols)
            noise = _noise(state, k)
            g = _take(s.bias, cols) - np.sign(L) * (entry.slack if noise is None else entry.slack + _take(noise, cols))
            for src, w, w32 in zip(s.sources, s.weights, entry.weights):
                g = g + (G[src][0].astype(np.float32) @ w32.T if w32 is not None else _take(G[src][0] @ w.T, cols))
            G[k] = (g, cols)
        elif isinstance(s, Activation):
            r = products.relaxation(k)
            a_lo = r.a_lo if k not in slopes else np.where(r.mask, _take(slopes[k], r.cols), r.a_lo)
            Lk = _take(L, r.cols)
            g_src, on = G[s.source]
            if on is None:  # the source's coefficients were a sum on all its columns (else on this step's only)
                g_src = _take(g_src, r.cols)
            positive = Lk > 0
            G[k] = (_full(np.where(positive, g_src * a_lo + r.b_lo, g_src * r.a_up + r.b_up), r.cols, s.size), None)
            if k in slopes:
                grads[k] = _full(g_src * np.maximum(Lk, 0.0), r.cols, s.size)
        else:
            arg, exact, top = relaxation.maxpool(state.lo[s.source], state.hi[s.source], s.windows)
            through = (L > 0) | exact
            G[k] = (np.where(through, G[s.source][0][:, arg], top), None)
    return grads


def _pool_back(state: State, s: Pool, L: np.ndarray, pending: dict[int, Coef]) -> np.ndarray:
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
    _add(pending, s.source, (out, None), lo.size)
    return np.where(exact, 0.0, N) @ top


def _add(pending: dict[int, Coef], k: int, c: Coef, size: int) -> None:
    """Add coefficients ``c`` on step ``k`` (of ``size`` values) to those pending there; a sum is in float64 on all
    columns (exact up to the analysis margin: the only float32 roundings are the ones ``_Products`` bounds)."""
    pending[k] = (_full(*pending[k], size) + _full(*c, size), None) if k in pending else c
