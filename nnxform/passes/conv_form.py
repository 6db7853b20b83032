"""Convolutions in the form every verifier reads: one group, every attribute written out (issue 14).

Marabou's parser asserts ``input_channels == filter_channels`` (so ``group = 1``), pynever reads
``groups`` rather than ``group`` and calls ``pad()`` with the ``pads`` attribute it expects to find,
auto_LiRPA's α-CROWN fails on grouped gradients. A grouped Conv is the group=1 Conv whose weight is
block-diagonal over the groups (zeros across them), the same function; a ConvTranspose likewise.
Every Conv/ConvTranspose then states ``kernel_shape``, ``strides``, ``dilations`` and ``pads``
(resolved from ``auto_pad``), and ``output_padding`` for a ConvTranspose.
"""

from __future__ import annotations

import numpy as np

from ..ir import Model
from ..operators.forward import explicit_pads
from . import PassReport, register

_CONVS = ("Conv", "ConvTranspose")


@register("explicit-convs")
def explicit_convs(model: Model) -> tuple[Model, PassReport]:
    """Every grouped convolution as one block-diagonal group; every convolution attribute explicit."""
    model, report = model.copy(), PassReport("explicit-convs")
    write_explicit(model, report)
    return model, report


def write_explicit(model: Model, report: PassReport) -> None:
    """``explicit_convs`` in place, on a model the caller owns (``fold-bn``'s own copy)."""
    todo = [n for n in model.nodes if n.op in _CONVS and _implicit(n)]
    shapes = model.shapes() if todo else {}
    for node in todo:
        weight = model.constants[node.inputs[1]]
        group = int(node.attrs.get("group", 1))
        if group > 1:
            node.inputs = [node.inputs[0], model.add_constant(f"{node.name}_W", _ungrouped(weight, group)),
                           *node.inputs[2:]]
            report.add("ungrouped", f"{node.op} '{node.name}': {group} groups made one (block-diagonal weight)")
        kernel, nd = tuple(weight.shape[2:]), weight.ndim - 2
        attrs = {k: v for k, v in node.attrs.items() if k not in ("group", "auto_pad")}
        if "pads" not in node.attrs or node.attrs.get("auto_pad", "NOTSET") != "NOTSET":  # the loader resolved
            attrs["pads"] = explicit_pads(node.attrs, shapes[node.inputs[0]][2:], kernel)  # ConvTranspose's auto_pad
        explicit = {"kernel_shape": list(kernel), "strides": [1] * nd, "dilations": [1] * nd}
        if node.op == "ConvTranspose":
            explicit["output_padding"] = [0] * nd
        added = sorted(k for k in [*explicit, "pads"] if k not in node.attrs)
        node.attrs = {**explicit, **attrs}
        if added:
            report.add("attributes", f"{node.op} '{node.name}': {', '.join(added)} written out")


def _implicit(node) -> bool:
    """True for a convolution with groups, an ``auto_pad``, or an attribute left to its default."""
    wanted = ("kernel_shape", "strides", "dilations", "pads") + (("output_padding",) if node.op == "ConvTranspose" else ())
    return int(node.attrs.get("group", 1)) > 1 or node.attrs.get("auto_pad", "NOTSET") != "NOTSET" or \
        any(k not in node.attrs for k in wanted)


def _ungrouped(weight: np.ndarray, group: int) -> np.ndarray:
    """The group=1 weight equal to a grouped one: block-diagonal over the groups.

    Conv weights are ``[out, in/group, k…]`` (output channel ``o`` reads input block ``o // (out/group)``);
    ConvTranspose weights are ``[in, out/group, k…]`` (input channel ``c`` writes output block ``c // (in/group)``).
    """
    rows, per_group = weight.shape[0], weight.shape[1]
    full = np.zeros((rows, per_group * group) + weight.shape[2:], dtype=weight.dtype)
    block = np.arange(rows) // (rows // group)
    columns = block[:, None] * per_group + np.arange(per_group)[None, :]
    full[np.arange(rows)[:, None], columns] = weight
    return full
