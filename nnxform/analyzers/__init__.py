"""Sound bounds of a network over an input box: ``bounds(model, box, method)``.

Methods, cheapest first: ``interval``, ``symbolic`` (CROWN/DeepPoly back-substitution),
``lp`` (triangle relaxation on HiGHS) and ``milp`` (exact big-M on HiGHS). Each method starts
from the bounds of the ones before it, so its bounds are never looser than theirs.
"""

from __future__ import annotations

import time

from ..domain import Box
from ..errors import NnxformError
from ..ir import Model
from . import interval, lp, milp, symbolic
from .network import Network, compile_model
from .result import Bounds, LayerBounds, Progress, State, finish

METHODS = ("interval", "symbolic", "lp", "milp")


def bounds(model: Model | Network, domain: Box, method: str = "symbolic", *, seed: Bounds | None = None,
           time_limit: float = 60.0, neurons: bool = False, progress: Progress | None = None) -> Bounds:
    """Bounds of every nonlinear node's input and of the output of ``model`` over ``domain``.

    ``seed``: bounds of a cheaper method on the same compiled Network to start from (else the
    chain of cheaper methods runs first). ``time_limit``: seconds per LP or MILP solve. ``neurons``:
    with ``milp``, also tighten every unstable ReLU's bounds by MILP (else only the outputs).
    ``progress(done, total)`` is called as ``lp``/``milp`` solve problems.
    """
    if method not in METHODS:
        raise NnxformError(f"unknown bounds method '{method}'; choose one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    net = model if isinstance(model, Network) else compile_model(model)
    t1 = time.perf_counter()
    domain.fit(net.input_size)
    if seed is not None:
        if seed.state.net is not net:
            raise NnxformError("seed bounds were computed on another network")
        if METHODS.index(seed.method) > METHODS.index(method):
            raise NnxformError(f"cannot seed '{method}' with the tighter '{seed.method}' bounds")
        state, done = seed.state.copy(), METHODS.index(seed.method) + 1
    else:
        state, done = State.start(net, domain), 0
    details: dict = {}
    exact = False
    for m in METHODS[done: METHODS.index(method) + 1]:
        if m == "interval":
            interval.interval(state)
        elif m == "symbolic":
            symbolic.symbolic(state)
        elif m == "lp":
            lp.lp(state, time_limit=time_limit, progress=progress)
        else:
            exact, details = milp.milp(state, time_limit=time_limit, neurons=neurons, progress=progress)
    t2 = time.perf_counter()
    return finish(state, method, t2 - t1, exact, compile_seconds=t1 - t0, **details)


__all__ = ["METHODS", "Bounds", "LayerBounds", "Network", "bounds", "compile_model"]
