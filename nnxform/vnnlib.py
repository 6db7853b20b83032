"""VNN-LIB 1.0 input boxes: read the X_i bounds of a property file, write a box back as assertions.

The reader follows VNN-COMP usage: ``X_i``/``Y_j`` are the flattened network input/output,
top-level asserts are a conjunction, and an ``(or (and ...) ...)`` whose disjuncts bound X
gives one box per disjunct. Constraints that mention no X (the output property) are ignored.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .domain import FLOAT32_RULE, Box, outside_float32
from .errors import NnxformError
from .fileio import atomic_write_bytes, read_text

_TOKEN = re.compile(r"(\()|(\))|(;[^\n]*)|([^\s();]+)")
_OPEN, _CLOSE, _ATOM = 1, 2, 4
_NAME = re.compile(r"([XY])_(0|[1-9][0-9]*)")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: SMT-LIB housekeeping commands some generators emit; they do not constrain the box.
_IGNORED_COMMANDS = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"})
_FLIP = {"<=": ">=", ">=": "<=", "=": "="}

#: A network's input size and output size (None: the outputs are not compared), checked against the declarations.
Sizes = tuple[int, Optional[int]]


class _List(list):
    """A parenthesised s-expression that remembers its offset in the text (for error messages)."""

    __slots__ = ("pos",)


class _Conj:
    """A conjunction of bounds on single inputs: the X part of one disjunct."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: dict[int, float] | None = None, hi: dict[int, float] | None = None) -> None:
        self.lo = lo if lo is not None else {}
        self.hi = hi if hi is not None else {}

    def add(self, i: int, op: str, v: float) -> None:
        if op != "<=":
            self.lo[i] = max(self.lo.get(i, -math.inf), v)
        if op != ">=":
            self.hi[i] = min(self.hi.get(i, math.inf), v)

    def meet(self, other: "_Conj") -> "_Conj":
        out = _Conj(dict(self.lo), dict(self.hi))
        for i, v in other.lo.items():
            out.add(i, ">=", v)
        for i, v in other.hi.items():
            out.add(i, "<=", v)
        return out

    def key(self) -> tuple:
        return tuple(sorted(self.lo.items())), tuple(sorted(self.hi.items()))


def _unique(conjs: list[_Conj]) -> list[_Conj]:
    seen: dict[tuple, _Conj] = {}
    for c in conjs:
        seen.setdefault(c.key(), c)
    return list(seen.values())


def _show(e: object, limit: int = 60) -> str:
    text = f"({' '.join(_show(x, limit) for x in e)})" if isinstance(e, list) else str(e)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mentions_x(e: object) -> bool:
    if isinstance(e, list):
        return any(_mentions_x(x) for x in e)
    return e.startswith("X_")


#: Most disjuncts a normalised output condition may have (a product of disjunctions grows fast).
MAX_DISJUNCTS = 10_000


class _Atom(_List):
    """A comparison in a disjunctive normal form: equal (and hashed) by its text, so repeats collapse."""

    __slots__ = ("text",)

    def __init__(self, e: _List) -> None:
        super().__init__(e)
        self.pos, self.text = getattr(e, "pos", None), _show(e, limit=10**9)

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Atom) and self.text == other.text


def _conjoin(left: list[tuple], right: list[tuple]) -> list[tuple]:
    """The disjunctive normal form of ``left ∧ right`` (each a list of conjunctions), without repeats."""
    out = list(dict.fromkeys(tuple(dict.fromkeys(a + b)) for a in left for b in right))
    if len(out) > MAX_DISJUNCTS:
        raise NnxformError(f"the output condition has more than {MAX_DISJUNCTS} disjuncts in normal form")
    return out


