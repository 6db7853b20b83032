"""`nnxform verify` beside nnenum on rows of VNN-COMP ``instances.csv`` files (issue 21's side-by-side sample).

``python bench/verify.py [BENCHMARK_DIR ...] [--rows 0,10,...,180 | all] [--cap 60] [--envs DIR]``. Each
BENCHMARK_DIR holds an ``instances.csv`` in the VNN-COMP layout (default:
``../shared/testdata/vnncomp2022/acasxu`` with rows 0, 10, …, 180 and ``…/mnist_fc`` with rows 0, 6, …, 84;
``--rows`` applies to every folder, ``a,b,...,z`` meaning every ``b − a`` from ``a`` to ``z``). Each row runs
with the CSV's timeout, at most ``--cap`` seconds, one tool after the other, each in its own process; wall time
includes the tool's start-up.

- **nnxform**: ``nnxform verify ONNX VNNLIB --timeout T --result FILE`` (``.venv/bin/nnxform``, or ``--nnxform
  PATH``); every ``sat`` assignment is replayed in onnxruntime (inside the box, output in the unsafe region), and
  one that does not replay is a wrong answer. Rows say "command not available" while ``nnxform verify --help`` fails.
- **nnenum**: as its own VNN-COMP ``run_instance.sh`` runs it (``python -m nnenum.nnenum ONNX VNNLIB T OUT``,
  one BLAS thread, its processes on every core), in ``DIR/nnenum`` (``make verifiers NNENUM_SRC=…`` builds it;
  ``DIR`` defaults to ``$VERIFIER_ENVS``, else ``build/verifiers``). Its answers ``holds``/``violated`` are read as
  unsat/sat; it writes no counterexample, so its ``sat`` is not replayed.

A row where one tool says sat and another unsat is a disagreement: printed in capitals, and the run exits 1 (so
does a counterexample that does not replay). A wrong answer is the worst result a verifier can give.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nnxform.domain import Box

ROOT = Path(__file__).resolve().parent.parent
VNNCOMP = ROOT.parent / "shared" / "testdata" / "vnncomp2022"
DEFAULT_ROWS = {"acasxu": "0,10,...,180", "mnist_fc": "0,6,...,84"}
NOT_AVAILABLE = "command not available"
BAD_COUNTEREXAMPLE = "COUNTEREXAMPLE DOES NOT REPLAY"
GRACE = 30.0  # seconds past a row's timeout before its process is killed (counted as a timeout)


def parse_rows(spec: str, count: int) -> list[int]:
    """Row numbers of ``spec`` (``all``, ``3,5,8`` or ``a,b,...,z``) that exist among ``count`` rows."""
    if spec == "all":
        return list(range(count))
    parts = spec.split(",")
    if "..." in parts:
        a, b, z = int(parts[0]), int(parts[1]), int(parts[-1])
        rows = list(range(a, z + 1, b - a))
    else:
        rows = [int(p) for p in parts]
    return [r for r in rows if 0 <= r < count]


def run(args: list[str], limit: float, env: dict | None = None) -> tuple[int | None, float, str]:
    """Exit code (None: killed at ``limit + GRACE``), wall seconds and stderr's last line of one process."""
    start = time.perf_counter()
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=limit + GRACE, env=env)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - start, ""
    return done.returncode, time.perf_counter() - start, (done.stderr.strip().splitlines() or [""])[-1][:120]


def nnxform_available(nnxform: Path) -> bool:
    """Whether ``nnxform verify --help`` runs (the command exists in this build)."""
    return nnxform.exists() and subprocess.run([str(nnxform), "verify", "--help"], capture_output=True).returncode == 0


