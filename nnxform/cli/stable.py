"""``nnxform stable``: classify every ReLU as stably active, stably inactive or unstable on an input box."""

from __future__ import annotations

from typing import Optional

import typer

from ..ir import load
from ..analyzers.result import INACTIVE
from ..stable import STATUS_NAMES, LayerStability, Stability, classify
from . import summary
from .application import app
from ..analyzers.solvers import check_solver
from .common import DEFAULT_BOX_HELP, SOLVER_HELP, CommandOutput, DomainOptions, Progress, bounded, with_domain

def print_stability(result: Stability, out: CommandOutput) -> None:
    """The per-layer and per-stage tables and the totals line."""
    rows = [[layer.node, layer.size, *layer.counts().values(), _dead_channels(layer)] for layer in result.layers]
    total = result.counts()
    rows.append(["total", sum(layer.size for layer in result.layers), *total.values(), ""])
    out.table(["ReLU layer", "neurons", *STATUS_NAMES.values(), "dead channels"], rows)
    out.say("")
    out.table(["stage", "seconds", "settled", "note"], [[s.name, round(s.seconds, 3), s.settled, s.note]
                                                        for s in result.stages])
    neurons = sum(layer.size for layer in result.layers)
    stable = total["active"] + total["inactive"]
    out.say(f"\n  {stable} of {neurons} ReLUs stable ({total['active']} active, {total['inactive']} inactive), "
            f"{total['unstable']} unstable, {total['undecided']} undecided; {result.seconds:.2f} s")
    for note in result.notes:
        out.say(f"  note: {note}")


def _dead_channels(layer: LayerStability) -> str:
    """``k/C``: channels stably inactive at every position (what compress removes); empty for a dense layer."""
    per = layer.channel_status()
    return "" if per is None else f"{int((per == INACTIVE).sum())}/{layer.channels}"


@app.command(name="stable", short_help=summary("stable"),
             help="Classify every ReLU of a network on an input box, cheapest evidence first: sampling and "
                  "signed-gradient steps prove a neuron unstable (seen > 0 and < 0, replayed in onnxruntime); "
                  "interval, symbolic and alpha-CROWN bounds prove it stable; for networks with more than 16 inputs, a "
                  "branch and bound over the signs of earlier ReLUs (alpha,beta-CROWN bounds per branch, a layer's "
                  "neurons at once) proves more; then one feasibility MILP per remaining candidate on a shared HiGHS "
                  "model (infeasible proves it stable; a solution is replayed and "
                  "marks the neurons it flips unstable). A neuron no evidence settles within --time-limit is "
                  "'undecided' and must be treated as unstable. Prints per layer the counts, per stage the "
                  "time and neurons settled; --json lists the neuron indices of each kind per ReLU node. "
                  + DEFAULT_BOX_HELP)
@with_domain
def stable(
    model: str = typer.Argument(..., help="ONNX file."),
    time_limit: float = typer.Option(300.0, "--time-limit", help="Seconds for the whole classification.",
                                     callback=bounded(0)),
    samples: int = typer.Option(4096, "--samples", help="Uniform samples of the sampling stage (plus corners).",
                                callback=bounded(1)),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampling and gradient stages.", callback=bounded(0)),
    node_limit: Optional[int] = typer.Option(None, "--node-limit", callback=bounded(1),
                                             help="Branch-and-bound nodes per MILP solve instead of a share of "
                                                  "--time-limit: the same result on every run."),
    solver: str = typer.Option("highs", "--solver", help=SOLVER_HELP),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the classification as JSON ('-' for stdout); "
                                            "'nnxform compress --stability' reuses it."),
    domain: DomainOptions = None,
) -> None:
    check_solver(solver)
    out = CommandOutput([model, *domain.files()], json_path=json_path)
    net = load(model)
    box = domain.box(net)
    with Progress() as bar:
        result = classify(net, box, time_limit=time_limit, samples=samples, seed=seed, progress=bar.stage,
                          node_limit=node_limit, solver=solver)
    out.write({"model": model, "domain": domain.describe(), **result.to_json()})
    out.say(f"stable: {model} on a box of {box.size} inputs (time limit {time_limit:g} s)\n")
    print_stability(result, out)
