"""``nnxform init``: a fresh dense ReLU network (He initialisation), optionally with BatchNormalization."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import NnxformError
from ..training import init_network
from . import summary
from .application import app
from .common import CommandOutput, bounded


def int_list(text: str, option: str) -> list[int]:
    """Comma-separated positive integers (``64,256,10``), or a one-line error naming ``option``."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise NnxformError(f"{option} must be comma-separated integers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise NnxformError(f"{option} must be integers >= 1, got '{text}'")
    return values


@app.command(name="init", short_help=summary("init"),
             help="Write a new fully connected ReLU network: --layers 64,256,64,10 gives input size 64, hidden layers "
                  "of 256 and 64 units and 10 outputs, as Gemm → [BatchNormalization →] Relu → … → Gemm. "
                  "Weights "
                  "are He-initialised (normal, variance 2/fan-in) from --seed, biases are zero; with --batchnorm a "
                  "BatchNormalization (γ 1, β 0, mean 0, variance 1) follows every hidden Gemm, so that 'nnxform "
                  "train --l1-bn-gamma' can train γ sparse before pruning and folding. The input is [1, n] unless "
                  "--input-shape says otherwise (then a Flatten comes first). The same seed writes the same file.")
def init(
    layers: str = typer.Option(..., "--layers", help="Layer sizes from the input to the output, e.g. 64,256,64,10."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the ONNX network."),
    batchnorm: bool = typer.Option(False, "--batchnorm", help="A BatchNormalization after every hidden Gemm."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="ONNX input shape, e.g. 1,1,8,8 "
                                                                          "(default 1,N for N inputs)."),
    input_name: str = typer.Option("input", "--input-name", help="Name of the input tensor."),
    output_name: str = typer.Option("output", "--output-name", help="Name of the output tensor."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights.", callback=bounded(0)),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
) -> None:
    widths = int_list(layers, "--layers")
    shape = tuple(int_list(input_shape, "--input-shape")) if input_shape else None
    if input_name == output_name:
        raise NnxformError("--input-name and --output-name must differ")
    out = CommandOutput([], ("-o", output), json_path=json_path)
    net = init_network(widths, shape, batchnorm, seed, input_name, output_name)
    parameters = {"layers": widths, "batchnorm": batchnorm, "input_shape": list(net.input_shape), "seed": seed}
    model = net.to_model().with_provenance("init", parameters)
    size = net.size()
    doc = {"output": output, **parameters, "input_name": input_name, "output_name": output_name,
           "parameters": size.parameters, "neurons": size.neurons}
    out.write(doc, {output: model.to_bytes()})
    out.say(f"init: {output}: {' -> '.join(map(str, widths))}{' with BatchNormalization' if batchnorm else ''}, "
            f"input {list(net.input_shape)}, {size.parameters} parameters, seed {seed}")
