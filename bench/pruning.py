"""Pruning without retraining on the VNN-COMP MNIST networks: accuracy, FGSM robustness, time, drift bound.

``python bench/pruning.py``. Networks: the bundled mnist-net_256x2, and mnist-net_256x4 from
``../shared/testdata/mnist_fc`` when present. Data: the bundled 100 MNIST test images (pixels / 255);
FGSM at ε 0.01 and 0.05, clipped to [0, 1]. Runs: ``neuron`` and ``saliency`` removing 10–80 % of
the hidden units, ``weight`` zeroing 50–90 % of the weights, each from the original network.
Saliency's neuron bounds are taken over the data domain [0, 1]^784 (seed 0, the default step of
2.5 % of each layer's units per epoch). The drift bound is ``max |f_pruned − f|`` over the VNN-LIB box prop_0_0.03
(symbolic discrepancy analysis); ``seen`` is the largest difference its witness search found.
Paper 003 reports at least 50 % of the accuracy kept with 50 % of the units pruned, without
retraining. Writes ``bench/pruning.png`` (accuracy against pruned share) when matplotlib imports.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import MODELS, SHARED, print_table

from nnxform.accuracy import load_data, measure
from nnxform.domain import Box
from nnxform.ir import load
from nnxform.pruning import prune
from nnxform.pruning.impact import impact_bound
from nnxform.vnnlib import read_box

EPS = [0.01, 0.05]
UNIT_RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
WEIGHT_RATIOS = [0.5, 0.6, 0.7, 0.8, 0.9]


def networks() -> list[tuple[str, Path]]:
    nets = [("256x2", MODELS / "mnist-net_256x2.onnx")]
    deeper = SHARED / "mnist_fc" / "mnist-net_256x4.onnx"
    if deeper.exists():
        nets.append(("256x4", deeper))
    return nets


def main() -> None:
    data = load_data(MODELS / "data" / "mnist_test_100.csv", 255)
    impact_box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    search_box = Box(np.zeros(784), np.ones(784))
    rows, curves = [], {}
    for name, path in networks():
        model = load(path)
        base = measure(model, data, EPS, (0.0, 1.0))
        rows.append([name, "original", 0, "", base.accuracy, *base.robustness.values(), "", "", "", ""])
        runs = [("neuron", r) for r in UNIT_RATIOS] + [("saliency", r) for r in UNIT_RATIOS]
        runs += [("weight", r) for r in WEIGHT_RATIOS]
        for method, ratio in runs:
            res = prune(model, method, ratio, box=search_box)
            ev = measure(res.model, data, EPS, (0.0, 1.0))
            t = time.perf_counter()
            impact = impact_bound(model, res, impact_box)
            impact_s = time.perf_counter() - t
            size = (f"{res.after.neurons} units" if method != "weight"
                    else f"{res.after.connections} w, {res.after.neurons} u")
            rows.append([name, method, int(round(ratio * 100)), size, ev.accuracy, *ev.robustness.values(),
                         round(ev.accuracy / base.accuracy, 2), round(res.seconds, 2),
                         f"{impact['impact_bound']:.4g} / {impact['impact']['found']:.3g}", round(impact_s, 2)])
            curves.setdefault((name, method), []).append((ratio, ev.accuracy))
    print_table("Pruning mnist_fc without retraining (100 MNIST test images; drift bound on prop_0_0.03)",
                ["network", "method", "% pruned", "left", "accuracy", "robust 0.01", "robust 0.05", "acc. kept",
                 "prune s", "drift bound / seen", "bound s"], rows)
    _plot(curves)


def _plot(curves: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot; pip install 'nnxform[plot]')")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, method), points in curves.items():
        x, y = zip(*points)
        ax.plot([100 * v for v in x], y, marker="o", linestyle="-" if name == "256x2" else "--",
                label=f"{name} {method}" + (" (share of weights)" if method == "weight" else ""))
    ax.set_xlabel("% pruned (hidden units; weights for weight pruning)")
    ax.set_ylabel("accuracy on 100 MNIST test images")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = Path(__file__).resolve().parent / "pruning.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    main()
