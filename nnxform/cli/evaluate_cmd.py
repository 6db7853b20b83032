"""``nnxform evaluate``: accuracy and FGSM robustness of a classifier on labelled data, optionally against another."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import typer

from ..accuracy import DEFAULT_EPS, Dataset, Evaluation, load_data, measure
from ..errors import NnxformError
from ..fileio import Outputs
from ..ir import load
from . import app
from .common import bounded, json_text, say, table


def fgsm_clip(scale: Optional[float], clip_lower: Optional[float], clip_upper: Optional[float],
              no_clip: bool = False) -> tuple[Optional[float], Optional[float]]:
    """Where FGSM points are clipped: as given; else [0, 1] for features divided by --scale (pixels); else nowhere."""
    if no_clip:
        if clip_lower is not None or clip_upper is not None:
            raise NnxformError("--no-clip conflicts with --clip-lower/--clip-upper")
        return None, None
    if clip_lower is None and clip_upper is None and scale is not None:
        return 0.0, 1.0
    if clip_lower is not None and clip_upper is not None and clip_lower > clip_upper:
        raise NnxformError(f"--clip-lower {clip_lower:g} is above --clip-upper {clip_upper:g}")
    return clip_lower, clip_upper


def describe_data(data: Dataset, scale: Optional[float], clip: tuple[Optional[float], Optional[float]]) -> str:
    """One line: the data file, its size, the scaling and the FGSM clipping."""
    scaled = f", features / {scale:g}" if scale is not None else ""
    lo, hi = ("-inf" if clip[0] is None else f"{clip[0]:g}"), ("inf" if clip[1] is None else f"{clip[1]:g}")
    clipped = f", FGSM points clipped to [{lo}, {hi}]" if clip != (None, None) else ", FGSM points not clipped"
    return f"{data.path}: {len(data.y)} points{scaled}{clipped}"


def metric_rows(evaluations: list[Evaluation]) -> list[list]:
    """Table rows: accuracy, then robustness at each ε, one column per network."""
    rows = [["accuracy", *[e.accuracy for e in evaluations]]]
    for eps in evaluations[0].robustness:
        rows.append([f"robust ε={eps:g}", *[e.robustness[eps] for e in evaluations]])
    return rows


@app.command(name="evaluate", short_help="Accuracy and FGSM robustness on labelled data (optionally of two networks).",
             help="Measure a classifier on labelled data: accuracy (argmax of the output in onnxruntime) and, for each "
                  "--eps, FGSM robustness: the share of points classified correctly both before and after the attack "
                  "x' = clip(x + ε·sign(∇ₓ cross-entropy)), the gradient computed by nnxform on the ONNX graph (no "
                  "deep-learning framework); so robustness never exceeds accuracy. Data: CSV rows 'label,feature,…' "
                  "(a header row is skipped) with features divided by --scale (e.g. 255 for MNIST pixels), or .npz "
                  "with arrays x and y (labels or one-hot). Points are reshaped to the network's input. FGSM points "
                  "are clipped to [--clip-lower, --clip-upper]; without them, to [0, 1] when --scale is given "
                  "(pixels), else not at all (--no-clip turns the default off). --against OTHER measures a second "
                  "network on the same points and ε, side by side, with the share of points both classify alike.")
def evaluate(
    model: str = typer.Argument(..., help="ONNX classifier."),
    data: str = typer.Option(..., "--data", help="Labelled data: CSV 'label,features' or .npz with x, y."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Divide the features by this (e.g. 255; > 0).",
                                          callback=bounded(0, above=True)),
    eps: Optional[List[float]] = typer.Option(None, "--eps", help="FGSM ε (repeat; default 0.01 and 0.05; >= 0).",
                                              callback=bounded(0)),
    clip_lower: Optional[float] = typer.Option(None, "--clip-lower", help="Clip FGSM points from below.",
                                               callback=bounded()),
    clip_upper: Optional[float] = typer.Option(None, "--clip-upper", help="Clip FGSM points from above.",
                                               callback=bounded()),
    no_clip: bool = typer.Option(False, "--no-clip", help="Do not clip FGSM points (not even to [0, 1] with --scale)."),
    against: Optional[str] = typer.Option(None, "--against", help="A second ONNX network to measure side by side."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
) -> None:
    eps_list = list(eps) if eps else list(DEFAULT_EPS)
    clip = fgsm_clip(scale, clip_lower, clip_upper, no_clip)
    outputs = Outputs([model, data, against])
    outputs.add_path(json_path, "--json", stdout=True)
    points = load_data(data, scale)
    nets = [(model, load(model))] + ([(against, load(against))] if against else [])
    results = [measure(net, points, eps_list, clip) for _, net in nets]
    doc = {"model": model, "data": data, "scale": scale, **results[0].to_json()}
    agreement = None
    if against:
        agreement = float(np.mean(results[0].predictions == results[1].predictions))
        doc["against"] = {"model": against, **results[1].to_json()}
        doc["agreement"] = agreement
    outputs.put(json_path, json_text(doc))
    outputs.commit()
    quiet = json_path == "-"
    say(f"evaluate: {describe_data(points, scale, clip)}", quiet)
    table(["metric", *[name for name, _ in nets]], metric_rows(results), quiet)
    if agreement is not None:
        say(f"  the two networks give the same class on {agreement:.1%} of the points", quiet)
