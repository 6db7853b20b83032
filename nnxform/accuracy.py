"""Accuracy and FGSM robustness of a classifier on labelled data, without a deep-learning framework.

Data: a CSV file with one point per row, ``label,feature,feature,…`` (a header row is skipped),
features divided by ``scale`` when given; or a ``.npz`` file with arrays ``x`` (points, any shape
with the network's number of input elements per point) and ``y`` (integer labels, or one-hot rows).
``Preprocessing`` then makes the points the network's input: channel-last images (``nhwc``: H×W×C
per point, as ERAN's ``cifar10_test.csv``) transposed to the network's (C,H,W), and a per-channel
normalisation ``(x − mean[c]) / std[c]``. FGSM's ε and clip bounds stay in the data's space (after
``scale``, e.g. pixels in [0, 1]) and are mapped through the normalisation per element, so the attack
on a normalised input equals the attack on pixels of a network that normalises them itself.

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

from .attack import ValueGrad, ascend
from .domain import FLOAT32_RULE, outside_float32
from .errors import NnxformError
from .fileio import read_text
from .gradient import gradient
from .ir import Model
from .runtime import OnnxRunner

#: FGSM ε used when none is given (paper 003's values for MNIST).
DEFAULT_EPS = [0.01, 0.05]

_CHUNK = 1024  # points per gradient batch (bounds memory on large data sets)


#: How the features of a point are ordered: the network's own (C,H,W) input order, or channel last (H,W,C).
LAYOUTS = ("nchw", "nhwc")

#: Operators that, by a constant at the very input, are a network's own normalisation.
_NORMALISING = ("Sub", "Div", "Mul", "Add")


@dataclass
class Dataset:
    """Labelled points: ``x`` flat ``(n, features)`` in float64, ``y`` integer labels ``(n,)``, and the shape one
    point had in the file (a ``.npz`` ``x`` of images keeps ``(H, W, C)`` or ``(C, H, W)``; a CSV row is flat)."""

    x: np.ndarray
    y: np.ndarray
    path: str
    shape: tuple[int, ...] = ()

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
    """Accuracy, robustness per ε (share robust), the clean predictions, the FGSM clip bounds in the data's space,
    and the nodes with which the network normalises its input itself (see ``input_normalisation``)."""

    points: int
    accuracy: float
    robustness: dict[float, float]
    predictions: np.ndarray = field(repr=False)
    clip: tuple[float | None, float | None] = (None, None)
    normalised_by: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"points": self.points, "accuracy": self.accuracy,
                "robustness": {f"{eps:g}": share for eps, share in self.robustness.items()},
                "clip": list(self.clip), "input_normalisation": list(self.normalised_by),
                "predictions": [int(p) for p in self.predictions]}


def load_data(path: str | Path, scale: float | None = None) -> Dataset:
    """Labelled points from a CSV (``label,features``) or ``.npz`` (``x``, ``y``) file; features / ``scale``, each
    within float32's range (``outside_float32``: the network computes in float32), else an error naming where."""
    p = Path(path)
    if not p.is_file():
        raise NnxformError(f"{p}: no such file")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise NnxformError(f"--scale must be a positive number, got {scale:g}")
    if p.suffix.lower() == ".npz":
        x, labels = _read_npz(p)
        lines = None
    else:
        table, lines = _read_csv(p)
        x, labels = table[:, 1:], table[:, 0]
    if labels.size == 0:
        raise NnxformError(f"{p}: no data points")
    if not np.all((labels >= 0) & (labels == np.round(labels)) & (labels < 2**31)):
        raise NnxformError(f"{p}: labels must be non-negative integers")
    shape = tuple(int(d) for d in x.shape[1:])
    flat = x.reshape(len(x), -1).astype(np.float64)
    with np.errstate(over="ignore"):  # a tiny --scale may overflow: refused just below
        scaled = flat / scale if scale is not None else flat
    bad = outside_float32(scaled)
    if bad is not None:
        row, col = divmod(bad, scaled.shape[1])
        where = f"x[{row}], feature {col}" if lines is None else f"line {lines[row]}, column {col + 2}"
        value = f"{flat[row, col]:g}" + ("" if scale is None else f" / --scale {scale:g}")
        raise NnxformError(f"{p}: {where}: {value} is not {FLOAT32_RULE}")
    return Dataset(scaled, labels.astype(np.int64), str(p), shape)


