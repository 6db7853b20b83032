"""``nnxform merge``: one network ``f_A − f_B`` on one shared input, optionally with its ε-equivalence query."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import NnxformError
from ..ir import load
from ..merge import OUTPUT
from ..merge import merge as merge_models
from ..vnnlib import equivalence_property, instances_csv
from . import summary
from .application import app
from .common import (DEFAULT_BOX_HELP, CommandOutput, DomainOptions, bounded, samples_option, tol_option,
                     with_domain)


def _dims(dims: tuple) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


@app.command(short_help=summary("merge"),
             help="Merge two ReLU networks into one on ONE shared input whose output is f_A(x) − f_B(x): a "
                  "single chain Flatten → Gemm → Relu → … → Gemm, the first Gemm stacking [W_A; W_B], the hidden "
                  "ones block-diagonal, the comparison [I, −I] folded into the last (no Sub, no parallel "
                  "branches). Two CNNs whose layers before the last Flatten align (Conv, Relu, pooling with the same "
                  "kernels, strides, pads; a layer of the deeper head may stand beside an exact identity of its kind "
                  "in the other: a Conv of its geometry with one non-zero tap when it keeps the spatial size, a Relu "
                  "where the values are already ≥ 0, a 1×1 pooling) stay convolutional: the first Conv stacks both "
                  "filter banks, later ones are block-diagonal over channels, and the output lists the identity "
                  "layers; other convolutions are merged as dense Gemm layers, and the output says why. Networks "
                  "with skip connections (or MaxPool outside an aligned convolutional head) are merged as one "
                  "graph: both side by side on the shared input, f_A − f_B = Add(f_A, −f_B), a DAG for the verifiers that read graphs. Different depths are padded with "
                  "exact identity layers, widths may differ; the inputs must have the same number of elements "
                  "(paired in row-major order, so [1,784,1] and [1,1,28,28] match) and the outputs the same size. "
                  "The merged network keeps the first network's input; its output is 'delta' = f_A − f_B, or "
                  "f_A − f_B then f_A then f_B (one output, 3× the size) with --keep-outputs. Before writing "
                  "it is run in onnxruntime against f_A − f_B on --samples points of the domain (plus corners "
                  "and centre); nothing is written beyond --tol·(1 + |y|) + --tol·|W|·|x| (|y| the larger of "
                  "|f_A|, |f_B|; |W|·|x| the larger of their absolute chains). With --write-vnnlib and --equiv-eps E "
                  "it also writes the "
                  "ε-equivalence query (unsafe: some |Y_j| >= E; unsat proves |f_A − f_B| < E on the box, which "
                  "must then be given) and its line in a VNN-COMP instances.csv. " + DEFAULT_BOX_HELP)
@with_domain
def merge(
    model_a: str = typer.Argument(..., help="First network (f_A) ONNX file."),
    model_b: str = typer.Argument(..., help="Second network (f_B) ONNX file."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the merged ONNX."),
    keep_outputs: bool = typer.Option(False, "--keep-outputs",
                                      help="Output f_A − f_B, then f_A, then f_B (one tensor, in that order)."),
    write_vnnlib: Optional[str] = typer.Option(None, "--write-vnnlib",
                                               help="Write the ε-equivalence VNN-LIB query here."),
    equiv_eps: Optional[float] = typer.Option(None, "--equiv-eps", help="ε of the equivalence query (> 0).",
                                              callback=bounded(0, above=True)),
    instances: Optional[str] = typer.Option(
        None, "--instances", help="instances.csv to add the query to (default: beside the VNN-LIB file)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Timeout in seconds written in instances.csv (> 0).",
                                  callback=bounded(0, above=True)),
    samples: int = samples_option(),
    tol: float = tol_option(),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if (write_vnnlib is None) != (equiv_eps is None):
        raise NnxformError("--write-vnnlib and --equiv-eps go together")
    if instances is not None and write_vnnlib is None:
        raise NnxformError("--instances needs --write-vnnlib")
    csv = None if write_vnnlib is None else instances or str(Path(write_vnnlib).parent / "instances.csv")
    out = CommandOutput([model_a, model_b, *domain.files()], ("-o", output), ("--write-vnnlib", write_vnnlib),
                        ("--instances" if instances else "", csv), json_path=json_path)
    csv_text, line = (None, None) if csv is None else instances_csv(csv, output, write_vnnlib, timeout)
    a, b = load(model_a), load(model_b)
    box = domain.box(a, default=write_vnnlib is None)
    if box is None:
        raise NnxformError("--write-vnnlib needs the input box (--lower/--upper, --center/--eps or --vnnlib)")
    merged, report, cmp = merge_models(a, b, keep_outputs=keep_outputs, box=box, samples=samples, tol=tol,
                                       parameters={"first": Path(model_a).name, "second": Path(model_b).name,
                                                   "domain": domain.describe()})
    n_outputs = 3 * report.outputs if keep_outputs else report.outputs
    query = {} if equiv_eps is None else {write_vnnlib: equivalence_property(box, n_outputs, equiv_eps, report.outputs),
                                          csv: csv_text}
    out.write({"first": model_a, "second": model_b, "output": output, **report.to_json(), "vnnlib": write_vnnlib,
               "instances": csv, "instance": line, "check": cmp.to_json()}, {output: merged.to_bytes(), **query})

    out.say(f"merge: {model_a} − {model_b} -> {output}")
    shapes = f"{_dims(report.input_shape_a)} and {_dims(report.input_shape_b)}"
    out.say(f"  inputs: {shapes}, paired element by element in row-major order (different shapes)"
            if report.shapes_differ else f"  input: {_dims(report.input_shape_a)} shared")
    out.say(f"  affine layers: {report.depth_a} and {report.depth_b} -> {report.depth}")
    for note in report.padding:
        out.say(f"    padded {note}")
    if report.form:
        out.say(f"  {report.form}")
    out.say(f"  merged layer widths (channels of a Conv, units of a Gemm): {', '.join(map(str, report.widths))}")
    what = "f_A − f_B, f_A, f_B" if keep_outputs else "f_A − f_B"
    out.say(f"  output '{OUTPUT}': {what}, {report.outputs} values each")
    out.say(f"  checked on {cmp.samples} points: max |merged − expected| {cmp.max_abs:.3g} "
            f"(tolerance {cmp.tolerance(tol)})")
    if line is not None:
        out.say(f"  ε-equivalence query (ε = {equiv_eps!r}): {write_vnnlib}; {csv}: {line}")
