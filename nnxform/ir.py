"""The intermediate representation: one input, a topologically ordered list of nodes, numpy constants.

This module is the one place that knows ONNX's graph-level quirks. ``load`` reads what real
exporters write (IR v3 files listing weights as inputs, nodes out of order, ``Constant`` nodes,
``Shape→Gather→…→Reshape`` chains) and leaves only operators of the operator table
(``operators.OPERATORS``), each brought to one form by its entry (opset differences); ``Model.to_onnx``
writes plain opset-13 ONNX that verifiers read.

The IR imports nothing above it: tensor shapes (the numpy evaluator) and the values of a file's
input-independent part (onnxruntime) come from the layers above, handed in once by ``nnxform/__init__.py``
(``handoff.ir_evaluator``).
"""

from __future__ import annotations

import copy
import graphlib
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, SupportsIndex

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import handoff
from .errors import NnxformError, UnsupportedOperator
from .fileio import atomic_write_bytes, read_bytes
from .operators import EXPORT_OPSET, OPERATORS
from .version import __version__

EXPORT_IR_VERSION = 7
#: What one ONNX file can hold (protobuf's 2 GiB), less room for the graph itself.
MAX_ONNX_BYTES = 2**31 - 2**24
_FLOAT_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}


_edits = 0  # how many times any node list or tensor list changed: ``Model``'s index is rebuilt when it moves


def _edited() -> None:
    global _edits
    _edits += 1


class _Tracked(list):
    """A list that counts its changes (``_edits``), so ``Model`` knows when its tensor index is stale."""

    def __setitem__(self, key: Any, value: Any) -> None:
        _edited()
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        _edited()
        super().__delitem__(key)

    def __iadd__(self, values: Iterable[Any]) -> "_Tracked":  # type: ignore[override]
        _edited()
        return super().__iadd__(values)

    def __imul__(self, n: SupportsIndex) -> "_Tracked":  # type: ignore[override]
        _edited()
        return super().__imul__(n)

    def append(self, value: Any) -> None:
        _edited()
        super().append(value)

    def extend(self, values: Iterable[Any]) -> None:
        _edited()
        super().extend(values)

    def insert(self, index: SupportsIndex, value: Any) -> None:
        _edited()
        super().insert(index, value)

    def pop(self, index: SupportsIndex = -1) -> Any:
        _edited()
        return super().pop(index)

    def remove(self, value: Any) -> None:
        _edited()
        super().remove(value)

    def clear(self) -> None:
        _edited()
        super().clear()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        _edited()
        super().sort(*args, **kwargs)

    def reverse(self) -> None:
        _edited()
        super().reverse()


