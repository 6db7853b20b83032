"""Symbolic bounds of many boxes at once: the bound engine of branch and bound.

The same analysis as ``symbolic`` (CROWN back-substitution, the float network's rounding as noise, the analysis
margin) with a leading batch axis on every bound: ``B`` sub-boxes of one network are bounded by matrix products over
the batch, which is what makes splitting cheap. The back-substitution's coefficients are float32 for networks with
many inputs (numpy's products twice as fast as in float64, half the memory), every rounding they make bounded and
taken off (``_terms``), as ``symbolic``'s products are; float64 for few inputs, whose boxes the searches halve until
rounding-sized margins matter (a float32 rounding bound scales with the values, not the box). A branch may also fix
the sign of ReLU inputs (``signs``): its bounds are clamped at 0 before they are used, which is sound on the part of
the box where those signs hold (the branch's part); a branch whose clamps leave an empty interval is infeasible
(``BoxBounds.empty``).

``objective`` gives a lower bound of ``coef @ y − bound`` per box and per row, and the row's linear lower bound's
coefficients on the input, which the search reads to choose splits and to propose counterexamples;
``optimized_objective`` tightens it by optimising the ReLU slopes and the sign constraints' multipliers (α,β-CROWN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import NnxformError
from .network import Activation, Input, Linear, CompiledNetwork, Pool, dense_weights
from .result import MARGIN_ABS, MARGIN_REL, widen
from .rounding import TINY, Rounding, cast_box, cast_slack, gamma, magnitude, product_slack, unit_roundoff

#: Networks with at most this many inputs are "few-input": their hidden bounds are carried forward as functions of
#: the input (``_Forward``), and the searches above (``verify``, ``equiv``) halve their input box.
FEW_INPUTS = 16
#: Memory one back-substitution's coefficients may take (the batch is bounded in parts beyond it).
BACKSUB_BYTES = 128 * 2**20


@dataclass
class BoxBounds:
    """Per step, bounds of the float network over each of ``B`` boxes (``(B, size)`` arrays), and each Linear
    step's rounding noise; ``empty``: boxes whose sign constraints contradict their bounds (nothing to prove)."""

    net: "DenseNetwork"
    lo: list[np.ndarray | None]
    hi: list[np.ndarray | None]
    noise: list[np.ndarray | None]
    empty: np.ndarray
    terms: dict = field(default_factory=dict)  # per step, what ``lower_bound`` needs of it (``_terms``)

    @property
    def size(self) -> int:
        return len(self.empty)

    def boxes(self, part: slice | np.ndarray) -> "BoxBounds":
        """The bounds of the boxes ``part`` (a slice: views; indices: copies)."""
        cut = [None if a is None else a[part] for a in self.lo], [None if a is None else a[part] for a in self.hi]
        return BoxBounds(self.net, *cut, [None if a is None else a[part] for a in self.noise], self.empty[part])


