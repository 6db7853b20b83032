"""The layered form: a network as an ordered list of typed layers, each with its parameters as arrays.

This is the working form of every tool that edits a network's units — merge, pad, compress, pruning,
training. A layer is one ONNX operator applied to the previous layer's output (``Dense`` is a canonical
Gemm, ``Conv``/``ConvTranspose`` keep groups, strides, pads and dilations, ``BatchNorm`` is the
per-channel affine map of an inference BatchNormalization); what it computes, and its gradients with
respect to its input and to every parameter, come from the operator table (``operators.OPERATORS``), so
the layered form and the graph evaluator cannot disagree. Layers with units (Dense rows, conv output
channels) carry ``ids``, the original index of every unit, so "channel 7 of layer 3" stays named
through pruning and merging.

``from_model`` reads a chain (one data path from input to output) of canonical nodes; ``to_model``
writes the layers back as verifier-friendly ONNX (explicit conv attributes, byte-stable names).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar

import numpy as np

from .affine import gemm_weights
from .errors import NnxformError
from .ir import Model, Node
from .operators import OPERATORS, PIECEWISE_LINEAR
from .operators.forward import explicit_pads, transposed_pads


@dataclass(eq=False, kw_only=True)
class Layer:
    """One operator on the previous layer's output; ``PARAMS`` names its parameter arrays in ONNX input order."""

    name: str
    OP: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[str, ...]] = ()

    def attrs(self) -> dict[str, Any]:
        """The ONNX attributes the layer is written with (all explicit)."""
        return {}

    def params(self) -> dict[str, np.ndarray]:
        """The parameter arrays, by name, in the node's input order."""
        return {p: getattr(self, p) for p in self.PARAMS}

    def node(self) -> Node:
        """The ONNX node the layer evaluates as (built once: a layer's attributes are not changed in place)."""
        if "_node" not in self.__dict__:
            self.__dict__["_node"] = Node(self.OP, self.name, ["x", *self.PARAMS], ["y"], self.attrs())
        return self.__dict__["_node"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's output for ``x`` (samples on the first axis, then the ONNX shape)."""
        args = [x, *self.params().values()]
        return OPERATORS[self.OP].evaluate(self.node(), args, [True] + [False] * (len(args) - 1))

    def backward(self, x: np.ndarray, y: np.ndarray, g: np.ndarray, input_grad: bool = True,
                 param_grads: bool = True) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Gradients, given ``g`` on the output ``y`` of ``x``: on ``x`` per sample (None without ``input_grad``),
        and with ``param_grads`` on each trained parameter summed over samples (statistics such as a BatchNorm's
        running mean have none)."""
        spec = OPERATORS[self.OP]
        node, args = self.node(), [x, *self.params().values()]
        gx = spec.vjp(node, args, [True] + [False] * (len(args) - 1), y, g)[0] if input_grad else None
        if spec.param_vjp is None or not self.PARAMS or not param_grads:
            return gx, {}
        grads = spec.param_vjp(node, args, y, g)[1:]
        return gx, {p: gp for p, gp in zip(self.PARAMS, grads) if gp is not None}

    def replace(self, **changes: Any) -> "Layer":
        """A copy with ``changes`` (arrays are shared unless replaced)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{**values, **changes})


@dataclass(eq=False, kw_only=True)
class Units:
    """A mixin for layers whose output has units or channels: ``ids`` names each by its original index."""

    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = np.arange(self.units)

    @property
    def units(self) -> int:
        """Output units (Dense) or channels (convolutions)."""
        raise NotImplementedError


@dataclass(eq=False, kw_only=True)
class Dense(Units, Layer):
    """``y = x·Wᵀ + b`` on ``[1, in]`` rows: a canonical Gemm (``W [out, in]``, ``b [out]``)."""

    W: np.ndarray
    b: np.ndarray
    OP: ClassVar[str] = "Gemm"
    PARAMS: ClassVar[tuple[str, ...]] = ("W", "b")
    OUT_AXIS: ClassVar[int] = 0  # the axis of ``W`` over output units
    IN_AXIS: ClassVar[int] = 1  # the axis of ``W`` over input units (columns)

    def attrs(self) -> dict[str, Any]:
        return {"transB": 1}

    @property
    def units(self) -> int:
        return int(self.b.size)

    def is_identity(self) -> bool:
        """True for ``x ↦ x`` (square identity weights, zero bias): what padding inserts."""
        W, b = self.W, self.b
        return W.shape[0] == W.shape[1] and np.array_equal(W, np.eye(W.shape[0])) and not b.any()


