"""Bound analyzers on the VNN-COMP mnist_fc networks: time, output width sum, stable ReLUs per method.

``python bench/bounds.py``. Uses ``../shared/testdata/mnist_fc`` (256×2, 256×4, 256×6 with
prop_0_0.03) when present, else the bundled 256×2. ``lp`` runs on 256×2 only and ``milp``
(outputs only, seeded by ``lp``) on 256×2 only, with a per-solve time limit. Times exclude the
one-off compilation of the network into dense layers (shown separately); interval and symbolic
are the best of several runs.
"""

from __future__ import annotations

import time

from common import MODELS, SHARED, best_time, print_table

from nnxform.analyzers import bounds, compile_model
from nnxform.ir import load
from nnxform.vnnlib import read_box

#: auto_LiRPA CROWN measured on this machine (torch CPU, 2 threads), from the issue.
CROWN = {"256x4": (0.157, 951, 50.0), "256x6": (0.226, 1456, 57.0)}
MILP_TIME_LIMIT = 30.0


def networks() -> tuple[list[tuple[str, str, str]], str]:
    folder = SHARED / "mnist_fc"
    if folder.exists():
        box = str(folder / "prop_0_0.03.vnnlib")
        return [(f"256x{k}", str(folder / f"mnist-net_256x{k}.onnx"), box) for k in (2, 4, 6)], f"{folder}"
    note = f"{folder} not found: bundled mnist-net_256x2 only"
    return [("256x2", str(MODELS / "mnist-net_256x2.onnx"), str(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"))], note


def main() -> None:
    nets, source = networks()
    rows = []
    for name, path, box_path in nets:
        model, box = load(path), read_box(box_path)
        t = time.perf_counter()
        net = compile_model(model)
        compile_ms = (time.perf_counter() - t) * 1e3
        relus = sum(layer.lower.size for layer in bounds(net, box, "interval").relu_layers)
        ref = CROWN.get(name)
        results = []
        for method in ("interval", "symbolic"):
            seconds, b = best_time(lambda m=method, n=net, x=box: bounds(n, x, m), repeat=20)
            results.append((method, seconds, b))
        if name == "256x2":
            t = time.perf_counter()
            lp = bounds(net, box, "lp")
            results.append(("lp (all unstable neurons)", time.perf_counter() - t, lp))
            t = time.perf_counter()
            milp = bounds(net, box, "milp", seed=lp, time_limit=MILP_TIME_LIMIT)
            exact = "exact" if milp.exact else "not exact"
            results.append((f"milp (outputs, {exact}, seeded by lp)", time.perf_counter() - t, milp))
        for method, seconds, b in results:
            stable = b.stable_counts()
            rows.append([name, method, round(seconds * 1e3, 2), round(b.width_sum, 5),
                         f"{stable['active'] + stable['inactive']} / {relus}",
                         f"{ref[0]} / {ref[1]} / {ref[2]:.0f}" if ref and method == "symbolic" else ""])
        rows.append([name, "(compile to dense layers)", round(compile_ms, 1), "", "", ""])
    print_table(f"Bounds on mnist_fc, prop_0_0.03 ({source})",
                ["network", "method", "ms", "width sum", "stable ReLUs", "CROWN width / stable / ms"], rows)


if __name__ == "__main__":
    main()
