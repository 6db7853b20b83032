"""nnxform: transform ONNX neural networks for formal verification and exact compression."""

__version__ = "0.1.0"

from .ir import Model, Node, load  # noqa: E402

__all__ = ["Model", "Node", "load", "__version__"]