class DenseNetwork:
    """A ``CompiledNetwork`` whose Linear steps are dense matrices, with what every batch reuses (|W|, W⁺, W⁻, the
    weights in the back-substitution's type ``dtype`` and what that rounding lost). MaxPool is not supported by the
    batched engine yet (said at construction)."""

    def __init__(self, net: CompiledNetwork, what: str, real: bool = False, dtype: type | None = None) -> None:
        pool = next((s for s in net.steps if isinstance(s, Pool)), None)
        if pool is not None:
            raise NnxformError(f"{what}: MaxPool node '{pool.node}' is not supported by the branch-and-bound engine "
                               "yet (ReLU, Sigmoid and Tanh networks are)")
        self.net = net
        self.steps = net.steps
        self.weights = {i: [dense_weights(w, what) for w in s.weights]
                        for i, s in enumerate(net.steps) if isinstance(s, Linear)}
        self.plus = {i: [np.maximum(w, 0.0) for w in ws] for i, ws in self.weights.items()}
        self.minus = {i: [np.minimum(w, 0.0) for w in ws] for i, ws in self.weights.items()}
        self.rounding = {i: _dense_rounding(net.steps[i].float_rounding, what) for i in self.weights}
        self.dtype = np.dtype(dtype or (np.float32 if net.steps[0].size > FEW_INPUTS else np.float64))
        readers: dict[int, list] = {i: [] for i in range(len(net.steps))}
        for s in net.steps:
            for src in s.sources if isinstance(s, Linear) else [s.source] if isinstance(s, Activation) else []:
                readers[src].append(s)
        #: steps every reader of which is Linear: the back-substitution takes their centre part with their coefficient
        self.centred = {i: bool(r) and all(isinstance(t, Linear) for t in r) for i, r in readers.items()}
        self.weights_c = {i: [w.astype(self.dtype) for w in ws] for i, ws in self.weights.items()}
        self.cast_error = {i: [np.abs(w - wc) if (w != wc).any() else None for w, wc in zip(ws, self.weights_c[i])]
                           for i, ws in self.weights.items()}
        self.u = 0.0 if real else net.unit_roundoff  # real: the real-valued network, without rounding noise

    @property
    def output(self) -> int:
        return self.net.output

    def exact_c(self, i: int) -> bool:
        """Whether Linear step ``i``'s weights are exact in the coefficients' type."""
        return all(e is None for e in self.cast_error[i])


def analyse(dense: DenseNetwork, lower: np.ndarray, upper: np.ndarray,
            signs: dict[int, np.ndarray] | None = None, last: int | None = None,
            prior: tuple[list[np.ndarray | None], list[np.ndarray | None]] | None = None,
            settled: np.ndarray | None = None) -> BoxBounds:
    """Bounds of every step over each box ``[lower[b], upper[b]]``; ``signs[i]`` ``(B, size)`` of +1/−1/0 fixes
    the sign of Linear step ``i``'s values in that box's branch (0: free). ``last``: bound the steps up to it only
    (the later ones stay None), ``last`` itself by intervals (the caller bounds the rows it needs: ``objective``);
    ``prior``: per step, bounds ``(size,)`` of the float network known to hold on every box, or ``(B, size)`` on each
    (None: none), intersected with the ones computed (rows they settle are not back-substituted); ``settled``
    ``(B,)``: per box, the last step whose ``prior`` is this box's own bound already (its parent's in a branch and
    bound, computed on the same box with the same signs before that step: a split at step ``k`` changes only the
    steps after ``k``), so that it is not back-substituted again."""
    steps = dense.steps
    n = len(steps) if last is None else last + 1
    B = len(lower)
    lo: list[np.ndarray | None] = [None] * n
    hi: list[np.ndarray | None] = [None] * n
    noise: list[np.ndarray | None] = [None] * n
    lo[0], hi[0] = cast_box(np.asarray(lower, np.float64), np.asarray(upper, np.float64), dense.net.dtype)
    state = BoxBounds(dense, lo, hi, noise, np.zeros(B, bool))
    forward = _Forward(state) if steps[0].size <= FEW_INPUTS else None
    for i in range(1, n):
        s = steps[i]
        if isinstance(s, Linear):
            a, b = _interval(dense, state, i)
            m = _noise(dense.rounding[i], [magnitude(lo[k], hi[k]) for k in s.sources], dense.u)
            noise[i] = m
            if forward is not None:
                fa, fb = forward.linear(i, m)
                a, b = np.maximum(a, fa), np.minimum(b, fb)
            known = prior is not None and prior[0][i] is not None
            if known:  # the exact value is within the noise of the float one
                a, b = np.maximum(a, prior[0][i] - m), np.minimum(b, prior[1][i] + m)
            if not dense.net.first_layer(i) and i != dense.output and i != last:
                _tighten(state, i, a, b, None if settled is None or not known else settled < i)
            a, b = widen(a - m, b + m)
            if known:
                a, b = np.maximum(a, prior[0][i]), np.minimum(b, prior[1][i])
            if signs is not None and i in signs:
                sg = signs[i]
                a, b = np.where(sg > 0, np.maximum(a, 0.0), a), np.where(sg < 0, np.minimum(b, 0.0), b)
                state.empty |= (a > b).any(axis=1)
            lo[i], hi[i] = a, b
        elif isinstance(s, Activation):
            f, err = s.kind.function, s.kind.margin(lo[s.source], hi[s.source])
            lo[i], hi[i] = f(lo[s.source]) - err, f(hi[s.source]) + err
            if forward is not None:
                forward.activation(i)
    return state