class _Reader:
    """Turns the text of one VNN-LIB file into boxes; ``where`` names the file in errors, ``network`` (when given)
    the sizes the declarations must have (its input bounds must then also be within float32's range)."""

    def __init__(self, text: str, where: str, network: Sizes | None = None) -> None:
        self.text, self.where, self.network = text, where, network
        self.inputs: dict[str, int] = {}
        self.outputs: dict[str, int] = {}
        self.asserts: list[object] = []  # the top-level assertions, as read (``boxes`` fills it)

    def error(self, pos: int | None, msg: str) -> NnxformError:
        if pos is None:
            return NnxformError(f"{self.where}: {msg}")
        line = self.text.count("\n", 0, pos) + 1
        col = pos - self.text.rfind("\n", 0, pos)
        return NnxformError(f"{self.where}: line {line}, column {col}: {msg}")

    def parse(self) -> _List:
        root = _List()
        stack = [root]
        for m in _TOKEN.finditer(self.text):
            kind = m.lastindex
            if kind == _OPEN:
                node = _List()
                node.pos = m.start()
                stack[-1].append(node)
                stack.append(node)
            elif kind == _CLOSE:
                if len(stack) == 1:
                    raise self.error(m.start(), "malformed s-expression: unexpected ')'")
                stack.pop()
            elif kind == _ATOM:
                if len(stack) == 1:
                    raise self.error(m.start(), f"malformed s-expression: expected '(' but found '{m.group()}'")
                stack[-1].append(m.group())
        if len(stack) > 1:
            raise self.error(stack[-1].pos, "malformed s-expression: this '(' is never closed")
        return root

    def boxes(self) -> list[Box]:
        asserts: list[object] = []
        for cmd in self.parse():
            head = cmd[0] if cmd and isinstance(cmd[0], str) else None
            if head == "declare-const":
                self.declare(cmd)
            elif head == "assert" and len(cmd) == 2:
                asserts.append(cmd[1])
            elif head not in _IGNORED_COMMANDS:
                raise self.error(cmd.pos, f"unsupported command {_show(cmd)}")
        n = len(self.inputs)
        if n == 0:
            raise self.error(None, "declares no inputs (expected (declare-const X_0 Real) ...)")
        indices = set(self.inputs.values())
        missing = next((i for i in range(n) if i not in indices), None)
        if missing is not None:
            raise self.error(None, f"input indices must run X_0..X_{n - 1} without gaps, but X_{missing} is not declared")
        self.check_network()
        self.asserts = asserts
        conjs = self.conjunction(asserts)
        for a in asserts:
            self.check_declared(a)
        return [self.box(c, k, len(conjs)) for k, c in enumerate(conjs)]

    @property
    def n_outputs(self) -> int:
        """The outputs the declarations cover: Y_0 up to the highest Y_j declared."""
        return max(self.outputs.values(), default=-1) + 1

    def check_network(self) -> None:
        """Refuse declarations that do not fit ``network``: as many X_i as its input elements and, when Y_j are
        declared and its output size is given, as many Y_j as its output elements (else it is another network's
        property)."""
        if self.network is None:
            return
        (inputs, outputs), n, m = self.network, len(self.inputs), self.n_outputs
        if n != inputs:
            raise self.error(None, f"the property bounds {n} inputs (X_0..X_{n - 1}) but the network input has "
                                   f"{inputs}")
        if m and outputs is not None and m != outputs:
            raise self.error(None, f"the property declares {m} outputs (Y_0..Y_{m - 1}) but the network output "
                                   f"has {outputs}")

    def check_declared(self, e: object) -> None:
        """Refuse a variable that assertion ``e`` uses without declaring it (a number or an operator is no variable)."""
        if not isinstance(e, list):
            return
        for k, x in enumerate(e):
            if isinstance(x, list):
                self.check_declared(x)
            elif k and (x[0].isalpha() or x[0] == "_") and x not in self.inputs and x not in self.outputs:
                raise self.error(e.pos, f"{_show(e)}: {x} is not declared; a property may use only the X_i and Y_j "
                                        "it declares")

    def declare(self, cmd: _List) -> None:
        if len(cmd) != 3 or not isinstance(cmd[1], str) or cmd[2] != "Real":
            raise self.error(cmd.pos, f"expected (declare-const NAME Real), got {_show(cmd)}")
        name = cmd[1]
        m = _NAME.fullmatch(name)
        if m is None:
            raise self.error(cmd.pos, f"declares '{name}'; VNN-LIB names inputs X_i and outputs Y_j")
        if m.group(1) == "X":
            if name in self.inputs:
                raise self.error(cmd.pos, f"{name} is declared twice")
            self.inputs[name] = int(m.group(2))
        else:
            self.outputs[name] = int(m.group(2))

    def cases(self) -> list[tuple[Box, list[tuple[str, ...]]]]:
        """The property as cases, after ``boxes``: per distinct input box, the output condition that goes with it
        (disjuncts of conjunctions of comparisons, as text)."""
        return [(box, list(dict.fromkeys(tuple(a.text for a in c) for c in dnf))) for box, dnf in self.atom_cases()]

    def atom_cases(self) -> list[tuple[Box, list[tuple["_Atom", ...]]]]:
        """``cases`` with the comparisons as s-expressions. The assertions are expanded to disjunctive normal
        form; each conjunction's input bounds make its box, its other comparisons its output conjunction."""
        cases: dict[tuple, tuple[Box, list[tuple[_Atom, ...]]]] = {}
        expanded = [self.dnf(a) for a in self.asserts]
        conjunctions = [tuple(dict.fromkeys(atom for d in expanded if len(d) == 1 for atom in d[0]))]  # plain ones at once
        for d in expanded:
            if len(d) > 1:
                conjunctions = _conjoin(conjunctions, d)
        for k, atoms in enumerate(conjunctions):
            inputs = [a for a in atoms if _mentions_x(a)]
            c = self.conjunction(inputs)[0]
            box = self.box(c, k, len(conjunctions))
            entry = cases.setdefault(c.key(), (box, []))
            entry[1].append(tuple(a for a in atoms if not _mentions_x(a)))
        return [(box, list(dict.fromkeys(dnf))) for box, dnf in cases.values()]

    def region(self, atoms: tuple["_Atom", ...], n_outputs: int) -> "Region":
        """One output conjunction as rows ``coef @ Y <= bound``."""
        coef, bound, strict = np.zeros((len(atoms), n_outputs)), np.zeros(len(atoms)), np.zeros(len(atoms), bool)
        for r, (op, a, b) in enumerate(atoms):
            (ca, ka), (cb, kb) = self.linear(a, atoms[r].pos, n_outputs), self.linear(b, atoms[r].pos, n_outputs)
            if op in (">=", ">"):
                (ca, ka), (cb, kb) = (cb, kb), (ca, ka)
            elif op == "=":
                raise self.error(atoms[r].pos, f"{_show(atoms[r])}: equalities on outputs are not supported; "
                                               "write the two inequalities")
            coef[r], bound[r], strict[r] = ca - cb, kb - ka, op in ("<", ">")
        return Region(coef, bound, strict)

    def linear(self, e: object, pos: int | None, n_outputs: int) -> tuple[np.ndarray, float]:
        """``e`` (Y_j, numbers, +, -, * by a number) as coefficients on the outputs and a constant."""
        if isinstance(e, str):
            if e in self.outputs:
                j = self.outputs[e]
                if j >= n_outputs:
                    raise self.error(pos, f"{e} is beyond the network's outputs Y_0..Y_{n_outputs - 1}")
                c = np.zeros(n_outputs)
                c[j] = 1.0
                return c, 0.0
            value = self.number(e, pos)
            if value is None:
                raise self.error(pos, f"'{e}' is neither an output Y_j nor a number")
            return np.zeros(n_outputs), value
        head, args = (e[0], e[1:]) if e else (None, [])
        at = getattr(e, "pos", pos)
        parts = [self.linear(x, at, n_outputs) for x in args]
        if head == "+" and parts:
            return sum(c for c, _ in parts), sum(k for _, k in parts)
        if head == "-" and len(parts) == 1:
            return -parts[0][0], -parts[0][1]
        if head == "-" and parts:
            return parts[0][0] - sum(c for c, _ in parts[1:]), parts[0][1] - sum(k for _, k in parts[1:])
        if head == "*" and len(parts) == 2 and not (parts[0][0].any() and parts[1][0].any()):
            (ca, ka), (cb, kb) = parts
            return ca * kb + cb * ka, ka * kb
        raise self.error(at, f"{_show(e)}: only linear expressions of outputs (+, -, * by a number) are supported")

    def dnf(self, e: object) -> list[tuple]:
        """``e`` (and/or over comparisons) as a disjunction of conjunctions of comparisons (s-expressions)."""
        head = e[0] if isinstance(e, list) and e else None
        if head == "and":
            result: list[tuple] = [()]
            for part in e[1:]:
                result = _conjoin(result, self.dnf(part))
            return result
        if head == "or":
            return list(dict.fromkeys(c for part in e[1:] for c in self.dnf(part)))
        if head in ("<=", ">=", "<", ">", "=") and len(e) == 3:  # (``boxes`` refused inputs compared with outputs)
            return [(_Atom(e),)]
        raise self.error(getattr(e, "pos", None), f"{_show(e)}: expected and/or over comparisons")

    def conjunction(self, items: list[object]) -> list[_Conj]:
        base = _Conj()
        ors: list[list[_Conj]] = []
        todo = list(reversed(items))
        while todo:
            e = todo.pop()
            head = e[0] if isinstance(e, list) and e else None
            if head == "and":
                todo.extend(reversed(e[1:]))
            elif head == "or":
                ors.append(self.disjunction(e))
            elif head in _FLIP and len(e) == 3:
                bound = self.bound(e)
                if bound is not None:
                    base.add(*bound)
            elif _mentions_x(e):
                raise self.error(getattr(e, "pos", None),
                                 f"{_show(e)}: only box constraints on inputs are supported")
        result = [base]
        for disjuncts in ors:
            result = _unique([c.meet(d) for c in result for d in disjuncts])
        return result

    def disjunction(self, e: _List) -> list[_Conj]:
        parts = _unique([c for d in e[1:] for c in self.conjunction([d])])
        return parts if any(c.lo or c.hi for c in parts) else [_Conj()]

    def bound(self, e: _List) -> tuple[int, str, float] | None:
        op, a, b = e
        a_x, b_x = _mentions_x(a), _mentions_x(b)
        if not (a_x or b_x):
            return None
        if b_x and not a_x:
            op, a, b = _FLIP[op], b, a
        if not (a_x and b_x) and isinstance(a, str):
            if a not in self.inputs:
                raise self.error(e.pos, f"{_show(e)}: {a} is not declared")
            value = self.number(b, e.pos)
            if value is not None:
                return self.inputs[a], op, value
            if isinstance(b, str) and not _NAME.fullmatch(b):
                raise self.error(e.pos, f"{_show(e)}: '{b}' is not a number")
        raise self.error(e.pos, f"{_show(e)}: only box constraints on inputs are supported (X_i <= c, X_i >= c)")

    def number(self, e: object, pos: int) -> float | None:
        if isinstance(e, list):
            if len(e) != 2 or e[0] != "-":
                return None
            value = self.number(e[1], pos)
            return None if value is None else -value
        if not _NUMBER.fullmatch(e):
            return None
        value = float(e)
        if not math.isfinite(value):
            raise self.error(pos, f"number {e} is out of range")
        if self.network is not None and outside_float32(value) is not None:  # a bound of the network's input
            raise self.error(pos, f"number {e} is out of range for the network: each bound must be {FLOAT32_RULE}")
        return value

    def box(self, c: _Conj, k: int, count: int) -> Box:
        n = len(self.inputs)
        lo = np.array([c.lo.get(i, np.nan) for i in range(n)])
        hi = np.array([c.hi.get(i, np.nan) for i in range(n)])
        which = f" in input box {k + 1} of {count}" if count > 1 else ""
        for values, side in ((lo, "lower"), (hi, "upper")):
            unset = np.flatnonzero(np.isnan(values))
            if unset.size:
                raise self.error(None, f"X_{unset[0]} has no {side} bound{which}")
        empty = np.flatnonzero(lo > hi)
        if empty.size:
            i = int(empty[0])
            raise self.error(None, f"the input box is empty{which}: X_{i} >= {lo[i].item()!r} but X_{i} <= {hi[i].item()!r}")
        return Box(lo, hi)


