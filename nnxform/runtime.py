"""Running models in onnxruntime: the independent reference every exactness check compares against."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from .errors import NnxformError
from .ir import Model

_CHUNK = 2048  # samples per batched run at most
#: What the float32 tensors of one batched run may take together (fewer samples per run on large CNNs).
_RUN_BYTES = 2**28


def session_options() -> ort.SessionOptions:
    """Deterministic, quiet, two-thread sessions (the machines here have two cores)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: a failed batched attempt is expected
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    return opts


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


class OnnxRunner:
    """An onnxruntime session on a Model's exported ONNX, evaluating many samples at once.

    Samples are stacked on the batch axis of a copy whose batch dimension is made symbolic, once
    that copy is seen to reproduce the one-sample runs on the first samples; graphs that hard-code
    the batch (a Reshape to [1, …]) fall back to one run per sample.
    """

    def __init__(self, model: Model):
        self.model = model
        proto = model.to_onnx()
        self.single = _session(proto)
        self.batched = _batch_variant(proto, model)
        self.checked = False
        self.chunk: int | None = None  # samples per batched run, sized from the tensors on first use

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """All outputs, flattened and concatenated per sample, for ``xs`` of shape ``(n, *input_shape)``."""
        m = self.model
        xs = np.asarray(xs, dtype=m.dtype).reshape((-1,) + tuple(m.input_shape))
        if self.batched is not None and not self.checked:
            head = xs[:2]
            try:
                same = np.array_equal(self._run_batched(head), self._run_single(head))
            except Exception:  # the graph hard-codes the batch dimension
                same = False
            self.batched = self.batched if same else None
            self.checked = True
        if self.batched is None:
            return self._run_single(xs)
        if self.chunk is None:
            self.chunk = points_fitting(_RUN_BYTES, 4 * numbers_per_point(m), _CHUNK)  # float32
        return np.vstack([self._run_batched(xs[i:i + self.chunk]) for i in range(0, len(xs), self.chunk)])

    def _run_single(self, xs: np.ndarray) -> np.ndarray:
        m = self.model
        return np.stack([np.concatenate([o.ravel() for o in self.single.run(m.output_names, {m.input_name: x})])
                         for x in xs]).reshape(len(xs), -1)

    def _run_batched(self, xs: np.ndarray) -> np.ndarray:
        m = self.model
        outs = self.batched.run(m.output_names, {m.input_name: xs.reshape((-1,) + tuple(m.input_shape[1:]))})
        return np.hstack([o.reshape(len(xs), -1) for o in outs])


def numbers_per_point(model: Model) -> int:
    """How many numbers the tensors of ``model`` take for one input point (their shapes without the batch axis)."""
    return sum(int(np.prod(shape[1:])) for shape in model.shapes().values())


def points_fitting(budget: int, per_point: int, most: int) -> int:
    """How many points of ``per_point`` bytes each fit ``budget`` bytes: 1 at least, ``most`` at most."""
    return int(np.clip(budget // max(per_point, 1), 1, most))


def _batch_variant(proto: onnx.ModelProto, model: Model) -> ort.InferenceSession | None:
    """A session on a copy of ``proto`` whose input's first dimension is symbolic, if it has one."""
    if len(model.input_shape) < 2 or model.input_shape[0] != 1:
        return None
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    for value in list(p.graph.input) + list(p.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "nnxform_batch"
    try:
        return _session(p)
    except Exception:
        return None


def onnxruntime_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of ``model``, from one onnxruntime run on a zero input (for models with
    nodes the numpy evaluator cannot run; see ``load(..., supported_only=False)``)."""
    proto = model.to_onnx()
    names = [t for n in model.nodes for t in n.outputs if t and t not in model.output_names]
    proto.graph.output.extend([onnx.ValueInfoProto(name=t) for t in names])
    names = list(model.output_names) + names
    try:
        outs = _session(proto).run(names, {model.input_name: np.zeros(model.input_shape, dtype=model.dtype)})
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NnxformError(f"{model.source.get('path', 'model')}: onnxruntime cannot run it: {msg}") from None
    shapes = {name: tuple(np.shape(o)) for name, o in zip(names, outs)}
    shapes.update({name: tuple(c.shape) for name, c in model.constants.items()})
    shapes[model.input_name] = tuple(model.input_shape)
    return shapes


def constant_values(model: Model, proto: onnx.ModelProto, names: list[str]) -> dict[str, np.ndarray]:
    """The values of tensors ``names`` of the file ``proto`` being loaded as ``model``, from one run on a zero input:
    how the loader folds the input-independent part (shape arithmetic, casts of weights), whatever operators it has."""
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
        outs = _session(p).run(names, {model.input_name: np.zeros(model.input_shape, dtype=model.dtype)})
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NnxformError(f"{model.source.get('path', 'model')}: onnxruntime cannot evaluate its constant parts: {msg}") from None
    return dict(zip(names, (np.asarray(o) for o in outs)))
