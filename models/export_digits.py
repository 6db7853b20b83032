"""Write scikit-learn's bundled 8×8 digits as the train/test CSV files the toolkit reads (``label,64 pixels``).

Usage: ``python models/export_digits.py [OUTDIR]`` (default: ``data/`` beside this file). Needs scikit-learn
(the ``bench`` extra; the data ships inside its wheel, nothing is downloaded); nnxform itself never imports it.
The 1,797 images (pixels are integers 0..16, so ``--scale 16`` gives [0, 1]) are split by a seeded permutation
into ``TRAIN`` training and the rest test images, so running the script again reproduces the files byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SEED = 0
TRAIN = 1437  # of 1,797: the 80/20 split, 360 test images


def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The digits as integer rows ``label, 64 pixels``: (train, test), split by a permutation seeded by ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.data.astype(np.int64)
    if not np.array_equal(pixels, digits.data) or pixels.min() < 0 or pixels.max() > 16:
        raise ValueError("expected integer pixels 0..16 in scikit-learn's digits")
    rows = np.column_stack([digits.target.astype(np.int64), pixels])
    order = np.random.default_rng(seed).permutation(len(rows))
    return rows[order[:TRAIN]], rows[order[TRAIN:]]


def export(outdir: Path) -> list[Path]:
    """Write ``digits_train.csv`` and ``digits_test.csv`` into ``outdir`` (no header, as ``mnist_test_100.csv``)."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in zip(("digits_train.csv", "digits_test.csv"), split()):
        path = outdir / name
        path.write_text("".join(",".join(map(str, row)) + "\n" for row in rows.tolist()))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in export(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data"):
        print(p)
