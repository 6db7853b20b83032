"""nnxform: transform ONNX neural networks for formal verification and exact compression.

Importing the package loads nothing heavy: ``Model``, ``Node`` and ``load`` (the IR's) load onnx on first use.
"""

from __future__ import annotations

from typing import Any

from . import handoff
from .version import __version__

__all__ = ["Model", "Node", "load", "__version__"]


def _ir_evaluator() -> Any:
    """The IR's evaluator: shapes and batch agnosticism from the numpy evaluator, constants from onnxruntime."""
    from . import interpreter, ir, runtime

    return ir.Evaluator(interpreter.tensor_shapes, interpreter.batch_agnostic, runtime.constant_values)


handoff.ir_evaluator = _ir_evaluator


def __getattr__(name: str) -> Any:
    """``Model``, ``Node`` and ``load`` from the IR, imported on first use."""
    if name in ("Model", "Node", "load"):
        from . import ir

        return getattr(ir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
