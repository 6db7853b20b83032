"""Paper 000 (compression repair, Algorithm 1) on the bundled data: Tables I and II and Figs. 3-4, and repair that
keeps the compression (issue 23).

``python bench/repair.py [grid] [alphas]`` (both without an argument). ``grid``: issue 23's targets, each repair
with the defaults (pointwise, α = 2, 10 rounds x 3 epochs, the grid kept with its steps searched in round 1, zeros
kept off a grid and round 1 a least-squares refit there): digits 2-bit per channel, mnist-net_256x2 3-bit per
tensor, and both pruned by ``prune -m weight -r 0.5`` instead, with rows beside them for ``--scales fixed`` and
``--no-refit`` (the session-8 behaviour); sizes are what the
repair reports (grid weights at their width plus float32 steps and biases, else float32). ``alphas``, issue 11's
table, retrained in float (``keep_grid=False``): Digits: 64-256-64-10 trained on the digits train split (``nnxform.training``: Adam,
lr 1e-3, 30 epochs, seed 0), compressed by 4-bit quantisation or, when that costs fewer than 5 accuracy points,
the finest grid that does (per channel before per tensor at each width, widths 4, 3, 2). Domain: L∞ boxes of
ε = 0.02 (clipped to [0, 1]) around ten test images picked by seed 0. Repair with α = 2, 5, 10, 20 and both update
rules, 10 rounds x 3 epochs on 1,000 samples of the domain plus the training split (retrained with the same rule,
as the paper adds images outside its boxes), no target (every round runs; the round where the paper's target,
0.67 of the initial bound, is first met is given). MNIST: mnist-net_256x2 quantised the same way (accuracy on the
100 bundled images), boxes of ε = 0.02 around the first ten images, retrained on the ten boxes only (no MNIST
training data is bundled). Writes ``bench/repair.png`` (bound and accuracy per round, Figs. 3-4) when matplotlib
imports. Every δ here is a sound bound (difference analysis, symbolic) for the float32 networks as onnxruntime
runs them; "seen" is the largest difference found in onnxruntime.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from common import MODELS, print_table  # noqa: E402

from nnxform.accuracy import Dataset, load_data  # noqa: E402
from nnxform.discrepancy import Pair  # noqa: E402
from nnxform.ir import Model, load  # noqa: E402
from nnxform.layered import model_size  # noqa: E402
from nnxform.passes.quantize import grid_name, quantize  # noqa: E402
from nnxform.pruning import prune  # noqa: E402
from nnxform.repair import RepairOptions, RepairResult, boxes_around, repair  # noqa: E402
from nnxform.runtime import OnnxRunner  # noqa: E402
from nnxform.training import TrainOptions, init_network, train  # noqa: E402

ALPHAS = (2.0, 5.0, 10.0, 20.0)
UPDATES = ("paper", "pointwise")
EPS = 0.02
#: Paper 000, Table II: mean δ before / after repair on its ten MNIST images.
PAPER_TABLE_II = [(0.4750, 0.0625), (0.4189, 0.0969), (0.6339, 0.1034), (0.4746, 0.0870), (0.8272, 0.1217),
                  (0.6200, 0.1189), (0.6458, 0.0701), (0.5440, 0.1505), (0.5908, 0.0953), (0.8283, 0.1053)]
#: Paper 000, Table I: parameters, size (KB), accuracy (%).
PAPER_TABLE_I = {"original": (218058, 855, 98), "compressed": (218058, 226, 91), "repaired": (218058, 226, 98)}


def accuracy(model: Model, data: Dataset) -> float:
    return float(np.mean(OnnxRunner(model)(data.x).argmax(axis=1) == data.y))


def compress(model: Model, test: Dataset) -> tuple[Model, int, bool, list[list]]:
    """4-bit quantisation, or the finest grid that costs >= 5 accuracy points; every grid tried, as rows."""
    base = accuracy(model, test)
    rows, chosen = [], None
    for bits in (4, 3, 2):
        for per_channel in (True, False):
            q, _ = quantize(model, bits=bits, per_channel=per_channel)
            acc = accuracy(q, test)
            rows.append([grid_name(bits, per_channel), round(100 * acc, 1), round(100 * (base - acc), 1)])
            if chosen is None and base - acc >= 0.05:
                chosen = (q, bits, per_channel)
    if chosen is None:
        q, _ = quantize(model, bits=2, per_channel=False)
        chosen = (q, 2, False)
    return chosen[0], chosen[1], chosen[2], rows


def size_kb(model: Model, bits: int | None, per_channel: bool) -> float:
    """Storage in KB: float32 parameters, or the affine layers' weights at ``bits`` bits plus float32 biases and
    scales (one per tensor, or one per output unit)."""
    parameters = model_size(model).parameters
    if bits is None:
        return 4 * parameters / 1024
    affine = [n for n in model.nodes if n.op in ("Gemm", "MatMul")]
    weights = sum(model.constants[n.inputs[1]].size for n in affine)
    scales = sum(model.constants[n.inputs[2]].size for n in affine if len(n.inputs) > 2) if per_channel else len(affine)
    return (weights * bits / 8 + 4 * (parameters - weights) + 4 * scales) / 1024


def first_at(result: RepairResult, ratio: float = 0.67) -> str:
    """The round where the bound first meets ``ratio`` of the initial one (the paper's target), or '-'."""
    hit = [r.round for r in result.rounds if r.bound <= ratio * result.initial.delta_max]
    return str(hit[0]) if hit else "-"


def run(name: str, original: Model, test: Dataset, centres: np.ndarray, train_points: np.ndarray | None,
        summary: list, curves: dict) -> None:
    """Compress, repair with every rule and α, print Tables I and II for the best run."""
    compressed, bits, per_channel, grids = compress(original, test)
    print_table(f"{name}: accuracy of each quantisation grid on the test data (chosen: "
                f"{grid_name(bits, per_channel)})", ["grid", "accuracy %", "points lost"], grids)
    boxes = boxes_around(centres, EPS, (0.0, 1.0))
    results = {}
    for update in UPDATES:
        for alpha in ALPHAS:
            t = time.perf_counter()
            r = repair(original, compressed, boxes, RepairOptions(alpha=alpha, update=update, rounds=10, epochs=3,
                                                                  keep_grid=False), train_points=train_points, test=test)
            seconds = time.perf_counter() - t
            results[(update, alpha)] = r
            curves[(name, update, alpha)] = r
            acc_ok = abs(r.accuracy["repaired"] - r.accuracy["original"]) <= 0.01
            red = r.initial.mean / r.final.mean
            summary.append([name, update, alpha, round(r.initial.mean, 4), round(r.final.mean, 4), round(red, 2),
                            round(r.final.sampled_max, 4), round(100 * r.accuracy["compressed"], 1),
                            round(100 * r.accuracy["repaired"], 1), first_at(r), round(seconds, 1),
                            "yes" if acc_ok and red >= 5 and seconds < 60 else "no"])
    best_key = min(results, key=lambda k: (results[k].final.mean, k))
    best = results[best_key]
    requantized, _ = quantize(best.model, bits=bits, per_channel=per_channel)
    pair = Pair(original, requantized)
    rq = np.array([pair.bound(b).delta_max for b in boxes])
    rows = [["original", model_size(original).parameters, round(size_kb(original, None, False), 1),
             round(100 * best.accuracy["original"], 1), *PAPER_TABLE_I["original"]],
            [f"compressed ({grid_name(bits, per_channel)})", model_size(compressed).parameters,
             round(size_kb(compressed, bits, per_channel), 1), round(100 * best.accuracy["compressed"], 1),
             *PAPER_TABLE_I["compressed"]],
            [f"repaired ({best_key[0]}, α {best_key[1]:g}; float32 weights)", model_size(best.model).parameters,
             round(size_kb(best.model, None, False), 1), round(100 * best.accuracy["repaired"], 1),
             *PAPER_TABLE_I["repaired"]],
            ["repaired, re-quantised to the same grid", model_size(requantized).parameters,
             round(size_kb(requantized, bits, per_channel), 1), round(100 * accuracy(requantized, test), 1), "", "", ""]]
    print_table(f"{name}: Table I (ours | paper 000's MNIST figures)",
                ["network", "parameters", "size KB", "accuracy %", "paper params", "paper KB", "paper acc %"], rows)
    per_image = []
    for i in range(len(boxes)):
        paper = PAPER_TABLE_II[i] if i < len(PAPER_TABLE_II) else ("", "")
        per_image.append([i, round(best.initial.per_box_outputs[i], 4), round(best.final.per_box_outputs[i], 4),
                          round(best.initial.per_box[i], 4), round(best.final.per_box[i], 4), round(rq[i], 4), *paper])
    per_image.append(["mean", round(best.initial.per_box_outputs.mean(), 4), round(best.final.per_box_outputs.mean(), 4),
                      round(best.initial.mean, 4), round(best.final.mean, 4), round(rq.mean(), 4),
                      round(np.mean([p[0] for p in PAPER_TABLE_II]), 4),
                      round(np.mean([p[1] for p in PAPER_TABLE_II]), 4)])
    print_table(f"{name}: Table II, sound δ on ten boxes of ε {EPS:g} ({best_key[0]}, α {best_key[1]:g}); mean δ is "
                "the mean over outputs of the sound max |f1,i − f2,i|, ‖δ‖∞ its max; paper 000's mean δ beside",
                ["image", "mean δ before", "mean δ after", "‖δ‖∞ before", "‖δ‖∞ after", "‖δ‖∞ re-quantised",
                 "paper before", "paper after"], per_image)


def plot(curves: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot; pip install 'nnxform[plot]')")
        return
    names = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 4 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        for (net, update, alpha), r in sorted(curves.items()):
            if net != name:
                continue
            style = "-" if update == "pointwise" else ":"
            rounds = [x.round for x in r.rounds]
            row[0].plot(rounds, [x.mean_box_bound for x in r.rounds], style, marker="o", markersize=3,
                        label=f"{update} α={alpha:g}")
            row[1].plot(rounds, [100 * x.accuracy for x in r.rounds], style, marker="o", markersize=3,
                        label=f"{update} α={alpha:g}")
        row[0].set(title=f"{name}: mean sound ‖δ‖∞ over ten boxes (Fig. 3)", xlabel="round", ylabel="δ", yscale="log")
        row[1].set(title=f"{name}: test accuracy (Fig. 4)", xlabel="round", ylabel="accuracy %")
        row[0].legend(fontsize=7)
    fig.tight_layout()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "repair.png")
    fig.savefig(out, dpi=110)
    print(f"\nplot: {out}")


