"""Pruning a ReLU network to make it smaller for verifiers: ``prune(model, method, ratio)``.

Methods (DESIGN.md, "Pruning"): ``weight`` (magnitude, paper 001 Alg. 2), ``neuron`` (BN |γ| or
weight norm, paper 001 Alg. 1) and ``saliency`` (data-free delegate pruning with simulated
annealing, paper 003). A fully connected network is pruned as its canonical dense ReLU chain and
written back as one chain with fewer units, no zeros standing in for removed units; a
convolutional one keeps its Conv layers (``pruning.channel``: ``neuron`` removes whole channels,
``weight`` zeroes kernel weights, ``saliency`` merges each removed channel into its most similar
sibling). None retrains. Pruning changes the function: ``pruning.impact.impact_bound`` bounds by
how much, soundly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..domain import Box
from ..errors import NnxformError
from ..exactness import ATOL, Comparison, Reference
from ..ir import Model
from ..layered import Network, Size, aligned, chain_network, model_size
from ..passes import CANONICAL, Pass, apply_checked
from ..interpreter import in_passes, points_per_pass, points_within, run
from .chain import dense_chain, prunable_layers, to_model
from .graph import has_skip_connections, prune_graph_channels, prune_graph_weights
from .channel import (aligned_network, conv_network, is_convolutional, prune_channel_saliency, prune_channels,
                      prune_conv_weights)
from .neuron import prune_neurons
from .saliency import SaliencyOptions, prune_saliency
from .weight import prune_weights

METHODS = ("weight", "neuron", "saliency")
SCOPES = ("global", "layer")
#: The scope used when none is given: the papers' (001 ranks weights and BN |γ| over the whole
#: network, 003 prunes the same share of every layer), except that weight norms of different layers
#: are not comparable, so neuron pruning without BN ranks within each layer.
DEFAULT_SCOPE = {"weight": "global", "neuron": "global", "neuron-weight-norm": "layer", "saliency": "layer"}


@dataclass
class PruneResult:
    """The pruned model and what pruning did: sizes before and after, method details, notes."""

    model: Model
    method: str
    ratio: float
    scope: str
    seconds: float
    before: Size
    after: Size
    details: dict[str, Any]
    notes: list[str]
    aligned: Model  # the pruned network at the original widths, removed units zero: what the impact bound analyses
    network: Network | Model  # the pruned layers (a graph: the pruned model, run by the numpy evaluator): the
    # function the written model is checked against
    check: Comparison | None = None  # the written model against ``network`` in onnxruntime

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "ratio": self.ratio, "scope": self.scope, "seconds": self.seconds,
                "before": self.before.to_json(), "after": self.after.to_json(), "details": self.details,
                "notes": self.notes, "check": None if self.check is None else self.check.to_json()}


def prune(model: Model, method: str, ratio: float, *, scope: str | None = None, box: Box | None = None,
          options: SaliencyOptions | None = None, progress: Callable[[int, int], None] | None = None,
          samples: int = 1000, tol: float = ATOL) -> PruneResult:
    """Prune ``model`` by ``method`` to remove the share ``ratio`` (hidden units, or weights for ``weight``), the
    written model checked in onnxruntime on ``samples`` points of ``box`` against the pruned layers it stands for.

    ``box``: the input domain whose neuron bounds guide ``saliency`` (default box when None);
    ``options``: saliency's step, α, β, φ and seed; ``progress(done, total)`` reports saliency's units.
    """
    options = options or SaliencyOptions()
    parameters = {}
    if method == "saliency":
        parameters = dict(step=options.step, alpha=options.alpha, beta=options.beta, phi=options.phi,
                          seed=options.seed)
    _, result, check = apply_checked(PRUNE, model, box, samples, tol, parameters, _as_written, method=method,
                                     ratio=ratio, scope=scope, guide=box, options=options, progress=progress)
    result.check = check
    return result


def _as_written(result: PruneResult) -> Reference:
    """The pruned layers' function in float64: what the written model must compute (in exact arithmetic, so the
    absolute chain of the rule is the written model's alone)."""

    def outputs(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        net = result.network
        if isinstance(net, Model):
            f, step = (lambda c: run(net, c).reshape(len(c), -1)), points_per_pass(net, len(xs))
        else:
            per_point = sum(int(np.prod(shape)) for shape in net.shapes())
            f, step = (lambda c: net.forward(c).reshape(len(c), -1)), points_within(per_point, len(xs))
        y = in_passes(f, xs, step)
        return y, np.abs(y)

    return Reference(outputs, "the written pruned network differs from the pruned layers by {max_abs:.3g} over "
                              "{samples} samples, beyond {rule}; nothing written (please report this network)")


def _pruned(model: Model, method: str, ratio: float, scope: str | None = None, guide: Box | None = None,
            options: SaliencyOptions | None = None,
            progress: Callable[[int, int], None] | None = None) -> tuple[Model, PruneResult]:
    """The pruned model (see ``prune``; ``guide`` is its ``box``) and what pruning did."""
    if method not in METHODS:
        raise NnxformError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if scope is not None and scope not in SCOPES:
        raise NnxformError(f"unknown scope '{scope}'; choose one of {', '.join(SCOPES)}")
    if not 0.0 <= ratio <= 1.0:
        raise NnxformError(f"the ratio must lie in [0, 1], got {ratio:g}")
    options = options or SaliencyOptions()
    _check_options(options)
    t0 = time.perf_counter()
    if has_skip_connections(model):
        return _pruned_graph(model, method, ratio, scope, t0)
    if is_convolutional(model):
        return _pruned_convolutional(model, method, ratio, scope, options, progress, t0)
    layers = dense_chain(model)
    prunable = prunable_layers(layers)
    if not prunable:
        raise NnxformError("the network has no hidden layer to prune")
    if method == "weight":
        scope = scope or DEFAULT_SCOPE[method]
        pruned, details, notes = prune_weights(layers, prunable, ratio, scope)
    elif method == "neuron":
        pruned, details, notes = prune_neurons(model, layers, prunable, ratio, scope)
        scope = details["scope"]
    else:
        scope, notes = scope or DEFAULT_SCOPE[method], []
        if guide is None:
            guide = Box.default(model.input_size)
            notes.append("no domain given: saliency's neuron bounds are taken over the default box [-1, 1]")
        pruned, details, more = prune_saliency(layers, prunable, ratio, scope, guide.fit(model.input_size),
                                               options, progress)
        notes += more
    result = to_model(pruned, model)
    out = model.output_name
    network = chain_network(pruned, model, tuple(model.shapes()[out]), final_relu=True)
    return result, PruneResult(result, method, ratio, scope, time.perf_counter() - t0,
                               model_size(to_model(layers, model)), model_size(result), details, notes,
                               to_model(aligned(pruned, layers), model), network)


def _pruned_convolutional(model: Model, method: str, ratio: float, scope: str | None, options: SaliencyOptions,
                          progress: Callable[[int, int], None] | None, t0: float) -> tuple[Model, PruneResult]:
    """``_pruned`` for a network with convolutions: channel pruning (``neuron``, ``saliency``) or weight pruning on its
    layered form, written back with its Conv layers (``pruning.channel``)."""
    original = Network.like(model, conv_network(model).layers)
    if method == "weight":
        scope = scope or DEFAULT_SCOPE[method]
        pruned, details, notes = prune_conv_weights(original, ratio, scope)
    elif method == "saliency":
        scope = scope or DEFAULT_SCOPE[method]
        pruned, details, notes = prune_channel_saliency(original, ratio, scope, options.step, progress)
        if options != SaliencyOptions(step=options.step):
            notes.append("convolutional saliency pruning is greedy by saliency (no interval impact, no annealing): "
                         "α, β, φ and the seed do not apply")
    else:
        pruned, details, notes = prune_channels(model, original, ratio, scope)
        scope = details["scope"]
    result = pruned.to_model()
    return result, PruneResult(result, method, ratio, scope, time.perf_counter() - t0, model_size(original.to_model()),
                               model_size(result), details, notes, aligned_network(pruned, original).to_model(),
                               pruned)


def _pruned_graph(model: Model, method: str, ratio: float, scope: str | None, t0: float) -> tuple[Model, PruneResult]:
    """``_pruned`` for a network with skip connections, on its graph (``pruning.graph``)."""
    if method == "saliency":
        join = next(n for n in model.nodes if len(model.data_inputs(n)) > 1)
        raise NnxformError(f"prune: saliency pairs channels along one chain of layers, and '{join.name}' ({join.op}) "
                           f"joins {len(model.data_inputs(join))} branches (a skip connection): use --method neuron "
                           "(channels not tied by it) or weight")
    canonical = CANONICAL.establish(model)  # BN folded where exact, group-1 convolutions, Gemm weights [out, in]
    if method == "weight":
        scope = scope or DEFAULT_SCOPE[method]
        result, details, notes = prune_graph_weights(canonical, ratio, scope)
        aligned_model = result
    else:
        result, aligned_model, details, notes = prune_graph_channels(canonical, ratio, scope)
        scope = details["scope"]
    return result, PruneResult(result, method, ratio, scope, time.perf_counter() - t0, model_size(canonical),
                               model_size(result), details, notes, aligned_model, result)


#: Pruning as a pass: it changes the function, so its result is checked against the pruned layers it writes.
PRUNE = Pass("prune", "Prune hidden units, conv channels or weights of a ReLU network.", False, _pruned,
             needs=("guide", "options", "progress"), requires=frozenset({CANONICAL}))


def _check_options(o: SaliencyOptions) -> None:
    if not 0.0 < o.step <= 1.0:
        raise NnxformError(f"the step must lie in (0, 1], got {o.step:g}")
    if o.alpha < 0 or o.beta < 0:
        raise NnxformError(f"α and β must be >= 0, got {o.alpha:g} and {o.beta:g}")
    if not 0.0 <= o.phi <= 1.0:
        raise NnxformError(f"φ must lie in [0, 1], got {o.phi:g}")


__all__ = ["DEFAULT_SCOPE", "METHODS", "SCOPES", "PruneResult", "SaliencyOptions", "Size", "prune"]
