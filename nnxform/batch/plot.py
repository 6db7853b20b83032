"""The cactus plot, the field's standard picture of a benchmark run: for each run, how many instances it solved
within each time (its solved rows' times sorted), one line per run, so runs compare at a glance."""

from __future__ import annotations

import io

import numpy as np

from ..errors import NnxformError
from .results import BatchResult


def require_matplotlib() -> None:
    """Refuse, before any work, a plot without matplotlib (it comes with the ``plot`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NnxformError("--plot needs matplotlib, which is not installed: pip install 'nnxform[plot]'") from None


def cactus_png(runs: list[tuple[str, BatchResult]]) -> bytes:
    """The cactus plot of ``runs`` (label, results) as PNG bytes: x the time per instance (log scale), y the number
    of instances solved within it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, result in runs:
        times = np.sort(np.array([r.seconds for r in result.rows if r.solved], dtype=float))
        counts = np.arange(1, times.size + 1)
        ax.step(np.maximum(times, 1e-3), counts, where="post",
                label=f"{label} ({times.size}/{len(result.rows)} solved)")
    ax.set_xscale("log")
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances solved")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    data = io.BytesIO()
    fig.savefig(data, format="png", dpi=120)
    plt.close(fig)
    return data.getvalue()