@dataclass(eq=False, kw_only=True)
class _Kernel(Units, Layer):
    """What a convolution and a transposed convolution share: weights, bias and every window attribute."""

    W: np.ndarray
    b: np.ndarray
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    group: int = 1
    PARAMS: ClassVar[tuple[str, ...]] = ("W", "b")
    OUT_AXIS: ClassVar[int] = 0  # the axis of ``W`` over output channels (per group)
    IN_AXIS: ClassVar[int] = 1  # the axis of ``W`` over input channels (per group)

    def attrs(self) -> dict[str, Any]:
        return {"dilations": list(self.dilations), "group": self.group, "kernel_shape": list(self.W.shape[2:]),
                "pads": list(self.pads), "strides": list(self.strides)}


@dataclass(eq=False, kw_only=True)
class Conv(_Kernel):
    """A convolution (``W [out, in/group, *kernel]``) with every attribute explicit."""

    OP: ClassVar[str] = "Conv"

    @property
    def units(self) -> int:
        return int(self.W.shape[0])


@dataclass(eq=False, kw_only=True)
class ConvTranspose(_Kernel):
    """A transposed convolution (``W [in, out/group, *kernel]``) with every attribute explicit but a zero
    ``output_padding``."""

    output_padding: tuple[int, ...]
    OP: ClassVar[str] = "ConvTranspose"
    OUT_AXIS: ClassVar[int] = 1
    IN_AXIS: ClassVar[int] = 0

    def attrs(self) -> dict[str, Any]:
        """Its window attributes, and ``output_padding`` where it is not all zero: the default, left implicit as
        ``canon`` writes it (α,β-CROWN's onnx2pytorch refuses the attribute: ``passes/conv_form.py``)."""
        extra = {"output_padding": list(self.output_padding)} if any(self.output_padding) else {}
        return {**super().attrs(), **extra}

    @property
    def units(self) -> int:
        return int(self.W.shape[1] * self.group)


