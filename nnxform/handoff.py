"""What a lower layer needs from a higher one, handed in by the package's front door (``nnxform/__init__.py``)
without either importing the other, and built only when first asked for (the command line starts without onnx)."""

from __future__ import annotations

from typing import Any, Callable, Optional

#: Builds the IR's ``Evaluator`` (tensor shapes from the numpy evaluator, constants from onnxruntime).
ir_evaluator: Optional[Callable[[], Any]] = None
