"""Convolutions and pools in the form every verifier reads: one group, the attributes some parser needs written out,
none that a parser refuses (issues 14 and 24; the rules are in ``nnxform/verifiers/``).

Marabou's parser asserts ``input_channels == filter_channels`` (so ``group = 1``), pynever reads ``groups``
rather than ``group``, auto_LiRPA's α-CROWN fails on grouped gradients. A grouped Conv is the group=1 Conv whose
weight is block-diagonal over the groups (zeros across them), the same function; a ConvTranspose likewise.

Written out (``operators.forms.EXPLICIT``, which ``needs_rewrite`` reads): on a Conv ``kernel_shape``,
``strides``, ``dilations`` and ``pads`` (pynever cannot default any of them, ERAN reads strides and kernel_shape
unconditionally); on a pool ``strides`` and ``pads`` (and ``dilations`` on a MaxPool; pynever and ERAN again); on a
ConvTranspose ``kernel_shape`` only (α,β-CROWN's onnx2pytorch reads it unconditionally, and no parser needs the
rest). Removed, as attributes α,β-CROWN's onnx2pytorch cannot extract (their defaults compute the same): an all-zero
``output_padding``, a MaxPool's ``storage_order``.
"""

from __future__ import annotations

import numpy as np

from ..ir import Model
from ..operators.forms import EXPLICIT, needs_rewrite, refused_default
from ..operators.forward import explicit_pads
from . import PassReport, register

@register("explicit-convs", requires=frozenset(), ensures=frozenset())
def explicit_convs(model: Model) -> tuple[Model, PassReport]:
    """Every grouped convolution as one block-diagonal group; convolution and pool attributes as verifiers read them."""
    model, report = model.copy(), PassReport("explicit-convs")
    write_explicit(model, report)
    return model, report


def write_explicit(model: Model, report: PassReport) -> None:
    """``explicit_convs`` in place, on a model the caller owns (``fold-bn``'s own copy)."""
    todo = [n for n in model.nodes if needs_rewrite(n)]
    shapes = model.shapes() if todo else {}
    for node in todo:
        group = int(node.attrs.get("group", 1))
        kernel = tuple(node.attrs.get("kernel_shape") or model.constants[node.inputs[1]].shape[2:])
        if group > 1:
            weight = model.constants[node.inputs[1]]
            node.inputs = [node.inputs[0], model.add_constant(f"{node.name}_W", _ungrouped(weight, group)),
                           *node.inputs[2:]]
            report.add("ungrouped", f"{node.op} '{node.name}': {group} groups made one (block-diagonal weight)")
        nd = len(kernel)
        attrs = {k: v for k, v in node.attrs.items() if k not in ("group", "auto_pad")}
        if refused_default(node):
            key = "output_padding" if node.op == "ConvTranspose" else "storage_order"
            del attrs[key]
            report.add("attributes", f"{node.op} '{node.name}': {key} left to its default (the same function)")
        explicit: dict[str, list[int]] = {}
        for key in (k for k in EXPLICIT[node.op] if k not in attrs):
            explicit[key] = list(kernel) if key == "kernel_shape" else [1] * nd if key in ("strides", "dilations") \
                else explicit_pads(node.attrs, shapes[node.inputs[0]][2:], kernel)
        node.attrs = {**explicit, **attrs}
        if explicit:
            report.add("attributes", f"{node.op} '{node.name}': {', '.join(sorted(explicit))} written out")


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