@dataclass(eq=False, kw_only=True)
class BatchNorm(Units, Layer):
    """An inference BatchNormalization: ``γ·(x − μ)/√(σ² + ε) + β`` per channel (γ, β trained; μ, σ² fixed)."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    epsilon: float = 1e-5
    OP: ClassVar[str] = "BatchNormalization"
    PARAMS: ClassVar[tuple[str, ...]] = ("gamma", "beta", "mean", "var")

    def attrs(self) -> dict[str, Any]:
        return {"epsilon": float(self.epsilon)}

    @property
    def units(self) -> int:
        return int(self.gamma.size)


@dataclass(eq=False, kw_only=True)
class _Pool(Layer):
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    ceil_mode: int = 0

    def attrs(self) -> dict[str, Any]:
        return {"ceil_mode": self.ceil_mode, "kernel_shape": list(self.kernel), "pads": list(self.pads),
                "strides": list(self.strides)}


@dataclass(eq=False, kw_only=True)
class AvgPool(_Pool):
    """AveragePool (``count_include_pad`` as ONNX defines it)."""

    count_include_pad: int = 0
    OP: ClassVar[str] = "AveragePool"

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), "count_include_pad": self.count_include_pad}


@dataclass(eq=False, kw_only=True)
class MaxPool(_Pool):
    """MaxPool over windows with dilations."""

    dilations: tuple[int, ...] = ()
    OP: ClassVar[str] = "MaxPool"

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), "dilations": list(self.dilations or (1,) * len(self.kernel))}


@dataclass(eq=False, kw_only=True)
class Flatten(Layer):
    """Flatten at ``axis`` (1: ``[1, C, H, W]`` to ``[1, C·H·W]``, channels first)."""

    axis: int = 1
    OP: ClassVar[str] = "Flatten"

    def attrs(self) -> dict[str, Any]:
        return {"axis": self.axis}


@dataclass(eq=False, kw_only=True)
class Relu(Layer):
    """max(x, 0) element-wise."""

    OP: ClassVar[str] = "Relu"


@dataclass(eq=False, kw_only=True)
class Sigmoid(Layer):
    OP: ClassVar[str] = "Sigmoid"


@dataclass(eq=False, kw_only=True)
class Tanh(Layer):
    OP: ClassVar[str] = "Tanh"


@dataclass(eq=False, kw_only=True)
class Fixed(Layer):
    """Any other canonical operator on one data input (Reshape, Transpose, Add or Mul of a constant, MatMul, …):
    evaluated and differentiated by the operator table; its constants are not trained."""

    op: str
    constants: list[np.ndarray | None]  # the node's inputs after the data input (None for an absent one)
    attributes: dict[str, Any] = field(default_factory=dict)
    data_index: int = 0  # which input of the node the data flows into

    def attrs(self) -> dict[str, Any]:
        return dict(self.attributes)

    def _args(self, x: np.ndarray) -> tuple[list, list[bool]]:
        args = list(self.constants)
        args.insert(self.data_index, x)
        return args, [i == self.data_index for i in range(len(args))]

    def node(self) -> Node:
        if "_node" not in self.__dict__:
            self.__dict__["_node"] = Node(self.op, self.name, [f"in{i}" for i in range(len(self.constants) + 1)],
                                          ["y"], self.attrs())
        return self.__dict__["_node"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        args, batched = self._args(x)
        return OPERATORS[self.op].evaluate(self.node(), args, batched)

    def backward(self, x: np.ndarray, y: np.ndarray, g: np.ndarray, input_grad: bool = True,
                 param_grads: bool = True) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        if not input_grad:
            return None, {}
        args, batched = self._args(x)
        return OPERATORS[self.op].vjp(self.node(), args, batched, y, g)[self.data_index], {}


@dataclass
class Size:
    """How big a network is: hidden ReLU units (and per ReLU node), non-zero weights, stored parameters."""

    neurons: int
    connections: int
    parameters: int
    widths: list[int]

    def totals(self) -> dict[str, int]:
        """The three counts without the per-layer widths."""
        return {"neurons": self.neurons, "connections": self.connections, "parameters": self.parameters}

    def to_json(self) -> dict[str, Any]:
        return {**self.totals(), "widths": self.widths}


@dataclass
class Gradients:
    """What ``Network.backward`` gives: the gradient on the input per sample and, per layer, on each parameter."""

    input: np.ndarray | None
    params: list[dict[str, np.ndarray]]


@dataclass(eq=False)
class Network:
    """Layers in order from the input (``input_name``, ONNX ``input_shape``) to the output ``output_name``."""

    layers: list[Layer]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    input_dims: tuple[int | str, ...] = ()
    dtype: type = np.float32
    source: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def like(cls, model: Model, layers: list[Layer], output: str | None = None) -> "Network":
        """``layers`` on ``model``'s input (name, shape, dtype, source), with its output name unless given."""
        return cls(layers, model.input_name, tuple(model.input_shape), output or model.output_name,
                   tuple(model.input_dims), model.dtype, dict(model.source))

    # --- evaluation -----------------------------------------------------------------------

    def forward(self, xs: np.ndarray, keep: bool = False) -> np.ndarray | list[np.ndarray]:
        """The output for samples ``xs`` (``(n, *input_shape)`` or flat ``(n, size)``); with ``keep``, every
        layer's input and the output (``len(layers) + 1`` arrays), as ``backward`` needs."""
        h = np.asarray(xs, dtype=np.float64).reshape((-1,) + tuple(self.input_shape))
        values = [h]
        for layer in self.layers:
            h = layer.forward(h)
            values.append(h)
        return values if keep else h

    def backward(self, xs: np.ndarray, grad_out: np.ndarray, input_grad: bool = True, param_grads: bool = True
                 ) -> tuple[np.ndarray, Gradients]:
        """The output and the gradients of ``Σ grad_out · output`` (``grad_out`` shaped like the output, or flat
        per sample) with respect to every parameter (unless not ``param_grads``: an attack needs none) and, with
        ``input_grad``, to the input (else None: training skips that product)."""
        values = self.forward(xs, keep=True)
        return values[-1], self.gradients(values, grad_out, input_grad, param_grads)

    def gradients(self, values: list[np.ndarray], grad_out: np.ndarray, input_grad: bool = True,
                  param_grads: bool = True) -> Gradients:
        """``backward``'s gradients from the values ``forward(xs, keep=True)`` gave (training has them already)."""
        g = np.asarray(grad_out, dtype=np.float64).reshape(values[-1].shape)
        params: list[dict[str, np.ndarray]] = [{} for _ in self.layers]
        for k in range(len(self.layers) - 1, -1, -1):
            g, params[k] = self.layers[k].backward(values[k], values[k + 1], g, input_grad or k > 0, param_grads)
        return Gradients(g, params)

    # --- what it holds ----------------------------------------------------------------------

    def size(self) -> Size:
        """Hidden ReLU units, non-zero weights and stored parameters (``model_size`` of the written model)."""
        return model_size(self.to_model())

    def shapes(self) -> list[tuple[int, ...]]:
        """The ONNX shape of the input and of every layer's output."""
        values = self.forward(np.zeros((1,) + tuple(self.input_shape)), keep=True)
        return [tuple(v.shape[1:]) for v in values]

    # --- ONNX -----------------------------------------------------------------------------------

    def to_model(self) -> Model:
        """The layers as a Model: one node per layer, parameters as constants named after their layer."""
        m = Model(nodes=[], constants={}, input_name=self.input_name, input_shape=tuple(self.input_shape),
                  output_names=[self.output_name], input_dims=tuple(self.input_dims), dtype=self.dtype,
                  source=dict(self.source))
        write_layers(m, self.input_name, self.layers, self.output_name)
        return m


