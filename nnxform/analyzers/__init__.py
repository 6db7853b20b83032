"""Sound bounds of a network over an input box: ``bounds(model, box, method)``.

Methods, cheapest first: ``interval``, ``symbolic`` (CROWN/DeepPoly back-substitution),
``lp`` (triangle relaxation on HiGHS) and ``milp`` (exact big-M on HiGHS). Each method starts
from the bounds of the ones before it, so its bounds are never looser than theirs.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np

from .. import stopping
from ..domain import Box
from ..errors import NnxformError
from ..ir import Model
from . import interval, symbolic
from ..stopping import Deadline
from .network import Activation, CompiledNetwork, compile_model
from .result import Bounds, LayerBounds, Progress, State, finish

METHODS = ("interval", "symbolic", "lp", "milp")


def bounds(model: Model | CompiledNetwork, domain: Box, method: str = "symbolic", *, seed: Bounds | None = None,
           time_limit: float = 60.0, neurons: bool = False, progress: Progress | None = None,
           total_time: float | None = None, solver: str = "highs", slope_steps: int = symbolic.SLOPE_STEPS,
           hidden_steps: int = 0) -> Bounds:
    """Bounds of every nonlinear node's input and of the output of ``model`` over ``domain``.

    ``seed``: bounds of a cheaper method on the same CompiledNetwork to start from (else the
    chain of cheaper methods runs first). ``time_limit``: seconds per LP or MILP solve. ``neurons``:
    with ``milp``, also tighten every unstable ReLU's bounds by MILP (else only the outputs).
    ``progress(done, total)`` is called as ``lp``/``milp`` solve problems. ``total_time``: seconds for the symbolic
    back-substitution and all the solves together; past it the bounds not yet tightened keep the cheaper method's
    (sound) bounds, the output is still back-substituted, and the result says so (``details["time_limit_reached"]``). ``solver``: the MILP solver (``solvers.SOLVERS``;
    HiGHS through its own matrices by default). ``slope_steps``: symbolic's Adam steps on the output's ReLU slopes
    (α-CROWN's; 0 gives CROWN's bounds, about twice as fast on MNIST networks); ``hidden_steps``: as many on every
    hidden ReLU layer's bounds too (``symbolic.alpha_crown``: α-CROWN's bounds, slower; 0 leaves them CROWN's).
    """
    from . import lp, milp  # HiGHS and pulp load with the first bounds that may need them, not with the package
    from .solvers import check_solver

    if method not in METHODS:
        raise NnxformError(f"unknown bounds method '{method}'; choose one of {', '.join(METHODS)}")
    check_solver(solver)
    t0 = time.perf_counter()
    net = model if isinstance(model, CompiledNetwork) else compile_model(model)
    if method in ("lp", "milp"):
        other = next((s for s in net.steps if isinstance(s, Activation) and s.slopes is None), None)
        if other is not None:
            raise NnxformError(f"{other.op} node '{other.node}' is not supported by '{method}' (piecewise-linear "
                               "activations and MaxPool only); use interval or symbolic")
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
    deadline = None if total_time is None else Deadline(total_time)
    with stopping.honoured() if deadline is not None else nullcontext():  # SIGTERM ends it as its time limit
        for m in METHODS[done: METHODS.index(method) + 1]:
            if m == "interval":
                interval.interval(state)
            elif m == "symbolic":
                symbolic.symbolic(state, deadline, slope_steps)
                details.update(slope_steps=slope_steps, hidden_steps=hidden_steps)  # (what --json records)
                if hidden_steps:
                    symbolic.alpha_crown(state, hidden_steps, slope_steps,
                                         until=lambda: deadline is not None and deadline.passed())
            elif m == "lp":
                lp.lp(state, time_limit=time_limit, progress=progress, deadline=deadline)
            else:
                exact, details = milp.milp(state, time_limit=time_limit, neurons=neurons, progress=progress,
                                           deadline=deadline, solver=solver)
                if exact and isinstance(model, Model):
                    exact = _replayed(model, state, details)
                details.pop("points", None)
    if deadline is not None and deadline.reached:
        exact = False
        details["time_limit_reached"] = True
    t2 = time.perf_counter()
    return finish(state, method, t2 - t1, exact, compile_seconds=t1 - t0, **details)


def _replayed(model: Model, state: State, details: dict) -> bool:
    """Whether every MILP solution, run in onnxruntime, reaches the bound it claims exact (within what the
    network's rounding noise can move the output, and the solver's gap); widens a bound a replayed output
    falls outside of (never expected)."""
    from ..runtime import OnnxRunner  # the one place an analyzer runs onnxruntime

    net = state.net
    points = details.pop("points")
    claimed = details["exact_outputs"]
    if any(p is None for p in points):
        claimed["lower"], claimed["upper"] = [False] * len(claimed["lower"]), [False] * len(claimed["upper"])
        return False
    ys = OnnxRunner(model)(np.clip(np.array(points), state.box.lower, state.box.upper)).astype(np.float64)
    lo, hi = state.lo[net.output], state.hi[net.output]
    noise = _noise_effect(net, state.box)
    for j in range(lo.size):
        y_lo, y_hi = ys[2 * j, j], ys[2 * j + 1, j]
        tol = noise[j] + 1e-4 * (1.0 + abs(lo[j]) + abs(hi[j]))
        claimed["lower"][j] = bool(claimed["lower"][j] and lo[j] <= y_lo <= lo[j] + tol)
        claimed["upper"][j] = bool(claimed["upper"][j] and hi[j] - tol <= y_hi <= hi[j])
        lo[j], hi[j] = min(lo[j], y_lo), max(hi[j], y_hi)
    return all(claimed["lower"]) and all(claimed["upper"])


def _noise_effect(net: CompiledNetwork, box: Box) -> np.ndarray:
    """How far the rounding noise of every step can move each output: symbolic widths of the float network
    less those of the real-valued one (the MILP's optimum over the noisy model lies that far from a real input's)."""
    real = symbolic.symbolic(interval.interval(State.start(net, box, real=True)))
    noisy = symbolic.symbolic(interval.interval(State.start(net, box)))
    i = net.output
    return np.maximum((noisy.hi[i] - noisy.lo[i]) - (real.hi[i] - real.lo[i]), 0.0)


__all__ = ["METHODS", "Bounds", "LayerBounds", "CompiledNetwork", "bounds", "compile_model"]
