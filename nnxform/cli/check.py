"""``nnxform check``: sampled equivalence of two networks on the same input domain."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import NnxformError
from ..exactness import compare
from ..fileio import atomic_write_bytes
from ..ir import load
from . import app
from .common import DEFAULT_BOX_HELP, DomainOptions, say, with_domain, write_json


@app.command(short_help="Sampled equivalence of two networks (exit 1 beyond --tol).",
             help="Compare two networks with the same input on sampled points of the domain (uniform samples, "
                  "box corners and the centre) in onnxruntime. Prints the max and mean |difference|; exit status "
                  "0 when every output is within --tol (absolute + relative), 1 beyond it. Runs any model "
                  "onnxruntime runs, also with operators other commands do not support. " + DEFAULT_BOX_HELP)
@with_domain
def check(
    model_a: str = typer.Argument(..., help="First ONNX file."),
    model_b: str = typer.Argument(..., help="Second ONNX file."),
    samples: int = typer.Option(10000, help="Uniform samples."),
    seed: int = typer.Option(0, help="Random seed of the samples."),
    tol: float = typer.Option(1e-5, help="Tolerance (absolute and relative)."),
    save_worst: Optional[str] = typer.Option(None, "--save-worst", help="Save the input with the largest difference (.npy)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the result as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    if samples < 1:
        raise NnxformError(f"--samples is {samples}; give a positive number of samples")
    if not tol >= 0 or tol == float("inf"):
        raise NnxformError(f"--tol is {tol:g}; give a finite tolerance >= 0")
    a, b = load(model_a, supported_only=False), load(model_b, supported_only=False)
    if a.input_size != b.input_size:
        raise NnxformError(f"the inputs differ: {model_a} takes {a.input_size} values, {model_b} takes {b.input_size}")
    box = domain.box(a)
    cmp = compare(a, b, box, samples=samples, seed=seed, atol=tol, rtol=tol)
    if save_worst:
        import io

        buf = io.BytesIO()
        np.save(buf, cmp.worst_input.reshape(a.input_shape).astype(a.dtype))
        atomic_write_bytes(Path(save_worst), buf.getvalue())
    quiet = json_path == "-"
    verdict = "same function within tolerance" if cmp.within else "DIFFERENT beyond tolerance"
    say(f"check: {model_a} vs {model_b} on {cmp.samples} points", quiet)
    say(f"  max |difference| {cmp.max_abs:.6g}, mean {cmp.mean_abs:.6g} (tolerance {tol:g}): {verdict}", quiet)
    if json_path:
        write_json({"samples": cmp.samples, "max_abs": cmp.max_abs, "mean_abs": cmp.mean_abs, "tolerance": tol,
                    "within": cmp.within, "worst_input": cmp.worst_input}, json_path)
    raise typer.Exit(0 if cmp.within else 1)
