"""Convolutions as dense matrices against convolutions as operators, in one run on one machine (issue 12).

``python bench/conv_forms.py``. Two tables:

- bounds: every affine step compiled dense (the form of sessions before this one, up to the memory limit) against
  the default forms (a lone Conv as ``ConvMap`` from 2^16 entries, any other segment as ``SubgraphMap`` from 2^24),
  same networks and boxes, compile and analysis times, output widths (equal to 1e-9);
- discrepancy: the pair ``cifar_base_kw`` against its 30 %-channel-pruned copy on the oval21 box by the dense
  difference analysis (convolutions written out, units matched one by one) and by the analysis form (convolutions
  kept, channels matched): preparing the pair, the symbolic bound, δ_max.

Each measurement is the best of three (a symbolic bound: one run); the two forms alternate, network by network.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from common import MODELS, SHARED, machine, print_table

from nnxform.analyzers import bounds, compile_model, network
from nnxform.analyzers.difference import NotAligned
from nnxform.discrepancy import Pair
from nnxform.domain import Box
from nnxform.ir import load
from nnxform.pruning import prune
from nnxform.vnnlib import read_box

import cnn_nets

OVAL = SHARED / "oval21" / "cifar_base_kw-img2578-eps0.021176470588235297.vnnlib"


@contextmanager
def dense_forms():
    """Every step a dense matrix, and the pair's difference analysis on dense chains."""
    saved = network.DENSE_CONV_LIMIT, network.CONV_MAP_LIMIT, Pair._convolutional
    network.DENSE_CONV_LIMIT = network.CONV_MAP_LIMIT = 2**40

    def refuse(self, *_):
        raise NotAligned("dense forms asked for")

    Pair._convolutional = refuse
    try:
        yield
    finally:
        network.DENSE_CONV_LIMIT, network.CONV_MAP_LIMIT, Pair._convolutional = saved


@contextmanager
def default_forms():
    yield


def best(fn, repeat: int = 3):
    out, t = None, float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def networks() -> list[tuple[str, object, Box]]:
    cases = []
    if OVAL.exists():
        cases.append(("cifar_base_kw (oval21)", load(MODELS / "cifar_base_kw.onnx"), read_box(OVAL)))
    from nnxform.ir import from_proto
    for name, proto in (("verivital_maxpool", cnn_nets.verivital("MaxPool")),
                        ("verivital_avgpool", cnn_nets.verivital("AveragePool"))):
        model = from_proto(proto)
        _, lo, hi = cnn_nets.image_box(tuple(model.input_shape), 2 / 255, 0)
        cases.append((name, model, Box(lo.reshape(-1).astype(np.float64), hi.reshape(-1).astype(np.float64))))
    return cases


def table_bounds() -> None:
    rows = []
    for name, model, box in networks():
        for method in ("interval", "symbolic"):
            result = {}
            for form, ctx in (("dense", dense_forms), ("operators", default_forms)):
                with ctx():
                    t_compile, net = best(lambda: compile_model(model))
                    t_bound, b = best(lambda: bounds(net, box, method), 1 if method == "symbolic" else 3)
                result[form] = (t_compile, t_bound, float((b.output_upper - b.output_lower).sum()))
            (cd, bd, wd), (co, bo, wo) = result["dense"], result["operators"]
            rows.append([name, method, f"{cd:.3f}", f"{co:.3f}", f"{bd:.3f}", f"{bo:.3f}", f"{bd / bo:.2f}×",
                         f"{wd:.6g}", f"{abs(wo - wd) / max(wd, 1e-12):.1e}"])
    print_table("bounds: dense matrices vs operators (seconds; best of 3, symbolic once)",
                ["network", "method", "compile dense", "compile ops", "bound dense", "bound ops", "speed-up",
                 "width sum", "rel. width diff"], rows)


def table_discrepancy() -> None:
    if not OVAL.exists():
        print("\n(discrepancy table skipped: ../shared/testdata/oval21 not present)")
        return
    a = load(MODELS / "cifar_base_kw.onnx")
    box = read_box(OVAL)
    b = prune(a, "neuron", 0.3).model
    rows = []
    for form, ctx in (("dense chains (units matched)", dense_forms), ("convolutions kept (channels matched)",
                                                                     default_forms)):
        with ctx():
            t_pair, pair = best(lambda: Pair(a, b))
            t_bound, r = best(lambda: pair.bound(box, "symbolic"))
        rows.append([form, f"{t_pair:.3f}", f"{t_bound:.3f}", f"{r.delta_max:.5g}"])
    print_table("discrepancy --method symbolic: cifar_base_kw − its 30 %-channel-pruned copy, oval21 box "
                "(seconds, best of 3)", ["analysis", "prepare pair", "symbolic bound", "δ_max bound"], rows)


def main() -> None:
    print(f"# dense matrices vs operators — {machine()}")
    np.seterr(all="ignore")
    table_bounds()
    table_discrepancy()


if __name__ == "__main__":
    main()
