"""What the rigorous float32 margin costs: symbolic output width of the float network against the real-valued one.

``python bench/rounding.py``. The same analysis, one run: ``State.start(..., real=True)`` leaves out every
rounding noise (what the bounds were before the margin was made rigorous, less the old heuristic margin),
the default bounds the float32 network as onnxruntime runs it (``analyzers.rounding``). Uses the VNN-COMP
mnist_fc networks and boxes from ``../shared/testdata/mnist_fc`` when present, else the bundled 256×2.
"""

from __future__ import annotations

from common import MODELS, SHARED, best_time, print_table

from nnxform.analyzers import compile_model
from nnxform.analyzers.interval import interval
from nnxform.analyzers.result import State
from nnxform.analyzers.symbolic import symbolic
from nnxform.ir import load
from nnxform.vnnlib import read_box


def cases() -> list[tuple[str, str, str]]:
    folder = SHARED / "mnist_fc"
    if folder.exists():
        return [(f"256x{k} {p}", str(folder / f"mnist-net_256x{k}.onnx"), str(folder / f"{p}.vnnlib"))
                for k in (2, 4, 6) for p in ("prop_0_0.03", "prop_0_0.05", "prop_1_0.03")]
    return [("256x2 prop_0_0.03", str(MODELS / "mnist-net_256x2.onnx"), str(MODELS / "vnnlib" / "mnist_prop_0_0.03.vnnlib"))]


def main() -> None:
    rows = []
    for name, path, box_path in cases():
        net, box = compile_model(load(path)), read_box(box_path)
        widths, times = [], []
        for real in (True, False):
            seconds, state = best_time(lambda: symbolic(interval(State.start(net, box, real=real))), repeat=3)
            widths.append(float((state.hi[net.output] - state.lo[net.output]).sum()))
            times.append(seconds * 1e3)
        rows.append([name, widths[0], widths[1], 100 * (widths[1] / widths[0] - 1), times[0], times[1]])
    print_table("Rigorous float32 margin: symbolic output width sum, real-valued vs float network",
                ["network / box", "real width", "float width", "cost %", "real ms", "float ms"], rows)


if __name__ == "__main__":
    main()
