"""nnxform: transform ONNX neural networks for formal verification and exact compression."""

from . import evaluate, ir, runtime
from .ir import Model, Node, load
from .version import __version__

# The IR computes shapes and runs onnxruntime through the layers above it; this is where they are handed in.
ir.use_evaluator(ir.Evaluator(evaluate.tensor_shapes, evaluate.batch_agnostic, runtime.constant_values))

__all__ = ["Model", "Node", "load", "__version__"]