def model_size(model: Model) -> Size:
    """The size of any model (DAGs too): units of the piecewise-linear activation nodes (ReLU, LeakyRelu: the table's
    ``PIECEWISE_LINEAR``) that are not outputs, non-zero weights of the
    weighted operators (Gemm, MatMul, Conv, ConvTranspose) and non-zero scales γ of a BatchNormalization (so that a
    BN and its diagonal 1×1 Conv form count the same), every floating-point constant element."""
    shapes = model.shapes()
    widths = [int(np.prod(shapes[n.outputs[0]])) for n in model.nodes
              if n.op in PIECEWISE_LINEAR and not model.is_graph_output(n.outputs[0])]
    weighted = [n for n in model.nodes if n.op == "BatchNormalization" or
                n.op in OPERATORS and OPERATORS[n.op].weighted and OPERATORS[n.op].neurons]
    connections = sum(int(np.count_nonzero(model.constants[n.inputs[1]])) for n in weighted
                      if len(n.inputs) > 1 and n.inputs[1] in model.constants)
    parameters = sum(int(c.size) for c in model.constants.values() if np.issubdtype(c.dtype, np.floating))
    return Size(sum(widths), connections, parameters, widths)


def write_layers(model: Model, tensor: str, layers: list[Layer], output: str) -> None:
    """Append ``layers`` to ``model``, reading ``tensor``; the last one writes ``output``."""
    for k, layer in enumerate(layers):
        name = model.fresh_name(layer.name)
        if isinstance(layer, Fixed):
            inputs = ["" if c is None else model.add_constant(f"{name}_c{i}", c) for i, c in enumerate(layer.constants)]
            inputs.insert(layer.data_index, tensor)
            op = layer.op
        else:
            inputs = [tensor] + [model.add_constant(f"{name}_{p}", np.asarray(a)) for p, a in layer.params().items()]
            op = layer.OP
        out = output if k == len(layers) - 1 else model.fresh_name(f"{name}_out")
        model.nodes.append(Node(op, name, inputs, [out], layer.attrs()))
        tensor = out


# --- dense ReLU chains -------------------------------------------------------------------------------

#: A dense ReLU chain: Dense layers with a ReLU after every one but the last (the working form of merge, pad,
#: compress, pruning and the difference analysis; ``chain_network`` makes it a Network).
Chain = list[Dense]


def chain_network(chain: Chain, like: Model, output_shape: tuple[int, ...] | None = None, output: str | None = None,
                  relu_names: list[str] | None = None, final_relu: bool = False,
                  activations: list[Layer] | None = None) -> Network:
    """``chain`` on ``like``'s input, writing ``output`` (default: ``like``'s output name); see ``chain_layers``."""
    layers = chain_layers(chain, len(like.input_shape), output_shape, relu_names, final_relu, activations)
    return Network.like(like, layers, output)