def kept(original: Model, compressed: Model, label: str, test: Dataset, centres: np.ndarray,
         train_points: np.ndarray | None, rows: list, options: RepairOptions = RepairOptions()) -> None:
    """One repair on the ten boxes (the defaults unless ``options``): a row of issue 23's table."""
    t = time.perf_counter()
    r = repair(original, compressed, boxes_around(centres, EPS, (0.0, 1.0)), options,
               train_points=train_points, test=test)
    seconds = time.perf_counter() - t
    zeros = [n for n in compressed.nodes if n.op == "Gemm"]
    zero_mask = [compressed.constants[n.inputs[1]] == 0 for n in zeros]
    written = [r.model.constants[n.inputs[1]] for n in r.model.nodes if n.op == "Gemm"]
    zeros_kept = all(np.all(w[m] == 0) for w, m in zip(written, zero_mask)) if len(written) == len(zero_mask) else False
    rows.append([label, f"{r.grid.kinds}, steps {r.grid.scales}" if r.grid is not None else "none", "yes" if r.options.keep_zeros else "no",
                 round(r.initial.mean, 4), round(r.final.mean, 4), round(r.initial.mean / r.final.mean, 2),
                 round(r.final.sampled_max, 4), r.kept, round(100 * r.accuracy["original"], 1),
                 round(100 * r.accuracy["compressed"], 1), round(100 * r.accuracy["repaired"], 1),
                 round(r.sizes["compressed"]["kb"], 1), round(r.sizes["repaired"]["kb"], 1),
                 f'{r.sizes["compressed"]["nonzero_weights"]} -> {r.sizes["repaired"]["nonzero_weights"]}',
                 "yes" if zeros_kept else "no", round(seconds, 1)])
    print(rows[-1], flush=True)


