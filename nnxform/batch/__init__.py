"""Benchmarks at scale: one nnxform command over every row of an instances.csv, on worker processes that import
nnxform once (``LocalEngine``) or on a Dask cluster (``DaskEngine``), with per-row time limits, resume, a results
table and the cactus plot. The command line itself is handed in from above (``nnxform.cli.batch``)."""

from __future__ import annotations

from .engines import DaskEngine, Engine, LocalEngine
from .instances import Instance, read_instances
from .plot import cactus_png, require_matplotlib
from .results import BatchResult, RowResult, load_results
from .runner import BatchSpec, open_output, run_batch
from .worker import RowOutcome, RowTask, Supervisor, serve

__all__ = ["BatchResult", "BatchSpec", "DaskEngine", "Engine", "Instance", "LocalEngine", "RowOutcome", "RowResult",
           "RowTask", "Supervisor", "cactus_png", "load_results", "open_output", "read_instances",
           "require_matplotlib", "run_batch", "serve"]
