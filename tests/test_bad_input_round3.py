"""Issue 19, items 3, 6 and 7: box bounds and data beyond float32, and VNN-LIB variables or sizes that do not fit,
refused as the real ``nnxform`` command runs them: exit 2, one line on stderr (no numpy warning), nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, assert_clean_error, run_cli

from nnxform.cli.common import json_text
from nnxform.domain import FLOAT32_MAX, Box
from nnxform.errors import NnxformError
from nnxform.vnnlib import normalize, parse_boxes

SMALL = MODELS / "test_small.onnx"  # one input, one output
RANGE = "is not a finite number within ±3.40282e+38 (float32's range"

#: A row of a data file whose features are finite in float64 and infinite in float32.
HUGE = 1e39


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-input, 3-output network (``nnxform init``) and seeded data files with one bad row each."""
    root = tmp_path_factory.mktemp("round3")
    r = run_cli("init", "--layers", "4,6,3", "-o", root / "net.onnx", "--seed", "1")
    assert r.returncode == 0, r.stderr
    rng = np.random.default_rng(19)
    x, y = rng.uniform(0, 1, (12, 4)), rng.integers(0, 3, 12)
    write_csv(root / "good.csv", x, y)
    huge = x.copy()
    huge[-1] = HUGE  # the last row, line 13 after the header: its first feature is column 2
    write_csv(root / "huge.csv", huge, y)
    near = x.copy()
    near[3, 1] = 3e38  # within float32, but a box of radius 1e38 around it is not
    write_csv(root / "near.csv", near, y)
    x_npz = x.copy()
    x_npz[5, 2] = HUGE
    np.savez(root / "huge.npz", x=x_npz, y=y)
    return root


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    rows = [",".join([str(int(label)), *(repr(float(v)) for v in point)]) for point, label in zip(x, y)]
    path.write_text("label,a,b,c,d\n" + "\n".join(rows) + "\n")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def refused(folder: Path, args: list[object], *fragments: str, outputs: tuple[str, ...] = (),
            quiet: bool = True) -> None:
    """The command exits 2 with one line holding every fragment, writes none of ``outputs`` (nor anything else in
    ``folder``) and, where ``quiet``, prints nothing on stdout."""
    before = sorted(p.name for p in folder.iterdir())
    r = run_cli(*args)
    assert_clean_error(r, *fragments)
    assert r.stdout == "" or not quiet
    assert not any((folder / name).exists() for name in outputs)
    assert sorted(p.name for p in folder.iterdir()) == before


