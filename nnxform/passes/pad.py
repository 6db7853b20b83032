"""``pad``: give a ReLU network more affine layers with exact identity layers (DESIGN.md, "Identity-layer padding").

The network is canonicalised and compiled to its dense layers (``analyzers.network``), so every
affine layer — Conv included — becomes one dense Gemm, and written back as a single chain:
Flatten (unless the input is already ``[1, n]``), then ``Gemm → Relu → … → Gemm``. Identity
layers go before the last Gemm, where values are ReLU outputs (≥ 0), so ``Gemm(I) → Relu`` is
exact. A network without ReLU has no such point: its values can be negative, so it gets
``[I; −I] → Relu → [I, −I]`` (``relu(x) − relu(−x) = x``), one of the two matrices folded into
its affine layer. ``merge`` pads with the same functions.
"""

from __future__ import annotations

import numpy as np

from ..affine import set_gemm
from ..analyzers.network import Activation, Pool, compile_model
from ..errors import NnxformError
from ..ir import Model, Node
from . import PASSES, PassReport, register

#: Dense affine layers ``(W [out, in], b [out])`` in float64; a ReLU follows every layer but the last.
Layers = list[tuple[np.ndarray, np.ndarray]]


def relu_layers(model: Model, command: str) -> Layers:
    """The dense layers of ``model`` if it is a chain Input → Linear → Relu → … → Linear, else a clear error."""
    canonical, _ = PASSES["canon"](model)
    net = compile_model(canonical)
    layers: Layers = []
    for i, step in enumerate(net.steps[1:], start=1):
        if isinstance(step, Pool):
            raise NnxformError(f"{command} supports ReLU chains; '{step.node}' is a MaxPool")
        if isinstance(step, Activation):
            if step.op != "Relu":
                raise NnxformError(f"{command} supports ReLU chains; '{step.node}' is a {step.op}")
            continue
        if not step.sources:  # the loader refuses empty layers; a model built in memory may have one
            node = canonical.producer(step.tensor)
            raise NnxformError(f"{command}: '{node.name}' reads a layer with no neurons; remove the empty layer")
        if step.sources != [i - 1]:
            node = canonical.producer(step.tensor)
            raise NnxformError(f"{command} supports ReLU chains; '{node.name}' adds up {len(step.sources)} "
                               "branches (a skip connection)")
        layers.append((step.weights[0], step.bias))
    return layers


def is_identity(W: np.ndarray, b: np.ndarray) -> bool:
    """True for the layer ``x ↦ x`` (square identity weights, zero bias): what padding inserts."""
    return W.shape[0] == W.shape[1] and np.array_equal(W, np.eye(W.shape[0])) and not b.any()


def pad_layers(layers: Layers, depth: int) -> tuple[Layers, list[str]]:
    """``layers`` computing the same function with exactly ``depth`` affine layers, and one line per insertion."""
    if depth < len(layers):
        raise NnxformError(f"the network already has {len(layers)} affine layers; cannot pad it to {depth}")
    layers, notes = list(layers), []
    if depth > len(layers) == 1:
        W, b = layers[0]
        n_out, n_in = W.shape
        if n_out <= n_in:  # split the output: [W; −W] → Relu → [I, −I]
            eye = np.eye(n_out)
            layers = [(np.vstack([W, -W]), np.concatenate([b, -b])), (np.hstack([eye, -eye]), np.zeros(n_out))]
            notes.append(f"layer 1 split into relu(y) − relu(−y): [W; −W] → Relu → [I, −I] ({2 * n_out} neurons)")
        else:  # split the input: [I; −I] → Relu → [W, −W]
            eye = np.eye(n_in)
            layers = [(np.vstack([eye, -eye]), np.zeros(2 * n_in)), (np.hstack([W, -W]), b)]
            notes.append(f"input split into relu(x) − relu(−x): [I; −I] → Relu → [W, −W] ({2 * n_in} neurons)")
    width, extra = layers[-1][0].shape[1], depth - len(layers)
    notes += [f"identity layer Gemm(I) → Relu ({width} neurons) before the last layer"] * extra
    identity = [(np.eye(width), np.zeros(width))] * extra
    return layers[:-1] + identity + layers[-1:], notes


def pad_pair(la: Layers, lb: Layers, what: str) -> tuple[Layers, Layers, list[str]]:
    """Two chains padded to the same depth with exact identity layers, and the insertions ("first: …", "second: …").

    Refuses outputs of different sizes: ``what`` (e.g. "merge") names the caller in the message.
    """
    ka, kb = la[-1][1].size, lb[-1][1].size
    if ka != kb:
        raise NnxformError(f"the outputs differ in size: the first network gives {ka} values, the second {kb}; "
                           f"{what} needs outputs of the same size")
    depth = max(len(la), len(lb))
    pa, notes_a = pad_layers(la, depth)
    pb, notes_b = pad_layers(lb, depth)
    return pa, pb, [f"first: {n}" for n in notes_a] + [f"second: {n}" for n in notes_b]


def chain_model(layers: Layers, like: Model, output: str, output_shape: tuple[int, ...] | None = None) -> Model:
    """A Model on ``like``'s input (name, dims, dtype): [Flatten →] Gemm → Relu → … → Gemm [→ Reshape]."""
    m = Model(nodes=[], constants={}, input_name=like.input_name, input_shape=like.input_shape,
              output_names=[output], input_dims=like.input_dims, dtype=like.dtype, source=dict(like.source))
    tensor = m.input_name

    def add(op: str, inputs: list[str], name: str, out: str | None = None, **attrs) -> Node:
        nonlocal tensor
        node = Node(op, m.fresh_name(name), [tensor, *inputs], [out or m.fresh_name(f"{name}_out")], attrs)
        m.nodes.append(node)
        tensor = node.outputs[0]
        return node

    if len(like.input_shape) == 1:
        add("Reshape", [m.add_constant("flatten_shape", np.array([1, -1], np.int64))], "flatten")
    elif len(like.input_shape) > 2:
        add("Flatten", [], "flatten", axis=1)
    reshape = output_shape is not None and output_shape != (1, layers[-1][1].size)
    for k, (W, b) in enumerate(layers, start=1):
        last = k == len(layers)
        node = add("Gemm", [], f"layer{k}", output if last and not reshape else None)
        set_gemm(m, node, W, b)
        if not last:
            add("Relu", [], f"relu{k}")
    if reshape:
        add("Reshape", [m.add_constant("output_shape", np.array(output_shape, np.int64))], "unflatten", output)
    return m


@register("pad")
def pad(model: Model, depth: int) -> tuple[Model, PassReport]:
    """``model`` as a dense ReLU chain with ``depth`` affine layers, the same function (exact identity layers)."""
    layers = relu_layers(model, "pad")
    padded, notes = pad_layers(layers, depth)
    out = model.output_name
    result = chain_model(padded, model, out, tuple(model.shapes()[out]))
    report = PassReport("pad")
    report.counts.update(layers_before=len(layers), layers_after=depth)
    for line in notes:
        report.add("inserted", line)
    return result, report