def chain_layers(chain: Chain, input_rank: int, output_shape: tuple[int, ...] | None = None,
                 relu_names: list[str] | None = None, final_relu: bool = False,
                 activations: list[Layer] | None = None) -> list[Layer]:
    """[Flatten →] Dense → Relu → … → Dense [→ Reshape to ``output_shape``] on an input of rank ``input_rank``.

    ``final_relu``: a last layer that is the identity (``pad`` adds it when the network's output is a ReLU) is
    written as a ReLU on the output instead. ``relu_names`` names the ReLU layers (default ``relu1``, …);
    ``activations`` replaces them (one per ReLU: e.g. ``activation_layer`` of a LeakyRelu).
    """
    chain = list(chain)
    if final_relu and len(chain) > 1 and chain[-1].is_identity():
        chain = chain[:-1]
    else:
        final_relu = False
    rank = input_rank
    layers: list[Layer] = []
    if rank == 1:
        layers.append(Fixed(name="flatten", op="Reshape", constants=[np.array([1, -1], np.int64)]))
    elif rank > 2:
        layers.append(Flatten(name="flatten", axis=1))
    names = relu_names or [f"relu{k}" for k in range(1, len(chain) + 1)]
    acts = activations or [Relu(name=name) for name in names]
    for k, dense in enumerate(chain):
        layers.append(dense)
        if k < len(chain) - 1 or final_relu:
            layers.append(acts[k])
    units = chain[-1].units
    if output_shape is not None and tuple(output_shape) != (1, units):
        layers.append(Fixed(name="unflatten", op="Reshape", constants=[np.array(output_shape, np.int64)]))
    return layers


def activation_layer(op: str, name: str, attrs: dict[str, Any]) -> Layer:
    """The layer of an element-wise activation node (``op`` with its attributes, e.g. LeakyRelu's alpha)."""
    return Relu(name=name) if op == "Relu" else Fixed(name=name, op=op, constants=[], attributes=dict(attrs))


def dense(W: np.ndarray, b: np.ndarray, name: str = "layer", ids: np.ndarray | None = None) -> Dense:
    """A Dense layer of float64 copies of ``W`` and ``b``."""
    return Dense(name=name, W=np.array(W, dtype=np.float64), b=np.array(b, dtype=np.float64).reshape(-1), ids=ids)


def aligned(layers: list[Layer], original: list[Layer], shapes: list[tuple[int, ...]] | None = None) -> list[Layer]:
    """``layers`` (a pruned or compressed copy of ``original``) at the widths of ``original``: every unit and
    channel at its original index (its ``ids``), removed ones as dead ones (zero weights and bias, zero slice of
    the next layer, a ConvTranspose's on its weight's first axis; BN γ = β = μ = 0, σ² = 1). The same function,
    paired unit by unit with ``original`` — what the difference analysis needs to bound the drift tightly.
    ``shapes`` (``original``'s, as ``Network.shapes``) is needed where a Flatten turns channels into blocks of
    columns. A grouped convolution, never pruned, is taken as it is, as is any other layer that reads every
    channel; each must read them all."""
    out: list[Layer] = []
    ids, width = None, None  # the channels or units flowing (their original indices; None: all of them), how many
    for layer, base in zip(layers, original):
        if isinstance(layer, Flatten) and ids is not None:
            block = int(np.prod(shapes[len(out)][2:]))
            ids, width = channel_columns(ids, block), width * block
        if isinstance(layer, WEIGHTED) and not is_grouped(layer):
            W, b = np.zeros_like(base.W, dtype=np.float64), np.zeros(base.units)
            at = [None, None]  # the places of its units and of the channels it reads, on their axes of W
            cols = np.arange(W.shape[layer.IN_AXIS]) if ids is None else ids
            at[layer.OUT_AXIS], at[layer.IN_AXIS] = layer.ids, cols
            W[np.ix_(*at)], b[layer.ids] = layer.W, layer.b
            layer, ids, width = layer.replace(W=W, b=b, ids=np.arange(base.units)), layer.ids, base.units
        elif isinstance(layer, BatchNorm):
            params = {p: np.full(base.units, 1.0 if p == "var" else 0.0) for p in layer.PARAMS}
            for p in layer.PARAMS:
                params[p][layer.ids] = getattr(layer, p)
            layer = layer.replace(ids=np.arange(base.units), **params)
        elif isinstance(layer, (Fixed, _Kernel)):  # a Reshape, an Add, …, or a grouped convolution
            if ids is not None and ids.size != width:
                raise NnxformError(f"layer '{layer.name}' reads removed channels; cannot lay them out at their places")
            ids = None
        out.append(layer)
    return out


# --- channels: naming and removing them ------------------------------------------------------------------------

def _layer_classes(base: type = Layer) -> list[type[Layer]]:
    """Every layer class written as one table operator (its ``OP``), in definition order."""
    out = []
    for cls in base.__subclasses__():
        out += ([cls] if cls.OP in OPERATORS else []) + _layer_classes(cls)
    return out


