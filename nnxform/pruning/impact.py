"""The sound bound on how far a pruned network drifts from its original over a box.

``impact_bound(original, result, box)`` bounds ``max_x ‖f_pruned(x) − f(x)‖∞`` with the
discrepancy analysis of the two networks (``nnxform.discrepancy``), never with the estimate that
guides the saliency search. The analysis pairs the units of the two networks by position, so it
is given the pruned network in its aligned form (``PruneResult.aligned``: every kept unit at its
original index, removed units as zero units), the same function as the written network; paired
with the wrong units its bounds are needlessly loose (e.g. 0.44 instead of 0.0016 for mnist-net_256x2
with 10 % of its units removed, on prop_0_0.03).
"""

from __future__ import annotations

from typing import Any, Callable

from ..discrepancy import discrepancy
from ..domain import Box
from ..ir import Model
from . import PruneResult


def impact_bound(original: Model, result: PruneResult, box: Box, method: str = "symbolic", *,
                 time_limit: float = 60.0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``{"impact_bound": δ, "impact_method": …, "impact": {…}}``: δ ≥ max over ``box`` of ‖f_pruned − f‖∞.

    ``impact`` is the discrepancy of ``f_pruned − f``: per-output bounds, and the largest difference
    seen at a witness input (``found``, a proven lower bound of the true maximum); ``time_limit`` bounds the whole
    bound (past it the bounds not tightened keep the cheaper method's, still sound).
    """
    d = discrepancy(result.aligned, original, box.fit(original.input_size), method, time_limit=time_limit,
                    progress=progress, total_time=time_limit)
    return {"impact_bound": float(d.delta_max), "impact_method": d.method, "impact": d.to_json()}