@dataclass
class Node:
    """One operator: ONNX op type, unique name, tensor names in and out, decoded attributes, operator domain."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    def __setattr__(self, key: str, value: Any) -> None:
        """Keep ``inputs``/``outputs`` tracked lists, so every rewiring invalidates the models' tensor index."""
        if key in ("inputs", "outputs"):
            if key in self.__dict__:  # a new node is in no model yet: only a rewiring counts
                _edited()
            value = _Tracked(value)
        object.__setattr__(self, key, value)


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
    # load(..., supported_only=False): node name -> why nnxform cannot handle it; such a model keeps
    # its nodes and opsets as read, runs in onnxruntime only, and is exported as read
    unsupported: dict[str, str] = field(default_factory=dict)
    # (edit count, tensor -> producer, tensor -> consumers), rebuilt when any node list changed since
    _index: tuple[int, dict[str, Node], dict[str, list[Node]]] | None = field(
        default=None, init=False, repr=False, compare=False)
    # facts a pass established of this graph (``passes.Fact``), each with the ``fingerprint`` of the graph then: a
    # mark whose fingerprint no longer matches (the graph was edited since) says nothing
    marks: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __setattr__(self, key: str, value: Any) -> None:
        """Keep ``nodes`` a tracked list, so adding, removing or replacing nodes invalidates the tensor index."""
        if key == "nodes":
            if key in self.__dict__:  # a new model has no index yet
                _edited()
            value = _Tracked(value)
        object.__setattr__(self, key, value)

    # --- queries ------------------------------------------------------------------------

    @property
    def output_name(self) -> str:
        if len(self.output_names) != 1:
            raise NnxformError(f"model has {len(self.output_names)} outputs; this command needs exactly one")
        return self.output_names[0]

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape, dtype=np.int64))

    def _tensor_index(self) -> tuple[dict[str, Node], dict[str, list[Node]]]:
        """Producer and consumers (in node order) of every tensor; rebuilt only after an edit of some node list."""
        if self._index is None or self._index[0] != _edits:
            producers: dict[str, Node] = {}
            consumers: dict[str, list[Node]] = {}
            for n in self.nodes:
                for t in n.outputs:
                    producers.setdefault(t, n)
                for t in dict.fromkeys(n.inputs):
                    consumers.setdefault(t, []).append(n)
            self._index = (_edits, producers, consumers)
        return self._index[1], self._index[2]

    def producer(self, tensor: str) -> Node | None:
        """The node computing ``tensor`` (None for the input, a constant, or an unknown name)."""
        return self._tensor_index()[0].get(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        """The nodes reading ``tensor``, in node order."""
        return list(self._tensor_index()[1].get(tensor, ()))

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
        """Shape of every tensor (ONNX shape, batch dimension included), from the evaluator."""
        return _evaluator().tensor_shapes(self)

    def fingerprint(self) -> str:
        """A digest of the graph (every field but ``source``, ``metadata`` and the caches ``_index`` and ``marks``):
        equal for two models whose graphs are equal, whatever edited them, so a pass's mark cannot outlive an edit."""
        digest = hashlib.blake2b(digest_size=16)
        for f in fields(self):
            if f.name not in _NOT_GRAPH:
                digest.update(f.name.encode())
                _feed(digest, getattr(self, f.name))
        return digest.hexdigest()

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
        for n in self.consumers(old):
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
                for n in self.consumers(src):
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
        """Plain ONNX (opset 13, IR 7): one input, weights as initializers, deterministic order.

        A symbolic batch dimension is kept only when the graph is batch-agnostic (``batch_agnostic``),
        so the file runs in onnxruntime on every shape it declares. A model with unsupported nodes
        (``load(..., supported_only=False)``) is written with its nodes and opsets as read, and its
        input shape as loaded.
        """
        raw = bool(self.unsupported)
        weights = sum(c.size * (np.dtype(self.dtype).itemsize if c.dtype.kind == "f" else c.itemsize)
                      for c in self.constants.values())
        if weights > MAX_ONNX_BYTES:
            raise NnxformError(f"the result would hold {weights / 2**30:.1f} GiB of weights, more than one ONNX file "
                               "can (2 GiB); a dense form of a convolutional network this size is not supported")
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(self.dtype))
        dims = list(self.input_dims or self.input_shape)
        if dims and isinstance(dims[0], str) and (raw or not self.batch_agnostic()):  # raw: shapes folded at batch 1
            dims[0] = self.input_shape[0]
        inp = helper.make_tensor_value_info(self.input_name, elem, dims)
        shapes = {} if raw else self.shapes()
        outs = []
        for name in self.output_names:
            oshape: list[int | str] | None = list(shapes[name]) if name in shapes else None
            if oshape and isinstance(dims[0], str):
                oshape[0] = dims[0]
            outs.append(helper.make_tensor_value_info(name, elem, oshape))
        inits, seen, nodes = [], set(), []
        for n in self.nodes:
            node_inputs, attrs = list(n.inputs), dict(n.attrs)
            export = None if raw else OPERATORS[n.op].export
            if export is not None:  # a form that differs in EXPORT_OPSET
                node_inputs, attrs, extra_inits = export(n)
                inits.extend(numpy_helper.from_array(v, k) for k, v in extra_inits.items())
            for t in node_inputs:
                if t in self.constants and t not in seen:
                    seen.add(t)
                    value = self.constants[t]
                    if np.issubdtype(value.dtype, np.floating) and not raw:
                        value = value.astype(self.dtype)
                    inits.append(numpy_helper.from_array(np.ascontiguousarray(value), t))
            if not raw:
                known = onnx.defs.get_schema(n.op, EXPORT_OPSET).attributes
                extra = sorted(set(attrs) - set(known))
                if extra:
                    raise UnsupportedOperator(f"{n.op} node '{n.name}' has attribute {extra[0]}, which opset {EXPORT_OPSET} lacks")
            nodes.append(helper.make_node(n.op, node_inputs, n.outputs, name=n.name, domain=n.domain or None, **attrs))
        graph = helper.make_graph(nodes, "nnxform", [inp], outs, initializer=inits)
        opsets = self.source["opsets"] if raw else {"": EXPORT_OPSET}
        opset_ids = [helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())]
        proto = helper.make_model(graph, opset_imports=opset_ids, producer_name="nnxform", producer_version=__version__,
                                  functions=self.source.get("functions", []) if raw else [])
        proto.ir_version = max(EXPORT_IR_VERSION, helper.find_min_ir_version_for(opset_ids, ignore_unknown=True)) if raw \
            else EXPORT_IR_VERSION
        for key in sorted(self.metadata):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, self.metadata[key]
        if not raw:
            onnx.checker.check_model(proto)
        return proto

    def batch_agnostic(self) -> bool:
        """True when the graph treats the batch dimension as a batch (what a symbolic batch declares), by the evaluator."""
        return _evaluator().batch_agnostic(self)

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