def parse_boxes(text: str, where: str = "<vnnlib>", network: Sizes | None = None) -> list[Box]:
    """The distinct input boxes stated by VNN-LIB ``text``; ``where`` names it in error messages; declarations that
    do not fit ``network`` (when given) are refused."""
    return _Reader(text, where, network).boxes()


def read_boxes(path: str | os.PathLike[str], network: Sizes | None = None) -> list[Box]:
    """The distinct input boxes of a VNN-LIB file (one per disjunct of an ``or`` over inputs), for ``network``."""
    return parse_boxes(read_text(path, "VNN-LIB"), str(Path(path)), network)


def read_box(path: str | os.PathLike[str], index: int | None = None, network: Sizes | None = None) -> Box:
    """The input box of a VNN-LIB file, or its box number ``index`` (0-based) when an ``or`` over inputs states
    several: nnxform's passes take one box, not a union; declarations that do not fit ``network`` are refused."""
    boxes = read_boxes(path, network)
    if index is None:
        if len(boxes) != 1:
            raise NnxformError(f"{path}: the file has {len(boxes)} input boxes (an 'or' over inputs); nnxform takes "
                               f"one: pick it with --box K (K = 0..{len(boxes) - 1})")
        return boxes[0]
    if not 0 <= index < len(boxes):
        raise NnxformError(f"{path}: --box {index} does not exist: the file has {len(boxes)} input "
                           f"box{'es' if len(boxes) > 1 else ''} (K = 0..{len(boxes) - 1})")
    return boxes[index]


