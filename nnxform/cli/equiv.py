"""``nnxform equiv``: decide whether two networks are ε-equivalent on an input box."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import typer

from ..equiv import equivalence, top1_equivalence
from ..errors import NnxformError
from ..ir import load
from . import summary
from .application import app
from .common import CommandOutput, DomainOptions, Progress, bounded, with_domain

#: Exit status per answer: a Makefile goes on only after a proof.
EXIT = {"equivalent": 0, "not equivalent": 1, "unknown": 3}


@app.command(short_help=summary("equiv"),
             help="Decide whether two networks agree on every x of an input box. With --equiv-eps E: whether "
                  "max ‖f_A(x) − f_B(x)‖∞ < E — 'equivalent' (proved by the difference analysis, refined by halving "
                  "the input box for networks with at most 16 inputs, or by its LP and MILP forms for others), 'not "
                  "equivalent' (an input whose difference, replayed in onnxruntime, reaches E) or 'unknown' when "
                  "--timeout ends first; the best proved bound and the largest difference found are printed either "
                  "way. The difference is that of the float32 networks as onnxruntime runs them (both networks' "
                  "rounding bounded), or with --real that of the real-valued networks, as NeuroDiff and the VNN-COMP "
                  "verifiers read them. With --top1: whether both networks pick the same class (arg-max) everywhere, "
                  "decided by verify's branch and bound on both graphs side by side. Exit status 0 equivalent, 1 not "
                  "equivalent, 3 unknown, 2 bad input. The input box is required.")
@with_domain
def equiv(
    model_a: str = typer.Argument(..., help="First network (f_A) ONNX file."),
    model_b: str = typer.Argument(..., help="Second network (f_B) ONNX file."),
    threshold: Optional[float] = typer.Option(None, "--equiv-eps",
                                              help="The threshold E: equivalent when ‖f_A − f_B‖∞ < E on the box (as "
                                                   "merge's --equiv-eps; --eps is the box's radius).",
                                              callback=bounded(0, above=True)),
    top1: bool = typer.Option(False, "--top1", help="Decide top-1 equivalence (the same arg-max everywhere on the "
                                                    "box) instead of --equiv-eps."),
    real: bool = typer.Option(False, "--real", help="With --equiv-eps: decide it for the real-valued networks "
                                                    "(rounding left out); a counterexample must reach E in float64 "
                                                    "arithmetic and in onnxruntime."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds for the whole command, loading included.",
                                  callback=bounded(0, above=True)),
    json_path: Optional[str] = typer.Option(None, "--json",
                                            help="Write the answer and figures as JSON ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    started = time.monotonic()  # the timeout counts from here: loading is part of the command
    if (threshold is None) == (not top1):
        raise NnxformError("equiv decides one question: give --equiv-eps E (‖f_A − f_B‖∞ < E) or --top1 (the same "
                           "arg-max), not both or neither")
    if top1 and real:
        raise NnxformError("--real applies to --equiv-eps; --top1 decides the float32 networks onnxruntime runs")
    out = CommandOutput([model_a, model_b, *domain.files()], json_path=json_path)
    a, b = load(model_a), load(model_b)
    box = domain.box(a, default=False)
    if box is None:
        raise NnxformError("equiv needs the input box (--lower/--upper, --center/--eps or --vnnlib)")
    left = timeout - (time.monotonic() - started)
    if top1:
        r = top1_equivalence(a, b, box, left)
    else:
        fields = "bound {task.fields[bound]}, found {task.fields[found]}, {task.fields[leaves]} boxes"
        with Progress("seconds", quiet=out.quiet, fields=fields, eta=False) as bar:
            r = equivalence(a, b, box, threshold, left, real, progress=lambda seconds, bound, found, leaves: bar(
                int(seconds), int(np.ceil(left)), bound=f"{bound:.3g}", found=f"{found:.3g}", leaves=leaves))
    out.write(dict(r.to_json(), first=model_a, second=model_b, domain=domain.describe()))
    question = "the same arg-max" if top1 else f"E = {threshold:g}{' (real-valued networks)' if real else ''}"
    out.say(f"equiv: {model_a} vs {model_b} on {box.size} inputs, {question}: {r.answer}")
    for note in r.notes:
        out.say(f"  note: {note}")
    if top1:
        if r.answer == "not equivalent":
            out.say(f"  counterexample: x = {np.array2string(r.witness, precision=6, threshold=20)}: the first network "
                    f"picks class {r.classes[0]}, the second {r.classes[1]} (onnxruntime)")
    else:
        out.say(f"  proved: ‖f_A − f_B‖∞ <= {r.bound:.6g} on the box ({r.leaves} "
                f"sub-box{'es' if r.leaves > 1 else ''}, {r.analysis} analysis); largest found: {r.found:.6g} "
                f"(onnxruntime{' and float64' if real else ''})")
        if r.answer == "not equivalent":
            out.say(f"  counterexample: x = {np.array2string(r.witness, precision=6, threshold=20)}")
    out.say(f"  {r.seconds:.2f} s")
    raise typer.Exit(EXIT[r.answer])