# --- item 3: box bounds beyond float32 ---------------------------------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["--lower", "-1e39", "--upper", "1e39"], [f"--lower: '-1e39' {RANGE}"]),
    (["--lower", "0", "--upper", "inf"], [f"--upper: 'inf' {RANGE}"]),
    (["--center", "0", "--eps", "1e39"], [f"--eps: '1e+39' {RANGE}"]),
    (["--center", "3e38", "--eps", "1e38"], ["the box's upper bound at input 0 is 4e+38, not a finite number"]),
    (["--lower", "0", "--upper", "1", "--clip-upper", "1e39"], [f"--clip-upper: '1e39' {RANGE}"]),
], ids=["lower-upper", "infinite", "eps", "center-plus-eps", "clip"])
def test_bounds_refuses_a_box_beyond_float32(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    refused(tmp_path, ["bounds", SMALL, *args, "-m", "interval", "--json", tmp_path / "b.json"], *fragments,
            outputs=("b.json",))


def test_a_npy_bound_beyond_float32(tmp_path: Path, folder: Path) -> None:
    lower = tmp_path / "lo.npy"
    np.save(lower, np.array([0.0, -HUGE, 0.0, 0.0]))
    refused(tmp_path, ["bounds", folder / "net.onnx", "--lower", lower, "--upper", "1", "-m", "interval",
                       "--json", tmp_path / "b.json"],
            f"--lower: {lower} contains NaN or infinite values or values beyond float32 (element 1 is -1e+39)")


def test_json_to_stdout_gets_no_nan(tmp_path: Path) -> None:
    """The repro: `--json -` printed NaN (not JSON) and exited 0."""
    refused(tmp_path, ["bounds", SMALL, "--lower", "-1e39", "--upper", "1e39", "-m", "interval", "--json", "-"],
            f"--lower: '-1e39' {RANGE}")


def test_a_vnnlib_bound_beyond_float32(tmp_path: Path) -> None:
    prop = write(tmp_path, "huge.vnnlib", "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                 "(assert (>= X_0 -1e308))\n(assert (<= X_0 1.7976931348623157e308))\n(assert (>= Y_0 0))\n")
    refused(tmp_path, ["bounds", SMALL, "--vnnlib", prop, "-m", "symbolic"],
            f"{prop}: line 3, column 9: number -1e308 is out of range for the network: each bound must be a finite "
            "number within ±3.40282e+38")


def test_a_box_for_a_network_lies_in_float32() -> None:
    """The range matters where a box meets a network (``Box.fit``, a VNN-LIB read for one); a box or a property alone
    may hold any finite float64 (VNN-LIB round trips stay exact)."""
    assert Box(np.array([-FLOAT32_MAX]), np.array([FLOAT32_MAX])).fit(1).upper[0] == np.finfo(np.float32).max
    with pytest.raises(NnxformError, match="the box's lower bound at input 1 is -1e\\+39, not a finite number within"):
        Box(np.array([0.0, -HUGE]), np.array([1.0, 1.0])).fit(2)
    text = "(declare-const X_0 Real)(assert (>= X_0 -1e300))(assert (<= X_0 3.4e38))"
    assert parse_boxes(text)[0].lower.tolist() == [-1e300]
    with pytest.raises(NnxformError, match="line 1, column 33: number -1e300 is out of range for the network"):
        parse_boxes(text, network=(1, None))


def test_json_reports_refuse_nan() -> None:
    """A NaN that reaches a report is a bug (exit 3, 'internal error'), never a file no JSON reader parses."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_text({"lower": [float("nan")]})
    assert json.loads(json_text({"lower": np.array([1.5])})) == {"lower": [1.5]}


# --- item 6: data beyond float32 ---------------------------------------------------------------------


def huge_at(folder: Path, name: str = "huge.csv") -> str:
    return f"{folder / name}: line 13, column 2: 1e+39 {RANGE}"


def test_train_refuses_data_beyond_float32(folder: Path) -> None:
    refused(folder, ["train", folder / "net.onnx", "--data", folder / "huge.csv", "-o", folder / "t.onnx",
                     "--epochs", "1", "--seed", "1"], huge_at(folder), outputs=("t.onnx",))


def test_train_refuses_npz_beyond_float32(folder: Path) -> None:
    refused(folder, ["train", folder / "net.onnx", "--data", folder / "huge.npz", "-o", folder / "t.onnx",
                     "--epochs", "1"], f"{folder / 'huge.npz'}: x[5], feature 2: 1e+39 {RANGE}", outputs=("t.onnx",))


def test_a_scale_that_makes_features_overflow(folder: Path) -> None:
    refused(folder, ["train", folder / "net.onnx", "--data", folder / "good.csv", "--scale", "1e-320",
                     "-o", folder / "t.onnx", "--epochs", "1"], f"{folder / 'good.csv'}: line 2, column 2: ",
            "/ --scale 9.99989e-321 " + RANGE, outputs=("t.onnx",))


def test_evaluate_refuses_data_beyond_float32(folder: Path) -> None:
    refused(folder, ["evaluate", folder / "net.onnx", "--data", folder / "huge.csv", "--eps", "0.01",
                     "--json", folder / "e.json"], huge_at(folder), outputs=("e.json",))


@pytest.mark.parametrize("option", ["--data", "--train-data", "--test-data"])
def test_repair_refuses_data_beyond_float32(folder: Path, option: str) -> None:
    domain = ["--eps", "0.01"] if option == "--data" else ["--lower", "0", "--upper", "1"]
    refused(folder, ["repair", folder / "net.onnx", folder / "net.onnx", option, folder / "huge.csv", *domain,
                     "-o", folder / "r.onnx", "--rounds", "1", "--epochs", "1"], huge_at(folder), outputs=("r.onnx",))


def test_repair_refuses_boxes_around_data_beyond_float32(folder: Path) -> None:
    """Points within float32 whose --eps boxes are not: the box check, before any analysis (and its warnings)."""
    refused(folder, ["repair", folder / "net.onnx", folder / "net.onnx", "--data", folder / "near.csv",
                     "--eps", "1e38", "-o", folder / "r.onnx", "--rounds", "1", "--epochs", "1"],
            "the box's upper bound at input 1 is 4e+38, not a finite number within", outputs=("r.onnx",))


# --- item 7: VNN-LIB variables and sizes -------------------------------------------------------------

UNDECLARED_Y = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (>= X_0 0))
(assert (<= X_0 1))
(assert (>= Y_3 0))
"""

TWO_INPUTS = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_0 3))
            (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (<= Y_0 -3))))
