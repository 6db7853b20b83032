"""``pad``: give a ReLU network more affine layers with exact identity layers (DESIGN.md, "Identity-layer padding").

The network is canonicalised (once, and not at all when it is marked canonical: ``passes.CANONICAL``) and
compiled to its dense layers (``analyzers.network``) and written
back as a single chain (``layered.chain_network``): Flatten (unless the input is already
``[1, n]``), then ``Gemm → Relu → … → Gemm``. A convolutional network whose layers before the last
Flatten are group-1 Convs, ReLUs and pools keeps them (``conv_head_and_tail``); only its dense tail
is padded: identity layers go before the last Gemm, where values are ReLU outputs (≥ 0), so
``Gemm(I) → Relu`` is exact. When that tail has no hidden layer, the identity layers are 1×1 Convs
with identity kernels, each followed by a Relu, at the head's last point where values are ≥ 0
(``pad_head``): a dense identity over a flattened feature map (23,328 units in a real CNN: 2 GB) is
never written, and one over more than ``MAX_DENSE_IDENTITY`` units of a densified network is
refused. A network without ReLU has no point where values are ≥ 0: its values can be
negative, so it gets ``[I; −I] → Relu → [I, −I]`` (``relu(x) − relu(−x) = x``), one of the two
matrices folded into its affine layer. ``merge`` pads with the same functions.
"""

from __future__ import annotations

import numpy as np

from ..operators import CONVOLUTIONS
from ..analyzers.difference import ChainLayer, identity_width, padded_chain
from ..analyzers.network import Activation, NotAChain, compile_model, dense_weights
from ..errors import NnxformError
from ..ir import Model
from .. import layered
from ..layered import Chain, Conv, Dense, Flatten, Layer, Relu, chain_layers, chain_network, dense
from . import CANONICAL, PassReport, register

#: The widest dense identity written into a convolutional network whose convolutions became dense Gemms (a
#: 4096 × 4096 Gemm is 64 MiB in float32; over a real CNN's flattened feature map it would pass ONNX's 2 GB limit).
MAX_DENSE_IDENTITY = 4096


def relu_layers(model: Model, command: str) -> Chain:
    """The dense layers of ``model``'s canonical form if it is a chain Input → Linear → Relu → … → Linear, else a
    clear error."""
    return piecewise_chain(CANONICAL.establish(model), command, relu=True)[0]


def piecewise_chain(model: Model, command: str, relu: bool = False) -> tuple[Chain, list[Activation]]:
    """The dense layers of ``model`` as it is (canonical, or a piece of a canonical graph such as ``compress``'s
    dense tail) and its activations if it is a chain Input → Linear → activation → … → Linear whose activations are
    piecewise linear (the table's ``slopes``: ReLU, LeakyRelu; with ``relu``, ReLU's (0, 1) only), else a clear
    error."""
    net = compile_model(model)
    try:  # the structure first: no dense matrix is made of a network that is no chain
        chain = net.chain()
    except NotAChain as exc:
        step = net.steps[exc.step]
        name = getattr(step, "node", None) or model.producer(step.tensor).name
        chains = f"{command} supports ReLU chains; '{name}'"
        if exc.why == "empty":
            raise NnxformError(f"{command}: '{name}' reads a layer with no neurons; remove the empty layer") from None
        if exc.why == "skip":
            raise NnxformError(f"{chains} adds up {len(step.sources)} branches (a skip connection)") from None
        if exc.why in ("pool", "curved"):
            raise NnxformError(f"{chains} is a {step.op}") from None
        raise NnxformError(f"{chains} is not where a chain's layer or activation would be") from None
    activations = [net.steps[act] for _, act in chain if act is not None]
    for a in activations:
        if relu and a.slopes != (0.0, 1.0):
            raise NnxformError(f"{command} supports ReLU chains; '{a.node}' is a {a.op}")
    linear = [net.steps[i] for i, _ in chain]
    layers: Chain = [dense(dense_weights(step.weights[0], command), step.bias, f"layer{k + 1}")
                     for k, step in enumerate(linear)]
    return layers, activations


def written_activations(activations: list[Activation], count: int) -> list[Layer] | None:
    """``count`` activation layers like a chain's ``activations`` (all alike: ``one_activation``), to write it back;
    None for ReLU (``chain_layers``' default)."""
    if not activations or activations[0].op == "Relu":
        return None
    a = activations[0]
    return [layered.activation_layer(a.op, f"{a.op.lower()}{k}", a.attrs) for k in range(1, count + 1)]


