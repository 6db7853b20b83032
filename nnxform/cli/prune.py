"""``nnxform prune``: a smaller network by weight, neuron (units or conv channels) or saliency pruning, with a sound
drift bound."""

from __future__ import annotations

import time
from typing import List, Optional

import typer

from ..accuracy import load_data
from ..discrepancy import METHODS as IMPACT_METHODS
from ..errors import NnxformError
from ..ir import load
from ..pruning import METHODS, SCOPES, SaliencyOptions
from ..workflows import prune_with_impact
from . import summary
from .application import app
from .common import LIMIT_REACHED, CommandOutput, DomainOptions, Progress, bounded, with_domain
from .evaluate_cmd import describe_data, fgsm_clip, metric_rows

_CRITERIA = {"bn-gamma": "ranked by |γ| of each unit's BatchNormalization",
             "weight-norm": "ranked by ‖incoming weights, bias‖₂·‖outgoing weights‖₂ (no BatchNormalization)",
             "mixed": "ranked by BatchNormalization |γ| where a layer has one, else by weight norm"}


@app.command(name="prune", short_help=summary("prune"),
             help="Make a ReLU network smaller for verifiers, without retraining. A fully connected network is "
                  "canonicalised to a dense chain and written back as one chain [Flatten →] Gemm → Relu → … → Gemm "
                  "with fewer units (removed units are gone, not zeroed). A convolutional network (Conv, ReLU, "
                  "MaxPool/AveragePool, BatchNormalization, Flatten, dense tail) stays convolutional: neuron removes "
                  "whole output channels of every Conv (filter, bias, BN channel, and the next Conv's input slice or "
                  "the next Gemm's H×W block of columns after the Flatten) together with hidden units of the dense "
                  "tail, ranked by the BN |γ| following each Conv (network slimming) else by ‖filter, bias‖₂·‖outgoing "
                  "weights‖₂, every layer keeping one channel; weight zeroes conv kernel and dense weights (conv "
                  "weights stay as zeros); saliency removes a channel into the most similar one of its layer "
                  "(saliency of the flattened filters and biases, greedily, --step per round; no interval impact or "
                  "annealing), adding its outgoing weights to that channel's, and skips layers with a "
                  "BatchNormalization or per-channel affine before the next Conv or Gemm (a note names them); "
                  "With skip connections (an Add of two branches) the graph is pruned as it is: neuron removes "
                  "channels of layers that feed one layer alone (a block's inner Conv, the dense tail) and names the "
                  "layers tied by an Add or a second reader, which it skips; weight zeroes weights anywhere; saliency "
                  "is refused. "
                  "Methods: weight — zero the ⌊R·M⌋ smallest |w| of the M weights of the affine layers (output "
                  "layer included), then remove units left with no input (their constant output moves into the next "
                  "bias) or no output; neuron — remove ⌊R·N⌋ of the N hidden units, ranked by |γ| of their "
                  "BatchNormalization when every hidden layer has one (read before folding; a removed unit is "
                  "replaced by its channel's output at γ = 0), else by ‖incoming weights, bias‖₂·‖outgoing weights‖₂; "
                  "saliency — paper 003: remove a unit into the most similar unit of its layer (saliency), guided by "
                  "the interval impact at the output and simulated annealing (energy α·σ(NORM) + β·σ(ENT), "
                  "temperature = share left), --step of each layer's units per epoch, deterministic for a --seed; "
                  "its interval bounds are over the domain (default box [-1, 1]). --scope global counts the share "
                  "over all hidden layers (all affine weights for weight), layer in each one; default: global for "
                  "weight and BN-ranked neuron, layer for weight-norm neuron and saliency. Output units are never "
                  "pruned and every hidden layer keeps one unit (a note says when the ratio asked for more). "
                  "With a domain (--lower/--upper, --center/--eps, --vnnlib), the report bounds max |f_pruned − f| "
                  "over it soundly, by the discrepancy analysis of the two networks (--impact-method), never by "
                  "saliency's search estimate. With --data, accuracy and FGSM robustness before and after go in the "
                  "report (as nnxform evaluate; FGSM points clipped to [0, 1] when --scale is given).")
