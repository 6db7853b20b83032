"""``nnxform repair``: retrain a compressed network toward the original until the sound discrepancy over a domain
is small enough (paper 000, Algorithm 1)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..accuracy import load_data
from ..discrepancy import DIFFERENCE_METHODS
from ..domain import Box
from ..errors import NnxformError
from ..grid import file_form
from ..ir import Model, load
from ..repair import UPDATES, RepairOptions, RepairResult, RoundRecord, boxes_around, repair
from . import summary
from .application import app
from .common import CommandOutput, DomainOptions, bounded, with_domain
from .domain_options import option_values


def round_line(record: RoundRecord, rounds: int) -> str:
    """One line per round: sound bound, mean over boxes, largest difference seen, accuracy, time."""
    accuracy = "" if record.accuracy is None else f"  accuracy {record.accuracy:.1%}"
    return (f"  round {record.round}/{rounds}  sound ‖f1 − f2‖∞ <= {record.bound:.5g} (mean over boxes "
            f"{record.mean_box_bound:.5g}; seen {record.sampled_max:.5g}){accuracy}  {record.seconds:.2f} s")


def outcome_line(result: RepairResult, output: str) -> str:
    """Why the repair stopped, which round's network is written and how its sound bound (recomputed on it) compares
    with the one the compressed network had."""
    done = len(result.rounds) - 1
    stop = ("target reached" if result.reached else "target not reached") if result.target is not None else "no target"
    if result.kept == 0:
        why = "no round improved the bound; " if done else ""
        kept, details = f"{why}the given network is written unchanged", f"sound bound {result.final.delta_max:.5g}"
    else:
        kept = (f"kept round {result.kept}, the smallest sound bound: {result.initial.delta_max:.5g} -> "
                f"{result.final.delta_max:.5g}, recomputed on the network as written")
        details = f"{result.reduction:.3g}x smaller"
    target = f"target {result.target:.5g}; " if result.target is not None else ""
    return f"  {stop} after {done} rounds; {kept} ({details}; {target}{result.seconds:.1f} s) -> {output}"


def kept_line(result: RepairResult) -> str:
    """What the repair kept of the compression: the grid (detected, how it was retrained) and the zeros, with the
    stored size and non-zero weights before and after."""
    sizes = result.sizes
    scales = "scales searched in round 1" if result.grid is not None and result.grid.scales == "searched" else \
        "scales fixed"
    grid = (f"grid {result.grid.describe()} detected and kept (straight-through retraining, {scales})"
            if result.grid is not None else "no grid kept (retrained in float)")
    zeros = "zero weights kept at 0" if result.options.keep_zeros else "zero weights free"
    return (f"  {grid}; {zeros}; size {sizes['compressed']['kb']:.1f} KB -> {sizes['repaired']['kb']:.1f} KB, "
            f"non-zero weights {sizes['compressed']['nonzero_weights']} -> {sizes['repaired']['nonzero_weights']}")


def _domain(domain: DomainOptions, data: Optional[str], scale: Optional[float], model: Model) -> tuple[list[Box], str]:
    """The boxes of the domain: the domain options' one box, or an ``--eps`` box around every point of ``--data``
    (clipped by --clip-lower/--clip-upper); and how to describe it."""
    if data is None:
        box = domain.box(model, default=False)
        if box is None:
            raise NnxformError("repair needs a domain: --lower/--upper, --center/--eps, --vnnlib, or --data with --eps")
        return [box], "one box"
    given = [f"--{k.replace('_', '-')}" for k in ("lower", "upper", "center", "vnnlib", "box_index")
             if getattr(domain, k) is not None]
    if given:
        raise NnxformError(f"--data makes the domain (boxes around its points); {', '.join(given)} conflict with it")
    if domain.eps is None:
        raise NnxformError("--data needs --eps (the radius of the L-infinity box around each point)")
    size = model.input_size
    points = load_data(data, scale).fit(model).x
    clip = tuple(None if v is None else option_values(option, v, size)
                 for option, v in (("--clip-lower", domain.clip_lower), ("--clip-upper", domain.clip_upper)))
    boxes = [b.fit(size) for b in boxes_around(points, domain.eps, clip)]  # type: ignore[arg-type]
    return boxes, f"{len(boxes)} boxes of radius {domain.eps:g} around the points of {Path(data).name}"


def plot_repair(result: RepairResult) -> bytes:
    """A PNG of paper 000's Fig. 2 (the original's outputs at the first box's centre as dots, the compressed
    network's guaranteed output range over that box before repair and as written as whiskers) and Figs. 3-4 (the
    sound bound and the accuracy per round, the written round marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranges = result.output_ranges
    accuracy = [r.accuracy for r in result.rounds]
    panels = 3 if any(a is not None for a in accuracy) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    ax = axes[0]
    n = len(ranges["original"])
    idx = np.arange(n)
    for name, shift, colour, what in (("before", -0.15, "tab:green", "before repair"),
                                      ("after", 0.15, "tab:red", f"as written (round {result.kept})")):
        lo, hi = np.array(ranges[name]["lower"]), np.array(ranges[name]["upper"])
        ax.errorbar(idx + shift, 0.5 * (lo + hi), yerr=0.5 * (hi - lo), fmt="none", ecolor=colour, capsize=4,
                    label=f"compressed, {what} (sound range)")
    ax.plot(idx, ranges["original"], "o", color="tab:blue", label="original at the centre")
    ax.set_xticks(idx)
    ax.set_xlabel("output")
    ax.set_ylabel("score")
    ax.set_title("output range on box 0 (Fig. 2)")
    ax.legend(fontsize=7)
    rounds = [r.round for r in result.rounds]
    ax = axes[1]
    ax.plot(rounds, [r.bound for r in result.rounds], "o-", label="sound ‖f1 − f2‖∞ over the domain")
    ax.plot(rounds, [r.mean_box_bound for r in result.rounds], "s--", label="mean over boxes")
    ax.plot(rounds, [r.sampled_max for r in result.rounds], "x:", label="largest difference seen")
    ax.plot([result.kept], [result.final.delta_max], "*", color="tab:red", markersize=12,
            label=f"written: round {result.kept}, bound recomputed on it")
    if result.target is not None:
        ax.axhline(result.target, color="grey", linewidth=0.8, label="target")
    ax.set_xlabel("round")
    ax.set_ylabel("discrepancy")
    ax.set_title(f"discrepancy per round (Fig. 3; {result.options.update}, α = {result.options.alpha:g})")
    ax.legend(fontsize=7)
    if panels == 3:
        ax = axes[2]
        ax.plot(rounds, [100 * a for a in accuracy], "o-")
        ax.plot([result.kept], [100 * result.accuracy["repaired"]], "*", color="tab:red", markersize=12,
                label=f"written: round {result.kept}")
        if result.accuracy.get("original") is not None:
            ax.axhline(100 * result.accuracy["original"], color="grey", linewidth=0.8, label="original")
        ax.legend(fontsize=7)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("test accuracy per round (Fig. 4)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


@app.command(name="repair", short_help=summary("repair"),
             help="Algorithm 1 of paper 000: repair COMPRESSED (e.g. quantised) by retraining it toward ORIGINAL. "
                  "Each round bounds f1 − f2 per output over the domain soundly (the difference analysis, "
                  "--method), draws --samples points of the domain (half uniform, half random vertices of its boxes), "
                  "sets targets and retrains the compressed "
                  "network --epochs epochs on their mean squared error (Adam, --lr), then bounds the discrepancy "
                  "again; it stops when the bound is <= --target, or <= --target-ratio times the initial bound (the "
                  "paper uses 0.67), or after --rounds. The round with the smallest sound bound is written (the "
                  "compressed network unchanged when no round improves on it). Targets (--update): pointwise "
                  "(default), f2(x) + (f1(x) − f2(x))/alpha on the samples plus each round's worst inputs (the "
                  "witness search's, and the vertices where the analysis's linear bounds are worst); "
                  "paper, f2(x) + δ/alpha with δ the per-output upper bound of f1 − f2 over the domain (eq. 16, 20). "
                  "Domain: the shared options (one box), or --data POINTS --eps E for an L-infinity box around each "
                  "point (clipped by --clip-lower/--clip-upper). --train-data adds points outside the domain that are "
                  "retrained with the same rule each round (the paper adds ten images; the training data keeps the "
                  "accuracy), --test-data (labelled) measures accuracy after every round; features of all three "
                  "files are divided by --scale, and their labels must be classes of the networks. Every bound "
                  "printed is sound (checked against the differences sampled in onnxruntime each round; the final "
                  "one recomputed on the network as written), and the result is written only if it loads and runs "
                  "in onnxruntime. The repair keeps the compression: when COMPRESSED's weights sit on a symmetric "
                  "integer grid (per tensor or per output channel, as nnxform quantize or a weight-only QDQ file "
                  "stores them), it is detected and said, and the retraining stays on it (straight-through gradients, "
                  "scales fixed, or searched in round 1 with --scales searched; --no-keep-grid retrains in float), so "
                  "the network written is on the same grid (bits and layout), as "
                  "small, in the same form (float values or DequantizeLinear); weights exactly 0 stay 0 (pruned units "
                  "and weights; the default off a grid, --keep-zeros/--no-keep-zeros to choose), and every layer "
                  "keeps its shape. --plot draws paper 000's Fig. 2 and the per-round curves of Figs. 3-4 (needs "
                  "matplotlib, the plot extra).")
@with_domain
def repair_command(
    original: str = typer.Argument(..., help="The original ONNX network (f1)."),
    compressed: str = typer.Argument(..., help="The compressed ONNX network to repair (f2), same input and output sizes."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the repaired ONNX."),
    data: Optional[str] = typer.Option(None, "--data", help="Points (CSV 'label,features' or .npz x, y) whose --eps "
                                                            "boxes make the domain."),
    train_data: Optional[str] = typer.Option(None, "--train-data", help="Points outside the domain retrained each "
                                                                        "round too (labels unused, but checked)."),
    test_data: Optional[str] = typer.Option(None, "--test-data", help="Labelled points: accuracy after every round."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Divide the features of the data files by this (> 0).",
                                          callback=bounded(0, above=True)),
    alpha: float = typer.Option(2.0, "--alpha", help="Step: targets move 1/alpha of the way (>= 1; paper: 2, 5, 10, 20).",
                                callback=bounded(1)),
    update: str = typer.Option("pointwise", "--update", help=f"Target rule: {', '.join(UPDATES)}."),
    rounds: int = typer.Option(10, "--rounds", help="At most this many rounds (>= 1).", callback=bounded(1)),
    epochs: int = typer.Option(3, "--epochs", help="Training epochs per round (>= 1).", callback=bounded(1)),
    samples: int = typer.Option(1000, "--samples", help="Samples of the domain per round (>= 1).",
                                callback=bounded(1)),
    target: Optional[float] = typer.Option(None, "--target", help="Stop once the sound ‖f1 − f2‖∞ <= this (> 0).",
                                           callback=bounded(0, above=True)),
    target_ratio: Optional[float] = typer.Option(None, "--target-ratio", help="Stop once the bound <= this share of "
                                                 "the initial one, in (0, 1) (paper: 0.67).",
                                                 callback=bounded(0, 1, above=True)),
    prove: float = typer.Option(0.0, "--prove", help="Seconds per round for nnxform equiv's search (input halving, "
                                "or LP/MILP) on the boxes whose bound misses the target: a round it proves ends the "
                                "repair (default 0: the --method bound alone).", callback=bounded(0)),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (> 0).", callback=bounded(0, above=True)),
    batch_size: int = typer.Option(64, "--batch-size", help="Points per step (>= 1).", callback=bounded(1)),
    method: str = typer.Option("symbolic", "--method", help=f"Discrepancy method: {', '.join(DIFFERENCE_METHODS)}."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples and the shuffling.", callback=bounded(0)),
    keep_grid: Optional[bool] = typer.Option(None, "--keep-grid/--no-keep-grid", help="Retrain on COMPRESSED's "
                                             "quantisation grid (default: when it has one; --keep-grid without one "
                                             "is an error)."),
    keep_zeros: Optional[bool] = typer.Option(None, "--keep-zeros/--no-keep-zeros", help="Keep weights that are "
                                              "exactly 0 at 0 (default: when COMPRESSED is on no grid)."),
    refit: bool = typer.Option(True, "--refit/--no-refit", help="Round 1 refits the first and last layers to the "
                               "original by least squares on the domain's samples instead of retraining (off a grid "
                               "only; zeros kept as --keep-zeros says)."),
    scales: str = typer.Option("searched", "--scales", help="On a grid: 'fixed' keeps its steps; 'searched' makes round 1 "
                               "pick new steps (same bits, same size) for the original's weights, by the smallest "
                               "change of each layer's output on the domain's samples."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON here ('-' for stdout)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a PNG of Fig. 2 and the per-round curves here."),
    domain: DomainOptions = None,
) -> None:
    options = RepairOptions(alpha=alpha, update=update, rounds=rounds, epochs=epochs, samples=samples, target=target,
                            target_ratio=target_ratio, lr=lr, batch_size=batch_size, method=method, seed=seed,
                            keep_grid=keep_grid, keep_zeros=keep_zeros, prove=prove, refit=refit, scales=scales).check()
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise NnxformError("--plot needs matplotlib, which is not installed: pip install 'nnxform[plot]'")
    if scale is not None and not (data or train_data or test_data):
        raise NnxformError("--scale needs --data, --train-data or --test-data")
    out = CommandOutput([original, compressed, data, train_data, test_data, *domain.files()], ("-o", output),
                        ("--plot", plot), json_path=json_path)
    f1, f2 = load(original), load(compressed)
    boxes, described = _domain(domain, data, scale, f1)
    extra = load_data(train_data, scale).fit(f1).x if train_data else None
    test = load_data(test_data, scale).fit(f1) if test_data else None
    retraining = f" + {len(extra)} retraining points" if extra is not None else ""
    out.say(f"repair: {compressed} toward {original} on {described}; update {update}, alpha {alpha:g}, up to {rounds} "
            f"rounds x {epochs} epochs on {samples} samples{retraining}")
    result = repair(f1, f2, boxes, options, train_points=extra, test=test, form=file_form(compressed),
                    progress=lambda record, total: out.say(round_line(record, total)))
    figure = {} if plot is None else {plot: plot_repair(result)}
    out.write({"original": original, "compressed": compressed, "output": output, "domain": described,
               **result.to_json()}, {output: result.data, **figure})

    before, after = result.initial, result.final
    out.table(["", "before", f"written (round {result.kept})"],
              [["sound ‖f1 − f2‖∞ over the domain", before.delta_max, after.delta_max],
               ["mean over boxes", before.mean, after.mean],
               ["largest difference seen", before.sampled_max, after.sampled_max],
               *([["accuracy", result.accuracy["compressed"], result.accuracy["repaired"]]]
                 if test is not None else [])])
    out.say(outcome_line(result, output))
    out.say(kept_line(result))
    if test is not None:
        out.say(f"  accuracy on {Path(test.path).name}: original {result.accuracy['original']:.1%}, compressed "
                f"{result.accuracy['compressed']:.1%}, repaired {result.accuracy['repaired']:.1%}")
    for note in result.notes:
        out.say(f"  note: {note}")
