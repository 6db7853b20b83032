"""LP bounds: the triangle relaxation of every unstable ReLU, solved layer by layer on HiGHS.

One HiGHS model grows step by step. When a Linear step is added, each of its neurons not yet
proven stable is minimised and maximised by swapping the objective (the basis is kept, so each
solve is a warm start); the new bounds then tighten the relaxation of the next ReLU. Every bound
is HiGHS's dual solution turned into a rigorous weak-duality bound, never the primal value.
"""

from __future__ import annotations

from ..stopping import Deadline
from .encoding import Encoder
from .network import Linear
from .result import Progress, State


def lp(state: State, time_limit: float | None = None, progress: Progress | None = None,
       deadline: Deadline | None = None) -> State:
    """Tighten ``state`` (seeded by symbolic) with LP bounds, in place; past ``deadline`` the rest keep their bounds."""
    net = state.net
    enc = Encoder(state, integer=False, time_limit=time_limit, deadline=deadline)
    work = [i for i, s in enumerate(net.steps) if isinstance(s, Linear) and not net.first_layer(i)]
    total = 2 * sum(net.rows_to_tighten(i, state.lo[i], state.hi[i]).size for i in work)
    done = 0
    for i, s in enumerate(net.steps):
        if i in work:
            enc.add(i)
            lo, hi = state.lo[i].copy(), state.hi[i].copy()
            for j in net.rows_to_tighten(i, lo, hi):
                if deadline is not None and deadline.passed():
                    break
                col = enc.col[i] + int(j)
                lo[j] = max(lo[j], enc.lp_min(col, 1.0))
                if not (net.piecewise_only[i] and lo[j] >= 0):
                    hi[j] = min(hi[j], -enc.lp_min(col, -1.0))
                done += 2
                if progress:
                    progress(min(done, total), total)
            state.set_linear(i, lo, hi)
            enc.set_bounds(i)
        else:
            if not isinstance(s, Linear) and i:
                state.propagate_nonlinear(i)
            enc.add(i)
    if progress:
        progress(total, total)
    return state