def _read_csv(p: Path) -> tuple[np.ndarray, list[int]]:
    """The numbers of a CSV (a header row skipped) and the line number of each row, for error messages."""
    text = read_text(p, "a CSV of numbers (label,feature,…)")
    rows = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if rows and not _numeric(rows[0][1].split(",")[0]):
        rows = rows[1:]  # a header row
    try:
        table = np.array([[float(v) for v in line.split(",")] for _, line in rows], dtype=np.float64)
    except ValueError:
        raise NnxformError(f"{p}: not a CSV of numbers (label,feature,…)") from None
    if table.ndim != 2 or table.shape[1] < 2:
        raise NnxformError(f"{p}: rows must have the same number of values, a label then features")
    return table, [number for number, _ in rows]


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


def channel_values(text: str | None, option: str) -> tuple[float, ...] | None:
    """The numbers of a comma list such as ``--mean 0.49,0.48,0.45`` (None when not given), or an NnxformError
    naming ``option`` in one line; ``Preprocessing`` checks what they may be."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise NnxformError(f"{option} must be a comma list of numbers (one, or one per input channel), got "
                           f"'{text}'") from None


def image_shape(model: Model) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a network whose input is one image ``[1, C, H, W]``, else None."""
    shape = tuple(model.input_shape)
    return (shape[1], shape[2], shape[3]) if len(shape) == 4 and shape[0] == 1 else None


def input_normalisation(model: Model) -> list[str]:
    """The Sub/Div/Mul/Add-by-a-constant nodes a network applies to its input before anything else: its own
    normalisation, which data normalised beforehand would go through twice."""
    names: list[str] = []
    tensor = model.input_name
    while (node := model.sole_consumer(tensor)) is not None and node.op in _NORMALISING and len(node.inputs) == 2:
        constant = next((t for t in node.inputs if t != tensor), "")
        if constant not in model.constants or (node.op in ("Sub", "Div") and node.inputs[0] != tensor):
            break
        names.append(node.name)
        tensor = node.outputs[0]
    return names


