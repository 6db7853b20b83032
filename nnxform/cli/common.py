"""Pieces shared by the commands: domain options, JSON and table output."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ..domain import DEFAULT_HIGH, DEFAULT_LOW, Box, box_from_options
from ..fileio import atomic_write_text
from ..ir import Model

DEFAULT_BOX_HELP = f"Without a domain, the default box is [{DEFAULT_LOW:g}, {DEFAULT_HIGH:g}] on every input."


@dataclass(frozen=True)
class DomainOptions:
    """The domain as given on the command line; resolved against a model's input size by ``box``."""

    lower: Optional[str] = None
    upper: Optional[str] = None
    center: Optional[str] = None
    eps: Optional[float] = None
    clip_lower: Optional[str] = None
    clip_upper: Optional[str] = None
    vnnlib: Optional[str] = None

    def box(self, model: Model, default: bool = True) -> Box | None:
        """The box for ``model``'s input, or the default box (or None) when no option was given."""
        fallback = Box.default(model.input_size) if default else None
        return box_from_options(
            model.input_size, lower=self.lower, upper=self.upper, center=self.center, eps=self.eps,
            clip_lower=self.clip_lower, clip_upper=self.clip_upper, vnnlib=self.vnnlib, default=fallback,
        )

    def describe(self) -> dict[str, Any]:
        """The options that were given (for provenance and reports)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _opt(name: str, help: str, kind: type = str) -> inspect.Parameter:
    return inspect.Parameter(
        name.lstrip("-").replace("-", "_"), inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, name, help=help, rich_help_panel="Input domain"), annotation=Optional[kind],
    )


_DOMAIN_PARAMS = [
    _opt("--lower", "Lower bound of the input box: a number or a .npy with one value per input."),
    _opt("--upper", "Upper bound of the input box: a number or a .npy with one value per input."),
    _opt("--center", "Centre of an L-infinity ball (.npy or number); use with --eps."),
    _opt("--eps", "Radius of the L-infinity ball around --center.", float),
    _opt("--clip-lower", "Clip the ball from below (e.g. 0 for pixels)."),
    _opt("--clip-upper", "Clip the ball from above (e.g. 1 for pixels)."),
    _opt("--vnnlib", "Take the input box from a VNN-LIB file (X_i in row-major order)."),
]


def with_domain(fn: Callable) -> Callable:
    """Give a command the shared domain options; it receives them as ``domain: DomainOptions``."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "domain"] + _DOMAIN_PARAMS

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {p.name: kwargs.pop(p.name, None) for p in _DOMAIN_PARAMS}
        return fn(*args, domain=DomainOptions(**given), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def write_json(data: Any, path: str) -> None:
    """Write ``data`` as JSON to ``path`` (atomically), or to stdout when ``path`` is ``-``."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(Path(path), text)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain, aligned text table (numbers right-aligned) for people reading a terminal."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def say(text: str, quiet: bool = False) -> None:
    """Print for people (to stdout), unless the command's JSON goes to stdout."""
    if not quiet:
        typer.echo(text)


class ProgressBar:
    """A progress bar on stderr for long work (LP/MILP solves, pruning rounds), opened on the first
    report, when the total is known; use it as the ``progress(done, total)`` callback of the library."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.bar: Any = None
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = typer.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
