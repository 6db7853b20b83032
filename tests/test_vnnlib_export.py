"""VNN-LIB property writers: ε-equivalence, robustness, output bounds, and instances.csv lines."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS, assert_clean_error, run_cli

from nnxform.domain import Box
from nnxform.errors import NnxformError
from nnxform.vnnlib import (bounds_property, equivalence_property, parse_boxes, read_box, robustness_property,
                            write_instance)

BOX = Box(np.array([0.0, -0.1, 1e-7]), np.array([0.5, 0.30000000000000004, 2.0]))


def output_part(text: str) -> str:
    """The text after the input bounds: Y declarations and the output assertion."""
    return text[text.index("(declare-const Y_0 Real)"):]


def test_equivalence_text_is_exact_and_reads_back():
    text = equivalence_property(BOX, 3, 0.1, compared=2)
    assert output_part(text) == (
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n\n"
        "(assert (or\n"
        "    (and (>= Y_0 0.1))\n    (and (<= Y_0 -0.1))\n"
        "    (and (>= Y_1 0.1))\n    (and (<= Y_1 -0.1))\n"
        "))\n")
    box = parse_boxes(text)[0]
    np.testing.assert_array_equal(box.lower, BOX.lower)
    np.testing.assert_array_equal(box.upper, BOX.upper)  # exact reprs, 0.30000000000000004 included


def test_robustness_and_bounds_text():
    assert output_part(robustness_property(BOX, 3, 1)).endswith(
        "(assert (or\n    (and (>= Y_0 Y_1))\n    (and (>= Y_2 Y_1))\n))\n")
    text = bounds_property(BOX, np.array([-1.0, 0.0]), np.array([1.0, 2.5]))
    assert output_part(text) == (
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n\n(assert (or\n"
        "    (and (<= Y_0 -1.0))\n    (and (>= Y_0 1.0))\n    (and (<= Y_1 0.0))\n    (and (>= Y_1 2.5))\n))\n")
    assert "(>=" not in output_part(bounds_property(BOX, np.array([-1.0]), None))


@pytest.mark.parametrize("call, message", [
    (lambda: equivalence_property(BOX, 3, 0.0), "positive"),
    (lambda: equivalence_property(BOX, 3, 0.1, compared=4), "first 4 outputs"),
    (lambda: robustness_property(BOX, 3, 3), "label 3"),
    (lambda: robustness_property(BOX, 1, 0), "at least 2 outputs"),
    (lambda: bounds_property(BOX, np.array([1.0]), np.array([1.0])), "nothing at Y_0"),
    (lambda: bounds_property(BOX, None, None), "lower or upper"),
])
def test_writer_errors(call, message):
    with pytest.raises(NnxformError, match=message):
        call()


def test_instances_csv_paths_are_relative_and_lines_replaced(tmp_path):
    csv = tmp_path / "instances.csv"
    csv.write_text("other.onnx,other.vnnlib,30\n")
    (tmp_path / "nets").mkdir()
    assert write_instance(csv, tmp_path / "nets" / "ab.onnx", tmp_path / "ab.vnnlib", 60) == "nets/ab.onnx,ab.vnnlib,60"
    write_instance(csv, tmp_path / "nets" / "ab.onnx", tmp_path / "ab.vnnlib", 12.5)
    assert csv.read_text() == "other.onnx,other.vnnlib,30\nnets/ab.onnx,ab.vnnlib,12.5\n"


def test_merge_writes_the_equivalence_query_and_instance(tmp_path):
    out, prop = tmp_path / "ab.onnx", tmp_path / "props" / "ab.vnnlib"
    prop.parent.mkdir()
    acas_box = MODELS / "vnnlib" / "acasxu_prop_1.vnnlib"
    acas = MODELS / "ACASXU_run2a_1_1_batch_2000.onnx"
    r = run_cli("merge", acas, acas, "-o", out, "--keep-outputs", "--write-vnnlib", prop, "--equiv-eps", "0.05",
                "--vnnlib", acas_box, "--timeout", "120", "--samples", "100")
    assert r.returncode == 0, r.stderr
    text = prop.read_text()
    box, expected = read_box(prop), read_box(acas_box)
    np.testing.assert_array_equal(box.lower, expected.lower)
    np.testing.assert_array_equal(box.upper, expected.upper)
    assert "(declare-const Y_14 Real)" in text and "(declare-const Y_15 Real)" not in text  # [f_A − f_B, f_A, f_B]
    assert "(and (<= Y_4 -0.05))\n))" in text and "Y_5 0.05" not in text  # only the differences are constrained
    assert (prop.parent / "instances.csv").read_text() == "../ab.onnx,ab.vnnlib,120\n"


def test_merge_query_needs_a_domain_and_writes_nothing_otherwise(tmp_path):
    fc = MODELS / "marabou_fc_2-2-3.onnx"
    out = tmp_path / "ab.onnx"
    assert_clean_error(run_cli("merge", fc, fc, "-o", out, "--write-vnnlib", tmp_path / "p.vnnlib",
                               "--equiv-eps", "0.1"), "needs the input box")
    assert_clean_error(run_cli("merge", fc, fc, "-o", out, "--write-vnnlib", tmp_path / "p.vnnlib",
                               "--equiv-eps", "-1", "--lower", "0", "--upper", "1"), "positive")
    assert list(tmp_path.iterdir()) == []


def test_vnnlib_command(tmp_path):
    cartpole = MODELS / "cartpole.onnx"
    prop, csv = tmp_path / "rob.vnnlib", tmp_path / "instances.csv"
    r = run_cli("vnnlib", cartpole, "-o", prop, "--property", "robustness", "--label", "1", "--center", "0.5",
                "--eps", "0.25", "--instances", csv)
    assert r.returncode == 0, r.stderr
    box = read_box(prop)
    np.testing.assert_array_equal(box.lower, np.full(4, 0.25))
    assert output_part(prop.read_text()).endswith("(assert (or\n    (and (>= Y_0 Y_1))\n))\n")
    assert csv.read_text().strip().endswith("models/cartpole.onnx,rob.vnnlib,60")
    upper = tmp_path / "upper.npy"
    np.save(upper, np.array([3.0, 4.0]))
    r = run_cli("vnnlib", cartpole, "-o", tmp_path / "b.vnnlib", "--property", "bounds", "--output-upper", upper,
                "--lower", "0", "--upper", "1")
    assert r.returncode == 0, r.stderr
    assert "(and (>= Y_0 3.0))\n    (and (>= Y_1 4.0))" in (tmp_path / "b.vnnlib").read_text()


@pytest.mark.parametrize("args, message", [
    (("--property", "equivalence", "--equiv-eps", "0.1"), "give the input box"),
    (("--property", "equivalence", "--lower", "0", "--upper", "1"), "needs --equiv-eps"),
    (("--property", "robustness", "--label", "2", "--lower", "0", "--upper", "1"), "label 2"),
    (("--property", "robustness", "--label", "0", "--equiv-eps", "1", "--lower", "0", "--upper", "1"),
     "--equiv-eps is for --property equivalence"),
    (("--property", "bounds", "--output-lower", "x", "--lower", "0", "--upper", "1"), "--output-lower"),
])
def test_vnnlib_command_errors(tmp_path, args, message):
    out = tmp_path / "p.vnnlib"
    assert_clean_error(run_cli("vnnlib", MODELS / "cartpole.onnx", "-o", out, *args), message)
    assert not out.exists()
