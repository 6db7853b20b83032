"""A row's key figures, read from the report its command wrote with ``--json``: the few numbers a results table
shows (sizes before and after, bound widths, stable counts, sat/unsat), never timings, so the same rows give the
same table whichever engine ran them."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Figures = dict[str, Any]


def _get(report: dict, path: str) -> Any:
    """``report``'s value at a dotted ``path`` (None where any step is missing)."""
    value: Any = report
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return value


def _picked(report: dict, paths: dict[str, str]) -> Figures:
    return {column: _get(report, path) for column, path in paths.items()}


def _bounds(report: dict) -> Figures:
    out = report.get("output") or {}
    width = float(np.sum(np.subtract(out.get("upper", []), out.get("lower", []))))
    return {"width_sum": width, **_picked(report, {"active": "stable.active", "inactive": "stable.inactive",
                                                   "unstable": "stable.unstable", "exact": "exact"})}


def _rewrite(report: dict) -> Figures:
    return {"nodes_before": sum((report.get("operators_before") or {}).values()),
            "nodes_after": sum((report.get("operators_after") or {}).values()),
            **_picked(report, {"max_abs": "check.max_abs"})}


_SIZES = {"neurons_before": "before.neurons", "neurons_after": "after.neurons",
          "connections_before": "before.connections", "connections_after": "after.connections"}

_FIGURES: dict[str, Callable[[dict], Figures]] = {
    "bounds": _bounds,
    "canon": _rewrite,
    "fold-bn": _rewrite,
    "pad": lambda r: {**_rewrite(r), **_picked(r, {"layers_before": "layers_before", "layers_after": "layers_after"})},
    "stable": lambda r: _picked(r, {"active": "totals.active", "inactive": "totals.inactive",
                                    "unstable": "totals.unstable", "undecided": "totals.undecided",
                                    "time_limit_reached": "time_limit_reached"}),
    "compress": lambda r: _picked(r, {**_SIZES, "max_abs": "check.max_abs", "certified_delta": "certificate.delta_max"}),
    "prune": lambda r: _picked(r, {**_SIZES, "impact_bound": "impact_bound"}),
    "quantize": lambda r: _picked(r, {"drift_bound": "drift_bound", "sampled_max": "sampled_max"}),
    "verify": lambda r: _picked(r, {"result": "answer", "branches": "branches", "proved_share": "proved_share"}),
}

#: Top-level report entries that are never key figures: timings, hashes and paths.
_NOT_FIGURES = ("seconds", "sha256", "model", "input", "output", "pass", "method")


def key_figures(command: str, report: dict) -> Figures:
    """The key figures of ``command``'s report; for a command without its own list, the report's top-level
    numbers, flags and words. A ``result`` (sat/unsat/unknown, as a verifier reports) is always kept."""
    pick = _FIGURES.get(command)
    if pick is not None:
        figures = pick(report)
    else:
        figures = {k: v for k, v in report.items()
                   if isinstance(v, (bool, int, float, str)) and not any(word in k for word in _NOT_FIGURES)}
    if isinstance(report.get("result"), str):
        figures["result"] = report["result"]
    return figures