class _Forward:
    """Linear lower and upper functions of the input for every step, carried forward (for networks with few inputs,
    where they cost ``inputs`` numbers per neuron): cheaper than back-substituting every hidden layer."""

    def __init__(self, state: BoxBounds) -> None:
        self.state = state
        n = state.net.steps[0].size
        eye = np.broadcast_to(np.eye(n), (state.size, n, n))
        zero = np.zeros((state.size, n))
        self.fn: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {0: (eye, zero, eye, zero)}

    def concrete(self, coef: np.ndarray, const: np.ndarray, lower: bool) -> np.ndarray:
        """The least (``lower``) or largest value over each box of ``coef @ x + const``."""
        st = self.state
        mid, rad = 0.5 * (st.lo[0] + st.hi[0]), 0.5 * (st.hi[0] - st.lo[0])
        centre = np.matmul(coef, mid[:, :, None])[:, :, 0] + const
        spread = np.matmul(np.abs(coef), rad[:, :, None])[:, :, 0]
        return centre - spread if lower else centre + spread

    def linear(self, i: int, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step ``i``'s functions (noise included) and its bounds over each box (noise excluded)."""
        dense = self.state.net
        s = dense.steps[i]
        lc, lk = 0.0, s.bias - noise
        uc, uk = 0.0, s.bias + noise
        for src, wp, wm in zip(s.sources, dense.plus[i], dense.minus[i]):
            Lc, Lk, Uc, Uk = self.fn[src]
            lc = lc + np.matmul(wp, Lc) + np.matmul(wm, Uc)
            uc = uc + np.matmul(wp, Uc) + np.matmul(wm, Lc)
            lk = lk + Lk @ wp.T + Uk @ wm.T
            uk = uk + Uk @ wp.T + Lk @ wm.T
        self.fn[i] = (lc, lk, uc, uk)
        return self.concrete(lc, lk, True) + noise, self.concrete(uc, uk, False) - noise

    def activation(self, i: int) -> None:
        """An activation's functions from its relaxation (its slopes are >= 0: the functions are monotone)."""
        st = self.state
        s = st.net.steps[i]
        a_lo, b_lo, a_up, b_up = s.kind.relax(st.lo[s.source], st.hi[s.source])
        Lc, Lk, Uc, Uk = self.fn[s.source]
        err = s.kind.margin(st.lo[s.source], st.hi[s.source])
        self.fn[i] = (Lc * a_lo[:, :, None], Lk * a_lo + b_lo - err, Uc * a_up[:, :, None], Uk * a_up + b_up + err)


def _tighten(state: BoxBounds, i: int, a: np.ndarray, b: np.ndarray, fresh: np.ndarray | None = None) -> None:
    """Back-substitute, per box (of the ``fresh`` ones: default all), the rows of Linear step ``i`` its bounds
    ``a``/``b`` leave worth tightening (the unstable ones when only ReLUs read it), in place; boxes in parts so that
    the coefficients fit ``BACKSUB_BYTES``."""
    dense = state.net
    s = dense.steps[i]
    todo = (a < 0) & (b > 0) if dense.net.piecewise_only[i] else np.ones_like(a, bool)
    if fresh is not None:
        todo &= fresh[:, None]
    live = np.flatnonzero(todo.any(axis=1))
    if not live.size:
        return
    R = int(todo.sum(axis=1).max())
    rows = np.argsort(~todo[live], axis=1, kind="stable")[:, :R]  # per box, its rows to tighten first
    per_part = max(1, BACKSUB_BYTES // (16 * R * max(t.size for t in dense.steps)))
    for start in range(0, live.size, per_part):
        # (every box live: slices, whose bounds are views; else the live boxes' indices)
        part = slice(start, start + per_part) if live.size == state.size else live[start: start + per_part]
        r = rows[start: start + per_part]
        coef = {src: np.concatenate([w[r], -w[r]], axis=1)  # (rows in the coefficients' type where they are exact)
                for src, w in zip(s.sources, dense.weights_c[i] if dense.exact_c(i) else dense.weights[i])}
        const = np.concatenate([s.bias[r], -s.bias[r]], axis=1)
        low, _ = lower_bound(state.boxes(part), i - 1, coef, const, inputs=False)
        keep = np.take_along_axis(todo[part], r, axis=1)
        for side, new in ((a, low[:, :R]), (b, -low[:, R:])):
            rows_now = side[part]
            old = np.take_along_axis(rows_now, r, axis=1)
            better = np.maximum(old, new) if side is a else np.minimum(old, new)
            np.put_along_axis(rows_now, r, np.where(keep, better, old), axis=1)
            side[part] = rows_now


def objective(state: BoxBounds, coef: np.ndarray, bound: np.ndarray, record: dict[int, np.ndarray] | None = None,
              start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds ``(B, M)`` of ``coef @ y − bound`` (``coef`` ``(M, outputs)``, or ``(B, M, outputs)`` per box)
    over each box, and the input coefficients ``(B, M, inputs)`` of the linear lower bound they come from; +inf for
    infeasible branches. ``record`` receives, per activation step, the coefficients ``(B, M, size)`` the bound has on
    its output. ``start``: the step ``y`` is (default the output)."""
    start = state.net.output if start is None else start
    low, A = lower_bound(state, start, {start: coef}, -np.asarray(bound, np.float64), record=record)
    return _final(state, low), A


def _final(state: BoxBounds, low: np.ndarray) -> np.ndarray:
    """Objective bounds widened by the analysis margin; +inf for infeasible branches."""
    low = low - (MARGIN_REL * np.abs(low) + MARGIN_ABS)
    low[state.empty] = np.inf
    return low


def lower_bound(state: BoxBounds, start: int, coef: dict[int, np.ndarray], const: np.ndarray, inputs: bool = True,
                record: dict[int, np.ndarray] | None = None, slopes: dict[int, np.ndarray] | None = None,
                betas: dict[int, np.ndarray] | None = None, tape: list | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Per box and row, a lower bound over the box of ``const + Σ coef[k] @ x[k]`` (``k <= start``; coefficients
    ``(R, size)`` shared by every box or ``(B, R, size)``, ``const`` ``(R,)`` or ``(B, R)``), and (``inputs``) the
    input coefficients of the bound; ``record`` (``objective``'s) keeps the coefficients on each activation.
    ``slopes[k]`` ``(B, R, size)`` replace activation ``k``'s lower slopes; ``betas[i]`` are added to the
    coefficients on Linear step ``i`` (split constraints' multipliers, ``optimized_objective``); ``tape`` records
    each step's coefficients for the adjoint. The coefficients are in ``dense.dtype``; each step adds what its
    constant parts give, less what the roundings can have changed (``_terms``), in float64.

    Through a Linear step, ``L·(W x + b) = L·(W c + b) + fl(L W)·(x − c) + (L W − fl(L W))·(x − c)`` with ``c`` the
    centre of the source's bounds: the first term is exact, the second is the source's coefficient (its ``−fl(L W)·c``
    taken where the source's coefficient is, when every reader of the source is a Linear step: ``DenseNetwork.centred``)
    and the rounding only meets the source's spread around its centre, not its size."""
    dense, B = state.net, state.size
    coef = dict(coef)
    total = np.broadcast_to(const, (B, const.shape[-1])).astype(np.float64)
    for k, L in coef.items():  # (a centred step's centre part is taken off with its whole coefficient: add it here)
        if k != start and dense.centred[k]:
            total += per_box(np.asarray(L, np.float64), 0.5 * (state.lo[k] + state.hi[k]))
    A = None
    for k in range(start, -1, -1):
        L = coef.pop(k, None)
        if L is None:
            continue
        s = dense.steps[k]
        if betas is not None and k in betas:  # (split steps are read by their activation: never centred)
            L = L + betas[k]
        L = L.astype(dense.dtype, copy=False)  # (at most one rounding: within the step's terms)
        free = slopes is not None and k in slopes
        step = _terms(state, k, free, k != start and dense.centred[k])
        if isinstance(s, Activation):
            if record is not None:
                record[k] = np.broadcast_to(L, (B,) + L.shape[-2:])
            neg = np.minimum(L, 0.0, dtype=dense.dtype)
            pos = L - neg
            a_lo, a_up = step.slopes
            _add(coef, s.source, pos * (slopes[k] if free else a_lo) + neg * a_up)
            total += per_box(pos, step.along) + per_box(neg, step.across) - step.tiny[:, None]
        elif isinstance(s, Linear):
            for src, w, centre in zip(s.sources, dense.weights_c[k], step.centres):
                C = L @ w
                if not dense.centred[src]:  # (else taken with the source's coefficient)
                    total -= per_box(C, centre)
                _add(coef, src, C)
        else:
            assert isinstance(s, Input)
            A = np.array(np.broadcast_to(L, (B,) + L.shape[-2:])) if inputs else None
        if not isinstance(s, Activation):
            exact = L.astype(np.float64, copy=False)
            if step.along is not None:
                total += per_box(exact, step.along)
            total += per_box(np.abs(exact), step.across) - step.tiny[:, None]
        if tape is not None:
            tape.append((k, L))
    return np.where(np.isnan(total), -np.inf, total), A


@dataclass
class _Step:
    """What ``lower_bound`` needs of one step (``_terms``): a coefficient row ``L`` on it adds at least
    ``L @ along + |L| @ across − tiny`` (``(B, size)``, ``(B, size)``, ``(B,)``; an activation: ``L⁺ @ along + L⁻ @
    across − tiny``), however ``L`` and the products it makes were rounded; an activation's slopes (lower, upper:
    ``(B, 1, size)`` in ``dense.dtype``) and intercepts, a Linear step's sources' centres."""

    along: np.ndarray | None
    across: np.ndarray
    tiny: np.ndarray
    slopes: tuple[np.ndarray, np.ndarray] | None = None
    intercepts: tuple[np.ndarray, np.ndarray] | None = None
    centres: list[np.ndarray] | None = None


def _terms(state: BoxBounds, k: int, free: bool, centred: bool) -> _Step:
    """Step ``k``'s ``_Step`` (cached per state). ``along``: the constant part (Input: the box's centre; Linear: the
    bias and ``W·c`` of its sources' centres; Activation: the lower line's intercept, and ``across`` the upper's),
    less the step's own centre where ``centred``. ``across`` (an activation: what is added to the intercepts): minus
    what ``|L|`` can lose — the value's spread around the constant (Input: the box's radius; Linear: the float
    network's rounding noise); ``L``'s own rounding (``rounding.cast_slack``: one cast, or the split multipliers
    added); the next coefficients' (Linear: the products with the weights against the sources' spread,
    ``rounding.product_slack``; Activation: two roundings of each slope product, ``2u·|slope|`` on the source's
    values; ``free``: the optimised slopes' range). ``tiny``: underflow."""
    key = (k, free, centred)
    if key in state.terms:
        return state.terms[key]
    dense, s = state.net, state.net.steps[k]
    lo, hi = state.lo, state.hi
    ext, tiny = cast_slack(magnitude(lo[k], hi[k]), dense.dtype)
    step = _Step(None, ext, tiny)
    if isinstance(s, Input):
        step.along, step.across = 0.5 * (lo[0] + hi[0]), -(ext + 0.5 * (hi[0] - lo[0]))
    elif isinstance(s, Linear):
        step.along, ext, step.centres = s.bias, ext + state.noise[k], []
        for src, w, wc, err in zip(s.sources, dense.weights[k], dense.weights_c[k], dense.cast_error[k]):
            centre = 0.5 * (lo[src] + hi[src])
            more, more_tiny = product_slack(wc, err, 0.5 * (hi[src] - lo[src]), s.size)
            ext, step.tiny = ext + more, step.tiny + more_tiny
            step.centres.append(centre)
            step.along = step.along + centre @ w.T
        step.across = -ext
    else:
        assert isinstance(s, Activation)
        a_lo, b_lo, a_up, b_up = _relaxation(state, s)
        steepest = np.maximum(np.abs(a_lo), np.abs(a_up))
        if free:
            unstable = (lo[s.source] < 0) & (hi[s.source] > 0)
            steepest = np.where(unstable, np.maximum(steepest, max(abs(v) for v in s.slopes)), steepest)
        source = magnitude(lo[s.source], hi[s.source])
        ext = ext + 2.01 * unit_roundoff(dense.dtype) * steepest * source
        step.tiny = tiny + 2 * TINY[dense.dtype] * source.sum(axis=-1)  # (each slope product's underflow)
        step.along, step.across = b_lo - ext, b_up + ext  # (for L⁺ and L⁻)
        step.slopes = a_lo.astype(dense.dtype)[:, None, :], a_up.astype(dense.dtype)[:, None, :]
        step.intercepts = b_lo.astype(dense.dtype)[:, None, :], b_up.astype(dense.dtype)[:, None, :]
    if centred:  # (an activation: both sides')
        centre = 0.5 * (lo[k] + hi[k])
        step.along = step.along - centre
        if isinstance(s, Activation):
            step.across = step.across - centre
    if step.along is not None and not step.along.any() and not isinstance(s, Activation):
        step.along = None
    state.terms[key] = step
    return step


def _relaxation(state: BoxBounds, s: Activation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Activation ``s``'s relaxation per box, widened by onnxruntime's error for its function."""
    a_lo, b_lo, a_up, b_up = s.kind.relax(state.lo[s.source], state.hi[s.source])
    err = s.kind.margin(state.lo[s.source], state.hi[s.source])
    return a_lo, b_lo - err, a_up, b_up + err


def optimized_objective(state: BoxBounds, coef: np.ndarray, bound: np.ndarray, signs: dict[int, np.ndarray],
                        steps: int, start: int | None = None, until: Callable[[], bool] = lambda: False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``objective`` with the lower slopes of the unstable piecewise-linear activations (α-CROWN) and multipliers of
    the branch's sign constraints (β-CROWN: ``β·(−sign·z) <= 0`` added where ``z`` is fixed to ``sign``) optimised
    per box and row by ``steps`` Adam steps on the bound, its gradient from the adjoint of the back-substitution.
    Every slope between the activation's two (ReLU: [0, 1]) and every multiplier >= 0 gives a sound bound; the best
    seen per box and row is kept.
    ``start``: the step ``coef`` weighs (default the output; the slopes and sign constraints after it are unused).
    No step starts once ``until()`` (a deadline: the best bound so far holds)."""
    dense, B, M = state.net, state.size, len(bound)
    start = dense.output if start is None else start
    signs = {i: sg for i, sg in signs.items() if i < start}
    const = -np.asarray(bound, np.float64)
    free: dict[int, np.ndarray] = {}
    slopes: dict[int, np.ndarray] = {}  # (in the coefficients' type: their products stay in it)
    for k, s in enumerate(dense.steps[:start]):
        if isinstance(s, Activation) and s.slopes is not None:
            lo, hi = state.lo[s.source], state.hi[s.source]
            unstable = (lo < 0) & (hi > 0)
            if unstable.any():
                free[k] = np.broadcast_to(unstable[:, None, :], (B, M, lo.shape[1]))
                lower = _terms(state, k, False, dense.centred[k]).slopes[0]  # (lower_bound's key: one entry)
                slopes[k] = np.broadcast_to(lower, (B, M, lo.shape[1])).copy()
    fixed = {i: np.broadcast_to(-sg[:, None, :].astype(dense.dtype), (B, M, sg.shape[1])) for i, sg in signs.items()
             if sg.any()}
    betas = {i: np.zeros((B, M, f.shape[2]), dense.dtype) for i, f in fixed.items()}
    adam = Adam(list(slopes.values()) + list(betas.values()))
    best, best_A = np.full((B, M), -np.inf), None
    for t in range(steps + 1):
        tape: list = []
        low, A = lower_bound(state, start, {start: coef}, const, slopes=slopes,
                             betas={i: betas[i] * fixed[i] for i in betas}, tape=tape)
        better = low > best
        best = np.where(better, low, best)
        best_A = A.copy() if best_A is None else np.where(better[:, :, None], A, best_A)
        if t == steps or not (slopes or betas) or until():
            break
        G = _adjoint(state, tape, slopes)
        grads = [G[dense.steps[k].source] * np.maximum(dict(tape)[k], 0.0) * free[k] for k in slopes]
        grads += [G[i] * fixed[i] for i in betas]
        adam.ascend(grads)
        for k in slopes:
            np.clip(slopes[k], *dense.steps[k].slopes, out=slopes[k])
        for i in betas:
            np.clip(betas[i], 0.0, None, out=betas[i])
            betas[i] *= fixed[i] != 0
    return _final(state, best), best_A


def optimized_hidden(state: BoxBounds, signs: dict[int, np.ndarray], steps: int, layers: list[int],
                     after: np.ndarray, until: Callable[[], bool] = lambda: False) -> BoxBounds:
    """``state`` with the unstable rows of each of ``layers`` (hidden Linear steps, first to last) bounded by
    ``optimized_objective`` (their slopes and the branch's sign multipliers, ``steps`` Adam steps), each layer's
    tighter bounds used by the next (``analyse`` again after it): the sign constraints tighten the hidden bounds too
    (β-CROWN's), and a branch whose constraints contradict one another comes out empty (nothing to prove on it).
    ``after`` ``(B,)``: per box, the last step whose bounds are optimised already (a split there changes only the
    steps after it). No layer or Adam step starts once ``until()`` (the bounds so far are sound)."""
    dense = state.net
    lower, upper = state.lo[0], state.hi[0]
    for i in layers:
        lo, hi = state.lo[i], state.hi[i]
        unstable = (lo < 0) & (hi > 0) & (after < i)[:, None]
        R = int(unstable.sum(axis=1).max(initial=0))
        if R == 0:
            continue
        if until():
            break
        rows = np.argsort(~unstable, axis=1, kind="stable")[:, :R]  # per box, its unstable rows first
        coef = np.zeros((state.size, 2 * R, lo.shape[1]), dense.dtype)
        np.put_along_axis(coef[:, :R], rows[:, :, None], 1, axis=2)
        np.put_along_axis(coef[:, R:], rows[:, :, None], -1, axis=2)
        low, _ = optimized_objective(state, coef, np.zeros(2 * R), signs, steps, start=i, until=until)
        keep = np.take_along_axis(unstable, rows, axis=1) & ~state.empty[:, None]  # (an empty box's bound is +inf)
        for side, new in ((lo, low[:, :R]), (hi, -low[:, R:])):
            old = np.take_along_axis(side, rows, axis=1)
            tighter = np.maximum(old, new) if side is lo else np.minimum(old, new)
            np.put_along_axis(side, rows, np.where(keep, tighter, old), axis=1)
        empty = state.empty | (lo > hi).any(axis=1)
        prior = [[bounds[k] if k in layers else None for k in range(len(bounds))] for bounds in (state.lo, state.hi)]
        state = analyse(dense, lower, upper, signs, prior=(prior[0], prior[1]), settled=np.full(state.size, i))
        state.empty |= empty
    return state


def _adjoint(state: BoxBounds, tape: list, slopes: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Per step on the tape, the gradient of the bound with respect to that step's coefficients ``(B, R, size)``:
    the back-substitution run forward (sources before consumers), in the coefficients' type (it only steers the
    slopes)."""
    dense, dt = state.net, state.net.dtype
    G: dict[int, np.ndarray] = {}
    for k, L in reversed(tape):
        s = dense.steps[k]
        if isinstance(s, Input):
            mid, rad = 0.5 * (state.lo[0] + state.hi[0]), 0.5 * (state.hi[0] - state.lo[0])
            G[k] = mid[:, None, :].astype(dt) - np.sign(L) * rad[:, None, :].astype(dt)
        elif isinstance(s, Linear):
            g = s.bias.astype(dt) - np.sign(L) * state.noise[k][:, None, :].astype(dt)
            for src, w in zip(s.sources, dense.weights_c[k]):
                g = g + G[src] @ w.T
            G[k] = g
        else:
            step = _terms(state, k, False, dense.centred[k])  # (the key lower_bound used: no second entry)
            a_lo, a_up = step.slopes
            b_lo, b_up = step.intercepts
            a_lo = slopes[k] if k in slopes else a_lo
            positive = (L > 0).astype(dt)
            G[k] = G[s.source] * (a_up + positive * (a_lo - a_up)) + b_up + positive * (b_lo - b_up)
    return G


class Adam:
    """Adam ascent on a list of arrays, in place (β-CROWN's optimiser of slopes and multipliers)."""

    def __init__(self, params: list[np.ndarray], lr: float = 0.1, b1: float = 0.9, b2: float = 0.999) -> None:
        self.params, self.lr, self.b1, self.b2, self.t = params, lr, b1, b2, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def ascend(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        for p, m, v, g in zip(self.params, self.m, self.v, grads):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p += self.lr * (m / (1 - self.b1 ** self.t)) / (np.sqrt(v / (1 - self.b2 ** self.t)) + 1e-12)


def per_box(L: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per box ``b``: ``L[b] @ v[b]``; shared coefficients ``L`` ``(R, size)`` or a shared ``v`` ``(size,)`` too."""
    if v.ndim == 1:
        return L @ v
    if L.ndim == 2:
        return v @ L.T
    return np.matmul(L, v[:, :, None])[:, :, 0]


def _add(coef: dict[int, np.ndarray], k: int, M: np.ndarray) -> None:
    """``coef[k] += M``, a sum of several in float64 (rounded once, where it is used: ``lower_bound``)."""
    coef[k] = coef[k].astype(np.float64) + M if k in coef else M


def _interval(dense: DenseNetwork, state: BoxBounds, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of Linear step ``i``'s exact value from its sources' bounds."""
    s = dense.steps[i]
    lo = np.broadcast_to(s.bias, (state.size, s.size)).copy()
    hi = lo.copy()
    for src, wp, wm in zip(s.sources, dense.plus[i], dense.minus[i]):
        lo += state.lo[src] @ wp.T + state.hi[src] @ wm.T
        hi += state.hi[src] @ wp.T + state.lo[src] @ wm.T
    return lo, hi


def _dense_rounding(r: Rounding, what: str) -> Rounding:
    return Rounding([dense_weights(w, what) for w in r.weights], r.bias, r.depth)


def _noise(r: Rounding, magnitudes: list[np.ndarray], u: float) -> np.ndarray:
    """``Rounding.noise`` for ``(B, size)`` magnitudes of the sources."""
    total = r.bias + sum(m @ w.T for w, m in zip(r.weights, magnitudes))
    return np.where(total > 0, gamma(r.depth, u) * total, 0.0)
