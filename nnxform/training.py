"""Training on the layered form, in numpy: mini-batch SGD with momentum or Adam, no deep-learning framework.

The papers' training steps (sparse training with L1 on BatchNormalization γ, fine-tuning after pruning, training
with L1 on the weights before exact compression, retraining on targets in repair) run on small networks, so the
engine is plain vectorised float64 numpy over ``layered.Network``: Dense, Conv, ConvTranspose weights and biases
and BatchNorm γ, β are trained (BatchNorm stays the affine map of its fixed running statistics until folded);
pooling, activations and ``Fixed`` layers pass gradients but have nothing trained. Losses: cross-entropy of the
softmax of the output on labels, or mean squared error on targets; penalties ``l1·Σ|W|`` and ``l1_bn_gamma·Σ|γ|``.
One seed fixes the validation split and the shuffling, so a run is reproducible to the byte of the ONNX written.

Quantisation-aware training (``train(..., grid=...)``, ``grid.detect``): the layers on a grid keep float "latent"
weights that the optimizer moves, and the network evaluated is their projection onto the grid (steps fixed);
the gradient of the projection is taken as the identity (straight-through), 0 where a latent weight lies beyond
the last level, so the network trained and returned is always on the grid (``TrainResult.latent`` resumes it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import NnxformError
from .grid import Grid, LayerGrid
from .ir import Model
from .layered import (WEIGHTED, BatchNorm, Conv, ConvTranspose, Dense, Fixed, Flatten, Layer, Network, Relu,
                      from_model)
from .operators import OPERATORS
from .passes import CANONICAL

#: The parameters trained per layer type (a BatchNorm's running mean and variance are statistics, not trained).
TRAINED: dict[type, tuple[str, ...]] = {Dense: ("W", "b"), Conv: ("W", "b"), ConvTranspose: ("W", "b"),
                                       BatchNorm: ("gamma", "beta")}
OPTIMIZERS = ("sgd", "adam")
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8
_CHUNK = 4096  # samples per forward pass when evaluating (bounds memory)


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters: epochs, learning rate, batch size, optimizer (``sgd`` with ``momentum``, or ``adam``),
    L1 strengths, the zero mask, the seed, the validation share and the early-stop patience (epochs)."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adam"
    momentum: float = 0.9
    l1: float = 0.0
    l1_bn_gamma: float = 0.0
    keep_zeros: bool = False
    seed: int = 0
    validation: float = 0.0
    patience: int = 5

    def check(self) -> "TrainOptions":
        """Refuse values no training can use, in one line naming the option."""
        if self.optimizer not in OPTIMIZERS:
            raise NnxformError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        check_common(self, ("epochs", "batch_size", "patience"))
        if not (np.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise NnxformError(f"momentum must be in [0, 1), got {self.momentum}")
        for name in ("l1", "l1_bn_gamma"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise NnxformError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not (np.isfinite(self.validation) and 0 <= self.validation < 1):
            raise NnxformError(f"validation must be a share in [0, 1), got {self.validation}")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_common(options: Any, counts: tuple[str, ...]) -> None:
    """Refuse, in one line naming the option, a count in ``counts`` below 1, a non-positive ``lr`` or a negative
    ``seed`` of ``options`` (what training and the workflows built on it share)."""
    for name in counts:
        value = getattr(options, name)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise NnxformError(f"{name} must be an integer >= 1, got {value}")
    if not (np.isfinite(options.lr) and options.lr > 0):
        raise NnxformError(f"lr must be a positive number, got {options.lr}")
    if not isinstance(options.seed, (int, np.integer)) or options.seed < 0:
        raise NnxformError(f"seed must be an integer >= 0, got {options.seed}")


@dataclass
class EpochRecord:
    """One epoch: the objective (data loss + penalties, averaged over its batches), the data loss alone, the
    training accuracy (of the batches as they were met; None without labels), the same on the validation split
    after the epoch (None without one), and the time it took."""

    epoch: int
    loss: float
    data_loss: float
    accuracy: float | None
    validation_loss: float | None
    validation_accuracy: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training run did: per-epoch records, the epoch whose parameters were kept, whether it stopped
    early, the hyper-parameters, the loss used, the data's size and sha256, and the layers left untrained."""

    epochs: list[EpochRecord]
    best_epoch: int
    stopped_early: bool
    options: TrainOptions
    loss: str
    samples: int
    validation_samples: int
    data_sha256: str
    untrained: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latent: Network | None = None  # with a grid: the latent weights, to resume training from (not reported)

    def to_json(self) -> dict[str, Any]:
        return {"loss_function": self.loss, "samples": self.samples, "validation_samples": self.validation_samples,
                "data_sha256": self.data_sha256, "hyper_parameters": self.options.to_json(),
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "untrained_layers": self.untrained,
                "seconds": self.seconds, "epochs": [e.to_json() for e in self.epochs]}


