"""``pad``: give a ReLU network more affine layers with exact identity layers (DESIGN.md, "Identity-layer padding").

The network is canonicalised and compiled to its dense layers (``analyzers.network``) and written
back as a single chain (``layered.chain_network``): Flatten (unless the input is already
``[1, n]``), then ``Gemm → Relu → … → Gemm``. A convolutional network whose layers before the last
Flatten are group-1 Convs, ReLUs and pools keeps them (``conv_head_and_tail``); only its dense tail
is padded. Identity layers go before the last Gemm, where values are ReLU outputs
(≥ 0), so ``Gemm(I) → Relu`` is exact. A network without ReLU has no such point: its values can be
negative, so it gets ``[I; −I] → Relu → [I, −I]`` (``relu(x) − relu(−x) = x``), one of the two
matrices folded into its affine layer. ``merge`` pads with the same functions.
"""

from __future__ import annotations

import numpy as np

from ..analyzers.network import Activation, Pool, compile_model, dense_weights
from ..errors import NnxformError
from ..ir import Model
from .. import layered
from ..layered import Chain, Conv, Dense, Flatten, Layer, Relu, chain_layers, chain_network, dense
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
        layers.append(dense(dense_weights(step.weights[0], command), step.bias, f"layer{len(layers) + 1}"))
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


class NotMergeable(Exception):
    """Why a network's convolutions cannot be kept layer by layer (``pad`` and ``merge`` then densify them)."""


def conv_head_and_tail(model: Model, which: str) -> tuple[list[Layer], Chain]:
    """The canonical layers of ``model`` up to its last Flatten (group-1 Conv, ReLU, pooling) and the dense ReLU
    chain after it; NotMergeable (naming ``which`` network) for anything else."""
    canonical, _ = PASSES["canon"](model)  # folded BN, explicit group-1 convolutions
    try:
        net = layered.from_model(canonical, "the layered form")
    except NnxformError as exc:
        raise NotMergeable(f"{which} network: {exc}") from None
    cut = max((k for k, layer in enumerate(net.layers) if isinstance(layer, Flatten)), default=-1) + 1
    head, rest = net.layers[:cut], net.layers[cut:]
    for layer in head:
        if not isinstance(layer, (Conv, Relu, layered.MaxPool, layered.AvgPool, Flatten)) or \
                isinstance(layer, Conv) and layer.group != 1:
            raise NotMergeable(f"{which} network: layer '{layer.name}' ({type(layer).__name__}) before the dense "
                               "tail is not a group-1 Conv, ReLU or pooling")
    tail = [layer for layer in rest if isinstance(layer, Dense)]
    expected = [kind for d in tail for kind in (Dense, Relu)][:-1]
    if not tail or [type(layer) for layer in rest] != expected:
        raise NotMergeable(f"{which} network: the layers after its last Flatten are not a Gemm/Relu chain")
    return head, tail


@register("pad")
def pad(model: Model, depth: int) -> tuple[Model, PassReport]:
    """``model`` as a ReLU chain with ``depth`` affine layers, the same function (exact identity layers)."""
    report = PassReport("pad")
    out = model.output_name
    output_shape = tuple(model.shapes()[out])
    head: list[Layer] = []
    if any(n.op in ("Conv", "ConvTranspose") for n in model.nodes):
        try:
            head, layers = conv_head_and_tail(model, "the")
        except NotMergeable as exc:
            report.add("densified", f"convolutions written as dense Gemms: {exc}")
    if not head:
        layers = relu_layers(model, "pad")
    convs = sum(isinstance(layer, Conv) for layer in head)
    if depth < convs + len(layers):
        raise NnxformError(f"the network already has {convs + len(layers)} affine layers; cannot pad it to {depth}")
    padded, notes = pad_layers(layers, depth - convs)
    if head:
        tail = chain_layers(padded, 2, output_shape)
        result = layered.Network.like(model, head + tail).to_model()
        report.add("kept", f"{convs} Conv layers kept as they are; the dense layers after the last Flatten padded")
    else:
        result = chain_network(padded, model, output_shape).to_model()
    report.counts.update(layers_before=convs + len(layers), layers_after=depth)
    for line in notes:
        report.add("inserted", line)
    return result, report