def grid_targets(digits: Model, train_set: Dataset, test_set: Dataset, picked: np.ndarray) -> None:
    """Issue 23's table: quantised and pruned networks repaired with the defaults, the compression kept."""
    rows: list = []
    mnist_net = load(MODELS / "mnist-net_256x2.onnx")
    mnist = load_data(MODELS / "data" / "mnist_test_100.csv", 255)
    fixed, no_refit = RepairOptions(scales="fixed"), RepairOptions(refit=False)
    digits_q, mnist_q = quantize(digits, bits=2, per_channel=True)[0], quantize(mnist_net, bits=3)[0]
    digits_p, mnist_p = prune(digits, "weight", 0.5).model, prune(mnist_net, "weight", 0.5).model
    for label, original, compressed, test, centres, extra, options in (
            ("digits, int2 per channel", digits, digits_q, test_set, test_set.x[picked], train_set.x, None),
            ("  the same, --scales fixed", digits, digits_q, test_set, test_set.x[picked], train_set.x, fixed),
            ("mnist-net_256x2, int3 per tensor", mnist_net, mnist_q, mnist, mnist.x[:10], None, None),
            ("  the same, --scales fixed", mnist_net, mnist_q, mnist, mnist.x[:10], None, fixed),
            ("digits, prune -m weight -r 0.5", digits, digits_p, test_set, test_set.x[picked], train_set.x, None),
            ("mnist-net_256x2, prune -m weight -r 0.5", mnist_net, mnist_p, mnist, mnist.x[:10], None, None),
            ("  the same, --no-refit", mnist_net, mnist_p, mnist, mnist.x[:10], None, no_refit)):
        kept(original, compressed, label, test, centres, extra, rows, options or RepairOptions())
    print_table("Issue 23: repair keeping the compression (defaults: pointwise, α 2, 10 rounds x 3 epochs); mean sound "
                "‖δ‖∞ over the ten boxes of ε 0.02",
                ["network", "grid kept", "zeros kept", "mean δ before", "mean δ after", "x smaller", "seen after",
                 "kept round", "acc. orig. %", "acc. compr. %", "acc. repaired %", "KB compr.", "KB repaired",
                 "non-zero weights", "zeros intact", "seconds"], rows)


