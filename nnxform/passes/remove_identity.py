"""Remove nodes that compute the identity at inference time: Identity and Dropout."""

from __future__ import annotations

from ..ir import Model
from . import PassReport, register


@register("remove-identity", requires=frozenset(), ensures=frozenset())
def remove_identity(model: Model) -> tuple[Model, PassReport]:
    """Bypass every Identity and Dropout node (Dropout is the identity for inference)."""
    model = model.copy()
    report = PassReport("remove-identity")
    for node in [n for n in model.nodes if n.op in ("Identity", "Dropout")]:
        if node.inputs[0] in model.constants:
            continue
        model.bypass(node)
        report.add("removed", f"{node.op} '{node.name}' removed")
    model.prune()
    return model, report
