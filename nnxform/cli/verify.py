"""``nnxform verify``: decide a VNN-LIB property of a network (sat with a replayed counterexample, or unsat)."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import typer

from ..ir import load
from ..verify import verify as decide
from ..vnnlib import read_specification
from . import summary
from .application import app
from .common import CommandOutput, Progress, bounded

#: Exit status per answer: a Makefile goes on only after a proof.
EXIT = {"unsat": 0, "sat": 1, "timeout": 3, "unknown": 3}


@app.command(short_help=summary("verify"),
             help="Decide a VNN-LIB property (VNN-COMP's form: input boxes, possibly a disjunction of them, and an "
                  "output condition in disjunctive normal form stating the unsafe outputs). Answers unsat (proved: "
                  "no input of the boxes reaches an unsafe output, for the network as onnxruntime runs it in float32), "
                  "sat (a counterexample found and replayed in onnxruntime: printed, and written to --result), "
                  "timeout, or unknown. The search: sound bounds of every box, a projected-gradient attack from many "
                  "starts, then branch and bound: over the input box for networks with at most 16 inputs, such as "
                  "ACAS Xu (both halves of every input are bounded and the best split is kept), over ReLU signs "
                  "otherwise (the splits the bound loses most on, with optimised slopes and split multipliers), and "
                  "a MILP on branches with few unstable ReLUs left. Exit status 0 for unsat, 1 for sat, 3 for "
                  "timeout or unknown, 2 for bad input.")
def verify(
    model: str = typer.Argument(..., help="ONNX file."),
    prop: str = typer.Argument(..., metavar="PROPERTY", help="VNN-LIB file (the unsafe region)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds for the whole command, loading included.",
                                  callback=bounded(0, above=True)),
    result: Optional[str] = typer.Option(None, "--result",
                                         help="Write the VNN-COMP result file: the answer on the first line, for sat "
                                              "the assignment ((X_0 v) ... (Y_0 v))."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the answer and the search's figures as JSON "
                                                                 "('-' for stdout)."),
    workers: int = typer.Option(2, "--workers", help="Processes: a property not decided in its first second is "
                                                     "searched on in that many at once (networks with at most 16 "
                                                     "inputs: slices of the box; others: shares of the open branches; "
                                                     "1: one process).",
                                callback=bounded(1)),
) -> None:
    started = time.monotonic()  # the timeout counts from here: loading is part of the command
    out = CommandOutput([model, prop], ("--result", result), json_path=json_path)
    net = load(model)
    n_outputs = int(np.prod(net.shapes()[net.output_name], dtype=np.int64))
    cases = read_specification(prop, (net.input_size, n_outputs))
    with Progress("proved ‰", quiet=out.quiet, fields="{task.fields[open]} open", eta=False) as bar:
        verdict = decide(net, cases, timeout - (time.monotonic() - started),
                         progress=lambda done, open_, seconds: bar(done, 1000, open=open_), workers=workers)
    out.write(verdict.to_json(), {result: verdict.result_text()})
    out.say(f"verify: {model}, {prop}: {verdict.answer}")
    if verdict.counterexample is not None:
        out.say(f"  counterexample (case {verdict.case}), replayed in onnxruntime:")
        out.say(f"    x = {np.array2string(verdict.counterexample, precision=6, threshold=20)}")
        out.say(f"    y = {np.array2string(verdict.outputs, precision=6, threshold=20)}")
    out.say(f"  {verdict.branches} boxes bounded, {100 * verdict.proved:.2f} % of the input volume proved, "
            f"{verdict.seconds:.2f} s")
    if verdict.note:
        out.say(f"  note: {verdict.note}")
    raise typer.Exit(EXIT[verdict.answer])
