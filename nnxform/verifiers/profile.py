"""What a verifier's ONNX parser reads: ``Profile``, ``Blocker``, and the rule helpers the per-verifier modules share.

A rule looks at one node and returns why the parser refuses it, or silently reads another function, with the
nnxform command that removes the cause (None when no command does). Every profile names the parser files its
rules come from; each rule's docstring or comment names the function in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..ir import Model, Node
from ..layered import walk
from ..operators import CANONICAL_OPS, OPERATORS

CANON = "nnxform canon"
#: canonical operators canon still removes where it can: shape-only chains become one Flatten/Reshape, a Transpose
#: before Flatten→Gemm goes into the weights (passes/reshapes.py)
CANON_ABSORBS = frozenset({"Squeeze", "Unsqueeze", "Transpose"})
#: operators canon keeps as they are, but for the convolution attributes ``passes/conv_form.py`` writes: its
#: sub-passes fold BatchNormalization and constant Mul/Add into convolutions and Gemms, never these away
CANON_KEEPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool"} |
                        {op for op, spec in OPERATORS.items() if spec.activation is not None})

#: a rule's verdict on one node: (reason, fixing command or None), or None when the node passes
Verdict = Optional[tuple[str, Optional[str]]]
NodeCheck = Callable[[Model, Node], Verdict]


def chain_fix(verifier: str) -> str:
    """The command that rewrites a ReLU network as one chain for ``verifier`` (``canon --for``'s second step)."""
    return f"{CANON} --for {verifier}"


@dataclass(frozen=True)
class Blocker:
    """One thing that keeps a verifier from reading the model, and the command that removes it.

    ``structural`` marks the graph's shape (joins, fan-outs, the order of Relus), which ``canon --for`` may remove
    by writing a ReLU network as one chain; the other blockers are decided by the node alone.
    """

    node: str
    reason: str
    fix: Optional[str]
    structural: bool = False

    def text(self) -> str:
        """One line for ``nnxform info --for``."""
        return f"{self.reason}; " + (f"run `{self.fix}`" if self.fix else "no nnxform command removes it")


@dataclass(frozen=True)
class Profile:
    """What one verifier's ONNX parser reads: its operators, their attribute checks, and whole-graph checks."""

    name: str
    source: str  # the parser files the rules come from
    operators: dict[str, tuple[NodeCheck, ...]]
    graph_checks: tuple[Callable[[Model], list[Blocker]], ...] = field(default=())
    #: why an operator outside ``operators`` is refused (default: the parser has no such operator)
    missing: Callable[[Node], str] | None = None
    #: another loader of the same verifier, tried first, that reads ``model`` as it is (then nothing blocks it)
    first_loader: Callable[[Model], bool] | None = None
    #: the parser reads only written pads: ``auto_pad`` other than NOTSET, or a ConvTranspose's ``output_shape``, in
    #: the file is refused or ignored (nnxform's loader resolves both, so only the file shows them)
    explicit_pads: bool = False
    #: the verifier's command-line options a model needs that its default configuration lacks (each as arguments)
    options: Callable[[Model], list[list[str]]] | None = None

    def needs(self, model: Model) -> list[list[str]]:
        """The options ``model`` needs (``nnxform info --for`` and ``canon --for`` print them)."""
        return self.options(model) if self.options is not None else []

    def blockers(self, model: Model) -> list[Blocker]:
        """Everything in ``model`` this verifier's parser refuses or reads as another function (empty: it reads it)."""
        if self.first_loader is not None and self.first_loader(model):
            return []
        found = [b for check in self.graph_checks for b in check(model)]
        for n in model.nodes:
            if n.op not in self.operators or n.domain:
                removable = n.op not in CANONICAL_OPS or n.op in CANON_ABSORBS
                fix = CANON if removable and n.name not in model.unsupported else None
                why = self.missing(n) if self.missing and not n.domain else f"{self.name}'s parser has no {n.op}"
                found.append(Blocker(n.name, f"{n.op} node '{n.name}': {why}", fix))
                continue
            for check in self.operators[n.op]:
                verdict = check(model, n)
                if verdict is not None:
                    found.append(Blocker(n.name, f"{n.op} node '{n.name}' {verdict[0]}", verdict[1]))
        return found

    def final(self, model: Model) -> list[Blocker]:
        """The blockers decided by the graph alone: on nodes canon keeps, with no command that removes them.

        ``canon --for`` refuses on these before any rewriting (canon folds, merges and reshapes other nodes, so
        what it leaves of them is only known after it ran).
        """
        ops = {n.name: n.op for n in model.nodes}
        return [b for b in self.blockers(model)
                if b.fix is None and not b.structural and ops.get(b.node) in CANON_KEEPS]


# --- rule helpers ----------------------------------------------------------------------------------------


def ints(node: Node, key: str) -> list[int]:
    """An ints attribute as a list (empty when absent)."""
    return [int(v) for v in node.attrs.get(key, [])]


def symmetric(pads: list[int]) -> bool:
    """Begin pads equal to end pads (ONNX order: all begins, then all ends)."""
    return pads[:len(pads) // 2] == pads[len(pads) // 2:]


def auto_pad(node: Node) -> Verdict:
    """``auto_pad`` other than NOTSET, which every parser here ignores or refuses (the loader resolves it)."""
    value = node.attrs.get("auto_pad", "NOTSET")
    value = value.decode() if isinstance(value, bytes) else value
    return (f"has auto_pad={value}, which the parser ignores", CANON) if value != "NOTSET" else None


def constant_input(index: int, what: str, fix: Optional[str] = None) -> NodeCheck:
    """The parser reads input ``index`` from the model's constants."""
    def check(model: Model, node: Node) -> Verdict:
        if len(node.inputs) > index and node.inputs[index] and node.inputs[index] not in model.constants:
            return f"takes its {what} from the data, the parser reads it as a constant", fix
        return None
    return check


def one_constant(parser: str) -> NodeCheck:
    """A MatMul read as a dense layer: one operand comes from the model's constants."""
    def check(model: Model, node: Node) -> Verdict:
        if not any(t in model.constants for t in node.inputs):
            return f"multiplies two data tensors: {parser} reads one operand as a constant", None
        return None
    return check


def chain(model: Model) -> list[Blocker]:
    """Joins and fan-outs (``layered.walk``'s branches): the parser appends nodes one after another, whatever their
    wiring."""
    return single_output(model) + [Blocker(b.node.name, f"{b.text()} (the parser reads one chain)", None,
                                           structural=True) for b in walk(model).branches]


def single_output(model: Model) -> list[Blocker]:
    """The parser takes the graph's one output (canon refuses more)."""
    if len(model.output_names) != 1:
        return [Blocker("", f"{len(model.output_names)} outputs (the parser reads one)", None)]
    return []
