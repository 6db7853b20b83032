"""Batch runs (issue 22): per-row overhead of ``nnxform batch`` against a one-process-per-row shell loop, rows per
second with -j 1, -j 2 and a 2-worker Dask LocalCluster, the same results whichever engine ran them, and paper 001's
experiment (prune every network, then bound every query on the originals and on the pruned networks).

``python bench/batch.py [--data DIR] [--sections overhead,canon,compress,paper001] [--compress-model NAME]
[--milp-rows N] [--skip-loop] [--json PATH]``

Every run is the real ``nnxform`` script beside this Python, in its own process, with ``OPENBLAS_NUM_THREADS=1``;
wall times are that process's, Python start-up, worker start-up and (for Dask) the cluster's start included.

- Overhead: ``batch bounds --method interval -j 1`` over the 186 ACAS Xu rows, and the shell loop it replaces
  (``nnxform bounds … --json`` once per row, one after the other). A row's "bound itself" is what the report says
  the bound took (``seconds`` + ``compile_seconds``); overhead = wall per row − that.
- Throughput: ``batch canon`` over the ACAS Xu rows and ``batch compress`` over mnist_fc's 30 ``mnist-net_256x2``
  rows by default (a row of the 256x4 and 256x6 networks can take its whole 300 s limit: 2 of the first 7 sampled
  256x4 rows did, so the 90 rows would take over an hour per engine here), each with -j 1, -j 2 and
  ``--scheduler local -j 2``; rows/s = rows / wall of the batch process; "rows' own s" sums the commands' own
  times in the workers (it grows at -j 2 when the two cores are not free). "same" compares the
  results.csv without its seconds column and every network written, byte for byte, with the -j 1 run's.
- Paper 001: ``batch prune --method neuron --ratio 0.3`` over mnist_fc, then ``batch bounds --method milp`` over the
  first N rows of the original and of the pruned instance sets (``--time-limit 30`` per row), and
  ``batch-compare`` of the two.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SHARED, machine, print_table

NNXFORM = str(Path(sys.executable).with_name("nnxform"))
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
ENGINES = {"-j 1": ["-j", "1"], "-j 2": ["-j", "2"], "LocalCluster (2 workers)": ["-j", "2", "--scheduler", "local"]}


def run(args: list[Any], cwd: Path | None = None) -> float:
    """Run ``nnxform ARGS`` to its end (it must succeed); its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([NNXFORM, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nnxform {' '.join(map(str, args))} failed ({done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - start


def results(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def same_as(folder: Path, reference: Path) -> bool:
    """Whether two batch folders hold the same results (seconds aside) and byte-identical networks."""
    def table(f: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in results(f)]

    def networks(f: Path) -> dict[str, bytes]:
        return {str(p.relative_to(f)): p.read_bytes() for p in sorted((f / "rows").rglob("*.onnx"))}

    return table(folder) == table(reference) and networks(folder) == networks(reference)


def subset(instances: Path, first: int | None, path: Path, model: str = "") -> Path:
    """The rows of ``instances`` whose model's path holds ``model`` (the first ``first`` of them) as a CSV at
    ``path``, its paths made absolute (the benchmark's folder is not written to)."""
    rows = [r for r in csv.reader(instances.open()) if r and model in r[0]][:first]
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(
            [[str((instances.parent / r[0]).resolve()), str((instances.parent / r[1]).resolve()), *r[2:]] for r in rows])
    return path


def overhead(acas: Path, work: Path, skip_loop: bool) -> dict[str, Any]:
    instances = acas / "instances.csv"
    rows = len([line for line in instances.read_text().splitlines() if line.strip()])
    batch_wall = run(["batch", instances, "bounds", "--method", "interval", "--out", work / "interval", "-j", "1"])
    table = results(work / "interval")
    ok = [r for r in table if r["status"] == "ok"]
    bound = [json.loads((work / "interval" / r["outputs"].split()[0]).read_text()) for r in ok]
    bound_seconds = statistics.mean(b["seconds"] + b["compile_seconds"] for b in bound)
    in_worker = statistics.mean(float(r["seconds"]) for r in ok)
    out: dict[str, Any] = {"rows": rows, "ok": len(ok), "batch_wall": batch_wall, "bound_seconds": bound_seconds,
                           "command_in_worker": in_worker}
    if not skip_loop:
        loop = work / "loop"
        loop.mkdir()
        script = "".join(f"{NNXFORM} bounds {m} --vnnlib {v} --method interval --json {loop}/{i}.json >/dev/null 2>&1\n"
                         for i, (m, v, *_) in enumerate(csv.reader(instances.open())))
        start = time.perf_counter()
        subprocess.run(["sh", "-c", script], cwd=acas, env=ENV)
        out["loop_wall"] = time.perf_counter() - start
    return out


def throughput(instances: Path, command: list[str], work: Path, label: str) -> list[list[Any]]:
    rows = len([line for line in instances.read_text().splitlines() if line.strip()])
    lines, reference, walls = [], None, {}
    for engine, flags in ENGINES.items():
        folder = work / f"{label}-{len(walls)}"
        wall = run(["batch", instances, *command, "--out", folder, *flags])
        walls[engine] = wall
        table = results(folder)
        reference = reference or folder
        row_seconds = json.loads((folder / "results.json").read_text())["summary"]["total_seconds"]
        lines.append([label, engine, rows, sum(r["status"] == "ok" for r in table), round(wall, 1),
                      round(rows / wall, 2), round(walls["-j 1"] / wall, 2), round(row_seconds, 1),
                      "yes" if same_as(folder, reference) else "NO"])
    return lines


def paper001(mnist: Path, work: Path, milp_rows: int) -> list[list[Any]]:
    run(["batch", mnist / "instances.csv", "prune", "--method", "neuron", "--ratio", "0.3", "--out", work / "pruned",
         "-j", "2"])
    original = subset(mnist / "instances.csv", milp_rows, work / "paper001-original.csv")
    pruned = subset(work / "pruned" / "instances.csv", milp_rows, work / "paper001-pruned.csv")
    milp = ["bounds", "--method", "milp", "--time-limit", "30"]
    walls = {"original": run(["batch", original, *milp, "--out", work / "original", "-j", "2"]),
             "pruned": run(["batch", pruned, *milp, "--out", work / "pruned-milp", "-j", "2"])}
    compare = work / "compare.json"
    run(["batch-compare", work / "original", work / "pruned-milp", "--json", compare, "--plot", work / "cactus.png"])
    return [[r["run"], r["rows"], r["ok"], r.get("exact", ""), r["timeout"], r["total s"], r["median s"],
             round(walls["original" if r["run"] == "original" else "pruned"], 1)]
            for r in json.loads(compare.read_text())["runs"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "vnncomp2022", help="Folder with acasxu/ and mnist_fc/.")
    parser.add_argument("--sections", default="overhead,canon,compress,paper001", help="Which measurements to run.")
    parser.add_argument("--compress-model", default="mnist-net_256x2",
                        help="Run compress on the mnist_fc rows whose model path holds this ('' for all 90).")
    parser.add_argument("--milp-rows", type=int, default=6, help="Rows of paper 001's MILP runs (per set).")
    parser.add_argument("--skip-loop", action="store_true", help="Skip the one-process-per-row shell loop.")
    parser.add_argument("--json", type=Path, help="Write every figure as JSON here.")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    acas, mnist = args.data / "acasxu", args.data / "mnist_fc"
    if not (acas / "instances.csv").exists() or not (mnist / "instances.csv").exists():
        print(f"\n(skipping batch: {args.data} has no acasxu/ and mnist_fc/ instances)")
        return 0
    print(f"# batch runs — {machine()}, load {os.getloadavg()[0]:.2f}")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nnxform-bench-batch-") as tmp:
        work = Path(tmp)
        if "overhead" in sections:
            o = report["overhead"] = overhead(acas, work, args.skip_loop)
            per_row = o["batch_wall"] / o["rows"]
            lines = [["batch -j 1", round(o["batch_wall"], 1), round(per_row * 1e3, 1),
                      round(o["bound_seconds"] * 1e3, 1), round((per_row - o["bound_seconds"]) * 1e3, 1)]]
            if "loop_wall" in o:
                loop_row = o["loop_wall"] / o["rows"]
                lines.append(["shell loop", round(o["loop_wall"], 1), round(loop_row * 1e3, 1),
                              round(o["bound_seconds"] * 1e3, 1), round((loop_row - o["bound_seconds"]) * 1e3, 1)])
            print_table(f"bounds --method interval over {o['rows']} ACAS Xu rows ({o['ok']} ok; the command in the "
                        f"worker {o['command_in_worker'] * 1e3:.1f} ms a row)",
                        ["run", "wall s", "ms per row", "bound itself ms", "overhead ms per row"], lines)
        lines = []
        if "canon" in sections:
            lines += throughput(acas / "instances.csv", ["canon"], work, "canon")
        if "compress" in sections:
            rows = subset(mnist / "instances.csv", None, work / "compress-subset.csv", args.compress_model)
            lines += throughput(rows, ["compress"], work, "compress")
        if lines:
            report["throughput"] = lines
            print_table("rows per second by engine", ["command", "engine", "rows", "ok", "wall s", "rows/s",
                                                       "speed-up", "rows' own s", "same results"], lines)
        if "paper001" in sections:
            report["paper001"] = paper001(mnist, work, args.milp_rows)
            print_table(f"paper 001: bounds --method milp on the first {args.milp_rows} mnist_fc rows, original and "
                        "pruned (neuron, ratio 0.3)", ["run", "rows", "ok", "exact", "timeout", "total s", "median s",
                                                       "wall s"], report["paper001"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