def normalize(text: str, where: str = "<vnnlib>", network: Sizes | None = None) -> list[str]:
    """A VNN-LIB property in the form the simplest parsers read (pynever's rejects a top-level ``(assert (>= Y_0 …))``),
    one file per input box: the declarations, one ``(assert (<= X_i v))``/``(assert (>= X_i v))`` per bound, and
    the output condition as one ``(assert (or (and …) …))``. The meaning is the same: the same boxes (numbers as
    exact float reprs) and the same disjuncts of the same comparisons. Declarations that do not fit ``network``
    (when given: the network the property is written for) are refused."""
    reader = _Reader(text, where, network)
    reader.boxes()
    cases = reader.cases()
    n_outputs = reader.n_outputs
    declarations = "".join(f"(declare-const X_{i} Real)\n" for i in range(len(reader.inputs)))
    declarations += "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_outputs))
    files = []
    for k, (box, dnf) in enumerate(cases):
        which = f", input box {k} of {len(cases)}" if len(cases) > 1 else ""
        condition = "" if dnf == [()] else "(assert (or\n" + "".join(f"    (and {' '.join(c)})\n" for c in dnf) + "))\n"
        bounds = "".join(f"(assert (>= X_{i} {lo!r}))\n(assert (<= X_{i} {hi!r}))\n"
                         for i, (lo, hi) in enumerate(zip(box.lower.tolist(), box.upper.tolist())))
        files.append(f"; normalised by nnxform from {Path(where).name}{which}\n\n{declarations}\n{bounds}\n{condition}")
    return files


