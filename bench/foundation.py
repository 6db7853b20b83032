"""Load / canon / fold-bn / save times per network (issue: foundation).

Runs on the bundled models, plus the larger VNN-COMP MNIST networks from ../shared when present.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import MODELS, SHARED, best_time, print_table

from nnxform import load
from nnxform.passes import PASSES


def networks() -> list[Path]:
    paths = sorted(MODELS.glob("*.onnx"))
    extra = [SHARED / "mnist_fc" / f"mnist-net_256x{k}.onnx" for k in (4, 6)]
    return paths + [p for p in extra if p.exists()]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in networks():
            t_load, model = best_time(lambda: load(path))
            t_canon, (canon, _) = best_time(lambda: PASSES["canon"](model))
            t_fold, _ = best_time(lambda: PASSES["fold-bn"](model))
            t_save, _ = best_time(lambda: canon.save(Path(tmp) / "out.onnx"))
            ops = f"{sum(model.op_counts().values())}->{sum(canon.op_counts().values())}"
            rows.append([path.name, f"{t_load * 1e3:.1f}", f"{t_canon * 1e3:.1f}", f"{t_fold * 1e3:.1f}",
                         f"{t_save * 1e3:.1f}", ops])
    print_table("Foundation: best of 5, milliseconds",
                ["network", "load", "canon", "fold-bn", "save", "nodes"], rows)


if __name__ == "__main__":
    main()
