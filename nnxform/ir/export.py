"""Writing the IR as ONNX: plain opset-13 files that verifiers read, weights as initializers, deterministic."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import NnxformError, UnsupportedOperator
from ..operators import EXPORT_OPSET, OPERATORS
from ..version import __version__

if TYPE_CHECKING:  # graph's Model.to_onnx imports this module: no import back at run time
    from .graph import Model

EXPORT_IR_VERSION = 7
#: What one ONNX file can hold (protobuf's 2 GiB), less room for the graph itself.
MAX_ONNX_BYTES = 2**31 - 2**24


def to_onnx(model: Model) -> onnx.ModelProto:
    """Plain ONNX (opset 13, IR 7): one input, weights as initializers, deterministic order.

    A symbolic batch dimension is kept only when the graph is batch-agnostic (``batch_agnostic``),
    so the file runs in onnxruntime on every shape it declares. A model with unsupported nodes
    (``load(..., supported_only=False)``) is written with its nodes and opsets as read, and its
    input shape as loaded.
    """
    raw = bool(model.unsupported)
    weights = sum(c.size * (np.dtype(model.dtype).itemsize if c.dtype.kind == "f" else c.itemsize)
                  for c in model.constants.values())
    if weights > MAX_ONNX_BYTES:
        raise NnxformError(f"the result would hold {weights / 2**30:.1f} GiB of weights, more than one ONNX file "
                           "can (2 GiB); a dense form of a convolutional network this size is not supported")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    dims = list(model.input_dims or model.input_shape)
    if dims and isinstance(dims[0], str) and (raw or not model.batch_agnostic()):  # raw: shapes folded at batch 1
        dims[0] = model.input_shape[0]
    inp = helper.make_tensor_value_info(model.input_name, elem, dims)
    shapes = {} if raw else model.shapes()
    outs = []
    for name in model.output_names:
        oshape: list[int | str] | None = list(shapes[name]) if name in shapes else None
        if oshape and isinstance(dims[0], str):
            oshape[0] = dims[0]
        outs.append(helper.make_tensor_value_info(name, elem, oshape))
    inits, seen, nodes = [], set(), []
    for n in model.nodes:
        node_inputs, attrs = list(n.inputs), dict(n.attrs)
        export = None if raw else OPERATORS[n.op].export
        if export is not None:  # a form that differs in EXPORT_OPSET
            node_inputs, attrs, extra_inits = export(n)
            inits.extend(numpy_helper.from_array(v, k) for k, v in extra_inits.items())
        for t in node_inputs:
            if t in model.constants and t not in seen:
                seen.add(t)
                value = model.constants[t]
                if np.issubdtype(value.dtype, np.floating) and not raw:
                    value = value.astype(model.dtype)
                inits.append(numpy_helper.from_array(np.ascontiguousarray(value), t))
        if not raw:
            known = onnx.defs.get_schema(n.op, EXPORT_OPSET).attributes
            extra = sorted(set(attrs) - set(known))
            if extra:
                raise UnsupportedOperator(f"{n.op} node '{n.name}' has attribute {extra[0]}, which opset {EXPORT_OPSET} lacks")
        nodes.append(helper.make_node(n.op, node_inputs, n.outputs, name=n.name, domain=n.domain or None, **attrs))
    graph = helper.make_graph(nodes, "nnxform", [inp], outs, initializer=inits)
    opsets = model.source["opsets"] if raw else {"": EXPORT_OPSET}
    opset_ids = [helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())]
    proto = helper.make_model(graph, opset_imports=opset_ids, producer_name="nnxform", producer_version=__version__,
                              functions=model.source.get("functions", []) if raw else [])
    proto.ir_version = max(EXPORT_IR_VERSION, helper.find_min_ir_version_for(opset_ids, ignore_unknown=True)) if raw \
        else EXPORT_IR_VERSION
    for key in sorted(model.metadata):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, model.metadata[key]
    if not raw:
        onnx.checker.check_model(proto)
    return proto

