"""MILP through pulp (--solver cbc) against HiGHS's own matrices: model building and solving, output bounds of MNIST nets.

``python bench/solvers.py``. One run, same machine: ``bounds(model, box, "milp", solver=…)`` on the bundled
MNIST networks and the VNN-COMP box prop_0_0.03 (outputs only, seeded by LP). ``build s`` is the time
to turn the encoder's matrices into the solver's model (HiGHS: the encoder itself; pulp: Python objects
per variable and row, measured on the same encoder), ``total s`` the whole analysis.
"""

from __future__ import annotations

import time

from common import MODELS, print_table

from nnxform.analyzers import bounds, compile_model
from nnxform.analyzers.encoding import Encoder
from nnxform.analyzers.solvers import PulpModel
from nnxform.ir import load
from nnxform.vnnlib import read_box

NETWORKS = ["dnnv_mnist_relu_3_50.onnx", "mnist-net_256x2.onnx"]


def main() -> None:
    box = read_box(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib")
    rows = []
    for name in NETWORKS:
        model = load(MODELS / name)
        net = compile_model(model)
        seed = bounds(net, box, "lp")
        t = time.perf_counter()
        enc = Encoder(seed.state.copy(), integer=True)
        for i in range(len(net.steps)):
            enc.add(i)
        highs_build = time.perf_counter() - t
        t = time.perf_counter()
        PulpModel("cbc")._build(enc)
        pulp_build = time.perf_counter() - t
        for solver, build in (("highs", highs_build), ("cbc", pulp_build)):
            t = time.perf_counter()
            b = bounds(model, box, "milp", time_limit=120.0, solver=solver)
            rows.append([name.removesuffix(".onnx"), solver, round(build, 3), round(time.perf_counter() - t, 2),
                         "yes" if b.exact else "no", float(b.width_sum)])
    print_table("MILP solvers: HiGHS matrices vs pulp/CBC (prop_0_0.03, outputs)",
                ["network", "solver", "build s", "total s", "exact", "width sum"], rows)


if __name__ == "__main__":
    main()