@dataclass(frozen=True)
class Region:
    """One disjunct of a property's output condition: ``coef @ Y <= bound`` row by row (``strict`` rows: ``<``).
    A point whose output lies in a region is a counterexample; no rows: every output is."""

    coef: np.ndarray
    bound: np.ndarray
    strict: np.ndarray

    def contains(self, ys: np.ndarray) -> np.ndarray:
        """Per output row of ``ys`` ``(n, outputs)``: True when it lies in the region."""
        v = np.asarray(ys, np.float64) @ self.coef.T - self.bound
        return np.all(np.where(self.strict, v < 0, v <= 0), axis=1)


@dataclass(frozen=True)
class Case:
    """One input box of a property and the output regions that make a point of it a counterexample."""

    box: Box
    regions: list[Region]

    def violated(self, ys: np.ndarray) -> np.ndarray:
        """Per output row: True when it lies in some region (the property's unsafe set)."""
        return np.any([r.contains(ys) for r in self.regions], axis=0)


def read_specification(path: str | os.PathLike[str], network: tuple[int, int]) -> list[Case]:
    """A VNN-LIB property as the cases a verifier decides: per input box, the unsafe output regions. ``network``:
    its input and output sizes, which the declarations and every Y_j must fit."""
    reader = _Reader(read_text(path, "a VNN-LIB property"), str(path), network)
    reader.boxes()
    return [Case(box, [reader.region(c, network[1]) for c in dnf]) for box, dnf in reader.atom_cases()]


