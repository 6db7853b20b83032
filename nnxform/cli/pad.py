"""``nnxform pad``: more affine layers through exact identity layers, checked before writing."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import NnxformError
from ..ir import load
from ..passes import apply_checked
from ..passes.pad import relu_layers
from . import app
from .common import DEFAULT_BOX_HELP, DomainOptions, say, with_domain, write_json


@app.command(short_help="Add exact identity layers up to a depth (checked before writing).",
             help="Give a ReLU network N affine layers (--depth N, or as many as --like OTHER.onnx has) by "
                  "inserting exact identity layers before its last layer: Gemm(I) → Relu after a ReLU, or "
                  "[I; −I] → Relu → [I, −I] (relu(x) − relu(−x)) in a network without ReLU. The network must be "
                  "a chain of affine layers and ReLUs; it is written as one dense chain, Flatten → Gemm → Relu → "
                  "… → Gemm (convolutions become dense Gemm layers). Before writing, the result is run in "
                  "onnxruntime against the input on --samples points of the domain (plus corners and centre); "
                  "nothing is written beyond --tol. " + DEFAULT_BOX_HELP)
@with_domain
def pad(
    model: str = typer.Argument(..., help="Input ONNX file."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the padded ONNX."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Number of affine (Gemm) layers wanted."),
    like: Optional[str] = typer.Option(None, "--like", help="Pad to the depth of this ONNX network."),
    samples: int = typer.Option(1000, help="Uniform samples for the exactness check."),
    tol: float = typer.Option(1e-5, help="Tolerance of the exactness check (absolute and relative)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if (depth is None) == (like is None):
        raise NnxformError("give the target depth one way: --depth N or --like OTHER.onnx")
    source = load(model)
    target = depth if like is None else len(relu_layers(load(like), "pad"))
    result, report, cmp = apply_checked("pad", source, domain.box(source), samples=samples, tol=tol,
                                        parameters={"like": like, "domain": domain.describe()}, depth=target)
    result.save(output)
    quiet = json_path == "-"
    before, after = report.counts["layers_before"], report.counts["layers_after"]
    say(f"pad: {model} -> {output}", quiet)
    say(f"  affine layers: {before} -> {after}", quiet)
    for line in report.changes:
        say(f"    {line}", quiet)
    say(f"  checked on {cmp.samples} points: max |difference| {cmp.max_abs:.3g} (tolerance {tol:g}) — same function",
        quiet)
    if json_path:
        write_json({"input": model, "output": output, "layers_before": before, "layers_after": after,
                    "changes": report.changes, "operators_after": result.op_counts(),
                    "check": {"samples": cmp.samples, "max_abs": cmp.max_abs, "mean_abs": cmp.mean_abs,
                              "tolerance": tol}}, json_path)
