"""``nnxform compress``: remove the stable ReLUs of a network on an input box, checked (and optionally certified) before writing."""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import typer

from ..analyzers.solvers import check_solver
from ..discrepancy import Discrepancy
from ..errors import NnxformError
from ..fileio import read_text
from ..ir import load
from ..layered import Size
from ..passes.compress import RANK_TOL
from ..stable import Stability
from ..workflows import compress_checked
from . import summary
from .application import app
from .common import (DEFAULT_BOX_HELP, SOLVER_HELP, CommandOutput, DomainOptions, Progress, bounded, samples_option,
                     tol_option, with_domain)


@app.command(name="compress", short_help=summary("compress"),
             help="Make a network smaller without changing what it computes on an input box. Every ReLU is "
                  "classified first (as by 'nnxform stable'); then, on the dense ReLU layers at the end of the "
                  "network, stably inactive neurons are deleted, linearly dependent stably active neurons are "
                  "folded into the next layer (pivoted Gram-Schmidt, tolerance --rank-tol), a layer left with "
                  "only stably active neurons is merged into the next, and a layer all stably inactive makes "
                  "the network a constant. Unstable and undecided neurons are kept. In convolutional layers "
                  "(a chain of Conv, Relu and pooling before the dense tail) a channel stably inactive at every "
                  "position is removed from its Conv and from the layer reading it; their other neurons are "
                  "left as they are, since a convolution shares its weights across positions (said at run "
                  "time). Before writing, the result is compared with the input "
                  "in onnxruntime on --samples points of the box (nothing is written beyond --tol); --certify "
                  "also bounds |f - f_compressed| over the whole box with the discrepancy analysis (symbolic, "
                  "starting from the signs the classification proved; MILP when that is not within --tol) and "
                  "refuses to write when it finds a difference beyond --tol. Tolerances are tol·(1 + |y|), |y| the "
                  "original's output, everywhere. --stability FILE reuses a 'nnxform stable --json' classification "
                  "of the same file and box instead of classifying again: its stable claims are proved again in this "
                  "run (bounds, then one MILP per claim they leave, within --time-limit), a claim not re-proved keeps "
                  "its neuron, and the run says how many those are. "
                  "The result equals the input on the box only. " + DEFAULT_BOX_HELP)
@with_domain
def compress(
    model: str = typer.Argument(..., help="ONNX file."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the compressed ONNX."),
    time_limit: float = typer.Option(300.0, "--time-limit", help="Seconds for classifying the ReLUs (with "
                                     "--stability: for proving its claims again) and the sampled check; the "
                                     "classification leaves the check the time it foresees.", callback=bounded(0)),
    node_limit: Optional[int] = typer.Option(None, "--node-limit", callback=bounded(1),
                                             help="Branch-and-bound nodes per MILP solve of the classification, "
                                                  "instead of a share of --time-limit: the same result on every run."),
    stability_path: Optional[str] = typer.Option(None, "--stability", help="Reuse this 'nnxform stable --json' "
                                                 "classification (made on the same ONNX file and box); its stable "
                                                 "claims are proved again, those that are not keep their neurons."),
    rank_tol: float = typer.Option(RANK_TOL, "--rank-tol", help="Relative tolerance of the rank test (folding active "
                                                                "neurons).", callback=bounded(0)),
    samples: int = samples_option(10000),
    tol: float = tol_option(),
    certify_box: bool = typer.Option(False, "--certify", help="Also bound |f - f_compressed| on the whole box."),
    certify_exact: bool = typer.Option(False, "--certify-exact",
                                       help="With --certify, also run the exact MILP (slower; 'exact' when every gap closes)."),
    certify_time_limit: float = typer.Option(10.0, "--certify-time-limit",
                                             help="Seconds for the certificate, all of it (bounds, solves and the witness "
                                                  "search), at most what --time-limit left plus this.",
                                             callback=bounded(0, above=True)),
    seed: int = typer.Option(0, "--seed", help="Random seed of the classification.", callback=bounded(0)),
    solver: str = typer.Option("highs", "--solver", help=SOLVER_HELP),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a JSON report here ('-' for stdout)."),
    domain: DomainOptions = None,
) -> None:
    started = time.monotonic()  # the time limits count from here: loading is part of the command
    check_solver(solver)
    out = CommandOutput([model, stability_path, *domain.files()], ("-o", output), json_path=json_path)
    net = load(model)
    box = domain.box(net)
    stability = None if stability_path is None else Stability.from_json(_json_document(stability_path), net, box)
    with Progress() as bar:
        result = compress_checked(net, box, stability=stability, time_limit=time_limit, node_limit=node_limit,
                                  seed=seed, rank_tol=rank_tol, samples=samples, tol=tol, certify_box=certify_box,
                                  certify_exact=certify_exact, certify_time_limit=certify_time_limit,
                                  domain=domain.describe(), progress=bar.stage, solver=solver, started=started)
    out.write(result.to_json(model, output), {output: result.model.to_bytes()})

    cmp = result.check
    out.say(f"compress: {model} -> {output} on a box of {box.size} inputs")
    _print_summary(result.stability, result.compression.changes, result.before, result.after, out)
    out.say(f"  checked on {cmp.samples} points of the box: max |difference| {cmp.max_abs:.3g} "
            f"(tolerance {cmp.tolerance(tol)})")
    if result.certificate is not None:
        _print_certificate(result.certificate, out)


def _json_document(path: str) -> dict[str, Any]:
    """The JSON object in ``path``, or a one-line error."""
    try:
        doc = json.loads(read_text(path, "a JSON file"))
    except json.JSONDecodeError as exc:
        raise NnxformError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise NnxformError(f"{path}: not a 'nnxform stable --json' document")
    return doc


def _print_certificate(cert: Discrepancy, out: CommandOutput) -> None:
    how = f"{cert.analysis} analysis, {cert.method}{', exact' if cert.exact else ''}" + (
        ", from the proven signs" if cert.details["proven_signs"] else "")
    real = cert.details.get("real_delta_max")
    out.say(f"  certified on the whole box ({how}; {cert.seconds:.2f} s): |f - f_compressed| <= {cert.delta_max:.3g} "
            "for the float32 networks as onnxruntime runs them"
            + (f" (<= {real:.3g} in real arithmetic; the rest is the two networks' worst-case float32 rounding)"
               if real is not None else "")
            + f"; largest difference found {cert.found:.3g}")
    if cert.details.get("time_limit_reached"):
        out.say("    note: --certify-time-limit cut the solves short; the bounds not tightened are the symbolic ones")
    for note in cert.notes:
        out.say(f"    note: {note}")


def _print_summary(stability: Stability, changes: list[str], before: Size, after: Size, out: CommandOutput) -> None:
    total = stability.counts()
    out.say(f"  ReLUs: {total['active']} stably active, {total['inactive']} stably inactive, "
            f"{total['unstable']} unstable, {total['undecided']} undecided (kept as unstable); "
            f"classified in {stability.seconds:.2f} s")
    if stability.stages:
        out.say("  " + ", ".join(f"{s.name} {s.seconds:.2f} s ({s.settled})" for s in stability.stages))
    for note in stability.notes:
        out.say(f"  note: {note}")
    for line in changes:
        out.say(f"  {line}")
    rows = [[k, getattr(before, k), getattr(after, k), getattr(before, k) - getattr(after, k)]
            for k in ("neurons", "connections", "parameters")]
    out.say("")
    out.table(["", "before", "after", "removed"], rows)
    out.say("")
