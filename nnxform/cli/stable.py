"""``nnxform stable``: classify every ReLU as stably active, stably inactive or unstable on an input box."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..domain import Box
from ..fileio import Outputs
from ..ir import Model, load
from ..analyzers.result import INACTIVE
from ..stable import STATUS_NAMES, LayerStability, Stability, classify
from . import summary
from .application import app
from ..analyzers.solvers import check_solver
from .common import (DEFAULT_BOX_HELP, SOLVER_HELP, DomainOptions, ProgressBar, bounded, json_text, say, table,
                     with_domain)

#: What each stage's progress counts (``classify``'s progress callback).
UNITS = {"alpha": "layers", "milp": "candidates", "certificate": "solves", "impact": "solves", "units": "pruned"}


class StageBars:
    """One progress bar (``cli.common.ProgressBar``) per solver stage on stderr; the previous one closes when the next opens."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: ProgressBar | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, ProgressBar(f"{stage} {UNITS.get(stage, 'candidates')}", self.enabled)
        self.bar(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_stability(result: Stability, quiet: bool) -> None:
    """The per-layer and per-stage tables and the totals line."""
    rows = [[layer.node, layer.size, *layer.counts().values(), _dead_channels(layer)] for layer in result.layers]
    total = result.counts()
    rows.append(["total", sum(layer.size for layer in result.layers), *total.values(), ""])
    table(["ReLU layer", "neurons", *STATUS_NAMES.values(), "dead channels"], rows, quiet)
    say("", quiet)
    table(["stage", "seconds", "settled", "note"],
                     [[s.name, round(s.seconds, 3), s.settled, s.note] for s in result.stages], quiet)
    neurons = sum(layer.size for layer in result.layers)
    stable = total["active"] + total["inactive"]
    say(f"\n  {stable} of {neurons} ReLUs stable ({total['active']} active, {total['inactive']} inactive), "
        f"{total['unstable']} unstable, {total['undecided']} undecided; {result.seconds:.2f} s", quiet)
    for note in result.notes:
        say(f"  note: {note}", quiet)


def _dead_channels(layer: LayerStability) -> str:
    """``k/C``: channels stably inactive at every position (what compress removes); empty for a dense layer."""
    per = layer.channel_status()
    return "" if per is None else f"{int((per == INACTIVE).sum())}/{layer.channels}"


def run_classify(net: Model, box: Box, time_limit: float, samples: int, seed: int,
                 node_limit: int | None = None, solver: str = "highs") -> Stability:
    """Classify the ReLUs of ``net`` with a progress bar on stderr."""
    bar = StageBars(enabled=sys.stderr.isatty())
    try:
        return classify(net, box, time_limit=time_limit, samples=samples, seed=seed, progress=bar, node_limit=node_limit,
                        solver=solver)
    finally:
        bar.close()


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
    outputs = Outputs([model, *domain.files()])
    outputs.add_path(json_path, "--json", stdout=True)
    net = load(model)
    box = domain.box(net)
    result = run_classify(net, box, time_limit, samples, seed, node_limit, solver)
    outputs.put(json_path, json_text({"model": model, "domain": domain.describe(), **result.to_json()}))
    outputs.commit()
    quiet = json_path == "-"
    say(f"stable: {model} on a box of {box.size} inputs (time limit {time_limit:g} s)\n", quiet)
    print_stability(result, quiet)
