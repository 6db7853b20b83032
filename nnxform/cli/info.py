"""``nnxform info``: shapes, operators, a layer table, and verifier-friendliness of a model."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import UnsupportedOperator
from ..ir import load
from ..summary import summarize
from ..verifiers import PROFILES, profile, readability
from . import summary
from .application import app
from .common import CommandOutput


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
    out = CommandOutput([model], json_path=json_path)
    try:
        loaded = load(model)
    except UnsupportedOperator:  # describe it anyway, naming what nnxform cannot handle
        loaded = load(model, supported_only=False)
    s = summarize(loaded)
    if verifier is not None:
        s["for"] = readability(loaded, verifier, model)
    out.write(s)
    out.say(f"{s['path']}  (opset {s['opset']}, IR v{s['ir_version']}, {s['producer'] or 'unknown producer'})")
    out.say(f"  input  {s['input']['name']} {s['input']['shape']}")
    for o in s["outputs"]:
        out.say(f"  output {o['name']} {o['shape']}")
    out.say("  operators: " + ", ".join(f"{k} {v}" for k, v in s["operators"].items()))
    rows = [[l["node"], l["op"], "x".join(map(str, l["output_shape"])), l["neurons"], l["parameters"], l["zero_weights"]]
            for l in s["layers"]]
    out.table(["node", "op", "output", "neurons", "params", "zeros"], rows)
    out.say(f"  ReLU: {s['relu_neurons']} neurons in {s['relu_layers']} layers; parameters: {s['parameters']}")
    for u in s["unsupported"]:
        out.say(f"  unsupported (only info and check read it): {u['reason']}")
    if s["verifier_friendly"]:
        out.say("  verifier-friendly: yes")
    else:
        out.say("  verifier-friendly: no — " + "; ".join(s["blockers"]))
    if verifier is not None:
        verdict = s["for"]
        out.say(f"  readable by {verifier}: " + ("yes" if verdict["readable"] else "no")
                + f"  (rules from {verdict['parser']})")
        for b in verdict["blockers"]:
            out.say(f"    {b['text']}")
        if verdict["options"]:
            out.say(f"  run {verifier} with: {verdict['options']}  (what its default configuration lacks here)")
