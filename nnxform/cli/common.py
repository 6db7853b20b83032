"""Pieces shared by the commands: domain options, option checks, what a command writes and prints
(``CommandOutput``) and its progress bar (``Progress``)."""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import typer
from rich.box import SIMPLE_HEAD
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from ..domain import DEFAULT_HIGH, DEFAULT_LOW, Box
from ..errors import NnxformError
from ..fileio import STDOUT, Outputs, PathLike, file_sha256
from ..ir import Model
from .domain_options import box_from_options, is_file_value

SOLVER_HELP = ("The MILP solver: highs (default: its own matrices and a proven dual bound at every stop), or through "
               "pulp cbc (ships with pulp), gurobi or cplex (installed and licensed separately). Through pulp a bound "
               "is taken only from a solve proved optimal (a time-out keeps the LP bound); building its model takes "
               "0.04-0.1 s on the MNIST networks, 6-8x HiGHS's but small next to the solves, so it pays wherever the "
               "solver is faster (CBC: 2.2x on dnnv_mnist_relu_3_50, on par on mnist-net_256x2; bench/RESULTS.md).")
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
    box_index: Optional[int] = None

    def box(self, model: Model, default: bool = True) -> Box | None:
        """The box for ``model``'s input, or the default box (or None) when no option was given."""
        fallback = Box.default(model.input_size) if default else None
        return box_from_options(
            model.input_size, lower=self.lower, upper=self.upper, center=self.center, eps=self.eps,
            clip_lower=self.clip_lower, clip_upper=self.clip_upper, vnnlib=self.vnnlib, box_index=self.box_index,
            default=fallback,
        )

    def _is_file(self, key: str, value: Any) -> bool:
        return value is not None and (key == "vnnlib" or (key in _BOUND_OPTIONS and is_file_value(value)))

    def files(self) -> list[str]:
        """The files the options name (the VNN-LIB file, .npy bounds): inputs no output may overwrite."""
        return [v for k, v in self.__dict__.items() if self._is_file(k, v)]

    def describe(self) -> dict[str, Any]:
        """The options that were given, for provenance and reports; a file by its name and the sha256 of its
        content, not its path, so that the record leaks no local folder, does not depend on where the command
        ran, and changes when the file does."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if self._is_file(key, value):
                out[key], out[f"{key}_sha256"] = Path(value).name, file_sha256(value)
            elif value is not None:
                out[key] = value
        return out


#: The bound options that take a number or a .npy file.
_BOUND_OPTIONS = ("lower", "upper", "center", "clip_lower", "clip_upper")


def bounded(low: float | None = None, high: float | None = None, *, above: bool = False) -> Callable[..., Any]:
    """A typer option callback that refuses, before any work, a value (or any value of a repeated option) that is
    NaN, infinite, below ``low`` (at or below it when ``above``) or above ``high``: one line naming the option."""

    def wanted(integer: bool) -> str:
        if low == 0 and above and high is None:
            return f"a positive {'integer' if integer else 'number'}"
        kind = "an integer" if integer else "a finite number"
        if low is not None and high is not None:
            return f"{kind} in {'(' if above else '['}{low:g}, {high:g}]"
        if low is not None:
            return f"{kind} {'>' if above else '>='} {low:g}"
        return kind if high is None else f"{kind} <= {high:g}"

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and not (math.isfinite(v) and (low is None or (v > low if above else v >= low))
                                      and (high is None or v <= high)):
                raise NnxformError(f"{max(param.opts, key=len)} must be {wanted(isinstance(v, int))}, got {v}")
        return value

    return check


def samples_option(default: int = 1000) -> Any:
    """The ``--samples`` option of a sampled exactness check (at least one sample)."""
    return typer.Option(default, "--samples", help="Uniform samples for the exactness check.", callback=bounded(1))


def tol_option() -> Any:
    """The ``--tol`` option of an exactness check (a finite number >= 0)."""
    return typer.Option(1e-5, "--tol", help="Tolerance of the exactness check (absolute and relative).",
                        callback=bounded(0))


def _opt(name: str, help: str, kind: type = str, dest: str | None = None, **checks: Any) -> inspect.Parameter:
    return inspect.Parameter(
        dest or name.lstrip("-").replace("-", "_"), inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, name, help=help, rich_help_panel="Input domain", **checks),
        annotation=Optional[kind],
    )


_DOMAIN_PARAMS = [
    _opt("--lower", "Lower bound of the input box: a number or a .npy with one value per input."),
    _opt("--upper", "Upper bound of the input box: a number or a .npy with one value per input."),
    _opt("--center", "Centre of an L-infinity ball (.npy or number); use with --eps."),
    _opt("--eps", "Radius of the L-infinity ball around --center.", float),
    _opt("--clip-lower", "Clip the ball from below (e.g. 0 for pixels)."),
    _opt("--clip-upper", "Clip the ball from above (e.g. 1 for pixels)."),
    _opt("--vnnlib", "Take the input box from a VNN-LIB file (X_i in row-major order)."),
    _opt("--box", "With --vnnlib: the input box K (0-based) of a file whose 'or' over inputs states several.", int,
         dest="box_index", callback=bounded(0)),
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


#: What a bound's time limit reached means, as the commands say it.
LIMIT_REACHED = "the rows not tightened in time keep the cheaper method's bounds (sound, looser)"


def json_text(data: Any) -> str:
    """``data`` as the text of a JSON report (numpy values as plain numbers and lists); a NaN or an infinity, which
    JSON cannot hold, is a bug that stops the command (``ValueError``) rather than writing a file no reader parses."""
    return json.dumps(data, indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain, aligned text table (numbers right-aligned): what files, pipes and bench/RESULTS.md get."""
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