def replays(onnx_path: Path, vnnlib: Path, text: str) -> bool:
    """Whether the ``sat`` assignment in ``text`` lies in a box of the property and its output, recomputed in
    onnxruntime, in the property's unsafe region."""
    import onnxruntime as ort

    from nnxform.vnnlib import read_property

    xs = {int(i): float(v) for i, v in re.findall(r"\(\s*X_(\d+)\s+([-+0-9.eE]+)\s*\)", text)}
    if not xs:
        return False
    x = np.array([xs[i] for i in range(len(xs))], np.float32)
    def inside(box: Box) -> bool:  # within the box up to 1e-6 of its width, as bench/verifiers.py judges
        tol = 1e-6 * (1 + np.abs(box.upper - box.lower))
        return x.size == box.lower.size and bool(np.all(x >= box.lower - tol) and np.all(x <= box.upper + tol))

    cases = [(box, disjuncts) for box, disjuncts in read_property(vnnlib.read_text()) if inside(box)]
    if not cases:
        return False
    session = ort.InferenceSession(str(onnx_path))
    feed = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    y = np.concatenate([o.ravel() for o in session.run(None, {feed.name: x.reshape(shape)})]).astype(np.float64)

    def value(term: str) -> float:
        return float(y[int(term[2:])]) if term.startswith("Y_") else float(term)

    def holds(comparison: str) -> bool:
        op, a, b = comparison.strip("()").split()
        return value(a) <= value(b) if op == "<=" else value(a) >= value(b)

    return any(all(holds(c) for c in conj) for _, disjuncts in cases for conj in disjuncts)


def run_nnxform(nnxform: Path, onnx_path: Path, vnnlib: Path, limit: float, work: Path) -> dict:
    """One row through ``nnxform verify``: its answer (sat replayed), wall seconds, and a note."""
    result = work / "nnxform.txt"
    result.unlink(missing_ok=True)
    code, seconds, err = run([str(nnxform), "verify", str(onnx_path), str(vnnlib), "--timeout", f"{limit:g}",
                              "--result", str(result)], limit)
    text = result.read_text() if result.exists() else ""
    answer = (text.split() or ["timeout" if code is None else "error"])[0]
    note = "" if answer in ("sat", "unsat", "timeout", "unknown") else f"exit {code}: {err}"
    bad = answer == "sat" and not replays(onnx_path, vnnlib, text)
    return {"answer": answer, "seconds": seconds, "note": BAD_COUNTEREXAMPLE if bad else note}


