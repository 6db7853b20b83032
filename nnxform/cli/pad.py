"""``nnxform pad``: more affine layers through exact identity layers, checked before writing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import NnxformError
from ..ir import load
from ..passes import rewrite
from ..passes.pad import MAX_DENSE_IDENTITY, affine_depth
from . import summary
from .application import app
from .common import (DEFAULT_BOX_HELP, CommandOutput, DomainOptions, bounded, samples_option, tol_option,
                     with_domain)

#: The deepest --depth accepted: far beyond any verifier benchmark (a width-256 network padded to it is ~260 MB).
MAX_DEPTH = 1000


@app.command(short_help=summary("pad"),
             help="Give a ReLU network N affine layers (--depth N, or as many as --like OTHER.onnx has) by "
                  "inserting exact identity layers before its last layer: Gemm(I) → Relu after a ReLU, or "
                  "[I; −I] → Relu → [I, −I] (relu(x) − relu(−x)) in a network without ReLU. The network must be "
                  "a chain of affine layers and ReLUs; it is written as one dense chain, Flatten → Gemm → Relu → "
                  "… → Gemm, except that Conv, Relu and pooling layers before the last Flatten are kept as they are: "
                  "the identity layers then go in the dense layers after it, or, when those have no hidden layer, "
                  "as 1×1 Convs with identity kernels, each followed by a Relu, after the "
                  "head's last Relu or pooling (values ≥ 0, so exact). A dense identity over more than "
                  f"{MAX_DENSE_IDENTITY} units of a densified CNN is refused. Before writing, the result is run in "
                  "onnxruntime against the input on --samples points of the domain (plus corners and centre); "
                  "nothing is written beyond --tol. " + DEFAULT_BOX_HELP)
@with_domain
def pad(
    model: str = typer.Argument(..., help="Input ONNX file."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the padded ONNX."),
    depth: Optional[int] = typer.Option(None, "--depth", help=f"Number of affine (Gemm) layers wanted (at most "
                                                              f"{MAX_DEPTH}).", callback=bounded(1, MAX_DEPTH)),
    like: Optional[str] = typer.Option(None, "--like", help="Pad to the depth of this ONNX network."),
    samples: int = samples_option(),
    tol: float = tol_option(),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if (depth is None) == (like is None):
        raise NnxformError("give the target depth one way: --depth N or --like OTHER.onnx")
    out = CommandOutput([model, like, *domain.files()], ("-o", output), json_path=json_path)
    source = load(model)
    target = depth if like is None else affine_depth(load(like))
    done = rewrite("pad", source, domain.box(source), samples=samples, tol=tol,
                   parameters={"like": None if like is None else Path(like).name, "domain": domain.describe()},
                   depth=target)
    result, report, cmp = done.model, done.report, done.check
    before, after = report.counts["layers_before"], report.counts["layers_after"]
    out.write({**done.to_json(model, output), "layers_before": before, "layers_after": after},
              {output: result.to_bytes()})
    out.say(f"pad: {model} -> {output}")
    out.say(f"  affine layers: {before} -> {after}")
    for line in report.changes:
        out.say(f"    {line}")
    out.say(f"  checked on {cmp.samples} points: max |difference| {cmp.max_abs:.3g} (tolerance {cmp.tolerance(tol)}) "
            "— same function")
