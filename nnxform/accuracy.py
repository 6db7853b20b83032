"""Accuracy and FGSM robustness of a classifier on labelled data, without a deep-learning framework.

Data: a CSV file with one point per row, ``label,feature,feature,…`` (a header row is skipped),
features divided by ``scale`` when given; or a ``.npz`` file with arrays ``x`` (points, any shape
with the network's number of input elements per point) and ``y`` (integer labels, or one-hot rows).

Predictions are the argmax of the network's output in onnxruntime (float32, as deployed). FGSM
(Goodfellow et al.): ``x' = clip(x + ε·sign(∇ₓ CE(f(x), y)))``, the gradient of the cross-entropy
of the logits computed by ``nnxform.gradient`` (reverse mode over the ONNX graph in float64). The
robustness at ε is the share of points classified correctly both before and after the attack
(paper 003, Def. III.2), so it never exceeds the accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NnxformError
from .fileio import read_text
from .evaluate import run
from .gradient import gradient
from .ir import Model
from .runtime import OnnxRunner

#: FGSM ε used when none is given (paper 003's values for MNIST).
DEFAULT_EPS = [0.01, 0.05]

_CHUNK = 1024  # points per gradient batch (bounds memory on large data sets)


@dataclass
class Dataset:
    """Labelled points: ``x`` flat ``(n, features)`` in float64, ``y`` integer labels ``(n,)``."""

    x: np.ndarray
    y: np.ndarray
    path: str

    def fit(self, model: Model) -> "Dataset":
        """Check the points match ``model``'s input size and the labels its number of outputs."""
        if self.x.shape[1] != model.input_size:
            raise NnxformError(f"{self.path}: points have {self.x.shape[1]} features but the network input has "
                               f"{model.input_size} elements")
        outputs = int(np.prod(model.shapes()[model.output_name], dtype=np.int64))
        if self.y.size and self.y.max() >= outputs:
            raise NnxformError(f"{self.path}: label {int(self.y.max())} but the network has {outputs} outputs")
        return self


@dataclass
class Evaluation:
    """Accuracy, robustness per ε (share robust), and the clean predictions."""

    points: int
    accuracy: float
    robustness: dict[float, float]
    predictions: np.ndarray = field(repr=False)
    clip: tuple[float | None, float | None] = (None, None)

    def to_json(self) -> dict:
        return {"points": self.points, "accuracy": self.accuracy,
                "robustness": {f"{eps:g}": share for eps, share in self.robustness.items()},
                "clip": list(self.clip)}


def load_data(path: str | Path, scale: float | None = None) -> Dataset:
    """Labelled points from a CSV (``label,features``) or ``.npz`` (``x``, ``y``) file; features / ``scale``."""
    p = Path(path)
    if not p.is_file():
        raise NnxformError(f"{p}: no such file")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise NnxformError(f"--scale must be a positive number, got {scale:g}")
    if p.suffix.lower() == ".npz":
        x, labels = _read_npz(p)
    else:
        table = _read_csv(p)
        x, labels = table[:, 1:], table[:, 0]
    if not np.all(np.isfinite(x)):
        raise NnxformError(f"{p}: the features contain NaN or infinite values")
    if labels.size == 0:
        raise NnxformError(f"{p}: no data points")
    if np.any(labels != np.round(labels)) or np.any(labels < 0):
        raise NnxformError(f"{p}: labels must be non-negative integers")
    x = x.reshape(len(x), -1).astype(np.float64)
    return Dataset(x / scale if scale is not None else x, labels.astype(np.int64), str(p))


def _read_csv(p: Path) -> np.ndarray:
    lines = [line for line in read_text(p, "a CSV of numbers (label,feature,…)").splitlines() if line.strip()]
    if lines and not _numeric(lines[0].split(",")[0]):
        lines = lines[1:]  # a header row
    try:
        table = np.array([[float(v) for v in line.split(",")] for line in lines], dtype=np.float64)
    except ValueError:
        raise NnxformError(f"{p}: not a CSV of numbers (label,feature,…)") from None
    if table.ndim != 2 or table.shape[1] < 2:
        raise NnxformError(f"{p}: rows must have the same number of values, a label then features")
    return table


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_npz(p: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(p, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise NnxformError(f"{p}: needs arrays 'x' and 'y' (has {', '.join(data.files) or 'none'})")
            x, y = np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"])
    except (OSError, ValueError):
        raise NnxformError(f"{p}: not a NumPy .npz file") from None
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)  # one-hot rows
    y = y.reshape(-1).astype(np.float64)
    if len(x) != y.size:
        raise NnxformError(f"{p}: 'x' has {len(x)} points but 'y' has {y.size} labels")
    return x, y


def predict(model: Model, x: np.ndarray) -> np.ndarray:
    """Predicted class per point: argmax of the output in onnxruntime."""
    model.output_name  # exactly one output
    return OnnxRunner(model)(x).argmax(axis=1)


def fgsm(model: Model, x: np.ndarray, y: np.ndarray, eps: float,
         clip: tuple[float | None, float | None] = (None, None)) -> np.ndarray:
    """FGSM points ``clip(x + ε·sign(∇ₓ cross-entropy))`` for flat ``x`` and labels ``y``."""
    out = []
    for start in range(0, len(x), _CHUNK):
        xs, ys = x[start:start + _CHUNK], y[start:start + _CHUNK]
        logits = run(model, xs).reshape(len(xs), -1)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(ys)), ys] -= 1.0  # ∂CE/∂logits = softmax − onehot
        _, g = gradient(model, xs, p)
        out.append(xs + eps * np.sign(g))
    adv = np.vstack(out) if out else x.copy()
    lo, hi = clip
    return np.clip(adv, -np.inf if lo is None else lo, np.inf if hi is None else hi)


def measure(model: Model, data: Dataset, eps: list[float],
            clip: tuple[float | None, float | None] = (None, None)) -> Evaluation:
    """Accuracy on ``data`` and FGSM robustness at every ε (share correct before and after the attack)."""
    data.fit(model)
    if any(e < 0 for e in eps):
        raise NnxformError("FGSM ε must be >= 0")
    model.output_name  # exactly one output
    runner = OnnxRunner(model)
    pred = runner(data.x).argmax(axis=1)
    correct = pred == data.y
    robustness = {}
    for e in eps:
        attacked = runner(fgsm(model, data.x, data.y, e, clip)).argmax(axis=1)
        robustness[float(e)] = float(np.mean(correct & (attacked == data.y)))
    return Evaluation(len(data.y), float(np.mean(correct)), robustness, pred, clip)
