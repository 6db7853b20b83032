"""Graph-rewrite passes. Each module holds a pass (or two of one kind); the registry ``PASSES`` maps names to them.

A pass (``Pass``) takes a Model (never mutated) and keyword parameters, and returns a new Model and
a report saying what it changed (a PassReport). It declares the facts (``Fact``) it requires of its input and
ensures of its output: a pass requiring ``CANONICAL`` reads its input's canonical form through
``CANONICAL.establish``, which runs canon only when the input is not already canonical, so one command
canonicalises once. ``apply_checked`` is the one way a pass's result is written: run the pass, compare the result
in onnxruntime on the domain with its input (or with the reference a pass that changes the function must
compute), and stamp provenance.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from ..domain import Box
from ..errors import NnxformError
from ..exactness import ATOL, Comparison, Reference, ensure_same_function
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


@dataclass(frozen=True)
class Fact:
    """A property of a graph that passes require or ensure, known by a mark: the pass ``by`` establishes it and
    marks its result with the graph's fingerprint (``Model.marks``), so a mark holds only while the graph is the one
    marked. Any edit (by a pass, a tool or a user, through the IR's methods or not) changes the fingerprint and
    voids the mark; a copy keeps it, being the same graph."""

    name: str
    by: str  # the pass in PASSES establishing it, which marks its result

    def holds(self, model: Model) -> bool:
        """Whether ``model`` carries this fact's mark for its graph as it is now."""
        return self.name in model.marks and model.marks[self.name] == model.fingerprint()

    def mark(self, model: Model, fingerprint: str) -> None:
        """Record that the fact holds of ``model``'s graph, whose fingerprint is ``fingerprint`` (only ``by`` does,
        having checked it)."""
        model.marks[self.name] = fingerprint

    def establish(self, model: Model) -> Model:
        """``model`` itself when the fact holds of it (nothing run), else the result of the pass ``by`` (marked)."""
        return model if self.holds(model) else PASSES[self.by](model)[0]


#: canon's fixed point: only the operator table's canonical operators, and one more round of canon's sub-passes
#: would change nothing (``canonicalize``, the one pass marking it, checks that before it marks).
CANONICAL = Fact("canonical", by="canon")


@dataclass(frozen=True)
class Pass:
    """A pass: its name, what it does in one line, whether its result computes the input's function (so it is
    checked against the input; otherwise against a reference), the function doing it, the keyword inputs it needs
    that are not parameters (objects such as a classification, left out of the provenance), the facts its work
    reads of its input (``requires``: it establishes them itself, with ``Fact.establish``) and the facts its
    result carries (``ensures``: checked on every call)."""

    name: str
    description: str
    preserves: bool
    run: Callable[..., tuple[Model, Any]]
    needs: tuple[str, ...] = ()
    requires: frozenset[Fact] = frozenset()
    ensures: frozenset[Fact] = frozenset()

    def __call__(self, model: Model, *args: Any, **parameters: Any) -> tuple[Model, Any]:
        result, report = self.run(model, *args, **parameters)
        broken = sorted(f.name for f in self.ensures if not f.holds(result))
        if broken:
            raise RuntimeError(f"{self.name} ensures a {', '.join(broken)} result and gave another (please report "
                               "this network)")
        return result, report

    @property
    def parameters(self) -> dict[str, Any]:
        """Its parameters besides the model and ``needs``, with their defaults (``inspect.Parameter.empty``: none)."""
        listed = list(inspect.signature(self.run).parameters.values())[1:]
        return {p.name: p.default for p in listed if p.name not in self.needs}


PASSES: dict[str, Pass] = {}


def register(name: str, *, requires: frozenset[Fact], ensures: frozenset[Fact], preserves: bool = True,
             needs: tuple[str, ...] = ()) -> Callable[[Callable], Pass]:
    """Register the decorated function as the pass called ``name``, described by its docstring's first line; every
    registered pass states what it requires and ensures (empty sets included)."""

    def deco(fn: Callable[..., tuple[Model, Any]]) -> Pass:
        PASSES[name] = Pass(name, (fn.__doc__ or "").strip().splitlines()[0], preserves, fn, needs, requires,
                            ensures)
        return PASSES[name]

    return deco


def computable(model: Model, what: str) -> Model:
    """``model``, which the pass ``what`` built from a network that computes, once its shapes evaluate; otherwise a
    RuntimeError (an internal error, not the user's: a rewrite that breaks a working network is a bug)."""
    try:
        model.shapes()
    except NnxformError as exc:
        raise RuntimeError(f"{what} built a network that cannot be computed ({exc}); nothing written (please report "
                           "this network)") from None
    return model


def apply_checked(pass_: str | Pass, model: Model, box: Box | None = None, samples: int = 1000, tol: float = ATOL,
                  parameters: dict[str, Any] | None = None,
                  reference: Reference | Callable[[Any], Reference] | None = None,
                  **pass_parameters: Any) -> tuple[Model, Any, Comparison]:
    """Run ``pass_`` (a name in ``PASSES``, or a Pass) on ``model`` with ``pass_parameters``, check the result in
    onnxruntime on ``box`` (the default box when None) against ``model`` (or ``reference``, which a pass that
    changes the function needs: given, or made from the pass's report when the pass itself computes what its
    result must equal), and stamp its provenance: ``parameters``, the pass parameters but its ``needs``, ``tol``
    and ``samples``. Raises NotExact beyond the tolerance (``exactness.allowed``): nothing is returned then; a
    RuntimeError (an internal error) when the result cannot be computed at all (``computable``).

    Returns ``(model, report, comparison)``; ``comparison.to_json()`` is the "check" of a JSON report.
    """
    p = PASSES[pass_] if isinstance(pass_, str) else pass_
    if not p.preserves and reference is None:
        raise NnxformError(f"{p.name} changes the function: give the reference its result is checked against")
    result, report = p(model, **pass_parameters)
    computable(result, p.name)
    if reference is not None and not isinstance(reference, Reference):
        reference = reference(report)
    comparison = ensure_same_function(model, result, box, what=p.name, samples=samples, tol=tol, reference=reference)
    recorded = {k: v for k, v in pass_parameters.items() if k not in p.needs}
    result.with_provenance(p.name, dict(parameters or {}, **recorded, tol=tol, samples=samples))
    return result, report, comparison


@dataclass
class Rewrite:
    """What a command reports of a checked pass: the model before and after, the pass's report and the check."""

    before: Model
    model: Model
    report: PassReport
    check: Comparison

    def to_json(self, source: str, output: str) -> dict[str, Any]:
        """The JSON report of ``canon``, ``fold-bn`` or ``pad`` (``source``, ``output``: the files)."""
        kinds = Counter(line.split(" ")[0] for line in self.report.changes)
        return {"pass": self.report.name, "input": source, "output": output,
                "operators_before": self.before.op_counts(), "operators_after": self.model.op_counts(),
                "counts": self.report.counts, "changes": self.report.changes, "kinds": dict(kinds),
                "check": self.check.to_json()}


def rewrite(pass_: str | Pass, model: Model, box: Box | None = None, samples: int = 1000, tol: float = ATOL,
            parameters: dict[str, Any] | None = None, **pass_parameters: Any) -> Rewrite:
    """``apply_checked`` for a function-preserving pass, as a ``Rewrite`` (what the rewrite commands run)."""
    result, report, check = apply_checked(pass_, model, box, samples, tol, parameters, **pass_parameters)
    return Rewrite(model, result, report, check)


# Registering the passes: each module adds itself to PASSES.
from . import (canonicalize, compress, conv_form, elementwise, fold_batchnorm, gemm, pad,  # noqa: E402,F401
               quantize, remove_identity, reshapes)
