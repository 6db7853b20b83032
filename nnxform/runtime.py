"""Running models in onnxruntime: the independent reference every exactness check compares against."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .ir import Model


def session_options() -> ort.SessionOptions:
    """Deterministic, quiet, two-thread sessions (the machines here have two cores)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    return opts


class OnnxRunner:
    """An onnxruntime session on a Model's exported bytes, evaluating many samples at once."""

    def __init__(self, model: Model):
        self.model = model
        self.session = ort.InferenceSession(model.to_bytes(), session_options(), providers=["CPUExecutionProvider"])
        self.batched = _batch_free(model)

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """All outputs, flattened and concatenated per sample, for ``xs`` of shape ``(n, *input_shape)``."""
        m = self.model
        xs = np.asarray(xs, dtype=m.dtype).reshape((-1,) + tuple(m.input_shape))
        name = m.input_name
        if self.batched:
            outs = self.session.run(m.output_names, {name: xs.reshape((-1,) + tuple(m.input_shape[1:]))})
            return np.hstack([o.reshape(len(xs), -1) for o in outs])
        return np.stack([np.concatenate([o.ravel() for o in self.session.run(m.output_names, {name: x})]) for x in xs])


def _batch_free(model: Model) -> bool:
    """True when the exported graph runs unchanged on a stacked batch (symbolic batch, no Reshape)."""
    dims = model.input_dims or model.input_shape
    return len(dims) >= 2 and isinstance(dims[0], str) and not any(n.op in ("Reshape", "Transpose", "Squeeze", "Unsqueeze") for n in model.nodes)
