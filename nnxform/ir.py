"""The intermediate representation: one input, a topologically ordered list of nodes, numpy constants.

This module is the one place that knows ONNX's quirks. ``load`` reads what real exporters
write (IR v3 files listing weights as inputs, nodes out of order, ``Constant`` nodes,
``Shape→Gather→…→Reshape`` chains, opset differences) and leaves only operators that act on
data; ``Model.to_onnx`` writes plain opset-13 ONNX that verifiers read.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import __version__
from .errors import NnxformError, UnsupportedOperator
from .fileio import atomic_write_bytes

EXPORT_OPSET = 13
EXPORT_IR_VERSION = 7

#: Operators that may act on the network input; everything input-independent is folded at load.
DATA_OPS = frozenset(
    "Add Sub Mul Div Relu Sigmoid Tanh Identity Dropout Gemm MatMul Flatten Reshape Transpose "
    "Unsqueeze Squeeze Concat Conv MaxPool AveragePool BatchNormalization".split()
)
_FLOAT_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}


@dataclass
class Node:
    """One operator: ONNX op type, unique name, tensor names in and out, decoded attributes."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Model:
    """A network with exactly one input; shapes are concrete (a symbolic batch dimension is 1)."""

    nodes: list[Node]
    constants: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]
    output_names: list[str]
    input_dims: tuple[int | str, ...] = ()  # as declared, symbolic names kept for export
    dtype: type = np.float32
    source: dict[str, Any] = field(default_factory=dict)  # path, sha256, opset, producer of the file read
    metadata: dict[str, str] = field(default_factory=dict)

    # --- queries ------------------------------------------------------------------------

    @property
    def output_name(self) -> str:
        if len(self.output_names) != 1:
            raise NnxformError(f"model has {len(self.output_names)} outputs; this command needs exactly one")
        return self.output_names[0]

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape, dtype=np.int64))

    def producer(self, tensor: str) -> Node | None:
        return next((n for n in self.nodes if tensor in n.outputs), None)

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def is_graph_output(self, tensor: str) -> bool:
        return tensor in self.output_names

    def sole_consumer(self, tensor: str) -> Node | None:
        """The one node reading ``tensor``, if exactly one does and it is not a graph output."""
        users = self.consumers(tensor)
        if len(users) != 1 or self.is_graph_output(tensor) or users[0].inputs.count(tensor) != 1:
            return None
        return users[0]

    def data_inputs(self, node: Node) -> list[str]:
        """The inputs of ``node`` that depend on the network input (not constants)."""
        return [t for t in node.inputs if t and t not in self.constants]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every tensor (ONNX shape, batch dimension included)."""
        from .evaluate import tensor_shapes

        return tensor_shapes(self)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    # --- editing ------------------------------------------------------------------------

    def copy(self) -> "Model":
        return copy.deepcopy(self)

    def fresh_name(self, stem: str) -> str:
        """A tensor/node name not used yet, derived from ``stem`` (deterministic)."""
        used = set(self.constants) | {self.input_name} | {t for n in self.nodes for t in n.outputs}
        used |= {n.name for n in self.nodes}
        if stem not in used:
            return stem
        i = 1
        while f"{stem}_{i}" in used:
            i += 1
        return f"{stem}_{i}"

    def add_constant(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh_name(stem)
        self.constants[name] = np.asarray(value)
        return name

    def rename_uses(self, old: str, new: str) -> None:
        """Point every consumer (and the graph outputs) of tensor ``old`` at ``new``."""
        for n in self.nodes:
            n.inputs = [new if t == old else t for t in n.inputs]
        self.output_names = [new if t == old else t for t in self.output_names]

    def bypass(self, node: Node) -> None:
        """Remove a node whose output equals its (one) data input, rewiring its consumers.

        When the node's output is a graph output, the output keeps its name: the producer
        of the node's input is renamed instead (unless that is the graph input).
        """
        src, dst = self.data_inputs(node)[0], node.outputs[0]
        self.nodes.remove(node)
        if self.is_graph_output(dst) and src != self.input_name and not self.is_graph_output(src):
            prod = self.producer(src)
            if prod is not None:
                prod.outputs = [dst if t == src else t for t in prod.outputs]
                for n in self.nodes:
                    n.inputs = [dst if t == src else t for t in n.inputs]
                return
        self.rename_uses(dst, src)

    def prune(self) -> None:
        """Drop nodes that no output depends on and constants no node uses."""
        needed = set(self.output_names)
        keep = []
        for n in reversed(self.nodes):
            if any(t in needed for t in n.outputs):
                keep.append(n)
                needed.update(t for t in n.inputs if t)
        self.nodes = list(reversed(keep))
        self.constants = {k: v for k, v in self.constants.items() if k in needed}

    # --- export -------------------------------------------------------------------------

    def to_onnx(self) -> onnx.ModelProto:
        """Plain ONNX (opset 13, IR 7): one input, weights as initializers, deterministic order."""
        shapes = self.shapes()
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(self.dtype))
        dims = list(self.input_dims or self.input_shape)
        inp = helper.make_tensor_value_info(self.input_name, elem, dims)
        outs = []
        for name in self.output_names:
            oshape: list[int | str] = list(shapes[name])
            if isinstance(dims[0], str) and len(oshape) >= 2 and oshape[0] == 1:
                oshape[0] = dims[0]
            outs.append(helper.make_tensor_value_info(name, elem, oshape))
        inits, seen, nodes = [], set(), []
        for n in self.nodes:
            node_inputs = list(n.inputs)
            attrs = dict(n.attrs)
            if n.op in ("Unsqueeze", "Squeeze") and "axes" in attrs:  # opset 13: axes is an input
                axes_name = f"{n.name}_axes"
                inits.append(numpy_helper.from_array(np.asarray(attrs.pop("axes"), np.int64), axes_name))
                node_inputs.append(axes_name)
            for t in node_inputs:
                if t in self.constants and t not in seen:
                    seen.add(t)
                    value = self.constants[t]
                    if np.issubdtype(value.dtype, np.floating):
                        value = value.astype(self.dtype)
                    inits.append(numpy_helper.from_array(np.ascontiguousarray(value), t))
            known = onnx.defs.get_schema(n.op, EXPORT_OPSET).attributes
            extra = sorted(set(attrs) - set(known))
            if extra:
                raise UnsupportedOperator(f"{n.op} node '{n.name}' has attribute {extra[0]}, which opset {EXPORT_OPSET} lacks")
            nodes.append(helper.make_node(n.op, node_inputs, n.outputs, name=n.name, **attrs))
        graph = helper.make_graph(nodes, "nnxform", [inp], outs, initializer=inits)
        proto = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
            producer_name="nnxform",
            producer_version=__version__,
        )
        proto.ir_version = EXPORT_IR_VERSION
        for key in sorted(self.metadata):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, self.metadata[key]
        onnx.checker.check_model(proto)
        return proto

    def to_bytes(self) -> bytes:
        return self.to_onnx().SerializeToString(deterministic=True)

    def save(self, path: str | Path) -> None:
        """Write the model atomically (temporary file, then rename)."""
        atomic_write_bytes(Path(path), self.to_bytes())

    def with_provenance(self, pass_name: str, parameters: dict[str, Any]) -> "Model":
        """Record nnxform's version, the pass, its parameters and the input's sha256 in the metadata."""
        self.metadata.update(
            {
                "nnxform.version": __version__,
                "nnxform.pass": pass_name,
                "nnxform.parameters": json.dumps(parameters, sort_keys=True, default=str),
                "nnxform.source_sha256": self.source.get("sha256", ""),
            }
        )
        return self


# --- loading ------------------------------------------------------------------------------


def load(path: str | Path) -> Model:
    """Read an ONNX file into a Model, or raise NnxformError saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise NnxformError(f"{p}: no such file")
    if p.is_dir():
        raise NnxformError(f"{p}: is a directory, not an ONNX file")
    data = p.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises a bare DecodeError with a cryptic text
        raise NnxformError(f"{p}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node or not proto.graph.output:
        raise NnxformError(f"{p}: not an ONNX model (no graph nodes or outputs)")
    _load_external_data(proto, p)
    source = {"path": str(p), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        return from_proto(proto, source=source)
    except UnsupportedOperator as first_error:
        simplified = _onnxsim(proto)
        if simplified is None:
            raise
        try:
            return from_proto(simplified, source=source)
        except UnsupportedOperator:
            raise first_error from None


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read weights stored beside the model (``.onnx.data`` files of torch's dynamo exporter)."""
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    files = sorted({e.value for t in proto.graph.initializer if uses_external_data(t) for e in t.external_data
                    if e.key == "location"})
    for name in files:
        if not (path.parent / name).is_file():
            raise NnxformError(f"{path}: its weights are stored in '{name}', which is not beside it; copy it there")
    if files:
        load_external_data_for_model(proto, str(path.parent))


def _onnxsim(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxsim's simplification (it removes some operators we do not handle), or None if it fails."""
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
    except Exception:
        return None
    return simplified if ok else None


def from_proto(proto: onnx.ModelProto, source: dict[str, Any] | None = None) -> Model:
    """Build a Model from an ONNX ModelProto (see ``load``)."""
    g = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    source = dict(source or {})
    source.update(opset=opset, ir_version=proto.ir_version, producer=f"{proto.producer_name} {proto.producer_version}".strip())
    where = source.get("path", "model")

    constants = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    inputs = [i for i in g.input if i.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise NnxformError(f"{where}: has {len(inputs)} non-constant inputs ({names}); nnxform needs exactly one")
    inp = inputs[0]
    ttype = inp.type.tensor_type
    if ttype.elem_type not in _FLOAT_TYPES:
        raise NnxformError(f"{where}: input '{inp.name}' is not float32 or float64")
    dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "N") for d in ttype.shape.dim]
    for k, d in enumerate(dims):
        if isinstance(d, str) and k > 0:
            raise NnxformError(f"{where}: input dimension {k} is symbolic ('{d}'); only the batch dimension may be")
    if dims and not isinstance(dims[0], str) and len(dims) > 1 and dims[0] != 1:
        raise NnxformError(f"{where}: input batch dimension is {dims[0]}; nnxform needs 1 or symbolic")
    shape = tuple(1 if isinstance(d, str) else int(d) for d in dims)

    nodes: list[Node] = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.domain not in ("", "ai.onnx"):
            raise UnsupportedOperator(f"{where}: operator {n.domain}.{n.op_type} (node '{name}') is not supported")
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            constants[n.output[0]] = _constant_value(attrs, name)
            continue
        nodes.append(Node(n.op_type, name, list(n.input), list(n.output), attrs))
    _unique_node_names(nodes)
    nodes = _toposort(nodes, set(constants) | {inp.name}, where)
    model = Model(
        nodes=nodes,
        constants=constants,
        input_name=inp.name,
        input_shape=shape,
        output_names=[o.name for o in g.output],
        input_dims=tuple(dims),
        dtype=_FLOAT_TYPES[ttype.elem_type],
        source=source,
    )
    _fold_static(model, proto)
    _check_supported(model, where)
    _normalise(model, opset)
    model.prune()
    model.shapes()  # fails early, with the node named, on what the evaluator cannot run
    return model


def _attr_value(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list):
        return [x.decode() if isinstance(x, bytes) else x for x in v]
    return v


def _constant_value(attrs: dict[str, Any], name: str) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            v = attrs[key]
            if key.startswith("value_int"):
                return np.asarray(v, dtype=np.int64)
            return np.asarray(v, dtype=np.float32) if key != "value" else np.asarray(v)
    raise UnsupportedOperator(f"Constant node '{name}' has an unsupported value kind ({', '.join(attrs)})")


def _unique_node_names(nodes: list[Node]) -> None:
    seen: set[str] = set()
    for n in nodes:
        base, i = n.name, 1
        while n.name in seen:
            n.name = f"{base}_{i}"
            i += 1
        seen.add(n.name)


def _toposort(nodes: list[Node], available: set[str], where: str) -> list[Node]:
    """Order nodes so every input is produced before use (stable for already-sorted graphs)."""
    have = set(available) | {""}
    pending, ordered = list(nodes), []
    while pending:
        ready = [n for n in pending if all(t in have for t in n.inputs)]
        if not ready:
            missing = sorted({t for n in pending for t in n.inputs if t not in have and not any(t in m.outputs for m in pending)})
            what = f"tensors {missing} are never produced" if missing else "the graph has a cycle"
            raise NnxformError(f"{where}: cannot order the graph: {what}")
        for n in ready:
            pending.remove(n)
            ordered.append(n)
            have.update(n.outputs)
    return ordered


def _fold_static(model: Model, proto: onnx.ModelProto) -> None:
    """Replace every input-independent node (shape arithmetic, casts of weights, …) by constants.

    A tensor is static when it is a constant, the output of ``Shape``/``Size``, or computed from
    static tensors only. Their values come from one onnxruntime run of the original model on a
    zero input, so every operator onnxruntime knows may appear in such subgraphs.
    """
    static = set(model.constants)
    static_nodes = []
    for n in model.nodes:
        if n.op in ("Shape", "Size") or all(t in static or t == "" for t in n.inputs):
            static.update(n.outputs)
            static_nodes.append(n)
    if not static_nodes:
        return
    wanted = [t for n in static_nodes for t in n.outputs if t and any(t in m.inputs for m in model.nodes) or t in model.output_names]
    values = _onnxruntime_values(model, proto, wanted)
    for t in wanted:
        model.constants[t] = values[t]
    model.nodes = [n for n in model.nodes if n not in static_nodes]
    for t in model.output_names:
        if t in model.constants:
            raise NnxformError(f"{model.source.get('path', 'model')}: output '{t}' does not depend on the input")


def _onnxruntime_values(model: Model, proto: onnx.ModelProto, names: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    from .runtime import session_options

    p = onnx.ModelProto()
    p.CopyFrom(proto)
    del p.graph.output[:]
    p.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names])
    for d in p.graph.input:
        if d.name == model.input_name:
            for k, dim in enumerate(d.type.tensor_type.shape.dim):
                dim.Clear()
                dim.dim_value = model.input_shape[k]
    try:
        sess = ort.InferenceSession(p.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
        outs = sess.run(names, {model.input_name: np.zeros(model.input_shape, dtype=model.dtype)})
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NnxformError(f"{model.source.get('path', 'model')}: onnxruntime cannot evaluate its constant parts: {msg}") from None
    return dict(zip(names, (np.asarray(o) for o in outs)))


def _check_supported(model: Model, where: str) -> None:
    for n in model.nodes:
        if n.op not in DATA_OPS:
            raise UnsupportedOperator(
                f"{where}: operator {n.op} (node '{n.name}') is not supported on data; "
                f"supported: {', '.join(sorted(DATA_OPS))}"
            )
        used_extra = [t for t in n.outputs[1:] if t and (model.consumers(t) or t in model.output_names)]
        if used_extra:
            raise UnsupportedOperator(f"{where}: {n.op} node '{n.name}' has its extra output '{used_extra[0]}' used; only the first output is supported")
        if n.op in ("MaxPool", "AveragePool", "Conv") and len(n.attrs.get("kernel_shape", [1, 1])) not in (1, 2, 3):
            raise UnsupportedOperator(f"{where}: {n.op} node '{n.name}' has an unsupported kernel")


def _normalise(model: Model, opset: int) -> None:
    """Bring opset-dependent forms to one internal form (attributes vs. inputs, extra outputs)."""
    for n in model.nodes:
        n.outputs = n.outputs[:1]
        if n.op == "Reshape" and "shape" in n.attrs:  # opset < 5
            n.inputs = [n.inputs[0], model.add_constant(f"{n.name}_shape", np.asarray(n.attrs.pop("shape"), np.int64))]
        if n.op == "Reshape" and n.attrs.pop("allowzero", 0) and 0 in model.constants[n.inputs[1]]:  # opset >= 14
            raise UnsupportedOperator(f"Reshape node '{n.name}' uses allowzero=1 with a zero dimension")
        if n.op == "AveragePool" and any(d != 1 for d in n.attrs.pop("dilations", [])):  # opset >= 19
            raise UnsupportedOperator(f"AveragePool node '{n.name}' has dilations; not supported")
        if n.op in ("Unsqueeze", "Squeeze") and len(n.inputs) > 1:  # opset >= 13
            n.attrs["axes"] = [int(a) for a in model.constants[n.inputs[1]]]
            n.inputs = n.inputs[:1]
        if n.op == "Dropout":
            n.inputs = n.inputs[:1]
            n.attrs = {}
        if n.op == "BatchNormalization":
            if n.attrs.get("training_mode", 0) or not n.attrs.get("spatial", 1) or n.attrs.get("is_test", 1) == 0:
                raise UnsupportedOperator(
                    f"BatchNormalization node '{n.name}' is in training mode or not spatial; export the model for inference"
                )
            n.attrs = {"epsilon": float(n.attrs.get("epsilon", 1e-5))}
        if n.op == "Gemm":
            n.attrs.pop("broadcast", None)
        for key in ("Conv", "MaxPool", "AveragePool"):
            if n.op == key and n.attrs.get("auto_pad", "NOTSET") != "NOTSET":
                _explicit_auto_pad(model, n)


def _explicit_auto_pad(model: Model, node: Node) -> None:
    from .evaluate import explicit_pads

    shape = model.shapes()[node.inputs[0]]
    kernel = tuple(node.attrs.get("kernel_shape") or model.constants[node.inputs[1]].shape[2:])
    node.attrs["pads"] = explicit_pads(node.attrs, shape[2:], kernel)
    del node.attrs["auto_pad"]
