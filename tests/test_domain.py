"""Input boxes: the Box class and building one from command-line options."""

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from nnxform.cli.domain_options import box_from_options
from nnxform.domain import Box
from nnxform.errors import NnxformError

VNNLIB = Path(__file__).resolve().parent.parent / "models" / "vnnlib"


def npy(tmp_path: Path, name: str, values: object) -> str:
    path = tmp_path / name
    np.save(path, np.asarray(values))
    return str(path)


def error_of(**options: object) -> str:
    with pytest.raises(NnxformError) as info:
        box_from_options(**options)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --- Box ---------------------------------------------------------------------------------------

def test_box_flattens_and_validates() -> None:
    box = Box(np.zeros((2, 3)), np.ones(6))
    assert box.size == 6 and box.lower.shape == (6,) and box.fit(6) is box
    with pytest.raises(NnxformError, match="lower > upper at input 1"):
        Box(np.array([0.0, 2.0]), np.array([1.0, 1.0]))
    with pytest.raises(NnxformError, match="finite"):
        Box(np.array([0.0]), np.array([np.inf]))
    with pytest.raises(NnxformError, match="2 lower and 3 upper"):
        Box(np.zeros(2), np.ones(3))
    with pytest.raises(NnxformError, match="the domain has 6 elements but the network input has 5"):
        box.fit(5)


def test_box_points_lie_inside() -> None:
    box = Box.default(3)
    pts = box.points(50, np.random.default_rng(0))
    assert pts.shape[1] == 3 and np.all(pts >= -1) and np.all(pts <= 1)
    assert len({tuple(c) for c in box.corners(100, np.random.default_rng(0))}) == 8


# --- box_from_options: the three ways ------------------------------------------------------------

def test_nothing_given_returns_default() -> None:
    assert box_from_options(4) is None
    default = Box.default(4)
    assert box_from_options(4, default=default) is default
    with pytest.raises(NnxformError, match="the domain has 4 elements but the network input has 3"):
        box_from_options(3, default=default)


def test_lower_upper_numbers_broadcast() -> None:
    box = box_from_options(3, lower="-1", upper="0.5")
    assert box.lower.tolist() == [-1, -1, -1] and box.upper.tolist() == [0.5] * 3
    box = box_from_options(2, lower=-2, upper=3.5)
    assert box.lower.tolist() == [-2, -2] and box.upper.tolist() == [3.5, 3.5]


@pytest.mark.parametrize("shape", [(784,), (1, 784, 1), (28, 28), (1, 1, 28, 28)])
def test_lower_upper_npy_any_shape(tmp_path: Path, shape: tuple[int, ...]) -> None:
    lo = np.arange(784, dtype=np.float32).reshape(shape) / 1000
    box = box_from_options(784, lower=npy(tmp_path, "lower.npy", lo), upper="1")
    assert box.lower.tolist() == lo.astype(np.float64).ravel().tolist() and np.all(box.upper == 1)


def test_npy_is_flattened_row_major(tmp_path: Path) -> None:
    values = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    box = box_from_options(6, lower=npy(tmp_path, "lo.npy", values), upper=Path(npy(tmp_path, "hi.npy", values + 1)))
    assert box.lower.tolist() == [0, 1, 2, 3, 4, 5] and box.upper.tolist() == [1, 2, 3, 4, 5, 6]


def test_center_eps(tmp_path: Path) -> None:
    center = np.full((1, 4, 1), 0.5)
    box = box_from_options(4, center=npy(tmp_path, "x.npy", center), eps="0.25")
    assert box.lower.tolist() == [0.25] * 4 and box.upper.tolist() == [0.75] * 4
    box = box_from_options(2, center="1", eps=0)
    assert box.lower.tolist() == box.upper.tolist() == [1, 1]


def test_center_eps_clipped_to_pixel_range(tmp_path: Path) -> None:
    center = npy(tmp_path, "x.npy", [0.0, 0.5, 0.99])
    box = box_from_options(3, center=center, eps="0.03", clip_lower="0", clip_upper="1")
    assert np.allclose(box.lower, [0.0, 0.47, 0.96]) and np.allclose(box.upper, [0.03, 0.53, 1.0])
    assert box_from_options(3, center=center, eps="0.03", clip_upper="1").lower[0] == -0.03


def test_clip_with_npy_bounds(tmp_path: Path) -> None:
    box = box_from_options(2, lower="-5", upper="5", clip_lower=npy(tmp_path, "cl.npy", [[0, -1]]))
    assert box.lower.tolist() == [0, -1] and box.upper.tolist() == [5, 5]


