"""Reading a benchmark's ``instances.csv``: one ``onnx,vnnlib[,timeout]`` row per instance, paths relative to the
CSV's folder (the VNN-COMP layout). A malformed file stops the batch at once; a row whose files are missing is
still a row (it ends as an ``error`` with the reason, the others go on)."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import NnxformError
from ..fileio import PathLike, read_text

#: Suffixes dropped from a file's name when naming a row after it.
_SUFFIXES = (".gz", ".onnx", ".vnnlib", ".vnn")


@dataclass(frozen=True)
class Instance:
    """One row: the model and property as written in the CSV and resolved against its folder, the row's time limit
    (None: none), and ``name``, unique in the batch, that its outputs are named after."""

    row: int
    model: str
    prop: str
    timeout: Optional[float]
    model_path: Path
    prop_path: Path
    name: str


def read_instances(path: PathLike) -> list[Instance]:
    """The rows of an instances.csv, or an NnxformError naming the first malformed line: a row is two or three
    cells (model, property, optional positive time limit in seconds); blank lines are skipped."""
    text = read_text(path, "an instances.csv (onnx,vnnlib,timeout rows)")
    folder = Path(path).parent
    rows: list[Instance] = []
    used: dict[str, int] = {}
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        where = f"{path} line {line}"
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise NnxformError(f"{where}: expected 'onnx,vnnlib[,timeout]', got {len(cells)} cell(s): {','.join(cells)[:80]}")
        timeout = _timeout(cells[2], where) if len(cells) == 3 and cells[2] else None
        name = _unique(_row_name(cells[0], cells[1]), used)
        rows.append(Instance(len(rows) + 1, cells[0], cells[1], timeout, folder / cells[0], folder / cells[1], name))
    if not rows:
        raise NnxformError(f"{path}: no rows; expected 'onnx,vnnlib[,timeout]' lines")
    return rows


def _timeout(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise NnxformError(f"{where}: the time limit must be a positive number of seconds, got '{text}'")
    return value


def stem(path: str) -> str:
    """A file's name without its folder and its .onnx/.vnnlib/.gz suffixes, made safe as a file name."""
    name = os.path.basename(path.rstrip("/"))
    while name.lower().endswith(_SUFFIXES):
        name = name[: name.lower().rfind(".")]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def _row_name(model: str, prop: str) -> str:
    """``<model stem>__<property stem>``: what a reader recognises the row by in the output folder."""
    return f"{stem(model)}__{stem(prop)}"


def _unique(name: str, used: dict[str, int]) -> str:
    """``name``, or ``name__2``, ``name__3``… when an earlier row took it (the same pair twice in a CSV)."""
    count = used.get(name, 0) + 1
    used[name] = count
    return name if count == 1 else f"{name}__{count}"


def staged_path(path: str, fallback: str) -> str:
    """Where a row's input sits in the worker's folder: its path as written in the CSV when that stays inside the
    folder (so a report names ``onnx/net.onnx`` as the benchmark does), else ``fallback/<file name>``."""
    norm = os.path.normpath(path)
    if os.path.isabs(norm) or norm.startswith(".."):
        return f"{fallback}/{os.path.basename(norm)}"
    return norm.replace(os.sep, "/")


def unreadable(path: Path, shown: str) -> Optional[str]:
    """Why the input file ``path`` (named ``shown`` as in the CSV) cannot be read, or None when it can."""
    try:
        if not path.is_file():
            return f"{shown}: no such file" if not path.exists() else f"{shown}: not a regular file"
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"{shown}: cannot be read ({exc.strerror or type(exc).__name__})"
