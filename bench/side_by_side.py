"""Two trees of nnxform side by side on issue 20's benchmarks: bounds, discrepancy, stable, compress and prune on the
bundled MNIST network, and the CNN bench's networks (``bench/cnn_nets.py``: verivital_maxpool, slim_cnn,
dronet_style; the bundled cifar_base_kw). Each case is one fresh process per tree, the trees alternated (the order
flipped every round), medians of the rounds as a Markdown table, with each tree's value (a width sum, δ, a count:
what the case computes) so that a change of result shows beside a change of time.

``python bench/side_by_side.py OLD_TREE [--rounds N] [--only WORDS]``: OLD_TREE is a checkout to compare with
(``git worktree add /tmp/old <commit>``).
"""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETS = ROOT / "build" / "bench_cnn"

MNIST = """
import time
from nnxform.ir import load
from nnxform.vnnlib import read_box
m = load('{root}/models/mnist-net_256x2.onnx'); box = read_box('{root}/models/vnnlib/mnist_prop_0_0.03.vnnlib')
"""
IMAGE = """
import time, numpy as np
from nnxform.ir import load
from nnxform.domain import Box
import sys; sys.path.insert(0, '{root}/bench')
from cnn_nets import image_box
def image(name, shape):
    _, lo, hi = image_box(shape, 2 / 255, 0)
    return load('{nets}/' + name + '.onnx'), Box(lo.ravel().astype(float), hi.ravel().astype(float))
"""
CASES = {
    "dense: bounds symbolic (256x2)": MNIST + """
from nnxform.analyzers import bounds
bounds(m, box, 'symbolic'); t = time.perf_counter(); b = bounds(m, box, 'symbolic')
print(time.perf_counter() - t, float((b.output_upper - b.output_lower).sum()))
""",
    "dense: bounds lp (256x2)": MNIST + """
from nnxform.analyzers import bounds
t = time.perf_counter(); b = bounds(m, box, 'lp'); print(time.perf_counter() - t, float((b.output_upper - b.output_lower).sum()))
""",
    "dense: discrepancy symbolic vs float16 (256x2)": MNIST + """
from nnxform.workflows import quantize_with_drift
from nnxform.discrepancy import discrepancy
q = quantize_with_drift(m, float16=True).model
t = time.perf_counter(); d = discrepancy(m, q, box, 'symbolic'); print(time.perf_counter() - t, float(d.delta_max))
""",
    "dense: stable (256x2)": MNIST + """
from nnxform.stable import classify
t = time.perf_counter(); s = classify(m, box, time_limit=120)
print(time.perf_counter() - t, sum(int((l.status == 2).sum()) for l in s.layers))
""",
    "dense: compress (256x2)": MNIST + """
from nnxform.workflows import compress_checked
t = time.perf_counter(); r = compress_checked(m, box, time_limit=120); print(time.perf_counter() - t, sum(v.size for v in r.model.constants.values()))
""",
    "dense: prune neuron 30 % with its impact (256x2)": MNIST + """
from nnxform.workflows import prune_with_impact
t = time.perf_counter(); r = prune_with_impact(m, box, 'neuron', 0.3, time_limit=60); print(time.perf_counter() - t, 0)
""",
    "cnn: verivital_maxpool bounds symbolic": IMAGE + """
from nnxform.analyzers import bounds
m, box = image('verivital_maxpool', (1, 1, 28, 28))
t = time.perf_counter(); b = bounds(m, box, 'symbolic'); print(time.perf_counter() - t, float((b.output_upper - b.output_lower).sum()))
""",
    "cnn: slim_cnn prune neuron 30 % with its impact": IMAGE + """
from nnxform.workflows import prune_with_impact
m, box = image('slim_cnn', (1, 3, 32, 32))
t = time.perf_counter(); r = prune_with_impact(m, box, 'neuron', 0.3, time_limit=120); print(time.perf_counter() - t, 0)
""",
    "cnn: slim_cnn compress (dead channels)": IMAGE + """
from nnxform.workflows import compress_checked
m, box = image('slim_cnn', (1, 3, 32, 32))
t = time.perf_counter(); r = compress_checked(m, box, time_limit=120); print(time.perf_counter() - t, sum(v.size for v in r.model.constants.values()))
""",
    "cnn: verivital_maxpool discrepancy symbolic vs float16": IMAGE + """
from nnxform.workflows import quantize_with_drift
from nnxform.discrepancy import discrepancy
m, box = image('verivital_maxpool', (1, 1, 28, 28))
q = quantize_with_drift(m, float16=True).model
t = time.perf_counter(); d = discrepancy(m, q, box, 'symbolic'); print(time.perf_counter() - t, float(d.delta_max))
""",
    "cnn: dronet_style forward, 20 points": IMAGE + """
from nnxform.interpreter import run
m = load('{nets}/dronet_style.onnx'); xs = np.random.default_rng(0).uniform(0, 1, (20,) + tuple(m.input_shape))
run(m, xs[:2]); t = time.perf_counter(); run(m, xs); print(time.perf_counter() - t, 0)
""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the other tree (a checkout)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="run the cases whose name contains one of these comma-separated words")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from cnn_nets import write_all
    write_all(NETS)
    trees = {"old": args.old, "new": str(ROOT)}
    words = [w for w in args.only.split(",") if w]
    cases = {name: code.replace("{nets}", str(NETS)).replace("{root}", str(ROOT)) for name, code in CASES.items()
             if not words or any(w in name for w in words)}
    res: dict[str, dict[str, list[tuple[float, str]]]] = {c: {k: [] for k in trees} for c in cases}
    for rep in range(args.rounds):
        order = list(trees.items()) if rep % 2 == 0 else list(reversed(trees.items()))
        for c, code in cases.items():
            for k, path in order:
                env = dict(os.environ, PYTHONPATH=path, OPENBLAS_NUM_THREADS="1")
                check = ("import nnxform, pathlib; "
                         f"assert pathlib.Path(nnxform.__file__).parent.parent == pathlib.Path({path!r})\n")
                # run in the tree itself: ``python -c`` puts the working directory first on sys.path
                out = subprocess.run([sys.executable, "-c", check + code], capture_output=True, text=True, env=env,
                                     cwd=path)
                if out.returncode:
                    print(c, k, out.stderr[-300:], file=sys.stderr)
                    continue
                seconds, value = out.stdout.strip().splitlines()[-1].split()
                res[c][k].append((float(seconds), value))
        print(f"round {rep + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(f"| case | old s (median of {args.rounds}) | new s | new / old | old value | new value |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        o, n = ([s for s, _ in res[c][k]] for k in trees)
        if not o or not n:
            print(f"| {c} | failed | | | | |")
            continue
        mo, mn = statistics.median(o), statistics.median(n)
        print(f"| {c} | {mo:.3f} | {mn:.3f} | {mn / mo:.2f} | {res[c]['old'][0][1]} | {res[c]['new'][0][1]} |")


if __name__ == "__main__":
    main()