_NOT_GRAPH = frozenset({"source", "metadata", "_index", "marks"})


def _feed(digest: Any, value: Any) -> None:
    """Add ``value`` (arrays, nodes, containers, protos, scalars) to ``digest``, each part tagged with its type and
    length, so that different values never feed the same bytes."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = np.asarray(value)
        digest.update(f"array {value.dtype.str} {value.shape} ".encode())
        digest.update(value.tobytes() if value.dtype.kind not in "OUS" else repr(value.tolist()).encode())
    elif isinstance(value, Node):
        _feed(digest, [value.op, value.name, value.inputs, value.outputs, value.attrs, value.domain])
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)} ".encode())
        for k, v in value.items():
            _feed(digest, k)
            _feed(digest, v)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)} ".encode())
        for v in value:
            _feed(digest, v)
    else:
        raw = value.SerializeToString(deterministic=True) if hasattr(value, "SerializeToString") else \
            repr(value).encode()
        digest.update(f"{type(value).__name__} {len(raw)} ".encode())
        digest.update(raw)


@dataclass(frozen=True)
class Evaluator:
    """What the IR needs from the layers above it: tensor shapes and batch agnosticism (the numpy evaluator), and the
    values of the input-independent tensors of a file being loaded (onnxruntime)."""

    tensor_shapes: Callable[[Model], dict[str, tuple[int, ...]]]
    batch_agnostic: Callable[[Model], bool]
    constant_values: Callable[[Model, onnx.ModelProto, list[str]], dict[str, np.ndarray]]


_installed: Evaluator | None = None


def _evaluator() -> Evaluator:
    """The evaluator the package's front door hands in (``handoff``), built on first use."""
    global _installed
    if _installed is None:
        if handoff.ir_evaluator is None:
            raise RuntimeError("the IR has no evaluator: import nnxform, which hands it in")
        _installed = handoff.ir_evaluator()
    return _installed


# --- loading ------------------------------------------------------------------------------


