"""``nnxform check``: sampled equivalence of two networks on the same input domain."""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
import typer

from ..errors import NnxformError
from ..exactness import compare
from ..ir import load
from . import summary
from .application import app
from .common import (DEFAULT_BOX_HELP, CommandOutput, DomainOptions, bounded, samples_option, tol_option,
                     with_domain)


@app.command(short_help=summary("check"),
             help="Compare two networks with the same input on sampled points of the domain (uniform samples, "
                  "box corners and the centre) in onnxruntime. Prints the max and mean |difference|; exit status "
                  "0 when every output is within --tol (absolute + relative), 1 beyond it. Runs any model "
                  "onnxruntime runs, also with operators other commands do not support. " + DEFAULT_BOX_HELP)
@with_domain
def check(
    model_a: str = typer.Argument(..., help="First ONNX file."),
    model_b: str = typer.Argument(..., help="Second ONNX file."),
    samples: int = samples_option(10000),
    seed: int = typer.Option(0, "--seed", help="Random seed of the samples.", callback=bounded(0)),
    tol: float = tol_option(),
    save_worst: Optional[str] = typer.Option(None, "--save-worst", help="Save the input with the largest difference (.npy)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the result as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    out = CommandOutput([model_a, model_b, *domain.files()], ("--save-worst", save_worst), json_path=json_path)
    a, b = load(model_a, supported_only=False), load(model_b, supported_only=False)
    if a.input_size != b.input_size:
        raise NnxformError(f"the inputs differ: {model_a} takes {a.input_size} values, {model_b} takes {b.input_size}")
    box = domain.box(a)
    cmp = compare(a, b, box, samples=samples, seed=seed, atol=tol, rtol=tol)
    worst = io.BytesIO()
    np.save(worst, cmp.worst_input.reshape(a.input_shape).astype(a.dtype))
    out.write({"samples": cmp.samples, "max_abs": cmp.max_abs, "mean_abs": cmp.mean_abs, "tolerance": tol,
               "within": cmp.within, "worst_input": cmp.worst_input}, {save_worst: worst.getvalue()})
    verdict = "same function within tolerance" if cmp.within else "DIFFERENT beyond tolerance"
    out.say(f"check: {model_a} vs {model_b} on {cmp.samples} points")
    out.say(f"  max |difference| {cmp.max_abs:.6g}, mean {cmp.mean_abs:.6g} (tolerance {cmp.tolerance(tol)}): "
            f"{verdict}")
    raise typer.Exit(0 if cmp.within else 1)
