"""MILP bounds: the exact big-M encoding on HiGHS, one solve per output (and optionally per neuron).

The big-M constants are the best bounds already known (symbolic or LP), so the encoding is
exact. Each bound is HiGHS's proven dual bound, never a primal value: on a time-out it is still
sound, only not tight, and the result is marked not exact. HiGHS's tolerances are absolute
(1e-6 on integrality, 1e-7 on feasibility), so on a network whose values reach ``MAX_MAGNITUDE``
its MIP bound is not trusted at all (measured: off by 7e11 on values of 1e11): the LP bound
(rigorous weak duality) is given instead, and the result says so. Each solution's input is kept
(``details["points"]``) so that callers can replay it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import lp as lp_bounds
from ..stopping import Deadline
from .encoding import Encoder
from .network import Linear
from .result import Progress, State

#: Largest column magnitude at which HiGHS's absolute tolerances still give a trustworthy MIP dual bound.
MAX_MAGNITUDE = 1e6


def beyond_solver(*states: State) -> str:
    """Why a MILP solver's bound or infeasibility proof is not to be trusted on these bounds ('' when it is):
    values beyond ``MAX_MAGNITUDE``, which its absolute tolerances cannot resolve."""
    largest = max(float(np.max(np.abs(np.concatenate([lo, hi])), initial=0.0))
                  for s in states for lo, hi in zip(s.lo, s.hi) if lo is not None)
    if largest <= MAX_MAGNITUDE:
        return ""
    return (f"values reach {largest:.3g} on this box, beyond what the MILP solver's absolute tolerances resolve "
            f"(MAX_MAGNITUDE {MAX_MAGNITUDE:g})")


def milp(state: State, time_limit: float, neurons: bool = False, progress: Progress | None = None,
         deadline: Deadline | None = None, solver: str = "highs") -> tuple[bool, dict[str, Any]]:
    """Tighten the outputs of ``state`` (and with ``neurons`` every unstable ReLU input) by MILP, in place.

    Returns whether every output bound is exact (MIP gap closed) and per-output details.
    """
    net = state.net
    too_large = beyond_solver(state)
    if too_large:
        lp_bounds.lp(state, time_limit=time_limit, progress=progress, deadline=deadline)
        return False, {"note": f"{too_large}: LP bounds instead, not exact"}
    enc = Encoder(state, integer=True, time_limit=time_limit, deadline=deadline, solver=solver)
    work = [i for i, s in enumerate(net.steps)
            if i == net.output or (neurons and isinstance(s, Linear) and not net.first_layer(i))]
    total = 2 * sum(net.rows_to_tighten(i, state.lo[i], state.hi[i]).size for i in work)
    done = 0
    exact = np.zeros((2, net.steps[net.output].size), dtype=bool)
    points: list[list[float] | None] = []  # per output and side (lower, upper): the solution's input
    for i, s in enumerate(net.steps):
        if i and not isinstance(s, Linear):
            state.propagate_nonlinear(i)
        enc.add(i)
        if i not in work:
            continue
        lo, hi = state.lo[i].copy(), state.hi[i].copy()
        for j in net.rows_to_tighten(i, lo, hi):
            if deadline is not None and deadline.passed():
                points += [None, None] if i == net.output else []
                continue
            col = enc.col[i] + int(j)
            b, closed_lo = enc.mip_min(col, 1.0)
            x_lo = enc.input_solution() if i == net.output else None
            lo[j] = max(lo[j], b)
            b, closed_hi = enc.mip_min(col, -1.0)
            hi[j] = min(hi[j], -b)
            if i == net.output:
                exact[:, j] = closed_lo, closed_hi
                points += [x_lo, enc.input_solution()]
            done += 2
            if progress:
                progress(done, total)
        state.set_linear(i, lo, hi)
        enc.set_bounds(i)
    return bool(exact.all()), {"exact_outputs": {"lower": exact[0].tolist(), "upper": exact[1].tolist()},
                               "points": points}