@with_domain
def prune(
    model: str = typer.Argument(..., help="ONNX network to prune."),
    method: str = typer.Option(..., "--method", "-m", help=f"One of: {', '.join(METHODS)}."),
    ratio: float = typer.Option(..., "--ratio", "-r", help="Share to remove, in [0, 1]: of hidden units and conv "
                                                           "channels, or of weights for --method weight.",
                                callback=bounded(0, 1)),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the pruned ONNX."),
    scope: Optional[str] = typer.Option(None, "--scope", help=f"One of: {', '.join(SCOPES)} (default per method)."),
    seed: int = typer.Option(0, "--seed", help="Seed of saliency's annealing.", callback=bounded(0)),
    step: float = typer.Option(0.025, "--step", help="saliency: share of each layer's units pruned per epoch, in "
                                                     "(0, 1].", callback=bounded(0, 1, above=True)),
    alpha: float = typer.Option(0.75, "--alpha", help="saliency: weight of σ(NORM) in the energy (>= 0).",
                                callback=bounded(0)),
    beta: float = typer.Option(0.25, "--beta", help="saliency: weight of σ(ENT) in the energy (>= 0).",
                               callback=bounded(0)),
    phi: float = typer.Option(0.9, "--phi", help="saliency: similarity threshold of ENT, in [0, 1].",
                              callback=bounded(0, 1)),
    impact_method: str = typer.Option("symbolic", "--impact-method",
                                      help=f"Discrepancy method of the impact bound: {', '.join(IMPACT_METHODS)}."),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds for the whole command: pruning and its "
                                     "check, then the impact bound (back-substitution, solves and the witness search) "
                                     "in what is left; past it the bounds not tightened keep the cheaper method's, "
                                     "still sound.",
                                     callback=bounded(0, above=True)),
    data: Optional[str] = typer.Option(None, "--data", help="Labelled data (CSV 'label,features' or .npz x, y) "
                                                            "to measure accuracy and robustness before and after."),
    scale: Optional[float] = typer.Option(None, "--scale", help="With --data: divide the features by this (> 0).",
                                          callback=bounded(0, above=True)),
    fgsm_eps: Optional[List[float]] = typer.Option(None, "--fgsm-eps", help="With --data: FGSM ε (repeat; default "
                                                                            "0.01 and 0.05).", callback=bounded(0)),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if (scale is not None or fgsm_eps) and data is None:
        raise NnxformError("--scale and --fgsm-eps need --data")
    started = time.monotonic()  # the time limit counts from here: loading is part of the command
    out = CommandOutput([model, data, *domain.files()], ("-o", output), json_path=json_path)
    net = load(model)
    box = domain.box(net, default=False)
    points = load_data(data, scale) if data else None
    with Progress() as bar:
        report = prune_with_impact(net, box, method, ratio, scope=scope, impact_method=impact_method,
                                   time_limit=time_limit, data=points, scale=scale, fgsm_eps=fgsm_eps,
                                   clip=fgsm_clip(scale, None, None), domain=domain.describe(), progress=bar.stage,
                                   options=SaliencyOptions(step=step, alpha=alpha, beta=beta, phi=phi, seed=seed),
                                   started=started)
    doc = report.to_json(model, output)
    out.write(doc, {output: report.model.to_bytes()})

    result, evaluations = report.pruning, report.evaluations
    criterion = result.details.get("criterion")
    how = f", {_CRITERIA[criterion]}" if criterion else ""
    out.say(f"prune: {model} -> {output}: {method}{how}, ratio {ratio:g}, scope {result.scope}")
    b, a = result.before, result.after
    rows = [["hidden units", b.neurons, a.neurons], ["connections (nonzero weights)", b.connections, a.connections],
            ["parameters", b.parameters, a.parameters],
            ["widths", " ".join(map(str, b.widths)), " ".join(map(str, a.widths))]]
    out.table(["", "before", "after"], rows)
    for layer, ids in result.details.get("removed_channels", {}).items():
        out.say(f"  {layer}: {len(ids)} channel(s) removed ({' '.join(map(str, ids)) or '-'})")
    for note in result.notes:
        out.say(f"  note: {note}")
    out.say(f"  pruned in {result.seconds:.3f} s; the written network checked on {result.check.samples} points against "
            f"the pruned layers: max difference {result.check.max_abs:.3g} (tolerance "
            f"{result.check.tolerance(result.check.tol)})")
    if box is not None:
        impact = doc["impact"]
        out.say(f"  impact: max |f_pruned − f| <= {doc['impact_bound']:.6g} on the domain ({doc['impact_method']}, "
                f"sound); largest difference seen {impact['found']:.6g}")
        if impact.get("time_limit_reached"):
            out.say(f"  --time-limit reached: {LIMIT_REACHED}")
    else:
        out.say("  no domain given: no bound on |f_pruned − f| (give --lower/--upper, --center/--eps or --vnnlib)")
    if evaluations:
        out.say(f"  {describe_data(report.data, scale, evaluations[0].clip)}")
        out.table(["metric", "before", "after"], metric_rows(evaluations))