def main() -> None:
    which = sys.argv[1:] or ["grid", "alphas"]
    summary: list = []
    curves: dict = {}
    train_set = load_data(MODELS / "data" / "digits_train.csv", 16)
    test_set = load_data(MODELS / "data" / "digits_test.csv", 16)
    net, _ = train(init_network([64, 256, 64, 10], seed=0), train_set.x, train_set.y,
                   options=TrainOptions(epochs=30, lr=1e-3, seed=0))
    picked = np.sort(np.random.default_rng(0).choice(len(test_set.y), 10, replace=False))
    if "grid" in which:
        grid_targets(net.to_model(), train_set, test_set, picked)
    if "alphas" not in which:
        return
    run("digits 64-256-64-10", net.to_model(), test_set, test_set.x[picked], train_set.x, summary, curves)
    mnist = load_data(MODELS / "data" / "mnist_test_100.csv", 255)
    run("mnist-net_256x2", load(MODELS / "mnist-net_256x2.onnx"), mnist, mnist.x[:10], None, summary, curves)
    print_table("Repair runs: mean sound ‖δ‖∞ over the ten boxes before/after, accuracy, round meeting the paper's "
                "target (0.67 of the initial bound), time; targets: accuracy within 1 point of the original, >= 5x, "
                "< 60 s",
                ["network", "update", "α", "mean δ before", "mean δ after", "x smaller", "seen after", "acc. compr. %",
                 "acc. repaired %", "0.67 at round", "seconds", "targets met"], summary)
    plot(curves)


if __name__ == "__main__":
    main()