#: Called after every epoch with its record and the number of epochs asked for.
Progress = Callable[[EpochRecord, int], None]


# --- building and reading networks ---------------------------------------------------------------------------------


def init_network(widths: list[int], input_shape: tuple[int, ...] | None = None, batchnorm: bool = False,
                 seed: int = 0, input_name: str = "input", output_name: str = "output") -> Network:
    """A fresh dense ReLU network ``widths[0] → … → widths[-1]``: He-initialised weights (normal, variance
    2/fan-in), zero biases, optionally a BatchNorm (γ 1, β 0, mean 0, variance 1) after every hidden Dense;
    ``input_shape`` (default ``[1, widths[0]]``) is flattened first when it is not ``[1, n]``."""
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise NnxformError(f"layers needs at least two sizes (input and output), each >= 1, got {widths}")
    shape = tuple(int(d) for d in (input_shape or (1, widths[0])))
    if any(d < 1 for d in shape) or int(np.prod(shape)) != widths[0]:
        raise NnxformError(f"input shape {list(shape)} has {int(np.prod(shape))} elements but the first layer size "
                           f"is {widths[0]}")
    rng = np.random.default_rng(seed)
    layers: list[Layer] = []
    if shape != (1, widths[0]):
        layers.append(Flatten(name="flatten", axis=1 if len(shape) > 1 and shape[0] == 1 else 0))
    last = len(widths) - 2
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        W = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        layers.append(Dense(name=f"dense{k}", W=W, b=np.zeros(n_out)))
        if k < last:
            if batchnorm:
                layers.append(BatchNorm(name=f"bn{k}", gamma=np.ones(n_out), beta=np.zeros(n_out),
                                        mean=np.zeros(n_out), var=np.ones(n_out)))
            layers.append(Relu(name=f"relu{k}"))
    return Network(layers, input_name, shape, output_name)


def trainable(model: Model) -> tuple[Network, list[str]]:
    """``model`` as layers to train, and notes: a model with BatchNormalization is read as it is, so γ and β stay
    trainable (when it is a chain of layers the engine trains); any other, or one that is not, through ``canon``
    first (BatchNormalization folded then)."""
    notes: list[str] = []
    if any(n.op == "BatchNormalization" for n in model.nodes):
        try:
            net = from_model(model, "train")
            trained_parameters(net)
            return net, notes
        except NnxformError as exc:
            notes.append(f"BatchNormalization folded by canon (read as it is: {exc})")
    canonical = CANONICAL.establish(model)
    net = from_model(canonical, "train")
    trained_parameters(net)
    return net, notes


