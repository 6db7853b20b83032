"""Reading ONNX into the IR: the one place that knows what real exporters write (IR v3 files listing weights as
inputs, nodes out of order, ``Constant`` nodes, ``Shape→Gather→…→Reshape`` chains). ``load`` leaves only operators
of the operator table (``operators.OPERATORS``), each brought to one form by its entry (opset differences), or says
in one line what is wrong with the file.
"""

from __future__ import annotations

import graphlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import NnxformError, UnsupportedOperator
from ..fileio import read_bytes
from ..operators import OPERATORS
from .graph import Model, Node, _evaluator

_FLOAT_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}


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