def chain_identity_width(layers: Chain, depth: int, slopes: tuple[float, float]) -> int:
    """The width of the identity layers ``pad_layers(layers, depth, slopes)`` inserts (0: none)."""
    if slopes == (0.0, 1.0) or depth <= len(layers):
        return identity_width(layers, depth)
    return 2 * (layers[0].W.shape[0] if len(layers) == 1 else layers[-1].W.shape[1])


def one_activation(activations: list[Activation], command: str) -> tuple[float, float]:
    """The slopes of the one piecewise-linear activation every hidden layer of a chain uses (ReLU's when it has none),
    else a clear error: a merged or padded chain writes one activation for all its layers."""
    kinds = {a.slopes for a in activations} or {(0.0, 1.0)}
    if len(kinds) > 1:
        first = activations[0]
        other = next(a for a in activations if a.slopes != first.slopes)
        raise NnxformError(f"{command} needs one activation in every layer; '{first.node}' is a {first.op} with slopes "
                           f"{_slopes(first)} and '{other.node}' a {other.op} with slopes {_slopes(other)}")
    return kinds.pop()


def _slopes(a: Activation) -> str:
    return "({:g}, {:g})".format(*a.slopes)


def kinked_identity(layers: Chain, depth: int, slopes: tuple[float, float]) -> tuple[Chain, list[str]]:
    """``layers`` (a dense chain whose hidden activation is ``f``, two lines of ``slopes`` ``(p, q)`` meeting at 0)
    with identity layers before the last one up to ``depth`` layers, through ``y = (f(y) − f(−y)) / (p + q)``: the
    values before the last layer (or, for one layer, its output) split as ``[I; −I]``, then ``[[I, −I], [−I, I]] /
    (p + q)`` per further layer, the last layer reading ``[W, −W] / (p + q)``. Exact in real arithmetic; the float
    network rounds the new products (checked as every pass result is)."""
    p, q = slopes
    extra = depth - len(layers)
    if len(layers) == 1:
        W, b = layers[0].W, layers[0].b
        first, rest = dense(np.vstack([W, -W]), np.concatenate([b, -b])), []
        n, last = W.shape[0], dense(np.eye(W.shape[0]), np.zeros(W.shape[0]))
        extra -= 1
        notes = [f"layer 1 split into (f(y) − f(−y)) / {p + q:g} ({2 * n} neurons)"]
    else:
        n = layers[-1].W.shape[1]
        first, rest, last = dense(np.vstack([np.eye(n), -np.eye(n)]), np.zeros(2 * n)), layers[:-1], layers[-1]
        extra -= 1
        notes = [f"identity layer [I; −I] → f → (f(y) − f(−y)) / {p + q:g} ({2 * n} neurons) before the last layer"]
    eye = np.eye(n)
    turn = np.block([[eye, -eye], [-eye, eye]]) / (p + q)
    middle = [dense(turn, np.zeros(2 * n)) for _ in range(extra)]
    notes += [f"identity layer [[I, −I], [−I, I]] / {p + q:g} ({2 * n} neurons) before the last layer"] * extra
    end = dense(last.W @ np.hstack([eye, -eye]) / (p + q), last.b)
    return _renamed(list(rest) + [first] + middle + [end]), notes


def pad_layers(layers: Chain, depth: int, slopes: tuple[float, float] = (0.0, 1.0)) -> tuple[Chain, list[str]]:
    """``layers`` computing the same function with exactly ``depth`` affine layers, and one line per insertion: the
    difference analysis's padding (``difference.padded_chain``) on the dense layers of a ReLU chain, else
    ``kinked_identity`` for the chain's piecewise-linear activation of ``slopes``."""
    if depth < len(layers):
        raise NnxformError(f"the network already has {len(layers)} affine layers; cannot pad it to {depth}")
    if slopes != (0.0, 1.0):
        return (list(layers), []) if depth == len(layers) else kinked_identity(layers, depth, slopes)
    chain = [ChainLayer.of_dense(layer) for layer in layers]
    padded, notes = padded_chain(chain, depth)
    own = {id(c): layer for c, layer in zip(chain, layers)}  # the layers kept as they are keep their unit ids
    return _renamed([own[id(c)] if id(c) in own else dense(c.W, c.b) for c in padded]), notes


