"""``nnxform evaluate``: accuracy and FGSM robustness of a classifier on labelled data, optionally against another."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import typer

from ..accuracy import DEFAULT_EPS, Dataset, Evaluation, Preprocessing, channel_values, load_data, measure
from ..errors import NnxformError
from ..ir import load
from . import summary
from .application import app
from .common import CommandOutput, bounded


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


def describe_data(data: Dataset, scale: Optional[float], clip: tuple[Optional[float], Optional[float]],
                  prep: Preprocessing = Preprocessing()) -> str:
    """One line: the data file, its size, the scaling, layout and normalisation, and the FGSM clipping."""
    scaled = f", features / {scale:g}" if scale is not None else ""
    layout = ", channel-last points (H×W×C) transposed to the network's (C,H,W)" if prep.layout == "nhwc" else ""
    norm = ""
    if prep.normalises:
        values = [f"{name} {','.join(f'{v:g}' for v in vs)}" for name, vs in (("mean", prep.mean), ("std", prep.std))
                  if vs is not None]
        norm = f", normalised (x − mean) / std per channel ({'; '.join(values)}), FGSM ε and clip bounds mapped too"
    lo, hi = ("-inf" if clip[0] is None else f"{clip[0]:g}"), ("inf" if clip[1] is None else f"{clip[1]:g}")
    clipped = f", FGSM points clipped to [{lo}, {hi}]" if clip != (None, None) else ", FGSM points not clipped"
    return f"{data.path}: {len(data.y)} points{scaled}{layout}{norm}{clipped}"


def normalisation_note(name: str, nodes: list[str], prep: Preprocessing) -> Optional[str]:
    """One line when network ``name`` normalises its input itself (``nodes``): give it pixels, or (with --mean/--std)
    a warning that the points are normalised twice."""
    if not nodes:
        return None
    which = ", ".join(f"'{n}'" for n in nodes)
    if prep.normalises:
        return (f"warning: {name} normalises its input itself ({which}) and --mean/--std normalise the points too: "
                "the normalisation is applied twice")
    return f"{name} normalises its input itself ({which}): give pixels after --scale only, no --mean/--std"


def metric_rows(evaluations: list[Evaluation]) -> list[list]:
    """Table rows: accuracy, then robustness at each ε, one column per network."""
    rows = [["accuracy", *[e.accuracy for e in evaluations]]]
    for eps in evaluations[0].robustness:
        rows.append([f"robust ε={eps:g}", *[e.robustness[eps] for e in evaluations]])
    return rows


@app.command(name="evaluate", short_help=summary("evaluate"),
             help="Measure a classifier on labelled data: accuracy (argmax of the output in onnxruntime) and, for each "
                  "--eps, FGSM robustness: the share of points classified correctly both before and after the attack "
                  "x' = clip(x + ε·sign(∇ₓ cross-entropy)), the gradient computed by nnxform on the ONNX graph (no "
                  "deep-learning framework); so robustness never exceeds accuracy. Data: CSV rows 'label,feature,…' "
                  "(a header row is skipped) with features divided by --scale (e.g. 255 for MNIST pixels), or .npz "
                  "with arrays x and y (labels or one-hot). Points are reshaped to the network's input. FGSM points "
                  "are clipped to [--clip-lower, --clip-upper]; without them, to [0, 1] when --scale is given "
                  "(pixels), else not at all (--no-clip turns the default off). Images: --layout nhwc reads each "
                  "point as height × width × channel (channel last, as ERAN's cifar10_test.csv) and transposes it to "
                  "the network's [1, C, H, W] input; --mean/--std normalise channel by channel, x = (x / scale − "
                  "mean) / std, for a network trained on normalised inputs. FGSM's ε and clip bounds stay in the data's "
                  "space after --scale (pixels) and are mapped per channel through the normalisation. A network that "
                  "starts with its own normalisation (constant Sub/Div/Mul/Add on its input) is named in the output. "
                  "--against OTHER measures a second network on the same points and ε, side by side, with the share "
                  "of points both classify alike. --json also lists each network's predicted class per point.")
def evaluate(
    model: str = typer.Argument(..., help="ONNX classifier."),
    data: str = typer.Option(..., "--data", help="Labelled data: CSV 'label,features' or .npz with x, y."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Divide the features by this (e.g. 255; > 0).",
                                          callback=bounded(0, above=True)),
    eps: Optional[List[float]] = typer.Option(None, "--eps", help="FGSM ε in the data's space after --scale (repeat; "
                                              "default 0.01 and 0.05; >= 0); with --std, ε / std in each channel.",
                                              callback=bounded(0)),
    clip_lower: Optional[float] = typer.Option(None, "--clip-lower", help="Clip FGSM points from below, in the data's "
                                               "space after --scale; with --mean/--std mapped per channel.",
                                               callback=bounded()),
    clip_upper: Optional[float] = typer.Option(None, "--clip-upper", help="Clip FGSM points from above, in the data's "
                                               "space after --scale; with --mean/--std mapped per channel.",
                                               callback=bounded()),
    no_clip: bool = typer.Option(False, "--no-clip", help="Do not clip FGSM points (not even to [0, 1] with --scale)."),
    layout: str = typer.Option("nchw", "--layout",
                               help="How each point's features are ordered: nchw (default), the network's own input "
                                    "order as it reads them; nhwc, images height × width × channel (channel last, "
                                    "e.g. ERAN's cifar10_test.csv: R,G,B per pixel, pixel rows in turn), transposed "
                                    "to the network's [1, C, H, W] input. A 4-D .npz x is (n, H, W, C) with nhwc, "
                                    "(n, C, H, W) otherwise."),
    mean: Optional[str] = typer.Option(None, "--mean",
                                       help="Per-channel mean subtracted after --scale and --layout: one value, or "
                                            "one per input channel, comma-separated (e.g. 0.4914,0.4822,0.4465)."),
    std: Optional[str] = typer.Option(None, "--std",
                                      help="Per-channel std divided by after --mean: one value or one per input "
                                           "channel, comma-separated, each > 0 (e.g. 0.2470,0.2435,0.2616)."),
    against: Optional[str] = typer.Option(None, "--against", help="A second ONNX network to measure side by side."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
) -> None:
    eps_list = list(eps) if eps else list(DEFAULT_EPS)
    clip = fgsm_clip(scale, clip_lower, clip_upper, no_clip)
    prep = Preprocessing(layout.lower(), channel_values(mean, "--mean"), channel_values(std, "--std"))
    out = CommandOutput([model, data, against], json_path=json_path)
    points = load_data(data, scale)
    nets = [(model, load(model))] + ([(against, load(against))] if against else [])
    results = [measure(net, points, eps_list, clip, prep) for _, net in nets]
    doc = {"model": model, "data": data, "scale": scale, "layout": prep.layout,
           "mean": None if prep.mean is None else list(prep.mean), "std": None if prep.std is None else list(prep.std),
           **results[0].to_json()}
    agreement = None
    if against:
        agreement = float(np.mean(results[0].predictions == results[1].predictions))
        doc["against"] = {"model": against, **results[1].to_json()}
        doc["agreement"] = agreement
    out.write(doc)
    out.say(f"evaluate: {describe_data(points, scale, clip, prep)}")
    for (name, _), result in zip(nets, results):
        note = normalisation_note(name, result.normalised_by, prep)
        if note and prep.normalises:  # a warning: to stderr when the JSON goes to stdout
            typer.echo(f"  {note}", err=out.quiet)
        elif note:
            out.say(f"  {note}")
    out.table(["metric", *[name for name, _ in nets]], metric_rows(results))
    if agreement is not None:
        out.say(f"  the two networks give the same class on {agreement:.1%} of the points")