def trained_parameters(net: Network) -> list[tuple[int, str]]:
    """(layer index, parameter name) of every parameter the engine trains; a layer holding weights it cannot
    train (a MatMul or transposed-input Gemm left as a ``Fixed`` layer) is an error, other ``Fixed`` layers'
    constants (reshapes, constant scalings) are simply not trained."""
    out = []
    for k, layer in enumerate(net.layers):
        if isinstance(layer, Fixed):
            spec = OPERATORS.get(layer.op)
            if spec is not None and spec.weighted and spec.neurons:
                raise NnxformError(f"layer '{layer.name}' is a {layer.op} whose weights the training engine cannot "
                                   "train (it trains Gemm on [1, n] rows, Conv, ConvTranspose, BatchNormalization)")
            continue
        names = next((p for kind, p in TRAINED.items() if isinstance(layer, kind)), None)
        if names is None and layer.PARAMS:
            raise NnxformError(f"layer '{layer.name}' ({layer.OP}) has parameters the training engine cannot train")
        out += [(k, p) for p in names or ()]
    return out


# --- the objective -------------------------------------------------------------------------------------------------


def _into(buffers: list[dict[str, np.ndarray]], grads: list[dict[str, np.ndarray]]) -> None:
    """Copy per-layer parameter gradients into the views of the flat buffer training keeps."""
    for into, computed in zip(buffers, grads):
        for p, view in into.items():
            view[...] = computed[p]


def _data_loss(out: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None
               ) -> tuple[float, np.ndarray, int | None]:
    """The data loss of a batch (mean over samples), its gradient on the output, and the correct predictions."""
    z = out.reshape(len(out), -1)
    correct = int(np.sum(z.argmax(axis=1) == labels)) if labels is not None else None
    if targets is not None:
        diff = z - targets
        return float(np.mean(diff * diff)), (2.0 / diff.size) * diff, correct
    rows = np.arange(len(z))
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1)
    loss = float(np.mean(np.log(total) - shifted[rows, labels]))
    e /= total[:, None]
    e[rows, labels] -= 1.0
    e /= len(z)
    return loss, e, correct


def _penalty(layers: list[Layer], l1: float, l1_bn_gamma: float) -> float:
    """``l1·Σ|W| + l1_bn_gamma·Σ|γ|`` over the layers."""
    total = 0.0
    for layer in layers:
        if l1 and isinstance(layer, WEIGHTED):
            total += l1 * float(np.abs(layer.W).sum())
        if l1_bn_gamma and isinstance(layer, BatchNorm):
            total += l1_bn_gamma * float(np.abs(layer.gamma).sum())
    return total


def _add_penalty_gradients(layers: list[Layer], grads: list[dict[str, np.ndarray]], l1: float,
                           l1_bn_gamma: float) -> None:
    """Add the penalties' subgradients (sign, 0 at 0) to ``grads`` in place."""
    for layer, g in zip(layers, grads):
        if l1 and isinstance(layer, WEIGHTED):
            g["W"] += l1 * np.sign(layer.W)
        if l1_bn_gamma and isinstance(layer, BatchNorm):
            g["gamma"] += l1_bn_gamma * np.sign(layer.gamma)


def loss_and_gradients(net: Network, xs: np.ndarray, labels: np.ndarray | None = None,
                       targets: np.ndarray | None = None, l1: float = 0.0, l1_bn_gamma: float = 0.0
                       ) -> tuple[float, list[dict[str, np.ndarray]]]:
    """The objective training minimises on ``xs`` (cross-entropy on ``labels``, or MSE on ``targets``, averaged
    over the samples, plus the L1 penalties) and its gradient on every trained parameter, per layer; L1 takes
    sign(0) = 0 as its subgradient."""
    xs, labels, targets = _checked(net, xs, labels, targets)
    trained_parameters(net)  # refuses weights the engine cannot train
    values = net.forward(xs, keep=True)
    loss, g, _ = _data_loss(values[-1], labels, targets)
    grads = net.gradients(values, g, input_grad=False).params
    _add_penalty_gradients(net.layers, grads, l1, l1_bn_gamma)
    return loss + _penalty(net.layers, l1, l1_bn_gamma), grads


