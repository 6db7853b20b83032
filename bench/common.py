"""Helpers for the benchmark scripts: timing, the shared test data when present, table printing."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from nnxform.cli.common import format_table  # imported now: a run that lasts an hour must not load code edited meanwhile

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SHARED = ROOT.parent / "shared" / "testdata"


def best_time(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs in seconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_table(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    print(f"\n## {title}\n")
    print(format_table(headers, rows))
