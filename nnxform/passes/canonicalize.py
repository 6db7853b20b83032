"""``canon``: rewrite a model into the verifier-friendly form (see DESIGN.md, "Shape of the code").

The result has one input and one output, and no BatchNormalization, Sub, Div, Identity or
Dropout (``Constant``, ``Shape`` and ``Gather`` are already folded by the loader): dense layers are
canonical Gemm, input normalisation is folded into the first affine layer where exact, and
consecutive affine layers are merged. The sub-passes run until a round changes nothing, neither in its report
nor in the graph's fingerprint; the result is then marked canonical (``passes.CANONICAL``), so the passes and
tools requiring canonical input do not canonicalise it again.
"""

from __future__ import annotations

from ..errors import NnxformError
from ..ir import Model
from ..operators import CANONICAL_OPS
from . import CANONICAL, PassReport, register
from .conv_form import explicit_convs
from .elementwise import fold_elementwise, rewrite_sub_div
from .fold_batchnorm import fold_batchnorm
from .gemm import canonical_gemm, merge_affine
from .remove_identity import remove_identity
from .reshapes import absorb_transpose, simplify_reshapes

_STEPS = (remove_identity, rewrite_sub_div, simplify_reshapes, absorb_transpose, canonical_gemm,
          fold_batchnorm, fold_elementwise, merge_affine, explicit_convs)
_MAX_ROUNDS = 10


@register("canon", requires=frozenset(), ensures=frozenset({CANONICAL}))
def canonicalize(model: Model) -> tuple[Model, PassReport]:
    """Run the canonicalising sub-passes to a fixed point."""
    model.output_name  # exactly one output, or a clear error
    report = PassReport("canon")
    settled = model.fingerprint()
    for _ in range(_MAX_ROUNDS):
        before, start = len(report.changes), settled
        for step in _STEPS:
            model, sub = step(model)
            report.extend(sub)
        settled = model.fingerprint()
        if len(report.changes) == before and settled == start:
            break
    else:
        raise RuntimeError(f"canon did not settle in {_MAX_ROUNDS} rounds; please report this network")
    left = sorted({n.op for n in model.nodes} - CANONICAL_OPS)
    if left:
        raise NnxformError(f"canon could not remove {', '.join(left)}; please report this network")
    CANONICAL.mark(model, settled)
    return model, report
