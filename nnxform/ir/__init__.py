"""The intermediate representation: one input, a topologically ordered list of nodes, numpy constants.

``graph``: ``Model`` and ``Node``, their queries and edits. ``loading``: ``load`` and ``from_proto``, the one place
that knows ONNX's graph-level quirks. ``export``: ``Model.to_onnx``, plain opset-13 ONNX that verifiers read.

The IR imports nothing above it: tensor shapes (the numpy evaluator) and the values of a file's
input-independent part (onnxruntime) come from the layers above, handed in once by ``nnxform/__init__.py``
(``handoff.ir_evaluator``).
"""

from .graph import Evaluator, Model, Node
from .loading import from_proto, load

__all__ = ["Evaluator", "Model", "Node", "from_proto", "load"]
