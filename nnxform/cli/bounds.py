"""``nnxform bounds``: sound output and ReLU bounds of a network over an input box."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..analyzers import METHODS, bounds as analyze
from ..errors import NnxformError
from ..analyzers.solvers import check_solver
from ..fileio import Outputs
from ..ir import load
from . import summary
from .application import app
from .common import (DEFAULT_BOX_HELP, DomainOptions, ProgressBar, SOLVER_HELP, bounded, json_text,
                     say, table, with_domain)


@app.command(name="bounds", short_help=summary("bounds"),
             help="Bound every output and every ReLU input of a network over an input box with one of: "
                  "interval (interval arithmetic), symbolic (CROWN/DeepPoly back-substitution), lp (triangle "
                  "relaxation on HiGHS) or milp (exact big-M MILP on HiGHS; on a time-out the solver's proven "
                  "bound is reported and the result is marked not exact; exact only when every gap closed and "
                  "each solution replayed in onnxruntime reaches its bound). Each method starts from the cheaper "
                  "ones' bounds. The bounds hold for the network as onnxruntime runs it in float32, rounding "
                  "included (README, Guarantees). Prints the output bounds, stably active / inactive / unstable "
                  "ReLUs per layer and the time; --json holds every neuron's bounds. " + DEFAULT_BOX_HELP)
@with_domain
def bounds(
    model: str = typer.Argument(..., help="ONNX file."),
    method: str = typer.Option("symbolic", "--method", "-m", help=f"One of: {', '.join(METHODS)}."),
    time_limit: float = typer.Option(60.0, "--time-limit",
                                     help="Seconds for the symbolic back-substitution and all LP/MILP solves together "
                                          "(past it, hidden bounds keep the cheaper method's and the output is "
                                          "bounded from them).",
                                     callback=bounded(0, above=True)),
    neurons: bool = typer.Option(False, "--neurons", help="With milp: also tighten every unstable ReLU input by MILP."),
    solver: str = typer.Option("highs", "--solver", help=SOLVER_HELP),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write every neuron's bounds as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if method not in METHODS:
        raise NnxformError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    check_solver(solver)
    outputs = Outputs([model, *domain.files()])
    outputs.add_path(json_path, "--json", stdout=True)
    net = load(model)
    box = domain.box(net)
    quiet = json_path == "-"
    bar = ProgressBar(f"{method} solves", enabled=method in ("lp", "milp") and sys.stderr.isatty())
    try:
        b = analyze(net, box, method, time_limit=time_limit, neurons=neurons, progress=bar, total_time=time_limit,
                    solver=solver)
    finally:
        bar.close()
    outputs.put(json_path, json_text(b.to_json()))
    outputs.commit()
    say(f"bounds: {model}, method {method}, {box.size} inputs", quiet)
    rows = [[j, float(lo), float(hi), float(hi - lo)] for j, (lo, hi) in enumerate(zip(b.output_lower, b.output_upper))]
    table(["output", "lower", "upper", "width"], rows, quiet)
    if b.relu_layers:
        layer_rows = [[l.node, l.lower.size, *l.counts().values()] for l in b.relu_layers]
        total = b.stable_counts()
        layer_rows.append(["total", sum(l.lower.size for l in b.relu_layers), *total.values()])
        say("", quiet)
        table(["ReLU layer", "neurons", "active", "inactive", "unstable"], layer_rows, quiet)
    exact = " (exact)" if b.exact else ""
    say(f"\n  width sum {b.width_sum:.6g}{exact}; {b.seconds:.3f} s (+ {b.details['compile_seconds']:.3f} s to compile)", quiet)
    if b.details.get("note"):
        say(f"  note: {b.details['note']}", quiet)
    if b.details.get("time_limit_reached"):
        say("  --time-limit reached: the bounds not tightened in time keep the cheaper method's bounds", quiet)
    elif method == "milp" and not b.exact:
        say("  not exact: some MILP solves did not close their gap (or did not replay); their proven (dual) bounds "
            "are reported", quiet)
