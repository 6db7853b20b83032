"""The inner loop (issue 21): nnxform's ``symbolic`` bounds against auto_LiRPA's CROWN and α-CROWN, side by side.

``python bench/crown.py [--envs DIR] [--wide PATH] [--repeat 5] [--samples 2000] [--profile]``. One thread
each (BLAS and torch), the best of ``--repeat`` runs after one warm-up run, milliseconds. Compiling the network
(``compile_model``, auto_LiRPA's ``BoundedModule``) is left out on both sides. α-CROWN is auto_LiRPA's
``alpha-CROWN`` with 20 iterations per bound side (its defaults otherwise, early stop included). ``symbolic`` runs
three times: with its default 10 Adam steps on the output's ReLU slopes, with none (``bounds --slope-steps 0``,
CROWN's bounds: the like-for-like comparison with CROWN), and with 20 on every hidden layer and 20 on the output
(``--hidden-steps 20 --slope-steps 20``: α-CROWN's bounds, compared with α-CROWN's 20 iterations).

auto_LiRPA runs in its own venv, ``DIR/auto_lirpa`` (``make verifiers`` builds it from ``ABCROWN_SRC``'s
submodule; ``DIR`` defaults to ``$VERIFIER_ENVS``, else ``build/verifiers``): this file, run there with
``--lirpa-worker``, loads each ONNX with onnx2torch and writes its timings and bounds as JSON. Without that
venv the CROWN columns say so and the rest still runs.

Networks and boxes (issue 21's table): mnist-net_256x{2,4,6} on their VNN-COMP boxes
(``../shared/testdata/mnist_fc``), and the oval21 CNNs cifar_base_kw (``../shared/testdata/oval21``, else
``models/``) and cifar_wide_kw (VNN-COMP 2022 ``benchmarks/oval21/onnx/cifar_wide_kw.onnx.gz`` gunzipped, at
``--wide``, by default ``../shared/testdata/oval21/cifar_wide_kw.onnx`` when there; the row is skipped when the
file is missing) on a seeded uniform image ± 2/255 clipped to [0, 1]
(``cnn_nets.image_box``, seed 0). Every bound is checked against ``--samples`` outputs of onnxruntime (half
uniform in the box, half random vertices, and the centre): the last column counts the samples outside each tool's
bounds, and a sample outside nnxform's fails the run. "ours, real arithmetic" is ``symbolic``'s width sum for the
real-valued network, CROWN's question: nnxform's own bounds also cover the float32 network's rounding (on the CNNs,
most of the gap to CROWN).
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # one thread each: set before numpy (or torch, in the worker) starts its pool

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nnxform.analyzers.network import CompiledNetwork
    from nnxform.domain import Box
    from nnxform.ir import Model

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "testdata"
ALPHA_STEPS = 20
CIFAR_EPS = 2 / 255


# --- the worker, run in auto_LiRPA's venv --------------------------------------------------------------------


def lirpa_worker(job_path: Path, result_path: Path) -> None:
    """Time CROWN and α-CROWN on every case of the job, best of ``repeat`` after a warm-up; write the JSON."""
    import onnx
    import torch
    from onnx2torch import convert

    import auto_LiRPA
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

    torch.set_num_threads(1)
    job = json.loads(job_path.read_text())
    results = []
    for case in job["cases"]:
        try:
            module = convert(onnx.load(case["onnx"])).eval()
            shape = case["shape"]
            lower = torch.tensor(case["lower"], dtype=torch.float32).reshape(shape)
            upper = torch.tensor(case["upper"], dtype=torch.float32).reshape(shape)
            x = BoundedTensor((lower + upper) / 2, PerturbationLpNorm(x_L=lower, x_U=upper))
            entry: dict = {"label": case["label"]}
            for key, method in (("crown", "CROWN"), ("alpha", "alpha-CROWN")):
                bounded = BoundedModule(module, (lower + upper) / 2, device="cpu", verbose=False,
                                        bound_opts={"optimize_bound_args": {"iteration": ALPHA_STEPS}})

                def run() -> tuple:
                    if method == "CROWN":
                        with torch.no_grad():
                            return bounded.compute_bounds(x=(x,), method=method)
                    return bounded.compute_bounds(x=(x,), method=method)

                run()
                best = float("inf")
                for _ in range(job["repeat"]):
                    start = time.perf_counter()
                    lo, hi = run()
                    best = min(best, time.perf_counter() - start)
                entry[key] = {"seconds": best, "lower": lo.detach().flatten().tolist(),
                              "upper": hi.detach().flatten().tolist()}
        except Exception as exc:  # one network's failure is that row's answer
            entry = {"label": case["label"], "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        results.append(entry)
    result_path.write_text(json.dumps({"torch": torch.__version__, "auto_LiRPA": auto_LiRPA.__version__,
                                       "cases": results}))


# --- nnxform's side ------------------------------------------------------------------------------------------


def cases(wide: Path) -> tuple[list[tuple[str, Path, Box]], list[str]]:
    """(label, onnx, box) of every row whose files exist, and a note for each row skipped."""
    from cnn_nets import image_box

    from nnxform.domain import Box
    from nnxform.vnnlib import read_box

    mnist = SHARED / "mnist_fc"
    rows = [(f"256x{k} {prop}", mnist / f"mnist-net_256x{k}.onnx", mnist / f"{prop}.vnnlib")
            for k, prop in ((2, "prop_0_0.05"), (4, "prop_0_0.05"), (4, "prop_1_0.03"), (6, "prop_0_0.05"))]
    _, lo, hi = image_box((1, 3, 32, 32), CIFAR_EPS, 0)
    image = Box(lo, hi)
    base = SHARED / "oval21" / "cifar_base_kw.onnx"
    rows += [("cifar_base_kw, ε 2/255", base if base.exists() else ROOT / "models" / "cifar_base_kw.onnx", image),
             ("cifar_wide_kw (oval21), ε 2/255", wide, image)]
    found, notes = [], []
    for label, onnx_path, box in rows:
        missing = [str(p) for p in (onnx_path, box) if isinstance(p, Path) and not p.exists()]
        if missing:
            notes.append(f"{label}: skipped ({', '.join(missing)} not found)")
            continue
        found.append((label, onnx_path, read_box(box) if isinstance(box, Path) else box))
    return found, notes


def lirpa_python(envs: Path) -> tuple[Path | None, str]:
    """auto_LiRPA's venv python when ``import auto_LiRPA, onnx2torch`` works there, else None and why not."""
    python = envs / "auto_lirpa" / "bin" / "python"
    if not python.exists():
        return None, f"auto_LiRPA not installed ({python} not found: `make verifiers ABCROWN_SRC=…` builds it)"
    check = subprocess.run([str(python), "-c", "import auto_LiRPA, onnx2torch"], capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"auto_LiRPA not usable in {python}: {(check.stderr.strip().splitlines() or ['?'])[-1]}"
    return python, ""


def run_lirpa(python: Path, job: dict) -> dict:
    """The worker's JSON for ``job`` (run in auto_LiRPA's venv, in a process of its own)."""
    with tempfile.TemporaryDirectory() as work:
        job_path, result_path = Path(work) / "job.json", Path(work) / "result.json"
        job_path.write_text(json.dumps(job))
        run = subprocess.run([str(python), str(Path(__file__).resolve()), "--lirpa-worker", str(job_path),
                              str(result_path)], capture_output=True, text=True, cwd=work)
        if run.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"auto_LiRPA worker failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
        return json.loads(result_path.read_text())


def samples(model: Model, box: Box, n: int, seed: int = 0) -> np.ndarray:
    """onnxruntime outputs at ``n`` points of ``box``: half uniform, half random vertices, and the centre."""
    from nnxform.runtime import OnnxRunner

    rng = np.random.default_rng(seed)
    lo, hi = box.lower, box.upper
    uniform = rng.uniform(lo, hi, (n // 2, lo.size))
    vertices = np.where(rng.random((n - n // 2, lo.size)) < 0.5, lo, hi)
    xs = np.vstack([uniform, vertices, (lo + hi)[None] / 2]).astype(np.float32)
    return OnnxRunner(model)(xs)


def outside(ys: np.ndarray, lower, upper) -> int:
    """How many sampled outputs fall outside [lower, upper] in some coordinate."""
    return int(np.any((ys < np.asarray(lower)) | (ys > np.asarray(upper)), axis=1).sum())


def real_width(net: CompiledNetwork, box: Box) -> float:
    """The output width sum of ``symbolic`` for the real-valued network (CROWN's question: no float32 rounding of the
    network's own, which nnxform's bounds otherwise cover), to compare relaxations alone."""
    from nnxform.analyzers import interval, symbolic
    from nnxform.analyzers.result import State

    state = symbolic.symbolic(interval.interval(State.start(net, box, real=True)))
    return float(np.sum(state.hi[net.output] - state.lo[net.output]))


def profile(net: CompiledNetwork, box: Box) -> None:
    """The top of cProfile's cumulative table for one ``symbolic`` run."""
    import cProfile
    import pstats

    from nnxform.analyzers import bounds

    profiler = cProfile.Profile()
    profiler.runcall(bounds, net, box, "symbolic")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=Path,
                        default=Path(os.environ.get("VERIFIER_ENVS", ROOT / "build" / "verifiers")),
                        help="Folder of the verifiers' venvs (auto_LiRPA's is DIR/auto_lirpa).")
    wide = SHARED / "oval21" / "cifar_wide_kw.onnx"
    parser.add_argument("--wide", type=Path,
                        default=wide if wide.exists() else ROOT / "build" / "bench_crown" / "cifar_wide_kw.onnx",
                        help="cifar_wide_kw.onnx (VNN-COMP 2022 oval21); its row is skipped when missing.")
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs after the warm-up (the best is shown).")
    parser.add_argument("--samples", type=int, default=2000, help="onnxruntime samples per box for the check.")
    parser.add_argument("--profile", action="store_true", help="Also profile one symbolic run per network.")
    parser.add_argument("--lirpa-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lirpa_worker:
        lirpa_worker(*args.lirpa_worker)
        return

    sys.path.insert(0, str(ROOT / "bench"))
    from common import best_time, machine, print_table

    from nnxform.analyzers import bounds, compile_model
    from nnxform.ir import load

    found, notes = cases(args.wide)
    load_start = os.getloadavg()[0]
    python, why = lirpa_python(args.envs.resolve())
    ours, theirs, versions = [], {}, ""
    for label, onnx_path, box in found:  # each row's two sides within seconds of each other: the load drifts
        model = load(str(onnx_path))
        net = compile_model(model)
        bounds(net, box, "symbolic")
        seconds, result = best_time(lambda n=net, b=box: bounds(n, b, "symbolic"), args.repeat)
        plain = best_time(lambda n=net, b=box: bounds(n, b, "symbolic", slope_steps=0), args.repeat)
        tight = best_time(lambda n=net, b=box: bounds(n, b, "symbolic", slope_steps=ALPHA_STEPS,
                                                      hidden_steps=ALPHA_STEPS), args.repeat)
        ours.append((seconds, result, plain, tight, samples(model, box, args.samples), real_width(net, box)))
        if args.profile:
            print(f"\n### profile: symbolic on {label}")
            profile(net, box)
        if python is None:
            continue
        job = {"repeat": args.repeat, "cases": [{"label": label, "onnx": str(onnx_path.resolve()), "shape": [
            1, *model.input_shape[1:]], "lower": box.lower.tolist(), "upper": box.upper.tolist()}]}
        try:
            data = run_lirpa(python, job)
        except RuntimeError as exc:
            theirs[label] = {"error": str(exc)}
            continue
        theirs[label] = data["cases"][0]
        versions = f"auto_LiRPA {data['auto_LiRPA']}, torch {data['torch']}"
    rows, unsound = [], []
    for (label, _, _), (seconds, result, (plain_seconds, plain), (tight_seconds, tight), ys, real) in zip(found, ours):
        c = theirs.get(label, {})
        crown, alpha = c.get("crown"), c.get("alpha")
        counts = [outside(ys, r.output_lower, r.output_upper) for r in (result, plain, tight)] + \
            [outside(ys, t["lower"], t["upper"]) for t in (crown, alpha) if t]
        if any(counts[:3]):
            unsound.append(label)
        widths = [f"{r.width_sum:.4g}" for r in (result, plain, tight)] + \
            [f"{float(np.sum(np.subtract(t['upper'], t['lower']))):.4g}" for t in (crown, alpha) if t]
        rows.append([label, f"{seconds * 1e3:.1f} / {plain_seconds * 1e3:.1f}",
                     f"{crown['seconds'] * 1e3:.1f}" if crown else c.get("error", "—"),
                     f"{seconds / crown['seconds']:.2f}× / {plain_seconds / crown['seconds']:.2f}×" if crown else "—",
                     f"{tight_seconds * 1e3:,.0f}", f"{alpha['seconds'] * 1e3:,.0f}" if alpha else "—",
                     f"{tight_seconds / alpha['seconds']:.2f}×" if alpha else "—",
                     " / ".join(widths), f"{real:.4g}", " / ".join(map(str, counts))])
    print(f"# bounds against CROWN — {machine()}, load {load_start:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{versions or why}")
    print_table(f"The inner loop: symbolic against CROWN and α-CROWN ({ALPHA_STEPS} steps), one thread each, "
                f"best of {args.repeat} after a warm-up, ms",
                ["network, box", "symbolic ms (10 / 0 slope steps)", "CROWN ms", "ours / CROWN (10 / 0)",
                 f"ours α ms ({ALPHA_STEPS} + {ALPHA_STEPS} steps)", "α-CROWN ms", "ours α / α-CROWN",
                 "width sum: ours 10 / ours 0 / ours α / CROWN / α-CROWN", "ours, real arithmetic",
                 f"outside of {args.samples + 1} samples: ours 10 / 0 / α / CROWN / α-CROWN"],
                rows)
    for note in notes + ([why] if python is None else []):
        print(f"note: {note}")
    if unsound:
        print(f"UNSOUND: sampled outputs lie outside nnxform's symbolic bounds on {', '.join(unsound)}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