def _renamed(layers: Chain) -> Chain:
    """The layers named ``layer1``, ``layer2``, … in order (their position in the written chain)."""
    return [layer.replace(name=f"layer{k}") for k, layer in enumerate(layers, start=1)]


def pad_pair(la: Chain, lb: Chain, what: str, slopes: tuple[float, float] = (0.0, 1.0)
             ) -> tuple[Chain, Chain, list[str]]:
    """Two chains (their activation of ``slopes``) padded to the same depth with exact identity layers, and the
    insertions ("first: …", "second: …").

    Refuses outputs of different sizes: ``what`` (e.g. "merge") names the caller in the message.
    """
    ka, kb = la[-1].units, lb[-1].units
    if ka != kb:
        raise NnxformError(f"the outputs differ in size: the first network gives {ka} values, the second {kb}; "
                           f"{what} needs outputs of the same size")
    depth = max(len(la), len(lb))
    pa, notes_a = pad_layers(la, depth, slopes)
    pb, notes_b = pad_layers(lb, depth, slopes)
    return pa, pb, [f"first: {n}" for n in notes_a] + [f"second: {n}" for n in notes_b]


class NotMergeable(Exception):
    """Why a network's convolutions cannot be kept layer by layer (``pad`` and ``merge`` then densify them)."""


def conv_head_and_tail(model: Model, which: str) -> tuple[list[Layer], Chain]:
    """The canonical layers of ``model`` up to its last Flatten (group-1 Conv, ReLU, pooling) and the dense ReLU
    chain after it; NotMergeable (naming ``which`` network) for anything else."""
    canonical = CANONICAL.establish(model)  # folded BN, explicit group-1 convolutions
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


def nonnegative(head: list[Layer]) -> list[bool]:
    """Per point of ``head`` (before its first layer, after each), whether the values there are ≥ 0 whatever the
    input: from a Relu on, through pools and Flatten, until the next Conv (an identity layer changes nothing)."""
    signs = [False]
    for layer in head:
        signs.append(isinstance(layer, Relu) or (signs[-1] and not isinstance(layer, Conv)))
    return signs


def channels(head: list[Layer], input_channels: int) -> list[int]:
    """Per point of ``head`` (as ``nonnegative``), the number of channels there."""
    out = [input_channels]
    for layer in head:
        out.append(layer.units if isinstance(layer, Conv) else out[-1])
    return out


