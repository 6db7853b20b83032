"""Discrepancy of a network and its float16-truncated copy (as ReluDiff/NeuroDiff): bound, PGD lower bound, ratio, time.

``python bench/discrepancy.py [--images N] [--lp-boxes K] [--milp-boxes K] [--time-limit S]``.

Pairs: ``mnist-net_256x2`` and ACAS Xu 1_1, each against a copy whose every float constant is cast
to float16 and back. Boxes: L∞ balls of ε = 3/255 around the first N MNIST test images (clipped to
[0, 1]); for ACAS Xu the boxes of properties 1 and 3 plus random small boxes (half-width 2% of each
input's range). Per box, the reference lower bound of ``δ_max`` is the best ``|f_A − f_B|∞`` found
by a long witness search (sampling plus projected signed-gradient ascent, replayed in onnxruntime);
every method's ``δ_max`` is divided by it. ``lp`` and ``milp`` run on a few boxes only (the first
images; the first random ACAS Xu boxes), listed one by one in a second table. Times are per box,
excluding the one-off preparation of the pair;
``bound ms`` is the analysis (best of three for the cheap methods), ``witness ms`` the method's own
witness search and onnxruntime replay. On ACAS Xu a ``symbolic`` row refined by input splitting is added.
"""

from __future__ import annotations

import argparse
import os
import time

# One BLAS thread: on the 2-core machine, with anything else running, OpenBLAS's second thread made
# these small matrix products 5-10x slower (measured: symbolic 162 ms per MNIST box instead of 29).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from common import MODELS, best_time, print_table  # noqa: E402

import nnxform  # noqa: E402
from nnxform.discrepancy import Pair  # noqa: E402
from nnxform.domain import Box  # noqa: E402
from nnxform.ir import Model  # noqa: E402
from nnxform.vnnlib import read_box  # noqa: E402

EPS = 3 / 255
#: The normalised ACAS Xu input ranges (VNN-COMP): the random small boxes lie inside them.
ACAS_LOW = np.array([-0.3284228772, -0.5, -0.5, -0.5, -0.5])
ACAS_HIGH = np.array([0.6798577687, 0.5, 0.5, 0.5, 0.5])


def float16_copy(model: Model) -> Model:
    """``model`` with every float constant cast to float16 and back."""
    out = model.copy()
    for key, value in out.constants.items():
        if value.dtype.kind == "f":
            out.constants[key] = value.astype(np.float16).astype(value.dtype)
    return out


def mnist_boxes(n: int) -> list[tuple[str, Box]]:
    rows = np.loadtxt(MODELS / "data" / "mnist_test_100.csv", delimiter=",", max_rows=n, ndmin=2)[:, 1:] / 255.0
    return [(f"image {i}", Box(np.clip(x - EPS, 0, 1), np.clip(x + EPS, 0, 1))) for i, x in enumerate(rows)]


def acas_boxes(n_random: int, seed: int = 0) -> list[tuple[str, Box]]:
    rng = np.random.default_rng(seed)
    boxes = [(f"prop_{p}", read_box(MODELS / "vnnlib" / f"acasxu_prop_{p}.vnnlib")) for p in (1, 3)]
    half = 0.02 * (ACAS_HIGH - ACAS_LOW)
    for i in range(n_random):
        c = rng.uniform(ACAS_LOW + half, ACAS_HIGH - half)
        boxes.append((f"random {i}", Box(c - half, c + half)))
    return boxes


