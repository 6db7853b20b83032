"""A batch's results: one record per row, the tables written in the output folder (``results.csv``,
``results.json``, and ``instances.csv`` for the networks written), what ``--resume`` may keep, and the summary."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import NnxformError
from ..fileio import PathLike, atomic_write_bytes, read_text

STATUSES = ("ok", "error", "timeout")
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
INSTANCES_CSV = "instances.csv"


@dataclass
class RowResult:
    """One row's result: the row as in the CSV, how it ended, its key figures and its outputs (paths relative to the
    output folder, with their sha256), and ``key``, what ``--resume`` compares (inputs' sha256, command, options)."""

    row: int
    name: str
    model: str
    property: str
    timeout: Optional[float]
    status: str
    seconds: float
    exit_code: Optional[int] = None
    figures: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    message: str = ""
    key: str = ""
    network: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """The record as ``results.json`` holds it."""
        return asdict(self)

    @property
    def solved(self) -> bool:
        """Whether the row counts as solved on a cactus plot: it ended ``ok`` and, where its command reports a
        verdict (``result``), that verdict is sat or unsat."""
        verdict = self.figures.get("result")
        return self.status == "ok" and (verdict is None or verdict in ("sat", "unsat"))


@dataclass
class BatchResult:
    """A whole batch: the command and its options, the engine, every row's result (in CSV order), the wall time,
    how many rows an earlier run's results supplied, and whether the run was interrupted."""

    instances: str
    command: str
    options: list[str]
    engine: str
    rows: list[RowResult]
    wall_seconds: float = 0.0
    reused: int = 0
    interrupted: bool = False
    total_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        """The batch as ``results.json`` holds it, with its summary."""
        return {"instances": self.instances, "command": self.command, "options": self.options, "engine": self.engine,
                "wall_seconds": self.wall_seconds, "reused": self.reused, "interrupted": self.interrupted,
                "total_rows": self.total_rows, "summary": self.summary(), "rows": [r.to_json() for r in self.rows]}

    def summary(self) -> dict[str, Any]:
        """Counts by status, rows solved, total and median seconds of the rows run, the five slowest rows."""
        seconds = np.array([r.seconds for r in self.rows], dtype=float)
        slowest = sorted(self.rows, key=lambda r: -r.seconds)[:5]
        return {"rows": len(self.rows), **{s: sum(r.status == s for r in self.rows) for s in STATUSES},
                "solved": sum(r.solved for r in self.rows),
                "total_seconds": float(seconds.sum()), "median_seconds": float(np.median(seconds)) if seconds.size else 0.0,
                "slowest": [{"row": r.row, "name": r.name, "status": r.status, "seconds": r.seconds} for r in slowest]}

    def columns(self) -> list[str]:
        """The key-figure columns, in the order the rows first name them."""
        seen: dict[str, None] = {}
        for r in self.rows:
            seen.update(dict.fromkeys(r.figures))
        return list(seen)


def resume_key(command: str, options: list[str], hashes: list[Optional[str]]) -> str:
    """What decides whether an earlier result still holds: the command, its options and the sha256 of every input
    (the model, the property, any file an option names; None for a file that could not be read)."""
    text = json.dumps([command, options, hashes])
    return hashlib.sha256(text.encode()).hexdigest()


def reusable(previous: RowResult, key: str, timeout: Optional[float], out: Path) -> bool:
    """Whether ``--resume`` keeps an earlier row: same key, its outputs present and unchanged, and an end that
    would come again: ok, the command's own error, or a time-out at a limit no shorter than now (a worker that
    died, or a file that could not be read, is tried again)."""
    if previous.key != key:
        return False
    if previous.status == "timeout":
        if previous.timeout is None or (timeout is not None and timeout > previous.timeout):
            return False
    elif previous.status == "error" and previous.exit_code is None:
        return False
    for path, digest in previous.outputs.items():
        file = out / path
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            return False
    return True


def load_results(folder: PathLike) -> BatchResult:
    """The batch recorded in ``folder/results.json``, or an NnxformError saying why it cannot be read."""
    path = Path(folder) / RESULTS_JSON
    try:
        doc = json.loads(read_text(path, "a batch's results.json"))
        rows = [RowResult(**row) for row in doc["rows"]]
        return BatchResult(doc["instances"], doc["command"], doc["options"], doc["engine"], rows,
                           doc["wall_seconds"], doc["reused"], doc["interrupted"], doc.get("total_rows", len(rows)))
    except (ValueError, KeyError, TypeError) as exc:
        raise NnxformError(f"{path}: not a batch's results ({type(exc).__name__}: {exc})") from None


def write_tables(out: Path, result: BatchResult, network: bool) -> None:
    """Write ``results.json``, ``results.csv`` and, for a command that writes networks, ``instances.csv`` (the
    networks written, with the rows' properties and time limits), each atomically."""
    atomic_write_bytes(out / RESULTS_JSON, (json.dumps(result.to_json(), indent=1, allow_nan=False) + "\n").encode())
    atomic_write_bytes(out / RESULTS_CSV, results_csv(result).encode())
    if network:
        atomic_write_bytes(out / INSTANCES_CSV, instances_csv(result, out).encode())


def results_csv(result: BatchResult) -> str:
    """The results table: row, model, property, status, seconds, the key figures, the outputs, the message."""
    columns = result.columns()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["row", "model", "property", "status", "seconds", *columns, "outputs", "message"])
    for r in result.rows:
        writer.writerow([r.row, r.model, r.property, r.status, f"{r.seconds:.3f}",
                         *(_cell(r.figures.get(c)) for c in columns), " ".join(r.outputs), r.message])
    return text.getvalue()


def instances_csv(result: BatchResult, out: Path) -> str:
    """``onnx,vnnlib,timeout`` lines for the networks the rows that ended ok wrote, with the rows' own property
    files, paths relative to the output folder ``out``, as the next batch or an external verifier reads them."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    benchmark = os.path.abspath(Path(result.instances).parent)
    for r in result.rows:
        if r.status == "ok" and r.network is not None:
            prop = os.path.relpath(os.path.join(benchmark, r.property), os.path.abspath(out))
            writer.writerow([r.network, prop, *([] if r.timeout is None else [f"{r.timeout:g}"])])
    return text.getvalue()


def _cell(value: Any) -> str:
    """A figure as a table cell: floats to 10 significant digits (the same text for the same value everywhere)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}" if math.isfinite(value) else str(value)
    return str(value)
