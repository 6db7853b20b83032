"""VNN-LIB input-box reader and writer."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.vnnlib import parse_boxes, read_box, read_boxes, write_box_assertions

VNNLIB = Path(__file__).resolve().parent.parent / "models" / "vnnlib"


def declare(n_x: int, n_y: int = 1) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_x)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_y))


def write(tmp_path: Path, text: str, name: str = "p.vnnlib") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(NnxformError) as info:
        read_boxes(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("path", sorted(VNNLIB.glob("*.vnnlib")), ids=lambda p: p.name)
def test_bundled_files_give_one_box(path: Path) -> None:
    assert len(read_boxes(path)) == 1
    assert read_box(path).size > 0


@pytest.mark.parametrize("name, lower, upper", [
    ("acasxu_prop_1.vnnlib", [0.6, -0.5, -0.5, 0.45, -0.5], [0.679857769, 0.5, 0.5, 0.5, -0.45]),
    ("acasxu_prop_3.vnnlib", [-0.303531156, -0.009549297, 0.493380324, 0.3, 0.3],
     [-0.298552812, 0.009549297, 0.5, 0.5, 0.5]),
    ("test_small.vnnlib", [-1.0], [1.0]),
])
def test_exact_values(name: str, lower: list[float], upper: list[float]) -> None:
    box = read_box(VNNLIB / name)
    assert box.lower.tolist() == lower
    assert box.upper.tolist() == upper


def test_mnist_property() -> None:
    box = read_box(VNNLIB / "mnist_prop_0_0.03.vnnlib")
    assert box.size == 784
    assert np.all(box.upper - box.lower <= 0.06 + 1e-8)  # 2 * eps, rounded through float32: up to 0.0600000024
    assert np.all(box.lower >= 0) and np.all(box.upper <= 1)
    assert box.upper[783] == 0.029999999329447746 and box.lower[783] == 0.0


def test_reversed_forms_negation_and_number_syntax(tmp_path: Path) -> None:
    text = declare(5) + """
    ; comment (with parentheses that are not s-expressions
    (assert (<= -0.5 X_0)) (assert (>= 0.5 X_0))   ; reversed forms
    (assert (>= X_1 (- 0.5))) (assert (<= X_1 (- (- 2))))
    (assert (and (>= X_2 -1e-3) (and (<= X_2 2.5E+1))))
    (assert (>= X_3 -3)) (assert (<= X_3 .5)) (assert (<= X_3 7))
    (assert (= X_4 0.25))
    (assert (<= Y_0 (+ Y_0 1)))
    """
    box = read_box(write(tmp_path, text))
    assert box.lower.tolist() == [-0.5, -0.5, -0.001, -3.0, 0.25]
    assert box.upper.tolist() == [0.5, 2.0, 25.0, 0.5, 0.25]


def test_or_of_disjuncts_gives_one_box_each(tmp_path: Path) -> None:
    text = declare(2) + """
    (assert (>= X_1 0)) (assert (<= X_1 1))
    (assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 3))
                (and (>= X_0 2) (<= X_0 3) (<= X_1 0.5))))
    """
    path = write(tmp_path, text)
    boxes = read_boxes(path)
    assert [b.lower.tolist() for b in boxes] == [[0, 0], [2, 0]]
    assert [b.upper.tolist() for b in boxes] == [[1, 1], [3, 0.5]]
    with pytest.raises(NnxformError, match="has 2 input boxes.*nnxform takes one"):
        read_box(path)


def test_identical_disjunct_boxes_collapse(tmp_path: Path) -> None:
    text = declare(1, 2) + """
    (assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 Y_1))
                (and (<= X_0 1) (>= X_0 0) (>= Y_1 Y_0))))
    """
    assert len(read_boxes(write(tmp_path, text))) == 1


def test_output_only_or_is_ignored(tmp_path: Path) -> None:
    text = declare(1, 3) + "(assert (<= X_0 1)) (assert (>= X_0 0))\n" \
        "(assert (or (and (>= Y_0 Y_2)) (and (>= Y_1 Y_2)) (and (not (<= Y_0 1)))))"
    assert len(read_boxes(write(tmp_path, text))) == 1


@pytest.mark.parametrize("text, expected", [
    ("", "declares no inputs"),
    ("; only a comment\n(declare-const Y_0 Real)", "declares no inputs"),
    (declare(4) + "(assert (and (>= X_0 0) (>= X_1 0) (>= X_2 0) (>= X_3 0)))"
     "(assert (and (<= X_0 1) (<= X_1 1) (<= X_2 1)))", "X_3 has no upper bound"),
    (declare(2) + "(assert (<= X_0 1)) (assert (<= X_1 1)) (assert (>= X_0 0))", "X_1 has no lower bound"),
    ("(declare-const X_0 Real)(declare-const X_2 Real)", "indices must run X_0..X_1 without gaps, but X_1 is not declared"),
    ("(declare-const X_1 Real)", "indices must run X_0..X_0 without gaps, but X_0 is not declared"),
    ("(declare-const X_0 Real)(declare-const X_0 Real)", "X_0 is declared twice"),
    ("(declare-const X_0 Int)", "expected (declare-const NAME Real)"),
    ("(declare-const input Real)", "declares 'input'"),
    (declare(1) + "(assert (<= X_0 1)\n", "line 3, column 1: malformed s-expression: this '(' is never closed"),
    (declare(1) + "(assert (<= X_0 1)))", "line 3, column 20: malformed s-expression: unexpected ')'"),
    (declare(1) + "assert", "line 3, column 1: malformed s-expression: expected '(' but found 'assert'"),
    (declare(2) + "(assert (<= (+ X_0 X_1) 1))", "only box constraints on inputs are supported"),
    (declare(2) + "(assert (<= X_0 X_1))", "only box constraints on inputs are supported"),
    (declare(1) + "(assert (<= X_0 Y_0))", "only box constraints on inputs are supported"),
    (declare(1) + "(assert (< X_0 1))", "only box constraints on inputs are supported"),
    (declare(1) + "(assert (not (<= X_0 1)))", "only box constraints on inputs are supported"),
    (declare(1) + "(assert (<= X_0 1 2))", "only box constraints on inputs are supported"),
    (declare(1) + "(assert (<= X_0 abc))", "'abc' is not a number"),
    (declare(1) + "(assert (<= X_0 1e999))", "number 1e999 is out of range"),
    (declare(1) + "(assert (<= X_1 1))", "X_1 is not declared"),
    (declare(1) + "(assert (>= X_0 1)) (assert (<= X_0 0))", "the input box is empty: X_0 >= 1.0 but X_0 <= 0.0"),
    (declare(1) + "(push 1)", "unsupported command (push 1)"),
])
def test_errors_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_error_names_the_box_of_a_disjunct(tmp_path: Path) -> None:
    text = declare(1) + "(assert (>= X_0 0)) (assert (or (and (<= X_0 1)) (and (>= Y_0 1) (>= X_0 0.5))))"
    assert "X_0 has no upper bound in input box 2 of 2" in error_of(tmp_path, text)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(NnxformError, match="nope.vnnlib: no such file"):
        read_boxes(tmp_path / "nope.vnnlib")
    with pytest.raises(NnxformError, match="is a directory"):
        read_box(tmp_path)


def test_round_trip_file(tmp_path: Path) -> None:
    box = Box(np.array([-0.5, 0.0, -0.0, 5e-324, -1e300]), np.array([0.1 + 0.2, 0.0, 1 / 3, 1e-300, 7.0]))
    text = write_box_assertions(box)
    assert text.startswith("(declare-const X_0 Real)\n") and "(assert (<= X_0 0.30000000000000004))" in text
    back = read_box(write(tmp_path, text + "(declare-const Y_0 Real)\n(assert (>= Y_0 0))\n"))
    assert back.lower.tobytes() == box.lower.tobytes() and back.upper.tobytes() == box.upper.tobytes()


@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False),
                          st.floats(allow_nan=False, allow_infinity=False)), min_size=1, max_size=20))
def test_round_trip_is_exact(pairs: list[tuple[float, float]]) -> None:
    lo, hi = np.array([min(p) for p in pairs]), np.array([max(p) for p in pairs])
    back = parse_boxes(write_box_assertions(Box(lo, hi)))
    assert len(back) == 1
    assert back[0].lower.tobytes() == lo.tobytes() and back[0].upper.tobytes() == hi.tobytes()


def test_box_index_picks_one_disjunct(tmp_path: Path) -> None:
    path = write(tmp_path, declare(1) + "(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))")
    assert [read_box(path, k).upper.tolist() for k in (0, 1)] == [[1.0], [3.0]]
    with pytest.raises(NnxformError, match=r"2 input boxes .*pick it with --box K \(K = 0\.\.1\)"):
        read_box(path)
    with pytest.raises(NnxformError, match="--box 2 does not exist: the file has 2 input boxes"):
        read_box(path, 2)
    assert read_box(VNNLIB / "test_small.vnnlib", 0).size == 1


def test_binary_file_is_not_vnnlib(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib"
    path.write_bytes(b"(declare-const X_0 Real)\x00\x01")
    with pytest.raises(NnxformError, match="p.vnnlib: not a text file, so not VNN-LIB"):
        read_boxes(path)