#: The layer class of each operator that has one (the rest are read as ``Fixed``).
LAYER_CLASSES: dict[str, type[Layer]] = {cls.OP: cls for cls in _layer_classes()}
#: Layers a channel passes through unchanged in number between a weighted layer and the next: the table's
#: ``channelwise`` operators but the curved activations (the tools following channels, pruning and compress, keep
#: to piecewise-linear networks), and Flatten, after which a channel is a block of columns (``channel_columns``).
CHANNELWISE = tuple(cls for op, cls in LAYER_CLASSES.items() if OPERATORS[op].channelwise and
                    (OPERATORS[op].activation is None or op in PIECEWISE_LINEAR)) + (Flatten,)
#: Layers that mix channels or units through a weight (the table's ``linear_layer``): a channel is removed from
#: ``W`` on their ``OUT_AXIS`` (its filter) and from the next one's ``IN_AXIS`` (what reads it).
WEIGHTED = tuple(cls for op, cls in LAYER_CLASSES.items() if OPERATORS[op].linear_layer)


@dataclass
class Site:
    """A prunable layer: ``layer`` (a Conv, ConvTranspose or hidden Dense) and its ``consumer``, the next weighted
    layer, with the channel-wise layers ``between`` them (ReLU, pools, BN, per-channel affine Convs, Flatten);
    ``block`` input columns of the consumer per channel (``H·W`` after a Flatten, else 1)."""

    layer: int
    consumer: int
    between: list[int]
    block: int


def is_channel_affine(layer: Layer) -> bool:
    """True for a 1×1 Conv with a diagonal weight matrix (no pads, stride 1): a per-channel affine map, the form
    canon gives a BatchNormalization it cannot fold (one after a ReLU, before a zero-padded Conv)."""
    if not isinstance(layer, Conv) or any(k != 1 for k in layer.W.shape[2:]) or any(layer.pads) or \
            any(s != 1 for s in layer.strides) or layer.W.shape[0] != layer.W.shape[1]:
        return False
    square = layer.W.reshape(layer.W.shape[:2])
    return not (square - np.diag(np.diag(square))).any()


def is_grouped(layer: Layer) -> bool:
    """True for a convolution of more than one group: its channels are tied to their groups, so none is removed."""
    return isinstance(layer, _Kernel) and layer.group != 1


def weighted_layers(layers: list[Layer]) -> list[int]:
    """Indices of the Conv, ConvTranspose and Dense layers that mix channels or units (not the per-channel affine
    Convs)."""
    return [k for k, layer in enumerate(layers) if isinstance(layer, WEIGHTED) and not is_channel_affine(layer)]


def sites(net: Network) -> list[Site]:
    """Every Conv, ConvTranspose and Dense whose output reaches another weighted layer through channel-wise layers,
    in order; a grouped convolution is neither a site nor a consumer (``is_grouped``)."""
    shapes = net.shapes()
    weighted = weighted_layers(net.layers)
    out = []
    for k, nxt in zip(weighted, weighted[1:]):
        if is_grouped(net.layers[k]) or is_grouped(net.layers[nxt]):
            continue
        between = list(range(k + 1, nxt))
        flat = [j for j in between if isinstance(net.layers[j], Flatten)]
        block = int(np.prod(shapes[flat[0]][2:])) if flat else 1
        out.append(Site(k, nxt, between, block))
    return out


def channel_columns(keep: np.ndarray, block: int) -> np.ndarray:
    """The consumer's input columns of channels ``keep`` (``block`` columns each, row-major NCHW)."""
    return (keep[:, None] * block + np.arange(block)).reshape(-1)


def filters(layer: Dense | _Kernel) -> np.ndarray:
    """Each output channel's (unit's) weights, flattened: ``[units, …]`` (a ConvTranspose's on its weight's second
    axis)."""
    return np.moveaxis(layer.W, layer.OUT_AXIS, 0).reshape(layer.units, -1)


def by_input_channel(consumer: Dense | _Kernel, channels: int) -> np.ndarray:
    """A view of ``consumer``'s weight with the ``channels`` it reads on the first axis: ``[channel, …]`` (a
    ConvTranspose's first axis already, a Conv's second, a Dense's block of columns per channel after a Flatten)."""
    W = consumer.W.reshape(consumer.W.shape[0], channels, -1) if isinstance(consumer, Dense) else consumer.W
    return np.moveaxis(W, consumer.IN_AXIS, 0)


