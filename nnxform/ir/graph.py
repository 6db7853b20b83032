"""The IR's graph: ``Node`` and ``Model`` (one input, topologically ordered nodes, numpy constants), their queries
and edits, and the evaluator the layers above hand in (``handoff.ir_evaluator``: tensor shapes, batch agnosticism,
the values of a file's input-independent part), since the IR imports nothing above it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, SupportsIndex

import numpy as np
import onnx

from .. import handoff
from ..errors import NnxformError
from ..fileio import atomic_write_bytes
from ..version import __version__



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
        """Plain ONNX (opset 13, IR 7): ``export.to_onnx``."""
        from .export import to_onnx

        return to_onnx(self)

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