def _image(model: Model, why: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``model``'s input, or an NnxformError saying ``why`` an image input is needed."""
    chw = image_shape(model)
    if chw is None:
        raise NnxformError(f"{why} needs a network input [1, C, H, W]; this one's is {list(model.input_shape)}")
    return chw


def _per_element(model: Model, option: str, values: tuple[float, ...] | None, default: float) -> np.ndarray:
    """``values`` (one, or one per channel) as one number per input element, in the network's (C,H,W) order."""
    if values is None or len(values) == 1:
        return np.full(model.input_size, default if values is None else values[0])
    c, h, w = _image(model, f"{option} with {len(values)} values (one per channel)")
    if len(values) != c:
        raise NnxformError(f"{option} has {len(values)} values but the network input {list(model.input_shape)} has "
                           f"{c} channels; give one value or {c}")
    return np.repeat(np.asarray(values, dtype=np.float64), h * w)


@dataclass(frozen=True)
class Preprocessing:
    """How data points become the network's input: channel-last points (``nhwc``) transposed to the network's
    (C,H,W) order, then ``(x − mean[c]) / std[c]`` per channel (one value for all channels, or one per channel)."""

    layout: str = "nchw"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        """Refuse an unknown layout and a mean or std that is not finite, or a std that is not positive."""
        if self.layout not in LAYOUTS:
            raise NnxformError(f"--layout must be {' or '.join(LAYOUTS)}, got '{self.layout}'")
        for option, values in (("--mean", self.mean), ("--std", self.std)):
            if values is not None and (not values or not all(np.isfinite(values))):
                raise NnxformError(f"{option} must be finite numbers (one, or one per input channel), got "
                                   f"{','.join(f'{v:g}' for v in values) or 'none'}")
        if self.std is not None and min(self.std) <= 0:
            raise NnxformError(f"--std values must be > 0, got {','.join(f'{v:g}' for v in self.std)}")

    @property
    def normalises(self) -> bool:
        """Whether a mean or std is given (else the points reach the network as read, only reordered)."""
        return self.mean is not None or self.std is not None

    def shift(self, model: Model) -> np.ndarray:
        """The mean per input element (0 when not given), in the network's (C,H,W) order."""
        return _per_element(model, "--mean", self.mean, 0.0)

    def step(self, model: Model) -> np.ndarray:
        """The std per input element (1 when not given): one unit of the data's space in the network's input."""
        return _per_element(model, "--std", self.std, 1.0)

    def inputs(self, model: Model, data: Dataset) -> np.ndarray:
        """The points of ``data`` (which ``fit`` ``model``) as the network's flat input: transposed, normalised."""
        chw = _image(model, "--layout nhwc") if self.layout == "nhwc" else image_shape(model)
        x = data.x
        if chw is not None:
            c, h, w = chw
            expected = (h, w, c) if self.layout == "nhwc" else (c, h, w)
            if len(data.shape) == 3 and data.shape != expected and c > 1:  # one channel: both orders are one
                hint = {(h, w, c): "; give --layout nhwc for channel-last images",
                        (c, h, w): "; leave out --layout nhwc for channel-first images"}.get(data.shape, "")
                raise NnxformError(f"{data.path}: 'x' holds points of shape {data.shape}, but --layout {self.layout} "
                                   f"reads {expected} for the network input {list(model.input_shape)}{hint}")
            if self.layout == "nhwc":
                x = x.reshape(len(x), h, w, c).transpose(0, 3, 1, 2).reshape(len(x), -1)
        if self.normalises:
            x = (x - self.shift(model)) / self.step(model)
        return x

    def clip(self, model: Model,
             clip: tuple[float | None, float | None]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Clip bounds given in the data's space as bounds per input element in the network's (normalised) space:
        ``(bound − mean[c]) / std[c]``, order kept since std > 0."""
        mean, std = self.shift(model), self.step(model)
        lo, hi = (None if b is None else (b - mean) / std for b in clip)
        return lo, hi


def predict(model: Model, x: np.ndarray) -> np.ndarray:
    """Predicted class per point: argmax of the output in onnxruntime."""
    model.output_name  # exactly one output
    return OnnxRunner(model)(x).argmax(axis=1)


def fgsm(model: Model, x: np.ndarray, y: np.ndarray, eps: float | np.ndarray,
         clip: tuple[float | np.ndarray | None, float | np.ndarray | None] = (None, None)) -> np.ndarray:
    """FGSM points ``clip(x + ε·sign(∇ₓ cross-entropy))`` for flat ``x`` and labels ``y``; ``eps`` and the clip
    bounds are numbers or one value per input element (a normalised input: per channel)."""
    lo, hi = -np.inf if clip[0] is None else clip[0], np.inf if clip[1] is None else clip[1]
    out = [ascend(_cross_entropy(model, y[start:start + _CHUNK]), x[start:start + _CHUNK], lo, hi, lambda k: eps, 1).x
           for start in range(0, len(x), _CHUNK)]
    return np.vstack(out) if out else np.clip(x, lo, hi)


def _cross_entropy(model: Model, ys: np.ndarray) -> ValueGrad:
    """The cross-entropy of ``model``'s softmax at the labels ``ys`` and its input gradient, per point."""

    def value_grad(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(len(ys))
        loss = np.empty(len(ys))

        def weights(logits: np.ndarray) -> np.ndarray:  # ∂CE/∂logits = softmax − onehot
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            loss[:] = -np.log(np.maximum(p[rows, ys], 1e-300))
            p[rows, ys] -= 1.0
            return p

        _, g = gradient(model, xs, weights)
        return loss, g

    return value_grad


def measure(model: Model, data: Dataset, eps: list[float],
            clip: tuple[float | None, float | None] = (None, None),
            prep: Preprocessing = Preprocessing()) -> Evaluation:
    """Accuracy on ``data`` made the network's input by ``prep``, and FGSM robustness at every ε (share correct
    before and after the attack); ε and ``clip`` are in the data's space, mapped per element through ``prep``."""
    data.fit(model)
    if any(e < 0 for e in eps):
        raise NnxformError("FGSM ε must be >= 0")
    model.output_name  # exactly one output
    x = prep.inputs(model, data)
    step, bounds = prep.step(model), prep.clip(model, clip)
    runner = OnnxRunner(model)
    pred = runner(x).argmax(axis=1)
    correct = pred == data.y
    robustness = {}
    for e in eps:
        attacked = runner(fgsm(model, x, data.y, e / step, bounds)).argmax(axis=1)
        robustness[float(e)] = float(np.mean(correct & (attacked == data.y)))
    return Evaluation(len(data.y), float(np.mean(correct)), robustness, pred, clip, input_normalisation(model))
