"""Engine speed (issue 11): one training epoch against the same matrix products alone.

One epoch of ``nnxform.training.train`` (Adam and SGD with momentum, cross-entropy) over the digits training
split (1,437 points; random points when ``models/data/digits_train.csv`` is absent) on 64-256-64-10, and over
10,000 random points on 784-256-256-10, for several batch sizes (the optimizer's update does not shrink with the
batch, so small batches pay relatively more for it). "GEMMs" is the time of exactly the products the epoch does,
in float64 on arrays of the same shapes: per batch, ``x·Wᵀ`` of every Dense layer, ``gᵀ·x`` of its weight
gradient and ``g·W`` of its input gradient (not below the first layer). Target: the epoch costs at most 2× its
GEMMs. The epoch time is the one ``train`` records per epoch (the call adds data checks and a sha256 of the data
once per run)."""

from __future__ import annotations

import numpy as np

from common import MODELS, best_time, print_table

from nnxform.accuracy import load_data
from nnxform.training import TrainOptions, init_network, train

BATCHES = (32, 64, 128)


def gemms(widths: list[int], n: int, batch: int) -> float:
    """Seconds of the epoch's matrix products alone (best of 5)."""
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((o, i)) for i, o in zip(widths[:-1], widths[1:])]
    sizes = [min(batch, n - s) for s in range(0, n, batch)]
    xs = {b: [rng.standard_normal((b, w)) for w in widths] for b in set(sizes)}

    def run() -> None:
        for b in sizes:
            acts = xs[b]
            for k, W in enumerate(Ws):
                acts[k] @ W.T  # forward
            for k in range(len(Ws) - 1, -1, -1):
                acts[k + 1].T @ acts[k]  # weight gradient (g has the shape of the layer's output)
                if k:
                    acts[k + 1] @ Ws[k]  # input gradient

    return best_time(run, 5)[0]


def epoch(widths: list[int], xs: np.ndarray, labels: np.ndarray, batch: int, optimizer: str) -> float:
    """Seconds of one training epoch as ``train`` records it (best of 5)."""
    net = init_network(widths, seed=0)
    best = float("inf")
    for _ in range(5):
        _, result = train(net, xs, labels, options=TrainOptions(epochs=1, batch_size=batch, optimizer=optimizer))
        best = min(best, result.epochs[0].seconds)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    digits = MODELS / "data" / "digits_train.csv"
    if digits.exists():
        data = load_data(digits, 16)
        small, small_name = (data.x, data.y), "digits train split"
    else:
        small, small_name = (rng.random((1437, 64)), rng.integers(0, 10, 1437)), "1,437 random points"
    cases = [("64-256-64-10", [64, 256, 64, 10], small, small_name),
             ("784-256-256-10", [784, 256, 256, 10], (rng.random((10000, 784)), rng.integers(0, 10, 10000)),
              "10,000 random points")]
    rows = []
    for name, widths, (xs, labels), what in cases:
        for batch in BATCHES:
            g = gemms(widths, len(xs), batch)
            for optimizer in ("adam", "sgd"):
                e = epoch(widths, xs, labels, batch, optimizer)
                rows.append([name, what, optimizer, batch, round(e, 4), round(g, 4), round(e / g, 2),
                             "yes" if e <= 2 * g else "no"])
    print_table("Training engine: one epoch (float64) against its matrix products alone",
                ["network", "data", "optimizer", "batch", "epoch s", "GEMMs s", "ratio", "<= 2x"], rows)


if __name__ == "__main__":
    main()
