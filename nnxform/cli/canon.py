"""``nnxform canon`` and ``nnxform fold-bn``: function-preserving rewrites, checked before writing."""

from __future__ import annotations

from typing import Optional

import typer

from ..ir import load
from ..passes import rewrite
from ..verifiers import PROFILES, profile
from ..workflows import prepare_for
from . import summary
from .application import app
from .common import DEFAULT_BOX_HELP, CommandOutput, DomainOptions, samples_option, tol_option, with_domain

_CHECK_HELP = (
    "Before writing, the result is run in onnxruntime against the input on --samples uniform points of "
    "the domain, plus box corners and the centre; nothing is written if any output differs by more than "
    "--tol (absolute + relative). " + DEFAULT_BOX_HELP
)


def _run(pass_name: str, model_path: str, output: str, domain: DomainOptions, samples: int, tol: float,
         json_path: Optional[str], verbose: bool) -> None:
    out = CommandOutput([model_path, *domain.files()], ("-o", output), json_path=json_path)
    model = load(model_path)
    done = rewrite(pass_name, model, domain.box(model), samples=samples, tol=tol,
                   parameters={"domain": domain.describe()})
    result, report, cmp = done.model, done.report, done.check
    out.write(done.to_json(model_path, output), {output: result.to_bytes()})
    out.say(f"{pass_name}: {model_path} -> {output}")
    out.say(f"  operators before: {_ops(model.op_counts())}")
    out.say(f"  operators after:  {_ops(result.op_counts())}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()) if v) or "nothing to change"
    out.say(f"  changes: {counts}")
    if verbose or pass_name == "fold-bn":
        for line in report.changes:
            if pass_name != "fold-bn" or "BN" in line:
                out.say(f"    {line}")
    out.say(f"  checked on {cmp.samples} points: max |difference| {cmp.max_abs:.3g} (tolerance {cmp.tolerance(tol)}) "
            "— same function")


def _run_for(verifier: str, model_path: str, output: str, domain: DomainOptions, samples: int, tol: float,
             json_path: Optional[str]) -> None:
    profile(verifier)  # an unknown name is refused before any file is read
    out = CommandOutput([model_path, *domain.files()], ("-o", output), json_path=json_path)
    model = load(model_path)
    prepared = prepare_for(model, verifier, domain.box(model), samples=samples, tol=tol,
                           parameters={"domain": domain.describe()})
    out.write({"pass": "canon", "input": model_path, "output": output, "operators_before": model.op_counts(),
               **prepared.to_json()}, {output: prepared.model.to_bytes()})
    out.say(f"canon --for {verifier}: {model_path} -> {output}")
    out.say(f"  operators before: {_ops(model.op_counts())}")
    out.say(f"  operators after:  {_ops(prepared.model.op_counts())}")
    for step in prepared.steps:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(step.report.counts.items()) if v) or "nothing to change"
        out.say(f"  {step.name}: {counts}; checked on {step.check.samples} points: max |difference| "
                f"{step.check.max_abs:.3g} (tolerance {step.check.tolerance(tol)})")
    out.say(f"  readable by {verifier}: yes (rules from {prepared.source})")
    if prepared.options:
        out.say(f"  run {verifier} with: {prepared.options}  (what its default configuration lacks here)")


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in counts.items())


@app.command(short_help=summary("canon"),
             help="Rewrite a model into verifier-friendly ONNX: one input and output; Gemm/MatMul, Conv, "
                  "Relu, Flatten, …; no BatchNormalization, Sub, Div, Identity, Dropout, Constant, Shape, "
                  "Gather; input normalisation and consecutive affine layers folded. --for VERIFIER also "
                  "rewrites a ReLU network as one chain (pad at its own depth) when that verifier needs it, "
                  "and refuses (exit 2, nothing written) when its parser still cannot read the result, naming "
                  "the node and why; what no command removes (an operator the verifier lacks, on a node canon keeps) is "
                  "refused from the graph, before any rewriting. "
                  + _CHECK_HELP)
@with_domain
def canon(
    model: str = typer.Argument(..., help="Input ONNX file."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the canonical ONNX."),
    samples: int = samples_option(),
    tol: float = tol_option(),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="List every change."),
    verifier: Optional[str] = typer.Option(None, "--for", help=f"Produce what this verifier reads: one of "
                                                                f"{', '.join(PROFILES)}."),
    domain: DomainOptions = None,
) -> None:
    if verifier is None:
        _run("canon", model, output, domain, samples, tol, json_path, verbose)
    else:
        _run_for(verifier, model, output, domain, samples, tol, json_path)


@app.command("fold-bn", short_help=summary("fold-bn"),
             help="Fold BatchNormalization into the preceding Gemm/MatMul/Conv, or forward into the "
                             "next affine layer where exact (after a ReLU); any BN left becomes an explicit "
                             "affine (diagonal Gemm, or diagonal 1x1 Conv with every attribute written out, as Marabou "
                             "and pynever need; canon also makes grouped convolutions one group). " + _CHECK_HELP)
@with_domain
def fold_bn(
    model: str = typer.Argument(..., help="Input ONNX file."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the BN-free ONNX."),
    samples: int = samples_option(),
    tol: float = tol_option(),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    _run("fold-bn", model, output, domain, samples, tol, json_path, True)
