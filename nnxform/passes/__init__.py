"""Graph-rewrite passes. Each module holds one pass; the registry maps names to them.

A pass takes a Model (never mutated) and keyword parameters, and returns a new Model and a
PassReport saying what it changed. Function-preserving passes are checked against their input
by ``nnxform.exactness`` before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..exactness import ensure_same_function
from ..ir import Model


@dataclass
class PassReport:
    """What a pass did: its name, one line per change, and counters (e.g. ``{"folded": 3}``)."""

    name: str
    changes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, counter: str, line: str) -> None:
        self.counts[counter] = self.counts.get(counter, 0) + 1
        self.changes.append(line)

    def extend(self, other: "PassReport") -> None:
        self.changes.extend(other.changes)
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v


Pass = Callable[..., tuple[Model, PassReport]]
PASSES: dict[str, Pass] = {}


def register(name: str) -> Callable[[Pass], Pass]:
    """Class the decorated function as the pass called ``name``."""

    def deco(fn: Pass) -> Pass:
        PASSES[name] = fn
        return fn

    return deco


def apply_checked(name: str, model: Model, box=None, samples: int = 1000, tol: float = 1e-5,
                  parameters: dict | None = None, **pass_parameters):
    """Run the function-preserving pass ``name`` (with ``pass_parameters``), check the result in
    onnxruntime on ``box`` (default box when None), and stamp its provenance (``parameters`` plus
    the pass parameters). Raises NotExact beyond ``tol``.

    Returns ``(model, report, comparison)``.
    """
    result, report = PASSES[name](model, **pass_parameters)
    comparison = ensure_same_function(model, result, box, what=name, samples=samples, atol=tol, rtol=tol)
    result.with_provenance(name, dict(parameters or {}, **pass_parameters, tol=tol, samples=samples))
    return result, report, comparison


# Registering the passes: each module adds itself to PASSES.
from . import canonicalize, elementwise, fold_batchnorm, gemm, pad, remove_identity, reshapes  # noqa: E402,F401