def _checked(net: Network, xs: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The data as float64 samples of the input shape, int64 labels and flat float64 targets; one-line errors for
    data the network cannot take."""
    if labels is None and targets is None:
        raise NnxformError("training needs labels (cross-entropy) or targets (mean squared error)")
    xs = np.asarray(xs, dtype=np.float64)
    size = int(np.prod(net.input_shape))
    if xs.ndim < 1 or len(xs) == 0:
        raise NnxformError("no data points")
    if xs[0].size != size:
        raise NnxformError(f"points have {xs[0].size} features but the network input has {size} elements")
    if not np.all(np.isfinite(xs)):
        raise NnxformError("the features contain NaN or infinite values")
    outputs = int(np.prod(net.shapes()[-1]))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != len(xs):
            raise NnxformError(f"{len(xs)} points but {labels.size} labels")
        if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= outputs:
            raise NnxformError(f"labels must be integers in [0, {outputs - 1}] for a network with {outputs} outputs")
        labels = labels.astype(np.int64)
    if targets is not None:
        targets = np.asarray(targets, dtype=np.float64)
        if targets.size != len(xs) * outputs:
            raise NnxformError(f"targets must hold {outputs} values per point for the {len(xs)} points, got "
                               f"{targets.size} values")
        targets = targets.reshape(len(xs), outputs)
        if not np.all(np.isfinite(targets)):
            raise NnxformError("the targets contain NaN or infinite values")
    return xs.reshape((len(xs),) + tuple(net.input_shape)), labels, targets


# --- the optimizers ------------------------------------------------------------------------------------------------


class _Optimizer:
    """SGD with momentum (``v ← μ·v + g``, ``p ← p − lr·v``) or Adam (Kingma & Ba, bias-corrected), in place on
    the flat parameter buffer.

    Adam keeps ``M = m/(1 − β₁)`` and ``V = v/(1 − β₂)`` so that a step is ten passes over the parameters (the
    update is the same: ``p ← p − lr·m̂/(√v̂ + ε)``); on small batches the update costs as much as the
    products."""

    def __init__(self, params: np.ndarray, options: TrainOptions):
        self.params, self.options, self.step = params, options, 0
        self.first, self.scratch = np.zeros_like(params), np.empty_like(params)
        self.second = np.zeros_like(params) if options.optimizer == "adam" else None

    def update(self, g: np.ndarray) -> None:
        o, p, t = self.options, self.params, self.scratch
        self.step += 1
        if self.second is None:  # SGD
            self.first *= o.momentum
            self.first += g
            np.multiply(self.first, o.lr, out=t)
            p -= t
            return
        b1, b2 = _ADAM_BETAS
        c = np.sqrt((1 - b2) / (1 - b2 ** self.step))  # √v̂ = c·√V
        k = o.lr * (1 - b1) / (1 - b1 ** self.step) / c  # lr·m̂/(√v̂ + ε) = k·M/(√V + ε/c)
        m, v = self.first, self.second
        m *= b1
        m += g
        v *= b2
        np.multiply(g, g, out=t)
        v += t
        np.sqrt(v, out=t)
        t += _ADAM_EPS / c
        np.divide(m, t, out=t)
        t *= k
        p -= t


# --- training ------------------------------------------------------------------------------------------------------


def _flat_parameters(net: Network, keep_zeros: bool) -> tuple[list[Layer], np.ndarray, np.ndarray,
                                                                 list[dict[str, np.ndarray]], np.ndarray]:
    """Float64 copies of ``net``'s layers whose trained parameters are views of one flat buffer, and their
    gradients views of another (so an optimizer step is a few numpy calls whatever the number of layers): the
    layers, both buffers, the gradient views per layer, and the mask of weights that may change (with
    ``keep_zeros``, not those exactly 0 now)."""
    trained = trained_parameters(net)
    layers = [layer.replace(**{p: np.array(a, dtype=np.float64) for p, a in layer.params().items()})
              if layer.PARAMS else layer for layer in net.layers]
    total = sum(getattr(layers[k], p).size for k, p in trained)
    flat, grad_flat, keep = np.empty(total), np.zeros(total), np.ones(total, dtype=bool)
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    offset = 0
    for k, p in trained:
        value = getattr(layers[k], p)
        view = flat[offset:offset + value.size].reshape(value.shape)
        view[...] = value
        setattr(layers[k], p, view)
        grads[k][p] = grad_flat[offset:offset + value.size].reshape(value.shape)
        if keep_zeros and p == "W" and isinstance(layers[k], WEIGHTED):
            keep[offset:offset + value.size] = value.reshape(-1) != 0
        offset += value.size
    return layers, flat, grad_flat, grads, keep


#: A grid layer in training: the layer (evaluating the projection), its grid, its latent weights and their gradient.
_OnGrid = tuple[Layer, LayerGrid, np.ndarray, np.ndarray]


def _latent_weights(layers: list[Layer], grads: list[dict[str, np.ndarray]], grid: Grid | None
                    ) -> list[_OnGrid]:
    """Per grid layer: the layer, its grid, its latent weights (the view of the flat buffer it held) and their
    gradient view; the layer now holds their projection onto the grid instead (what it evaluates)."""
    if grid is None:
        return []
    out = []
    for k, g in grid.layers.items():
        layer = layers[k] if k < len(layers) else None
        if not isinstance(layer, WEIGHTED) or layer.name != g.layer or np.shape(layer.W) != g.shape:
            raise NnxformError(f"the grid names layer {k} '{g.layer}', which this network does not have")
        latent = layer.W
        layer.W = g.project(latent)
        out.append((layer, g, latent, grads[k]["W"]))
    return out


def _project(on_grid: list[_OnGrid]) -> None:
    """Round every grid layer's latent weights onto its grid, into the weights it evaluates."""
    for layer, g, latent, _ in on_grid:
        layer.W[...] = g.project(latent)


def train(net: Network, xs: np.ndarray, labels: np.ndarray | None = None, targets: np.ndarray | None = None,
          options: TrainOptions = TrainOptions(), progress: Progress | None = None, grid: Grid | None = None
          ) -> tuple[Network, TrainResult]:
    """Train a copy of ``net`` on ``xs`` (samples, each of the input's size) with cross-entropy on ``labels``, or
    MSE on ``targets`` (then ``labels``, if given, only measure accuracy); the trained network and what happened.
    With ``options.validation``, that share of the points (chosen by the seed) is held out, training stops after
    ``patience`` epochs without a better validation score (accuracy on labels, loss on targets) and the best
    epoch's parameters are kept. With ``grid`` (``grid.detect``), ``net``'s weights on it are latent weights and the
    network returned is on the grid (see the module's docstring). A loss that turns NaN or infinite stops with an
    NnxformError."""
    options.check()
    xs, labels, targets = _checked(net, xs, labels, targets)
    if options.l1_bn_gamma and not any(isinstance(layer, BatchNorm) for layer in net.layers):
        raise NnxformError("L1 on BatchNormalization γ needs BatchNormalization layers; the network has none")
    digest = _sha256(xs, labels, targets)
    layers, flat, grad_flat, grads, keep = _flat_parameters(net, options.keep_zeros)
    masked = options.keep_zeros and not keep.all()
    on_grid = _latent_weights(layers, grads, grid)

    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(xs))
    n_val = int(round(options.validation * len(xs)))
    if options.validation and not 1 <= n_val < len(xs):
        raise NnxformError(f"validation share {options.validation:g} of {len(xs)} points leaves "
                           f"{'no validation' if n_val < 1 else 'no training'} point")
    val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
    pick = (lambda a, idx: None if a is None else a[idx])
    tx, ty, tt = xs[fit], pick(labels, fit), pick(targets, fit)
    vx, vy, vt = xs[val], pick(labels, val), pick(targets, val)

    optimizer = _Optimizer(flat, options)
    work = dataclasses.replace(net, layers=layers)  # the copy being trained (its parameters: views of ``flat``)
    largest = float(np.finfo(net.dtype).max)  # what the written network can hold
    records: list[EpochRecord] = []
    best: tuple[int, tuple[float, float], np.ndarray] | None = None
    started = time.perf_counter()
    for epoch in range(1, options.epochs + 1):
        t0 = time.perf_counter()
        perm = rng.permutation(len(tx))
        loss_sum = data_sum = 0.0
        correct = 0
        for start in range(0, len(tx), options.batch_size):
            idx = perm[start:start + options.batch_size]
            values = work.forward(tx[idx], keep=True)
            loss, g, right = _data_loss(values[-1], pick(ty, idx), pick(tt, idx))
            objective = loss + _penalty(layers, options.l1, options.l1_bn_gamma)
            if not np.isfinite(objective):
                raise NnxformError(f"training diverged: the loss is {objective} at epoch {epoch}, samples "
                                   f"{start}-{start + len(idx) - 1} (lr {options.lr:g}); try a smaller lr")
            loss_sum, data_sum = loss_sum + objective * len(idx), data_sum + loss * len(idx)
            correct += right or 0
            _into(grads, work.gradients(values, g, input_grad=False).params)
            _add_penalty_gradients(layers, grads, options.l1, options.l1_bn_gamma)
            for _, g, latent, gradient in on_grid:  # straight-through, 0 beyond the last level
                gradient[g.clipped(latent)] = 0.0
            if masked:
                grad_flat *= keep
            optimizer.update(grad_flat)
            _project(on_grid)
        if not np.abs(flat).max(initial=0.0) <= largest:  # NaN fails too
            raise NnxformError(f"training diverged: parameters beyond the range of {np.dtype(net.dtype).name} after "
                               f"epoch {epoch} (lr {options.lr:g}); try a smaller lr")
        v_loss = v_acc = None
        if n_val:
            v_loss, v_acc = _evaluate(work, vx, vy, vt)
        record = EpochRecord(epoch, loss_sum / len(tx), data_sum / len(tx),
                             correct / len(tx) if labels is not None else None, v_loss, v_acc,
                             time.perf_counter() - t0)
        records.append(record)
        if progress is not None:
            progress(record, options.epochs)
        if n_val:
            score = (-v_acc, v_loss) if targets is None else (v_loss, 0.0)
            if best is None or score < best[1]:
                best = (epoch, score, flat.copy())
            elif epoch - best[0] >= options.patience:
                break
    best_epoch = records[-1].epoch
    if best is not None:
        best_epoch = best[0]
        flat[...] = best[2]
        _project(on_grid)
    latents = {id(layer): latent for layer, _, latent, _ in on_grid}
    latent = dataclasses.replace(net, layers=[layer.replace(W=latents[id(layer)].copy()) if id(layer) in latents
                                              else layer for layer in layers]) if on_grid else None
    result = TrainResult(records, best_epoch, records[-1].epoch < options.epochs, options,
                         "mse" if targets is not None else "cross-entropy", len(tx), n_val, digest,
                         [layer.name for layer in layers if isinstance(layer, Fixed)],
                         time.perf_counter() - started, latent)
    return work, result


def _evaluate(net: Network, xs: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None
              ) -> tuple[float, float | None]:
    """Data loss and accuracy (None without labels) on held-out points, in chunks."""
    loss, correct = 0.0, 0
    for start in range(0, len(xs), _CHUNK):
        sl = slice(start, start + _CHUNK)
        out = net.forward(xs[sl])
        part, _, right = _data_loss(out, None if labels is None else labels[sl],
                                    None if targets is None else targets[sl])
        loss += part * len(out)
        correct += right or 0
    return loss / len(xs), (correct / len(xs) if labels is not None else None)


def _sha256(*arrays: np.ndarray | None) -> str:
    """The sha256 of the training data as the engine saw it (float64 points, int64 labels, float64 targets)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