def read_property(text: str, where: str = "<vnnlib>") -> list[tuple[Box, list[tuple[str, ...]]]]:
    """A VNN-LIB property as cases: per input box, its output condition (disjuncts of comparisons, as text)."""
    reader = _Reader(text, where)
    reader.boxes()
    return reader.cases()


def write_box_assertions(box: Box) -> str:
    """VNN-LIB declarations and bounds of ``box`` (inputs only), numbers exact as Python float reprs."""
    lines = [f"(declare-const X_{i} Real)" for i in range(box.size)]
    lines.append("")
    for i, (lo, hi) in enumerate(zip(box.lower.tolist(), box.upper.tolist())):
        lines.append(f"(assert (>= X_{i} {lo!r}))")
        lines.append(f"(assert (<= X_{i} {hi!r}))")
    return "\n".join(lines) + "\n"


# --- output properties (writers) ------------------------------------------------------------


def _property(box: Box, n_outputs: int, disjuncts: list[str], comment: str) -> str:
    """A VNN-LIB file: ``comment``, the box on X, Y_0..Y_{n-1} declared, and ``(assert (or (and …) …))``."""
    head = "".join(f"; {line}\n" for line in comment.splitlines())
    outputs = "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_outputs))
    body = "".join(f"    (and {d})\n" for d in disjuncts)
    return f"{head}\n{write_box_assertions(box)}\n{outputs}\n(assert (or\n{body}))\n"


def _count(n_outputs: int, compared: int | None) -> int:
    k = n_outputs if compared is None else compared
    if not 1 <= k <= n_outputs:
        raise NnxformError(f"cannot constrain the first {k} outputs: the network has {n_outputs}")
    return k


def equivalence_property(box: Box, n_outputs: int, eps: float, compared: int | None = None) -> str:
    """The unsafe region ``|Y_j| >= eps`` for some ``j`` among the first ``compared`` outputs (differences).

    ``unsat`` proves ``|f_A − f_B| < eps`` on the box for a merged network.
    """
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise NnxformError(f"the equivalence threshold must be a positive number, got {eps!r}")
    k = _count(n_outputs, compared)
    disjuncts = [d for j in range(k) for d in (f"(>= Y_{j} {eps!r})", f"(<= Y_{j} {-eps!r})")]
    comment = (f"eps-equivalence, written by nnxform: unsat proves |Y_j| < {eps!r} for j < {k} on the box\n"
               "(for a merged network, |f_A(x) - f_B(x)| < eps)")
    return _property(box, n_outputs, disjuncts, comment)


