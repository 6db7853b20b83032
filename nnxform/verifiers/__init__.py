"""Which verifiers read a model: per-verifier profiles taken from each verifier's own ONNX parser, one module each.

Every rule names the parser file it comes from (a repository path; the maraboupy one is the file the 2.0.0 wheel
installs). ``readability`` is ``nnxform info --for``; ``Profile.final`` is what ``canon --for`` refuses on before
any rewriting (``workflows.prepare_for`` runs the commands that remove the rest, each checked in onnxruntime).
"""

from __future__ import annotations

import re

import onnx

from ..errors import NnxformError
from ..ir import Model, from_proto
from .abcrown import ABCROWN
from .auto_lirpa import AUTO_LIRPA
from .eran import ERAN
from .marabou import MARABOU
from .nnenum import NNENUM
from .nnv import NNV
from .profile import CANON, Blocker, Profile
from .pynever import PYNEVER

#: ``nnxform info --for NAME`` and ``nnxform canon --for NAME``
PROFILES: dict[str, Profile] = {"marabou": MARABOU, "nnenum": NNENUM, "pynever": PYNEVER, "abcrown": ABCROWN,
                                "auto_lirpa": AUTO_LIRPA, "nnv": NNV, "eran": ERAN}

__all__ = ["Blocker", "PROFILES", "Profile", "file_blockers", "options_text", "profile", "readability", "written"]


def profile(verifier: str) -> Profile:
    """The profile named ``verifier``, or a one-line error naming the choices."""
    if verifier not in PROFILES:
        raise NnxformError(f"unknown verifier '{verifier}'; choose one of {', '.join(PROFILES)}")
    return PROFILES[verifier]


def file_blockers(path: str, chosen: Profile) -> list[Blocker]:
    """What the file at ``path`` states that its loaded form no longer shows: ``auto_pad`` other than NOTSET and a
    ConvTranspose's ``output_shape`` (resolved into pads on loading), for a parser that reads only written pads."""
    if not chosen.explicit_pads:
        return []
    found = []
    for n in onnx.load(path, load_external_data=False).graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        value = attrs.get("auto_pad", b"NOTSET")
        value = value.decode() if isinstance(value, bytes) else value
        written = [f"auto_pad={value}"] if value != "NOTSET" else []
        written += ["output_shape"] if n.op_type == "ConvTranspose" and "output_shape" in attrs else []
        if written:
            found.append(Blocker(n.name, f"{n.op_type} node '{n.name}' has {' and '.join(written)} in the file: "
                                         f"{chosen.name}'s parser reads only written pads", CANON))
    return found


def readability(model: Model, verifier: str, path: str | None = None) -> dict[str, object]:
    """A JSON-ready verdict: whether ``verifier`` reads ``model`` (loaded from the file at ``path``, when given) and,
    if not, what blocks it and what fixes it."""
    chosen = profile(verifier)
    blockers = (file_blockers(path, chosen) if path else []) + chosen.blockers(model)
    return {
        "verifier": verifier,
        "parser": chosen.source,
        "readable": not blockers,
        "blockers": [{"node": b.node, "reason": b.reason, "fix": b.fix, "text": b.text()} for b in blockers],
        "options": options_text(chosen.needs(model)),
    }


def options_text(options: list[list[str]]) -> str:
    """Command-line options as one string to paste into a shell ('' for none): an argument with spaces or quotes in
    double quotes."""
    return " ".join(arg if re.fullmatch(r"[\w./=-]+", arg) else '"' + arg.replace('"', '\\"') + '"'
                    for option in options for arg in option)


def written(model: Model) -> Model:
    """``model`` as its ONNX file reads back (opset and IR version as nnxform writes them), for the profile checks."""
    return from_proto(model.to_onnx(), source={"path": "the result"}, supported_only=False)