def remove_channels(layers: list[Layer], site: Site, drop: np.ndarray) -> list[Layer]:
    """``layers`` without the channels at positions ``drop`` of ``site`` (filters, BN channels, the consumer's
    input slice; their ids go with them), each on the axis of its weight it is on (``OUT_AXIS``, ``IN_AXIS``)."""
    here = layers[site.layer]
    keep = np.setdiff1d(np.arange(here.units), drop)
    out = list(layers)
    out[site.layer] = here.replace(W=np.take(here.W, keep, axis=here.OUT_AXIS), b=here.b[keep], ids=here.ids[keep])
    for j in site.between:
        bn = out[j]
        if isinstance(bn, BatchNorm):
            out[j] = bn.replace(gamma=bn.gamma[keep], beta=bn.beta[keep], mean=bn.mean[keep], var=bn.var[keep],
                                ids=bn.ids[keep])
        elif isinstance(bn, Conv):  # a per-channel affine
            out[j] = bn.replace(W=bn.W[np.ix_(keep, keep)], b=bn.b[keep], ids=bn.ids[keep])
    consumer = out[site.consumer]
    out[site.consumer] = consumer.replace(W=np.take(consumer.W, channel_columns(keep, site.block),
                                                    axis=consumer.IN_AXIS))
    return out


# --- reading a Model ---------------------------------------------------------------------------------


def _floats(model: Model, node: Node, i: int) -> np.ndarray | None:
    t = node.inputs[i] if i < len(node.inputs) else ""
    return model.constants[t].astype(np.float64) if t else None


def _ints(values: Any, n: int, default: int) -> tuple[int, ...]:
    return tuple(int(v) for v in values) if values else (default,) * n


def _dense(model: Model, node: Node) -> Layer:
    W, b = gemm_weights(model, node)
    return Dense(name=node.name, W=W, b=b)


def _conv(model: Model, node: Node, shapes: dict[str, tuple[int, ...]]) -> Layer:
    W = _floats(model, node, 1)
    out = W.shape[0] if node.op == "Conv" else W.shape[1] * node.attrs.get("group", 1)
    b = _floats(model, node, 2)
    b = np.zeros(out) if b is None else b.reshape(-1)
    nd = W.ndim - 2
    spatial = tuple(shapes[model.data_inputs(node)[0]][-nd:])
    common = dict(name=node.name, W=W, b=b, strides=_ints(node.attrs.get("strides"), nd, 1),
                  dilations=_ints(node.attrs.get("dilations"), nd, 1), group=int(node.attrs.get("group", 1)))
    if node.op == "Conv":
        return Conv(pads=tuple(explicit_pads(node.attrs, spatial, tuple(W.shape[2:]))), **common)
    return ConvTranspose(pads=tuple(transposed_pads(node.attrs, spatial, tuple(W.shape[2:]))),
                         output_padding=_ints(node.attrs.get("output_padding"), nd, 0), **common)


def _pool(model: Model, node: Node, shapes: dict[str, tuple[int, ...]]) -> Layer:
    kernel = tuple(int(k) for k in node.attrs["kernel_shape"])
    nd = len(kernel)
    spatial = tuple(shapes[model.data_inputs(node)[0]][-nd:])
    common = dict(name=node.name, kernel=kernel, strides=_ints(node.attrs.get("strides"), nd, 1),
                  pads=tuple(explicit_pads(node.attrs, spatial, kernel)), ceil_mode=int(node.attrs.get("ceil_mode", 0)))
    if node.op == "MaxPool":
        return MaxPool(dilations=_ints(node.attrs.get("dilations"), nd, 1), **common)
    return AvgPool(count_include_pad=int(node.attrs.get("count_include_pad", 0)), **common)


def _batchnorm(model: Model, node: Node) -> Layer:
    gamma, beta, mean, var = (_floats(model, node, i).reshape(-1) for i in range(1, 5))
    return BatchNorm(name=node.name, gamma=gamma, beta=beta, mean=mean, var=var,
                     epsilon=float(node.attrs.get("epsilon", 1e-5)))


def _fixed(model: Model, node: Node, data: str) -> Layer:
    index = node.inputs.index(data)
    constants = [model.constants[t] if t else None for i, t in enumerate(node.inputs) if i != index]
    return Fixed(name=node.name, op=node.op, constants=constants, attributes=dict(node.attrs), data_index=index)