def robustness_property(box: Box, n_outputs: int, label: int) -> str:
    """The unsafe region ``Y_j >= Y_label`` for some ``j != label``; ``unsat`` proves argmax stays ``label``."""
    if n_outputs < 2:
        raise NnxformError(f"robustness needs at least 2 outputs to compare; the network has {n_outputs}")
    if not 0 <= label < n_outputs:
        raise NnxformError(f"label {label} is not an output index (0..{n_outputs - 1})")
    disjuncts = [f"(>= Y_{j} Y_{label})" for j in range(n_outputs) if j != label]
    comment = f"local robustness, written by nnxform: unsat proves Y_{label} > Y_j for every j != {label} on the box"
    return _property(box, n_outputs, disjuncts, comment)


def bounds_property(box: Box, lower: np.ndarray | None, upper: np.ndarray | None) -> str:
    """The unsafe region ``Y_j <= lower_j`` or ``Y_j >= upper_j``; ``unsat`` proves ``lower < Y < upper`` on the box."""
    if lower is None and upper is None:
        raise NnxformError("a bounds property needs output lower or upper bounds (or both)")
    lo = None if lower is None else np.asarray(lower, np.float64).ravel()
    hi = None if upper is None else np.asarray(upper, np.float64).ravel()
    given = [v for v in (lo, hi) if v is not None]
    if any(v.size != given[0].size for v in given) or not all(np.all(np.isfinite(v)) for v in given):
        raise NnxformError("output bounds must be finite numbers, as many lower as upper")
    if lo is not None and hi is not None and np.any(lo >= hi):
        j = int(np.flatnonzero(lo >= hi)[0])
        raise NnxformError(f"the output bounds leave nothing at Y_{j}: lower {lo[j].item()!r} >= upper {hi[j].item()!r}")
    disjuncts = []
    for j in range(given[0].size):
        if lo is not None:
            disjuncts.append(f"(<= Y_{j} {lo[j].item()!r})")
        if hi is not None:
            disjuncts.append(f"(>= Y_{j} {hi[j].item()!r})")
    comment = "output bounds, written by nnxform: unsat proves lower < Y_j < upper for every j on the box"
    return _property(box, given[0].size, disjuncts, comment)


def instances_csv(csv_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str],
                  vnnlib_path: str | os.PathLike[str], timeout: float) -> tuple[str, str]:
    """The new content of a VNN-COMP ``instances.csv`` (the file, if any, with the line ``onnx,vnnlib,timeout``
    added or replacing its old one; paths relative to the CSV's folder), and that line."""
    text, lines = instances_csv_lines(csv_path, onnx_path, [vnnlib_path], timeout)
    return text, lines[0]


def instances_csv_lines(csv_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str],
                        vnnlib_paths: list[str | os.PathLike[str]], timeout: float) -> tuple[str, list[str]]:
    """``instances_csv`` for several properties of one network: the new content and one line per property."""
    csv = Path(csv_path)
    if not (math.isfinite(timeout) and timeout > 0):
        raise NnxformError(f"the timeout must be a positive number of seconds, got {timeout:g}")
    folder = csv.parent.resolve()
    onnx_rel = os.path.relpath(Path(onnx_path).resolve(), folder)
    number = int(timeout) if float(timeout).is_integer() else float(timeout)
    pairs = [(onnx_rel, os.path.relpath(Path(p).resolve(), folder)) for p in vnnlib_paths]
    lines = [f"{o},{v},{number!r}" for o, v in pairs]
    kept = []
    if csv.exists():
        kept = [ln for ln in read_text(csv, "an instances.csv").splitlines()
                if ln.strip() and tuple(ln.split(",")[:2]) not in pairs]
    return "\n".join(kept + lines) + "\n", lines


def write_instance(csv_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str],
                   vnnlib_path: str | os.PathLike[str], timeout: float) -> str:
    """Add (or replace) the line ``onnx,vnnlib,timeout`` in a VNN-COMP ``instances.csv`` at once; the line."""
    text, line = instances_csv(csv_path, onnx_path, vnnlib_path, timeout)
    atomic_write_bytes(Path(csv_path), text.encode())
    return line
