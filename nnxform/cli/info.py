"""``nnxform info``: shapes, operators, a layer table, and verifier-friendliness of a model."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import UnsupportedOperator
from ..fileio import Outputs
from ..ir import load
from ..summary import summarize
from ..verifiers import PROFILES, profile, readability
from . import summary
from .application import app
from .common import json_text, say, table


@app.command(short_help=summary("info"),
             help="Describe a model: input/output shapes, opset, operator counts, a layer table (op, output "
                  "shape, neurons, parameters, zero weights), ReLU count, and whether the graph is "
                  "verifier-friendly (a single chain without BN or Sub), naming what blocks it. A model with "
                  "operators nnxform does not support is described too, naming those nodes. --for VERIFIER says whether "
                  "that verifier's ONNX parser reads the model (rules read from its source) and, if not, which "
                  "nodes block it and which nnxform command fixes each (`nnxform canon --for VERIFIER` runs "
                  "them).")
def info(
    model: str = typer.Argument(..., help="ONNX file."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the description as JSON ('-' for stdout)."),
    verifier: Optional[str] = typer.Option(None, "--for", help=f"One of: {', '.join(PROFILES)}."),
) -> None:
    if verifier is not None:
        profile(verifier)  # an unknown name is refused before any file is read
    outputs = Outputs([model])
    outputs.add_path(json_path, "--json", stdout=True)
    try:
        loaded = load(model)
    except UnsupportedOperator:  # describe it anyway, naming what nnxform cannot handle
        loaded = load(model, supported_only=False)
    s = summarize(loaded)
    if verifier is not None:
        s["for"] = readability(loaded, verifier, model)
    outputs.put(json_path, json_text(s))
    outputs.commit()
    quiet = json_path == "-"
    say(f"{s['path']}  (opset {s['opset']}, IR v{s['ir_version']}, {s['producer'] or 'unknown producer'})", quiet)
    say(f"  input  {s['input']['name']} {s['input']['shape']}", quiet)
    for o in s["outputs"]:
        say(f"  output {o['name']} {o['shape']}", quiet)
    say("  operators: " + ", ".join(f"{k} {v}" for k, v in s["operators"].items()), quiet)
    rows = [[l["node"], l["op"], "x".join(map(str, l["output_shape"])), l["neurons"], l["parameters"], l["zero_weights"]]
            for l in s["layers"]]
    table(["node", "op", "output", "neurons", "params", "zeros"], rows, quiet)
    say(f"  ReLU: {s['relu_neurons']} neurons in {s['relu_layers']} layers; parameters: {s['parameters']}", quiet)
    for u in s["unsupported"]:
        say(f"  unsupported (only info and check read it): {u['reason']}", quiet)
    if s["verifier_friendly"]:
        say("  verifier-friendly: yes", quiet)
    else:
        say("  verifier-friendly: no — " + "; ".join(s["blockers"]), quiet)
    if verifier is not None:
        verdict = s["for"]
        say(f"  readable by {verifier}: " + ("yes" if verdict["readable"] else "no")
            + f"  (rules from {verdict['parser']})", quiet)
        for b in verdict["blockers"]:
            say(f"    {b['text']}", quiet)
        if verdict["options"]:
            say(f"  run {verifier} with: {verdict['options']}  (what its default configuration lacks here)", quiet)