#: How each operator becomes a layer (the rest become ``Fixed``); given the model, the node and the tensor shapes.
_READERS: dict[str, Callable[[Model, Node, dict], Layer]] = {
    "Gemm": lambda m, n, s: _dense(m, n) if not n.attrs.get("transA", 0) else _fixed(m, n, m.data_inputs(n)[0]),
    "Conv": _conv,
    "ConvTranspose": _conv,
    "AveragePool": _pool,
    "MaxPool": _pool,
    "BatchNormalization": lambda m, n, s: _batchnorm(m, n),
    "Flatten": lambda m, n, s: Flatten(name=n.name, axis=int(n.attrs.get("axis", 1))),
    **{op: (lambda m, n, s, cls=cls: cls(name=n.name)) for op, cls in LAYER_CLASSES.items()
       if OPERATORS[op].activation is not None},  # an activation with a class of its own (LeakyRelu is Fixed)
}


@dataclass(frozen=True)
class Branch:
    """Where a graph stops being one chain: ``node`` adds up ``count`` data inputs (``join``), or its output feeds
    ``count`` nodes (a fan-out)."""

    node: Node
    count: int
    join: bool

    def text(self) -> str:
        """What it is, in words (``info`` and the verifier profiles add why it matters)."""
        n = self.node
        return f"{n.op} node '{n.name}' joins {self.count} branches" if self.join else \
            f"output of '{n.name}' feeds {self.count} nodes"


@dataclass
class Walk:
    """A graph read as chains (``walk``): its nodes cut into ``runs`` at every join, fan-out and graph output, and
    the ``branches`` (joins, fan-outs) in node order, a node's join before its fan-out."""

    runs: list[list[Node]]
    branches: list[Branch]
    _run_of: dict[int, int]

    def run(self, node: Node) -> list[Node]:
        """The run holding ``node``, from its first node to its last."""
        return self.runs[self._run_of[id(node)]]


def walk(model: Model) -> Walk:
    """The one walk over a graph as a chain of layers: every node continues the run of the node before it when it
    reads that node's output alone and is the only node reading it (not a graph output); ``from_model``, compress's
    dense tail, the verifier profiles and ``info`` all read a network's chains from it."""
    runs: list[list[Node]] = []
    run_of: dict[int, int] = {}
    branches: list[Branch] = []
    for node in model.nodes:
        data = model.data_inputs(node)
        if len(data) > 1:
            branches.append(Branch(node, len(data), True))
        fanout = len(model.consumers(node.outputs[0]))
        if fanout > 1:
            branches.append(Branch(node, fanout, False))
        before = model.producer(data[0]) if len(data) == 1 else None
        if before is not None and data[0] == before.outputs[0] and model.sole_consumer(data[0]) is node:
            run_of[id(node)] = run_of[id(before)]
            runs[run_of[id(node)]].append(node)
        else:
            run_of[id(node)] = len(runs)
            runs.append([node])
    return Walk(runs, branches, run_of)


def from_model(model: Model, command: str = "the layered form") -> Network:
    """``model`` as layers, if its nodes form one chain from the input to the output (one run of ``walk``, or runs
    joined where a graph output is read on); else a one-line error naming the node that branches (``command``
    names the caller)."""
    if model.unsupported:
        node = next(iter(model.unsupported))
        raise NnxformError(f"{command}: node '{node}' is not supported ({model.unsupported[node]})")
    out = model.output_name
    shapes = model.shapes()
    chains = walk(model)
    layers: list[Layer] = []
    tensor = model.input_name
    while tensor != out:
        users = model.consumers(tensor)
        if len(users) != 1:
            raise NnxformError(f"{command} needs one chain of layers; tensor '{tensor}' is read by {len(users)} nodes "
                               f"({', '.join(repr(u.name) for u in users)})" if users else
                               f"{command}: tensor '{tensor}' leads nowhere")
        data = model.data_inputs(users[0])
        if len(data) != 1:
            raise NnxformError(f"{command} needs one chain of layers; '{users[0].name}' adds up {len(data)} branches "
                               "(a skip connection)")
        for node in chains.run(users[0]):  # each node reads the one before it: the checks above hold for them
            reader = _READERS.get(node.op)
            layers.append(reader(model, node, shapes) if reader else _fixed(model, node, tensor))
            tensor = node.outputs[0]
    if len(layers) != len(model.nodes):
        stray = next(n.name for n in model.nodes if n.name not in {layer.name for layer in layers})
        raise NnxformError(f"{command} needs one chain of layers; node '{stray}' is off the path to the output")
    return Network.like(model, layers)
