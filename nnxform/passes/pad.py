"""``pad``: give a ReLU network more affine layers with exact identity layers (DESIGN.md, "Identity-layer padding").

The network is canonicalised and compiled to its dense layers (``analyzers.network``), so every
affine layer — Conv included — becomes one dense Gemm, and written back as a single chain
(``layered.chain_network``): Flatten (unless the input is already ``[1, n]``), then
``Gemm → Relu → … → Gemm``. Identity layers go before the last Gemm, where values are ReLU outputs
(≥ 0), so ``Gemm(I) → Relu`` is exact. A network without ReLU has no such point: its values can be
negative, so it gets ``[I; −I] → Relu → [I, −I]`` (``relu(x) − relu(−x) = x``), one of the two
matrices folded into its affine layer. ``merge`` pads with the same functions.
"""

from __future__ import annotations

import numpy as np

from ..analyzers.network import Activation, Pool, compile_model
from ..errors import NnxformError
from ..ir import Model
from ..layered import Chain, chain_network, dense
from . import PASSES, PassReport, register


def relu_layers(model: Model, command: str) -> Chain:
    """The dense layers of ``model`` if it is a chain Input → Linear → Relu → … → Linear, else a clear error."""
    canonical, _ = PASSES["canon"](model)
    net = compile_model(canonical)
    layers: Chain = []
    for i, step in enumerate(net.steps[1:], start=1):
        if isinstance(step, Pool):
            raise NnxformError(f"{command} supports ReLU chains; '{step.node}' is a MaxPool")
        if isinstance(step, Activation):
            if step.op != "Relu":
                raise NnxformError(f"{command} supports ReLU chains; '{step.node}' is a {step.op}")
            continue
        node = canonical.producer(step.tensor)
        if not step.sources:  # the loader refuses empty layers; a model built in memory may have one
            raise NnxformError(f"{command}: '{node.name}' reads a layer with no neurons; remove the empty layer")
        if step.sources != [i - 1]:
            raise NnxformError(f"{command} supports ReLU chains; '{node.name}' adds up {len(step.sources)} "
                               "branches (a skip connection)")
        layers.append(dense(step.weights[0], step.bias, f"layer{len(layers) + 1}"))
    return layers


def pad_layers(layers: Chain, depth: int) -> tuple[Chain, list[str]]:
    """``layers`` computing the same function with exactly ``depth`` affine layers, and one line per insertion."""
    if depth < len(layers):
        raise NnxformError(f"the network already has {len(layers)} affine layers; cannot pad it to {depth}")
    layers, notes = list(layers), []
    if depth > len(layers) == 1:
        W, b = layers[0].W, layers[0].b
        n_out, n_in = W.shape
        if n_out <= n_in:  # split the output: [W; −W] → Relu → [I, −I]
            eye = np.eye(n_out)
            layers = [dense(np.vstack([W, -W]), np.concatenate([b, -b]), "layer1"),
                      dense(np.hstack([eye, -eye]), np.zeros(n_out), "layer2")]
            notes.append(f"layer 1 split into relu(y) − relu(−y): [W; −W] → Relu → [I, −I] ({2 * n_out} neurons)")
        else:  # split the input: [I; −I] → Relu → [W, −W]
            eye = np.eye(n_in)
            layers = [dense(np.vstack([eye, -eye]), np.zeros(2 * n_in), "layer1"),
                      dense(np.hstack([W, -W]), b, "layer2")]
            notes.append(f"input split into relu(x) − relu(−x): [I; −I] → Relu → [W, −W] ({2 * n_in} neurons)")
    width, extra = layers[-1].W.shape[1], depth - len(layers)
    notes += [f"identity layer Gemm(I) → Relu ({width} neurons) before the last layer"] * extra
    identity = [dense(np.eye(width), np.zeros(width), "identity") for _ in range(extra)]
    return _renamed(layers[:-1] + identity + layers[-1:]), notes


def _renamed(layers: Chain) -> Chain:
    """The layers named ``layer1``, ``layer2``, … in order (their position in the written chain)."""
    return [layer.replace(name=f"layer{k}") for k, layer in enumerate(layers, start=1)]


def pad_pair(la: Chain, lb: Chain, what: str) -> tuple[Chain, Chain, list[str]]:
    """Two chains padded to the same depth with exact identity layers, and the insertions ("first: …", "second: …").

    Refuses outputs of different sizes: ``what`` (e.g. "merge") names the caller in the message.
    """
    ka, kb = la[-1].units, lb[-1].units
    if ka != kb:
        raise NnxformError(f"the outputs differ in size: the first network gives {ka} values, the second {kb}; "
                           f"{what} needs outputs of the same size")
    depth = max(len(la), len(lb))
    pa, notes_a = pad_layers(la, depth)
    pb, notes_b = pad_layers(lb, depth)
    return pa, pb, [f"first: {n}" for n in notes_a] + [f"second: {n}" for n in notes_b]


@register("pad")
def pad(model: Model, depth: int) -> tuple[Model, PassReport]:
    """``model`` as a dense ReLU chain with ``depth`` affine layers, the same function (exact identity layers)."""
    layers = relu_layers(model, "pad")
    padded, notes = pad_layers(layers, depth)
    out = model.output_name
    result = chain_network(padded, model, tuple(model.shapes()[out])).to_model()
    report = PassReport("pad")
    report.counts.update(layers_before=len(layers), layers_after=depth)
    for line in notes:
        report.add("inserted", line)
    return result, report
