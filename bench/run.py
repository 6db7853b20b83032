"""Run every benchmark script in this folder and print their tables (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from common import machine

SCRIPTS = ["foundation.py", "bounds.py", "rounding.py", "solvers.py", "campaign.py", "discrepancy.py", "stable.py", "pruning.py",
           "training.py", "repair.py", "papers.py", "cnn.py", "conv_forms.py",
           "resources.py", "batch.py", "equiv.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    print(f"# nnxform benchmarks — {machine()}")
    status = 0
    for name in SCRIPTS:
        script = here / name
        if not script.exists():
            print(f"\n(skipping {name}: not present)")
            continue
        status |= subprocess.call([sys.executable, str(script)], cwd=here)
    return status


if __name__ == "__main__":
    sys.exit(main())
