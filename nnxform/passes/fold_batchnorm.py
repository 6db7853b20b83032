"""fold-bn: remove every BatchNormalization, folding it into a neighbouring affine layer where exact.

Many verifiers reject BatchNormalization, and folding removes a layer. With ``s = γ/√(σ² + ε)``
and ``t = β − s⊙μ`` a BN is the per-channel affine map ``z ↦ s⊙z + t`` (DESIGN.md, "Batch-norm
folding"). In order of preference a BN is folded *backward* into the Conv or the Gemm / MatMul
(with an optional Add of a constant bias) producing its input, *forward* into the one Gemm /
MatMul (possibly behind a Flatten or Reshape) or unpadded Conv reading its output, or else
rewritten as an *explicit* diagonal Gemm or diagonal 1×1 Conv (one group, every attribute written:
the form every verifier reads, ``conv_form``; a depthwise Conv is what Marabou and pynever cannot read).
The source's own convolutions are written that way too (``explicit_convs``).
"""

from __future__ import annotations

import numpy as np

from ..affine import set_conv, set_gemm
from ..errors import NnxformError, UnsupportedOperator
from ..operators.forward import batchnorm_factor
from ..ir import Model, Node
from . import PassReport, register
from .conv_form import write_explicit
from .scale_shift import Shapes, fold_backward, fold_forward


@register("fold-bn", requires=frozenset(), ensures=frozenset())
def fold_bn(model: Model) -> tuple[Model, PassReport]:
    """Fold every BatchNormalization away and write every convolution the way every verifier reads it."""
    model, report = fold_batchnorm(model)
    written = PassReport("explicit-convs")
    write_explicit(model, written)  # the source's convolutions too: one group, every attribute written
    report.changes.extend(written.changes)  # the counts stay the BNs' (backward, forward, explicit)
    return model, report


def fold_batchnorm(model: Model) -> tuple[Model, PassReport]:
    """Replace every BatchNormalization by folding it into an affine neighbour (or an explicit affine node)."""
    model = model.copy()
    report = PassReport("fold-bn", counts={"backward": 0, "forward": 0, "explicit": 0})
    shapes = model.shapes()  # folding never changes the shape of a tensor that survives it
    for bn in [n for n in model.nodes if n.op == "BatchNormalization"]:
        name = bn.name  # an explicit rewrite renames the node
        s, t = _scale_shift(model, bn, shapes[bn.inputs[0]])
        for kind, fold in (("backward", fold_backward), ("forward", fold_forward), ("explicit", _make_explicit)):
            line = fold(model, bn, s, t, shapes)
            if line is not None:
                report.add(kind, f"BN '{name}' {line} ({kind})")
                break
    model.prune()
    return model, report


def _scale_shift(model: Model, bn: Node, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``s = γ/√(σ² + ε)`` and ``t = β − s⊙μ`` at the full input shape, so that BN(z) = s⊙z + t."""
    stats = bn.inputs[1:5]
    missing = [name for name in stats if name not in model.constants]
    if missing or len(shape) < 2:
        raise NnxformError(f"BatchNormalization '{bn.name}' needs constant statistics and an input of rank ≥ 2")
    gamma, beta, mean, var = (
        np.broadcast_to(model.constants[name].astype(np.float64).reshape(-1), shape[1:2]) for name in stats
    )
    s = batchnorm_factor(bn, gamma, var)
    per_channel = (1, -1) + (1,) * (len(shape) - 2)
    return tuple(np.broadcast_to(v.reshape(per_channel), shape) for v in (s, beta - s * mean))


def _make_explicit(model: Model, bn: Node, s: np.ndarray, t: np.ndarray, shapes: Shapes) -> str:
    """Rewrite the BN in place as a diagonal Gemm (2-D input) or a diagonal 1×1 Conv (3-D to 5-D input)."""
    rank = len(shapes[bn.inputs[0]])
    bn.name = model.fresh_name(f"{bn.name}_affine")
    s, t = s.reshape(s.shape[:2] + (-1,))[0, :, 0], t.reshape(t.shape[:2] + (-1,))[0, :, 0]  # per channel
    if rank == 2:
        set_gemm(model, bn, np.diag(s), t)
        return f"made an explicit diagonal Gemm '{bn.name}'"
    if rank > 5:
        raise UnsupportedOperator(f"BatchNormalization on a rank-{rank} tensor cannot be made a Conv")
    nd = rank - 2
    bn.op, bn.attrs = "Conv", {"kernel_shape": [1] * nd, "strides": [1] * nd, "dilations": [1] * nd, "pads": [0] * 2 * nd}
    set_conv(model, bn, np.diag(s).reshape(s.shape * 2 + (1,) * nd), t)
    return f"made an explicit diagonal 1x1 Conv '{bn.name}'"
