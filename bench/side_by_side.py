"""Two trees of nnxform side by side on the hot paths of session 7 (issue 19/20): each case one fresh process per
tree, the trees alternated, 3 rounds, medians as a Markdown table.

``python bench/side_by_side.py OLD_TREE [--dir DIR]``: OLD_TREE is a checkout to compare with (``git worktree add
/tmp/old a198eb6``); DIR holds the look-alikes ``bench/resources.py --dir DIR`` writes (dronet, maxpool, their boxes).
"""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
 "dronet float64 forward, 20 points": """
import numpy as np, time
from nnxform.ir import load
try:
    from nnxform.interpreter import run
except ImportError:
    from nnxform.evaluate import run
m = load('{dir}/dronet.onnx'); xs = np.random.default_rng(0).uniform(0,1,(20,)+tuple(m.input_shape))
run(m, xs[:2]); t=time.perf_counter(); run(m, xs); print(time.perf_counter()-t)
""",
 "mnist 256x2 lp bounds prop_0_0.03": """
import time
from nnxform.ir import load
from nnxform.vnnlib import read_box
from nnxform.analyzers import bounds
m = load('{root}/models/mnist-net_256x2.onnx'); box = read_box('{root}/models/vnnlib/mnist_prop_0_0.03.vnnlib')
t=time.perf_counter(); b = bounds(m, box, 'lp'); print(time.perf_counter()-t)
""",
 "maxpool CNN symbolic bounds": """
import time, numpy as np
from nnxform.ir import load
from nnxform.domain import Box
from nnxform.analyzers import bounds
m = load('{dir}/maxpool.onnx')
box = Box(np.load('{dir}/mnist.lower.npy').ravel().astype(float), np.load('{dir}/mnist.upper.npy').ravel().astype(float))
t=time.perf_counter(); b = bounds(m, box, 'symbolic'); print(time.perf_counter()-t)
""",
 "mnist 256x2 discrepancy vs float16, symbolic + witness": """
import time, numpy as np
from nnxform.ir import load
from nnxform.vnnlib import read_box
from nnxform.discrepancy import discrepancy
m = load('{root}/models/mnist-net_256x2.onnx'); box = read_box('{root}/models/vnnlib/mnist_prop_0_0.03.vnnlib')
q = m.copy()
for k,v in q.constants.items():
    if v.dtype.kind=='f': q.constants[k]=v.astype(np.float16).astype(v.dtype)
t=time.perf_counter(); d = discrepancy(m, q, box, 'symbolic'); print(time.perf_counter()-t)
""",
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("old", help="the other tree (a checkout)")
parser.add_argument("--dir", default="/tmp/res19b", help="bench/resources.py's work folder")
args = parser.parse_args()
trees = {"old": args.old, "new": str(ROOT)}
CASES = {name: code.replace("{dir}", args.dir).replace("{root}", str(ROOT)) for name, code in CASES.items()}
res = {c: {k: [] for k in trees} for c in CASES}
for rep in range(3):
    for c, code in CASES.items():
        for k, path in trees.items():
            env = dict(os.environ, PYTHONPATH=path, OPENBLAS_NUM_THREADS="1")
            check = f"import nnxform, pathlib; assert pathlib.Path(nnxform.__file__).parent.parent == pathlib.Path({path!r})\n"
            # run in the tree itself: ``python -c`` puts the working directory first on sys.path, so run from the
            # repository both sides imported the new tree (which the check now refuses)
            out = subprocess.run([sys.executable, "-c", check + code], capture_output=True, text=True, env=env, cwd=path)
            res[c][k].append(float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan"))
            if out.returncode: print(c, k, out.stderr[-300:], file=sys.stderr)
print("| case | old s (median of 3) | new s (median of 3) | new / old |")
print("|---|---|---|---|")
for c in CASES:
    o, n = statistics.median(res[c]["old"]), statistics.median(res[c]["new"])
    print(f"| {c} | {o:.3f} | {n:.3f} | {n/o:.2f} |")
