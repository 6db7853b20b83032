"""``nnxform batch`` and ``nnxform batch-compare``: one command over every row of a benchmark's instances.csv, on
worker processes here or on a Dask cluster, and several batches' results side by side (one table, one cactus plot)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional

import typer
import typer.main

from ..batch import (BatchResult, BatchSpec, DaskEngine, LocalEngine, cactus_png, load_results, open_output,
                     read_instances, require_matplotlib, run_batch, serve)
from ..batch.results import RESULTS_JSON, STATUSES
from ..errors import NnxformError
from . import summary
from .application import UsageError, _run, app
from .common import CommandOutput, Progress, bounded

#: What a batch worker process runs: import every command once, then answer rows (``nnxform.batch.worker``).
WORKER_CODE = "from nnxform.cli.batch import serve_rows; serve_rows()"

#: Options each row gets from the batch, which a user may not give: option -> what the batch puts there (``--json``
#: is the batch's own option, so a row's report is always rows/NAME/report.json).
_RESERVED = {"-o": "output network", "--output": "output network", "--vnnlib": "property (the CSV's second column)",
             **{o: "input box (the row's property)" for o in ("--lower", "--upper", "--center", "--eps",
                                                              "--clip-lower", "--clip-upper")},
             "--result": "report (rows/NAME/report.json: the answer and any counterexample)"}


def serve_rows() -> None:
    """A batch worker process: every command registered once, then rows from the supervisor until stdin closes."""
    from . import _with_commands

    command = typer.main.get_command(_with_commands())
    serve(lambda argv: _run(command, argv))


def _batch_commands() -> dict[str, Any]:
    """The commands a batch can run: a JSON report (--json), one model argument and a VNN-LIB box (--vnnlib), or a
    model and a property as arguments (``verify``)."""
    from . import _with_commands

    group = typer.main.get_command(_with_commands())
    found = {}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        arguments = [p.name for p in cmd.params if p.param_type_name == "argument"]
        options = {opt for p in cmd.params if p.param_type_name == "option" for opt in p.opts}
        if "--json" in options and (arguments == ["model"] and "--vnnlib" in options or arguments == ["model", "prop"]):
            found[name] = cmd
    return found


def batch_spec(command: str, options: list[str]) -> BatchSpec:
    """What every row runs, checked before any row does: a command a batch can run, options it knows (with valid
    values), none that the batch gives each row itself; a file an option names is sent with each row."""
    commands = _batch_commands()
    cmd = commands.get(command)
    if cmd is None:
        raise NnxformError(f"batch runs a command that takes one model and a VNN-LIB box ({', '.join(commands)}); "
                           f"got '{command}'")
    own_options = {opt for p in cmd.params if p.param_type_name == "option" for opt in p.opts}
    positional = "--vnnlib" not in own_options
    own_timeout = positional and "--timeout" in own_options  # a decision command keeps the row's limit itself
    for token in options:
        given = token.split("=", 1)[0]
        if given in _RESERVED:
            raise NnxformError(f"{command} {given}: batch gives each row its own {_RESERVED[given]}; "
                               "remove it from the command's options")
    writes = any("-o" in p.opts for p in cmd.params)
    probe = ["MODEL", *(["PROPERTY"] if positional else ["--vnnlib", "PROPERTY"]), *options, "--json", "REPORT",
             *(["-o", "OUT"] if writes else [])]
    try:
        cmd.make_context(command, probe)
    except UsageError as exc:
        raise NnxformError(f"{command}: {' '.join(exc.format_message().split())} "
                           f"(see 'nnxform {command} --help')") from None
    staged, files = [], {}
    for token in options:
        if not token.startswith("-") and os.path.isfile(token):
            name = f"files/{os.path.basename(token)}"
            if name in files and os.path.abspath(files[name]) != os.path.abspath(token):
                name = f"files/{len(files)}-{os.path.basename(token)}"
            files[name] = token
            token = name
        staged.append(token)
    return BatchSpec(command, staged, files, ".onnx" if writes else None, property_argument=positional,
                     own_timeout=own_timeout, answers=_answers(command))


def _answers(command: str) -> tuple[int, ...]:
    """Exit statuses besides 0 that are ``command``'s answers, not failures (verify's sat, timeout, unknown: its
    ``EXIT``)."""
    if command != "verify":
        return ()
    from .verify import EXIT

    return tuple(sorted({status for status in EXIT.values() if status}))


@app.command(name="batch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             short_help=summary("batch"),
             help="Run COMMAND (bounds, canon, fold-bn, stable, compress, prune, quantize, pad, …: any command that "
                  "takes one model and --vnnlib; or verify, which takes the property as its argument) on every "
                  "'onnx,vnnlib[,timeout]' row of INSTANCES (paths relative to its folder, the VNN-COMP layout), "
                  "followed by COMMAND's own options. Worker processes import nnxform once and run many rows; a row "
                  "past its time limit (the CSV's third column, or --timeout) is killed with its worker, which is "
                  "replaced (verify gets the limit as its own --timeout and answers timeout itself; it is killed "
                  "only 10 % and 5 s later). A verify row that answers sat, unsat, timeout or unknown is ok, and "
                  "counts as solved when sat or unsat. Each row's report, network and printed output go "
                  "to --out DIR/rows/NAME/ (all or nothing); DIR/results.csv and results.json hold every row's "
                  "status, seconds, key figures and outputs, and DIR/instances.csv the networks written, with the "
                  "rows' properties and time limits. A row whose files cannot be read, or whose command fails or "
                  "times out, is an error or timeout row; the others go on (exit 0). Ctrl-C stops with the finished "
                  "rows recorded (exit 130); --resume goes on from there.")
def batch(
    ctx: typer.Context,
    instances: str = typer.Argument(..., help="instances.csv: 'onnx,vnnlib[,timeout]' rows."),
    command: str = typer.Argument(..., help="The command each row runs, followed by its own options."),
    out_dir: str = typer.Option(..., "--out", help="Output folder (created if missing)."),
    jobs: Optional[int] = typer.Option(None, "-j", "--jobs", callback=bounded(1),
                                       help="Worker processes (default: the number of cores); with --scheduler "
                                            "local, the LocalCluster's workers."),
    timeout: Optional[float] = typer.Option(None, "--timeout", callback=bounded(0, above=True),
                                            help="Time limit of every row in seconds, instead of the CSV's column."),
    resume: bool = typer.Option(False, "--resume", help="Keep the rows of an earlier run in DIR whose inputs (sha256), "
                                                        "command and options are unchanged; run the rest."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler",
                                            help="Run the rows on a Dask cluster: tcp://HOST:PORT of a running "
                                                 "scheduler, or 'local' for a LocalCluster here (needs "
                                                 "nnxform's dask extra). Input files are sent to the workers and outputs "
                                                 "sent back: no shared file system needed."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write the cactus plot (PNG; needs matplotlib) here."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Also write the results as JSON here ('-' for stdout)."),
) -> None:
    spec = batch_spec(command, list(ctx.args))
    rows = read_instances(instances)
    if timeout is not None:
        rows = [replace(r, timeout=timeout) for r in rows]
    folder = Path(out_dir)
    previous = open_output(folder, resume)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)  # before checking --plot DIR/cactus.png
    try:
        out = CommandOutput([instances], ("--plot", plot), json_path=json_path)
        if plot is not None:
            require_matplotlib()
        workers = jobs or _cores()
        engine = DaskEngine(scheduler, workers, WORKER_CODE) if scheduler else LocalEngine(workers, WORKER_CODE)
    except BaseException:
        if created:
            folder.rmdir()  # created just now, still empty: nothing left behind
        raise
    try:
        with Progress("rows", fields="{task.fields[failed]} failed, {task.fields[running]} running") as bar:
            result = run_batch(spec, instances, rows, folder, engine, previous,
                               lambda done, failed, total: bar(done, total, failed=failed,
                                                               running=min(engine.slots, total - done)))
    finally:
        engine.close()
    figure = {} if plot is None else {plot: cactus_png([(folder.name or out_dir, result)])}
    out.write(result.to_json(), figure)
    _print_summary(result, folder, spec, out)
    if result.interrupted:
        typer.echo(f"nnxform: interrupted: {len(result.rows)} of {result.total_rows} rows done, recorded in "
                   f"{folder / 'results.csv'}; run the same command with --resume to finish", err=True)
        raise typer.Exit(130)


def _cores() -> int:
    """The cores this process may run on (the default number of workers)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _print_summary(result: BatchResult, folder: Path, spec: BatchSpec, out: CommandOutput) -> None:
    """The summary for people: counts by status, times, the slowest rows, where the tables are."""
    s = result.summary()
    out.say(f"batch: {result.command} on {result.total_rows} rows of {result.instances} ({result.engine}) -> {folder}")
    counts = ", ".join(f"{k} {s[k]}" for k in STATUSES)
    reused = f"; {result.reused} kept from the earlier run" if result.reused else ""
    out.say(f"  {counts}{reused}")
    verdicts = [r.figures["result"] for r in result.rows if isinstance(r.figures.get("result"), str)]
    if verdicts:
        found = ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts)))
        out.say(f"  solved {s['solved']} of {len(result.rows)} ({found})")
    out.say(f"  wall {result.wall_seconds:.1f} s; rows {s['total_seconds']:.1f} s in all, "
            f"median {s['median_seconds']:.3f} s")
    if s["slowest"]:
        out.say("")
        out.table(["slowest", "row", "status", "seconds"],
                  [[r["name"], r["row"], r["status"], round(r["seconds"], 3)] for r in s["slowest"]])
    failed = [r for r in result.rows if r.status != "ok"]
    for r in failed[:5]:
        out.say(f"  row {r.row} {r.name}: {r.status}: {r.message}")
    if len(failed) > 5:
        out.say(f"  … and {len(failed) - 5} more not ok (results.csv has every message)")
    tables = "results.csv" + (", instances.csv" if spec.output_suffix else "")
    out.say(f"\n  {tables} in {folder}")


