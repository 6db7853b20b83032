"""``nnxform quantize``: weights on a symmetric integer grid (or float16), stored as float32; a sound drift bound."""

from __future__ import annotations

import time
from typing import Optional

import typer

from ..discrepancy import METHODS
from ..errors import NnxformError
from ..ir import load
from ..passes.quantize import LAYERS, MAX_BITS, MIN_BITS
from ..workflows import quantize_with_drift
from . import summary
from .application import app
from .common import LIMIT_REACHED, CommandOutput, DomainOptions, Progress, bounded, with_domain


@app.command(name="quantize", short_help=summary("quantize"),
             help="Quantise the weights of every Gemm, MatMul, Conv and ConvTranspose (their constant weight input): "
                  "--bits N rounds them to the symmetric integer grid of 2^(N-1) - 1 levels per side, scale = "
                  "max|w| / (2^(N-1) - 1) per tensor or, with --per-channel, per output channel (round half to even); "
                  "--float16 rounds them to the nearest float16. The result is stored as float32 (the weights' own "
                  "float type), exactly as DequantizeLinear(q, scale) computes it, so every verifier reads it; biases "
                  "and all other constants stay float32 as they are. The report gives, per layer, the largest and "
                  "mean weight error and the scale. With a domain (--lower/--upper, --center/--eps, --vnnlib), it also "
                  "bounds max |f_quantized − f| over it soundly, by the discrepancy analysis of the two networks "
                  "(--drift-method), and gives the largest difference over --samples points of the domain in "
                  "onnxruntime, which never exceeds the bound (nothing is written if it did).")
@with_domain
def quantize(
    model: str = typer.Argument(..., help="ONNX network to quantise."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the quantised ONNX."),
    bits: Optional[int] = typer.Option(None, "--bits", help=f"Width of the integer grid, {MIN_BITS}..{MAX_BITS}.",
                                       callback=bounded(MIN_BITS, MAX_BITS)),
    per_channel: bool = typer.Option(False, "--per-channel", help="With --bits: one scale per output channel."),
    float16: bool = typer.Option(False, "--float16", help="Round the weights to float16 instead of an integer grid."),
    drift_method: str = typer.Option("symbolic", "--drift-method",
                                     help=f"Discrepancy method of the drift bound: {', '.join(METHODS)}."),
    samples: int = typer.Option(10000, "--samples", help="Uniform samples of the domain for the sampled difference.",
                                callback=bounded(1)),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples.", callback=bounded(0)),
    time_limit: float = typer.Option(60.0, "--time-limit", callback=bounded(0, above=True),
                                     help="Seconds for the whole command: quantising and the sampled check, then the "
                                          "drift bound (back-substitution, solves and the witness search) in what is "
                                          "left; past it the bounds not tightened keep the cheaper method's, still "
                                          "sound."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if (bits is None) == (not float16):
        raise NnxformError("give one quantisation: --bits N or --float16")
    if per_channel and float16:
        raise NnxformError("--per-channel applies to --bits, not to --float16")
    started = time.monotonic()  # the time limit counts from here: loading is part of the command
    out = CommandOutput([model, *domain.files()], ("-o", output), json_path=json_path)
    net = load(model)
    box = domain.box(net, default=False)
    with Progress() as bar:
        result = quantize_with_drift(net, bits, per_channel, float16, box=box, method=drift_method,
                                     time_limit=time_limit, samples=samples, seed=seed, domain=domain.describe(),
                                     progress=bar.stage, started=started)
    out.write(result.to_json(model, output), {output: result.model.to_bytes()})

    out.say(f"quantize: {model} -> {output}: weights of {', '.join(LAYERS)} on the {result.grid} grid, stored as "
            "float32; biases unchanged (float32)")
    out.table(["node", "op", "weight", "shape", "scale", "max |w|", "max error", "mean error"],
              [[q.node, q.op, q.weight, "x".join(map(str, q.shape)), q.scale_text(), q.max_weight, q.max_error,
                q.mean_error] for q in result.layers])
    if result.drift is not None and result.sampled is not None:
        d = result.drift
        out.say(f"  drift: max |f_quantized − f| <= {d.delta_max:.6g} on the domain ({d.method}, sound; "
                f"{d.seconds:.2f} s); largest difference seen {result.sampled_max:.6g} (over {result.sampled.samples} "
                f"points in onnxruntime and the analysis's witness)")
        if d.details.get("time_limit_reached"):
            out.say(f"  --time-limit reached: {LIMIT_REACHED}")
    else:
        out.say("  no domain given: no bound on |f_quantized − f| (give --lower/--upper, --center/--eps or --vnnlib)")