def load(path: str | Path, supported_only: bool = True) -> Model:
    """Read an ONNX file into a Model, or raise NnxformError saying what is wrong with it.

    ``supported_only=False`` accepts operators nnxform cannot handle (for commands that only run the
    model in onnxruntime, or describe it): such nodes are kept as read and listed in ``unsupported``.
    """
    p = Path(path)
    data = read_bytes(p, "an ONNX file")
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises a bare DecodeError with a cryptic text
        raise NnxformError(f"{p}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node or not proto.graph.output:
        raise NnxformError(f"{p}: not an ONNX model (no graph nodes or outputs)")
    _load_external_data(proto, p)
    source = {"path": str(p), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        return from_proto(proto, source=source, supported_only=supported_only)
    except UnsupportedOperator as first_error:
        simplified = _onnxsim(proto)
        if simplified is None:
            raise
        try:
            return from_proto(simplified, source=source, supported_only=supported_only)
        except UnsupportedOperator:
            raise first_error from None


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read weights stored beside the model (``.onnx.data`` files of torch's dynamo exporter).

    Only files in the model's folder are read: a location that is absolute or climbs out of it
    (``..``) is refused, so a hostile model cannot make nnxform read other files.
    """
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    files = sorted({e.value for t in proto.graph.initializer if uses_external_data(t) for e in t.external_data
                    if e.key == "location"})
    for name in files:
        where = Path(name)
        if where.is_absolute() or ".." in where.parts or not name:
            raise NnxformError(f"{path}: its weights are said to be in '{name}', outside its folder; "
                               "refusing to read that (keep the weights file beside the model)")
        if not (path.parent / name).is_file():
            raise NnxformError(f"{path}: its weights are stored in '{name}', which is not beside it; copy it there")
    if files:
        try:
            load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NnxformError(f"{path}: cannot read its weights from {', '.join(files)}: {msg}") from None


def _onnxsim(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxsim's simplification (it removes some operators we do not handle), or None if it fails."""
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
    except Exception:
        return None
    return simplified if ok else None


def from_proto(proto: onnx.ModelProto, source: dict[str, Any] | None = None, supported_only: bool = True) -> Model:
    """Build a Model from an ONNX ModelProto (see ``load``)."""
    g = proto.graph
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
    opset = opsets.get("", 1)
    source = dict(source or {})
    source.update(opset=opset, ir_version=proto.ir_version, producer=f"{proto.producer_name} {proto.producer_version}".strip())
    where = source.get("path", "model")

    initializers = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    constants = dict(initializers)
    inputs = [i for i in g.input if i.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise NnxformError(f"{where}: has {len(inputs)} non-constant inputs ({names}); nnxform needs exactly one")
    inp = inputs[0]
    dims = _input_dims(inp, where)
    shape = tuple(1 if isinstance(d, str) else int(d) for d in dims)

    nodes: list[Node] = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        domain = "" if n.domain == "ai.onnx" else n.domain
        if domain and supported_only:
            raise UnsupportedOperator(f"{where}: operator {domain}.{n.op_type} (node '{name}') is not supported")
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        if n.op_type == "Constant" and not domain:
            constants[n.output[0]] = _constant_value(attrs, name)
            continue
        nodes.append(Node(n.op_type, name, list(n.input), list(n.output), attrs, domain))
    _unique_node_names(nodes)
    _single_assignment(nodes, set(constants) | {inp.name}, where)
    nodes = _toposort(nodes, set(constants) | {inp.name}, where)
    outputs = [o.name for o in g.output]
    produced = {t for n in nodes for t in n.outputs} | set(constants) | {inp.name}
    missing = [t for t in outputs if t not in produced]
    if missing:
        raise NnxformError(f"{where}: output '{missing[0]}' is not computed by any node")
    model = Model(
        nodes=nodes,
        constants=constants,
        input_name=inp.name,
        input_shape=shape,
        output_names=outputs,
        input_dims=tuple(dims),
        dtype=_FLOAT_TYPES[inp.type.tensor_type.elem_type],
        source=source,
    )
    _fold_static(model, proto)
    model.prune()  # nodes no output needs do not count
    unsupported = _unsupported_nodes(model, where, supported_only)
    if unsupported:  # kept as read, for onnxruntime: nothing is rewritten
        model.unsupported = unsupported
        model.source.update(opsets=opsets, functions=list(proto.functions))
    else:
        _normalise(model)
    model.prune()
    _check_constants(model, set(initializers), where)
    _check_divisors(model, where)
    shapes = model.shapes()  # fails early, with the node named, on what the evaluator cannot run
    if not model.unsupported:
        _check_nonempty(model, shapes, where)
    return model


def _input_dims(inp: onnx.ValueInfoProto, where: str) -> list[int | str]:
    """The declared dimensions of the network input: concrete and positive, only the batch may be symbolic."""
    ttype = inp.type.tensor_type
    if ttype.elem_type not in _FLOAT_TYPES:
        raise NnxformError(f"{where}: input '{inp.name}' is not float32 or float64")
    if not ttype.HasField("shape"):
        raise NnxformError(f"{where}: input '{inp.name}' has no declared shape; re-export the model with its input shape")
    dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "N") for d in ttype.shape.dim]
    for k, d in enumerate(dims):
        if isinstance(d, str) and k > 0:
            raise NnxformError(f"{where}: input dimension {k} is symbolic ('{d}'); only the batch dimension may be")
        if isinstance(d, int) and d <= 0:
            raise NnxformError(f"{where}: input '{inp.name}' has shape {dims}, with no values along dimension {k}; "
                               "re-export the model with its real input shape")
    if dims and not isinstance(dims[0], str) and len(dims) > 1 and dims[0] != 1:
        raise NnxformError(f"{where}: input batch dimension is {dims[0]}; nnxform needs 1 or symbolic")
    return dims


def _single_assignment(nodes: list[Node], given: set[str], where: str) -> None:
    """Every tensor is computed once, and never overwrites the input or a constant."""
    seen = set(given)
    for n in nodes:
        for t in n.outputs:
            if t and t in seen:
                raise NnxformError(f"{where}: tensor '{t}' is assigned twice (again by node '{n.name}'); not a valid ONNX graph")
            seen.add(t)


def _check_constants(model: Model, initializers: set[str], where: str) -> None:
    """Refuse weights that are empty or not finite: every bound over them would be meaningless.

    Constants read only by unsupported nodes (``load(..., supported_only=False)``) are onnxruntime's
    business: an empty ``roi`` of a Resize, or a ``-inf`` mask, is how those operators are written.
    """
    read = {t for n in model.nodes if n.name not in model.unsupported for t in n.inputs}
    for name, value in model.constants.items():
        if not np.issubdtype(value.dtype, np.floating) or name not in read:
            continue
        what = f"initializer '{name}'" if name in initializers else f"constant '{name}' (computed at load from the model's constants)"
        if value.size == 0:
            raise NnxformError(f"{where}: {what} is empty (shape {list(value.shape)}); remove the empty layer or re-export the model")
        bad = ~np.isfinite(value)
        if bad.any():
            kind = "NaN" if np.isnan(value).any() else "infinite values"
            raise NnxformError(f"{where}: {what} has {kind} ({int(bad.sum())} of {value.size} values); "
                               "nnxform needs finite weights: fix or re-export the model")


def _check_divisors(model: Model, where: str) -> None:
    """Refuse divisions by zero fixed in the weights: the model computes infinities for every input."""
    for n in model.nodes:
        if n.op == "Div" and n.inputs[1] in model.constants and np.any(model.constants[n.inputs[1]] == 0):
            raise NnxformError(f"{where}: Div node '{n.name}' divides by '{n.inputs[1]}', which has zeros; fix the model")
        if n.op == "BatchNormalization" and len(n.inputs) > 4 and n.inputs[4] in model.constants:
            if np.any(model.constants[n.inputs[4]].astype(np.float64) + n.attrs.get("epsilon", 1e-5) <= 0):
                raise NnxformError(f"{where}: BatchNormalization node '{n.name}' has variance + epsilon <= 0 "
                                   f"(in '{n.inputs[4]}'); fix the model")


def _check_nonempty(model: Model, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Refuse a layer that computes no values (a zero-width layer)."""
    for n in model.nodes:
        out = shapes[n.outputs[0]]
        if 0 in out:
            raise NnxformError(f"{where}: {n.op} node '{n.name}' computes an empty tensor (shape {list(out)}); "
                               "remove the empty layer or re-export the model")


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
    """Order nodes so every input is produced before use: round by round, each round every node whose inputs are
    all computed, in file order (so one file always gives one order, and one exported file)."""
    have = set(available) | {""}
    producer = {t: i for i, n in enumerate(nodes) for t in n.outputs}
    missing = sorted({t for n in nodes for t in n.inputs if t not in have and t not in producer})
    if missing:
        raise NnxformError(f"{where}: cannot order the graph: tensors {missing} are never produced")
    graph = graphlib.TopologicalSorter({i: {producer[t] for t in n.inputs if t not in have}
                                        for i, n in enumerate(nodes)})
    try:
        graph.prepare()
    except graphlib.CycleError:
        raise NnxformError(f"{where}: cannot order the graph: the graph has a cycle") from None
    ordered: list[Node] = []
    while graph.is_active():
        ready = sorted(graph.get_ready())
        ordered.extend(nodes[i] for i in ready)
        graph.done(*ready)
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
    wanted = [t for n in static_nodes for t in n.outputs if t and model.consumers(t) or t in model.output_names]
    values = _evaluator().constant_values(model, proto, wanted)
    for t in wanted:
        model.constants[t] = values[t]
    model.nodes = [n for n in model.nodes if n not in static_nodes]
    for t in model.output_names:
        if t in model.constants:
            raise NnxformError(f"{model.source.get('path', 'model')}: output '{t}' does not depend on the input")


def _unsupported_nodes(model: Model, where: str, supported_only: bool) -> dict[str, str]:
    """Why nnxform cannot evaluate a node exactly (operator, its form, or data where it needs a constant),
    per node name; with ``supported_only``, raise UnsupportedOperator on the first instead."""
    reasons = {}
    for n in model.nodes:
        reason = _unsupported_reason(model, n)
        if reason and supported_only:
            known = n.op in OPERATORS or n.op in _QUANTIZATION
            hint = "" if known else f"; supported: {', '.join(sorted(OPERATORS))}"
            raise UnsupportedOperator(f"{where}: {reason}{hint}")
        if reason:
            reasons[n.name] = reason
    return reasons


#: Quantisation operators: on constants (weight-only QDQ) ``_fold_static`` folds them; on data they are refused.
_QUANTIZATION = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                 "MatMulInteger", "ConvInteger")


def _unsupported_reason(model: Model, n: Node) -> str | None:
    """Why the evaluator cannot compute ``n`` exactly as onnxruntime does, or None when it can."""
    if n.domain:
        return f"operator {n.domain}.{n.op} (node '{n.name}') is not supported"
    if n.op in _QUANTIZATION:
        data = next(t for t in n.inputs if t and t not in model.constants)
        return (f"{n.op} node '{n.name}' acts on '{data}', which depends on the network input: activation "
                "quantisation is refused, because rounding activations is not piecewise linear, so the analyzers "
                "cannot bound it exactly (weight-only quantisation, DequantizeLinear of constant integer weights, "
                "is folded to float weights at load)")
    if n.op not in OPERATORS:
        return f"operator {n.op} (node '{n.name}') is not supported on data"
    used_extra = [t for t in n.outputs[1:] if t and (model.consumers(t) or t in model.output_names)]
    if used_extra:
        return f"{n.op} node '{n.name}' has its extra output '{used_extra[0]}' used; only the first output is supported"
    spec = OPERATORS[n.op]
    data = [k for k in spec.constant_inputs if k < len(n.inputs) and n.inputs[k] and n.inputs[k] not in model.constants]
    if data:
        return (f"{n.op} node '{n.name}' takes its input {data[0]} ('{n.inputs[data[0]]}') from the network input; "
                "only a constant is supported there")
    return next((r for r in (check(model, n) for check in spec.checks) if r), None)


def _normalise(model: Model) -> None:
    """Bring opset-dependent forms to one internal form (attributes vs. inputs, extra outputs)."""
    for n in model.nodes:
        n.outputs = n.outputs[:1]
        normalise = OPERATORS[n.op].normalise
        if normalise is not None:
            normalise(model, n)