@app.command(name="batch-compare", short_help=summary("batch-compare"),
             help="Compare the output folders of earlier 'nnxform batch' runs (e.g. the original and the pruned "
                  "networks of one benchmark): rows, ok / error / timeout, solved (ok, and sat or unsat where the "
                  "command gives a verdict), exact bounds where reported, total and median seconds, one line per "
                  "run; --plot draws their cactus plots on one figure.")
def batch_compare(
    folders: List[str] = typer.Argument(..., help="Output folders of 'nnxform batch' runs."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write the cactus plot of every run (PNG) here."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the table as JSON ('-' for stdout)."),
) -> None:
    out = CommandOutput([Path(f) / RESULTS_JSON for f in folders], ("--plot", plot), json_path=json_path)
    if plot is not None:
        require_matplotlib()
    runs = [(_label(f, folders), load_results(f)) for f in folders]
    exact = any("exact" in r.figures for _, result in runs for r in result.rows)
    headers = ["run", "command", "rows", *STATUSES, "solved", *(["exact"] if exact else []), "total s", "median s"]
    lines = []
    for label, result in runs:
        s = result.summary()
        exact_count = [sum(r.status == "ok" and r.figures.get("exact") is True for r in result.rows)] if exact else []
        lines.append([label, result.command, s["rows"], *(s[k] for k in STATUSES), s["solved"], *exact_count,
                      round(s["total_seconds"], 2), round(s["median_seconds"], 3)])
    out.write({"runs": [dict(zip(headers, line)) for line in lines]}, {} if plot is None else {plot: cactus_png(runs)})
    out.table(headers, lines)


def _label(folder: str, folders: list[str]) -> str:
    """A run's name in the table and the plot: its folder's name, or the path where two folders share a name."""
    name = Path(folder).resolve().name
    return name if sum(Path(f).resolve().name == name for f in folders) == 1 else folder