"""

TWO_OUTPUTS = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0))
(assert (<= X_0 1))
(assert (>= Y_1 Y_0))
"""


@pytest.mark.parametrize("onnx", [True, False], ids=["with-onnx", "alone"])
def test_normalize_refuses_an_undeclared_variable(tmp_path: Path, onnx: bool) -> None:
    prop = write(tmp_path, "undeclared.vnnlib", UNDECLARED_Y)
    refused(tmp_path, ["vnnlib-normalize", prop, "-o", tmp_path / "out.vnnlib", *(["--onnx", SMALL] if onnx else [])],
            f"{prop}: line 5, column 9: (>= Y_3 0): Y_3 is not declared", outputs=("out.vnnlib", "instances.csv"))


def test_normalize_refuses_a_property_of_other_inputs(tmp_path: Path) -> None:
    prop = write(tmp_path, "or_inputs.vnnlib", TWO_INPUTS)
    refused(tmp_path, ["vnnlib-normalize", prop, "-o", tmp_path / "p.vnnlib", "--onnx", SMALL],
            f"{prop}: the property bounds 2 inputs (X_0..X_1) but the network input has 1",
            outputs=("p_0.vnnlib", "p_1.vnnlib", "instances.csv"))


def test_normalize_refuses_a_property_of_other_outputs(tmp_path: Path) -> None:
    prop = write(tmp_path, "two_outputs.vnnlib", TWO_OUTPUTS)
    refused(tmp_path, ["vnnlib-normalize", prop, "-o", tmp_path / "p.vnnlib", "--onnx", SMALL],
            f"{prop}: the property declares 2 outputs (Y_0..Y_1) but the network output has 1",
            outputs=("p.vnnlib", "instances.csv"))
    r = run_cli("vnnlib-normalize", prop, "-o", tmp_path / "p.vnnlib")  # without a network: nothing to compare
    assert r.returncode == 0, r.stderr


def test_a_domain_vnnlib_of_other_inputs(tmp_path: Path) -> None:
    """Commands that take their box from --vnnlib compare its inputs through the same check."""
    prop = write(tmp_path, "or_inputs.vnnlib", TWO_INPUTS)
    refused(tmp_path, ["bounds", SMALL, "--vnnlib", prop, "--box", "0", "--json", tmp_path / "b.json"],
            f"{prop}: the property bounds 2 inputs (X_0..X_1) but the network input has 1", outputs=("b.json",))


@pytest.mark.parametrize("text, name", [
    (UNDECLARED_Y, "Y_3"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))"
     "(assert (or (and (>= Y_0 1)) (and (<= Y_0 Z))))", "Z"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 Y_1))))",
     "Y_1"),
])
def test_the_parser_refuses_undeclared_variables(text: str, name: str) -> None:
    for read in (parse_boxes, normalize):
        with pytest.raises(NnxformError, match=f"{name} is not declared; a property may use only the X_i and Y_j"):
            read(text)
