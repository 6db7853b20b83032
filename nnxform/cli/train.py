"""``nnxform train``: train or fine-tune a network on labelled data (SGD or Adam, L1 penalties, zero mask)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

from ..accuracy import load_data
from ..errors import NnxformError
from ..fileio import file_sha256
from ..grid import detect, file_form, qdq_model
from ..ir import load
from ..training import OPTIMIZERS, EpochRecord, TrainOptions, train, trainable
from . import summary
from .application import app
from .common import CommandOutput, Progress, bounded


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def epoch_line(record: EpochRecord, epochs: int) -> str:
    """One line per epoch: objective, training accuracy, validation accuracy and loss, time."""
    line = f"  epoch {record.epoch}/{epochs}  loss {record.loss:.4g}  accuracy {_percent(record.accuracy)}"
    if record.validation_loss is not None:
        line += f"  validation {_percent(record.validation_accuracy)} (loss {record.validation_loss:.4g})"
    return line + f"  {record.seconds:.2f} s"


def epoch_report(bar: Progress, header: list[str]) -> Callable[[EpochRecord, int], None]:
    """Training's progress callback: the ``header`` lines once training is under way, then a line per epoch, above
    ``bar`` (which shows the latest loss and accuracy) on a terminal, plainly otherwise."""

    def report(record: EpochRecord, epochs: int) -> None:
        for line in header:
            bar.line(line)
        header.clear()
        bar(record.epoch - 1, epochs, stats="")  # opened before its first line, which goes above it
        bar.line(epoch_line(record, epochs))
        bar(record.epoch, epochs, stats=f"loss {record.loss:.4g}  accuracy {_percent(record.accuracy)}")

    return report


@app.command(name="train", short_help=summary("train"),
             help="Train a copy of MODEL on labelled data with mini-batch SGD with momentum or Adam on the "
                  "cross-entropy of the softmax of its output, in numpy (float64; written as float32). Data: as "
                  "nnxform evaluate (CSV 'label,feature,…' or .npz with x and y, features divided by --scale). "
                  "Trained: Gemm, Conv and ConvTranspose weights and biases, and BatchNormalization γ and β (kept "
                  "as a trainable affine map of its fixed running statistics; fold it afterwards with fold-bn or "
                  "canon); other layers pass gradients and keep their constants. A model without BatchNormalization "
                  "is canonicalised first. --l1 adds l1·Σ|W| over the weights, --l1-bn-gamma adds l1·Σ|γ| (sparse "
                  "training before pruning by |γ|); --keep-zeros keeps every weight that is exactly 0 at 0 "
                  "(fine-tuning after pruning). When MODEL's weights sit on a symmetric integer grid (per tensor or per "
                  "output channel: nnxform quantize's output or a weight-only QDQ file) the grid is detected, said "
                  "and kept: quantisation-aware training with straight-through gradients and fixed scales, the "
                  "network written on the same grid in the same form (--no-keep-grid trains in float; --keep-grid "
                  "on a network on no grid is an error). --validation S holds out that share of the points (chosen by "
                  "--seed), stops after --patience epochs without a better validation accuracy and keeps the best "
                  "epoch's parameters. The same seed and data write the same file; the input and output names and "
                  "shapes are kept, and the provenance records the data's sha256, the seed and every "
                  "hyper-parameter. A loss that turns NaN or infinite stops with an error and writes nothing.")
def train_command(
    model: str = typer.Argument(..., help="ONNX network to train."),
    data: str = typer.Option(..., "--data", help="Labelled data: CSV 'label,features' or .npz with x, y."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the trained ONNX."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Divide the features by this (e.g. 255; > 0).",
                                          callback=bounded(0, above=True)),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training points (>= 1).", callback=bounded(1)),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (> 0).", callback=bounded(0, above=True)),
    batch_size: int = typer.Option(64, "--batch-size", help="Points per step (>= 1).", callback=bounded(1)),
    optimizer: str = typer.Option("adam", "--optimizer", help=f"One of: {', '.join(OPTIMIZERS)}."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum, in [0, 1).", callback=bounded(0)),
    l1: float = typer.Option(0.0, "--l1", help="L1 penalty on the weights of Gemm/Conv/ConvTranspose (>= 0).",
                             callback=bounded(0)),
    l1_bn_gamma: float = typer.Option(0.0, "--l1-bn-gamma", help="L1 penalty on BatchNormalization γ (>= 0).",
                                      callback=bounded(0)),
    keep_zeros: bool = typer.Option(False, "--keep-zeros", help="Keep weights that are exactly 0 at 0."),
    keep_grid: Optional[bool] = typer.Option(None, "--keep-grid/--no-keep-grid", help="Train on MODEL's quantisation "
                                             "grid (default: when it has one)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation split and the shuffling.", callback=bounded(0)),
    validation: float = typer.Option(0.0, "--validation", help="Share of the points held out for early stopping, "
                                                               "in [0, 1).", callback=bounded(0, 1)),
    patience: int = typer.Option(5, "--patience", help="With --validation: epochs without improvement before "
                                                       "stopping (>= 1).", callback=bounded(1)),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
) -> None:
    options = TrainOptions(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                           l1=l1, l1_bn_gamma=l1_bn_gamma, keep_zeros=keep_zeros, seed=seed, validation=validation,
                           patience=patience).check()
    out = CommandOutput([model, data], ("-o", output), json_path=json_path)
    source = load(model)
    points = load_data(data, scale).fit(source)
    net, notes = trainable(source)
    grid = detect(net, file_form(model)) if keep_grid is not False else None
    if keep_grid and grid is None:
        raise NnxformError("--keep-grid: the network's weights sit on no symmetric integer grid (per tensor or per "
                           "output channel, 2 to 16 bits)")
    if grid is not None:
        notes.append(f"grid {grid.describe()} detected and kept (straight-through gradients, scales fixed)")
    header = [f"train: {model} on {points.path}: {len(points.y)} points{f', features / {scale:g}' if scale else ''}, "
              f"{optimizer}, lr {lr:g}, batch {batch_size}", *(f"  note: {note}" for note in notes)]
    with Progress("training", quiet=out.quiet, stdout=True, fields="{task.fields[stats]}", eta=False) as bar:
        trained, result = train(net, points.x, labels=points.y, options=options, progress=epoch_report(bar, header),
                                grid=grid)
    data_sha256 = file_sha256(data)
    provenance = {"data": Path(data).name, "data_sha256": data_sha256, "scale": scale, **options.to_json(),
                  "grid": None if grid is None else grid.to_json()}
    written = trained.to_model().with_provenance("train", provenance).to_onnx()
    if grid is not None and grid.form == "qdq":
        written = qdq_model(written, trained, grid)
    doc = {"model": model, "output": output, "data": data, "data_file_sha256": data_sha256, "scale": scale,
           "notes": notes, "grid": None if grid is None else grid.to_json(), **result.to_json()}
    out.write(doc, {output: written.SerializeToString(deterministic=True)})
    best = result.epochs[result.best_epoch - 1]
    stop = f"stopped early after epoch {result.epochs[-1].epoch}; " if result.stopped_early else ""
    kept = f"kept epoch {result.best_epoch} (validation accuracy {_percent(best.validation_accuracy)})" \
        if result.validation_samples else f"accuracy {_percent(best.accuracy)} on the training points"
    out.say(f"  {stop}{kept}; {result.seconds:.2f} s -> {output}")
    if result.untrained:
        out.say(f"  not trained (constants kept): {', '.join(result.untrained)}")
