"""Running one command over every row of an instances.csv: each row's command line and inputs, the rows an earlier
run already answered (``--resume``), each row's outputs stored in its own folder as it ends, and the tables
rewritten as the batch goes, so that an interrupted batch keeps every finished row."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import NnxformError
from .engines import Engine
from .figures import key_figures
from .instances import Instance, staged_path, stem, unreadable
from .results import RESULTS_JSON, BatchResult, RowResult, load_results, resume_key, reusable, write_tables
from .worker import RowOutcome, RowTask

#: The files a row's folder ``DIR/rows/NAME/`` holds beside the network it wrote.
REPORT = "report.json"
LOG = "log.txt"

#: Seconds between two rewrites of the tables while rows end (always rewritten at the end and on Ctrl-C).
_TABLES_EVERY = 1.0

#: ``progress(rows done, rows failed, rows in all)``, called as rows end.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class BatchSpec:
    """What every row runs: the command, its options as given (a file an option names staged as ``files/NAME``,
    listed in ``option_files``: staged path -> the file here), and the suffix of the file it writes with ``-o``
    (None: it writes only its report). A decision command (``verify``) takes the property as its second argument
    (``property_argument``), its own ``--timeout`` (the row's limit: it answers ``timeout`` itself, and is killed
    only ``kill_after`` past it), and exits with ``answers`` (e.g. 1 for sat) as well as 0 when it answered."""

    command: str
    options: list[str]
    option_files: dict[str, str]
    output_suffix: Optional[str]
    property_argument: bool = False
    own_timeout: bool = False
    answers: tuple[int, ...] = ()


def kill_after(limit: float) -> float:
    """When the batch kills a row whose command keeps its own time limit ``limit``: 10 % and 5 s later."""
    return 1.1 * limit + 5.0


def open_output(out: Path, resume: bool) -> dict[str, RowResult]:
    """Check the output folder before any work and return the earlier run's rows by name (``--resume``); a folder
    holding an earlier batch without ``--resume`` is refused, so that no result is overwritten by mistake. Nothing
    is created here (``run_batch`` creates the folder)."""
    if out.exists() and not out.is_dir():
        raise NnxformError(f"--out {out}: is a file; give a folder")
    earlier = out / RESULTS_JSON
    if earlier.exists() and not resume:
        raise NnxformError(f"--out {out}: holds an earlier batch; add --resume to go on with it, or give another folder")
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise NnxformError(f"--out {out}: cannot write in {existing}")
    return {r.name: r for r in load_results(out).rows} if earlier.exists() else {}


def run_batch(spec: BatchSpec, instances: str, rows: list[Instance], out: Path, engine: Engine,
              previous: dict[str, RowResult], progress: Optional[Progress] = None) -> BatchResult:
    """Run ``spec`` on every row not answered in ``previous`` (rows whose files cannot be read end as errors at
    once) and return the batch's results; the tables in ``out`` are kept up to date as rows end. On Ctrl-C the
    finished rows are recorded and the batch, marked interrupted, returned."""
    start = time.perf_counter()
    (out / "rows").mkdir(parents=True, exist_ok=True)
    for stale in (out / "rows").glob(".*.tmp"):  # a row being stored when an earlier run was killed
        shutil.rmtree(stale, ignore_errors=True)
    digests: dict[str, Optional[str]] = {}
    option_hashes = [_sha256(p, digests) for p in spec.option_files.values()]
    results: dict[int, RowResult] = {}
    keyed: dict[int, tuple[Instance, str]] = {}
    tasks: list[RowTask] = []
    network = spec.output_suffix is not None
    reused = 0
    for inst in rows:
        hashes = [_sha256(str(inst.model_path), digests), _sha256(str(inst.prop_path), digests)]
        key = resume_key(spec.command, spec.options, hashes + option_hashes)
        keyed[inst.row] = (inst, key)
        earlier = previous.get(inst.name)
        problem = unreadable(inst.model_path, inst.model) or unreadable(inst.prop_path, inst.prop)
        if problem is not None:
            _remove_row_folder(out, inst.name)
            results[inst.row] = _record(inst, RowOutcome("error", 0.0, None, problem), key)
        elif earlier is not None and reusable(earlier, key, inst.timeout, out):
            results[inst.row] = _carried(earlier, inst)
            reused += 1
        else:
            tasks.append(_task(spec, inst))
    batch = BatchResult(instances, spec.command, spec.options, engine.description, [], reused=reused,
                        total_rows=len(rows))
    written = [0.0]

    def tables(force: bool) -> None:
        now = time.perf_counter()
        if force or now - written[0] >= _TABLES_EVERY:
            batch.rows = [results[i] for i in sorted(results)]
            batch.wall_seconds = now - start
            write_tables(out, batch, network)
            written[0] = now

    def done(task: RowTask, outcome: RowOutcome) -> None:
        inst, key = keyed[task.index]
        results[inst.row] = _store(out, inst, key, spec.command, outcome, _network_name(spec, inst))
        tables(force=False)
        if progress is not None:
            progress(len(results), sum(r.status != "ok" for r in results.values()), len(rows))

    if progress is not None:
        progress(len(results), sum(r.status != "ok" for r in results.values()), len(rows))
    try:
        engine.run(tasks, done)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (``stopping.Terminated``): the finished rows are kept
        batch.interrupted = True
    finally:
        tables(force=True)
    return batch


def _sha256(path: str, digests: dict[str, Optional[str]]) -> Optional[str]:
    """The sha256 of a file's content, once per file (None when it cannot be read)."""
    if path not in digests:
        try:
            digests[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            digests[path] = None
    return digests[path]


def _network_name(spec: BatchSpec, inst: Instance) -> Optional[str]:
    """The file name of the network a row writes, after its model (its folder already names the row)."""
    return None if spec.output_suffix is None else f"{stem(inst.model)}{spec.output_suffix}"


def _task(spec: BatchSpec, inst: Instance) -> RowTask:
    """The row as a worker runs it: inputs staged at their CSV paths, the report and network at the top."""
    network = _network_name(spec, inst)
    outputs = [REPORT] + ([network] if network else [])
    model = staged_path(inst.model, "model")
    prop = staged_path(inst.prop, "property")
    if model in outputs:
        model = f"model/{os.path.basename(model)}"
    if prop in outputs or prop == model:
        prop = f"property/{os.path.basename(prop)}"
    argv = [spec.command, model, *([prop] if spec.property_argument else ["--vnnlib", prop]), *spec.options,
            "--json", REPORT]
    if network:
        argv += ["-o", network]
    timeout = inst.timeout
    if spec.own_timeout and timeout is not None:
        argv += ["--timeout", f"{timeout:g}"]
        timeout = kill_after(timeout)
    inputs = {model: os.path.abspath(inst.model_path), prop: os.path.abspath(inst.prop_path),
              **{staged: os.path.abspath(source) for staged, source in spec.option_files.items()}}
    return RowTask(inst.row, argv, inputs, outputs, timeout, spec.answers)


def _record(inst: Instance, outcome: RowOutcome, key: str) -> RowResult:
    return RowResult(inst.row, inst.name, inst.model, inst.prop, inst.timeout, outcome.status, outcome.seconds,
                     outcome.exit_code, message=outcome.message, key=key)


def _carried(earlier: RowResult, inst: Instance) -> RowResult:
    """An earlier run's result for a row kept by ``--resume``, renumbered as the row is now."""
    return RowResult(**{**earlier.to_json(), "row": inst.row, "model": inst.model, "property": inst.prop})


def _store(out: Path, inst: Instance, key: str, command: str, outcome: RowOutcome,
           network: Optional[str]) -> RowResult:
    """Record a finished row and put its files in ``DIR/rows/NAME/`` all at once (a folder written beside it, then
    renamed): the report, the network when it succeeded, and what the command printed."""
    result = _record(inst, outcome, key)
    files = dict(outcome.files)
    if outcome.status == "ok":
        try:
            result.figures = key_figures(command, json.loads(files[REPORT]))
        except (ValueError, KeyError, TypeError) as exc:
            result.status, result.message = "error", f"unreadable report: {type(exc).__name__}: {exc}"
            files = {}
    if outcome.log:
        files[LOG] = outcome.log.encode()
    if not files:
        _remove_row_folder(out, inst.name)
        return result
    rows = out / "rows"
    staging = rows / f".{inst.name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        _remove_row_folder(out, inst.name)
        os.rename(staging, rows / inst.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.outputs = {f"rows/{inst.name}/{name}": hashlib.sha256(data).hexdigest() for name, data in files.items()}
    if result.status == "ok" and network is not None:
        result.network = f"rows/{inst.name}/{network}"
    return result


def _remove_row_folder(out: Path, name: str) -> None:
    """Remove an earlier run's folder of the row (its outputs no longer stand)."""
    folder = out / "rows" / name
    if folder.exists():
        old = out / "rows" / f".{name}.{uuid.uuid4().hex}.tmp"
        os.rename(folder, old)
        shutil.rmtree(old, ignore_errors=True)