class CommandOutput:
    """What one command writes and prints, the same way for every command: the files it reads (``inputs``, which no
    output may overwrite), its output files (``(option, path)`` pairs, None: not asked for) and its ``--json``
    report, all checked before any work and written together at the end, all or none (``fileio.Outputs``); and the
    lines and tables for people on stdout, left out (``quiet``) when the JSON goes to stdout."""

    def __init__(self, inputs: Iterable[Optional[PathLike]], *files: tuple[str, Optional[str]],
                 json_path: Optional[str] = None):
        self.outputs = Outputs(inputs)
        for option, path in files:
            self.outputs.add_path(path, option)
        self.outputs.add_path(json_path, "--json", stdout=True)
        self.json_path = json_path
        self.quiet = json_path == STDOUT

    def write(self, report: Any = None, files: Optional[Mapping[Optional[str], bytes | str]] = None) -> None:
        """Write ``files`` (path -> content; None paths skipped) and the JSON ``report`` to --json, all or none. The
        report is made into JSON even without --json, so that a value JSON cannot hold fails every run alike."""
        for path, data in (files or {}).items():
            self.outputs.put(path, data)
        if report is not None:
            self.outputs.put(self.json_path, json_text(report))
        self.outputs.commit()

    def say(self, text: str = "") -> None:
        """Print a line for people (to stdout), unless the JSON goes there."""
        if not self.quiet:
            typer.echo(text)

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        """Print a table for people, unless the JSON goes to stdout: drawn by rich on a terminal, plain aligned text
        (``format_table``) when stdout is a file or a pipe."""
        if self.quiet:
            return
        if not sys.stdout.isatty():
            typer.echo(format_table(headers, rows))
            return
        numeric = [bool(rows) and all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]
        drawn = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for header, num in zip(headers, numeric):
            drawn.add_column(header, justify="right" if num else "left")
        for row in rows:
            drawn.add_row(*(_cell(v) for v in row))
        Console().print(drawn)


#: What each stage of a classification counts, in its progress bar (``stable.classify``'s stages, and the stages
#: ``workflows`` adds for compress, prune and quantize).
STAGE_UNITS = {"alpha": "layers", "milp": "candidates", "certificate": "solves", "impact": "solves", "units": "pruned"}


class Progress:
    """The one progress display of the commands: a rich bar on stderr (on stdout with ``stdout``), opened at the first
    report, drawn only when ``show``, not ``quiet`` and that stream is a terminal. Call it as the library's
    ``progress(done, total, **fields)`` (``fields``: the text beside the bar, from each report's keywords, e.g.
    ``"{task.fields[loss]}"``), or give ``stage`` as a per-stage callback (one bar per stage). ``line`` prints a line
    above the bar, or plainly to the same stream when no bar is drawn; nothing at all when ``quiet``. Use it in a
    ``with`` block, which stops the bar however the work ends."""

    def __init__(self, label: str = "", *, show: bool = True, quiet: bool = False, stdout: bool = False,
                 fields: str = "", eta: bool = True):
        self.label, self.quiet, self.stdout, self.fields, self.eta = label, quiet, stdout, fields, eta
        self.enabled = show and not quiet and (sys.stdout if stdout else sys.stderr).isatty()
        self.bar: RichProgress | None = None
        self.task: Any = None

    def __call__(self, done: int, total: int, **fields: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn(self.fields)] if self.fields else []
            columns += [TimeElapsedColumn()] + ([TimeRemainingColumn()] if self.eta else [])
            self.bar = RichProgress(*columns, console=Console(stderr=not self.stdout), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total, **fields)
        self.bar.update(self.task, completed=done, total=total, **fields)

    def stage(self, stage: str, done: int, total: int) -> None:
        """A report of a staged computation (``stable.classify``'s ``progress``): a bar per stage, labelled with what
        the stage counts (``STAGE_UNITS``); the previous stage's bar stops when the next one opens."""
        label = f"{stage} {STAGE_UNITS.get(stage, 'candidates')}"
        if label != self.label:
            self.close()
            self.label = label
        self(done, total)

    def line(self, text: str) -> None:
        """A line for people: above the bar once it is open, else plainly on the bar's stream; none when quiet."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(text, markup=False)
        else:
            typer.echo(text, err=not self.stdout)

    def close(self) -> None:
        """Stop the bar (it stays on screen as it ended); a later report opens a new one."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