def test_vnnlib() -> None:
    box = box_from_options(5, vnnlib=VNNLIB / "acasxu_prop_1.vnnlib")
    assert box.lower.tolist() == [0.6, -0.5, -0.5, 0.45, -0.5]
    box = box_from_options(784, vnnlib=str(VNNLIB / "mnist_prop_0_0.03.vnnlib"), clip_lower="0.01")
    assert box.size == 784 and np.all(box.lower >= 0.01)


# --- box_from_options: errors -------------------------------------------------------------------

WAYS = {
    "--lower/--upper": {"lower": "0", "upper": "1"},
    "--center/--eps": {"center": "0", "eps": "1"},
    "--vnnlib": {"vnnlib": str(VNNLIB / "test_small.vnnlib")},
}


@pytest.mark.parametrize("ways", [*combinations(WAYS, 2), tuple(WAYS)], ids=" + ".join)
def test_mixing_ways_is_an_error(ways: tuple[str, ...]) -> None:
    options = {k: v for way in ways for k, v in WAYS[way].items()}
    msg = error_of(input_size=1, **options)
    assert all(way in msg for way in ways) and "conflict" in msg


@pytest.mark.parametrize("options, expected", [
    ({"lower": "0"}, "--lower needs --upper"),
    ({"upper": "0"}, "--upper needs --lower"),
    ({"center": "0"}, "--center needs --eps"),
    ({"eps": "0.1"}, "--eps needs --center"),
    ({"center": "0", "eps": "-0.1"}, "--eps must be >= 0, got -0.1"),
    ({"center": "0", "eps": "small"}, "--eps: 'small' is not a number"),
    ({"center": "0", "eps": "inf"}, "--eps: 'inf' is not a finite number"),
    ({"lower": "abc", "upper": "1"}, "--lower: 'abc' is neither a number nor a .npy file"),
    ({"lower": "0", "upper": "nan"}, "--upper: 'nan' is not a finite number"),
    ({"lower": "1", "upper": "0"}, "empty box: lower > upper at input 0"),
    ({"clip_lower": "0"}, "--clip-lower/--clip-upper need a box to clip"),
    ({"center": "2", "eps": "0.5", "clip_lower": "0", "clip_upper": "1"},
     "--clip-lower/--clip-upper empty the box at input 0: [1.5, 2.5] does not meet [0, 1]"),
    ({"lower": "0", "upper": "1", "clip_lower": "1", "clip_upper": "0"}, "empty the box at input 0"),
])
def test_option_errors(options: dict[str, str], expected: str) -> None:
    assert expected in error_of(input_size=3, **options)


def test_npy_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "lower.npy")
    assert f"--lower: {missing}: no such file" in error_of(input_size=784, lower=missing, upper="1")
    ten = npy(tmp_path, "lower.npy", np.zeros(10))
    assert f"{ten} has 10 elements but the network input has 784" in error_of(input_size=784, lower=ten, upper="1")
    nan = npy(tmp_path, "nan.npy", [0.0, np.nan])
    assert "contains NaN or infinite values" in error_of(input_size=2, lower=nan, upper="1")
    text = npy(tmp_path, "text.npy", ["a", "b"])
    assert "does not hold a numeric array" in error_of(input_size=2, center=text, eps="1")
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an array")
    assert "not a NumPy .npy file" in error_of(input_size=2, lower="0", upper=str(junk))
    assert "has 2 elements" in error_of(input_size=3, lower="0", upper="1", clip_upper=npy(tmp_path, "c.npy", [1, 1]))


def test_vnnlib_errors(tmp_path: Path) -> None:
    small = VNNLIB / "test_small.vnnlib"
    assert f"{small}: the property bounds 1 inputs (X_0..X_0) but the network input has 784" in error_of(input_size=784, vnnlib=small)
    assert "no such file" in error_of(input_size=1, vnnlib=tmp_path / "none.vnnlib")


def test_box_index_picks_one_box_of_a_vnnlib_file(tmp_path: Path) -> None:
    prop = tmp_path / "two.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))\n")
    assert box_from_options(1, vnnlib=prop, box_index=1).lower.tolist() == [2.0]
    assert "2 input boxes" in error_of(input_size=1, vnnlib=prop) and "--box K" in error_of(input_size=1, vnnlib=prop)
    assert "--box picks one input box of a --vnnlib file" in error_of(input_size=1, lower="0", upper="1", box_index=0)
