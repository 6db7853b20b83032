"""MILP bounds: the exact big-M encoding on HiGHS, one solve per output (and optionally per neuron).

The big-M constants are the best bounds already known (symbolic or LP), so the encoding is
exact. Each bound is HiGHS's proven dual bound, never a primal value: on a time-out it is still
sound, only not tight, and the result is marked not exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .encoding import Encoder
from .network import Linear
from .result import Progress, State


def milp(state: State, time_limit: float, neurons: bool = False,
         progress: Progress | None = None) -> tuple[bool, dict[str, Any]]:
    """Tighten the outputs of ``state`` (and with ``neurons`` every unstable ReLU input) by MILP, in place.

    Returns whether every output bound is exact (MIP gap closed) and per-output details.
    """
    net = state.net
    enc = Encoder(state, integer=True, time_limit=time_limit)
    work = [i for i, s in enumerate(net.steps)
            if i == net.output or (neurons and isinstance(s, Linear) and not net.first_layer(i))]
    total = 2 * sum(net.rows_to_tighten(i, state.lo[i], state.hi[i]).size for i in work)
    done = 0
    exact = np.zeros((2, net.steps[net.output].size), dtype=bool)
    for i, s in enumerate(net.steps):
        if i and not isinstance(s, Linear):
            state.propagate_nonlinear(i)
        enc.add(i)
        if i not in work:
            continue
        lo, hi = state.lo[i].copy(), state.hi[i].copy()
        for j in net.rows_to_tighten(i, lo, hi):
            col = enc.col[i] + int(j)
            b, closed_lo = enc.mip_min(col, 1.0)
            lo[j] = max(lo[j], b)
            b, closed_hi = enc.mip_min(col, -1.0)
            hi[j] = min(hi[j], -b)
            if i == net.output:
                exact[:, j] = closed_lo, closed_hi
            done += 2
            if progress:
                progress(done, total)
        state.set_linear(i, lo, hi)
        enc.set_bounds(i)
    return bool(exact.all()), {"exact_outputs": {"lower": exact[0].tolist(), "upper": exact[1].tolist()}}
