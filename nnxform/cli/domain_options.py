"""The input box the command line describes: ``--lower/--upper``, ``--center/--eps`` (with clipping) or
``--vnnlib`` (with ``--box``), each a number or a ``.npy`` file where a bound is given; refused with one line
naming the option when it is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ..domain import FLOAT32_RULE, Box, outside_float32
from ..errors import NnxformError
from ..vnnlib import read_box

#: A bound option as the CLI gives it: a number, a numeric string, or a ``.npy`` path.
BoundValue = Union[str, float, "os.PathLike[str]"]


def _number(option: str, value: str | float) -> float:
    """A number given as a CLI string or a float, within float32's range (``outside_float32``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise NnxformError(f"{option}: '{value}' is not a number") from None
    if outside_float32(x) is not None:
        raise NnxformError(f"{option}: '{value}' is not {FLOAT32_RULE}")
    return x


def is_file_value(value: BoundValue) -> bool:
    """Whether a bound option names a ``.npy`` file (else it is a number)."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    return isinstance(text, str) and text.lower().endswith(".npy")


def option_values(option: str, value: BoundValue, size: int) -> np.ndarray:
    """``size`` bounds from a number (broadcast) or a ``.npy`` file of any shape with ``size`` elements."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not is_file_value(text):
        try:
            float(text)
        except (TypeError, ValueError):
            raise NnxformError(f"{option}: '{text}' is neither a number nor a .npy file") from None
        return np.full(size, _number(option, text))
    if not Path(text).is_file():
        raise NnxformError(f"{option}: {text}: no such file")
    try:
        arr = np.load(text, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise NnxformError(f"{option}: {text}: not a NumPy .npy file") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise NnxformError(f"{option}: {text} does not hold a numeric array")
    if arr.size != size:
        raise NnxformError(f"{option}: {text} has {arr.size} elements but the network input has {size}")
    bad = outside_float32(arr)
    if bad is not None:
        raise NnxformError(f"{option}: {text} contains NaN or infinite values or values beyond float32 (element "
                           f"{bad} is {arr.ravel()[bad]:g}); each must be {FLOAT32_RULE}")
    return arr.astype(np.float64).ravel()


def box_from_options(input_size: int, *, lower: BoundValue | None = None, upper: BoundValue | None = None,
                     center: BoundValue | None = None, eps: str | float | None = None,
                     clip_lower: BoundValue | None = None, clip_upper: BoundValue | None = None,
                     vnnlib: str | os.PathLike[str] | None = None, box_index: int | None = None,
                     default: Box | None = None) -> Box | None:
    """The input box the CLI's domain options describe (one way of three), else ``default``; sized to the input.

    ``box_index`` picks one input box of a VNN-LIB file that states several (an ``or`` over inputs)."""
    ways = {"--lower/--upper": lower is not None or upper is not None,
            "--center/--eps": center is not None or eps is not None,
            "--vnnlib": vnnlib is not None}
    given = [name for name, used in ways.items() if used]
    clipping = clip_lower is not None or clip_upper is not None
    if len(given) > 1:
        raise NnxformError(f"{' and '.join(given)} conflict: give the input box one way only")
    if box_index is not None and vnnlib is None:
        raise NnxformError("--box picks one input box of a --vnnlib file; give --vnnlib")
    if not given:
        if clipping:
            raise NnxformError("--clip-lower/--clip-upper need a box to clip (--lower/--upper, --center/--eps or --vnnlib)")
        return None if default is None else default.fit(input_size)
    if vnnlib is not None:
        box = read_box(vnnlib, box_index, network=(input_size, None))
    elif lower is not None or upper is not None:
        if lower is None or upper is None:
            raise NnxformError("--lower needs --upper" if upper is None else "--upper needs --lower")
        box = Box(option_values("--lower", lower, input_size), option_values("--upper", upper, input_size))
    else:
        if center is None or eps is None:
            raise NnxformError("--center needs --eps" if eps is None else "--eps needs --center")
        e = _number("--eps", eps)
        if e < 0:
            raise NnxformError(f"--eps must be >= 0, got {eps}")
        c = option_values("--center", center, input_size)
        box = Box(c - e, c + e)
    if clipping:
        box = _clip(box, clip_lower, clip_upper)
    return box.fit(input_size)


def _clip(box: Box, clip_lower: BoundValue | None, clip_upper: BoundValue | None) -> Box:
    """``box`` intersected with the clip bounds (e.g. pixels stay in [0, 1]); an empty result is an error."""
    cl = np.full(box.size, -np.inf) if clip_lower is None else option_values("--clip-lower", clip_lower, box.size)
    cu = np.full(box.size, np.inf) if clip_upper is None else option_values("--clip-upper", clip_upper, box.size)
    lo, hi = np.maximum(box.lower, cl), np.minimum(box.upper, cu)
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = int(bad[0])
        raise NnxformError(f"--clip-lower/--clip-upper empty the box at input {i}: "
                           f"[{box.lower[i]:g}, {box.upper[i]:g}] does not meet [{cl[i]:g}, {cu[i]:g}]")
    return Box(lo, hi)
