"""``nnxform equiv`` on issue 21's equivalence targets: decided, and how fast.

``python bench/equiv.py [--part acas|mnist|top1|all] [--timeout S] [--boxes N]``, one BLAS thread (part of
``make bench``: about 20 minutes with the defaults, most of it the float32 MNIST boxes that run to their timeout).

- ``acas``: ACAS Xu 1_1 against its float16 copy and a 20 %-pruned copy (``prune --method weight``) on the prop 1-4
  boxes, at E = 0.5, 2 and 10 times the largest difference the witness search finds on the box (below it: must be
  ``not equivalent``; above: equivalent if the analysis gets below E, which the float32 rounding bound may forbid).
- ``mnist``: mnist-net_256x2 against its float16 copy on ``--boxes`` boxes of the bundled MNIST test digits
  (ε = 3/255, clipped to [0, 1]), E = 1e-3, for the float32 networks and ``--real``.
- ``top1``: ``--top1`` on the same pairs and boxes.

Every ``not equivalent`` is replayed here in onnxruntime (and its arg-maxes for top-1); a replay that does not reach
E (or shows the same class) fails the run. ACAS needs ``../shared/testdata/vnncomp2022/acasxu``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections import Counter

import numpy as np

from common import MODELS, SHARED, machine, print_table
from nnxform.discrepancy import Pair
from nnxform.domain import Box
from nnxform.equiv import equivalence, top1_equivalence
from nnxform.ir import Model, load
from nnxform.passes.quantize import quantize
from nnxform.pruning import prune
from nnxform.runtime import OnnxRunner
from nnxform.vnnlib import read_specification

MNIST_EPS, MNIST_E = 3 / 255, 1e-3


def acas_pairs() -> tuple[Model, dict[str, Model], list[tuple[str, Box]]]:
    a = load(MODELS / "ACASXU_run2a_1_1_batch_2000.onnx")
    copies = {"float16": quantize(a, float16=True)[0], "pruned 20 %": prune(a, "weight", 0.2).model}
    boxes = [(f"prop {p}", read_specification(SHARED / "vnncomp2022" / "acasxu" / "vnnlib" / f"prop_{p}.vnnlib",
                                              (5, 5))[0].box) for p in (1, 2, 3, 4)]
    return a, copies, boxes


def mnist_boxes(n: int) -> list[Box]:
    data = np.loadtxt(MODELS / "data" / "mnist_test_100.csv", delimiter=",")[:n]
    xs = data[:, 1:] / 255.0
    return [Box(np.clip(x - MNIST_EPS, 0, 1), np.clip(x + MNIST_EPS, 0, 1)) for x in xs]


def checked(a: Model, b: Model, r, eps: float) -> None:
    """Fail on a ``not equivalent`` whose counterexample onnxruntime does not confirm."""
    if r.answer != "not equivalent":
        return
    x = np.asarray(r.witness, np.float32)[None]
    ya, yb = OnnxRunner(a)(x).astype(np.float64), OnnxRunner(b)(x).astype(np.float64)
    if eps is None:
        assert np.argmax(ya) != np.argmax(yb), "a top-1 counterexample with the same class"
    else:
        assert np.abs(ya - yb).max() >= eps, "a counterexample below E"


def run_acas(timeout: float) -> None:
    a, copies, boxes = acas_pairs()
    rows, times = [], {"holds": [], "not": []}
    for name, b in copies.items():
        pair = Pair(a, b)
        for label, box in boxes:
            found = float(np.abs(pair.witness(box)[1]).max())
            for m in (0.5, 2, 10):
                r = equivalence(a, b, box, m * found, timeout)
                checked(a, b, r, m * found)
                times["not" if m < 1 else "holds"].append(r.seconds)
                rows.append([name, label, f"{m:g} × {found:.3g}", r.answer, f"{r.bound:.3g}", f"{r.found:.3g}",
                             r.leaves, f"{r.seconds:.2f}"])
    print_table(f"ACAS Xu 1_1 against its copies, {timeout:g} s each", ["copy", "box", "E", "answer", "proved bound",
                "largest found", "sub-boxes", "s"], rows)
    all_times = times["holds"] + times["not"]
    decided = sum(r[3] != "unknown" for r in rows)
    print(f"\ndecided {decided}/{len(rows)}; median {np.median(all_times):.2f} s (E above the found difference: "
          f"{np.median(times['holds']):.2f} s, below: {np.median(times['not']):.2f} s)")


def run_mnist(n: int, timeout: float) -> None:
    a = load(MODELS / "mnist-net_256x2.onnx")
    b = quantize(a, float16=True)[0]
    rows = []
    for real in (False, True):
        answers, seconds = Counter(), []
        for box in mnist_boxes(n):
            r = equivalence(a, b, box, MNIST_E, timeout, real=real)
            checked(a, b, r, MNIST_E)
            answers[r.answer] += 1
            seconds.append(r.seconds)
        rows.append(["real" if real else "float32", n, answers["equivalent"], answers["not equivalent"],
                     answers["unknown"], f"{np.median(seconds):.2f}", f"{max(seconds):.1f}", f"{sum(seconds):.0f}"])
    print_table(f"mnist-net_256x2 against its float16 copy, ε = 3/255, E = {MNIST_E:g}, {timeout:g} s each",
                ["networks", "boxes", "equivalent", "not equivalent", "unknown", "median s", "max s", "total s"], rows)


def run_top1(n: int, timeout: float) -> None:
    rows = []
    a, copies, boxes = acas_pairs() if (SHARED / "vnncomp2022" / "acasxu").is_dir() else (None, {}, [])
    for name, b in copies.items():
        for label, box in boxes:
            r = top1_equivalence(a, b, box, timeout)
            checked(a, b, r, None)
            rows.append([f"ACAS 1_1 vs {name}", label, r.answer, r.classes or "", f"{r.seconds:.2f}"])
    m = load(MODELS / "mnist-net_256x2.onnx")
    m16 = quantize(m, float16=True)[0]
    answers, seconds = Counter(), []
    for box in mnist_boxes(n):
        r = top1_equivalence(m, m16, box, timeout)
        checked(m, m16, r, None)
        answers[r.answer] += 1
        seconds.append(r.seconds)
    rows.append(["mnist 256x2 vs float16", f"{n} boxes", dict(answers), "", f"median {np.median(seconds):.2f}"])
    print_table(f"top-1 equivalence, {timeout:g} s each", ["pair", "box", "answer", "classes (A, B)", "s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("acas", "mnist", "top1", "all"), default="all")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--boxes", type=int, default=20, help="MNIST boxes (issue 21's target: 100)")
    args = parser.parse_args()
    print(f"# nnxform equiv, {time.strftime('%Y-%m-%d %H:%M')}, {machine()}")
    if args.part in ("acas", "all"):
        if (SHARED / "vnncomp2022" / "acasxu").is_dir():
            run_acas(args.timeout)
        else:
            print("\n(ACAS Xu part skipped: ../shared/testdata/vnncomp2022/acasxu is missing)")
    if args.part in ("mnist", "all"):
        run_mnist(args.boxes, args.timeout)
    if args.part in ("top1", "all"):
        run_top1(args.boxes, args.timeout)


if __name__ == "__main__":
    main()
