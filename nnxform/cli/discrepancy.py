"""``nnxform discrepancy``: sound bounds of ``f_A − f_B`` over an input box, and the worst input found."""

from __future__ import annotations

import time
from typing import Optional

import typer

from ..discrepancy import METHODS
from ..discrepancy import discrepancy as analyse_pair
from ..errors import NnxformError
from ..analyzers.solvers import check_solver
from ..ir import load
from . import summary
from .application import app
from .common import LIMIT_REACHED, SOLVER_HELP, CommandOutput, DomainOptions, Progress, bounded, with_domain


@app.command(short_help=summary("discrepancy"),
             help="Bound, for every output i, the min and max of f_A,i(x) − f_B,i(x) over an input box, and "
                  "δ_max = max ‖f_A(x) − f_B(x)‖∞. ReLU chains (any depths and widths; padded and aligned "
                  "exactly) "
                  "are analysed as a difference, layer by layer (ReluDiff/NeuroDiff): interval (Δ as intervals), "
                  "symbolic (Δ back-substituted to the input), lp (the merged network's LP plus the difference "
                  "rows, never looser than symbolic) or milp (exact big-M MILP; exact when every gap closes, else "
                  "the solver's proven bounds). merged-interval and merged-symbolic bound the merged network as one "
                  "(for comparison: each copy's error adds up). Networks that are not ReLU chains fall back to the "
                  "merged network and the report says so. Every method also searches the input with the largest "
                  "|f_A − f_B| (sampling, gradient steps, MILP solutions) and replays it in onnxruntime: the true "
                  "δ_max lies between that witness's value and the bound. --splits N refines interval/symbolic "
                  "bounds by bisecting the input box N times, worst part first. The bounds hold for the float32 "
                  "networks as onnxruntime runs them (the worst-case rounding of both); the bound for the "
                  "real-valued networks is printed beside it. The input box is required.")
@with_domain
def discrepancy(
    model_a: str = typer.Argument(..., help="First network (f_A) ONNX file."),
    model_b: str = typer.Argument(..., help="Second network (f_B) ONNX file."),
    method: str = typer.Option("symbolic", "--method", "-m", help=f"One of: {', '.join(METHODS)}."),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds for the analysis, all of it: the bound (back-substitution and "
                                     "solves) and the witness search.",
                                     callback=bounded(0, above=True)),
    splits: int = typer.Option(0, "--splits", help="Refine interval/symbolic bounds by this many bisections of "
                                                   "the input box, worst part first (worth it for few inputs)."),
    solver: str = typer.Option("highs", "--solver", help=SOLVER_HELP),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if method not in METHODS:
        raise NnxformError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if splits < 0 or (splits and method in ("lp", "milp")):
        raise NnxformError("--splits takes a count >= 0 and refines the interval and symbolic methods only")
    started = time.monotonic()  # the time limit counts from here: loading is part of the command
    check_solver(solver)
    out = CommandOutput([model_a, model_b, *domain.files()], json_path=json_path)
    a, b = load(model_a), load(model_b)
    box = domain.box(a, default=False)
    if box is None:
        raise NnxformError("discrepancy needs the input box (--lower/--upper, --center/--eps or --vnnlib): "
                           "a discrepancy over an arbitrary default box would be misleading")
    label = "input splits" if splits else f"{method} solves"
    with Progress(label, show=splits > 0 or method in ("lp", "milp")) as bar:
        d = analyse_pair(a, b, box, method, time_limit=time_limit, progress=bar, splits=splits, total_time=time_limit,
                         solver=solver, started=started)
    out.write(dict(d.to_json(), first=model_a, second=model_b, domain=domain.describe()))

    how = "difference analysis" if d.analysis == "difference" else "merged network analysed as one"
    refined = f", {d.details['leaves']} sub-boxes" if splits else ""
    out.say(f"discrepancy: {model_a} − {model_b}, method {method} ({how}{refined}), {box.size} inputs")
    for note in d.notes:
        out.say(f"  note: {note}")
    rows = [[j, float(lo), float(hi), float(w)]
            for j, (lo, hi, w) in enumerate(zip(d.lower, d.upper, d.witness_delta))]
    out.table(["output", "lower", "upper", "at witness"], rows)
    kind = "exact" if d.exact else "sound upper bound"
    real = d.details.get("real_delta_max")
    out.say(f"\n  δ_max = max ‖f_A − f_B‖∞ <= {d.delta_max:.6g} ({kind}, float32 networks as onnxruntime runs "
            "them)" + (f"; <= {real:.6g} for the real-valued networks" if real is not None else ""))
    ratio = f"{d.ratio:.3g}×" if d.found > 0 else "n/a (no difference found)"
    out.say(f"  witness (onnxruntime): ‖f_A − f_B‖∞ = {d.found:.6g}; the true δ_max lies in "
            f"[{d.found:.6g}, {d.delta_max:.6g}], bound/witness {ratio}")
    if d.details.get("note"):
        out.say(f"  note: {d.details['note']}")
    if d.details.get("time_limit_reached"):
        out.say(f"  --time-limit reached: {LIMIT_REACHED}")
    elif method == "milp" and not d.exact:
        out.say("  not exact: some MILP solves did not close their gap; their proven (dual) bounds are reported")
    out.say(f"  {d.details['bound_seconds']:.3f} s bounds + {d.details['witness_seconds']:.3f} s witness search")