def run_nnenum(python: Path, onnx_path: Path, vnnlib: Path, limit: float, work: Path) -> dict:
    """One row as nnenum's own ``run_instance.sh`` runs it; holds/violated read as unsat/sat."""
    result = work / "nnenum.txt"
    result.unlink(missing_ok=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    code, seconds, err = run([str(python), "-m", "nnenum.nnenum", str(onnx_path), str(vnnlib), f"{limit:g}",
                              str(result)], limit, env)
    word = (result.read_text().split() or [""])[0] if result.exists() else ""
    answer = {"holds": "unsat", "violated": "sat"}.get(word, word or ("timeout" if code is None else "error"))
    return {"answer": answer, "seconds": seconds, "note": "" if word else f"exit {code}: {err}"}


def summary(results: list[dict]) -> list:
    """Solved sat / unsat (a sat whose counterexample does not replay is not solved), timeouts, median and total
    wall seconds of one tool's rows."""
    ran = [r for r in results if r["answer"] != NOT_AVAILABLE]
    solved = [r for r in ran if r["note"] != BAD_COUNTEREXAMPLE]
    if not ran:
        return [NOT_AVAILABLE, "", "", "", ""]
    seconds = [r["seconds"] for r in ran]
    count = {a: sum(r["answer"] == a for r in solved) for a in ("sat", "unsat", "timeout")}
    return [f"{count['sat'] + count['unsat']}/{len(ran)}", f"{count['sat']} / {count['unsat']}", count["timeout"],
            f"{statistics.median(seconds):.1f}", f"{sum(seconds):.0f}"]


def main() -> None:
    # Each tool runs as installed, its modules' bytecode cached after the first row: a shell that sets
    # PYTHONDONTWRITEBYTECODE would make every row compile every module again (0.07 s a row for nnxform).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", type=Path, help="Folders with an instances.csv (default: "
                        "../shared/testdata/vnncomp2022/acasxu and mnist_fc).")
    parser.add_argument("--rows", help="Rows of each instances.csv: all, 3,5,8 or a,b,...,z (default: issue 21's "
                        "sample, ACAS 0,10,...,180 and mnist_fc 0,6,...,84; every row for other folders).")
    parser.add_argument("--cap", type=float, default=60.0, help="At most this many seconds per row (default 60).")
    parser.add_argument("--envs", type=Path,
                        default=Path(os.environ.get("VERIFIER_ENVS", ROOT / "build" / "verifiers")),
                        help="Folder of the verifiers' venvs (nnenum's is DIR/nnenum).")
    parser.add_argument("--nnxform", type=Path, default=ROOT / ".venv" / "bin" / "nnxform",
                        help="The nnxform to run (default: this repository's .venv).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from common import machine, print_table

    nnxform = args.nnxform
    nnenum = args.envs.resolve() / "nnenum" / "bin" / "python"
    tools = {"nnxform": nnxform_available(nnxform),
             "nnenum": nnenum.exists() and subprocess.run([str(nnenum), "-c", "import nnenum.nnenum"],
                                                          capture_output=True).returncode == 0}
    print(f"# nnxform verify beside nnenum — {machine()}, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, cap {args.cap:g} s", flush=True)
    if not tools["nnxform"]:
        print(f"note: `{nnxform} verify` is not available: its rows say '{NOT_AVAILABLE}'", flush=True)
    if not tools["nnenum"]:
        print(f"note: nnenum is not installed in {nnenum.parent.parent} (`make verifiers NNENUM_SRC=…`): its rows "
              "are left out", flush=True)
    names = [tool for tool, ok in tools.items() if ok or tool == "nnxform"]  # nnxform's rows say why not
    detail, totals, wrong = [], [], 0
    for folder in args.benchmarks or [VNNCOMP / name for name in DEFAULT_ROWS]:
        lines = [line for line in (folder / "instances.csv").read_text().splitlines() if line.strip()]
        rows = parse_rows(args.rows or DEFAULT_ROWS.get(folder.name, "all"), len(lines))
        per_tool: dict[str, list[dict]] = {tool: [] for tool in names}
        for row in rows:
            onnx_rel, vnnlib_rel, timeout = (part.strip() for part in lines[row].split(","))
            onnx_path, vnnlib = folder / onnx_rel, folder / vnnlib_rel
            limit = min(float(timeout), args.cap)
            answers = {}
            with tempfile.TemporaryDirectory() as work:
                for tool in per_tool:
                    if tool == "nnxform":
                        r = run_nnxform(nnxform, onnx_path, vnnlib, limit, Path(work)) if tools["nnxform"] else \
                            {"answer": NOT_AVAILABLE, "seconds": 0.0, "note": ""}
                    else:
                        r = run_nnenum(nnenum, onnx_path, vnnlib, limit, Path(work))
                    per_tool[tool].append(r)
                    answers[tool] = r
            decided = {r["answer"] for r in answers.values() if r["answer"] in ("sat", "unsat")}
            flag = "DISAGREEMENT: " + ", ".join(f"{t} {r['answer']}" for t, r in answers.items()) \
                if len(decided) > 1 else ""
            flag = "; ".join(f for f in [flag] + [f"{t}: {r['note']}" for t, r in answers.items() if r["note"]] if f)
            wrong += bool(len(decided) > 1) + sum(r["note"] == BAD_COUNTEREXAMPLE for r in answers.values())
            cells = [f"{r['answer']} {r['seconds']:.1f} s" if r["answer"] != NOT_AVAILABLE else NOT_AVAILABLE
                     for r in answers.values()]
            detail.append([f"{folder.name} {row}", f"{Path(onnx_rel).stem} {Path(vnnlib_rel).stem}", f"{limit:g}",
                           *cells, flag])
            print(f"  {folder.name} row {row}: " + ", ".join(f"{t} {c}" for t, c in zip(answers, cells))
                  + (f"  {flag}" if flag else ""), flush=True)
        for tool, results in per_tool.items():
            totals.append([folder.name, tool, f"{len(rows)} ({args.rows or DEFAULT_ROWS.get(folder.name, 'all')})",
                           *summary(results)])
    print_table("Per row (answer, wall seconds with start-up)", ["benchmark row", "instance", "timeout s",
                                                                  *names, "flag"], detail)
    print_table(f"Solved per tool (cap {args.cap:g} s)", ["benchmark", "tool", "rows", "solved", "sat / unsat",
                                                          "timeouts", "median s", "total s"], totals)
    if wrong:
        print(f"\n{wrong} WRONG OR DISPUTED ANSWER(S): see the flags above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