def run_pair(name: str, pair: Pair, boxes: list[tuple[str, Box]], plan: list[tuple[str, list[int], int]],
             time_limit: float) -> tuple[list[list], list[list]]:
    """Per (method, box indices, splits): median bound, reference lower bound, ratio, times; lp/milp per box."""
    reference = [float(np.abs(pair.witness(box, effort=5, seed=1)[1]).max()) for _, box in boxes]
    rows, details = [], []
    for method, chosen, splits in plan:
        count = len(chosen)
        if count == 0:
            continue
        bound, lower, ratio, ms, wit_ms, exact = [], [], [], [], [], 0
        for i in chosen:
            (label, box), ref = boxes[i], reference[i]
            d = pair.analyse(box, method, time_limit=time_limit, splits=splits)
            seconds = d.details["bound_seconds"]
            if method not in ("lp", "milp") and not splits:  # cheap: best of three
                seconds = min(seconds, best_time(lambda: pair.bound(box, method), repeat=2)[0])
            best = max(ref, d.found)
            bound.append(d.delta_max)
            lower.append(best)
            ratio.append(d.delta_max / best if best > 0 else np.inf)
            ms.append(1e3 * seconds)
            wit_ms.append(1e3 * d.details["witness_seconds"])
            exact += d.exact
            if method in ("lp", "milp"):
                details.append([name, method, label, f"{d.delta_max:.4g}", f"{best:.4g}", f"{ratio[-1]:.2f}",
                                "yes" if d.exact else "no", round(ms[-1])])
        shown = method + (f" + {splits} splits" if splits else "")
        shown += "" if count == len(boxes) else f" ({count} boxes)"
        rows.append([name, shown, count, f"{np.median(bound):.4g}", f"{np.median(lower):.4g}",
                     f"{np.median(ratio):.2f}", f"{np.max(ratio):.3g}", round(float(np.median(ms)), 1),
                     round(float(np.median(wit_ms)), 1), f"{exact}/{count}" if method == "milp" else ""])
    return rows, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="MNIST boxes (first N test images)")
    parser.add_argument("--acas-random", type=int, default=8, help="random small ACAS Xu boxes")
    parser.add_argument("--acas-splits", type=int, default=200, help="input splits of the refined ACAS Xu row")
    parser.add_argument("--lp-boxes", type=int, default=3)
    parser.add_argument("--milp-boxes", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per LP/MILP solve")
    args = parser.parse_args()
    cheap = ("interval", "symbolic", "merged-interval", "merged-symbolic")
    mnist, acas = mnist_boxes(args.images), acas_boxes(args.acas_random)

    def plan(boxes: list, costly_from: int, splits: int) -> list[tuple[str, list[int], int]]:
        """Cheap methods on every box (and refined by splitting); lp and milp on a few, from ``costly_from``."""
        every = list(range(len(boxes)))
        steps = [(m, every, 0) for m in cheap] + ([("symbolic", every, splits)] if splits else [])
        return steps + [(m, every[costly_from: costly_from + k], 0)
                        for m, k in (("lp", args.lp_boxes), ("milp", args.milp_boxes))]

    rows, details = [], []
    for name, path, boxes, steps in (
        ("mnist 256x2", MODELS / "mnist-net_256x2.onnx", mnist, plan(mnist, 0, 0)),
        ("acasxu 1_1", MODELS / "ACASXU_run2a_1_1_batch_2000.onnx", acas, plan(acas, 2, args.acas_splits)),
    ):
        model = nnxform.load(path)
        t = time.perf_counter()
        pair = Pair(model, float16_copy(model))
        prepare_ms = 1e3 * (time.perf_counter() - t)
        r, d = run_pair(name, pair, boxes, steps, args.time_limit)
        rows += r + [[name, f"(prepare the pair once: {prepare_ms:.0f} ms)", "", "", "", "", "", "", "", ""]]
        details += d
    load = os.getloadavg()[0]
    print_table(f"Discrepancy vs float16 copy, ε = 3/255 on MNIST (load average {load:.1f})",
                ["network", "method", "boxes", "median δ_max bound", "median PGD lower", "median ratio",
                 "max ratio", "bound ms", "witness ms", "exact"], rows)
    print_table("lp / milp per box", ["network", "method", "box", "δ_max bound", "lower", "ratio", "exact", "ms"],
                details)


if __name__ == "__main__":
    main()
