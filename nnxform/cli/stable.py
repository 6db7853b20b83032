"""``nnxform stable``: classify every ReLU as stably active, stably inactive or unstable on an input box."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..domain import Box
from ..errors import NnxformError
from ..ir import Model, load
from ..stable import STATUS_NAMES, Stability, classify
from . import app
from .common import DEFAULT_BOX_HELP, DomainOptions, ProgressBar, format_table, say, with_domain, write_json

#: What each stage's progress counts (``classify``'s progress callback).
UNITS = {"alpha": "layers", "milp": "candidates"}


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
    rows = [[layer.node, layer.size, *layer.counts().values()] for layer in result.layers]
    total = result.counts()
    rows.append(["total", sum(layer.size for layer in result.layers), *total.values()])
    say(format_table(["ReLU layer", "neurons", *STATUS_NAMES.values()], rows), quiet)
    say("", quiet)
    say(format_table(["stage", "seconds", "settled", "note"],
                     [[s.name, round(s.seconds, 3), s.settled, s.note] for s in result.stages]), quiet)
    neurons = sum(layer.size for layer in result.layers)
    stable = total["active"] + total["inactive"]
    say(f"\n  {stable} of {neurons} ReLUs stable ({total['active']} active, {total['inactive']} inactive), "
        f"{total['unstable']} unstable, {total['undecided']} undecided; {result.seconds:.2f} s", quiet)
    for note in result.notes:
        say(f"  note: {note}", quiet)


def run_classify(net: Model, box: Box, time_limit: float, samples: int, seed: int) -> Stability:
    """Classify the ReLUs of ``net`` with a progress bar on stderr (shared with ``compress``)."""
    if time_limit < 0:
        raise NnxformError("--time-limit must be >= 0")
    if samples < 1:
        raise NnxformError("--samples must be >= 1")
    bar = StageBars(enabled=sys.stderr.isatty())
    try:
        return classify(net, box, time_limit=time_limit, samples=samples, seed=seed, progress=bar)
    finally:
        bar.close()


@app.command(name="stable", short_help="Classify every ReLU as stably active, stably inactive or unstable on a box.",
             help="Classify every ReLU of a network on an input box, cheapest evidence first: sampling and "
                  "signed-gradient steps prove a neuron unstable (seen > 0 and < 0, replayed in onnxruntime); "
                  "interval, symbolic and alpha-CROWN bounds prove it stable; then one feasibility MILP per remaining "
                  "candidate on a shared HiGHS model (infeasible proves it stable; a solution is replayed and "
                  "marks the neurons it flips unstable). A neuron no evidence settles within --time-limit is "
                  "'undecided' and must be treated as unstable. Prints per layer the counts, per stage the "
                  "time and neurons settled; --json lists the neuron indices of each kind per ReLU node. "
                  + DEFAULT_BOX_HELP)
@with_domain
def stable(
    model: str = typer.Argument(..., help="ONNX file."),
    time_limit: float = typer.Option(300.0, "--time-limit", help="Seconds for the whole classification."),
    samples: int = typer.Option(4096, "--samples", help="Uniform samples of the sampling stage (plus corners)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampling and gradient stages."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the classification as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    net = load(model)
    box = domain.box(net)
    result = run_classify(net, box, time_limit, samples, seed)
    quiet = json_path == "-"
    say(f"stable: {model} on a box of {box.size} inputs (time limit {time_limit:g} s)\n", quiet)
    print_stability(result, quiet)
    if json_path:
        write_json({"model": model, "domain": domain.describe(), **result.to_json()}, json_path)
