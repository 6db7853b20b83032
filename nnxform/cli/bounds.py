"""``nnxform bounds``: sound output and ReLU bounds of a network over an input box."""

from __future__ import annotations

from typing import Optional

import typer

from ..analyzers import METHODS, bounds as analyze
from ..errors import NnxformError
from ..analyzers.solvers import check_solver
from ..analyzers.symbolic import SLOPE_STEPS
from ..ir import load
from . import summary
from .application import app
from .common import DEFAULT_BOX_HELP, SOLVER_HELP, CommandOutput, DomainOptions, Progress, bounded, with_domain


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
    slope_steps: int = typer.Option(SLOPE_STEPS, "--slope-steps",
                                    help="symbolic and above: Adam steps on the lower slopes of the ReLUs before the "
                                         "output, per output (α-CROWN's optimisation; the bounds only get tighter). "
                                         "0 gives CROWN's bounds, about twice as fast on MNIST networks.",
                                    callback=bounded(0)),
    hidden_steps: int = typer.Option(0, "--hidden-steps",
                                     help="symbolic and above: also tighten every hidden ReLU layer's bounds by this "
                                          "many Adam steps on the slopes before it, then the output again "
                                          "(α-CROWN's bounds: slower, tighter; 20 reach α-CROWN's own on the MNIST "
                                          "networks in a fraction of its time). 0: CROWN's hidden bounds.",
                                     callback=bounded(0)),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write every neuron's bounds as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if method not in METHODS:
        raise NnxformError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    check_solver(solver)
    out = CommandOutput([model, *domain.files()], json_path=json_path)
    net = load(model)
    box = domain.box(net)
    with Progress(f"{method} solves", show=method in ("lp", "milp")) as bar:
        b = analyze(net, box, method, time_limit=time_limit, neurons=neurons, progress=bar, total_time=time_limit,
                    solver=solver, slope_steps=slope_steps, hidden_steps=hidden_steps)
    out.write(b.to_json())
    out.say(f"bounds: {model}, method {method}, {box.size} inputs")
    rows = [[j, float(lo), float(hi), float(hi - lo)] for j, (lo, hi) in enumerate(zip(b.output_lower, b.output_upper))]
    out.table(["output", "lower", "upper", "width"], rows)
    if b.relu_layers:
        layer_rows = [[l.node, l.lower.size, *l.counts().values()] for l in b.relu_layers]
        total = b.stable_counts()
        layer_rows.append(["total", sum(l.lower.size for l in b.relu_layers), *total.values()])
        out.say("")
        out.table(["ReLU layer", "neurons", "active", "inactive", "unstable"], layer_rows)
    exact = " (exact)" if b.exact else ""
    out.say(f"\n  width sum {b.width_sum:.6g}{exact}; {b.seconds:.3f} s "
            f"(+ {b.details['compile_seconds']:.3f} s to compile)")
    if b.details.get("note"):
        out.say(f"  note: {b.details['note']}")
    if b.details.get("time_limit_reached"):
        out.say("  --time-limit reached: the bounds not tightened in time keep the cheaper method's bounds")
    elif method == "milp" and not b.exact:
        out.say("  not exact: some MILP solves did not close their gap (or did not replay); their proven (dual) bounds "
                "are reported")