def identity_tap(conv: Conv) -> tuple[int, ...] | None:
    """The kernel tap at which a Conv of ``conv``'s geometry is ``x ↦ x`` (stride 1, pads keeping the spatial size,
    the begin pad a whole number of dilations), or None when no Conv of that geometry is the identity."""
    nd = conv.W.ndim - 2
    kernel, strides, dil = np.array(conv.W.shape[2:]), np.array(conv.strides), np.array(conv.dilations)
    begin, end = np.array(conv.pads[:nd]), np.array(conv.pads[nd:])
    if (strides != 1).any() or (begin + end != dil * (kernel - 1)).any() or (begin % dil).any():
        return None
    return tuple(int(t) for t in begin // dil)


def identity_conv(width: int, nd: int, like: Conv | None = None, name: str = "identity") -> Conv:
    """``x ↦ x`` over ``width`` channels as a group-1 Conv with zero bias: 1×1 (stride 1, no pad), or in ``like``'s
    geometry with one non-zero tap (``identity_tap``), so that it merges channel-wise with ``like``."""
    geometry = {"strides": (1,) * nd, "pads": (0,) * 2 * nd, "dilations": (1,) * nd} if like is None else \
        {"strides": like.strides, "pads": like.pads, "dilations": like.dilations}
    kernel, tap = ((1,) * nd, (0,) * nd) if like is None else (like.W.shape[2:], identity_tap(like))
    W = np.zeros((width, width) + tuple(kernel))
    W[(np.arange(width), np.arange(width)) + tap] = 1.0
    return Conv(name=name, W=W, b=np.zeros(width), **geometry)


def pad_head(head: list[Layer], extra: int, input_shape: tuple[int, ...]) -> tuple[list[Layer], list[str]]:
    """``head`` with ``extra`` identity 1×1 Conv → Relu pairs at its last point before the Flatten where values are
    ≥ 0 (so relu(x) = x exactly, in float too; ``nonnegative`` must find one), and one line per pair."""
    signs = nonnegative(head)
    at = max(k for k in range(len(head)) if signs[k])  # head[-1] is the Flatten: insert before it
    nd, c = len(input_shape) - 2, channels(head, input_shape[1])[at]
    pairs = [[identity_conv(c, nd, name=f"identity_conv{k}"), Relu(name=f"identity_relu{k}")]
             for k in range(1, extra + 1)]
    notes = [f"identity Conv 1×1 ({c} → {c} channels, zero bias) → Relu after '{head[at - 1].name}' (its values are "
             "≥ 0)"] * extra
    return head[:at] + [layer for pair in pairs for layer in pair] + head[at:], notes


def affine_depth(model: Model, relu: bool = False, most: float = np.inf) -> int:
    """The number of affine layers ``pad`` counts in ``model`` (its Convs and Gemms), without densifying a CNN whose
    convolutions ``pad`` keeps; a clear error for a network that is no chain of piecewise-linear activations (with
    ``relu``, of ReLUs), or whose convolutions ``pad`` would write as dense Gemms of more than ``most`` entries."""
    model = CANONICAL.establish(model)
    convs = [n for n in model.nodes if n.op in CONVOLUTIONS]
    if convs:
        try:
            head, tail = conv_head_and_tail(model, "the")
            return sum(isinstance(layer, Conv) for layer in head) + len(tail)
        except NotMergeable:  # pad densifies the convolutions
            shapes = model.shapes()
            big = next((n for n in convs if np.prod(shapes[n.inputs[0]]) * np.prod(shapes[n.outputs[0]]) > most),
                       None)
            if big is not None:
                raise NnxformError(f"pad: '{big.name}' would be a dense Gemm of more than {most:.0f} entries")
    return len(piecewise_chain(model, "pad", relu)[0])


@register("pad", requires=frozenset({CANONICAL}), ensures=frozenset())
def pad(model: Model, depth: int) -> tuple[Model, PassReport]:
    """``model`` as a ReLU chain with ``depth`` affine layers, the same function (exact identity layers): a CNN gets
    them in its dense tail when that has a hidden layer, else as 1×1 Convs in its head (``pad_head``)."""
    report = PassReport("pad")
    out = model.output_name
    output_shape = tuple(model.shapes()[out])
    canonical = CANONICAL.establish(model)  # read once: both readers below take it as it is
    head: list[Layer] = []
    convolutional = any(n.op in CONVOLUTIONS for n in model.nodes)
    why = ""
    if convolutional:
        try:
            head, layers = conv_head_and_tail(canonical, "the")
        except NotMergeable as exc:
            why = str(exc)
            report.add("densified", f"convolutions written as dense Gemms: {why}")
    slopes, activations = (0.0, 1.0), []
    if not head:
        layers, activations = piecewise_chain(canonical, "pad")
        slopes = one_activation(activations, "pad")
    convs = sum(isinstance(layer, Conv) for layer in head)
    if depth < convs + len(layers):
        raise NnxformError(f"the network already has {convs + len(layers)} affine layers; cannot pad it to {depth}")
    extra = depth - convs - len(layers)
    in_head = bool(head) and extra > 0 and len(layers) == 1 and any(nonnegative(head)[:-1])
    if in_head:
        head, notes = pad_head(head, extra, tuple(model.input_shape))
        padded = layers
    else:
        width = chain_identity_width(layers, depth - convs, slopes)
        if convolutional and (not head or len(layers) == 1) and width > MAX_DENSE_IDENTITY:
            fix = "identity 1×1 Convs need a Relu before the last Flatten, and it has none" if head else \
                f"identity Convs need group-1 Conv, Relu and pooling layers before the last Flatten ({why})"
            raise NnxformError(f"pad: the identity layers would be dense {width}×{width} Gemms over the network's "
                               f"convolutional features ({4 * width * width / 2**20:.0f} MiB each, at most "
                               f"{MAX_DENSE_IDENTITY} units); {fix}")
        padded, notes = pad_layers(layers, depth - convs, slopes)
    if head:
        tail = chain_layers(padded, 2, output_shape)
        result = layered.Network.like(model, head + tail).to_model()
        report.add("kept", f"{convs} Conv layers kept as they are; " +
                   ("identity 1×1 Convs added in the head" if in_head else
                    "the dense layers after the last Flatten padded"))
    else:
        acts = written_activations(activations, len(padded) - 1)
        result = chain_network(padded, model, output_shape, activations=acts).to_model()
    report.counts.update(layers_before=convs + len(layers), layers_after=depth)
    for line in notes:
        report.add("inserted", line)
    return result, report
